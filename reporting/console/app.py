"""`create_app`: the console API over a store (`trackfence serve` runs it with uvicorn)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from reporting.console import admin, devices, events, metrics, sites
from reporting.console.metrics import IngestHealth
from store import Store

STATIC = Path(__file__).parent / "static"
DESCRIPTION = """
What the safety task force reads: the breach log (live and after the fact), the
devices and their states, the sites and every version of their fences, and the
trial reports. Every route but `/health` needs a bearer token
(`trackfence token create`); a supplier's token reads only that supplier's data.
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
) -> FastAPI:
    health = IngestHealth(broker, mqtt_username, mqtt_password, tls_ca) if broker else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if health is not None:
            health.start()
        yield
        if health is not None:
            health.stop()

    app = FastAPI(
        title="trackfence console", version="1", description=DESCRIPTION, lifespan=lifespan
    )
    app.state.store = store
    app.state.ingest_health = health

    @app.middleware("http")
    async def refuse_nul(request: Request, call_next):
        """No text we keep or search may hold a NUL character (PostgreSQL refuses them)."""
        if "\x00" in request.url.path or any(
            "\x00" in k or "\x00" in v for k, v in request.query_params.multi_items()
        ):
            return JSONResponse({"detail": "text may not contain NUL characters"}, status_code=422)
        return await call_next(request)

    app.state.reports_dir = reports_dir
    app.state.broker = broker
    app.state.lost_after_s = lost_after_s
    for module in (events, devices, sites, admin, metrics):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        """The console page (it asks for a token; the data comes from the API)."""
        return FileResponse(STATIC / "index.html")

    return app
