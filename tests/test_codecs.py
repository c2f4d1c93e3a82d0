"""Payload codecs on real-world samples, and every way a payload can be bad."""

from __future__ import annotations

import calendar
import contextlib
import functools
import json
import math
import random
import tomllib
import types
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from wire import codecs, nmea
from wire.codecs import BOUNDS, DecodedFix, DecodeError, RfidReader, decode, decode_fix
from wire.topics import DeviceTopic, alert_topic, parse, subscriptions, valid_name

NOW = 1_795_000_060_000  # receive time, November 2026
FIX = DeviceTopic("acme", "ac-0042", "fix")


def native(**changes) -> bytes:
    body = {
        "device": "ac-0042",
        "seq": 1234,
        "time_ms": NOW - 80,
        "lat": 51.5577377,
        "lon": -0.1087912,
        "accuracy_m": 0.35,
        "fix_type": "RTK fixed",
        "satellites": 23,
        "hdop": 0.6,
        "battery_pct": 81.5,
        "firmware": "3.2.0",
    }
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def test_native_fix():
    fix = decode_fix(FIX, native(), NOW)
    assert (fix.device_id, fix.seq, fix.fix_ms) == ("acme/ac-0042", 1234, NOW - 80)
    assert (fix.lat, fix.lon, fix.accuracy_m, fix.fix_type) == (
        51.5577377,
        -0.1087912,
        0.35,
        "RTK fixed",
    )
    assert (fix.satellites, fix.hdop, fix.battery_pct, fix.firmware) == (23, 0.6, 81.5, "3.2.0")
    assert fix.source_format == "native"


def test_owntracks_location_from_a_phone():
    # the fields an OwnTracks phone app sends for a location report
    payload = (
        b'{"_type":"location","acc":4,"alt":32,"batt":67,"bs":1,"conn":"m","created_at":1795000059,'
        b'"lat":51.5576912,"lon":-0.1088204,"m":1,"tid":"jb","tst":1795000059,"vac":3,"vel":4}'
    )
    fix = decode_fix(DeviceTopic("phones", "jb-pixel", "fix"), payload, NOW)
    assert (fix.fix_ms, fix.lat, fix.lon, fix.accuracy_m, fix.battery_pct) == (
        1_795_000_059_000,
        51.5576912,
        -0.1088204,
        4.0,
        67.0,
    )
    assert fix.seq == -1 and fix.source_format == "owntracks"
    with pytest.raises(DecodeError, match="schema"):
        decode_fix(FIX, b'{"_type":"transition","event":"enter","tst":1795000059}', NOW)


# The GGA/RMC pair quoted in most NMEA references (checksums as published).
CLASSIC_GGA = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
CLASSIC_RMC = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"


def test_nmea_classic_sentences_parse_and_their_1994_clock_is_refused():
    position = nmea.parse_position(CLASSIC_GGA + "\r\n" + CLASSIC_RMC + "\r\n")
    assert position.lat == pytest.approx(48 + 7.038 / 60)
    assert position.lon == pytest.approx(11 + 31.0 / 60)
    assert (position.fix_type, position.satellites, position.hdop) == ("3D", 8, 0.9)
    assert position.accuracy_m == pytest.approx(0.9 * nmea.UERE_M["3D"])
    with pytest.raises(DecodeError, match="time:unset"):
        decode_fix(FIX, (CLASSIC_GGA + "\n" + CLASSIC_RMC).encode(), NOW)


def test_nmea_rtk_fix_at_kings_cross_with_gst_accuracy():
    gga = nmea.sentence(
        "GNGGA,101420.00,5133.46426,N,00006.52747,W,4,24,0.55,21.3,M,45.6,M,1.0,0001"
    )
    rmc = nmea.sentence("GNRMC,101420.00,A,5133.46426,N,00006.52747,W,0.02,,181126,,,R,V")
    gst = nmea.sentence("GNGST,101420.00,0.9,0.012,0.009,12.0,0.011,0.014,0.021")
    epoch_ms = int(datetime(2026, 11, 18, 10, 14, 20, tzinfo=UTC).timestamp() * 1000)
    fix = decode_fix(FIX, f"{gga}\r\n{rmc}\r\n{gst}\r\n".encode(), epoch_ms + 1000)
    assert fix.lat == pytest.approx(51 + 33.46426 / 60) and fix.lon == pytest.approx(
        -(6.52747 / 60)
    )
    assert fix.fix_type == "RTK fixed" and fix.accuracy_m == pytest.approx(0.014)
    assert fix.fix_ms == epoch_ms


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (CLASSIC_GGA.replace("*47", "*48") + "\n" + CLASSIC_RMC, "checksum"),
        (CLASSIC_GGA, "nmea:incomplete"),
        (
            CLASSIC_GGA
            + "\n"
            + CLASSIC_RMC.replace("123519", "123520").replace(
                "*6A", "*" + nmea.checksum(CLASSIC_RMC[1:-3].replace("123519", "123520"))
            ),
            "nmea:epoch",
        ),
        (
            nmea.sentence("GPGGA,123519,4807.038,N,01131.000,E,0,00,,,M,,M,,")
            + "\n"
            + nmea.sentence("GPRMC,123519,V,4807.038,N,01131.000,E,,,181126,,"),
            "no-position",
        ),
    ],
)
def test_nmea_rejects(payload, reason):
    with pytest.raises(DecodeError) as err:
        decode_fix(FIX, payload.encode(), NOW)
    assert err.value.reason == reason


