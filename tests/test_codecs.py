"""Payload codecs on real-world samples, and every way a payload can be bad."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ingest import nmea
from ingest.codecs import BOUNDS, DecodedFix, DecodeError, RfidReader, decode, decode_fix
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
