"""The breach log: events by time, site, supplier, device and kind; pages; CSV and GeoJSON."""

from __future__ import annotations

import asyncio
import base64
import csv
import datetime as dt
import io
import json
import time
from collections import OrderedDict
from enum import StrEnum
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from geofence.vocabulary import EventKind
from reporting.console.auth import Principal, Role
from reporting.console.deps import Reader, StoreDep
from reporting.console.models import EventDetail, EventOut, EventPage, FixOut, HopLatencies
from reporting.console.site_routes import drawn_track
from store import Event, EventQuery, Store

router = APIRouter(tags=["breach log"])


#: The breach log's kind filter: the core's event kinds (geofence.vocabulary.EventKind),
#: under the name and description the API's schema has always given them.
EventKindName = StrEnum("EventKindName", [(k.name, k.value) for k in EventKind])
EventKindName.__doc__ = "What a breach-log event records."


#: An event's detail shows the device's fixes this long either side of it.
AROUND_MS = 60_000
MAX_PAGE = 1000
#: The live stream polls the store this often...
LIVE_POLL_S = 0.25
#: ...looking back this far each time (events written late still appear)...
LIVE_LOOKBACK_MS = 60_000
#: ...remembering this many events it has sent, so each is sent once.
LIVE_SEEN = 20_000
HEARTBEAT_S = 15.0

#: Every time the console takes from outside (a filter, or inside a cursor or an event id)
#: lies from 1970 to the end of 9999 UTC, in ms: what a datetime holds, and well inside
#: SQLite's 64-bit integers and PostgreSQL's timestamps, with a minute either side to spare.
MIN_MS, MAX_MS = 0, 253_402_300_799_999
#: A fix's sequence number: -1 (its format has none) up to the 64-bit integer it is kept as.
MIN_SEQ, MAX_SEQ = -1, 2**63 - 1
#: A device id is supplier/device, as long as the breach log's device filter allows.
MAX_DEVICE_ID = 200
KINDS = frozenset(k.value for k in EventKind)
#: The breach log's orders: newest first (what the console page shows) or oldest first.
ORDER_RULE = (
    "newest (newest first, the default) or oldest (oldest first). A cursor is a place in "
    "the log: the next page carries on from it in the order asked, so keep the order "
    "when paging"
)
DEVICE_RULE = (
    f"device_id must be text supplier/device of 1 to {MAX_DEVICE_ID} characters, without NUL "
    "or unpaired surrogates"
)