def test_rfid_read_is_placed_at_its_reader():
    readers = {"gate-3": RfidReader("gate-3", 51.5571, -0.1093, 2.5)}
    payload = (
        b'{"reader_id": "gate-3", "tag_id": "E200-3412-0123", "seq": 7, "time_ms": 1795000059900}'
    )
    fix = decode_fix(DeviceTopic("tagco", "tag-0123", "rfid"), payload, NOW, readers)
    assert (fix.lat, fix.lon, fix.accuracy_m, fix.fix_type) == (51.5571, -0.1093, 2.5, "RFID")
    with pytest.raises(DecodeError) as err:
        decode_fix(
            DeviceTopic("tagco", "tag-0123", "rfid"),
            payload.replace(b"gate-3", b"gate-9"),
            NOW,
            readers,
        )
    assert err.value.reason == "rfid:unknown-reader"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe{}", "encoding"),
        (b"{not json", "json"),
        (b"[1, 2]", "schema"),
        (b"hello", "format"),
        (b"x" * 20_000, "size"),
        (native(lat=...), "missing:lat"),
        (native(lat="51.5"), "type:lat"),
        (native(lat=91.0), "range:lat"),
        (native(lon=-181.0), "range:lon"),
        (native(seq=-3), "range:seq"),
        (native(seq=1.5), "type:seq"),
        (native(time_ms=...), "missing:time_ms"),
        (native(time_ms=NOW + 3_600_000), "time:future"),
        (native(time_ms=0), "time:unset"),
        (native(device="someone-else"), "device-mismatch"),
        (native(fix_type="none"), "no-position"),
        (native(fix_type="5D"), "range:fix_type"),
        (native(accuracy_m=True), "type:accuracy_m"),
        (native(battery_pct=140), "range:battery_pct"),
        (b'{"lat": NaN, "lon": 0, "seq": 1, "time_ms": 1795000000000}', "json"),
        (b'{"lat": 1e999, "lon": 0, "seq": 1, "time_ms": 1795000000000}', "type:lat"),
        (b"[" * 100_00 + b"]" * 100_00, "size"),
    ],
)
def test_every_bad_payload_has_a_named_reason(payload, reason):
    with pytest.raises(DecodeError) as err:
        decode_fix(FIX, payload, NOW)
    assert err.value.reason == reason
    assert err.value.detail  # and a sentence for people


def test_deeply_nested_json_is_refused_not_a_crash():
    deep = b"[" * 5000 + b"]" * 5000
    with pytest.raises(DecodeError) as err:
        decode_fix(FIX, deep, NOW)
    assert err.value.reason in ("json", "schema")


def test_topics():
    assert parse("trackside/v1/acme/ac-0042/fix") == FIX
    assert parse("trackside/v1/acme/ac-0042/alert") is None
    assert parse("trackside/v1/acme/+/fix") is None
    assert parse("trackside/v2/acme/ac-0042/fix") is None
    assert parse("trackside/v1/acme/ac-0042/fix/extra") is None
    assert alert_topic("acme", "ac-0042") == "trackside/v1/acme/ac-0042/alert"
    assert subscriptions("ingest")[0] == "$share/ingest/trackside/v1/+/+/fix"


# --------------------------------------------------------------------- bounds (issue 14)
@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        # integers beyond the store's columns are refused at the edge, never deeper in
        (native(seq=10**30), "range:seq"),
        (native(seq=2**63), "range:seq"),
        (native(seq=1e30), "range:seq"),
        (native(satellites=1e30), "range:satellites"),
        (native(satellites=4_294_967_295), "range:satellites"),
        (native(satellites=256), "range:satellites"),
        (native(satellites=-1), "range:satellites"),
        (native(time_ms=10**30), "time:future"),
        (native(time_ms=-(10**30)), "time:unset"),
        (native(lat=10**400), "range:lat"),  # an integer no float can hold
        (native(lon=-(10**400)), "range:lon"),
        (native(hdop=1e308), "range:hdop"),
        (native(accuracy_m=-0.1), "range:accuracy_m"),
        # an integer with more digits than Python will convert
        (native(seq=...)[:-1] + b', "seq": ' + b"9" * 5000 + b"}", "range:seq"),
        # strings: bounded, printable (no NUL, no control character, no lone surrogate)
        (native(firmware="x" * 65), "range:firmware"),
        (native(firmware="3.2\u0000"), "range:firmware"),
        (native(firmware="3.2\ud800"), "range:firmware"),
        (native(firmware="3.2\n"), "range:firmware"),
        (native(firmware=32), "type:firmware"),
        (native(fix_type=["RTK fixed"]), "range:fix_type"),
        (native(seq=[1]), "type:seq"),
        (native(lat={"deg": 51}), "type:lat"),
        (native(device=["ac-0042"]), "device-mismatch"),
    ],
)
def test_every_field_is_bounded_at_the_edge(payload, reason):
    with pytest.raises(DecodeError) as err:
        decode_fix(FIX, payload, NOW)
    assert err.value.reason == reason
    assert 0 < len(err.value.detail) < 300  # a sentence, never the whole hostile value


def test_a_decoded_fix_cannot_be_made_out_of_bounds():
    fix = decode_fix(FIX, native(), NOW)
    fields = {f: getattr(fix, f) for f in fix.__slots__}
    for name, bad, reason in [
        ("seq", 2**63, "range:seq"),
        ("seq", -2, "range:seq"),
        ("seq", True, "type:seq"),
        ("fix_ms", 1.5e12, "type:time_ms"),
        ("fix_ms", 0, "time:unset"),
        ("lat", float("nan"), "range:lat"),
        ("lon", float("inf"), "range:lon"),
        ("accuracy_m", float("nan"), "range:accuracy_m"),
        ("satellites", 70_000, "range:satellites"),
        ("hdop", -1.0, "range:hdop"),
        ("firmware", "\x00", "range:firmware"),
        ("device", "a/b", "topic"),
        ("source_format", "carrier-pigeon", "format"),
    ]:
        with pytest.raises(DecodeError) as err:
            DecodedFix(**(fields | {name: bad}))
        assert err.value.reason == reason, name
    assert set(BOUNDS) >= {"seq", "time_ms", "lat", "lon", "satellites", "hdop"}


def test_owntracks_last_will_is_the_device_going_offline():
    decoded = decode(
        DeviceTopic("phones", "jb-pixel", "fix"), b'{"_type":"lwt","tst":1795000059}', NOW
    )
    assert decoded.offline and decoded.fixes == ()
    status = decode(DeviceTopic("acme", "ac-0042", "status"), b'{"online": false}', NOW)
    assert status.offline
    assert not decode(DeviceTopic("acme", "ac-0042", "status"), b'{"online": true}', NOW).offline
    with pytest.raises(DecodeError, match="status"):
        decode(DeviceTopic("acme", "ac-0042", "status"), b'{"online": 1' + b"0" * 5000 + b"}", NOW)


