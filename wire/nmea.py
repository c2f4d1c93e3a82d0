"""NMEA 0183: GGA (position, fix quality), RMC (date), GST (error estimate), with checksums.

GGA has no accuracy and no date; RMC has the date; GST has the receiver's own
1-sigma latitude/longitude errors. Without GST, accuracy is estimated as HDOP
× a typical user range error for the fix quality, and said to be an estimate.

One message normally carries one epoch (a GGA and an RMC of the same time, and
perhaps a GST); a message with several epochs gives one position for each, never
just the last. Receivers also send sentences we do not read (GSV, GSA, VTG, TXT…):
one of those damaged in transit is skipped, since nothing of the fix depends on
it. A damaged sentence we would read, or one whose kind cannot be told, refuses
the message. Every field read is checked for its shape before it is converted,
so no input reaches `int()` or `float()` in a form they would turn into NaN, an
infinity, an unbounded integer or an exception.
"""

from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from string import ascii_uppercase

#: GGA fix quality -> our fix type (0 means no fix; 6 dead reckoning and 8 simulation
#: are not positions to decide on).
_QUALITY = {1: "3D", 2: "DGPS", 4: "RTK fixed", 5: "RTK float", 6: None, 8: None}
#: Typical user-equivalent range error (m) by fix type, for HDOP × UERE when no GST.
UERE_M = {"3D": 4.0, "DGPS": 1.0, "RTK float": 0.3, "RTK fixed": 0.02}
#: The sentences a fix is made of.
USED = ("GGA", "RMC", "GST")
#: Bounds of the fields read (the codec holds every fix to the same ones again).
SATELLITES_MAX = 255
HDOP_MAX = 100.0
ACCURACY_MAX_M = 100_000.0

_ASCII = re.ASCII
_ADDRESS = re.compile(r"[A-Z]{2}([A-Z]{3})", _ASCII)  # talker + sentence type
_PROPRIETARY = re.compile(r"P[A-Z0-9]{1,8}", _ASCII)
_TIME = re.compile(r"([0-9]{2})([0-9]{2})([0-9]{2})(?:\.([0-9]{1,6}))?", _ASCII)
_DATE = re.compile(r"([0-9]{2})([0-9]{2})([0-9]{2})", _ASCII)
_DECIMAL = re.compile(r"[0-9]{1,7}(?:\.[0-9]{0,9})?", _ASCII)
_DIGITS = re.compile(r"[0-9]+", _ASCII)
_ANGLE = {
    2: re.compile(r"([0-9]{2})([0-9]{2}(?:\.[0-9]{0,12})?)", _ASCII),
    3: re.compile(r"([0-9]{3})([0-9]{2}(?:\.[0-9]{0,12})?)", _ASCII),
}


class NmeaError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


@dataclass(frozen=True)
class Position:
    """One epoch. `fix_type` None: the receiver had no fix (lat and lon are then NaN)."""

    fix_ms: int
    lat: float
    lon: float
    fix_type: str | None
    satellites: int | None
    hdop: float | None
    accuracy_m: float | None


#: "00" … "FF" by value: the checksum of an ASCII body is an index into this, not a format.
_HEX = tuple(f"{value:02X}" for value in range(256))
#: The address of every sentence we read, from any two-letter talker (GPGGA, GNRMC, BDGST…),
#: and its kind: a dictionary look-up decides the common line without the `_ADDRESS` regex.
_USED_ADDRESS = {
    a + b + kind: kind for a in ascii_uppercase for b in ascii_uppercase for kind in USED
}
#: Every GGA quality field the format allows (one or two ASCII digits, as `_DIGITS` with at
#: most two) and the fix type it gives; anything else is refused as `type:quality`.
_QUALITY_FIELD = {f"{n:0{width}d}": _QUALITY.get(n) for width in (1, 2) for n in range(10**width)}
#: Every satellites field that is in bounds (one to three ASCII digits, at most
#: SATELLITES_MAX) and its count; anything else takes the checks that say what is wrong.
_SATELLITES = {
    f"{n:0{width}d}": n for width in (1, 2, 3) for n in range(min(10**width, SATELLITES_MAX + 1))
}


