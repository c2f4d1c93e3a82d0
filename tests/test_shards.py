"""Sharded ingest: the fleet split by site over worker groups, each site shared by two workers.

The rules first (no servers): which device patterns a shard can subscribe to, which sites
may share a worker, and which shards may share a fleet. Then, on a real Mosquitto, what
the broker does with a shared-subscription member that is SIGKILLed (it keeps the member's
share until the member returns). Then the proof: two shards of two workers each, run as
their own processes against Mosquitto and TimescaleDB, while 100 devices at four sites
publish at 1 Hz and some of them step out of the safe zone at known moments. Mid-stream one
worker is SIGKILLed (and restarted) and a site is moved from one shard to the other. Every
published fix must be stored exactly once, as its own decision (none decided late), and
every breach the stream raises, decided offline by the same Pipeline, must be stored and
alerted exactly once.

TRACKFENCE_SHARD_SECONDS (default 40) and TRACKFENCE_SHARD_DEVICES (per site, default 25)
lengthen the run.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from geofence.breach import BreachConfig
from ingest.deployment import Deployment, plan_shares
from ingest.pipeline import Inbound, Pipeline
from ingest.settings import SettingsError, check_fleet, load_settings
from loading.site_files import load_site
from store.timescale import TimescaleStore
from tests.conftest import ROOT
from tests.devices import Listener, Publisher, native, now_ms, site_latlon, wait_until
from tests.servers import IngestWorker
from wire.topics import device_filters, patterns_overlap

SITE_FILE = ROOT / "examples" / "sites" / "ecm1-kings-cross.toml"
SECONDS = max(40, int(os.environ.get("TRACKFENCE_SHARD_SECONDS", 40)))
PER_SITE = max(10, int(os.environ.get("TRACKFENCE_SHARD_DEVICES", 25)))
OUTSIDE_S = 5
#: The tick at which each walker (the first devices of each site, in order) steps out of the
#: safe zone, for OUTSIDE_S. Shard one's worker is dead from 6.5 s to 9.5 s: at ticks 8 (site
#: a) and 9 (site b) two neighbours cross at once, and as Mosquitto hands a site's messages
#: to its two workers in turn, one of each pair waits in the dead worker's session. Site b
#: moves from about 13.5 s to 26 s.
CROSSINGS = {
    "a": (4, 8, 8, 12, 22, 28),
    "b": (5, 9, 9, 16, 20, 26),
    "c": (3, 10, 15, 18, 24, 30),
    "d": (6, 11, 17, 19, 23, 29),
}
LOST_AFTER_S = 600  # silence plays no part here


# ---------------------------------------------------------------- the rules
def test_device_patterns_become_topic_filters_or_are_refused():
    assert device_filters("*")[0] == "trackside/v1/+/+/fix"
    assert device_filters("acme/*") == [
        f"trackside/v1/acme/+/{kind}" for kind in ("fix", "rfid", "status", "alarm")
    ]
    assert device_filters("*/ac-1")[0] == "trackside/v1/+/ac-1/fix"
    assert device_filters("acme/ac-1")[0] == "trackside/v1/acme/ac-1/fix"
    for glob in ("acme/ac-01*", "a?me/*", "acme", "acme/a/b", "acme/+", "acme/#", "*/*x"):
        with pytest.raises(ValueError, match="cannot be an MQTT topic filter"):
            device_filters(glob)


def test_patterns_overlap_when_one_device_could_match_both():
    assert patterns_overlap("*", "acme/ac-1")
    assert patterns_overlap("acme/*", "*/ac-1")
    assert patterns_overlap("acme/ac-1", "acme/ac-1")
    assert not patterns_overlap("acme/*", "gnssco/*")
    assert not patterns_overlap("acme/ac-1", "acme/ac-2")
    assert not patterns_overlap("*/ac-1", "*/ac-2")


def test_each_site_is_its_own_share_group():
    shares = plan_shares([("kgx", ["acme/*"]), ("fsb", ["gnssco/*", "tagco/tg-1"])], "fleet")
    assert [s.group for s in shares] == ["fleet-site-kgx", "fleet-site-fsb"]
    assert shares[0].filters[0] == "trackside/v1/acme/+/fix"
    assert shares[0].shared_filters[0] == "$share/fleet-site-kgx/trackside/v1/acme/+/fix"
    assert len(shares[1].filters) == 8  # two patterns, four kinds each
    assert plan_shares([("kgx", ["*"])])[0].group == "site-kgx"  # no fleet name


def _settings_file(folder: Path, ingest: str, sites: list[tuple[str, list[str]]]) -> Path:
    text = f"[ingest]\n{ingest}\n"
    for file, devices in sites:
        text += f'[[site]]\nfile = "{file}"\ndevices = {json.dumps(devices)}\n'
    path = folder / f"{uuid.uuid4().hex[:8]}.toml"
    path.write_text(text)
    return path


def test_a_shard_refuses_what_it_cannot_subscribe_to_exactly(tmp_path):
    kgx, four = str(SITE_FILE), str(ROOT / "examples" / "sites" / "ecm1-four-track.toml")
    glob = _settings_file(tmp_path, 'shard = "north"', [(kgx, ["acme/ac-01*"])])
    with pytest.raises(SettingsError, match="cannot be an MQTT topic filter"):
        load_settings(glob)
    overlap = _settings_file(tmp_path, 'shard = "north"', [(kgx, ["*"]), (four, ["acme/*"])])
    with pytest.raises(SettingsError, match="can match the same device"):
        load_settings(overlap)
    twice = _settings_file(tmp_path, 'shard = "north"', [(kgx, ["a/*"]), (kgx, ["b/*"])])
    with pytest.raises(SettingsError, match="two sites have the id"):
        load_settings(twice)
    v311 = _settings_file(tmp_path, 'shard = "n"\nmqtt_protocol = "3.1.1"', [(kgx, ["*"])])
    with pytest.raises(SettingsError, match="needs MQTT 5"):
        _ = load_settings(v311).paho_protocol
    with pytest.raises(SettingsError, match="shard"):
        load_settings(_settings_file(tmp_path, 'shard = "no/slash"', [(kgx, ["*"])]))
    # without a shard, as before: any glob, first match wins, every device subscribed
    plain = load_settings(_settings_file(tmp_path, "", [(kgx, ["acme/ac-01*"]), (four, ["*"])]))
    assert not plain.sharded and plain.deployment().site_of("acme/ac-0107") is not None


def test_a_fleet_may_hold_a_site_in_two_shards_while_it_moves_but_no_device_twice(tmp_path):
    kgx, four = str(SITE_FILE), str(ROOT / "examples" / "sites" / "ecm1-four-track.toml")
    north = _settings_file(tmp_path, 'shard = "north"', [(kgx, ["acme/*"])])
    south = _settings_file(tmp_path, 'shard = "south"', [(four, ["gnssco/*"])])
    moving = _settings_file(tmp_path, 'shard = "south"', [(four, ["gnssco/*"]), (kgx, ["acme/*"])])
    check_fleet([load_settings(north), load_settings(south)])
    check_fleet([load_settings(north), load_settings(moving)])  # kgx in both, same devices
    clash = _settings_file(tmp_path, 'shard = "south"', [(four, ["*/ac-1"])])
    with pytest.raises(SettingsError, match="can match the same device"):
        check_fleet([load_settings(north), load_settings(clash)])


# ---------------------------------------------------------------- what Mosquitto does
def _member(port: int, client_id: str, topic: str, got: list, ack: bool = True) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
    )

    def on_message(c, u, m):
        got.append(m.payload)
        if ack:
            c.ack(m.mid, m.qos)

    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    client.subscribe(topic, qos=1)
    time.sleep(0.3)
    return client


def test_mosquitto_keeps_a_killed_members_share_until_it_returns(mosquitto):
    """Mosquitto 2.0 (src/subs.c, subs__shared_process) gives a shared subscription's
    messages to its members in turn, connected or not. A member SIGKILLed with a
    persistent session keeps its unacknowledged messages, and every other new message is
    queued for it, not given to the live member: they wait until it returns."""
    topic, share = f"t/{uuid.uuid4().hex[:6]}", f"$share/g{uuid.uuid4().hex[:6]}/"
    dead_id = f"probe-{uuid.uuid4().hex[:6]}"
    first, live = [], []
    dying = _member(mosquitto.port, dead_id, share + topic, first, ack=False)
    peer = _member(mosquitto.port, f"probe-{uuid.uuid4().hex[:6]}", share + topic, live)
    pub = Publisher(mosquitto.port)
    for i in range(4):
        pub.send(topic, b"before-%d" % i).wait_for_publish(5)
    assert wait_until(lambda: len(first) + len(live) == 4, 5)
    held = list(first)  # received, never acknowledged
    dying.loop_stop()
    dying.socket().close()  # vanish, as a killed process does
    time.sleep(0.5)
    for i in range(6):
        pub.send(topic, b"after-%d" % i).wait_for_publish(5)
    time.sleep(0.5)
    assert len([p for p in live if p.startswith(b"after")]) == 3  # the live member: its half
    back: list[bytes] = []
    returned = _member(mosquitto.port, dead_id, share + topic, back)
    assert wait_until(lambda: len(back) == len(held) + 3, 5)
    after = {b"after-%d" % i for i in range(6)}
    assert set(back) == set(held) | (after - set(live))  # nothing lost, nothing twice
    for c in (peer, returned):
        c.disconnect()
        c.loop_stop()
    pub.close()


# ---------------------------------------------------------------- the proof
class Fleet:
    """Four sites (copies of the example site under new names), each with its supplier's
    devices; the first of each site's devices step outside at CROSSINGS."""

    def __init__(self, folder: Path, example_site) -> None:
        self.run = uuid.uuid4().hex[:6]
        self.letters = ("a", "b", "c", "d")
        self.files: dict[str, Path] = {}
        self.name: dict[str, str] = {}
        self.supplier = {x: f"s{x}{self.run}" for x in self.letters}
        text = SITE_FILE.read_text()
        name_line = next(line for line in text.splitlines() if line.startswith("name = "))
        for x in self.letters:
            self.name[x] = f"Site {x.upper()} {self.run}"
            self.files[x] = folder / f"{x}.toml"
            self.files[x].write_text(text.replace(name_line, f'name = "{self.name[x]}"', 1))
        self.devices = [
            (x, f"{self.supplier[x]}/d{i:02d}") for x in self.letters for i in range(PER_SITE)
        ]
        self.crossing = {}  # device -> first tick outside
        for x in self.letters:
            walkers = [d for site, d in self.devices if site == x]
            self.crossing.update(zip(walkers, CROSSINGS[x], strict=False))
        self.inside = site_latlon(example_site, 500.0, -3.0)
        self.outside = site_latlon(example_site, 500.0, -8.0)  # 3.5 m beyond the cess edge

    def position(self, device: str, tick: int) -> tuple[float, float]:
        start = self.crossing.get(device)
        outside = start is not None and start <= tick < start + OUTSIDE_S
        return self.outside if outside else self.inside

    def site_entry(self, x: str) -> tuple[str, list[str]]:
        return str(self.files[x]), [f"{self.supplier[x]}/*"]


