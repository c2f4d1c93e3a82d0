"""Hostile input through the real pipeline (every codec): generated payloads never crash
it, every one is either kept as a fix, a status, or dead-lettered with its reason, what it
keeps is always storable, memory stays flat, and floods of invented devices are bounded.

CI runs a short profile; TRACKFENCE_FUZZ_PAYLOADS=100000 runs the full one (issue 7).
"""

from __future__ import annotations

import json
import os
import tracemalloc

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geofence.breach import BreachConfig
from ingest.deployment import Deployment
from ingest.pipeline import Inbound, Pipeline
from store.sqlite import SqliteStore
from tests.devices import native, site_latlon
from wire import nmea
from wire.codecs import MAX_PAYLOAD_BYTES, RfidReader
from wire.topics import parse

PAYLOADS = int(os.environ.get("TRACKFENCE_FUZZ_PAYLOADS", 10_000))
PER_EXAMPLE = 50
T0 = 1_790_000_000_000
KINDS = ("fix", "rfid", "status")

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(
            st.sampled_from(
                [
                    "device",
                    "seq",
                    "time_ms",
                    "lat",
                    "lon",
                    "accuracy_m",
                    "fix_type",
                    "_type",
                    "tst",
                    "acc",
                    "reader_id",
                    "tag_id",
                    "online",
                    "x",
                ]
            ),
            inner,
            max_size=8,
        ),
    ),
    max_leaves=20,
)


#: Values that broke ingest before issue 14: integers beyond 64 bits or a column's type,
#: non-finite numbers, text no database keeps, oversized text, the wrong types.
HOSTILE_VALUES = st.one_of(
    st.sampled_from(
        [2**63, 2**64, 10**30, -(2**63) - 1, 4_294_967_295, 70_000, 1e30, -1e30, 1e308, -1]
    ),
    st.integers(-(2**200), 2**200),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(min_size=60, max_size=300),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "\n", "\x1b[2J", "ü" * 70]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.booleans(),
)
HOSTILE_FIELDS = ["seq", "time_ms", "lat", "lon", "accuracy_m", "satellites", "hdop",
                  "battery_pct", "firmware", "fix_type", "device"]  # fmt: skip
DAY_MS = 86_400_000


def _valid(kind: str, lat: float, lon: float) -> bytes:
    if kind == "rfid":
        return json.dumps({"reader_id": "gate-1", "tag_id": "t1", "seq": 1, "time_ms": T0}).encode()
    if kind == "status":
        return json.dumps({"online": False}).encode()
    return native("d1", 1, T0, lat, lon)


