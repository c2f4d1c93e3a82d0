"""`create_app`: the console API over a store (`trackfence serve` runs it with uvicorn)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from reporting.console import admin, devices, events, metrics, site_routes
from reporting.console.deps import get_principal
from reporting.console.metrics import IngestHealth
from store import Store, StoreUnavailableError

STATIC = Path(__file__).parent / "static"
DESCRIPTION = """
What the safety task force reads: the breach log (live and after the fact), the
devices and their states, the sites and every version of their fences, and the
trial reports. Every route but `/health` needs a bearer token
(`trackfence token create`), these docs and `/openapi.json` too unless the console
was started with `--public-docs`; a supplier's token reads only that supplier's data.
Times are UTC epoch milliseconds, or ISO 8601 with a time zone where given.
"""


def create_app(
    store: Store,
    *,
    reports_dir: Path | None = None,
    broker: str | None = None,
    lost_after_s: float = 10.0,
    mqtt_username: str | None = None,
    mqtt_password: str | None = None,
    tls_ca: str | None = None,
    public_docs: bool = False,
) -> FastAPI:
    """The console. Its OpenAPI schema (`/openapi.json`) and docs (`/docs`) need a token
    like every route but `/health`, unless `public_docs` (`trackfence serve --public-docs`).

    `broker` (with its credentials and CA) is watched for the ingest workers' health;
    `lost_after_s` is when a silent device shows LOST; `reports_dir` holds the trial
    reports it serves.
    """
    health = IngestHealth(broker, mqtt_username, mqtt_password, tls_ca) if broker else None
    app = FastAPI(
        title="trackfence console",
        version="1",
        description=DESCRIPTION,
        lifespan=_lifespan(health),
        # served below, behind a token unless asked otherwise; no ReDoc, no OAuth2 page
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.store = store
    app.state.ingest_health = health
    app.state.reports_dir = reports_dir
    app.state.broker = broker
    app.state.lost_after_s = lost_after_s
    _guard(app)
    for module in (events, devices, site_routes, admin, metrics):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _documents(app, public_docs)
    return app


def _lifespan(health: IngestHealth | None):
    """Watch the ingest workers' health while the console runs (when there is a broker)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if health is not None:
            health.start()
        yield
        if health is not None:
            health.stop()

    return lifespan


def _guard(app: FastAPI) -> None:
    """What every request meets first: no NUL in what is asked, and a store outage as 503."""

    @app.middleware("http")
    async def refuse_nul(request: Request, call_next):
        """No text we keep or search may hold a NUL character (PostgreSQL refuses them)."""
        if "\x00" in request.url.path or any(
            "\x00" in k or "\x00" in v for k, v in request.query_params.multi_items()
        ):
            return JSONResponse({"detail": "text may not contain NUL characters"}, status_code=422)
        return await call_next(request)

    @app.exception_handler(StoreUnavailableError)
    async def store_unavailable(request: Request, exc: StoreUnavailableError) -> JSONResponse:
        """The database went away mid-request: say so (503), as /health would."""
        return JSONResponse({"detail": "the store is unreachable"}, status_code=503)


def _documents(app: FastAPI, public_docs: bool) -> None:
    """The schema, its docs and the page: the schema and docs behind a token unless public."""
    docs_access = [] if public_docs else [Depends(get_principal)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=docs_access)
    def openapi() -> JSONResponse:
        """The OpenAPI schema."""
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=docs_access)
    def docs() -> HTMLResponse:
        """Swagger UI with the schema inside the page, so it needs no second request
        (which, from a browser, could not carry the token)."""
        return get_swagger_ui_html(
            openapi_url="",  # empty: Swagger UI then reads `spec`, not a URL
            title=f"{app.title} - API",
            swagger_ui_parameters={"spec": app.openapi()},
        )

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        """The console page (it asks for a token; the data comes from the API)."""
        return FileResponse(STATIC / "index.html")