class Shift(threading.Thread):
    """Every device's fix each second, in real time, recorded as sent (for the offline truth)."""

    def __init__(self, port: int, fleet: Fleet) -> None:
        super().__init__(daemon=True)
        self.port, self.fleet = port, fleet
        self.ticks = 10**6  # until the faults are over (end_after)
        self.sent: list[tuple[str, bytes, int]] = []  # topic, payload, fix time
        self.crossed_at: dict[str, float] = {}
        self.t0 = now_ms() - 1000
        self.began = time.monotonic()

    def run(self) -> None:
        pub = Publisher(self.port)
        infos = []
        tick = 0
        while tick < self.ticks:
            for _, device in self.fleet.devices:
                lat, lon = self.fleet.position(device, tick)
                t = self.t0 + tick * 1000
                supplier, name = device.split("/")
                topic = f"trackside/v1/{supplier}/{name}/fix"
                body = native(name, tick, t, lat, lon, acc=0.2)
                infos.append(pub.send(topic, body))
                self.sent.append((topic, body, t))
                if self.fleet.crossing.get(device) == tick:
                    self.crossed_at[device] = time.time()
            time.sleep(max(0.0, self.began + tick + 1 - time.monotonic()))
            tick += 1
        for info in infos:
            info.wait_for_publish(60)
        pub.close()

    def at(self, seconds: float) -> None:
        """Wait until `seconds` into the shift."""
        time.sleep(max(0.0, self.began + seconds - time.monotonic()))

    def end_after(self, seconds: int) -> None:
        """End `seconds` from now, but not before SECONDS."""
        self.ticks = max(SECONDS, int(time.monotonic() - self.began) + seconds)


