"""Payload codecs on real-world samples, and every way a payload can be bad."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ingest import nmea
from ingest.codecs import DecodeError, RfidReader, decode_fix
from ingest.topics import DeviceTopic, alert_topic, parse, subscriptions

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
