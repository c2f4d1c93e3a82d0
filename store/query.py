"""Query pieces both backends share."""

from __future__ import annotations


def range_filter(
    device_id: str | None,
    since_ms: int | None,
    until_ms: int | None,
    time_column: str,
    placeholder: str,
    ms_to_time: str = "{}",
) -> tuple[str, list]:
    """A WHERE clause (or "") for one device and a half-open time range [since, until).

    `placeholder` is the driver's parameter mark ("?" or "%s"); `ms_to_time` turns a
    millisecond parameter into the column's type ("{}" when the column holds ms).
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