def _encode(key: tuple[int, str, str, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def _refuse(what: str, why: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"not a valid {what}: {why}")


def _whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _text_ok(value: object, longest: int) -> bool:
    """Text the store can keep and search: not empty, not too long, no NUL, no lone
    surrogate (JSON's \\ud800 escapes make one, and neither database can encode it)."""
    if not isinstance(value, str) or not 0 < len(value) <= longest or "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _decode(text: str, what: str) -> tuple[int, str, str, int]:
    """A cursor or an event id: base64url of [event_ms, device_id, kind, seq], each checked
    here, at the edge, so nothing out of range reaches a query (a 422 naming the field)."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, RecursionError):  # binascii, UTF-8 and JSON errors are ValueErrors
        raise _refuse(what, "not base64url of a JSON list") from None
    if not isinstance(raw, list) or len(raw) != 4:
        raise _refuse(what, "not a list of [event_ms, device_id, kind, seq]")
    ms, device, kind, seq = raw
    if not _whole(ms, MIN_MS, MAX_MS):
        raise _refuse(what, f"event_ms must be a whole number from {MIN_MS} to {MAX_MS}")
    if not _text_ok(device, MAX_DEVICE_ID) or "/" not in device:
        raise _refuse(what, DEVICE_RULE)
    if not isinstance(kind, str) or kind not in KINDS:
        raise _refuse(what, f"kind must be one of {', '.join(EventKind)}")
    if not _whole(seq, MIN_SEQ, MAX_SEQ):
        raise _refuse(what, f"seq must be a whole number from {MIN_SEQ} to {MAX_SEQ}")
    return ms, device, kind, seq


def event_out(e: Event) -> EventOut:
    return EventOut(
        id=_encode((e.event_ms, e.device_id, e.kind, e.seq)),
        device_id=e.device_id,
        supplier=e.device_id.split("/", 1)[0],
        kind=e.kind,
        event_ms=e.event_ms,
        seq=e.seq,
        site=e.site,
        fence=e.fence,
        distance_m=e.distance_m,
    )


def _ms(value: dt.datetime | None, name: str) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{name} needs a time zone (for example 2026-06-01T09:00:00Z)",
        )
    ms = round(value.timestamp() * 1000)
    if not MIN_MS <= ms <= MAX_MS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{name} must be from 1970-01-01 to 9999-12-31 (UTC)",
        )
    return ms


def _range(since: dt.datetime | None, until: dt.datetime | None) -> tuple[int | None, int | None]:
    since_ms, until_ms = _ms(since, "since"), _ms(until, "until")
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "until must be after since")
    return since_ms, until_ms


def _may_see(who: Principal, device: str | None) -> None:
    if device is not None and not who.sees_device(device):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a supplier reads only its own devices")


def _scoped(who: Principal, supplier: str | None) -> str | None:
    """The supplier filter a principal may use: a supplier only ever sees its own."""
    if who.role != Role.SUPPLIER:
        return supplier
    if supplier is not None and supplier != who.supplier:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a supplier reads only its own events")
    return who.supplier


@router.get(
    "/events",
    response_model=EventPage,
    summary="The breach log",
    responses={200: {"content": {"text/csv": {}, "application/geo+json": {}}}},
)
def breach_log(
    store: StoreDep,
    who: Reader,
    since: Annotated[
        dt.datetime | None, Query(description="From this time (ISO 8601 with a zone), inclusive.")
    ] = None,
    until: Annotated[
        dt.datetime | None, Query(description="Up to this time (ISO 8601 with a zone), exclusive.")
    ] = None,
    site: Annotated[str | None, Query(max_length=200, description="Only this site.")] = None,
    supplier: Annotated[
        str | None, Query(max_length=100, description="Only this supplier's devices.")
    ] = None,
    device: Annotated[
        str | None, Query(max_length=200, description="Only this device (supplier/device).")
    ] = None,
    kind: Annotated[
        list[EventKindName] | None,
        Query(description="Only these kinds (repeat the parameter for several)."),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE, description=f"Events per page (1 to {MAX_PAGE}).")
    ] = 100,
    cursor: Annotated[
        str | None,
        Query(max_length=500, description="next_cursor of the previous page (same order)."),
    ] = None,
    order: Annotated[Literal["newest", "oldest"], Query(description=ORDER_RULE + ".")] = "newest",
    format: Annotated[
        Literal["json", "csv", "geojson"],
        Query(description="json (paged), or csv / geojson for export (cursor in X-Next-Cursor)."),
    ] = "json",
):
    since_ms, until_ms = _range(since, until)
    supplier = _scoped(who, supplier)
    _may_see(who, device)
    query = EventQuery(
        since_ms=since_ms,
        until_ms=until_ms,
        site=site,
        supplier=supplier,
        device_id=device,
        kinds=tuple(k.value for k in kind or ()),
        after=_decode(cursor, "cursor") if cursor else None,
        limit=limit,
    )
    events = store.breach_log(query, newest_first=order == "newest")
    last = events[-1] if len(events) == limit else None
    next_cursor = _encode((last.event_ms, last.device_id, last.kind, last.seq)) if last else None
    rows = [event_out(e) for e in events]
    headers = {"X-Next-Cursor": next_cursor} if next_cursor else {}
    if format == "csv":
        return Response(_csv(rows), media_type="text/csv", headers=headers)
    if format == "geojson":
        return JSONResponse(
            _geojson(store, rows), media_type="application/geo+json", headers=headers
        )
    return EventPage(events=rows, next_cursor=next_cursor)


def _csv(rows: list[EventOut]) -> str:
    out = io.StringIO()
    fields = list(EventOut.model_fields)
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        writer.writerow(r.model_dump())
    return out.getvalue()


def _geojson(store: Store, rows: list[EventOut]) -> dict:
    """Each event at the position its causing fix reported (null if that fix is not kept)."""
    where: dict[tuple[str, int], tuple[float, float]] = {}
    for device in {r.device_id for r in rows}:
        times = [r.event_ms for r in rows if r.device_id == device]
        for f in store.fixes(device, min(times), max(times) + 1):
            where.setdefault((device, f.fix_ms), (f.lon, f.lat))
    features = []
    for r in rows:
        at = where.get((r.device_id, r.event_ms))
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": list(at)} if at else None,
                "properties": r.model_dump(),
            }
        )
    return {"type": "FeatureCollection", "features": features}


@router.get(
    "/events/stream",
    summary="The breach log live (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def live(
    request: Request,
    store: StoreDep,
    who: Reader,
    site: Annotated[str | None, Query(max_length=200, description="Only this site.")] = None,
    supplier: Annotated[
        str | None, Query(max_length=100, description="Only this supplier's devices.")
    ] = None,
    device: Annotated[
        str | None, Query(max_length=200, description="Only this device (supplier/device).")
    ] = None,
    kind: Annotated[
        list[EventKindName] | None,
        Query(description="Only these kinds (repeat the parameter for several)."),
    ] = None,
    since: Annotated[
        dt.datetime | None,
        Query(description="Only events from this time (ISO 8601 with a zone), inclusive."),
    ] = None,
    until: Annotated[
        dt.datetime | None,
        Query(
            description="Only events before this time (ISO 8601 with a zone); the stream "
            "ends once no event before it can still arrive."
        ),
    ] = None,
    duration_s: Annotated[
        float | None,
        Query(gt=0, le=86_400, description="Close the stream after this long (default: never)."),
    ] = None,
) -> StreamingResponse:
    """Each new event as an SSE message (`event:` its kind, `data:` the event as JSON).

    The stream reads the store, so it shows what is kept, from every ingest worker. It
    starts with the last minute's events, and looks back that far on every poll, so
    an event written a little late (a fix that arrived out of order) still appears;
    each event is sent once. It takes the breach log's filters, so a page showing a
    filtered log follows it with the same filters.
    """
    since_ms, until_ms = _range(since, until)
    supplier = _scoped(who, supplier)
    _may_see(who, device)
    kinds = tuple(k.value for k in kind or ())
    began = time.monotonic()

    async def stream():
        seen: OrderedDict[str, None] = OrderedDict()
        last_beat = time.monotonic()
        yield ": the breach log, live\n\n"
        while not await request.is_disconnected():
            if duration_s is not None and time.monotonic() - began > duration_s:
                return
            recent = time.time_ns() // 1_000_000 - LIVE_LOOKBACK_MS
            if until_ms is not None and recent >= until_ms:
                return  # every event before `until` that could still arrive was looked for
            query = EventQuery(since_ms=max(recent, since_ms or MIN_MS), until_ms=until_ms,
                               site=site, supplier=supplier, device_id=device, kinds=kinds,
                               limit=MAX_PAGE)  # fmt: skip
            for e in await run_in_threadpool(store.breach_log, query):
                out = event_out(e)
                if out.id in seen:
                    continue
                seen[out.id] = None
                if len(seen) > LIVE_SEEN:
                    seen.popitem(last=False)
                yield f"id: {out.id}\nevent: {out.kind}\ndata: {out.model_dump_json()}\n\n"
            if time.monotonic() - last_beat > HEARTBEAT_S:
                last_beat = time.monotonic()
                yield ": still here\n\n"  # keeps proxies from closing a quiet stream
            await asyncio.sleep(LIVE_POLL_S)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@router.get("/events/{event_id}", response_model=EventDetail, summary="One event, in detail")
def event_detail(
    event_id: Annotated[str, Path(max_length=500, description="An event's id (breach log).")],
    store: StoreDep,
    who: Reader,
) -> EventDetail:
    ms, device, kind, seq = _decode(event_id, "event id")
    if not who.sees_device(device):
        # a supplier cannot even learn that another supplier's event exists
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such event")
    found = [
        e
        for e in store.breach_log(EventQuery(since_ms=ms, until_ms=ms + 1, device_id=device))
        if e.kind == kind and e.seq == seq
    ]
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such event")
    fixes = store.fixes(device, ms - AROUND_MS, ms + AROUND_MS + 1)
    cause = next((f for f in fixes if f.fix_ms == ms and f.seq == seq), None)
    alert = next(
        (a for a in store.alerts(device, ms, ms + 1) if a.kind == kind and a.seq == seq),
        None,
    )
    return EventDetail(
        event=event_out(found[0]),
        alert_published_ms=alert.published_ms if alert else None,
        hops=HopLatencies(
            device_to_ingest_ms=(cause.received_ms - cause.fix_ms) if cause else None,
            decision_ms=(cause.decided_ms - cause.received_ms) if cause else None,
            alert_publish_ms=((alert.published_ms - cause.decided_ms) if cause and alert else None),
        ),
        fixes=[
            FixOut(
                seq=f.seq,
                fix_ms=f.fix_ms,
                received_ms=f.received_ms,
                decided_ms=f.decided_ms,
                alert_ms=f.alert_ms,
                lat=f.lat,
                lon=f.lon,
                accuracy_m=f.accuracy_m,
                x_m=f.x_m,
                y_m=f.y_m,
                distance_m=f.distance_m,
                state=f.state,
            )
            for f in fixes
        ],
        track=drawn_track(store, found[0].site, fixes, (ms, seq)),
    )
