"""Faults while 200 devices publish: nothing lost, nothing twice, every true breach alerted.

Each test runs a shift of DEVICES devices at 1 Hz through a real Mosquitto and a real
TimescaleDB to an ingest worker running as its own process (so it can be killed).
WALKERS of them step out of the safe zone at known moments. Then, with the fault
injected mid-stream, the store must hold every published fix exactly once, and every
walker must have been sent a breach alert; the worst delay is printed.

CI runs a short profile; TRACKFENCE_FAULT_SECONDS=120 TRACKFENCE_FAULT_KILLS=10
TRACKFENCE_FAULT_OUTAGE_S=60 run the full one (issue 7).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from store.timescale import TimescaleStore
from tests.conftest import ROOT
from tests.devices import Listener, Publisher, native, now_ms, site_latlon, wait_until

DEVICES = 200
WALKERS = 10
SECONDS = int(os.environ.get("TRACKFENCE_FAULT_SECONDS", 24))
KILLS = int(os.environ.get("TRACKFENCE_FAULT_KILLS", 3))
OUTAGE_S = float(os.environ.get("TRACKFENCE_FAULT_OUTAGE_S", 10))
SITE_FILE = ROOT / "examples" / "sites" / "ecm1-kings-cross.toml"


class Shift:
    """The devices' fixes, published in real time; walkers step out for 5 s at known ticks."""

    def __init__(self, port: int, site, seconds: int = SECONDS) -> None:
        self.port, self.seconds = port, seconds
        self.run_id = uuid.uuid4().hex[:5]
        self.devices = [f"f{self.run_id}-{i:03d}" for i in range(DEVICES)]
        rng = random.Random(self.run_id)
        self.crossing = {
            d: rng.randrange(3, max(4, seconds - 8)) for d in self.devices[:WALKERS]
        }  # tick at which each walker is first outside
        self.inside = site_latlon(site, 500.0, -3.0)
        self.outside = site_latlon(site, 500.0, -8.0)  # 3.5 m beyond the cess edge
        self.published: set[tuple[str, int]] = set()
        self.crossed_at: dict[str, float] = {}  # walker -> wall time its first outside fix left
        self.t0 = now_ms() - 1000
        self.thread = threading.Thread(target=self._run, daemon=True)

    def position(self, device: str, tick: int) -> tuple[float, float]:
        start = self.crossing.get(device)
        if start is not None and start <= tick < start + 5:
            return self.outside
        return self.inside

    def _run(self) -> None:
        pub = Publisher(self.port)
        began = time.monotonic()
        infos = []
        for tick in range(self.seconds):
            for device in self.devices:
                lat, lon = self.position(device, tick)
                body = native(device, tick, self.t0 + tick * 1000, lat, lon, acc=0.2)
                infos.append(pub.send(f"trackside/v1/acme/{device}/fix", body))
                self.published.add((f"acme/{device}", tick))
                if self.crossing.get(device) == tick:
                    self.crossed_at[device] = time.time()
            time.sleep(max(0.0, began + tick + 1 - time.monotonic()))
        # a message published while the broker was away is queued by the client and sent
        # on reconnect; wait for each to be acknowledged (wait_for_publish would give up)
        deadline = time.monotonic() + 120
        while not all(_acknowledged(i) for i in infos) and time.monotonic() < deadline:
            time.sleep(0.1)
        pub.close()

    def start(self) -> Shift:
        self.thread.start()
        return self

    def join(self) -> None:
        self.thread.join(self.seconds + 180)


def _acknowledged(info) -> bool:
    """PUBACK received. paho marks a message published while disconnected with NO_CONN
    (is_published then raises) yet still sends it on reconnect; its flag tells the truth."""
    try:
        return info.is_published()
    except RuntimeError:
        return bool(info._published)


def _worker(
    tmp_path, broker_url: str, db_url: str, extra: str = "", lost_after_s: float = 600
) -> list[str]:
    config = tmp_path / f"ingest-{uuid.uuid4().hex[:6]}.toml"
    config.write_text(
        f'[ingest]\nbroker = "{broker_url}"\ndb = "{db_url}"\n'
        f'client_id = "faults-{uuid.uuid4().hex[:8]}"\nspool = "{tmp_path / "spool"}"\n{extra}\n'
        f'[[site]]\nfile = "{SITE_FILE}"\ndevices = ["*"]\n'
        f"[decisions]\nlost_after_s = {lost_after_s:g}\n"
    )
    return [sys.executable, "-m", "trackfence.cli", "ingest", "--config", str(config)]


def _start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)


@pytest.fixture
def database(timescaledb):
    return timescaledb.fresh_database()


def _stored(store: TimescaleStore) -> int:
    try:
        return store.counts()["fixes"]
    except Exception:
        return 0