def _truth(fleet: Fleet, shift: Shift) -> tuple[set[tuple[str, int]], dict[str, str]]:
    """The breaches the stream must raise, decided offline by the Pipeline, one tick at a
    time as sent; and each device's site."""
    sites = {fleet.name[x]: load_site(fleet.files[x]) for x in fleet.letters}
    assignments = [(f"{fleet.supplier[x]}/*", fleet.name[x]) for x in fleet.letters]
    pipeline = Pipeline(Deployment(sites, assignments), BreachConfig(lost_after_s=LOST_AFTER_S))
    breaches = set()
    per_tick = len(fleet.devices)
    for start in range(0, len(shift.sent), per_tick):
        messages = [Inbound(t, b, at + 50) for t, b, at in shift.sent[start : start + per_tick]]
        for event in pipeline.decide(messages, None).batch.events:
            if event.kind == "breach":
                breaches.add((event.device_id, event.seq))
    site_of = {device: fleet.name[x] for x, device in fleet.devices}
    return breaches, site_of


def _config(path: Path, fleet: Fleet, broker: str, db: str, shard: str, letters) -> Path:
    lines = [
        "[ingest]",
        f'broker = "{broker}"',
        f'db = "{db}"',
        f'client_id = "trackfence-ingest-{fleet.run}-{path.stem}"',
        f'spool = "{path.parent / ("spool-" + path.stem)}"',
        f'shard = "{shard}"',
        f'group = "fleet-{fleet.run}"',
    ]
    for x in letters:
        file, devices = fleet.site_entry(x)
        lines += ["[[site]]", f'file = "{file}"', f"devices = {json.dumps(devices)}"]
    lines += ["[decisions]", f"lost_after_s = {LOST_AFTER_S}"]
    path.write_text("\n".join(lines) + "\n")
    return path


