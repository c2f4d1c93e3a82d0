"""The device payload formats and the resolution each gives a fix time."""

from __future__ import annotations

FORMATS = ("native", "owntracks", "nmea")
#: The resolution each format gives a fix time (its digits are cut, not rounded):
#: OwnTracks' `tst` is whole seconds, NMEA's hhmmss.ss centiseconds.
TIME_RESOLUTION_MS = {"native": 1, "owntracks": 1000, "nmea": 10}
