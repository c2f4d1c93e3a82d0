"""Sites and their fences as GeoJSON: created, changed and retired, every version kept.

A change is a new version that names who made it and why; nothing is overwritten,
because configuration drift is a failure mode the task force must be able to trace.
A site is validated whole (the geofence core builds it) before anything is kept.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Path, Query, Request, status

from geofence.errors import GeofenceError
from geofence.site import Site
from loading.site_files import site_from_geojson
from reporting.console.deps import Editor, Reader, StoreDep
from reporting.console.devices import overview
from reporting.console.models import (
    EventTrack,
    MapArea,
    MapDevice,
    MapLine,
    SiteChange,
    SiteIn,
    SiteMap,
    SiteVersionOut,
    TrackPoint,
)
from store import Fix, SiteVersion, Store, StoreError

router = APIRouter(tags=["sites"])
#: A site id is at most this long (the ids the console makes match models.SITE_ID_PATTERN).
MAX_SITE_ID = 64
SiteId = Annotated[str, Path(max_length=MAX_SITE_ID, description="The site's id.")]
#: Versions count up from 1, kept as a 32-bit integer at most.
MAX_VERSION = 2**31 - 1

#: A site document larger than this is refused (a worksite is a few kilobytes).
MAX_DOCUMENT_BYTES = 2_000_000
#: Every number in a site document is finite and no larger than this (degrees, mph and
#: metres are far smaller): beyond it, or NaN or Infinity, is refused before the geometry.
MAX_NUMBER = 1e15
#: An event's track is drawn on the newest version of its site that reproduces the
#: decisions made on its fixes; this many versions, newest first, are tried.
TRACK_VERSIONS_TRIED = 20
#: ...each fix's distance to the safe-zone edge to within this (the same fences and frame
#: give the same number; a moved fence or another frame does not).
SAME_DECISION_M = 0.01


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


@lru_cache(maxsize=32)
def _built(site_id: str, document: str) -> Site:
    """A site version built (versions are never overwritten, so the document is the key)."""
    return site_from_geojson(site_id, json.loads(document))


def _drawn_danger_zones(document: str) -> list[bool]:
    """For each exclusion of a site document, in order, whether it is a danger zone drawn
    as one (properties `"kind": "exclusion", "danger_zone": true`, as a trial run keeps a
    site's danger zones): the geofence core takes both out of the safe zone alike, but the
    map draws a danger zone as one. Features are read as site_from_geojson reads them."""
    geojson = json.loads(document)
    features = geojson.get("features") if isinstance(geojson, dict) else None
    if not isinstance(geojson, dict) or geojson.get("type") != "FeatureCollection":
        return []
    flags = []
    for feature in features if isinstance(features, list) else []:
        props = (feature.get("properties") or {}) if isinstance(feature, dict) else {}
        if isinstance(props, dict) and props.get("kind") == "exclusion":
            flags.append(props.get("danger_zone") is True)
    return flags


def _version(store: Store, site_id: str, version: int | None) -> SiteVersion:
    history = _history(store, site_id)
    if version is None:
        return history[-1]
    for v in history:
        if v.version == version:
            return v
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"site {site_id!r} has no version {version}")


@router.get(
    "/sites/{site_id}/map",
    response_model=SiteMap,
    summary="A site drawn in its own metric frame, with the devices working there",
)
def site_map(
    site_id: SiteId,
    request: Request,
    store: StoreDep,
    who: Reader,
    version: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_VERSION,
            description="Draw this version of the site (default: the newest). An event's "
            "track names the version it is drawn on.",
        ),
    ] = None,
) -> SiteMap:
    kept = _version(store, site_id, version)
    built = _built(site_id, kept.document)
    drawn_danger = _drawn_danger_zones(kept.document)
    if len(drawn_danger) != len(built.exclusions):  # one fence per exclusion feature
        drawn_danger = [False] * len(built.exclusions)
    areas = [
        MapArea(name=f.name, kind=kind, rings=_rings(f.geometry))
        for kind, fences in (
            ("safe_zone", built.safe_zones),
            ("danger_zone", built.danger_zones),
        )
        for f in fences
    ] + [
        MapArea(
            name=f.name, kind="danger_zone" if danger else "exclusion", rings=_rings(f.geometry)
        )
        for f, danger in zip(built.exclusions, drawn_danger, strict=True)
    ]
    lines = [
        MapLine(
            name=line.name,
            open=line.open,
            points=[[round(x, 3), round(y, 3)] for x, y in line.centreline_m],
        )
        for line in built.lines
    ]
    names = {site_id, _document_name(kept.document) or site_id}  # decided on under either
    here = [d for d in overview(request, store, who, None) if d.site in names]
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
    return SiteMap(site_id=site_id, version=kept.version, areas=areas, lines=lines, devices=devices)


def _reproduces(site: Site, fixes: Sequence[Fix]) -> bool:
    """Whether this site, at the positions ingest kept, gives the distances ingest decided
    on: then those positions are in this site's frame and against these fences. At least
    one fix must be nearer the edge than the fence index's horizon (beyond it distances are
    clamped, and would agree whatever the frame)."""
    kept = [
        f for f in fixes if f.x_m is not None and f.y_m is not None and f.distance_m is not None
    ]
    if not kept:
        return False
    stored = np.array([f.distance_m for f in kept], dtype=np.float64)
    again = site.evaluate(
        np.array([f.x_m for f in kept], dtype=np.float64),
        np.array([f.y_m for f in kept], dtype=np.float64),
    ).distance_m
    near = np.abs(stored) < site.index.horizon_m
    return bool(near.any() and np.all(np.abs(again - stored) <= SAME_DECISION_M))


def _candidates(store: Store, event_site: str) -> list[list[SiteVersion]]:
    """The versions of the kept site an event's site names, newest first: the site with
    that id or, failing one, each site whose document names it (a TOML site is decided on
    under its `[site].name`, and a trial run keeps its GeoJSON, `name` and all, under its
    file's id). Sites most recently changed first."""
    if len(event_site) <= MAX_SITE_ID and (history := store.site_versions(event_site)):
        return [history[::-1]]
    named: dict[str, list[SiteVersion]] = {}
    for v in store.site_versions():
        if _document_name(v.document) == event_site:
            named.setdefault(v.site_id, []).append(v)
    return sorted((vs[::-1] for vs in named.values()), key=lambda vs: -vs[0].created_ms)


@lru_cache(maxsize=256)
def _document_name(document: str) -> str | None:
    """A site document's own `name` member (site_geojson writes the site's name there)."""
    try:
        name = json.loads(document).get("name")
    except (ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def drawn_track(
    store: Store, event_site: str | None, fixes: Sequence[Fix], cause: tuple[int, int]
) -> EventTrack | None:
    """A device's fixes at an event's site placed on the site's drawing (the map's frame),
    so the browser does no geodesy. `cause` is the (fix_ms, seq) of the event's fix.

    Placed as ingest decided where a version of the site reproduces its decisions (the
    newest such version); otherwise on the newest version, from the reported positions.
    """
    here = [f for f in fixes if event_site is not None and f.site == event_site]
    if not here or event_site is None:
        return None
    chosen, placed, x, y = None, "from reported position", None, None
    tried = 0
    for history in _candidates(store, event_site):
        for v in history:
            if tried == TRACK_VERSIONS_TRIED:
                break
            tried += 1
            try:
                site = _built(v.site_id, v.document)
            except (GeofenceError, ValueError, TypeError, AttributeError):
                continue  # a kept version the geofence core does not build (any more)
            if chosen is None:
                chosen = (v, site)
            if _reproduces(site, here):
                chosen, placed = (v, site), "as decided"
                here = [f for f in here if f.x_m is not None and f.y_m is not None]
                x = np.array([f.x_m for f in here], dtype=np.float64)
                y = np.array([f.y_m for f in here], dtype=np.float64)
                break
        if placed == "as decided":
            break
    if chosen is None:
        return None
    version, site = chosen
    if x is None:
        x, y = site.frame.from_etrs89(
            np.array([f.lat for f in here], dtype=np.float64),
            np.array([f.lon for f in here], dtype=np.float64),
        )
    points = [
        TrackPoint(
            fix_ms=f.fix_ms,
            seq=f.seq,
            x_m=round(float(xi), 3),
            y_m=round(float(yi), 3),
            state=f.state,
            event=(f.fix_ms, f.seq) == cause,
        )
        for f, xi, yi in zip(here, x, y, strict=True)
        if np.isfinite(xi) and np.isfinite(yi)
    ]
    if not points:
        return None
    return EventTrack(
        site_id=version.site_id, version=version.version, placed=placed, points=points
    )
