"""Payload codecs: bytes from a device to a validated fix, or a reason it cannot be one.

Four formats reach `…/fix` and `…/rfid`:

* native JSON (the trackfence device protocol, README "Device payloads");
* OwnTracks `_type: location` JSON, so a phone running OwnTracks can join a trial;
* NMEA 0183 sentences, GGA with RMC (RMC carries the date), GST if the receiver
  reports its own error estimate;
* RFID reads (reader id + tag id), placed at the site's surveyed reader position.

Every rejection is a DecodeError with a short machine-readable `reason` (the
dead-letter counters are keyed on it) and a sentence for people.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from ingest import nmea
from ingest.topics import DeviceTopic

#: Payloads larger than this are refused before parsing (a device fix is ~300 bytes).
MAX_PAYLOAD_BYTES = 16 * 1024
#: A fix time this far ahead of the receive time is a broken device clock, not a fix.
MAX_FUTURE_MS = 60_000
#: Fix times before this (2020-01-01) are unset clocks (GNSS week rollover, epoch 0).
MIN_FIX_MS = 1_577_836_800_000
FIX_TYPES = ("2D", "3D", "DGPS", "RTK float", "RTK fixed")


class DecodeError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True, slots=True)
class DecodedFix:
    supplier: str
    device: str
    seq: int  # -1 when the format has none (OwnTracks, NMEA)
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


def decode_fix(
    topic: DeviceTopic,
    payload: bytes,
    received_ms: int,
    readers: Mapping[str, RfidReader] | None = None,
) -> DecodedFix:
    """Decode and validate one payload from `…/fix` or `…/rfid`."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise DecodeError("size", f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(
            "encoding", f"payload is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    stripped = text.lstrip()
    if topic.kind == "rfid":
        fix = _rfid(topic, _json_object(stripped), readers or {})
    elif stripped.startswith("$"):
        fix = _nmea(topic, stripped)
    elif stripped.startswith(("{", "[")):
        obj = _json_object(stripped)
        if obj.get("_type") == "location":
            fix = _owntracks(topic, obj)
        elif "_type" in obj:
            raise DecodeError(
                "schema", f"OwnTracks message of type {obj['_type']!r} is not a location"
            )
        else:
            fix = _native(topic, obj)
    else:
        raise DecodeError("format", "payload is neither JSON nor NMEA 0183")
    _check_time(fix.fix_ms, received_ms)
    return fix


def _json_object(text: str) -> dict:
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise DecodeError("json", f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise DecodeError("json", "JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise DecodeError("schema", f"JSON payload must be an object, got {type(obj).__name__}")
    return obj


def _no_constant(name: str) -> float:
    raise DecodeError("json", f"{name} is not a number JSON allows")


def _number(
    obj: Mapping,
    key: str,
    *,
    required: bool = True,
    lo: float | None = None,
    hi: float | None = None,
) -> float | None:
    if key not in obj or obj[key] is None:
        if required:
            raise DecodeError(f"missing:{key}", f"field {key!r} is required")
        return None
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DecodeError(f"type:{key}", f"field {key!r} must be a finite number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise DecodeError(f"range:{key}", f"field {key!r} = {value} is outside [{lo}, {hi}]")
    return float(value)


def _integer(obj: Mapping, key: str, *, required: bool = True, lo: int | None = None) -> int | None:
    value = _number(obj, key, required=required, lo=lo)
    if value is None:
        return None
    if value != int(value):
        raise DecodeError(f"type:{key}", f"field {key!r} must be a whole number, got {obj[key]!r}")
    return int(value)


def _text(obj: Mapping, key: str, max_len: int = 64) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise DecodeError(
            f"type:{key}", f"field {key!r} must be text of at most {max_len} characters"
        )
    return value


def _native(topic: DeviceTopic, obj: dict) -> DecodedFix:
    device = obj.get("device")
    if device is not None and device != topic.device:
        raise DecodeError(
            "device-mismatch", f"payload device {device!r} published on {topic.device!r}'s topic"
        )
    fix_type = obj.get("fix_type")
    if fix_type == "none":
        raise DecodeError("no-position", "the device reports no position fix")
    if fix_type is not None and fix_type not in FIX_TYPES:
        raise DecodeError(
            "range:fix_type", f"fix_type {fix_type!r} is not one of none, {', '.join(FIX_TYPES)}"
        )
    return DecodedFix(
        supplier=topic.supplier,
        device=topic.device,
        seq=_integer(obj, "seq", lo=0),  # type: ignore[arg-type]
        fix_ms=_integer(obj, "time_ms"),  # type: ignore[arg-type]
        lat=_number(obj, "lat", lo=-90, hi=90),  # type: ignore[arg-type]
        lon=_number(obj, "lon", lo=-180, hi=180),  # type: ignore[arg-type]
        accuracy_m=_number(obj, "accuracy_m", required=False, lo=0, hi=10_000),
        fix_type=fix_type,
        satellites=_integer(obj, "satellites", required=False, lo=0),
        hdop=_number(obj, "hdop", required=False, lo=0, hi=100),
        battery_pct=_number(obj, "battery_pct", required=False, lo=0, hi=100),
        firmware=_text(obj, "firmware"),
        source_format="native",
    )


def _owntracks(topic: DeviceTopic, obj: dict) -> DecodedFix:
    tst = _integer(obj, "tst", lo=0)
    return DecodedFix(
        supplier=topic.supplier,
        device=topic.device,
        seq=-1,
        fix_ms=tst * 1000,  # type: ignore[operator]
        lat=_number(obj, "lat", lo=-90, hi=90),  # type: ignore[arg-type]
        lon=_number(obj, "lon", lo=-180, hi=180),  # type: ignore[arg-type]
        accuracy_m=_number(obj, "acc", required=False, lo=0, hi=100_000),
        fix_type=None,
        satellites=None,
        hdop=None,
        battery_pct=_number(obj, "batt", required=False, lo=0, hi=100),
        firmware=None,
        source_format="owntracks",
    )


def _nmea(topic: DeviceTopic, text: str) -> DecodedFix:
    try:
        position = nmea.parse_position(text)
    except nmea.NmeaError as exc:
        raise DecodeError(exc.reason, str(exc.detail)) from None
    if position.fix_type is None:
        raise DecodeError("no-position", "GGA reports no fix (quality 0)")
    return DecodedFix(
        supplier=topic.supplier,
        device=topic.device,
        seq=-1,
        fix_ms=position.fix_ms,
        lat=position.lat,
        lon=position.lon,
        accuracy_m=position.accuracy_m,
        fix_type=position.fix_type,
        satellites=position.satellites,
        hdop=position.hdop,
        battery_pct=None,
        firmware=None,
        source_format="nmea",
    )


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
        seq=_integer(obj, "seq", lo=0),  # type: ignore[arg-type]
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


def _check_time(fix_ms: int, received_ms: int) -> None:
    if fix_ms < MIN_FIX_MS:
        raise DecodeError(
            "time:unset", f"fix time {fix_ms} ms is before 2020: the device clock is not set"
        )
    if fix_ms > received_ms + MAX_FUTURE_MS:
        raise DecodeError(
            "time:future",
            f"fix time is {(fix_ms - received_ms) / 1000:.0f} s ahead of the receive time",
        )