def checksum(body: str) -> str:
    """The XOR of the body's characters, as hex digits ($body*CS).

    Every real sentence is ASCII: its bytes are read as one integer and folded onto the
    lowest byte, since after `n ^= n >> 8`, `n ^= n >> 16`, … `n ^= n >> 8·2^k` each byte
    holds the XOR of the 2^(k+1) bytes from it up. That is a few big-integer operations
    per sentence, three times faster than the definition, a Python step per character,
    which made the checksum the costliest part of decoding NMEA (and is kept for text
    that is not ASCII). A non-ASCII body may XOR past 0xFF and then has more than two
    hex digits, never equal to the two read from a sentence.
    """
    if not body.isascii():
        value = 0
        for ch in body:
            value ^= ord(ch)
        return f"{value:02X}"
    n = int.from_bytes(body.encode("ascii"), "little")
    n ^= n >> 8
    n ^= n >> 16
    n ^= n >> 32
    n ^= n >> 64
    n ^= n >> 128
    n ^= n >> 256
    n ^= n >> 512  # the lowest byte is now the XOR of the first 128
    shift, bits = 1024, len(body) * 8
    while shift < bits:  # (a body longer than any sentence: exact all the same)
        n ^= n >> shift
        shift <<= 1
    return _HEX[n & 0xFF]


def sentence(body: str) -> str:
    """A full sentence from its body (for tests and the simulator): $body*CS."""
    return f"${body}*{checksum(body)}"


def _kind(address: str) -> str | None:
    """The sentence type of an address field (GPGGA -> GGA), or None if it is not one."""
    kind = _USED_ADDRESS.get(address)
    if kind is not None:
        return kind
    match = _ADDRESS.fullmatch(address)
    if match:
        return match.group(1)
    return "proprietary" if _PROPRIETARY.fullmatch(address) else None


def _sentences(text: str) -> list[list[str]]:
    """The fields of every checksummed GGA, RMC and GST sentence, in message order."""
    used = []
    for line in text.replace("\r", "\n").split("\n"):
        line = line.strip()
        if not line:
            continue
        if not line.startswith("$") or "*" not in line:
            raise NmeaError("nmea", f"not an NMEA sentence: {line[:40]!r}")
        body, _, given = line[1:].partition("*")
        fields = body.split(",")
        kind = _kind(fields[0])
        if checksum(body) != given.strip().upper()[:2]:
            if kind is not None and kind not in USED:
                continue  # a damaged GSV, GSA, VTG…: nothing of the fix depends on it
            raise NmeaError(
                "checksum", f"checksum {given.strip()[:8]!r} does not match {body[:6]!r} sentence"
            )
        if kind in USED:
            used.append(fields)
    return used


def _angle(value: str, hemisphere: str, degree_digits: int, what: str) -> float:
    if not value or not hemisphere:
        raise NmeaError(f"missing:{what}", f"{what} is empty")
    hemispheres, limit = (("N", "S"), 90) if what == "lat" else (("E", "W"), 180)
    match = _ANGLE[degree_digits].fullmatch(value)
    if match is None or hemisphere not in hemispheres:
        raise NmeaError(
            f"type:{what}", f"{what} {value[:20]!r} {hemisphere[:4]!r} is not ddmm.mmmm"
        )
    whole, fraction = match.groups()
    degrees, minutes = int(whole), float(fraction)
    angle = degrees + minutes / 60
    if minutes >= 60 or angle > limit:
        raise NmeaError(f"range:{what}", f"{what} {value!r} is outside ±{limit} degrees")
    return -angle if hemisphere in ("S", "W") else angle


@lru_cache(maxsize=64)
def _clock(field: str) -> tuple[int, int, int, int] | None:
    """A hhmmss[.ss] field as hours, minutes, seconds and ms (not yet checked), or None.

    Cached: the GGA, RMC and GST of an epoch carry one time, read four times a message.
    """
    match = _TIME.fullmatch(field)
    if match is None:
        return None
    hh, mm, ss, fraction = match.groups()
    ms = round(int(fraction) * 1000 / 10 ** len(fraction)) if fraction else 0
    return int(hh), int(mm), int(ss), ms


