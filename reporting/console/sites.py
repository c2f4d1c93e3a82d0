"""Sites and their fences as GeoJSON: created, changed and retired, every version kept.

A change is a new version that names who made it and why; nothing is overwritten,
because configuration drift is a failure mode the task force must be able to trace.
A site is validated whole (the geofence core builds it) before anything is kept.
"""

from __future__ import annotations

import json
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Path, Query, Request, status

from geofence.errors import GeofenceError
from reporting.console.deps import Editor, Reader, StoreDep
from reporting.console.devices import overview
from reporting.console.models import (
    MapArea,
    MapDevice,
    MapLine,
    SiteChange,
    SiteIn,
    SiteMap,
    SiteVersionOut,
)
from store import SiteVersion, Store, StoreError
from trackfence.sites import site_from_geojson

router = APIRouter(tags=["sites"])
SiteId = Annotated[str, Path(max_length=64, description="The site's id.")]

#: A site document larger than this is refused (a worksite is a few kilobytes).
MAX_DOCUMENT_BYTES = 2_000_000
#: Every number in a site document is finite and no larger than this (degrees, mph and
#: metres are far smaller): beyond it, or NaN or Infinity, is refused before the geometry.
MAX_NUMBER = 1e15


def _out(v: SiteVersion) -> SiteVersionOut:
    return SiteVersionOut(
        site_id=v.site_id,
        version=v.version,
        created_ms=v.created_ms,
        author=v.author,
        note=v.note,
        retired=v.retired,
        geojson=json.loads(v.document),
    )


def _bounded_numbers(document: dict) -> None:
    """Refuse a site document holding a number out of range (checked without recursion)."""
    pending: list[object] = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            continue
        elif not -MAX_NUMBER <= value <= MAX_NUMBER:  # NaN too; an int of any size compares
            shown = repr(value) if isinstance(value, float) else f"{len(str(abs(value)))} digits"
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"a site document's numbers are finite and at most {MAX_NUMBER:.0e} in size: "
                f"{shown} is not",
            )


def _validated(site_id: str, geojson: dict) -> str:
    _bounded_numbers(geojson)
    text = json.dumps(geojson, separators=(",", ":"))
    if len(text) > MAX_DOCUMENT_BYTES:
        raise HTTPException(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            f"a site document is at most {MAX_DOCUMENT_BYTES:,} bytes",
        )
    try:
        site_from_geojson(site_id, geojson)
    except GeofenceError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return text


def _history(store: Store, site_id: str) -> list[SiteVersion]:
    history = store.site_versions(site_id)
    if not history:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no site {site_id!r}")
    return history


def _keep(store: Store, site_id: str, document: str, author: str, note: str, retired=False):
    try:
        return store.save_site_version(site_id, document, author, note, retired)
    except StoreError as exc:  # another change landed first: the version number is taken
        raise HTTPException(status.HTTP_409_CONFLICT, f"site changed meanwhile: {exc}") from None


@router.get("/sites", response_model=list[SiteVersionOut], summary="Every site, newest version")
def sites(
    store: StoreDep,
    who: Reader,
    include_retired: Annotated[bool, Query(description="Also list retired sites.")] = False,
) -> list[SiteVersionOut]:
    latest: dict[str, SiteVersion] = {}
    for v in store.site_versions():
        latest[v.site_id] = v  # versions come in order: the last one wins
    return [_out(v) for v in latest.values() if include_retired or not v.retired]


@router.post(
    "/sites",
    response_model=SiteVersionOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a site (operator, admin)",
)
def create_site(body: SiteIn, store: StoreDep, who: Editor) -> SiteVersionOut:
    if store.site_versions(body.site_id):
        raise HTTPException(status.HTTP_409_CONFLICT, f"site {body.site_id!r} already exists")
    document = _validated(body.site_id, body.geojson)
    return _out(_keep(store, body.site_id, document, who.name, body.note))


@router.get("/sites/{site_id}", response_model=SiteVersionOut, summary="A site, newest version")
def site(site_id: SiteId, store: StoreDep, who: Reader) -> SiteVersionOut:
    return _out(_history(store, site_id)[-1])


@router.put(
    "/sites/{site_id}",
    response_model=SiteVersionOut,
    summary="Change a site's fences: a new version (operator, admin)",
)
def change_site(site_id: SiteId, body: SiteChange, store: StoreDep, who: Editor) -> SiteVersionOut:
    if _history(store, site_id)[-1].retired:
        raise HTTPException(status.HTTP_409_CONFLICT, f"site {site_id!r} is retired")
    document = _validated(site_id, body.geojson)
    return _out(_keep(store, site_id, document, who.name, body.note))


@router.delete(
    "/sites/{site_id}",
    response_model=SiteVersionOut,
    summary="Retire a site: a last version, kept (operator, admin)",
)
def retire_site(
    site_id: SiteId,
    store: StoreDep,
    who: Editor,
    note: Annotated[str, Query(min_length=1, max_length=500, description="Why.")],
) -> SiteVersionOut:
    latest = _history(store, site_id)[-1]
    if latest.retired:
        raise HTTPException(status.HTTP_409_CONFLICT, f"site {site_id!r} is already retired")
    return _out(_keep(store, site_id, latest.document, who.name, note, retired=True))


@router.get(
    "/sites/{site_id}/versions",
    response_model=list[SiteVersionOut],
    summary="Every version of a site, oldest first",
)
def site_versions(site_id: SiteId, store: StoreDep, who: Reader) -> list[SiteVersionOut]:
    return [_out(v) for v in _history(store, site_id)]


def _rings(geometry) -> list[list[list[float]]]:
    rings = []
    for polygon in getattr(geometry, "geoms", [geometry]):
        rings.append([[round(x, 3), round(y, 3)] for x, y in polygon.exterior.coords])
        rings += [[[round(x, 3), round(y, 3)] for x, y in i.coords] for i in polygon.interiors]
    return rings


@router.get(
    "/sites/{site_id}/map",
    response_model=SiteMap,
    summary="A site drawn in its own metric frame, with the devices working there",
)
def site_map(site_id: SiteId, request: Request, store: StoreDep, who: Reader) -> SiteMap:
    latest = _history(store, site_id)[-1]
    built = site_from_geojson(site_id, json.loads(latest.document))
    areas = [
        MapArea(name=f.name, kind=kind, rings=_rings(f.geometry))
        for kind, fences in (
            ("safe_zone", built.safe_zones),
            ("danger_zone", built.danger_zones),
            ("exclusion", built.exclusions),
        )
        for f in fences
    ]
    lines = [
        MapLine(
            name=line.name,
            open=line.open,
            points=[[round(x, 3), round(y, 3)] for x, y in line.centreline_m],
        )
        for line in built.lines
    ]
    here = [d for d in overview(request, store, who, None) if d.site == site_id]
    devices = []
    if here:
        x, y = built.frame.from_etrs89(
            np.array([d.lat for d in here]), np.array([d.lon for d in here])
        )
        devices = [
            MapDevice(
                device_id=d.device_id,
                state=d.state,
                x_m=round(float(xi), 3),
                y_m=round(float(yi), 3),
                accuracy_m=d.accuracy_m,
                seconds_since_fix=d.seconds_since_fix,
            )
            for d, xi, yi in zip(here, x, y, strict=True)
        ]
    return SiteMap(
        site_id=site_id, version=latest.version, areas=areas, lines=lines, devices=devices
    )