def _epoch(hhmmss: str, ddmmyy: str = "181126", *, sats: str = "24", quality: int = 4) -> str:
    gga = nmea.sentence(
        f"GNGGA,{hhmmss},5133.46426,N,00006.52747,W,{quality},{sats},0.55,21.3,M,45.6,M,1.0,0001"
    )
    rmc = nmea.sentence(f"GNRMC,{hhmmss},A,5133.46426,N,00006.52747,W,0.02,,{ddmmyy},,,R,V")
    return f"{gga}\r\n{rmc}\r\n"


EPOCH_MS = int(datetime(2026, 11, 18, 10, 14, 20, tzinfo=UTC).timestamp() * 1000)
_GST_NAN = nmea.sentence("GNGST,101420.00,0.9,nan,0.009,12.0,nan,nan,0.02")


def _with_gga(fields: str) -> str:
    """An epoch whose GGA (valid checksum) carries `fields` from latitude to HDOP."""
    gga = nmea.sentence(f"GNGGA,101420.00,{fields},21.3,M,45.6,M,,")
    return gga + "\r\n" + _epoch("101420.00").split("\r\n")[1]


def test_a_damaged_sentence_we_do_not_read_does_not_refuse_a_good_epoch():
    gsv = nmea.sentence("GPGSV,3,1,11,10,63,137,17,07,61,098,15,05,59,290,20,08,54,157,30")
    damaged = gsv[:-2] + ("00" if not gsv.endswith("00") else "01")
    fix = decode_fix(FIX, (_epoch("101420.00") + damaged + "\r\n").encode(), EPOCH_MS + 500)
    assert fix.fix_ms == EPOCH_MS and fix.satellites == 24
    # a damaged GGA or RMC, or a line whose kind cannot be told, still refuses it
    gga, rmc = _epoch("101420.00").split("\r\n")[:2]
    for body in (f"{gga[:-2]}00\r\n{rmc}", f"{gga}\r\n{rmc}\r\n$G#SV,1,2*00"):
        with pytest.raises(DecodeError) as err:
            decode_fix(FIX, body.encode(), EPOCH_MS + 500)
        assert err.value.reason == "checksum"


def test_a_cold_start_epoch_without_a_fix_is_no_position():
    # u-blox before its first fix: every position field empty, quality 0, status V
    rmc, gga = nmea.sentence("GPRMC,,V,,,,,,,,,,N"), nmea.sentence("GPGGA,,,,,,0,00,99.99,,,,,,")
    cold = f"{rmc}\r\n{gga}\r\n"
    with pytest.raises(DecodeError) as err:
        decode_fix(FIX, cold.encode(), NOW)
    assert err.value.reason == "no-position"
    assert nmea.parse_position(cold).fix_type is None  # (recordings skip such epochs)


def test_two_epochs_in_one_message_are_two_fixes_not_the_last_one():
    body = _epoch("101420.00") + _epoch("101421.00")
    decoded = decode(FIX, body.encode(), EPOCH_MS + 2000)
    assert [f.fix_ms for f in decoded.fixes] == [EPOCH_MS, EPOCH_MS + 1000]
    # a repeated sentence is one epoch, not two; an unpaired one refuses the message
    assert len(decode(FIX, (body + _epoch("101421.00")).encode(), EPOCH_MS + 2000).fixes) == 2
    lone = body + _epoch("101422.00").split("\r\n")[0]
    with pytest.raises(DecodeError) as err:
        decode(FIX, lone.encode(), EPOCH_MS + 3000)
    assert err.value.reason == "nmea:epoch"


@pytest.mark.parametrize(
    ("epoch", "reason"),
    [
        (_epoch("101420.00", sats="4294967295"), "range:satellites"),
        (_epoch("101420.00", sats="9" * 5000), "range:satellites"),
        (_epoch("101420.00", sats="\u00b2"), "type:satellites"),  # a digit to str.isdigit
        (_epoch("101420.00", sats="1e3"), "type:satellites"),
        (_epoch("1014nan"), "time:invalid"),
        (_epoch("101420.00", "311126"), "time:invalid"),  # 31 November
        (_epoch("251420.00"), "time:invalid"),
        (_epoch("101420.00", quality=99), "no-position"),
        (_epoch("101420.00").replace("5133.46426", "9133.46426"), "checksum"),
        (_with_gga("9133.46426,N,00006.52747,W,4,24,0.5"), "range:lat"),
        (_with_gga("51nan,N,00006.52747,W,4,24,0.5"), "type:lat"),
        (_with_gga("5133.46426,E,00006.52747,W,4,24,0.5"), "type:lat"),
        (_with_gga("5133.46426,N,00006.52747,W,4,24,inf"), "type:hdop"),
        (_with_gga("5133.46426,N,00006.52747,W,4,24,500"), "range:hdop"),
        (_epoch("101420.00") + _GST_NAN, "type:accuracy_m"),
    ],
)
def test_nmea_fields_are_bounded_before_they_are_converted(epoch, reason):
    with pytest.raises(DecodeError) as err:
        decode_fix(FIX, epoch.encode(), EPOCH_MS + 500)
    assert err.value.reason == reason


ALARM = DeviceTopic("acme", "ac-0042", "alarm")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"kind": "vibrate"}, "range:kind"),
        ({"kind": None}, "range:kind"),
        ({"seq": 2**63}, "range:seq"),
        ({"seq": -1}, "range:seq"),
        ({"time_ms": NOW + 3_600_000}, "time:future"),
        ({"time_ms": 10**30}, "range:time_ms"),
        ({"lat": 91.0}, "range:lat"),
        ({"lon": None}, "schema"),  # a position is both coordinates or neither
        ({"time_ms": ...}, "missing:time_ms"),
    ],
)
def test_a_device_s_own_alarm_is_bounded_at_the_edge(body, reason):
    good = {"seq": 7, "time_ms": NOW - 200, "kind": "breach", "lat": 51.5577, "lon": -0.1088}
    merged = {k: v for k, v in {**good, **body}.items() if v is not ...}
    with pytest.raises(DecodeError) as caught:
        decode(ALARM, json.dumps(merged).encode(), NOW)
    assert caught.value.reason == reason