@lru_cache(maxsize=64)
def _date(field: str) -> tuple[int, int | None] | None:
    """A ddmmyy field's month (not yet checked) and its day counted from 1970-01-01 (None
    if there is no such month or day), or None if it is not six digits.

    Cached: a shift's messages carry one date or two, and the calendar is the costly part.
    """
    match = _DATE.fullmatch(field)
    if match is None:
        return None
    day, month, yy = (int(g) for g in match.groups())
    year = 2000 + yy if yy < 80 else 1900 + yy  # the usual two-digit pivot
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        return month, None
    return month, calendar.timegm((year, month, day, 0, 0, 0, 0, 0, 0)) // 86_400


def _epoch_key(time_field: str) -> int | str:
    """An epoch's time of day in ms (so 123519 and 123519.00 are one epoch)."""
    clock = _clock(time_field)
    if clock is None:
        return time_field[:16]
    hh, mm, ss, ms = clock
    return ((hh * 60 + mm) * 60 + ss) * 1000 + ms


def _decimal(value: str, what: str, limit: float) -> float | None:
    if not value:
        return None
    if not _DECIMAL.fullmatch(value):
        raise NmeaError(f"type:{what}", f"{what} {value[:20]!r} is not a decimal number")
    number = float(value)
    if number > limit:
        raise NmeaError(f"range:{what}", f"{what} {number} is above {limit}")
    return number


def _fix_time(rmc: list[str]) -> int:
    clock = _clock(rmc[1])
    date = _date(rmc[9])
    if clock is None or date is None:
        raise NmeaError(
            "time:invalid", f"RMC time {rmc[1][:16]!r} / date {rmc[9][:16]!r} unreadable"
        )
    hh, mm, ss, ms = clock
    month, days = date
    if not (hh < 24 and mm < 60 and ss <= 60 and 1 <= month <= 12):
        raise NmeaError("time:invalid", f"RMC time {rmc[1]!r} / date {rmc[9]!r} is no time")
    if days is None:
        raise NmeaError("time:invalid", f"RMC date {rmc[9]!r} is no day")
    return (days * 86_400 + (hh * 60 + mm) * 60 + ss) * 1000 + ms  # as calendar.timegm counts


def _position(gga: list[str], rmc: list[str], gst: list[str] | None) -> Position:
    quality_field = gga[6] or "0"
    if quality_field not in _QUALITY_FIELD:
        raise NmeaError("type:quality", f"GGA fix quality {gga[6][:8]!r} is not a number")
    fix_type = _QUALITY_FIELD[quality_field] if rmc[2] == "A" else None  # RMC "V": void
    if fix_type is None:
        # no position to read: a receiver without a fix (a cold start) leaves its fields
        # empty, and that is "no position", not a malformed message
        key = _epoch_key(rmc[1])
        return Position(key if isinstance(key, int) else -1, math.nan, math.nan, None,
                        None, None, None)  # fmt: skip
    lat = _angle(gga[2], gga[3], 2, "lat")
    lon = _angle(gga[4], gga[5], 3, "lon")
    fix_ms = _fix_time(rmc)
    satellites = None
    if gga[7]:
        satellites = _SATELLITES.get(gga[7])
        if satellites is None:
            if not _DIGITS.fullmatch(gga[7]):
                raise NmeaError("type:satellites", f"GGA satellites {gga[7][:20]!r} is not a count")
            raise NmeaError(  # (digits, but more than three or above the bound)
                "range:satellites", f"GGA satellites {gga[7][:20]!r} is above {SATELLITES_MAX}"
            )
    hdop = _decimal(gga[8], "hdop", HDOP_MAX)
    accuracy = None
    if gst is not None and len(gst) >= 8 and gst[6] and gst[7]:
        lat_error = _decimal(gst[6], "accuracy_m", ACCURACY_MAX_M)
        lon_error = _decimal(gst[7], "accuracy_m", ACCURACY_MAX_M)
        accuracy = max(lat_error, lon_error)  # type: ignore[type-var]  # 1-sigma errors (m)
    if accuracy is None and hdop is not None and fix_type in UERE_M:
        accuracy = hdop * UERE_M[fix_type]
    return Position(fix_ms, lat, lon, fix_type, satellites, hdop, accuracy)