class Statuses(Listener):
    """The workers' health, as they publish it (retained, and at once once subscribed)."""

    def __init__(self, port: int) -> None:
        super().__init__(port, "trackfence/v1/ingest/+/status")

    def last(self, worker: IngestWorker) -> dict:
        """Its newest status while online (its goodbye carries no counters)."""
        topic = f"trackfence/v1/ingest/{self._id(worker)}/status"
        mine = [json.loads(p) for t, p, _ in self.messages if t == topic]
        return next((m for m in reversed(mine) if m.get("online")), {})

    @staticmethod
    def _id(worker: IngestWorker) -> str:
        return next(
            line.split('"')[1]
            for line in worker.config.read_text().splitlines()
            if line.startswith("client_id")
        )

    def ready(self, worker: IngestWorker, timeout_s: float = 60) -> None:
        """Until the worker says it is online and subscribed, since it was last started."""

        def said() -> bool:
            status = self.last(worker)
            return status.get("time_ms", 0) >= worker.started_ms

        assert wait_until(said, timeout_s, every_s=0.1), worker.log.read_text()[-3000:]


def _restart(worker: IngestWorker, statuses: Statuses) -> None:
    """SIGTERM, start again (with its settings as they now are), until it is subscribed."""
    worker.stop()
    worker.start()
    statuses.ready(worker)


