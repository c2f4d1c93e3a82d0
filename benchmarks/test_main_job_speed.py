"""The main job end to end beside the bare MQTT floor, same run, and its full-size projection.

Ours: `trackfence trial run` on the example ten-week trial, as `make demo` runs it:
simulate every shift, decide every message through ingest's pipeline, keep everything
in SQLite, score and write every report. Its rate is the fixes it carried divided by
the whole wall time, reports included.

The floor: a bare paho QoS 1 publisher -> Mosquitto -> paho subscriber (acknowledging
each message), carrying the same number of native fixes, nothing decided or kept.
Carrying a trial's fixes through a broker to a service can go no faster than this,
so the ratio says what deciding in-process buys.

The projection: a full-size trial (3 suppliers x 10 devices x 8-hour shifts x 50
shifts, at 1 and at 10 fixes a second) at the rate measured here, on this machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict

from benchmarks.conftest import NOTES, RESULTS
from tests.conftest import ROOT
from tests.servers import Mosquitto
from trials.manifest import load_manifest

PY = sys.executable
ENV = dict(os.environ, PYTHONPATH=str(ROOT))
EXAMPLE = ROOT / "examples" / "trials" / "three-suppliers.toml"
#: A full-size trial: suppliers x devices each x shift seconds x shifts.
FULL_SIZE_DEVICE_SECONDS = 3 * 10 * 8 * 3600 * 50


def bare_floor(port: int, n: int) -> float:
    """Messages a second through a bare QoS 1 publisher -> broker -> subscriber."""
    counter = subprocess.Popen(
        [PY, "-m", "benchmarks.mqtt_peers", "count", str(port), str(n)],
        env=ENV, cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert counter.stdout is not None
    assert counter.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    subprocess.run(
        [PY, "-m", "benchmarks.mqtt_peers", "publish", str(port), "0", str(n), "50", "0"],
        env=ENV, cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    seen = int(counter.stdout.readline().split()[0])
    elapsed = time.perf_counter() - started
    counter.wait(30)
    assert seen == n
    return n / elapsed


def main_job(out) -> dict:
    """`trackfence trial run` on the example trial, reports and all; (fixes, seconds)."""
    started = time.perf_counter()
    subprocess.run(
        [PY, "-m", "trackfence.cli", "trial", "run", str(EXAMPLE), "--out", str(out), "--replace"],
        env=ENV, cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    phases = load_manifest(out).phases
    return {"fixes": phases.fixes, "seconds": seconds, "phases": asdict(phases)}


def test_main_job_end_to_end_against_the_bare_broker_floor(benchmark, tmp_path):
    broker = Mosquitto().start()
    try:
        ours = benchmark.pedantic(main_job, args=(tmp_path / "trial",), rounds=1, iterations=1)
        floor = bare_floor(broker.port, ours["fixes"])
    finally:
        broker.close()
    rate = ours["fixes"] / ours["seconds"]
    RESULTS["ours: main job end to end (trial run, reports)"] = rate
    RESULTS["peer: bare paho QoS 1 -> Mosquitto -> paho"] = floor
    hours = {
        hz: FULL_SIZE_DEVICE_SECONDS * hz / rate / 3600 for hz in (1, 10)
    }
    benchmark.extra_info.update({"ours": ours, "floor_per_s": floor, "projected_hours": hours})
    NOTES["main job"] = (
        f"main job end to end: {ours['fixes']:,} fixes in {ours['seconds']:.1f} s = "
        f"{rate:,.0f} fixes/s; bare QoS 1 broker floor {floor:,.0f} messages/s; ratio "
        f"{rate / floor:.2f}x. Phases: {ours['phases']}. A full-size trial (3 suppliers x 10 "
        f"devices x 8 h x 50 shifts) projects to {hours[1]:.1f} h at 1 Hz, "
        f"{hours[10]:.1f} h at 10 Hz"
    )
    assert rate > 0.5 * floor  # a loose guard; the ratio is the figure that matters