def test_a_device_s_own_alarm_decodes_and_is_subscribed_to():
    body = {"seq": 7, "time_ms": NOW - 200, "kind": "breach", "lat": 51.5577, "lon": -0.1088}
    decoded = decode(ALARM, json.dumps(body).encode(), NOW)
    assert decoded.fixes == () and not decoded.offline
    a = decoded.alarm
    assert (a.device_id, a.seq, a.alarm_ms, a.kind, a.lat, a.lon) == (
        "acme/ac-0042", 7, NOW - 200, "breach", 51.5577, -0.1088
    )  # fmt: skip
    assert parse("trackside/v1/acme/ac-0042/alarm") == ALARM
    assert "trackside/v1/+/+/alarm" in subscriptions()


# ================================================================ decode made cheaper, not changed
# Decoding was made cheaper (a folded XOR checksum, one pass over an epoch's sentences,
# cached clock and calendar reads, table look-ups for quality and satellites, fast paths
# for plain JSON fields and in-bounds fixes, one JSON decoder). None of that may change
# a result. The oracle below is the code as it was before (commit 4ec252f), verbatim but
# for names: every decoded field, every dead-letter reason and detail must be the
# same for the simulator's own payloads and for thousands of damaged and hostile ones.


# ---------------------------------------------------------------- reference implementation
def reference_checksum(body: str) -> str:
    value = 0
    for ch in body:
        value ^= ord(ch)
    return f"{value:02X}"


def reference_kind(address: str) -> str | None:
    match = nmea._ADDRESS.fullmatch(address)
    if match:
        return match.group(1)
    return "proprietary" if nmea._PROPRIETARY.fullmatch(address) else None


def reference_sentences(text: str) -> list[list[str]]:
    used = []
    for line in text.replace("\r", "\n").split("\n"):
        line = line.strip()
        if not line:
            continue
        if not line.startswith("$") or "*" not in line:
            raise nmea.NmeaError("nmea", f"not an NMEA sentence: {line[:40]!r}")
        body, _, given = line[1:].partition("*")
        fields = body.split(",")
        kind = reference_kind(fields[0])
        if reference_checksum(body) != given.strip().upper()[:2]:
            if kind is not None and kind not in nmea.USED:
                continue
            raise nmea.NmeaError(
                "checksum", f"checksum {given.strip()[:8]!r} does not match {body[:6]!r} sentence"
            )
        if kind in nmea.USED:
            used.append(fields)
    return used


def reference_angle(value: str, hemisphere: str, degree_digits: int, what: str) -> float:
    if not value or not hemisphere:
        raise nmea.NmeaError(f"missing:{what}", f"{what} is empty")
    hemispheres, limit = (("N", "S"), 90) if what == "lat" else (("E", "W"), 180)
    match = nmea._ANGLE[degree_digits].fullmatch(value)
    if match is None or hemisphere not in hemispheres:
        raise nmea.NmeaError(
            f"type:{what}", f"{what} {value[:20]!r} {hemisphere[:4]!r} is not ddmm.mmmm"
        )
    degrees, minutes = int(match.group(1)), float(match.group(2))
    angle = degrees + minutes / 60
    if minutes >= 60 or angle > limit:
        raise nmea.NmeaError(f"range:{what}", f"{what} {value!r} is outside ±{limit} degrees")
    return -angle if hemisphere in ("S", "W") else angle


def reference_epoch_key(time_field: str) -> int | str:
    match = nmea._TIME.fullmatch(time_field)
    if match is None:
        return time_field[:16]
    hh, mm, ss, fraction = match.groups()
    ms = round(int(fraction) * 1000 / 10 ** len(fraction)) if fraction else 0
    return ((int(hh) * 60 + int(mm)) * 60 + int(ss)) * 1000 + ms


def reference_decimal(value: str, what: str, limit: float) -> float | None:
    if not value:
        return None
    if not nmea._DECIMAL.fullmatch(value):
        raise nmea.NmeaError(f"type:{what}", f"{what} {value[:20]!r} is not a decimal number")
    number = float(value)
    if number > limit:
        raise nmea.NmeaError(f"range:{what}", f"{what} {number} is above {limit}")
    return number


def reference_fix_time(rmc: list[str]) -> int:
    time_match = nmea._TIME.fullmatch(rmc[1])
    date_match = nmea._DATE.fullmatch(rmc[9])
    if time_match is None or date_match is None:
        raise nmea.NmeaError(
            "time:invalid", f"RMC time {rmc[1][:16]!r} / date {rmc[9][:16]!r} unreadable"
        )
    hh, mm, ss, fraction = time_match.groups()
    day, month, yy = (int(g) for g in date_match.groups())
    year = 2000 + yy if yy < 80 else 1900 + yy
    if not (int(hh) < 24 and int(mm) < 60 and int(ss) <= 60 and 1 <= month <= 12):
        raise nmea.NmeaError("time:invalid", f"RMC time {rmc[1]!r} / date {rmc[9]!r} is no time")
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise nmea.NmeaError("time:invalid", f"RMC date {rmc[9]!r} is no day")
    seconds = calendar.timegm((year, month, day, int(hh), int(mm), int(ss), 0, 0, 0))
    ms = round(int(fraction) * 1000 / 10 ** len(fraction)) if fraction else 0
    return seconds * 1000 + ms


