"""Payload codecs: bytes from a device to bounded, validated fixes, or a reason they cannot be.

Formats reaching `…/fix`, `…/rfid` and `…/status`:

* native JSON (the trackfence device protocol, README "Topics and payloads");
* OwnTracks JSON: `_type: location` is a fix, `_type: lwt` (the phone's last will)
  says the device is gone, so a phone running OwnTracks can join a trial;
* NMEA 0183 sentences, GGA with RMC (RMC carries the date), GST if the receiver
  reports its own error estimate; one fix per epoch in the message;
* RFID reads (reader id + tag id), placed at the site's surveyed reader position;
* status: `{"online": false}`, a device's last will.

This is the edge of ingest, and the only place a payload's bytes are read. What
leaves it is bounded by construction: a `DecodedFix` cannot be made with a field
outside `BOUNDS` (integers within the store's column types, floats finite and in
range, text short and printable), so nothing one payload carries can fail the
vectorised decision, the database write or anything else downstream.

Every rejection is a DecodeError with a short machine-readable `reason` (the
dead-letter counters are keyed on it) and a sentence for people.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from geofence.vocabulary import EventKind
from wire import nmea
from wire.topics import DeviceTopic, valid_name

#: Payloads larger than this are refused before parsing (a device fix is ~300 bytes).
MAX_PAYLOAD_BYTES = 16 * 1024
#: A fix time this far ahead of the receive time is a broken device clock, not a fix.
MAX_FUTURE_MS = 60_000
#: Fix times before this (2020-01-01) are unset clocks (GNSS week rollover, epoch 0).
MIN_FIX_MS = 1_577_836_800_000
#: Fix times after this (2100-01-01) are refused whatever the receiving clock says.
MAX_FIX_MS = 4_102_444_800_000
FIX_TYPES = ("2D", "3D", "DGPS", "RTK float", "RTK fixed")
SOURCE_FORMATS = ("native", "owntracks", "nmea", "rfid")
#: The sequence number of formats that have none (OwnTracks, NMEA).
NO_SEQ = -1
#: Sequence numbers are BIGINT in both stores (and int64 in the state machine).
SEQ_MAX = 2**63 - 1
#: Short text fields (firmware, RFID reader and tag ids).
TEXT_MAX = 64
#: JSON integers with more digits than this are read as "huge" (their sign kept), not
#: converted: Python refuses to convert beyond 4,300 digits, and nothing needs 40.
_JSON_INT_DIGITS = 40
_HUGE = 10**400

#: The bounds every decoded fix is held to, whatever its format (README "Hostile input").
#: Integers fit the store's columns (seq BIGINT, satellites INTEGER); floats are finite.
BOUNDS: dict[str, tuple[float, float]] = {
    "seq": (0, SEQ_MAX),  # or NO_SEQ for formats without one
    "time_ms": (MIN_FIX_MS, MAX_FIX_MS),  # and at most MAX_FUTURE_MS past the receive time
    "lat": (-90.0, 90.0),
    "lon": (-180.0, 180.0),
    "accuracy_m": (0.0, nmea.ACCURACY_MAX_M),
    "satellites": (0, nmea.SATELLITES_MAX),
    "hdop": (0.0, nmea.HDOP_MAX),
    "battery_pct": (0.0, 100.0),
}


class DecodeError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True, slots=True)
class DecodedFix:
    """One fix, every field within BOUNDS: constructing one out of bounds raises DecodeError."""

    supplier: str
    device: str
    seq: int  # NO_SEQ (-1) when the format has none (OwnTracks, NMEA)
    fix_ms: int
    lat: float
    lon: float
    accuracy_m: float | None
    fix_type: str | None
    satellites: int | None
    hdop: float | None
    battery_pct: float | None
    firmware: str | None
    source_format: str

    def __post_init__(self) -> None:
        _check_bounds(self)

    @property
    def device_id(self) -> str:
        return f"{self.supplier}/{self.device}"


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one message says: its fixes (one, or one per NMEA epoch), or that it went offline."""

    fixes: tuple[DecodedFix, ...] = ()
    offline: bool = False  # a last will: status {"online": false} or OwnTracks lwt
    alarm: DecodedAlarm | None = None  # the device's own alarm (`…/alarm`)


#: What a device may say its own alarm was.
ALARM_KINDS = tuple(k.value for k in (EventKind.BREACH, EventKind.CLEAR, EventKind.WARNING,
                                      EventKind.LOST))  # fmt: skip