@st.composite
def payloads(draw, lat: float, lon: float) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(KINDS))
    device = draw(st.sampled_from(["d1", "d2", "bad name", "x" * 80, "ü"]))
    topic = draw(
        st.one_of(
            st.just(f"trackside/v1/acme/{device}/{kind}"),
            st.text(max_size=60),  # anything at all
        )
    )
    # "valid" payloads, untouched, keep good messages flowing among the garbage: a run
    # must show them kept (a mutation that stays valid is too rare to count on)
    shape = draw(
        st.sampled_from(
            ["json", "bytes", "mutated", "nmea", "huge", "valid", "field", "time", "nmea-field"]
        )
    )
    if shape in ("field", "time", "nmea-field"):  # on a good topic, so the payload is read
        kind = "fix" if shape == "nmea-field" else draw(st.sampled_from(["fix", "rfid"]))
        topic = f"trackside/v1/acme/{draw(st.sampled_from(['d1', 'd2']))}/{kind}"
    if shape == "field":  # a valid payload with one field hostile
        body_obj = json.loads(_valid(kind, lat, lon))
        body_obj[draw(st.sampled_from(HOSTILE_FIELDS))] = draw(HOSTILE_VALUES)
        body = json.dumps(body_obj).encode()
    elif shape == "time":  # stale by a minute to years, or from the future
        shift = draw(st.sampled_from([-1, 1])) * draw(st.integers(60_000, 3_000 * DAY_MS))
        body_obj = json.loads(_valid(kind, lat, lon))
        body_obj["time_ms"] = T0 + shift
        body = json.dumps(body_obj).encode()
    elif shape == "nmea-field":  # checksums right, a field hostile: the field checks must hold
        # (an epoch at T0: 14:13:20 on 21 September 2026)
        fields = ["GNGGA", "141320.00", "5133.46426", "N", "00006.52747", "W", "4", "24",
                  "0.55", "21.3", "M", "45.6", "M", "", ""]  # fmt: skip
        rmc = ["GNRMC", "141320.00", "A", "5133.46426", "N", "00006.52747", "W", "0.0", "",
               "210926", "", "", "R"]  # fmt: skip
        target = draw(st.sampled_from([fields, rmc]))
        at = draw(st.integers(1, len(target) - 1))
        target[at] = draw(
            st.one_of(
                st.text("0123456789.-+eEnaifNSEWAV\u00b2", max_size=12),
                st.just("9" * 5000),
                st.sampled_from(["nan", "inf", "-1", "1e400", "99999999999"]),
            )
        )
        body = (nmea.sentence(",".join(fields)) + "\r\n" + nmea.sentence(",".join(rmc))).encode()
    elif shape == "valid":
        body = _valid(kind, lat, lon)
    elif shape == "json":
        body = json.dumps(draw(_json), allow_nan=True).encode()
    elif shape == "bytes":
        body = draw(st.binary(max_size=300))
    elif shape == "nmea":
        fields = draw(st.lists(st.text("0123456789.,NSEWM-$*ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                                       max_size=12), max_size=20))  # fmt: skip
        body = ("$GPGGA," + ",".join(fields) + "\r\n").encode()
    elif shape == "huge":
        body = b"{" + b" " * (MAX_PAYLOAD_BYTES + draw(st.integers(1, 100))) + b"}"
    else:  # a valid payload with a few bytes changed, cut or added
        body = bytearray(_valid(kind, lat, lon))
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, max(0, len(body) - 1)))
            action = draw(st.sampled_from(["flip", "cut", "insert"]))
            if action == "flip" and body:
                body[at] ^= draw(st.integers(1, 255))
            elif action == "cut":
                body = body[:at]
            else:
                body[at:at] = draw(st.binary(min_size=1, max_size=8))
        body = bytes(body)
    return topic, body


def _pipeline(site) -> Pipeline:
    lat, lon = site_latlon(site, 500, -3.0)
    readers = {"gate-1": RfidReader("gate-1", lat, lon, 3.0)}
    return Pipeline(
        Deployment({site.name: site}, [("*", site.name)], rfid_readers=readers), BreachConfig()
    )


def _is_status(topic: str, body: bytes) -> bool:
    """A well-formed status message (on a topic ingest accepts), which is kept as no record."""
    parsed = parse(topic)
    if parsed is None or parsed.kind != "status":
        return False
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(obj, dict) and isinstance(obj.get("online"), bool)


def test_generated_payloads_never_crash_ingest_and_every_reject_has_a_reason(
    example_site, tmp_path
):
    pipeline = _pipeline(example_site)
    store = SqliteStore(tmp_path / "hostile.sqlite")
    store.migrate()
    lat, lon = site_latlon(example_site, 500, -3.0)
    seen = {"messages": 0, "fixes": 0, "dead": 0, "status": 0}

    @settings(max_examples=max(1, PAYLOADS // PER_EXAMPLE), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(batch=st.lists(payloads(lat, lon), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def run(batch):
        messages = [Inbound(t, b, T0 + 1000) for t, b in batch]
        decided = pipeline.decide(messages, lambda: T0 + 1001)
        store.write(decided.batch)  # whatever ingest keeps, a store keeps: never a refusal
        assert pipeline.isolated_failures == 0  # no payload reached past the edge unbounded
        statuses = sum(_is_status(t, b) for t, b in batch)
        fixes, dead = len(decided.batch.fixes), len(decided.batch.dead_letters)
        # each message is accounted for exactly once: a fix, a status, or a dead letter
        assert fixes + dead + statuses == len(batch), (fixes, dead, statuses, batch)
        assert all(d.reason and d.detail for d in decided.batch.dead_letters)
        assert len(decided.dead_letter_messages) == dead  # each reject also to the topic
        for d in decided.batch.dead_letters:
            assert len(d.payload) <= MAX_PAYLOAD_BYTES  # kept whole up to the bound
            assert len(d.detail) <= 300 and "\x00" not in d.detail + d.topic
        seen["messages"] += len(batch)
        seen["fixes"] += fixes
        seen["dead"] += dead
        seen["status"] += statuses

    run()
    assert store.counts()["fixes"] > 0 and store.counts()["dead_letters"] > 0
    store.close()
    assert seen["messages"] >= PAYLOADS * 0.9
    assert seen["dead"] > seen["messages"] / 2  # most generated payloads are garbage...
    assert seen["fixes"] > 0  # ...but the mutations that stay valid are kept as fixes


def test_memory_stays_flat_under_a_stream_of_garbage(example_site):
    pipeline = _pipeline(example_site)
    rng = np.random.default_rng(3)

    def burst() -> None:
        messages = [
            Inbound(f"trackside/v1/acme/d{i % 50}/fix", rng.bytes(int(rng.integers(1, 400))), T0)
            for i in range(2000)
        ]
        pipeline.decide(messages, lambda: T0)

    for _ in range(3):
        burst()  # warm: every device known, every cache filled
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(20):
        burst()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < 2_000_000, grown  # 40,000 more rejects: no more than noise retained


def test_a_flood_of_invented_devices_is_bounded(example_site):
    pipeline = _pipeline(example_site)
    pipeline.max_devices = 100
    lat, lon = site_latlon(example_site, 500, -3.0)
    messages = [
        Inbound(f"trackside/v1/acme/fake{i}/fix", native(f"fake{i}", 1, T0, lat, lon), T0 + 500)
        for i in range(150)
    ]
    decided = pipeline.decide(messages, lambda: T0 + 501)
    assert len(pipeline.device_ids) == 100
    assert len(decided.batch.fixes) == 100
    assert [d.reason for d in decided.batch.dead_letters] == ["device-limit"] * 50
    # a device it already keeps is still decided
    again = pipeline.decide(
        [
            Inbound(
                "trackside/v1/acme/fake3/fix", native("fake3", 2, T0 + 1000, lat, lon), T0 + 1500
            )
        ],
        lambda: T0 + 1501,
    )
    assert len(again.batch.fixes) == 1 and not again.batch.dead_letters