def _by_epoch(
    sentences: list[list[str]],
) -> tuple[dict[int | str, list[str]], ...] | None:
    """GGA, RMC and GST sentences by epoch (a repeat, any talker, counts once), or None
    if an epoch has two different sentences of one kind.

    One pass reading each time field once, where `_one_per_epoch` kind by kind read every
    sentence's time three times. On None the message is refused by `_one_per_epoch`, as
    before: its error names the first kind in GGA, RMC, GST order with such a pair, which
    need not be the first pair in the message."""
    by_kind: dict[str, dict[int | str, list[str]]] = {kind: {} for kind in USED}
    last_time: str | None = None
    key: int | str = ""
    for fields in sentences:
        by_epoch = by_kind[fields[0][-3:]]  # (`_sentences` keeps only these three kinds)
        time_field = fields[1] if len(fields) > 1 else ""
        if time_field != last_time:  # (an epoch's sentences follow each other, one time)
            last_time, key = time_field, _epoch_key(time_field)
        seen = by_epoch.get(key)
        if seen is not None and seen[1:] != fields[1:]:
            return None
        by_epoch[key] = fields
    return by_kind["GGA"], by_kind["RMC"], by_kind["GST"]


def _one_per_epoch(sentences: list[list[str]], kind: str) -> dict[int | str, list[str]]:
    """A message's sentences of one kind by epoch; a repeat (any talker) counts once."""
    by_epoch: dict[int | str, list[str]] = {}
    for fields in sentences:
        if fields[0][-3:] != kind:
            continue
        key = _epoch_key(fields[1] if len(fields) > 1 else "")
        seen = by_epoch.get(key)
        if seen is not None and seen[1:] != fields[1:]:
            raise NmeaError(
                "nmea:epoch", f"two different {kind} sentences for the epoch {fields[1][:12]!r}"
            )
        by_epoch[key] = fields
    return by_epoch


def parse_epochs(text: str) -> list[Position]:
    """Every epoch of a message, in message order (each a GGA and RMC, and GST if sent)."""
    used = _sentences(text)
    grouped = _by_epoch(used)
    if grouped is None:  # (two different sentences for one epoch: this raises why)
        grouped = tuple(_one_per_epoch(used, kind) for kind in USED)
    gga, rmc, gst = grouped
    if not gga or not rmc:
        raise NmeaError(
            "nmea:incomplete", "a fix needs both GGA (position) and RMC (date) sentences"
        )
    if min(map(len, gga.values())) < 10 or min(map(len, rmc.values())) < 10:
        raise NmeaError("nmea", "GGA or RMC sentence is truncated")
    if set(gga) != set(rmc):
        lone = sorted(str(k) for k in set(gga) ^ set(rmc))
        raise NmeaError(
            "nmea:epoch",
            f"GGA times {[f[1][:12] for f in gga.values()]} and RMC times "
            f"{[f[1][:12] for f in rmc.values()]} are different epochs ({len(lone)} unpaired)",
        )
    if len(gst) == 1 and len(gga) == 1 and next(iter(gst)) not in gga:
        gst = {}  # a GST of another epoch says nothing of this one
    return [_position(gga[key], rmc[key], gst.get(key)) for key in gga]


def parse_position(text: str) -> Position:
    """The one epoch of a message (fix_type None if the receiver had no fix)."""
    epochs = parse_epochs(text)
    if len(epochs) != 1:
        raise NmeaError("nmea:epochs", f"{len(epochs)} epochs where one was expected")
    return epochs[0]
