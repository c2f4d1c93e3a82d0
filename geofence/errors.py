"""Errors the geofence core raises.

Every error names the offending item (a fence, a line, a field, a row), so that
whoever wrote the bad input can find it without reading a traceback.
"""

from __future__ import annotations


class GeofenceError(ValueError):
    """Base class: bad input to the geofence core."""


class CoordinateError(GeofenceError):
    """A coordinate that cannot be converted exactly (NaN, out of range, off the OSTN15 grid)."""


class FenceError(GeofenceError):
    """A fence that is not a usable area (self-intersecting, empty, unknown CRS)."""

    def __init__(self, fence: str, reason: str) -> None:
        self.fence = fence
        self.reason = reason
        super().__init__(f"fence {fence!r}: {reason}")


class LocationError(GeofenceError):
    """An ELR or mileage that cannot be located on the waymarks."""


class SiteError(GeofenceError):
    """A site definition that is malformed; `where` says which table and field."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")
