"""Decisions per CPU-second per worker as shards are added, beside today's one-group design.

A fleet of four sites (copies of the example site), DEVICES devices each, publishes
RATE fixes/s for SECONDS through a real Mosquitto into TimescaleDB, and each ingest
worker runs as its own process. Two layouts, at the same worker counts:

- **shards**: 1, 2 and 4 shards of two workers (2, 4, 8 workers); a shard protects
  4/N of the sites, and each of its workers decides only those sites' fixes;
- **group** (today's scaling): 2, 4 and 8 workers in one shared group; every worker
  decides every fix and stores its share.

Per worker: its CPU seconds over the stream, less what it spends idle (measured before),
and the fixes it decided. Reported: decisions per CPU-second per worker, fleet fixes per
worker CPU-second (how much of the fleet one worker's core carries), cluster CPU per
fleet fix, and the wall rate. On this 2-core machine the wall rate flattens (the broker,
the database and every worker share two cores); CPU per fix is what projects to a
cluster. The asserts are ratios between layouts of the same run, never timings.

`make bench` runs it; TRACKFENCE_SHARD_BENCH_RATE and _SECONDS change the load.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.conftest import NOTES
from benchmarks.mqtt_peers import SAFE_POSITION, Client
from store import StoreError
from store.timescale import TimescaleStore
from tests.conftest import ROOT
from tests.servers import IngestWorker

SITE_FILE = ROOT / "examples" / "sites" / "ecm1-kings-cross.toml"
SITES = ("a", "b", "c", "d")
DEVICES = 100  # per site
RATE = float(os.environ.get("TRACKFENCE_SHARD_BENCH_RATE", 2000))
SECONDS = float(os.environ.get("TRACKFENCE_SHARD_BENCH_SECONDS", 8))
IDLE_S = 3.0  # each worker's idle CPU is measured this long before the stream
LAYOUTS = [("shards", 1), ("shards", 2), ("shards", 4), ("group", 2), ("group", 4), ("group", 8)]


class Run:
    """One layout: its workers, their settings, the fleet's suppliers, and the store."""

    def __init__(self, folder: Path, broker, db_url: str, layout: str, n: int) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.folder = folder / f"{layout}-{n}-{self.tag}"
        self.folder.mkdir()
        self.supplier = {x: f"b{x}{self.tag}" for x in SITES}
        text = SITE_FILE.read_text()
        name = next(line for line in text.splitlines() if line.startswith("name = "))
        files = {}
        for x in SITES:
            files[x] = self.folder / f"{x}.toml"
            files[x].write_text(text.replace(name, f'name = "Bench {x} {self.tag}"', 1))
        self.decides: list[int] = []  # per worker: how many of the fleet's sites it decides
        self.workers: list[IngestWorker] = []
        if layout == "shards":
            per = len(SITES) // n
            plan = [(f"s{i}", SITES[i * per : (i + 1) * per]) for i in range(n) for _ in range(2)]
        else:
            plan = [(None, SITES)] * n
        for k, (shard, letters) in enumerate(plan):
            lines = [
                "[ingest]",
                f'broker = "{broker.url}"',
                f'db = "{db_url}"',
                f'client_id = "bench-{self.tag}-{k}"',
                f'spool = "{self.folder / f"spool-{k}"}"',
                f'group = "bench-{self.tag}"',
            ] + ([f'shard = "{shard}"'] if shard else [])
            for x in letters:
                lines += ["[[site]]", f'file = "{files[x]}"', f'devices = ["{self.supplier[x]}/*"]']
            lines += ["[decisions]", "lost_after_s = 600"]
            config = self.folder / f"worker-{k}.toml"
            config.write_text("\n".join(lines) + "\n")
            self.workers.append(IngestWorker(config))
            self.decides.append(len(letters))
        self.store = TimescaleStore(db_url)
        self.store.migrate()

    def topics(self) -> list[tuple[str, str]]:
        return [
            (f"trackside/v1/{self.supplier[x]}/d{i:03d}/fix", f"d{i:03d}")
            for x in SITES
            for i in range(DEVICES)
        ]

    def stored(self) -> int:
        try:
            return self.store.counts()["fixes"]
        except StoreError:
            return 0


def _publish(port: int, topics: list[tuple[str, str]], rounds: range, rate: float) -> None:
    """Every device's fixes for `rounds`, device by device, at `rate` fixes/s, QoS 1."""
    client = Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    lat, lon = SAFE_POSITION
    began, sent, infos = time.monotonic(), 0, []
    t0 = time.time_ns() // 1_000_000 - 60_000
    for seq in rounds:
        for topic, device in topics:
            body = json.dumps({"device": device, "seq": seq, "time_ms": t0 + seq * 100,
                               "lat": lat, "lon": lon, "accuracy_m": 0.1})  # fmt: skip
            infos.append(client.publish(topic, body, qos=1))
            sent += 1
            if rate and sent % 50 == 0:
                time.sleep(max(0.0, began + sent / rate - time.monotonic()))
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def _ready(run: Run, port: int) -> None:
    """Until every worker has said it is subscribed (its status, published at once)."""
    seen: dict[str, float] = {}
    client = Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)

    def on_message(c, u, m):
        body = json.loads(m.payload)
        if body.get("online"):
            seen[body["client_id"]] = body.get("time_ms", 0)

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe("trackfence/v1/ingest/+/status", qos=1)
    client.loop_start()
    deadline = time.monotonic() + 120
    ids = {f"bench-{run.tag}-{k}": w for k, w in enumerate(run.workers)}
    while time.monotonic() < deadline and not all(
        seen.get(i, 0) >= w.started_ms for i, w in ids.items()
    ):
        time.sleep(0.1)
    client.disconnect()
    client.loop_stop()
    assert all(seen.get(i, 0) >= w.started_ms for i, w in ids.items()), "workers not up"


