"""What the console API takes and gives, each field described (they are the OpenAPI docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from geofence.vocabulary import EVENT_KINDS

SITE_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
#: Free text we keep: anything but NUL (which PostgreSQL cannot store).
TEXT = r"^[^\x00]*$"


class EventOut(BaseModel):
    id: str = Field(description="Opaque id of this event: use it with GET /events/{id}.")
    device_id: str = Field(description="The device, as supplier/device.")
    supplier: str = Field(description="The device's supplier.")
    kind: str = Field(description=f"{', '.join(EVENT_KINDS[:-1])} or {EVENT_KINDS[-1]}.")
    event_ms: int = Field(description="When it happened: the causing fix's time, UTC ms.")
    seq: int = Field(description="The causing fix's sequence number (-1 if none).")
    site: str | None = Field(description="The site the device was working at.")
    fence: str | None = Field(description="The safe-zone fence involved, if any.")
    distance_m: float | None = Field(
        description="Signed distance to the safe-zone edge at the event (+ inside), metres."
    )


class EventPage(BaseModel):
    events: list[EventOut] = Field(
        description="This page, in the order asked: newest first unless order=oldest."
    )
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class FixOut(BaseModel):
    seq: int = Field(description="The device's sequence number (-1 when its format has none).")
    fix_ms: int = Field(description="Device fix time, UTC ms.")
    received_ms: int = Field(description="When ingest received it, UTC ms.")
    decided_ms: int = Field(description="When the geofence decided on it, UTC ms.")
    alert_ms: int | None = Field(description="When an alert it raised was published, UTC ms.")
    lat: float = Field(description="Latitude as the device reported it, degrees.")
    lon: float = Field(description="Longitude as the device reported it, degrees.")
    accuracy_m: float | None = Field(description="Horizontal accuracy the device claimed, m.")
    x_m: float | None = Field(
        description="Where ingest placed it in its site's metric frame (east), m: the frame "
        "of the site ingest worked (track draws the fixes on the console's drawing)."
    )
    y_m: float | None = Field(
        description="Where ingest placed it in its site's metric frame (north), m."
    )
    distance_m: float | None = Field(description="Signed distance to the safe-zone edge, m.")
    state: str = Field(description="The device's state after this fix.")


class HopLatencies(BaseModel):
    device_to_ingest_ms: int | None = Field(
        description="Receive time minus the device's fix time (includes any device clock error)."
    )
    decision_ms: int | None = Field(description="Decision time minus receive time.")
    alert_publish_ms: int | None = Field(description="Alert publish time minus decision time.")


class TrackPoint(BaseModel):
    fix_ms: int = Field(description="Device fix time, UTC ms.")
    seq: int = Field(description="The fix's sequence number (-1 when its format has none).")
    x_m: float = Field(description="East of the site's centre in the drawing, metres.")
    y_m: float = Field(description="North of the site's centre in the drawing, metres.")
    state: str = Field(description="The device's state after this fix.")
    event: bool = Field(description="True for the fix that caused the event.")


class EventTrack(BaseModel):
    site_id: str = Field(description="The site it is drawn on (GET /sites/{site_id}/map).")
    version: int = Field(
        description="The site version it is drawn on (GET /sites/{site_id}/map?version=)."
    )
    placed: Literal["as decided", "from reported position"] = Field(
        description="as decided: each point is where ingest placed the fix when it decided "
        "on it (the site version reproduces every decision's distance to the edge); from "
        "reported position: no version of the site does, so the fixes are placed from the "
        "latitude and longitude they reported, read as ETRS89 (within about a metre)."
    )
    points: list[TrackPoint] = Field(
        description="The device's fixes at this site, oldest first, in the site's drawing."
    )


class EventDetail(BaseModel):
    event: EventOut = Field(description="The event.")
    alert_published_ms: int | None = Field(
        description="When the tap on the shoulder was published, if this event alerts."
    )
    hops: HopLatencies = Field(description="Hop latencies of the fix that caused the event.")
    fixes: list[FixOut] = Field(description="The device's fixes from a minute before to after.")
    track: EventTrack | None = Field(
        description="Those fixes drawn on the event's site, for the site map; null when the "
        "event has no site, the console keeps no drawing of it (a site with that id, or "
        "whose document's `name` member is that name), or no fix can be placed."
    )


class DeviceOut(BaseModel):
    device_id: str = Field(description="supplier/device.")
    supplier: str = Field(description="The supplier.")
    firmware: str | None = Field(description="Firmware version its last fix reported.")
    state: str = Field(
        description="SAFE, WARNING or BREACH after its last fix; LOST when silent for longer "
        "than the lost-protection time."
    )
    last_fix_ms: int = Field(description="Its last accepted fix time, UTC ms.")
    seconds_since_fix: float = Field(description="Seconds from its last fix's receipt to now.")
    lat: float = Field(description="Last reported latitude, degrees.")
    lon: float = Field(description="Last reported longitude, degrees.")
    accuracy_m: float | None = Field(description="Last claimed horizontal accuracy, metres.")
    site: str | None = Field(description="The site it works at.")


class SiteIn(BaseModel):
    site_id: str = Field(
        pattern=SITE_ID_PATTERN,
        description="A short lower-case id for the site (letters, digits, - and _).",
    )
    note: str = Field(
        min_length=1, max_length=500, pattern=TEXT, description="Why it is being created."
    )
    geojson: dict[str, Any] = Field(
        description="The site as a GeoJSON FeatureCollection (RFC 7946, lon/lat): every "
        'feature a worksite unless its properties say "kind": "exclusion".'
    )


class SiteChange(BaseModel):
    note: str = Field(
        min_length=1, max_length=500, pattern=TEXT, description="Why the fences change."
    )
    geojson: dict[str, Any] = Field(description="The whole site as it is to be, GeoJSON.")


class SiteVersionOut(BaseModel):
    site_id: str = Field(description="The site.")
    version: int = Field(description="Versions count up from 1; none is ever overwritten.")
    created_ms: int = Field(description="When this version was made, UTC ms.")
    author: str = Field(description="The token name that made it.")
    note: str = Field(description="Why it was made.")
    retired: bool = Field(description="True: the site was retired by this version.")
    geojson: dict[str, Any] = Field(description="The site's fences in this version.")


class TokenIn(BaseModel):
    name: str = Field(
        min_length=1, max_length=100, pattern=TEXT, description="Who or what holds the token."
    )
    role: str = Field(
        pattern="^(viewer|operator|supplier|admin)$",
        description="viewer, operator, supplier or admin.",
    )
    supplier: str | None = Field(
        default=None,
        max_length=100,
        pattern=r"^[^\x00/]+$",
        description="For a supplier token: the supplier it may read.",
    )


class TokenOut(BaseModel):
    token: str = Field(description="The bearer token. Shown once: only its digest is kept.")
    name: str = Field(description="Who holds it.")
    role: str = Field(description="Its role.")
    supplier: str | None = Field(description="Its supplier, for a supplier token.")


class ReportFile(BaseModel):
    name: str = Field(description="File name, for GET /trials/reports/{name}.")
    bytes: int = Field(description="Size.")


class Health(BaseModel):
    database: str = Field(description="ok or unreachable.")
    broker: str = Field(description="ok, unreachable or not configured.")


class MapArea(BaseModel):
    name: str = Field(description="The fence's name.")
    kind: str = Field(description="safe_zone, danger_zone or exclusion.")
    rings: list[list[list[float]]] = Field(
        description="Its outline(s) in site metres ([x east, y north] from the site's centre)."
    )


class MapLine(BaseModel):
    name: str = Field(description="The track's name.")
    open: bool = Field(description="Open to traffic (it then has a danger zone).")
    points: list[list[float]] = Field(description="Its centreline in site metres.")


class MapDevice(BaseModel):
    device_id: str = Field(description="supplier/device.")
    state: str = Field(description="SAFE, WARNING, BREACH or LOST.")
    x_m: float = Field(description="East of the site's centre, metres.")
    y_m: float = Field(description="North of the site's centre, metres.")
    accuracy_m: float | None = Field(description="Claimed horizontal accuracy, metres.")
    seconds_since_fix: float = Field(description="Seconds since its last fix was received.")


class SiteMap(BaseModel):
    site_id: str = Field(description="The site.")
    version: int = Field(description="The site version drawn.")
    areas: list[MapArea] = Field(description="Safe zones, danger zones and exclusions.")
    lines: list[MapLine] = Field(description="Track centrelines.")
    devices: list[MapDevice] = Field(description="Devices working at this site, as last seen.")