def _ready(store: TimescaleStore, port: int) -> None:
    """Until the worker stores a fix, its session does not exist and nothing queues for it."""
    pub = Publisher(port)
    body = native("warm", 0, now_ms() - 5000, 51.5577, -0.1088)
    assert wait_until(
        lambda: bool(pub.send("trackside/v1/acme/warm/fix", body)) and _stored(store) >= 1,
        60,
        every_s=0.5,
    ), "the worker did not come up"
    pub.close()


def _verdict(shift: Shift, store: TimescaleStore, alerts: Listener, label: str) -> None:
    expected = len(shift.published) + 1  # and the warm-up fix
    assert wait_until(lambda: _stored(store) >= expected, 180, every_s=0.5), (
        f"{label}: {expected - _stored(store)} fixes never arrived"
    )
    time.sleep(1.0)
    fixes = store.fixes()
    keys = [(f.device_id, f.seq) for f in fixes if f.device_id != "acme/warm"]
    assert len(keys) == len(set(keys)), f"{label}: a fix was kept twice"
    assert set(keys) == shift.published, f"{label}: fixes lost"
    delays = []
    for walker in shift.crossing:
        got = [
            at / 1000  # the listener stamps ms
            for topic, payload, at in alerts.messages
            if f"/{walker}/" in topic and json.loads(payload)["kind"] == "breach"
        ]
        assert got, f"{label}: {walker}'s excursion was never alerted"
        delays.append(min(got) - shift.crossed_at[walker])
    worst = f"worst {max(delays):.2f} s after the crossing fix was sent" if delays else "none"
    print(f"{label}: {len(keys):,} fixes once each; {len(delays)} breaches alerted, {worst}")


def test_a_worker_killed_again_and_again_loses_and_doubles_nothing(
    tmp_path, mosquitto, database, example_site
):
    command = _worker(tmp_path, mosquitto.url, database)
    worker = _start(command)
    store = TimescaleStore(database)
    alerts = Listener(mosquitto.port, "trackside/v1/acme/+/alert")
    try:
        _ready(store, mosquitto.port)
        shift = Shift(mosquitto.port, example_site).start()
        rng = random.Random(11)
        for _ in range(KILLS):
            time.sleep(rng.uniform(1.0, SECONDS / (KILLS + 1)))
            worker.send_signal(signal.SIGKILL)  # no goodbye, mid-batch
            worker.wait(10)
            worker = _start(command)  # the same session name: its queue is waiting
        shift.join()
        _verdict(shift, store, alerts, f"{KILLS} SIGKILLs")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        alerts.close()
        store.close()


def test_a_broker_restart_loses_and_doubles_nothing(tmp_path, mosquitto, database, example_site):
    worker = _start(_worker(tmp_path, mosquitto.url, database))
    store = TimescaleStore(database)
    try:
        _ready(store, mosquitto.port)
        alerts = Listener(mosquitto.port, "trackside/v1/acme/+/alert")
        shift = Shift(mosquitto.port, example_site).start()
        time.sleep(SECONDS / 3)
        mosquitto.restart()  # queued messages are saved to disk and come back
        alerts.close()
        alerts = Listener(mosquitto.port, "trackside/v1/acme/+/alert")
        shift.join()
        # alerts sent while the listener was away are not the service's to repeat: judge
        # only the walkers that crossed after it came back
        shift.crossing = {w: c for w, c in shift.crossing.items() if c > SECONDS / 3 + 3}
        _verdict(shift, store, alerts, "broker restart")
        alerts.close()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        store.close()


def test_the_database_down_under_load_loses_nothing_and_alerts_keep_flowing(
    tmp_path, mosquitto, timescaledb, database, example_site
):
    worker = _start(_worker(tmp_path, mosquitto.url, database))
    store = TimescaleStore(database)
    alerts = Listener(mosquitto.port, "trackside/v1/acme/+/alert")
    try:
        _ready(store, mosquitto.port)
        shift = Shift(mosquitto.port, example_site, seconds=max(SECONDS, int(OUTAGE_S) + 12))
        shift.start()
        time.sleep(2)
        timescaledb.stop("immediate")
        time.sleep(OUTAGE_S)
        during = len([m for m in alerts.messages if json.loads(m[1])["kind"] == "breach"])
        timescaledb.restart()
        shift.join()
        _verdict(shift, store, alerts, f"database down {OUTAGE_S:.0f} s")
        assert during > 0 or all(c > OUTAGE_S + 2 for c in shift.crossing.values())
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        alerts.close()
        store.close()