def _measure(folder: Path, broker, db, layout: str, n: int) -> dict:
    run = Run(folder, broker, db.fresh_database(), layout, n)
    try:
        for w in run.workers:
            w.start()
        _ready(run, broker.port)
        topics = run.topics()
        # every device once, so each worker has resumed it from the store before measuring
        _publish(broker.port, topics, range(1), 0)
        deadline = time.monotonic() + 120
        while run.stored() < len(topics) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        idle0 = [w.cpu_s() for w in run.workers]
        time.sleep(IDLE_S)
        cpu0 = [w.cpu_s() for w in run.workers]
        idle = [(b - a) / IDLE_S for a, b in zip(idle0, cpu0, strict=True)]
        rounds = max(1, round(RATE * SECONDS / len(topics)))
        total = len(topics) * (rounds + 1)
        began = time.monotonic()
        publisher = threading.Thread(
            target=_publish, args=(broker.port, topics, range(1, rounds + 1), RATE)
        )
        publisher.start()
        while run.stored() < total and time.monotonic() < began + 600:
            time.sleep(0.05)
        wall = time.monotonic() - began
        cpu1 = [w.cpu_s() for w in run.workers]
        publisher.join()
        assert run.stored() == total, f"{layout} {n}: {total - run.stored()} fixes missing"
        fleet = total - len(topics)
        net = [max(1e-6, c1 - c0 - i * wall) for c0, c1, i in zip(cpu0, cpu1, idle, strict=True)]
        decided = [fleet * k // len(SITES) for k in run.decides]
        per_decision = [d / c for d, c in zip(decided, net, strict=True)]
        return {
            "layout": layout,
            "workers": len(run.workers),
            "shards": n if layout == "shards" else 1,
            "fleet_fixes": fleet,
            "wall_rate": fleet / wall,
            "decisions_per_cpu_s_per_worker": sum(per_decision) / len(net),
            "fleet_fixes_per_worker_cpu_s": sum(fleet / c for c in net) / len(net),
            "cluster_cpu_us_per_fleet_fix": 1e6 * sum(net) / fleet,
            "idle_cpu_per_worker": sum(idle) / len(idle),
        }
    finally:
        for w in run.workers:
            w.stop()
        run.store.close()


def test_decisions_per_cpu_second_as_shards_are_added(benchmark, servers, tmp_path):
    broker, db = servers
    rows: list[dict] = []

    def all_layouts() -> None:
        rows.clear()
        rows.extend(_measure(tmp_path, broker, db, layout, n) for layout, n in LAYOUTS)

    benchmark.pedantic(all_layouts, rounds=1, iterations=1)
    table = {(r["layout"], r["workers"]): r for r in rows}
    benchmark.extra_info["layouts"] = rows
    lines = [
        f"shard scaling ({RATE:,.0f} fixes/s offered, {len(SITES) * DEVICES} devices, 4 sites):",
        "  layout       workers  decisions/CPU-s/worker  fleet fixes/worker-CPU-s  "
        "cluster CPU us/fix  wall fixes/s",
    ]
    for r in rows:
        name = f"{r['shards']} shard(s)" if r["layout"] == "shards" else "one group"
        lines.append(
            f"  {name:12s} {r['workers']:7d}  {r['decisions_per_cpu_s_per_worker']:22,.0f}  "
            f"{r['fleet_fixes_per_worker_cpu_s']:24,.0f}  "
            f"{r['cluster_cpu_us_per_fleet_fix']:18,.0f}  {r['wall_rate']:12,.0f}"
        )
    NOTES["shard scaling"] = "\n".join(lines)
    print("\n" + "\n".join(lines))
    one, four = table[("shards", 2)], table[("shards", 8)]
    group2, group8 = table[("group", 2)], table[("group", 8)]
    # sharded, a worker's cost per decision stays flat as shards are added...
    assert four["decisions_per_cpu_s_per_worker"] > 0.6 * one["decisions_per_cpu_s_per_worker"]
    # ...so the fleet's cost per fix stays flat, while in one group it grows with every worker
    assert four["cluster_cpu_us_per_fleet_fix"] < 1.6 * one["cluster_cpu_us_per_fleet_fix"]
    assert group8["cluster_cpu_us_per_fleet_fix"] > 2.0 * group2["cluster_cpu_us_per_fleet_fix"]
    # and a worker of four shards carries more of the fleet than a worker of one group does
    # (1.96-2.6x in runs here; eight workers on two cores make it the noisiest figure, and
    # the eight-worker group's is flattered by falling behind, which batches its fixes)
    assert four["fleet_fixes_per_worker_cpu_s"] > 1.5 * group8["fleet_fixes_per_worker_cpu_s"]