@dataclass(frozen=True)
class DecodedAlarm:
    """A device's own alarm, as its supplier's decision raised it: bounded at the edge.

    `{"seq": 12, "time_ms": 1795000059920, "kind": "breach", "lat": 51.5577, "lon":
    -0.1088}` on `trackside/v1/{supplier}/{device}/alarm`: the time on the device's clock,
    the kind, and (optionally) where the device said its wearer was.
    """

    supplier: str
    device: str
    seq: int
    alarm_ms: int
    kind: str
    lat: float | None
    lon: float | None

    @property
    def device_id(self) -> str:
        return f"{self.supplier}/{self.device}"


@dataclass(frozen=True)
class RfidReader:
    """A surveyed RFID reader: where a read puts the wearer, and how sure that is."""

    reader_id: str
    lat: float
    lon: float
    range_m: float

    def __post_init__(self) -> None:
        lo, hi = BOUNDS["accuracy_m"]
        if not (
            isinstance(self.reader_id, str)
            and 0 < len(self.reader_id) <= TEXT_MAX
            and -90 <= self.lat <= 90
            and -180 <= self.lon <= 180
            and lo <= self.range_m <= hi
        ):
            raise ValueError(
                f"RFID reader {self.reader_id!r}: lat, lon or range_m out of range "
                f"({self.lat}, {self.lon}, {self.range_m})"
            )


def decode(
    topic: DeviceTopic,
    payload: bytes,
    received_ms: int,
    readers: Mapping[str, RfidReader] | None = None,
) -> Decoded:
    """Decode and validate one payload from `…/fix`, `…/rfid` or `…/status`."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise DecodeError("size", f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(
            "encoding", f"payload is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    stripped = text.lstrip()
    if topic.kind == "status":
        return _status(stripped)
    if topic.kind == "alarm":
        return Decoded(alarm=_alarm(topic, _json_object(stripped), received_ms))
    if topic.kind == "rfid":
        fixes: tuple[DecodedFix, ...] = (_rfid(topic, _json_object(stripped), readers or {}),)
    elif stripped.startswith("$"):
        fixes = _nmea(topic, stripped)
    elif stripped.startswith(("{", "[")):
        obj = _json_object(stripped)
        if "_type" in obj:
            decoded = _owntracks(topic, obj)
            if decoded.offline:
                return decoded
            fixes = decoded.fixes
        else:
            fixes = (_native(topic, obj),)
    else:
        raise DecodeError("format", "payload is neither JSON nor NMEA 0183")
    for fix in fixes:
        _check_time(fix.fix_ms, received_ms)
    return Decoded(fixes)


def decode_fix(
    topic: DeviceTopic,
    payload: bytes,
    received_ms: int,
    readers: Mapping[str, RfidReader] | None = None,
) -> DecodedFix:
    """The fix of a message that carries exactly one (tests, tools)."""
    decoded = decode(topic, payload, received_ms, readers)
    if len(decoded.fixes) != 1:
        what = "a last will" if decoded.offline else f"{len(decoded.fixes)} fixes"
        raise DecodeError("schema", f"the message is {what}, not one fix")
    return decoded.fixes[0]


# ---------------------------------------------------------------------- the bounded type
_SEQ_LO, _SEQ_HI = BOUNDS["seq"]
_TIME_LO, _TIME_HI = BOUNDS["time_ms"]
_LAT_LO, _LAT_HI = BOUNDS["lat"]
_LON_LO, _LON_HI = BOUNDS["lon"]
_ACCURACY_LO, _ACCURACY_HI = BOUNDS["accuracy_m"]
_SATELLITES_LO, _SATELLITES_HI = BOUNDS["satellites"]
_HDOP_LO, _HDOP_HI = BOUNDS["hdop"]
_BATTERY_LO, _BATTERY_HI = BOUNDS["battery_pct"]
_KNOWN_FIX_TYPES = (*FIX_TYPES, "RFID")
#: Supplier and device names already found valid (a topic's names recur with every fix):
#: a set look-up instead of the name regex, at most this many kept (a flood of invented
#: devices only falls back to the regex).
_VALID_NAMES: set[str] = set()
_VALID_NAMES_MAX = 4096


def _known_name(name: object) -> bool:
    """Whether `name` passes `valid_name` (a pure test of the text), remembered for the
    names that do: a fix's supplier and device are checked with every fix."""
    if type(name) is str and name in _VALID_NAMES:
        return True
    if not valid_name(name):
        return False
    if type(name) is str and len(_VALID_NAMES) < _VALID_NAMES_MAX:
        _VALID_NAMES.add(name)
    return True


