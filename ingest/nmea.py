"""NMEA 0183: GGA (position, fix quality), RMC (date), GST (error estimate), with checksums.

GGA has no accuracy and no date; RMC has the date; GST has the receiver's own
1-sigma latitude/longitude errors. Without GST, accuracy is estimated as HDOP
× a typical user range error for the fix quality, and said to be an estimate.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass

#: GGA fix quality -> our fix type (0 means no fix).
_QUALITY = {1: "3D", 2: "DGPS", 4: "RTK fixed", 5: "RTK float", 6: None, 8: None}
#: Typical user-equivalent range error (m) by fix type, for HDOP × UERE when no GST.
UERE_M = {"3D": 4.0, "DGPS": 1.0, "RTK float": 0.3, "RTK fixed": 0.02}


class NmeaError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


@dataclass(frozen=True)
class Position:
    fix_ms: int
    lat: float
    lon: float
    fix_type: str | None
    satellites: int | None
    hdop: float | None
    accuracy_m: float | None


def checksum(body: str) -> str:
    value = 0
    for ch in body:
        value ^= ord(ch)
    return f"{value:02X}"


def sentence(body: str) -> str:
    """A full sentence from its body (for tests and the simulator): $body*CS."""
    return f"${body}*{checksum(body)}"


def _fields(line: str) -> list[str]:
    line = line.strip()
    if not line.startswith("$") or "*" not in line:
        raise NmeaError("nmea", f"not an NMEA sentence: {line[:40]!r}")
    body, _, given = line[1:].partition("*")
    if checksum(body) != given.strip().upper()[:2]:
        raise NmeaError(
            "checksum", f"checksum {given.strip()!r} does not match {body[:6]!r} sentence"
        )
    return body.split(",")


def _angle(value: str, hemisphere: str, degree_digits: int, what: str) -> float:
    if not value or hemisphere not in ("N", "S", "E", "W"):
        raise NmeaError(f"missing:{what}", f"{what} is empty")
    try:
        degrees = int(value[:degree_digits])
        minutes = float(value[degree_digits:])
    except ValueError:
        raise NmeaError(f"type:{what}", f"{what} {value!r} is not ddmm.mmmm") from None
    if minutes >= 60:
        raise NmeaError(f"range:{what}", f"{what} {value!r} has {minutes} minutes")
    angle = degrees + minutes / 60
    return -angle if hemisphere in ("S", "W") else angle


def parse_position(text: str) -> Position:
    """One fix from the GGA, RMC and optional GST sentences of one epoch."""
    sentences: dict[str, list[str]] = {}
    for line in text.replace("\r", "\n").split("\n"):
        if line.strip():
            fields = _fields(line)
            sentences[fields[0][-3:]] = fields
    gga = sentences.get("GGA")
    rmc = sentences.get("RMC")
    if gga is None or rmc is None:
        raise NmeaError(
            "nmea:incomplete", "a fix needs both GGA (position) and RMC (date) sentences"
        )
    if len(gga) < 10 or len(rmc) < 10:
        raise NmeaError("nmea", "GGA or RMC sentence is truncated")
    if gga[1][:6] != rmc[1][:6]:
        raise NmeaError(
            "nmea:epoch", f"GGA time {gga[1]} and RMC time {rmc[1]} are different epochs"
        )
    try:
        quality = int(gga[6] or 0)
    except ValueError:
        raise NmeaError("type:quality", f"GGA fix quality {gga[6]!r} is not a number") from None
    fix_type = _QUALITY.get(quality) if rmc[2] == "A" else None  # RMC "V": void
    lat = _angle(gga[2], gga[3], 2, "lat")
    lon = _angle(gga[4], gga[5], 3, "lon")
    try:
        hh, mm, ss = int(rmc[1][0:2]), int(rmc[1][2:4]), float(rmc[1][4:])
        day, month, yy = int(rmc[9][0:2]), int(rmc[9][2:4]), int(rmc[9][4:6])
        year = 2000 + yy if yy < 80 else 1900 + yy  # the usual two-digit pivot
        seconds = calendar.timegm((year, month, day, hh, mm, 0, 0, 0, 0)) + ss
    except (ValueError, IndexError, OverflowError):
        raise NmeaError(
            "time:invalid", f"RMC time {rmc[1]!r} / date {rmc[9]!r} unreadable"
        ) from None
    satellites = int(gga[7]) if gga[7].isdigit() else None
    try:
        hdop = float(gga[8]) if gga[8] else None
    except ValueError:
        hdop = None
    accuracy = None
    gst = sentences.get("GST")
    if gst is not None and len(gst) >= 8 and gst[6] and gst[7]:
        try:
            accuracy = max(float(gst[6]), float(gst[7]))  # 1-sigma lat/lon errors (m)
        except ValueError:
            accuracy = None
    if accuracy is None and hdop is not None and fix_type in UERE_M:
        accuracy = hdop * UERE_M[fix_type]
    return Position(round(seconds * 1000), lat, lon, fix_type, satellites, hdop, accuracy)
