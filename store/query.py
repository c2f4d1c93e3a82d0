"""Query pieces both backends share (their tables have the same columns; see records)."""

from __future__ import annotations

from store.records import EventQuery

#: The breach log's keyset: the events table's columns a page is ordered and cut by.
EVENT_KEY = ("event_time", "device_id", "kind", "seq")


def range_filter(
    device_id: str | None,
    since_ms: int | None,
    until_ms: int | None,
    time_column: str,
    placeholder: str,
    ms_to_time: str = "{}",
) -> tuple[str, list]:
    """A WHERE clause (or "") for one device and a half-open time range [since, until).

    `time_column` is the table's time column (`fix_time`, `event_time`, `alarm_time`);
    `placeholder` is the driver's parameter mark ("?" or "%s"); `ms_to_time` turns a
    millisecond parameter into the column's type ("{}" when the column holds ms).

    >>> range_filter("acme/a1", 5, None, "fix_time", "?")
    (' WHERE device_id = ? AND fix_time >= ?', ['acme/a1', 5])
    """
    clauses, params = [], []
    if device_id is not None:
        clauses.append(f"device_id = {placeholder}")
        params.append(device_id)
    at = ms_to_time.format(placeholder)
    if since_ms is not None:
        clauses.append(f"{time_column} >= {at}")
        params.append(since_ms)
    if until_ms is not None:
        clauses.append(f"{time_column} < {at}")
        params.append(until_ms)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def event_filter(
    q: EventQuery, placeholder: str, ms_to_time: str = "{}", newest_first: bool = False
) -> tuple[str, list]:
    """The breach log's WHERE clause for an EventQuery, keyset cursor included: the rows
    strictly after q.after in the page's order (before it in time when `newest_first`).

    >>> event_filter(EventQuery(kinds=("breach",), after=(7, "acme/a1", "breach", 3)), "?")[0]
    ' WHERE kind IN (?) AND (event_time, device_id, kind, seq) > (?, ?, ?, ?)'
    """
    where, params = range_filter(
        q.device_id, q.since_ms, q.until_ms, EVENT_KEY[0], placeholder, ms_to_time
    )
    clauses = [where[len(" WHERE ") :]] if where else []
    if q.site is not None:
        clauses.append(f"site = {placeholder}")
        params.append(q.site)
    if q.supplier is not None:
        # device ids are "supplier/device": a prefix match, with LIKE's wildcards escaped
        clauses.append(f"device_id LIKE {placeholder} ESCAPE '\\'")
        escaped = q.supplier.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params.append(f"{escaped}/%")
    if q.kinds:
        clauses.append(f"kind IN ({', '.join(placeholder for _ in q.kinds)})")
        params.extend(q.kinds)
    if q.after is not None:
        at = ms_to_time.format(placeholder)
        beyond = "<" if newest_first else ">"
        clauses.append(
            f"({', '.join(EVENT_KEY)}) {beyond} ({at}, {placeholder}, {placeholder}, "
            f"{placeholder})"
        )
        params.extend(q.after)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def event_order(newest_first: bool = False) -> str:
    """The breach log's ORDER BY: its keyset (time, device, kind, seq), either way (both
    directions read the same index, forwards or backwards).

    >>> event_order(newest_first=True)
    'event_time DESC, device_id DESC, kind DESC, seq DESC'
    """
    way = " DESC" if newest_first else ""
    return ", ".join(f"{c}{way}" for c in EVENT_KEY)
