"""The ingest service end to end: real Mosquitto, real TimescaleDB, nothing mocked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from ingest.service import IngestService
from ingest.settings import load_settings
from store import StoreError
from store.timescale import TimescaleStore
from tests.conftest import ROOT
from tests.devices import Listener, Publisher, native, now_ms, site_latlon, wait_until
from wire import nmea

SITE_FILE = ROOT / "examples" / "sites" / "ecm1-kings-cross.toml"


@pytest.fixture
def database(timescaledb):
    return timescaledb.fresh_database()


def settings_file(tmp_path, broker_url: str, db_url: str, site, extra: str = "") -> object:
    reader_lat, reader_lon = site_latlon(site, 430.0, -3.0)
    path = tmp_path / "ingest.toml"
    path.write_text(f"""
[ingest]
broker = "{broker_url}"
db = "{db_url}"
client_id = "ingest-{uuid.uuid4().hex[:8]}"
spool = "{tmp_path / "spool"}"
batch_max_wait_ms = 3

[[site]]
file = "{SITE_FILE}"
devices = ["*"]

[[rfid_reader]]
id = "gate-3"
lat = {reader_lat}
lon = {reader_lon}
range_m = 1.0

[decisions]
lost_after_s = 30
{extra}
""")
    return path


@pytest.fixture
def service(tmp_path, mosquitto, database, example_site):
    settings = load_settings(settings_file(tmp_path, mosquitto.url, database, example_site))
    svc = IngestService(settings)
    svc.start()
    assert svc.connected.wait(10)
    time.sleep(0.2)  # subscriptions in place
    yield svc
    svc.stop()


def test_all_four_formats_are_stored_once_and_only_once(service, mosquitto, database, example_site):
    lat, lon = site_latlon(example_site, 430.0, -3.0)
    t = now_ms() - 1000
    dev = uuid.uuid4().hex[:6]
    hhmmss = time.strftime("%H%M%S", time.gmtime(t // 1000)) + f".{(t % 1000) // 10:02d}"
    ddmmyy = time.strftime("%d%m%y", time.gmtime(t // 1000))

    def dm(value: float, width: int) -> str:
        deg = int(abs(value))
        return f"{deg:0{width}d}{(abs(value) - deg) * 60:08.5f}"

    gga = nmea.sentence(f"GNGGA,{hhmmss},{dm(lat, 2)},N,{dm(lon, 3)},W,4,20,0.6,20.0,M,45.0,M,,")
    rmc = nmea.sentence(f"GNRMC,{hhmmss},A,{dm(lat, 2)},N,{dm(lon, 3)},W,0.0,,{ddmmyy},,,R")
    messages = [
        (f"trackside/v1/acme/n-{dev}/fix", native(f"n-{dev}", 1, t, lat, lon)),
        (
            f"trackside/v1/phones/o-{dev}/fix",
            json.dumps(
                {"_type": "location", "lat": lat, "lon": lon, "acc": 3, "tst": t // 1000}
            ).encode(),
        ),
        (f"trackside/v1/gnss/g-{dev}/fix", f"{gga}\r\n{rmc}\r\n".encode()),
        (
            f"trackside/v1/tagco/r-{dev}/rfid",
            json.dumps({"reader_id": "gate-3", "tag_id": "E2-01", "seq": 4, "time_ms": t}).encode(),
        ),
    ]
    pub = Publisher(mosquitto.port)
    for _ in range(3):  # every message three times: devices and brokers do redeliver
        for topic, payload in messages:
            pub.send(topic, payload).wait_for_publish(5)
    pub.close()
    store = TimescaleStore(database)
    assert wait_until(lambda: store.counts()["fixes"] >= 4)
    time.sleep(0.5)
    fixes = store.fixes()
    assert sorted(f.source_format for f in fixes) == ["native", "nmea", "owntracks", "rfid"]
    assert all(f.site and f.fence == "Down Fast possession" for f in fixes)
    assert all(f.received_ms <= f.decided_ms for f in fixes)
    assert store.counts()["dead_letters"] == 0
    store.close()


def test_an_excursion_alerts_the_device_in_milliseconds(service, mosquitto, database, example_site):
    dev = f"w-{uuid.uuid4().hex[:6]}"
    alerts = Listener(mosquitto.port, f"trackside/v1/acme/{dev}/alert")
    pub = Publisher(mosquitto.port)
    t0 = now_ms() - 30_000
    walk = [-2.0, -2.0, -1.0, 0.5, 2.0, 3.0, 3.0]  # drifting from the cess towards the Up Fast
    sent_at = {}
    for i, lateral in enumerate(walk):
        lat, lon = site_latlon(example_site, 450.0 + i, lateral)
        sent_at[i] = now_ms()
        pub.send(
            f"trackside/v1/acme/{dev}/fix", native(dev, i, t0 + i * 1000, lat, lon)
        ).wait_for_publish(5)
        time.sleep(0.05)
    assert wait_until(
        lambda: any(json.loads(p)["kind"] == "breach" for _, p, _ in alerts.messages), 5
    )
    breach = next(
        json.loads(p) | {"at": at}
        for _, p, at in alerts.messages
        if json.loads(p)["kind"] == "breach"
    )
    assert breach["device"] == dev and breach["message"].startswith("Stop")
    assert breach["at"] - sent_at[breach["seq"]] < 1000  # round trip, generous for a shared machine
    store = TimescaleStore(database)
    assert wait_until(lambda: len(store.alerts(f"acme/{dev}")) >= 1)
    fix = next(f for f in store.fixes(f"acme/{dev}") if f.seq == breach["seq"])
    assert fix.alert_ms is not None and fix.received_ms <= fix.decided_ms <= fix.alert_ms
    pub.close()
    alerts.close()
    store.close()


def test_a_thousand_malformed_payloads_are_dead_lettered_while_good_ones_flow(
    service, mosquitto, database, example_site
):
    dead = Listener(mosquitto.port, "trackside/v1/_deadletter")
    pub = Publisher(mosquitto.port)
    dev = f"m-{uuid.uuid4().hex[:6]}"
    lat, lon = site_latlon(example_site, 500.0, -3.0)
    t0 = now_ms() - 60_000
    topic = f"trackside/v1/acme/{dev}/fix"
    bad_payloads = [
        lambda i: b"{not json " + str(i).encode(),
        lambda i: b"\xff\xfe" + str(i).encode(),
        lambda i: f"[{i}]".encode(),
        lambda i: json.dumps({"seq": i, "lat": 91, "lon": 0, "time_ms": t0}).encode(),
        lambda i: json.dumps({"seq": i, "lon": 0, "time_ms": t0}).encode(),
        lambda i: f"$GPGGA,{i}*00".encode(),
    ]
    infos = []
    good = 0
    for i in range(1000):
        if i % 10 == 9:  # a device name no topic may carry
            infos.append(pub.send(f"trackside/v1/acme/bad name {i}/fix", b"{}"))
        else:
            infos.append(pub.send(topic, bad_payloads[i % len(bad_payloads)](i)))
        if i % 5 == 0:
            infos.append(pub.send(topic, native(dev, good, t0 + good * 100, lat, lon)))
            good += 1
    for info in infos:
        info.wait_for_publish(10)
    store = TimescaleStore(database)
    assert wait_until(lambda: store.counts()["fixes"] == good and len(dead.messages) >= 1000, 30)
    time.sleep(0.5)
    counts = store.counts()
    reasons = {json.loads(p)["reason"] for _, p, _ in dead.messages}
    assert counts["fixes"] == good == 200
    assert len(dead.messages) == 1000
    assert (
        counts["dead_letters"] == len({(t, p) for t, p, _ in dead.messages})
        or counts["dead_letters"] <= 1000
    )
    assert {
        "json",
        "encoding",
        "schema",
        "range:lat",
        "missing:lat",
        "checksum",
        "topic",
    } <= reasons
    assert sum(v for k, v in service.counters.items() if k.startswith("dead_letter:")) == 1000
    pub.close()
    dead.close()
    store.close()


def stored_fixes(store) -> int:
    """Rows in fixes, or 0 while the worker has not yet made the schema."""
    try:
        return store.counts()["fixes"]
    except StoreError:
        return 0


def _publish_stream(port: int, devices: list[str], per_device: int, site, t0: int, pace_s: float):
    pub = Publisher(port)
    infos = []
    for k in range(per_device):
        for j, dev in enumerate(devices):
            lat, lon = site_latlon(site, 420.0 + (k % 300), -3.0 + 0.01 * j)
            infos.append(
                pub.send(f"trackside/v1/acme/{dev}/fix", native(dev, k, t0 + k * 100, lat, lon))
            )
        time.sleep(pace_s)
    for info in infos:
        info.wait_for_publish(30)
    pub.close()


def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    tmp_path, mosquitto, database, example_site
):
    config = settings_file(tmp_path, mosquitto.url, database, example_site)
    command = [sys.executable, "-m", "trackfence.cli", "ingest", "--config", str(config)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    worker = subprocess.Popen(command, env=env, cwd=ROOT)
    store = TimescaleStore(database)
    try:
        devices = [f"k{j}-{uuid.uuid4().hex[:4]}" for j in range(20)]
        t0 = now_ms() - 120_000
        lat, lon = site_latlon(example_site, 420.0, -3.0)
        warm = Publisher(mosquitto.port)
        first = native(devices[0], 10_000, t0 - 1, lat, lon)

        def warmed_up() -> bool:  # until its first session exists nothing is queued for it
            warm.send(f"trackside/v1/acme/{devices[0]}/fix", first)
            return stored_fixes(store) == 1

        assert wait_until(warmed_up, 30, every_s=0.5), "worker did not start"
        warm.close()
        stream = threading.Thread(
            target=_publish_stream, args=(mosquitto.port, devices, 100, example_site, t0, 0.02)
        )
        stream.start()
        time.sleep(0.8)
        worker.send_signal(signal.SIGKILL)  # mid-stream, mid-batch, no goodbye
        worker.wait(10)
        assert 1 < store.counts()["fixes"] < 2001  # it really was interrupted
        worker = subprocess.Popen(command, env=env, cwd=ROOT)  # same session name
        stream.join()
        assert wait_until(lambda: store.counts()["fixes"] >= 2001, 60)
        time.sleep(1.0)
        fixes = store.fixes()
        keys = {(f.device_id, f.seq) for f in fixes}
        assert len(fixes) == len(keys) == 2001  # nothing lost, nothing twice
        assert {(f"acme/{d}", k) for d in devices for k in range(100)} <= keys
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        store.close()


def test_a_database_outage_loses_nothing_and_alerts_keep_flowing(
    service, mosquitto, timescaledb, database, example_site
):
    outage_s = float(os.environ.get("TRACKFENCE_OUTAGE_S", "30"))
    dev, walker = f"d-{uuid.uuid4().hex[:6]}", f"x-{uuid.uuid4().hex[:6]}"
    alerts = Listener(mosquitto.port, f"trackside/v1/acme/{walker}/alert")
    pub = Publisher(mosquitto.port)
    store = TimescaleStore(database)
    lat, lon = site_latlon(example_site, 420.0, -3.0)
    t0 = now_ms() - 600_000
    pub.send(f"trackside/v1/acme/{dev}/fix", native(dev, 0, t0, lat, lon)).wait_for_publish(5)
    assert wait_until(lambda: store.counts()["fixes"] == 1)
    timescaledb.stop("immediate")
    sent = 1
    try:
        started = time.monotonic()
        k = 0
        while time.monotonic() - started < outage_s:
            k += 1
            pub.send(f"trackside/v1/acme/{dev}/fix", native(dev, k, t0 + k * 100, lat, lon))
            lateral = -2.0 if k < 50 else 3.0  # the walker steps towards the open line
            wlat, wlon = site_latlon(example_site, 460.0, lateral)
            pub.send(f"trackside/v1/acme/{walker}/fix", native(walker, k, t0 + k * 100, wlat, wlon))
            sent += 2
            time.sleep(0.05)
        # while the database is down: the wearer was still told
        assert any(json.loads(p)["kind"] == "breach" for _, p, _ in alerts.messages)
        assert "database-unreachable" in service.alarms
        assert service.spool.depth > 0
    finally:
        timescaledb.restart()
    assert wait_until(lambda: store.counts()["fixes"] == sent, 60)
    assert wait_until(lambda: service.spool.depth == 0 and not service.alarms, 10)
    fixes = store.fixes()
    assert len({(f.device_id, f.seq) for f in fixes}) == sent
    assert len(store.alerts(f"acme/{walker}")) >= 1
    pub.close()
    alerts.close()
    store.close()


def test_two_workers_share_the_load_and_agree_on_every_device(
    tmp_path, mosquitto, database, example_site
):
    workers = []
    for n in range(2):
        folder = tmp_path / f"w{n}"
        folder.mkdir()
        settings = load_settings(settings_file(folder, mosquitto.url, database, example_site))
        settings.group = "ingest"
        workers.append(IngestService(settings))
    for w in workers:
        w.start()
        assert w.connected.wait(10)
    time.sleep(0.3)
    alerts = Listener(mosquitto.port, "trackside/v1/acme/+/alert")
    pub = Publisher(mosquitto.port)
    devices = [f"s{j}-{uuid.uuid4().hex[:4]}" for j in range(20)]
    t0 = now_ms() - 300_000
    walk = [-2.0] * 10 + [0.0, 1.5, 3.0, 3.0, 3.0, 1.5, 0.0] + [-2.5] * 23  # out and back
    infos = []
    for k, lateral in enumerate(walk):
        for j, dev in enumerate(devices):
            lat, lon = site_latlon(example_site, 420.0 + 5 * j + 0.5 * k, lateral)
            infos.append(
                pub.send(f"trackside/v1/acme/{dev}/fix", native(dev, k, t0 + k * 1000, lat, lon))
            )
    for info in infos:
        info.wait_for_publish(10)
    store = TimescaleStore(database)
    total = len(devices) * len(walk)
    try:
        assert wait_until(lambda: store.counts()["fixes"] == total, 30)
        time.sleep(1.0)
        assert store.counts()["fixes"] == total
        assert len({(f.device_id, f.seq) for f in store.fixes()}) == total
        breaches = [e for e in store.events() if e.kind == "breach"]
        assert sorted(e.device_id for e in breaches) == sorted(f"acme/{d}" for d in devices)
        breach_messages = [json.loads(p) for _, p, _ in alerts.messages if b'"breach"' in p]
        assert sorted(m["device"] for m in breach_messages) == sorted(devices)  # one each
        assert all(w.counters["fixes"] > 0 for w in workers)  # both did real work
        assert sum(w.counters["fixes"] for w in workers) == total
        a, b = (w.pipeline for w in workers)
        for dev in devices:
            da, db = a._number[f"acme/{dev}"], b._number[f"acme/{dev}"]
            assert a.states.state[da] == b.states.state[db]
            assert a.states.last_seq[da] == b.states.last_seq[db] == len(walk) - 1
    finally:
        for w in workers:
            w.stop()
        pub.close()
        alerts.close()
        store.close()


def test_a_worker_started_while_the_database_is_down_keeps_its_states_when_it_returns(
    tmp_path, mosquitto, timescaledb, database, example_site
):
    settings = load_settings(settings_file(tmp_path, mosquitto.url, database, example_site))
    dev = f"z-{uuid.uuid4().hex[:6]}"
    pub = Publisher(mosquitto.port)
    store = TimescaleStore(database)
    t0 = now_ms() - 20_000

    def send(k: int, lateral: float) -> None:
        lat, lon = site_latlon(example_site, 470.0, lateral)
        pub.send(f"trackside/v1/acme/{dev}/fix", native(dev, k, t0 + k * 1000, lat, lon))

    first = IngestService(settings)  # the device has history: safe in the cess
    first.start()
    assert first.connected.wait(10)
    time.sleep(0.3)
    send(0, -2.0)
    send(1, -2.0)
    assert wait_until(lambda: stored_fixes(store) == 2, 10)
    first.stop()
    timescaledb.stop("immediate")
    try:
        svc = IngestService(settings)  # restarted while the database is away
        svc.start()
        assert svc.connected.wait(10)
        assert "database-unreachable" in svc.alarms
        for k in (2, 3, 4):  # into the danger zone
            send(k, 3.0)
        assert wait_until(lambda: svc.spool.depth > 0 and svc.counters["fixes"] == 3, 10)
    finally:
        timescaledb.restart()
    try:
        assert wait_until(lambda: stored_fixes(store) == 5 and svc.spool.depth == 0, 30)
        for k in (5, 6, 7):  # still in the danger zone after the database came back
            send(k, 3.0)
        assert wait_until(lambda: stored_fixes(store) == 8, 10)
        breaches = [e for e in store.events(f"acme/{dev}") if e.kind == "breach"]
        assert len(breaches) == 1  # the state in memory was kept, not reset from the store
        assert all(f.state == "BREACH" for f in store.fixes(f"acme/{dev}") if f.seq >= 2)
    finally:
        svc.stop()
        pub.close()
        store.close()


def test_a_fleet_whose_fixes_arrive_late_raises_falling_behind_and_it_clears(
    service, mosquitto, example_site
):
    """Fixes reaching the worker seconds old, from every device, is the alarm an operator needs.

    (A backlog in the broker looks exactly like this from the worker.) One device bursting
    stale fixes after a tunnel, among current ones, is not.
    """
    health = Listener(mosquitto.port, service.health_topic)
    pub = Publisher(mosquitto.port)
    devices = [f"lag{k}" for k in range(8)]
    lat, lon = site_latlon(example_site, 430.0, -3.0)

    seq = iter(range(1, 10**6))

    def stream(seconds: float, age_ms: int, stale_device: str | None = None) -> None:
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            k = next(seq)
            for dev in devices:
                age = 600_000 if dev == stale_device else age_ms
                pub.send(f"trackside/v1/acme/{dev}/fix", native(dev, k, now_ms() - age, lat, lon))
            time.sleep(0.1)

    try:
        stream(5, 200, stale_device="lag0")
        assert "falling-behind" not in service.alarms
        stream(5, 4_000)
        assert "falling-behind" in service.alarms
        assert service.health()["fix_age_median_ms"] > 3_000

        def status_says(alarmed: bool) -> bool:
            last = json.loads(health.messages[-1][1]) if health.messages else {}
            return ("falling-behind" in last.get("alarms", [])) == alarmed

        # the operator hears of it at once (not at the next 5 s status), and of its end
        assert wait_until(lambda: status_says(True), 1.0)
        stream(2.5, 200)
        assert "falling-behind" not in service.alarms
        assert service.health()["fix_age_median_ms"] < 1_000
        assert wait_until(lambda: status_says(False), 1.0)
    finally:
        pub.close()
        health.close()
