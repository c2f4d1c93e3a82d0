"""Hostile input through the real pipeline (every codec): generated payloads never crash
it, every one is either kept as a fix, a status, or dead-lettered with its reason, memory
stays flat, and floods of invented devices are bounded.

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
from ingest.codecs import MAX_PAYLOAD_BYTES, RfidReader
from ingest.deployment import Deployment
from ingest.pipeline import Inbound, Pipeline
from ingest.topics import parse
from tests.devices import native, site_latlon

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
    shape = draw(st.sampled_from(["json", "bytes", "mutated", "nmea", "huge", "valid"]))
    if shape == "valid":
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


def test_generated_payloads_never_crash_ingest_and_every_reject_has_a_reason(example_site):
    pipeline = _pipeline(example_site)
    lat, lon = site_latlon(example_site, 500, -3.0)
    seen = {"messages": 0, "fixes": 0, "dead": 0, "status": 0}

    @settings(max_examples=max(1, PAYLOADS // PER_EXAMPLE), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(batch=st.lists(payloads(lat, lon), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def run(batch):
        messages = [Inbound(t, b, T0 + 1000) for t, b in batch]
        decided = pipeline.decide(messages, lambda: T0 + 1001)
        statuses = sum(_is_status(t, b) for t, b in batch)
        fixes, dead = len(decided.batch.fixes), len(decided.batch.dead_letters)
        # each message is accounted for exactly once: a fix, a status, or a dead letter
        assert fixes + dead + statuses == len(batch), (fixes, dead, statuses, batch)
        assert all(d.reason and d.detail for d in decided.batch.dead_letters)
        assert len(decided.dead_letter_messages) == dead  # each reject also to the topic
        for d in decided.batch.dead_letters:
            assert len(d.payload) <= MAX_PAYLOAD_BYTES + 200  # kept whole, it is bounded
        seen["messages"] += len(batch)
        seen["fixes"] += fixes
        seen["dead"] += dead
        seen["status"] += statuses

    run()
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
