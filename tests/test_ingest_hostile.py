"""One device can never silence another (issue 14), through a real Mosquitto and a real store.

The issue's reproductions, each alongside another device whose breach must be alerted at
the right fix: a sequence number beyond 64 bits; numbers beyond the store's columns (on
SQLite and on TimescaleDB); a fix a year old. Then a stateful property: valid device
streams interleaved with generated hostile payloads, every valid fix stored exactly once
and every true breach alerted, at its fix, within a generous bound
(TRACKFENCE_HOSTILE_EXAMPLES sets how many interleavings; 20 by default, a few seconds).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from geofence.breach import BreachConfig
from ingest.service import IngestService
from ingest.settings import IngestSettings
from store.sqlite import SqliteStore
from store.timescale import TimescaleStore
from tests.conftest import ROOT
from tests.devices import Listener, Publisher, native, now_ms, site_latlon, wait_until
from wire import nmea

SITE_FILE = ROOT / "examples" / "sites" / "ecm1-kings-cross.toml"
YEAR_MS = 365 * 86_400_000
#: The issue's poison: a sequence number no 64-bit column (or numpy array) holds.
EVIL_SEQ = '{"seq":1000000000000000000000000000000,"time_ms":%d,"lat":51.5627,"lon":-0.1068}'
#: How late a breach alert may be, from its fix's publication (generous: a shared machine).
ALERT_BOUND_MS = 5_000


def _settings(tmp_path, broker_url: str, db_url: str, client_id: str | None = None):
    return IngestSettings(
        broker=broker_url,
        db=db_url,
        client_id=client_id or f"hostile-{uuid.uuid4().hex[:8]}",
        spool=str(tmp_path / "spool"),
        sites=[(str(SITE_FILE), ["*"])],
        decisions=BreachConfig(lost_after_s=600),  # no LOST while a test runs
        batch_max_wait_ms=3,
    )


@contextmanager
def _running(settings: IngestSettings):
    service = IngestService(settings)
    service.start()
    try:
        assert service.subscribed.wait(15), "the worker did not subscribe"
        yield service
    finally:
        service.stop()


def _healthy(service: IngestService) -> None:
    """Nothing failed, nothing was refused, nothing was taken for an outage."""
    assert service.counters["batch_failures"] == 0
    assert service.counters["refused_batches"] == 0
    assert service.pipeline.isolated_failures == 0
    # (falling-behind may be raised by a backlog of old fixes, as a backlog should)
    assert not service.alarms & {"database-unreachable", "batch-refused", "spool-full"}


def _places(site):
    return site_latlon(site, 500.0, -3.0), site_latlon(site, 500.0, -8.0)  # inside, outside


def _breaches(alerts: Listener, device: str) -> list[dict]:
    got = [json.loads(p) | {"at": at} for topic, p, at in alerts.messages if f"/{device}/" in topic]
    return [a for a in got if a["kind"] == "breach"]


def _sqlite(tmp_path) -> tuple[str, SqliteStore]:
    path = tmp_path / "trial.sqlite"
    reader = SqliteStore(path)
    reader.migrate()
    return f"sqlite:///{path}", reader


# ------------------------------------------------------------------------- reproduction 1
def test_a_sequence_number_beyond_64_bits_silences_no_one(tmp_path, mosquitto, example_site):
    # the worker has a session, then is away: everything below reaches it as one backlog,
    # so the poison shares its batches with the other device's fixes (the case)
    db, store = _sqlite(tmp_path)
    settings = _settings(tmp_path, mosquitto.url, db)
    with _running(settings):
        pass
    inside, outside = _places(example_site)
    good, t0 = f"good-{uuid.uuid4().hex[:4]}", now_ms() - 60_000
    pub = Publisher(mosquitto.port)
    infos = []
    for k in range(400):
        body = native(good, k, t0 + k * 100, *(outside if k >= 300 else inside))
        infos.append(pub.send(f"trackside/v1/acme/{good}/fix", body))
        if k % 50 == 0 or k == 299:  # 9 of them, one just before the crossing
            infos.append(
                pub.send("trackside/v1/probe/evil/fix", (EVIL_SEQ % (now_ms() + k)).encode())
            )
    for info in infos:
        info.wait_for_publish(10)
    pub.close()
    alerts = Listener(mosquitto.port, f"trackside/v1/acme/{good}/alert")
    try:
        with _running(settings) as service:
            assert wait_until(
                lambda: store.counts()["fixes"] == 400 and store.counts()["dead_letters"] == 9,
                30,
            ), (store.counts(), service.counters)
            assert wait_until(lambda: _breaches(alerts, good), 5)
            assert service.counters["batches"] < 410  # (the backlog did come in batches)
            _healthy(service)
        fixes = store.fixes(f"acme/{good}")
        assert sorted(f.seq for f in fixes) == list(range(400))  # every one, once
        assert [e.seq for e in store.events(f"acme/{good}") if e.kind == "breach"] == [300]
        assert [a["seq"] for a in _breaches(alerts, good)] == [300]  # at fix 300, not 399
        assert {d.reason for d in store.dead_letters()} == {"range:seq"}
    finally:
        alerts.close()
        store.close()


def test_a_poison_redelivered_after_a_crash_fails_nothing_again(tmp_path, mosquitto, example_site):
    # a worker killed mid-stream, its unacknowledged messages (poison among them) delivered
    # again to its successor under the same session: all kept once, the breach on time
    db, store = _sqlite(tmp_path)
    config = tmp_path / "ingest.toml"
    config.write_text(
        f'[ingest]\nbroker = "{mosquitto.url}"\ndb = "{db}"\n'
        f'client_id = "hostile-{uuid.uuid4().hex[:8]}"\nspool = "{tmp_path / "spool"}"\n'
        f'[[site]]\nfile = "{SITE_FILE}"\ndevices = ["*"]\n[decisions]\nlost_after_s = 600\n'
    )
    command = [sys.executable, "-m", "trackfence.cli", "ingest", "--config", str(config)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    worker = subprocess.Popen(command, env=env, cwd=ROOT)
    inside, outside = _places(example_site)
    good, t0 = f"good-{uuid.uuid4().hex[:4]}", now_ms() - 60_000
    pub = Publisher(mosquitto.port)
    try:
        warm = native(good, 0, t0, *inside)
        assert wait_until(
            lambda: (
                bool(pub.send(f"trackside/v1/acme/{good}/fix", warm))
                and store.counts()["fixes"] == 1
            ),
            30,
            every_s=0.5,
        ), "the worker did not start"
        for k in range(1, 400):
            body = native(good, k, t0 + k * 100, *(outside if k >= 300 else inside))
            pub.send(f"trackside/v1/acme/{good}/fix", body)
            if k % 10 == 0:
                pub.send("trackside/v1/probe/evil/fix", (EVIL_SEQ % (t0 + k)).encode())
            if k == 200:
                worker.send_signal(signal.SIGKILL)  # mid-stream, mid-batch, no goodbye
                worker.wait(10)
                worker = subprocess.Popen(command, env=env, cwd=ROOT)  # the same session
            time.sleep(0.002)
        assert wait_until(lambda: store.counts()["fixes"] == 400, 60)
        time.sleep(0.5)
        assert sorted(f.seq for f in store.fixes(f"acme/{good}")) == list(range(400))
        assert [e.seq for e in store.events(f"acme/{good}") if e.kind == "breach"] == [300]
        assert {d.reason for d in store.dead_letters()} == {"range:seq"}
    finally:
        pub.close()
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        store.close()


# ------------------------------------------------------------------------- reproduction 2
def _oversized_numbers(device: str, t: int) -> list[tuple[str, bytes]]:
    """Five bad messages; each call's differ from another's (`t`), as a repeat sent later
    would: the stores keep one dead letter per topic, payload and millisecond of receipt,
    and a backlog is read back within a millisecond or two."""
    hhmmss = f"1014{t % 60:02d}.00"
    gga = nmea.sentence(f"GNGGA,{hhmmss},5133.46426,N,00006.52747,W,4,99999999999,0.6,21,M,45,M,,")
    rmc = nmea.sentence(f"GNRMC,{hhmmss},A,5133.46426,N,00006.52747,W,0.0,,181126,,,R")
    big = '{"seq":%d,"time_ms":%d,"lat":51.5627,"lon":-0.1068,%s}'
    return [
        ("trackside/v1/probe/evil/fix", (big % (1, t, '"satellites": 1e30')).encode()),
        ("trackside/v1/probe/evil/fix", (big % (2, t, '"satellites": 4294967295')).encode()),
        ("trackside/v1/probe/evil/fix", (big % (3, t, '"firmware": "1\\u0000"')).encode()),
        ("trackside/v1/probe/nmea/fix", f"{gga}\r\n{rmc}\r\n".encode()),
        # another device's own dead letter, co-batched: it must be written all the same
        (f"trackside/v1/acme/{device}-other/fix", b'{"seq": %d, "lat": 51.5' % t),
    ]


@pytest.mark.parametrize("backend", ["sqlite", "timescaledb"])
def test_numbers_beyond_the_stores_columns_break_no_write(
    backend, tmp_path, mosquitto, example_site, request
):
    if backend == "sqlite":
        db, store = _sqlite(tmp_path)
    else:
        db = request.getfixturevalue("timescaledb").fresh_database()
        store = TimescaleStore(db)
    settings = _settings(tmp_path, mosquitto.url, db)
    with _running(settings):
        pass  # a session, then away: what follows arrives as one backlog
    inside, outside = _places(example_site)
    good, t0 = f"good-{uuid.uuid4().hex[:4]}", now_ms() - 10_000
    pub = Publisher(mosquitto.port)
    infos = []
    for k in range(40):
        body = native(good, k, t0 + k * 100, *(outside if k >= 30 else inside))
        infos.append(pub.send(f"trackside/v1/acme/{good}/fix", body))
        if k in (5, 30):
            infos += [pub.send(t, b) for t, b in _oversized_numbers(good, t0 + k)]
    for info in infos:
        info.wait_for_publish(10)
    pub.close()
    alerts = Listener(mosquitto.port, f"trackside/v1/acme/{good}/alert")
    try:
        with _running(settings) as service:
            assert wait_until(
                lambda: store.counts()["fixes"] == 40 and store.counts()["dead_letters"] == 10, 30
            )
            assert wait_until(lambda: _breaches(alerts, good), 5)
            time.sleep(0.5)  # and no alarm follows (database-unreachable was a false one)
            _healthy(service)
        assert sorted(f.seq for f in store.fixes(f"acme/{good}")) == list(range(40))
        assert [a["seq"] for a in _breaches(alerts, good)] == [30]
        reasons = sorted(d.reason for d in store.dead_letters())
        assert reasons == sorted(
            2 * ["range:satellites", "range:satellites", "range:firmware", "range:satellites"]
            + 2 * ["json"]
        )
    finally:
        alerts.close()
        store.close()


# ------------------------------------------------------------------------- reproduction 3
def test_a_fix_a_year_old_is_stale_and_moves_nothing(tmp_path, mosquitto, example_site):
    db, store = _sqlite(tmp_path)
    inside, outside = _places(example_site)
    run = uuid.uuid4().hex[:4]
    old, walker = f"old-{run}", f"walk-{run}"
    alerts = Listener(mosquitto.port, "trackside/v1/acme/+/alert")
    pub = Publisher(mosquitto.port)
    try:
        with _running(_settings(tmp_path, mosquitto.url, db)) as service:
            now = now_ms()
            plan = [(1, now - 3000, inside), (2, now - 2000, inside),
                    (3, now - YEAR_MS, outside), (4, now - 1000, inside)]  # fmt: skip
            t0 = now - 30_000
            for k in range(30):
                wk = native(walker, k, t0 + k * 1000, *(outside if k >= 20 else inside))
                pub.send(f"trackside/v1/acme/{walker}/fix", wk).wait_for_publish(5)
                if k < len(plan):
                    seq, t, where = plan[k]
                    body = native(old, seq, t, *where)
                    pub.send(f"trackside/v1/acme/{old}/fix", body).wait_for_publish(5)
                time.sleep(0.01)
            assert wait_until(lambda: store.counts()["fixes"] == 33, 15)
            assert wait_until(lambda: _breaches(alerts, walker), 5)
            time.sleep(0.3)
            _healthy(service)
        assert [f.seq for f in store.fixes(f"acme/{old}")] == [1, 2, 4]
        assert [(d.reason, d.topic) for d in store.dead_letters()] == [
            ("time:stale", f"trackside/v1/acme/{old}/fix")
        ]
        kinds = [e.kind for e in store.events(f"acme/{old}")]
        assert "breach" not in kinds and "lost" not in kinds and kinds.count("recovered") == 1
        assert not _breaches(alerts, old)
        assert not any(json.loads(p)["kind"] == "lost" for t, p, _ in alerts.messages if old in t)
        assert [a["seq"] for a in _breaches(alerts, walker)] == [20]
    finally:
        pub.close()
        alerts.close()
        store.close()


def test_an_owntracks_last_will_is_lost_at_once(tmp_path, mosquitto, example_site):
    db, store = _sqlite(tmp_path)
    phone = f"phone-{uuid.uuid4().hex[:4]}"
    alerts = Listener(mosquitto.port, f"trackside/v1/phones/{phone}/alert")
    pub = Publisher(mosquitto.port)
    try:
        with _running(_settings(tmp_path, mosquitto.url, db)):
            lat, lon = site_latlon(example_site, 500.0, -2.0)
            here = {"_type": "location", "tst": now_ms() // 1000, "lat": lat, "lon": lon, "acc": 1}
            topic = f"trackside/v1/phones/{phone}/fix"
            pub.send(topic, json.dumps(here).encode()).wait_for_publish(5)
            assert wait_until(lambda: store.counts()["fixes"] == 1, 10)
            sent = now_ms()
            will = json.dumps({"_type": "lwt", "tst": sent // 1000}).encode()
            pub.send(topic, will).wait_for_publish(5)

            def lost() -> list[int]:
                return [at for _, p, at in alerts.messages if json.loads(p)["kind"] == "lost"]

            assert wait_until(lambda: lost(), 5)  # at once, not lost_after_s (600 s) later
            assert lost()[0] - sent < ALERT_BOUND_MS
        assert store.counts()["dead_letters"] == 0
    finally:
        pub.close()
        alerts.close()
        store.close()


# ------------------------------------------------------------------------- the property
HOSTILE_KINDS = ("integer", "nan", "stale", "future", "type", "text", "mismatch", "nmea",
                 "size", "name")  # fmt: skip
_OUT_OF_RANGE = {
    "seq": [2**63, 10**30, -(2**63) - 1, -1, 1e30, -1e30],
    "satellites": [256, 4_294_967_295, 10**30, -1, 1e30],
    "time_ms": [2**63, 10**30, -(10**30), 0, 4_294_967_295, 1e30, -1e30],
    "lat": [91, -91, 10**30, 1e300],
    "hdop": [101, 1e300, -0.5],
}


def _hostile_body(draw, device: str, newest_ms: int) -> tuple[str, bytes, str]:
    """A payload ingest must dead-letter, for `device` (whose newest fix is `newest_ms`),
    and the topic to publish it on. Returns (topic, body, what it is)."""
    topic = f"trackside/v1/acme/{device}/fix"
    now = now_ms()
    base = {"device": device, "seq": 10_000, "time_ms": now - 500, "lat": 51.56, "lon": -0.11}
    kind = draw(st.sampled_from(HOSTILE_KINDS))
    if kind == "integer":  # beyond 64 bits, a column's type, or the field's range
        field = draw(st.sampled_from(sorted(_OUT_OF_RANGE)))
        base[field] = draw(st.sampled_from(_OUT_OF_RANGE[field]))
    elif kind == "nan":
        text = json.dumps(base).replace('"lat": 51.56', '"lat": NaN')
        return topic, text.encode(), kind
    elif kind == "stale":  # older than its device's newest fix and its receipt, by 301 s..
        base["time_ms"] = newest_ms - draw(st.integers(301_000, 3_000 * 86_400_000))
        base["time_ms"] = max(base["time_ms"], 1_577_836_800_000 + 1)
    elif kind == "future":
        base["time_ms"] = now + draw(st.integers(120_000, 10 * YEAR_MS))
    elif kind == "type":
        field = draw(st.sampled_from(["seq", "lat", "lon", "time_ms", "hdop"]))
        base[field] = draw(st.sampled_from(["7", [1], {"v": 1}, True, "NaN"]))
    elif kind == "text":
        base["firmware"] = draw(
            st.one_of(
                st.text(min_size=65, max_size=400),
                st.sampled_from(["1\x00", "\ud800", "a\nb", "\x7f"]),
            )
        )
    elif kind == "mismatch":
        base["device"] = draw(st.sampled_from([device + "x", "someone-else", ""]))
    elif kind == "nmea":
        sats = draw(st.sampled_from(["256", "4294967295", "9" * 400]))
        gga = nmea.sentence(f"GNGGA,101420.00,5133.46426,N,00006.52747,W,4,{sats},0.6,21,M,45,M,,")
        rmc = nmea.sentence("GNRMC,101420.00,A,5133.46426,N,00006.52747,W,0.0,,181126,,,R")
        return topic, f"{gga}\r\n{rmc}\r\n".encode(), kind
    elif kind == "size":
        base["pad"] = "x" * draw(st.integers(16_400, 40_000))
    elif kind == "name":
        return f"trackside/v1/acme/{device} evil/fix", json.dumps(base).encode(), kind
    return topic, json.dumps(base).encode(), kind


def test_hostile_payloads_interleaved_with_devices_never_cost_a_fix_or_a_breach(
    tmp_path, mosquitto, example_site
):
    db, store = _sqlite(tmp_path)
    inside, outside = _places(example_site)
    alerts = Listener(mosquitto.port, "trackside/v1/acme/+/alert")
    publisher = Publisher(mosquitto.port)
    with (
        _running(_settings(tmp_path, mosquitto.url, db)) as service,
        _closing(publisher, alerts, store),
    ):

        class Interleaving(RuleBasedStateMachine):
            """Devices walking (out of the safe zone at a known fix) among hostile payloads."""

            def __init__(self) -> None:
                super().__init__()
                self.run = uuid.uuid4().hex[:6]
                self.devices: dict[str, dict] = {}
                self.hostile: list[str] = []
                self.dead_before = _dead_letters(service)
                self.sent_at: dict[tuple[str, int], int] = {}

            @initialize(crossings=st.lists(st.integers(1, 8), min_size=1, max_size=3))
            def start(self, crossings):
                for i, crossing in enumerate(crossings):
                    name = f"p{self.run}-{i}"
                    self.devices[name] = {"next": 0, "crossing": crossing, "t0": now_ms() - 5000}
                    self._send(name)  # a device's first fix comes before anything aimed at it

            def _send(self, name: str) -> None:
                d = self.devices[name]
                k = d["next"]
                where = outside if k >= d["crossing"] else inside
                body = native(name, k, d["t0"] + k * 100, *where, acc=0.2)  # 10 Hz
                self.sent_at[(name, k)] = now_ms()
                publisher.send(f"trackside/v1/acme/{name}/fix", body)
                d["next"] = k + 1

            @rule(data=st.data())
            def some_traffic(self, data):
                """A few messages: each a device's next fix, or a hostile payload at it."""
                for what in data.draw(st.lists(st.sampled_from(["fix", "hostile"]), max_size=6)):
                    name = data.draw(st.sampled_from(sorted(self.devices)))
                    if what == "fix":
                        self._send(name)
                        continue
                    newest = self.devices[name]["t0"] + (self.devices[name]["next"] - 1) * 100
                    topic, body, kind = _hostile_body(data.draw, name, newest)
                    publisher.send(topic, body)
                    self.hostile.append(kind)

            def teardown(self) -> None:
                total = sum(d["next"] for d in self.devices.values())
                names = [f"acme/{n}" for n in self.devices]
                assert wait_until(
                    lambda: (
                        store.fix_count(names, 0, 2**62) == total
                        and _dead_letters(service) - self.dead_before == len(self.hostile)
                    ),
                    20,
                ), (total, self.hostile)
                for name, d in self.devices.items():
                    seqs = [f.seq for f in store.fixes(f"acme/{name}")]
                    assert sorted(seqs) == list(range(d["next"])), name  # each once
                    if d["next"] <= d["crossing"]:
                        continue  # never stepped out
                    assert wait_until(lambda n=name: _breaches(alerts, n), ALERT_BOUND_MS / 1000)
                    (breach,) = _breaches(alerts, name)
                    assert breach["seq"] == d["crossing"], (name, self.hostile)  # at its fix
                    assert breach["at"] - self.sent_at[(name, d["crossing"])] < ALERT_BOUND_MS
                _healthy(service)

        run_state_machine_as_test(
            Interleaving,
            settings=settings(
                max_examples=int(os.environ.get("TRACKFENCE_HOSTILE_EXAMPLES", 20)),
                stateful_step_count=30,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            ),
        )


@contextmanager
def _closing(*things):
    try:
        yield
    finally:
        for thing in things:
            thing.close()


def _dead_letters(service: IngestService) -> int:
    return sum(n for k, n in service.counters.items() if k.startswith("dead_letter:"))