def _check_bounds(f: DecodedFix) -> None:
    """Raise the DecodeError of the first bound `f` breaks (in the order below).

    Every decoded fix passes through here, so the common one, every number of its plain
    type (int or float, never a bool or a subclass) and in range, is let through by one
    conjunction first. It accepts nothing the checks after it refuse, and it tests the
    fields in their order, so a value whose comparison raises raises at the same step;
    anything it does not let through takes the checks, which name the reason.
    """
    seq, fix_ms, lat, lon = f.seq, f.fix_ms, f.lat, f.lon
    accuracy, satellites, hdop, battery = f.accuracy_m, f.satellites, f.hdop, f.battery_pct
    if (
        _known_name(f.supplier)
        and _known_name(f.device)
        and type(seq) is int
        and (seq == NO_SEQ or _SEQ_LO <= seq <= _SEQ_HI)
        and type(fix_ms) is int
        and _TIME_LO <= fix_ms <= _TIME_HI
        and type(lat) is float
        and _LAT_LO <= lat <= _LAT_HI
        and type(lon) is float
        and _LON_LO <= lon <= _LON_HI
        and (
            accuracy is None
            or (type(accuracy) is float and _ACCURACY_LO <= accuracy <= _ACCURACY_HI)
        )
        and (hdop is None or (type(hdop) is float and _HDOP_LO <= hdop <= _HDOP_HI))
        and (battery is None or (type(battery) is float and _BATTERY_LO <= battery <= _BATTERY_HI))
        and (
            satellites is None
            or (type(satellites) is int and _SATELLITES_LO <= satellites <= _SATELLITES_HI)
        )
        and (f.fix_type is None or f.fix_type in _KNOWN_FIX_TYPES)
        and (f.firmware is None or _printable(f.firmware))
        and f.source_format in SOURCE_FORMATS
    ):
        return
    if not (valid_name(f.supplier) and valid_name(f.device)):
        raise DecodeError("topic", "supplier and device must be names a topic may carry")
    if type(f.seq) is not int:
        raise DecodeError("type:seq", f"seq must be a whole number, got {type(f.seq).__name__}")
    if f.seq != NO_SEQ and not BOUNDS["seq"][0] <= f.seq <= BOUNDS["seq"][1]:
        raise DecodeError("range:seq", f"seq {_short(f.seq)} is outside [0, 2^63 - 1]")
    if type(f.fix_ms) is not int:
        raise DecodeError("type:time_ms", "the fix time must be whole milliseconds")
    if f.fix_ms < MIN_FIX_MS:
        raise DecodeError(
            "time:unset",
            f"fix time {_short(f.fix_ms)} ms is before 2020: the device clock is not set",
        )
    if f.fix_ms > MAX_FIX_MS:
        raise DecodeError("time:future", f"fix time {_short(f.fix_ms)} ms is after 2100")
    for name in ("lat", "lon", "accuracy_m", "hdop", "battery_pct"):
        value = getattr(f, name)
        if value is None and name not in ("lat", "lon"):
            continue
        lo, hi = BOUNDS[name]
        # (a NaN fails both comparisons, an infinity or a huge integer one)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise DecodeError(f"range:{name}", f"{name} {_short(value)} is outside [{lo}, {hi}]")
    if f.satellites is not None and (
        type(f.satellites) is not int
        or not BOUNDS["satellites"][0] <= f.satellites <= BOUNDS["satellites"][1]
    ):
        raise DecodeError(
            "range:satellites",
            f"satellites {_short(f.satellites)} is outside [0, {nmea.SATELLITES_MAX}]",
        )
    if f.fix_type is not None and f.fix_type not in (*FIX_TYPES, "RFID"):
        raise DecodeError("range:fix_type", f"fix_type {_short(f.fix_type)} is not one we know")
    if f.firmware is not None and not _printable(f.firmware):
        raise DecodeError(
            "range:firmware", f"firmware must be printable text of at most {TEXT_MAX}"
        )
    if f.source_format not in SOURCE_FORMATS:
        raise DecodeError("format", f"source format {_short(f.source_format)} is not one we know")


def _printable(value: object, max_len: int = TEXT_MAX) -> bool:
    """Short text every store keeps as it is (no NUL, no control characters, no lone
    surrogates: str.isprintable refuses all three)."""
    return isinstance(value, str) and len(value) <= max_len and value.isprintable()


