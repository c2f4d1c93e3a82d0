"""Decoding a message at ingest's edge (`wire.codecs.decode`), per format, on a shift.

The workload is a simulated shift's own messages (tests/test_codecs.py `shift_messages`:
native JSON, OwnTracks JSON, NMEA GGA+RMC+GST, RFID reads, as the simulator makes their
bytes). Beside each format, the obvious peer on the same payloads:

* JSON formats: `json.loads` alone, the parse without a single check (decode parses
  with it, then holds every field to its type and bounds);
* NMEA (pynmea2 is not installed): a plain regex-and-split parse, checksum by
  `functools.reduce`, fields converted with no check of shape or bound.

The ratios say what the checks cost over a bare parse. Loose target: every format at
least 10,000 messages/s, far below what decode does (ingest's budget is 1,000 fixes/s
per worker). Run with `make bench`.
"""

from __future__ import annotations

import functools
import json
import operator
import re

import pytest

from benchmarks.conftest import NOTES, RESULTS, record
from tests.test_codecs import shift_messages
from wire.codecs import decode

FORMATS = ("native", "owntracks", "nmea", "rfid")
TARGET = 10_000  # messages per second, each format
_SENTENCE = re.compile(r"\$([A-Z]{2}([A-Z]{3}),[^*]*)\*([0-9A-Fa-f]{2})")


@pytest.fixture(scope="module")
def shift():
    wire, readers = shift_messages()
    by_format = {fmt: [(t, p, r) for f, t, p, r in wire if f == fmt] for fmt in FORMATS}
    return by_format, readers


def _decode_all(items, readers) -> int:
    fixes = 0
    for topic, payload, received_ms in items:
        fixes += len(decode(topic, payload, received_ms, readers).fixes)
    return fixes


def _json_all(items) -> int:
    return sum(len(json.loads(payload)) for _, payload, _ in items)


def _plain_nmea(payload: bytes) -> dict:
    """One message's GGA, RMC and GST the plain way: no shape or bound checked."""
    fix: dict = {}
    for line in payload.decode().split():
        match = _SENTENCE.fullmatch(line)
        if match is None:
            raise ValueError(line)
        body, kind, given = match.groups()
        if functools.reduce(operator.xor, body.encode(), 0) != int(given, 16):
            raise ValueError(line)
        f = body.split(",")
        if kind == "GGA":
            lat = int(f[2][:2]) + float(f[2][2:]) / 60
            lon = int(f[4][:3]) + float(f[4][3:]) / 60
            fix["lat"] = -lat if f[3] == "S" else lat
            fix["lon"] = -lon if f[5] == "W" else lon
            fix["quality"], fix["satellites"], fix["hdop"] = int(f[6]), int(f[7]), float(f[8])
        elif kind == "RMC":
            fix["time"], fix["date"], fix["valid"] = f[1], f[9], f[2] == "A"
        elif kind == "GST":
            fix["accuracy_m"] = max(float(f[6]), float(f[7]))
    return fix


def _nmea_all(items) -> int:
    return sum(len(_plain_nmea(payload)) > 0 for _, payload, _ in items)


PEERS = {"native": "json.loads", "owntracks": "json.loads", "rfid": "json.loads",
         "nmea": "plain regex-split parse"}  # fmt: skip


def _note(fmt: str, messages: int) -> None:
    ours, peer = RESULTS.get(f"ours: decode {fmt}"), RESULTS.get(f"peer: {PEERS[fmt]} ({fmt})")
    if ours and peer:
        NOTES[f"decode {fmt}"] = (
            f"decode {fmt}: {ours:,.0f} messages/s, {PEERS[fmt]} {peer:,.0f}/s: "
            f"decode / peer = {ours / peer:.2f}x ({messages:,} messages)"
        )


@pytest.mark.parametrize("fmt", FORMATS)
def test_ours_decode(benchmark, shift, fmt):
    by_format, readers = shift
    items = by_format[fmt]
    fixes = benchmark(_decode_all, items, readers)
    assert fixes == len(items) > 500  # every simulated message decodes, to one fix
    record(f"ours: decode {fmt}", benchmark, len(items))
    _note(fmt, len(items))
    assert RESULTS[f"ours: decode {fmt}"] >= TARGET


@pytest.mark.parametrize("fmt", FORMATS)
def test_peer_parse(benchmark, shift, fmt):
    by_format, _ = shift
    items = by_format[fmt]
    parsed = benchmark(_nmea_all if fmt == "nmea" else _json_all, items)
    assert parsed >= len(items)
    record(f"peer: {PEERS[fmt]} ({fmt})", benchmark, len(items))
    _note(fmt, len(items))