def reference_position(gga: list[str], rmc: list[str], gst: list[str] | None) -> nmea.Position:
    quality_field = gga[6] or "0"
    if not nmea._DIGITS.fullmatch(quality_field) or len(quality_field) > 2:
        raise nmea.NmeaError("type:quality", f"GGA fix quality {gga[6][:8]!r} is not a number")
    fix_type = nmea._QUALITY.get(int(quality_field)) if rmc[2] == "A" else None
    if fix_type is None:
        key = reference_epoch_key(rmc[1])
        return nmea.Position(
            key if isinstance(key, int) else -1, math.nan, math.nan, None, None, None, None
        )
    lat = reference_angle(gga[2], gga[3], 2, "lat")
    lon = reference_angle(gga[4], gga[5], 3, "lon")
    fix_ms = reference_fix_time(rmc)
    satellites = None
    if gga[7]:
        if not nmea._DIGITS.fullmatch(gga[7]):
            raise nmea.NmeaError(
                "type:satellites", f"GGA satellites {gga[7][:20]!r} is not a count"
            )
        if len(gga[7]) > 3 or int(gga[7]) > nmea.SATELLITES_MAX:
            raise nmea.NmeaError(
                "range:satellites",
                f"GGA satellites {gga[7][:20]!r} is above {nmea.SATELLITES_MAX}",
            )
        satellites = int(gga[7])
    hdop = reference_decimal(gga[8], "hdop", nmea.HDOP_MAX)
    accuracy = None
    if gst is not None and len(gst) >= 8 and gst[6] and gst[7]:
        lat_error = reference_decimal(gst[6], "accuracy_m", nmea.ACCURACY_MAX_M)
        lon_error = reference_decimal(gst[7], "accuracy_m", nmea.ACCURACY_MAX_M)
        accuracy = max(lat_error, lon_error)  # type: ignore[type-var]
    if accuracy is None and hdop is not None and fix_type in nmea.UERE_M:
        accuracy = hdop * nmea.UERE_M[fix_type]
    return nmea.Position(fix_ms, lat, lon, fix_type, satellites, hdop, accuracy)


def reference_one_per_epoch(sentences: list[list[str]], kind: str) -> dict:
    by_epoch: dict[int | str, list[str]] = {}
    for fields in sentences:
        if fields[0][-3:] != kind:
            continue
        key = reference_epoch_key(fields[1] if len(fields) > 1 else "")
        seen = by_epoch.get(key)
        if seen is not None and seen[1:] != fields[1:]:
            raise nmea.NmeaError(
                "nmea:epoch", f"two different {kind} sentences for the epoch {fields[1][:12]!r}"
            )
        by_epoch[key] = fields
    return by_epoch


def reference_parse_epochs(text: str) -> list[nmea.Position]:
    used = reference_sentences(text)
    gga = reference_one_per_epoch(used, "GGA")
    rmc = reference_one_per_epoch(used, "RMC")
    gst = reference_one_per_epoch(used, "GST")
    if not gga or not rmc:
        raise nmea.NmeaError(
            "nmea:incomplete", "a fix needs both GGA (position) and RMC (date) sentences"
        )
    if any(len(f) < 10 for f in gga.values()) or any(len(f) < 10 for f in rmc.values()):
        raise nmea.NmeaError("nmea", "GGA or RMC sentence is truncated")
    if set(gga) != set(rmc):
        lone = sorted(str(k) for k in set(gga) ^ set(rmc))
        raise nmea.NmeaError(
            "nmea:epoch",
            f"GGA times {[f[1][:12] for f in gga.values()]} and RMC times "
            f"{[f[1][:12] for f in rmc.values()]} are different epochs ({len(lone)} unpaired)",
        )
    if len(gst) == 1 and len(gga) == 1 and next(iter(gst)) not in gga:
        gst = {}
    return [reference_position(gga[key], rmc[key], gst.get(key)) for key in gga]


