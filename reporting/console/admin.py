"""Tokens, trial reports and health: the console's housekeeping routes."""

from __future__ import annotations

import re
import socket
from typing import Annotated
from urllib.parse import urlparse

from fastapi import APIRouter, HTTPException, Path, Request, status
from fastapi.responses import FileResponse, JSONResponse

from reporting.console.auth import Principal, Role, issue_token
from reporting.console.deps import Admin, Reader, StoreDep
from reporting.console.models import Health, ReportFile, TokenIn, TokenOut

router = APIRouter()

#: Report files are served by name only: no folders, no "..", and names as a supplier's key
#: is spelt on the broker (letters, digits, dot, dash, underscore: wire/topics.py).
REPORT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.(html|pdf|json|md|png)$")
#: How reporting/write.py lays a trial's reports out: REPORT/<name>.html .pdf .json .md,
#: and REPORT/plots/<name>-<plot>.png, where <name> is "summary" or a supplier's key...
REPORT_FORMATS = ("html", "pdf", "json", "md")
#: ...and <plot> one of these (reporting/plots.py `draw_all`; a test keeps them in step).
PLOT_KINDS = ("error-cdf", "time-to-alert", "availability", "breach-timeline", "site-map")


@router.post(
    "/tokens",
    response_model=TokenOut,
    status_code=status.HTTP_201_CREATED,
    tags=["access"],
    summary="Issue a bearer token (admin)",
)
def create_token(body: TokenIn, store: StoreDep, who: Admin) -> TokenOut:
    try:
        token = issue_token(store, body.name, body.role, body.supplier)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return TokenOut(token=token, name=body.name, role=body.role, supplier=body.supplier)


def _own_files(supplier: str) -> frozenset[str]:
    """Exactly the files of a supplier's own report: never the comparative summary, and
    never another supplier's, even one whose key starts with this one's ("phones-uk")."""
    return frozenset(
        [f"{supplier}.{ext}" for ext in REPORT_FORMATS]
        + [f"plots/{supplier}-{kind}.png" for kind in PLOT_KINDS]
    )


def _reports(request: Request, who: Principal) -> dict[str, Path]:
    """The report files this principal may read, by name; a file must lie in the folder
    itself (a link out of it is not served), reports at the top and plots in plots/."""
    folder = request.app.state.reports_dir
    if folder is None or not folder.is_dir():
        return {}
    root = folder.resolve()
    own = _own_files(who.supplier or "") if who.role == Role.SUPPLIER else None
    found: dict[str, Path] = {}
    for where, pattern in (("", "*"), ("plots/", "plots/*")):
        for path in sorted(folder.glob(pattern)):
            name = path.name
            if not REPORT_NAME.match(name) or (name.endswith(".png") != (where == "plots/")):
                continue
            if own is not None and f"{where}{name}" not in own:
                continue
            if path.is_file() and path.resolve().parent == root / where.rstrip("/"):
                found.setdefault(name, path)
    return found


@router.get(
    "/trials/reports",
    response_model=list[ReportFile],
    tags=["trials"],
    summary="The trial report files (a supplier sees only its own)",
)
def reports(request: Request, who: Reader) -> list[ReportFile]:
    return [
        ReportFile(name=name, bytes=path.stat().st_size)
        for name, path in sorted(_reports(request, who).items())
    ]


@router.get("/trials/reports/{name}", tags=["trials"], summary="One trial report file")
def report(
    name: Annotated[str, Path(max_length=200, description="A file name from the listing.")],
    request: Request,
    who: Reader,
) -> FileResponse:
    path = _reports(request, who).get(name) if REPORT_NAME.match(name) else None
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no report {name!r}")
    return FileResponse(path)


def _broker_ok(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 1883), timeout=1.0):
            return True
    except OSError:
        return False


@router.get(
    "/health",
    response_model=Health,
    tags=["operations"],
    summary="Is the database (and broker) reachable? 503 if not",
    responses={503: {"model": Health}},
)
def health(request: Request, store: StoreDep):
    broker = request.app.state.broker
    body = Health(
        database="ok" if store.ping() else "unreachable",
        broker="not configured"
        if broker is None
        else ("ok" if _broker_ok(broker) else "unreachable"),
    )
    code = 503 if "unreachable" in (body.database, body.broker) else 200
    return JSONResponse(body.model_dump(), status_code=code)
