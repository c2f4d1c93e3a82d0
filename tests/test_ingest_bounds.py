"""The edge's bounds fit both stores, so a batch cannot fail on one row (issue 14).

Fixes at every extreme the codecs let through are stored by TimescaleDB and SQLite alike;
a row beyond them (made here by hand, bypassing the edge) is a refusal of that row only:
the store stays usable, and the worker keeps every other record of the batch.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest

from geofence.breach import BreachConfig
from ingest.deployment import Deployment
from ingest.pipeline import DETAIL_MAX, TOPIC_MAX, Inbound, Pipeline
from ingest.service import IngestService
from ingest.settings import IngestSettings
from store import Batch, StoreError, StoreUnavailableError
from store.sqlite import SqliteStore
from tests.conftest import ROOT
from tests.devices import site_latlon
from wire.codecs import BOUNDS, MAX_FUTURE_MS, MAX_PAYLOAD_BYTES, SEQ_MAX, TEXT_MAX

NOW = 1_795_000_000_000
SITE_FILE = ROOT / "examples" / "sites" / "ecm1-kings-cross.toml"




def _extremes(site) -> list[Inbound]:
    """Payloads with every field at the edge of what ingest accepts."""
    lat, lon = site_latlon(site, 500.0, -3.0)
    extreme = {
        "seq": SEQ_MAX,
        "time_ms": NOW + MAX_FUTURE_MS,
        "lat": lat,
        "lon": lon,
        "accuracy_m": 10_000,
        "fix_type": "RTK fixed",
        "satellites": int(BOUNDS["satellites"][1]),
        "hdop": BOUNDS["hdop"][1],
        "battery_pct": 100,
        "firmware": "€😀" * (TEXT_MAX // 2),  # printable, four-byte UTF-8 included
    }
    corners = [
        {"seq": 0, "time_ms": int(BOUNDS["time_ms"][0]), "lat": 90.0, "lon": 180.0},
        {"seq": 1, "time_ms": NOW, "lat": -90.0, "lon": -180.0, "satellites": 0, "hdop": 0},
    ]
    owntracks = {"_type": "location", "tst": NOW // 1000, "lat": lat, "lon": lon,
                 "acc": BOUNDS["accuracy_m"][1], "batt": 0}  # fmt: skip
    return [
        Inbound("trackside/v1/acme/edge/fix", json.dumps(extreme).encode(), NOW),
        *(
            Inbound(f"trackside/v1/acme/corner{k}/fix", json.dumps(c).encode(), NOW)
            for k, c in enumerate(corners)
        ),
        Inbound("trackside/v1/phones/edge/fix", json.dumps(owntracks).encode(), NOW),
        # the largest dead letter: a payload at the size bound, the longest topic and detail
        Inbound("trackside/v1/acme/edge/fix", b"{" * MAX_PAYLOAD_BYTES, NOW),
        Inbound("trackside/v1/" + "x" * 5000 + "\u0000/fix", b"\x00\xff", NOW),
        Inbound("trackside/v1/acme/edge/fix", b"[" * (MAX_PAYLOAD_BYTES * 4), NOW),
    ]


def test_every_extreme_ingest_accepts_is_kept_by_both_stores(store, example_site):
    pipeline = Pipeline(
        Deployment({example_site.name: example_site}, [("*", example_site.name)]), BreachConfig()
    )
    decided = pipeline.decide(_extremes(example_site), lambda: NOW + 1)
    assert len(decided.batch.fixes) == 4 and len(decided.batch.dead_letters) == 3
    assert all(len(d.topic) <= TOPIC_MAX and len(d.detail) <= DETAIL_MAX
               for d in decided.batch.dead_letters)  # fmt: skip
    store.write(decided.batch)
    stored = {(f.device_id, f.seq): f for f in store.fixes()}
    assert stored[("acme/edge", SEQ_MAX)] == next(
        f for f in decided.batch.fixes if f.seq == SEQ_MAX
    )
    assert store.counts()["dead_letters"] == 3
    assert max(len(d.payload) for d in store.dead_letters()) == MAX_PAYLOAD_BYTES
    store.write(decided.batch)  # and idempotently so
    assert store.counts()["fixes"] == 4


def test_a_row_beyond_the_bounds_is_refused_and_the_store_stays_usable(store, example_site):
    pipeline = Pipeline(
        Deployment({example_site.name: example_site}, [("*", example_site.name)]), BreachConfig()
    )
    decided = pipeline.decide(_extremes(example_site)[:1], lambda: NOW + 1)
    good = decided.batch.fixes[0]
    for bad in (
        replace(good, seq=2**70),  # beyond 64 bits (SQLite: OverflowError before issue 14)
        replace(good, satellites=4_294_967_295),  # beyond TimescaleDB's integer
        replace(good, firmware="a\x00b"),  # NUL: TimescaleDB refuses it in text
        replace(good, firmware="\ud800"),  # a lone surrogate: not UTF-8 at all
    ):
        try:
            store.write(Batch(fixes=[bad]))
        except StoreUnavailableError:  # a refusal is not an outage
            pytest.fail(f"{bad} was taken for an unreachable database")
        except StoreError:
            pass
        # no transaction left open, no connection left broken: the next write is kept
        store.write(Batch(fixes=[replace(good, seq=good.seq - 1)]))
    assert store.counts()["fixes"] >= 1


def test_the_worker_keeps_every_record_but_the_one_the_database_refuses(tmp_path, example_site):
    db = tmp_path / "trial.sqlite"
    settings = IngestSettings(
        db=f"sqlite:///{db}",
        client_id=f"bounds-{uuid.uuid4().hex[:6]}",
        spool=str(tmp_path / "spool"),
        sites=[(str(SITE_FILE), ["*"])],
    )
    service = IngestService(settings)  # not started: only its writer is exercised
    service._prepare_store(restore=False)
    pipeline = service.pipeline
    lat, lon = site_latlon(example_site, 500.0, -3.0)
    messages = [
        Inbound(
            f"trackside/v1/acme/w{k % 7}/fix",
            json.dumps({"seq": k, "time_ms": NOW + k, "lat": lat, "lon": lon}).encode(),
            NOW + k,
        )
        for k in range(100)
    ] + [Inbound("trackside/v1/acme/w1/fix", b"{not json", NOW + 100)]
    batch = pipeline.decide(messages, lambda: NOW + 200).batch
    bad = replace(batch.fixes[37], seq=2**70)  # what the edge can no longer let through
    batch.fixes[37] = bad
    service._store_and_ack(batch, [])
    kept = SqliteStore(db)
    assert kept.counts()["fixes"] == 99 and kept.counts()["dead_letters"] == 1
    assert len(kept.events()) == len(batch.events)
    assert service.alarms == {"batch-refused"}  # not database-unreachable
    assert service.counters["refused_records"] == 1
    assert len(list((tmp_path / "spool" / "refused").iterdir())) == 1
    kept.close()
    service.store.close()


def test_a_database_refusing_everything_is_not_split_record_by_record(tmp_path):
    class Refusing:
        writes = 0

        def write(self, batch):
            Refusing.writes += 1
            raise StoreError("relation does not exist")

    settings = IngestSettings(spool=str(tmp_path / "spool"), sites=[(str(SITE_FILE), ["*"])])
    service = IngestService(settings, store=Refusing())
    fixes = [replace(_a_fix(), seq=k) for k in range(2000)]
    service._write(Batch(fixes=fixes))
    assert service.counters["refused_records"] == 2000  # all set aside, in one file
    assert len(list((tmp_path / "spool" / "refused").iterdir())) == 1
    assert Refusing.writes < 300  # not 4,000 attempts


def _a_fix():
    pipeline = Pipeline(Deployment({}, []), BreachConfig())
    body = json.dumps({"seq": 1, "time_ms": NOW, "lat": 51.5, "lon": -0.1}).encode()
    return pipeline.decide(
        [Inbound("trackside/v1/acme/a/fix", body, NOW)], lambda: NOW
    ).batch.fixes[0]


def test_dead_letters_are_bounded_whatever_they_were_given():
    # a topic of 10,000 characters, NULs and lone surrogates in it, an oversized payload
    pipeline = Pipeline(Deployment({}, []), BreachConfig())
    out = pipeline.decide(
        [Inbound("trackside/" + "\ud800\u0000" * 5000, b"x" * (MAX_PAYLOAD_BYTES * 2), NOW)],
        lambda: NOW,
    )
    (dead,) = out.batch.dead_letters
    assert dead.reason == "topic" and len(dead.topic) <= TOPIC_MAX
    dead.topic.encode("utf-8")  # no surrogate left
    assert "\x00" not in dead.topic and len(dead.payload) == MAX_PAYLOAD_BYTES