def test_a_burst_of_stale_fixes_after_a_tunnel_is_kept_and_its_breach_alerted(
    tmp_path, mosquitto, database, example_site
):
    burst = int(os.environ.get("TRACKFENCE_FAULT_BURST", 2000))
    worker = _start(_worker(tmp_path, mosquitto.url, database))
    store = TimescaleStore(database)
    alerts = Listener(mosquitto.port, "trackside/v1/acme/tunnel/alert")
    try:
        _ready(store, mosquitto.port)
        inside, outside = (
            site_latlon(example_site, 500.0, -3.0),
            site_latlon(example_site, 500.0, -8.0),
        )
        pub = Publisher(mosquitto.port)
        t0 = now_ms() - burst * 100 - 60_000
        # out of the tunnel, the device sends everything it buffered at once (10 Hz fixes);
        # somewhere in them its wearer stepped out of the safe zone
        infos = []
        for k in range(burst):
            lat, lon = outside if burst // 2 <= k < burst // 2 + 30 else inside
            infos.append(
                pub.send(
                    "trackside/v1/acme/tunnel/fix", native("tunnel", k, t0 + k * 100, lat, lon)
                )
            )
        for info in infos:
            info.wait_for_publish(60)
        assert wait_until(lambda: _stored(store) >= burst + 1, 120)
        fixes = [f for f in store.fixes("acme/tunnel")]
        assert len(fixes) == len({f.seq for f in fixes}) == burst
        assert wait_until(
            lambda: any(json.loads(m[1])["kind"] == "breach" for m in alerts.messages), 30
        )
        breach = [e for e in store.events("acme/tunnel") if e.kind == "breach"]
        assert [e.event_ms for e in breach] == [t0 + (burst // 2) * 100]
        pub.close()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        alerts.close()
        store.close()


def test_a_device_whose_clock_jumps_back_an_hour_is_lost_not_trusted(
    tmp_path, mosquitto, database, example_site
):
    # The receiver's clock is put back an hour, its sequence counting on. Fixes stamped an
    # hour in the past cannot be told from a replayed or forged year-old fix, so they are
    # dead-lettered (time:stale) and never decided; the wearer is told protection is lost,
    # rather than protected by positions whose time is wrong. (A jump back of less than
    # stale_after_s is followed: tests/test_pipeline.py.)
    worker = _start(_worker(tmp_path, mosquitto.url, database, lost_after_s=10))
    store = TimescaleStore(database)
    alerts = Listener(mosquitto.port, "trackside/v1/acme/jumper/alert")
    try:
        _ready(store, mosquitto.port)
        inside, outside = (
            site_latlon(example_site, 500.0, -3.0),
            site_latlon(example_site, 500.0, -8.0),
        )
        pub = Publisher(mosquitto.port)
        t0 = now_ms() - 10_000
        for k in range(5):
            pub.send("trackside/v1/acme/jumper/fix", native("jumper", k, t0 + k * 1000, *inside))
        back = t0 + 5000 - 3_600_000
        for k in range(5, 30):  # it goes on sending, an hour behind, for 25 s
            where = outside if k >= 7 else inside
            body = native("jumper", k, back + (k - 5) * 1000, *where)
            pub.send("trackside/v1/acme/jumper/fix", body).wait_for_publish(5)
            time.sleep(1.0)

        def kinds() -> list[str]:
            return [json.loads(m[1])["kind"] for m in alerts.messages]

        assert wait_until(lambda: "lost" in kinds(), 20), (
            kinds(),
            [(e.kind, e.event_ms) for e in store.events("acme/jumper")],
            [d.reason for d in store.dead_letters()],
        )
        assert "breach" not in kinds()  # nothing was decided on a time an hour wrong
        stale = [d for d in store.dead_letters() if d.reason == "time:stale"]
        assert len(stale) == 25
        assert len(store.fixes("acme/jumper")) == 5
        pub.close()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        alerts.close()
        store.close()


def test_a_full_spool_holds_messages_in_the_broker_and_loses_nothing(
    tmp_path, mosquitto, timescaledb, database, example_site
):
    # the database is down and the disk spool is tiny: the worker raises spool-full and
    # stops acknowledging, so the broker keeps the rest; when the database returns,
    # everything arrives, once
    worker = _start(_worker(tmp_path, mosquitto.url, database, extra="spool_max_mb = 0.05"))
    store = TimescaleStore(database)
    health = Listener(mosquitto.port, "trackfence/v1/ingest/+/status")
    alerts = Listener(mosquitto.port, "trackside/v1/acme/+/alert")
    try:
        _ready(store, mosquitto.port)
        timescaledb.stop("immediate")
        shift = Shift(mosquitto.port, example_site, seconds=max(12, SECONDS // 2)).start()

        def alarmed() -> bool:
            return any(
                "spool-full" in json.loads(p).get("alarms", []) for _, p, _ in health.messages
            )

        assert wait_until(alarmed, 60), "the worker never said its spool was full"
        shift.join()
        timescaledb.restart()
        _verdict(shift, store, alerts, "spool full, database down")

        def recovered() -> bool:  # and it says so itself, with no operator
            last = json.loads(health.messages[-1][1]) if health.messages else {}
            return last.get("alarms") == [] and last.get("spool_depth") == 0

        assert wait_until(recovered, 30), health.messages[-1:]
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        health.close()
        alerts.close()
        store.close()
