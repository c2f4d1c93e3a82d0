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

#: Report files are served by name only: no folders, no "..".
REPORT_NAME = re.compile(r"^[A-Za-z0-9_-]+\.(html|pdf|json|md|png)$")


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


def _visible(who: Principal, name: str) -> bool:
    """A supplier reads only its own report (and its plots), never the comparative one."""
    if who.role != Role.SUPPLIER:
        return True
    stem = name.rsplit(".", 1)[0]
    return stem == who.supplier or stem.startswith(f"{who.supplier}-")


def _reports(request: Request, who: Principal) -> dict[str, object]:
    folder = request.app.state.reports_dir
    if folder is None or not folder.is_dir():
        return {}
    found = {}
    for path in [*folder.glob("*"), *folder.glob("plots/*")]:
        if path.is_file() and REPORT_NAME.match(path.name) and _visible(who, path.name):
            found[path.name] = path
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