def _short(value: object, limit: int = 40) -> str:
    """A value for a dead letter's sentence, never longer than `limit` characters."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        return f"a number of about {int(abs(value).bit_length() * 0.30103) + 1} digits"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------- JSON fields
def _json_object(text: str) -> dict:
    try:
        if text.startswith("\ufeff"):  # what json.loads says of a BOM before it decodes
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        obj = _JSON.decode(text)
    except json.JSONDecodeError as exc:
        raise DecodeError("json", f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise DecodeError("json", "JSON nested too deeply") from None
    except ValueError as exc:  # (a number Python will not convert)
        raise DecodeError("json", f"not usable JSON ({str(exc)[:80]})") from None
    if not isinstance(obj, dict):
        raise DecodeError("schema", f"JSON payload must be an object, got {type(obj).__name__}")
    return obj


def _no_constant(name: str) -> float:
    raise DecodeError("json", f"{name} is not a number JSON allows")


def _json_int(digits: str) -> int:
    if len(digits) > _JSON_INT_DIGITS:
        return -_HUGE if digits.startswith("-") else _HUGE
    return int(digits)


#: json.loads(text, parse_constant=…, parse_int=…) builds a decoder for every call; this is
#: that decoder, built once (it keeps no state between documents).
_JSON = json.JSONDecoder(parse_constant=_no_constant, parse_int=_json_int)


def _field(obj: Mapping, key: str, required: bool) -> int | float | None:
    value = obj.get(key)
    if value is None:  # (absent, or null)
        if required:
            raise DecodeError(f"missing:{key}", f"field {key!r} is required")
        return None
    # the common field, a plain int or finite float, is returned before the checks below
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DecodeError(f"type:{key}", f"field {key!r} must be a number, got {_short(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise DecodeError(f"type:{key}", f"field {key!r} must be a finite number, got {value}")
    return value


def _number(obj: Mapping, key: str, *, lo: float, hi: float, required: bool = True) -> float | None:
    value = _field(obj, key, required)
    if value is None:
        return None
    if not lo <= value <= hi:  # exact for integers of any size: no float() before this
        raise DecodeError(
            f"range:{key}", f"field {key!r} = {_short(value)} is outside [{lo}, {hi}]"
        )
    return float(value)


def _integer(
    obj: Mapping,
    key: str,
    *,
    required: bool = True,
    lo: int | None = None,
    hi: int | None = None,
) -> int | None:
    value = _field(obj, key, required)
    if value is None:
        return None
    if isinstance(value, float):
        if not value.is_integer():
            raise DecodeError(f"type:{key}", f"field {key!r} must be a whole number, got {value}")
        value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise DecodeError(
            f"range:{key}", f"field {key!r} = {_short(value)} is outside [{lo}, {hi}]"
        )
    return value


def _text(obj: Mapping, key: str, max_len: int = TEXT_MAX) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DecodeError(f"type:{key}", f"field {key!r} must be text, got {_short(value)}")
    if not _printable(value, max_len):
        raise DecodeError(
            f"range:{key}", f"field {key!r} must be printable text of at most {max_len} characters"
        )
    return value


# ---------------------------------------------------------------------- formats
def _alarm(topic: DeviceTopic, obj: dict, received_ms: int) -> DecodedAlarm:
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in ALARM_KINDS:
        choices = ", ".join(ALARM_KINDS)
        raise DecodeError("range:kind", f"kind {_short(kind)} is not one of {choices}")
    alarm_ms = _integer(obj, "time_ms", lo=MIN_FIX_MS, hi=MAX_FIX_MS)
    assert alarm_ms is not None  # required
    _check_time(alarm_ms, received_ms)
    lat = _number(obj, "lat", required=False, lo=-90, hi=90)
    lon = _number(obj, "lon", required=False, lo=-180, hi=180)
    if (lat is None) != (lon is None):
        raise DecodeError("schema", "an alarm's position needs both lat and lon, or neither")
    return DecodedAlarm(
        topic.supplier,
        topic.device,
        _integer(obj, "seq", lo=0, hi=SEQ_MAX),  # type: ignore[arg-type]
        alarm_ms,
        kind,
        lat,
        lon,
    )


def _native(topic: DeviceTopic, obj: dict) -> DecodedFix:
    device = obj.get("device")
    if device is not None and device != topic.device:
        raise DecodeError(
            "device-mismatch",
            f"payload device {_short(device)} published on {topic.device!r}'s topic",
        )
    fix_type = obj.get("fix_type")
    if fix_type == "none":
        raise DecodeError("no-position", "the device reports no position fix")
    if fix_type is not None and (not isinstance(fix_type, str) or fix_type not in FIX_TYPES):
        raise DecodeError(
            "range:fix_type",
            f"fix_type {_short(fix_type)} is not one of none, {', '.join(FIX_TYPES)}",
        )
    return DecodedFix(
        supplier=topic.supplier,
        device=topic.device,
        seq=_integer(obj, "seq", lo=0, hi=SEQ_MAX),  # type: ignore[arg-type]
        fix_ms=_integer(obj, "time_ms"),  # type: ignore[arg-type]  # bounded by DecodedFix
        lat=_number(obj, "lat", lo=-90, hi=90),  # type: ignore[arg-type]
        lon=_number(obj, "lon", lo=-180, hi=180),  # type: ignore[arg-type]
        accuracy_m=_number(obj, "accuracy_m", required=False, lo=0, hi=10_000),
        fix_type=fix_type,
        satellites=_integer(obj, "satellites", required=False, lo=0, hi=nmea.SATELLITES_MAX),
        hdop=_number(obj, "hdop", required=False, lo=0, hi=nmea.HDOP_MAX),
        battery_pct=_number(obj, "battery_pct", required=False, lo=0, hi=100),
        firmware=_text(obj, "firmware"),
        source_format="native",
    )


def _owntracks(topic: DeviceTopic, obj: dict) -> Decoded:
    kind = obj["_type"]
    if kind == "lwt":  # the phone's last will, published by the broker when it vanished
        return Decoded(offline=True)
    if kind != "location":
        raise DecodeError("schema", f"OwnTracks message of type {_short(kind)} is not a location")
    tst = _integer(obj, "tst", lo=0)
    fix = DecodedFix(
        supplier=topic.supplier,
        device=topic.device,
        seq=NO_SEQ,
        fix_ms=tst * 1000,  # type: ignore[operator]
        lat=_number(obj, "lat", lo=-90, hi=90),  # type: ignore[arg-type]
        lon=_number(obj, "lon", lo=-180, hi=180),  # type: ignore[arg-type]
        accuracy_m=_number(obj, "acc", required=False, lo=0, hi=nmea.ACCURACY_MAX_M),
        fix_type=None,
        satellites=None,
        hdop=None,
        battery_pct=_number(obj, "batt", required=False, lo=0, hi=100),
        firmware=None,
        source_format="owntracks",
    )
    return Decoded((fix,))


def _nmea(topic: DeviceTopic, text: str) -> tuple[DecodedFix, ...]:
    try:
        epochs = nmea.parse_epochs(text)
    except nmea.NmeaError as exc:
        raise DecodeError(exc.reason, str(exc.detail)) from None
    fixes = tuple(
        DecodedFix(
            supplier=topic.supplier,
            device=topic.device,
            seq=NO_SEQ,
            fix_ms=p.fix_ms,
            lat=p.lat,
            lon=p.lon,
            accuracy_m=p.accuracy_m,
            fix_type=p.fix_type,
            satellites=p.satellites,
            hdop=p.hdop,
            battery_pct=None,
            firmware=None,
            source_format="nmea",
        )
        for p in epochs
        if p.fix_type is not None
    )
    if not fixes:
        raise DecodeError("no-position", "GGA/RMC report no fix (quality 0 or status V)")
    return fixes


def _rfid(topic: DeviceTopic, obj: dict, readers: Mapping[str, RfidReader]) -> DecodedFix:
    reader_id = _text(obj, "reader_id")
    tag_id = _text(obj, "tag_id")
    if not reader_id:
        raise DecodeError("missing:reader_id", "an RFID read needs the reader id")
    if not tag_id:
        raise DecodeError("missing:tag_id", "an RFID read needs the tag id")
    reader = readers.get(reader_id)
    if reader is None:
        raise DecodeError(
            "rfid:unknown-reader", f"reader {reader_id!r} is not a surveyed reader of any site"
        )
    return DecodedFix(
        supplier=topic.supplier,
        device=topic.device,
        seq=_integer(obj, "seq", lo=0, hi=SEQ_MAX),  # type: ignore[arg-type]
        fix_ms=_integer(obj, "time_ms"),  # type: ignore[arg-type]
        lat=reader.lat,
        lon=reader.lon,
        accuracy_m=reader.range_m,
        fix_type="RFID",
        satellites=None,
        hdop=None,
        battery_pct=_number(obj, "battery_pct", required=False, lo=0, hi=100),
        firmware=_text(obj, "firmware"),
        source_format="rfid",
    )


def _status(text: str) -> Decoded:
    try:
        obj = _json_object(text)
    except DecodeError:
        obj = None
    if not isinstance(obj, dict) or not isinstance(obj.get("online"), bool):
        raise DecodeError("status", "status must be JSON with a boolean 'online'")
    return Decoded(offline=not obj["online"])


def _check_time(fix_ms: int, received_ms: int) -> None:
    if fix_ms > received_ms + MAX_FUTURE_MS:
        raise DecodeError(
            "time:future",
            f"fix time is {(fix_ms - received_ms) / 1000:.0f} s ahead of the receive time",
        )