def test_two_shards_lose_and_double_nothing_through_a_kill_and_a_site_move(
    tmp_path, mosquitto, timescaledb, example_site
):
    db = timescaledb.fresh_database()
    fleet = Fleet(tmp_path, example_site)
    shards = {"one": ("a", "b"), "two": ("c", "d")}  # site b moves from one to two
    workers = {
        f"{shard}-{m}": IngestWorker(_config(tmp_path / f"{shard}-{m}.toml", fleet,
                                             mosquitto.url, db, shard, letters))
        for shard, letters in shards.items()
        for m in ("x", "y")
    }  # fmt: skip
    check_fleet([load_settings(w.config) for w in workers.values()])
    statuses = Statuses(mosquitto.port)
    alerts = Listener(mosquitto.port, "trackside/v1/+/+/alert")
    shift = Shift(mosquitto.port, fleet)
    store = TimescaleStore(db)
    store.migrate()  # once, before four workers start on it at the same moment
    try:
        for w in workers.values():
            w.start()
        for w in workers.values():
            statuses.ready(w)
        shift.began, shift.t0 = time.monotonic(), now_ms() - 1000
        shift.start()

        # one worker of shard one dies mid-stream and comes back 3 s later
        victim = workers["one-x"]
        shift.at(6.5)
        victim.kill()
        killed_ms = now_ms()
        shift.at(9.5)
        victim.start()
        back_ms = victim.started_ms
        statuses.ready(victim)

        # site b moves to shard two: shard two takes it on (each worker restarted with
        # it), then shard one lets it go (each worker restarted without it)
        shift.at(13.5)
        for m in ("x", "y"):
            w = workers[f"two-{m}"]
            _config(w.config, fleet, mosquitto.url, db, "two", ("c", "d", "b"))
            _restart(w, statuses)
        check_fleet([load_settings(w.config) for w in workers.values()])  # b in both
        for m in ("x", "y"):
            w = workers[f"one-{m}"]
            _config(w.config, fleet, mosquitto.url, db, "one", ("a",))
            _restart(w, statuses)
        shift.end_after(8)  # the stream goes on after the move
        shift.join(SECONDS + 180)
        assert not shift.is_alive()

        # ---- the verdict
        expected = {(device, tick) for _, device in fleet.devices for tick in range(shift.ticks)}
        assert wait_until(lambda: _stored(store) >= len(expected), 120, every_s=0.5), (
            f"{len(expected) - _stored(store)} fixes never stored"
        )
        time.sleep(1.5)  # anything stored twice would show now
        fixes = store.fixes()
        keys = [(f.device_id, f.seq) for f in fixes]
        assert len(keys) == len(set(keys)) == len(expected), "a fix was stored twice"
        assert set(keys) == expected, "fixes lost"
        breaches, site_of = _truth(fleet, shift)
        assert len(breaches) == len(fleet.crossing)  # each walker's step out: one breach
        late = [(f.device_id, f.seq) for f in fixes if not f.accepted]
        assert not late, f"fixes decided behind their device's state: {late[:5]}"
        assert all(f.site == site_of[f.device_id] for f in fixes)
        stored_breaches = {(e.device_id, e.seq) for e in store.events() if e.kind == "breach"}
        assert stored_breaches == breaches
        sent = Counter()
        for topic, payload, _ in alerts.messages:
            body = json.loads(payload)
            if body["kind"] == "breach" and topic.split("/")[2].endswith(fleet.run):
                sent[(f"{topic.split('/')[2]}/{body['device']}", body["seq"])] += 1
        assert sent == Counter(dict.fromkeys(breaches, 1)), "a breach alerted never or twice"

        # the kill did hold messages back: fixes sent while the victim was dead, kept
        # in its session and decided when it came back
        held = [  # (a fix is stamped 1 s before it is sent)
            f
            for f in fixes
            if killed_ms - 1000 <= f.fix_ms < back_ms - 1000 and f.received_ms >= back_ms
        ]
        assert held, "the killed worker's session held nothing: the kill proved nothing"
        held_breaches = [f for f in held if (f.device_id, f.seq) in breaches]
        assert held_breaches, "no crossing waited for the killed worker: its resume untested"
        redispatched = sum(
            statuses.last(workers[f"one-{m}"]).get("counters", {}).get("redispatched", 0)
            for m in ("x", "y")
        )
        first_alert: dict[str, float] = {}
        for topic, payload, at in alerts.messages:
            if b'"breach"' in payload:
                device = "/".join(topic.split("/")[2:4])
                first_alert[device] = min(first_alert.get(device, at / 1000), at / 1000)
        delays = [first_alert[d] - shift.crossed_at[d] for d in fleet.crossing]
        print(
            f"\n{len(keys):,} fixes once each, none decided late; {len(breaches)} breaches "
            f"stored and alerted once each (worst {max(delays):.2f} s after the crossing fix "
            f"was sent); {len(held)} fixes ({len(held_breaches)} crossings) waited in the "
            f"killed worker's session until it returned; {redispatched} messages of the moved "
            "site republished by shard one"
        )
    finally:
        shift.ticks = 0  # (if it is still running)
        for w in workers.values():
            w.stop()
        statuses.close()
        alerts.close()
        store.close()


def _stored(store: TimescaleStore) -> int:
    try:
        return store.counts()["fixes"]
    except Exception:
        return 0