def reference_check_bounds(f) -> None:
    c = codecs
    if not (valid_name(f.supplier) and valid_name(f.device)):
        raise DecodeError("topic", "supplier and device must be names a topic may carry")
    if type(f.seq) is not int:
        raise DecodeError("type:seq", f"seq must be a whole number, got {type(f.seq).__name__}")
    if f.seq != c.NO_SEQ and not BOUNDS["seq"][0] <= f.seq <= BOUNDS["seq"][1]:
        raise DecodeError("range:seq", f"seq {c._short(f.seq)} is outside [0, 2^63 - 1]")
    if type(f.fix_ms) is not int:
        raise DecodeError("type:time_ms", "the fix time must be whole milliseconds")
    if f.fix_ms < c.MIN_FIX_MS:
        raise DecodeError(
            "time:unset",
            f"fix time {c._short(f.fix_ms)} ms is before 2020: the device clock is not set",
        )
    if f.fix_ms > c.MAX_FIX_MS:
        raise DecodeError("time:future", f"fix time {c._short(f.fix_ms)} ms is after 2100")
    for name in ("lat", "lon", "accuracy_m", "hdop", "battery_pct"):
        value = getattr(f, name)
        if value is None and name not in ("lat", "lon"):
            continue
        lo, hi = BOUNDS[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise DecodeError(f"range:{name}", f"{name} {c._short(value)} is outside [{lo}, {hi}]")
    if f.satellites is not None and (
        type(f.satellites) is not int
        or not BOUNDS["satellites"][0] <= f.satellites <= BOUNDS["satellites"][1]
    ):
        raise DecodeError(
            "range:satellites",
            f"satellites {c._short(f.satellites)} is outside [0, {nmea.SATELLITES_MAX}]",
        )
    if f.fix_type is not None and f.fix_type not in (*c.FIX_TYPES, "RFID"):
        raise DecodeError("range:fix_type", f"fix_type {c._short(f.fix_type)} is not one we know")
    if f.firmware is not None and not c._printable(f.firmware):
        raise DecodeError(
            "range:firmware", f"firmware must be printable text of at most {c.TEXT_MAX}"
        )
    if f.source_format not in c.SOURCE_FORMATS:
        raise DecodeError("format", f"source format {c._short(f.source_format)} is not one we know")


def reference_json_object(text: str) -> dict:
    try:
        obj = json.loads(text, parse_constant=codecs._no_constant, parse_int=codecs._json_int)
    except json.JSONDecodeError as exc:
        raise DecodeError("json", f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise DecodeError("json", "JSON nested too deeply") from None
    except ValueError as exc:
        raise DecodeError("json", f"not usable JSON ({str(exc)[:80]})") from None
    if not isinstance(obj, dict):
        raise DecodeError("schema", f"JSON payload must be an object, got {type(obj).__name__}")
    return obj


def reference_field(obj, key: str, required: bool):
    if key not in obj or obj[key] is None:
        if required:
            raise DecodeError(f"missing:{key}", f"field {key!r} is required")
        return None
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DecodeError(
            f"type:{key}", f"field {key!r} must be a number, got {codecs._short(value)}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise DecodeError(f"type:{key}", f"field {key!r} must be a finite number, got {value}")
    return value


@contextlib.contextmanager
def reference_decode():
    """decode() as it was: the reference functions in place of the ones made cheaper (the
    rest of wire.codecs did not change)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(codecs, "_check_bounds", reference_check_bounds)
        patch.setattr(codecs, "_field", reference_field)
        patch.setattr(codecs, "_json_object", reference_json_object)
        patch.setattr(nmea, "parse_epochs", reference_parse_epochs)
        yield


def outcome(call, *args) -> tuple:
    """What a call came to, in full: its result's repr (every field, floats exactly, NaN
    included) or its refusal's reason and detail; a crash is recorded, to be equal too."""
    try:
        return ("ok", repr(call(*args)))
    except (DecodeError, nmea.NmeaError) as exc:
        return ("refused", type(exc).__name__, exc.reason, exc.detail)
    except Exception as exc:
        return ("crash", type(exc).__name__, str(exc))


# ---------------------------------------------------------------- the corpus
SHIFT_START_MS = 1_780_304_400_000  # 2026-06-01 09:00 UTC


@functools.cache
def shift_messages() -> tuple[list[tuple[str, DeviceTopic, bytes, int]], dict]:
    """A simulated shift's messages, (format, topic, payload, received ms), in every format
    (native, NMEA, OwnTracks, RFID reads, status, the devices' own alarms) as the simulator
    makes their bytes, and ingest's RFID readers.

    The plain-line scenario with each of its workers wearing one device of each supplier
    (NMEA, OwnTracks and native as the scenario has them, and an RFID tag), four readers
    along the cess. Also the workload of benchmarks/test_decode_speed.py.
    """
    from devices.sim.generate import simulate
    from devices.sim.publish import alarm_payload, ingest_readers, payload
    from devices.sim.scenario import scenario_from_mapping
    from loading.site_files import load_site

    path = ROOT / "examples" / "scenarios" / "plain-line.toml"
    data = tomllib.loads(path.read_text())
    data["supplier"]["tags"] = {"technology": "RFID", "fix_rate_hz": 2, "latency_ms": 50}
    data["rfid_reader"] = [
        {"id": f"gate-{k}", "along_m": 1130 + 25 * k, "lateral_m": -2.5, "range_m": 3.0}
        for k in range(4)
    ]
    data["worker"] = [
        {
            **worker,
            "name": f"{worker['name']} {supplier}",
            "device": f"{supplier}/{worker['device'].split('/')[1]}",
        }
        for worker in data["worker"]
        for supplier in ("acme", "gnssco", "phones", "tags")
    ]
    scenario = scenario_from_mapping(data, path.parent)
    site = load_site(scenario.site_file)
    sim = simulate(scenario, site)
    f = sim.fixes
    out = []
    for worker in scenario.workers:
        supplier, name = worker.device.split("/", 1)
        topic = DeviceTopic(supplier, name, "status")
        out.append(("status", topic, b'{"online": true}', SHIFT_START_MS))
    for i in range(len(f)):
        worker = scenario.workers[int(f.worker[i])]
        supplier, name = worker.device.split("/", 1)
        profile = scenario.profile(worker)
        fix_ms, sent_ms = SHIFT_START_MS + int(f.fix_ms[i]), SHIFT_START_MS + int(f.send_ms[i])
        if profile.is_rfid:
            read = {
                "reader_id": str(f.reader[i]),
                "tag_id": name,
                "seq": int(f.seq[i]),
                "time_ms": fix_ms,
                "battery_pct": round(float(f.battery_pct[i]), 1),
            }
            out.append(("rfid", DeviceTopic(supplier, name, "rfid"), json.dumps(read).encode(),
                        sent_ms))  # fmt: skip
            continue
        body = payload(
            profile.format, name, int(f.seq[i]), fix_ms, float(f.lat[i]), float(f.lon[i]),
            float(f.accuracy_m[i]), str(f.fix_type[i]), profile.firmware,
            float(f.battery_pct[i]),
        )  # fmt: skip
        out.append((profile.format, DeviceTopic(supplier, name, "fix"), body, sent_ms))
        if i % 97 == 0:
            kind = codecs.ALARM_KINDS[i % len(codecs.ALARM_KINDS)]
            alarm = alarm_payload(i, fix_ms, kind, float(f.lat[i]), float(f.lon[i]))
            out.append(("alarm", DeviceTopic(supplier, name, "alarm"), alarm, sent_ms))
    readers = {r.reader_id: r for r in ingest_readers(sim, site)}
    return out, readers


def _grid_payloads() -> list[tuple[str, bytes, int]]:
    """The simulator's payload() over both hemispheres, every fix type and odd times."""
    from devices.sim.publish import FORMATS, payload

    out = []
    rng = random.Random(14)
    times = [
        SHIFT_START_MS,
        1_709_164_800_123,
        1_798_761_599_990,
        1_577_836_800_000,
        3_471_292_799_999,
        1_795_000_059_999,
    ]
    for fmt in FORMATS:
        for fix_ms in times:
            for fix_type in ("3D", "SBAS", "DGPS", "RTK float", "RTK fixed"):
                lat, lon = rng.uniform(-89.9, 89.9), rng.uniform(-179.9, 179.9)
                accuracy = rng.choice([0.004, 0.35, 4.2, 99.9, 5000.0, 123456.0])
                body = payload(
                    fmt,
                    "dev-1",
                    rng.randrange(2**40),
                    fix_ms,
                    lat,
                    lon,
                    accuracy,
                    fix_type,
                    "1.2.3",
                    rng.uniform(0, 100),
                )
                out.append(("fix", body, fix_ms + rng.choice([0, 900, 61_000])))
    return out


_ODD_JSON = [
    None,
    math.nan,
    math.inf,
    -math.inf,
    10**30,
    2**63,
    -1,
    0,
    True,
    False,
    "51.5",
    [1],
    {"a": 1},
    1.5,
    -0.0,
    1e-320,
    1e308,
    4_294_967_295,
    "x\x00",
    "ü" * 70,
    "\ud800",
    "RTK fixed",
    "none",
    "location",
    "lwt",
]
_ODD_FIELD = [
    "",
    "nan",
    "inf",
    "9" * 50,
    "-1",
    "1e3",
    "\u00b2",
    "é",
    "0",
    "00",
    "000",
    "255",
    "256",
    "060",
    "99",
    "A",
    "V",
    "S",
    "W",
    "1.",
    ".5",
    " 1",
    "235960",
    "240000",
    "101420.123456",
    "290224",
    "290223",
    "311279",
    "010180",
    "999999",
]


def _json_variants(text: str) -> list[bytes]:
    obj = json.loads(text)
    out = []
    for key in obj:
        out.append(json.dumps({k: v for k, v in obj.items() if k != key}).encode())
        for odd in _ODD_JSON:
            out.append(json.dumps(obj | {key: odd}).encode())
        digits = json.dumps(obj | {key: 0}).replace(f'"{key}": 0', f'"{key}": {"9" * 5000}')
        out.append(digits.encode())
        out.append(digits.replace(f'"{key}": 9', f'"{key}": -9').encode())
        out.append(json.dumps(obj | {key: 0}).replace(f'"{key}": 0', f'"{key}": 1e999').encode())
    return out


def _nmea_variants(text: str) -> list[bytes]:
    lines = [line for line in text.split("\r\n") if line]
    out = []
    for i, line in enumerate(lines):
        body, given = line[1:].split("*")
        others = lines[:i] + lines[i + 1 :]
        out.append("\r\n".join(others).encode())  # a sentence missing
        out.append("\r\n".join([*others, line]).encode())  # reordered
        for bad in (
            given.lower(),
            f"{int(given, 16) ^ 1:02X}",
            f" {given} ",
            given + "xx",
            given[:1],
            "",
        ):
            out.append("\r\n".join([*lines[:i], f"${body}*{bad}", *lines[i + 1 :]]).encode())
        out.append("\r\n".join([*lines[:i], f"{body}*{given}", *lines[i + 1 :]]).encode())
        out.append("\r\n".join([*lines[:i], f"${body}{given}", *lines[i + 1 :]]).encode())
        fields = body.split(",")
        for cut in (2, 5, 9, len(fields) - 1):  # a short sentence, its checksum right
            out.append(
                "\r\n".join(
                    [*lines[:i], nmea.sentence(",".join(fields[:cut])), *lines[i + 1 :]]
                ).encode()
            )
        for j in range(1, len(fields)):
            for odd in _ODD_FIELD:
                changed = ",".join([*fields[:j], odd, *fields[j + 1 :]])
                out.append(
                    "\r\n".join([*lines[:i], nmea.sentence(changed), *lines[i + 1 :]]).encode()
                )
        for talker in ("GP", "gn", "PUBX", "GNGSV", "G#"):
            changed = ",".join(
                [talker + fields[0][2:] if len(talker) == 2 else talker, *fields[1:]]
            )
            out.append("\r\n".join([*lines[:i], nmea.sentence(changed), *lines[i + 1 :]]).encode())
        # a field changed but not its checksum; non-ASCII text, its (long) checksum given
        out.append(text.replace(fields[1], fields[1][::-1], 1).encode())
        for wide in (body + ",ā", body + ",āē"):  # (past 0xFF: three hex digits; or not)
            given = reference_checksum(wide)
            for cs in (given, given[:2], given.lower()):
                out.append("\r\n".join([*lines[:i], f"${wide}*{cs}", *lines[i + 1 :]]).encode())
    for sep in ("\n", "\r", "", "\r\n\r\n", "\u2028", "\x0b", " \t"):
        out.append(sep.join(lines).encode())
    # two epochs; the same one repeated; different sentences of one epoch in either order
    later = text.replace(lines[0].split(",")[1], "235959.99")
    later = "\r\n".join(
        nmea.sentence(line[1:].split("*")[0]) for line in later.split("\r\n") if line
    )
    out += [(text + later).encode(), (text + text).encode(), (later + "\r\n" + text).encode()]
    if len(lines) >= 2:
        gga = lines[0][1:].split("*")[0].split(",")
        rmc = lines[1][1:].split("*")[0].split(",")
        gga2 = nmea.sentence(",".join([*gga[:7], "5", *gga[8:]]))
        rmc2 = nmea.sentence(",".join([*rmc[:7], "9.9", *rmc[8:]]))
        out.append("\r\n".join([*lines, rmc2, gga2]).encode())
        out.append("\r\n".join([*lines, gga2, rmc2]).encode())
        out.append("\r\n".join([lines[0], rmc2, lines[1]]).encode())
    return out


def _bytes_variants(body: bytes, rng: random.Random) -> list[bytes]:
    out = [
        body[: len(body) // 2],
        body[:-1],
        body[:-3],
        body[:1],
        b"",
        b"  \r\n" + body,
        body + b"\x00",
        b"\xef\xbb\xbf" + body,
        body[:5] + b"\xff" + body[5:],
        body + b"\xc3",
        body + body,
        body + b" " * codecs.MAX_PAYLOAD_BYTES,
    ]
    for _ in range(4):
        mutated = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            k = rng.randrange(len(mutated) or 1)
            action = rng.random()
            if action < 0.4 and mutated:
                mutated[k] = rng.randrange(256)
            elif action < 0.7:
                mutated.insert(k, rng.choice(b"$*,.-0123456789ANSEWV\r\n \xc3\xa9"))
            elif mutated:
                del mutated[k]
        out.append(bytes(mutated))
    return out


def decode_corpus() -> list[tuple[DeviceTopic, bytes, int]]:
    """(topic, payload, received_ms): the shift's messages, the grid, and their variants."""
    wire, _ = shift_messages()
    rng = random.Random(7)
    by_kind: dict[str, list] = {}
    for fmt, topic, body, received_ms in wire:
        by_kind.setdefault(fmt, []).append((topic, body, received_ms))
    assert set(by_kind) == {"native", "nmea", "owntracks", "rfid", "status", "alarm"}
    cases = []
    for items in by_kind.values():
        cases += items[:: max(1, len(items) // 150)]
    for kind, body, received_ms in _grid_payloads():
        cases.append((DeviceTopic("grid", "dev-1", kind), body, received_ms))
    base = list(cases)
    for topic, body, received_ms in base:
        variants = _bytes_variants(body, rng)
        if rng.random() < 0.1:  # the field-by-field variants, on a sample
            text = body.decode()
            variants += _nmea_variants(text) if text.startswith("$") else _json_variants(text)
        cases += [(topic, v, received_ms) for v in variants]
        for kind in ("fix", "rfid", "status", "alarm"):  # every payload on every topic
            cases.append((DeviceTopic(topic.supplier, topic.device, kind), body, received_ms))
    return cases


@pytest.fixture(scope="module")
def corpus():
    return decode_corpus()


def test_decode_is_unchanged_on_the_simulator_s_payloads_and_their_hostile_variants(corpus):
    _, readers = shift_messages()
    with reference_decode():
        assert codecs._check_bounds is reference_check_bounds  # (the oracle is in place)
        expected = [outcome(decode, t, p, r, readers) for t, p, r in corpus]
    got = [outcome(decode, t, p, r, readers) for t, p, r in corpus]
    assert len(corpus) > 15_000
    kinds = {e[0] for e in expected}
    reasons = {e[2] for e in expected if e[0] == "refused"}
    assert kinds == {"ok", "refused"}  # (nothing crashes, before or after)
    assert len(reasons) > 35  # the corpus reaches most of the reasons decode has
    mismatched = [(c, e, g) for c, e, g in zip(corpus, expected, got, strict=True) if e != g]
    assert not mismatched[:5], f"{len(mismatched)} of {len(corpus)} decode differently"


def test_parse_epochs_is_unchanged_including_epochs_without_a_fix(corpus):
    texts = {p.decode("utf-8", "replace").lstrip() for _, p, _ in corpus if b"$" in p}
    texts |= {nmea.sentence("GPRMC,,V,,,,,,,,,,N") + "\r\n" + nmea.sentence("GPGGA,,,,,,0,00,,,,")}
    texts |= {_epoch(f"1014{s:02d}.00", quality=q) for s in range(3) for q in (0, 1, 6, 8)}
    for text in sorted(texts):
        assert outcome(nmea.parse_epochs, text) == outcome(reference_parse_epochs, text), text


@settings(max_examples=400, deadline=None, database=None)
@given(st.one_of(st.text(max_size=400), st.text(alphabet=st.characters(max_codepoint=127))))
def test_checksum_is_the_xor_of_the_characters(body):
    assert nmea.checksum(body) == reference_checksum(body)
    assert nmea.sentence(body) == f"${body}*{reference_checksum(body)}"


def test_checksum_at_every_length_and_byte():
    rng = random.Random(3)
    for n in range(600):
        body = "".join(chr(rng.randrange(128)) for _ in range(n))
        assert nmea.checksum(body) == reference_checksum(body), n
    for code in range(1, 0x3000, 7):
        assert nmea.checksum(chr(code) * 3) == reference_checksum(chr(code) * 3)


_BOUND_VALUES = {
    "supplier": ["acme", "", "a/b", "x" * 65, 5, None, "ü"],
    "device": ["ac-0042", "a+", "-x", "x" * 64],
    "seq": [0, -1, -2, 2**63 - 1, 2**63, True, 1.0, None, "1", 10**400],
    "fix_ms": [
        NOW,
        codecs.MIN_FIX_MS,
        codecs.MIN_FIX_MS - 1,
        codecs.MAX_FIX_MS,
        codecs.MAX_FIX_MS + 1,
        1.7e12,
        True,
        -(10**50),
    ],
    "lat": [51.5, 90.0, 90.000001, -90.0, math.nan, math.inf, 45, True, 10**400, None, "1", -0.0],
    "lon": [-0.1, 180.0, -180.5, math.nan, -math.inf, -180, False, 1e308],
    "accuracy_m": [None, 0.0, -0.0, 0.35, 100_000.0, 100_000.1, math.nan, 3, True, "1"],
    "satellites": [None, 0, 255, 256, -1, True, 3.0, "3", 10**40],
    "hdop": [None, 0.7, 100.0, 100.5, -0.1, math.inf, 1, False],
    "battery_pct": [None, 81.5, 100, 100.01, -1.0, math.nan, True, [1]],
    "fix_type": [None, *codecs.FIX_TYPES, "RFID", "none", ["RTK fixed"], 5, {"a": 1}],
    "firmware": [None, "1.0", "\x00", "x" * 65, 5, "\ud800", ""],
    "source_format": [*codecs.SOURCE_FORMATS, "pigeon", None, []],
}


def test_the_bounds_check_is_unchanged_for_any_value_in_any_field():
    rng = random.Random(11)
    good = {name: values[0] for name, values in _BOUND_VALUES.items()}
    cases = [good | {name: v} for name, values in _BOUND_VALUES.items() for v in values]
    cases += [{n: rng.choice(v) for n, v in _BOUND_VALUES.items()} for _ in range(3000)]
    for case in cases:
        fix = types.SimpleNamespace(**case)
        assert outcome(codecs._check_bounds, fix) == outcome(reference_check_bounds, fix), case


def test_json_fields_are_read_as_they_were():
    for value in [*_ODD_JSON, 7, 2**63 - 1, 1795000000000, 51.5577377, -(10**400)]:
        for obj in ({"k": value}, {}):
            for required in (True, False):
                assert outcome(codecs._field, obj, "k", required) == outcome(
                    reference_field, obj, "k", required
                )
    for text in [
        "\ufeff{}",
        "{}",
        "[]",
        "{" * 3000 + "}" * 3000,
        "[" * 100_000,
        '{"a": NaN}',
        '{"a": -Infinity}',
        '{"a": 1} x',
        '{"a": 1}\n',
        '{"a": ' + "9" * 5000 + "}",
        '{"a": 1' + "0" * 4400 + "}",
        '"text"',
        "",
        "{'a': 1}",
        '{"a": 1e99999}',
    ]:
        assert outcome(codecs._json_object, text) == outcome(reference_json_object, text), text
