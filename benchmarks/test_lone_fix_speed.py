"""A lone fix through the whole decision: the live path when it is quiet.

`Pipeline.decide` of one native message (decode, time sanity, frame, fence index, state
machine, the records and the alert), one fix at a time on plain Python numbers (ours),
against the same message through the vectorised path on arrays of one (the peer: what
every fix cost before). Each fix moves its device across the safe zone's edge, so every
one is decided, changes state and is alerted. Target: ≤ 50 µs (median).
"""

from __future__ import annotations

import json
import select
import socket
import statistics
import time

import pytest

import ingest.pipeline as pipeline_module
from benchmarks.conftest import NOTES
from geofence.breach import BreachConfig
from ingest.deployment import Deployment
from ingest.pipeline import Inbound, Pipeline
from loading.site_files import load_site
from tests.conftest import ROOT
from tests.devices import site_latlon

T0 = 1_780_000_000_000
DEVICES = 200
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def lone_fixes():
    """Messages from 200 devices in turn, each fix of a device on the other side of the edge."""
    site = load_site(ROOT / "examples" / "sites" / "ecm1-kings-cross.toml")
    inside, outside = site_latlon(site, 410.0, -2.0), site_latlon(site, 410.0, -6.0)
    messages = []
    for k in range(20_000):
        device = f"d{k % DEVICES}"
        lat, lon = outside if (k // DEVICES) % 2 else inside
        body = {"device": device, "seq": k, "time_ms": T0 + k, "lat": lat, "lon": lon,
                "accuracy_m": 0.1, "fix_type": "RTK fixed"}  # fmt: skip
        messages.append(
            Inbound(f"trackside/v1/bench/{device}/fix", json.dumps(body).encode(), T0 + k + 3)
        )
    config = BreachConfig(clearing_dwell_s=0, clearing_margin_m=0, warning_margin_m=0,
                          warning_hysteresis_m=0, accuracy_factor=1)  # fmt: skip
    return site, messages, config


def _decide_each_alone(site, messages, config) -> None:
    pipeline = Pipeline(Deployment({site.name: site}, [("*", site.name)]), config)
    clock = lambda: T0  # noqa: E731
    alerts = 0
    for message in messages:
        alerts += len(pipeline.decide([message], clock).alerts)
    assert alerts == len(messages) - DEVICES  # every fix after a device's first is alerted


@pytest.mark.parametrize("path", ["ours: one at a time", "peer: vectorised, arrays of one"])
def test_lone_fix_decision(benchmark, lone_fixes, path, monkeypatch):
    site, messages, config = lone_fixes
    if path.startswith("peer"):
        monkeypatch.setattr(pipeline_module, "ONE_AT_A_TIME_MAX", 0)
    part = messages[:2000] if path.startswith("peer") else messages
    benchmark.pedantic(_decide_each_alone, args=(site, part, config), rounds=3, iterations=1)
    TIMES[path] = benchmark.stats.stats.median / len(part) * 1e6
    if len(TIMES) == 2:
        ours, peer = TIMES["ours: one at a time"], TIMES["peer: vectorised, arrays of one"]
        NOTES["lone_decision"] = (
            f"a lone fix decided (Pipeline.decide, alerted): ours {ours:.1f} µs, through arrays "
            f"of one {peer:.1f} µs: {peer / ours:.1f}x"
        )
        assert ours <= 50, NOTES["lone_decision"]


#: The live worker blocks on its socket between fixes: at 1,000 fixes/s about 1 ms.
IDLE_GAP_S = 0.001


def _per_call_us(work, items, gap_s: float) -> float:
    """Median µs of `work(item)`, each call timed alone, after blocking `gap_s` on a socket
    that never becomes readable (as the worker's select does between fixes)."""
    quiet, _other = socket.socketpair()
    times = []
    try:
        for item in items:
            if gap_s:
                select.select([quiet], [], [], gap_s)
            began = time.perf_counter_ns()
            work(item)
            times.append(time.perf_counter_ns() - began)
    finally:
        quiet.close()
        _other.close()
    return statistics.median(times) / 1000


def test_a_lone_fix_after_an_idle_gap(lone_fixes):
    """What the same decision costs when the core has been idle for a millisecond before it.

    Inside the live worker the median lone fix costs two to three times what it does here
    in a loop. This measures why, with nothing else running: the same `Pipeline.decide`,
    each call timed alone, back to back and after a 1 ms wait on a socket. The control
    is `json.loads` of the same payloads (C code, no state of ours), timed the same two
    ways: if it slows by the same factor, the cost is the machine waking (caches, the
    virtual CPU's halt and resume), not a cache-hungry path of ours.
    """
    site, messages, config = lone_fixes
    clock = lambda: T0  # noqa: E731
    figures = {}
    for gap_s in (0.0, IDLE_GAP_S):
        pipeline = Pipeline(Deployment({site.name: site}, [("*", site.name)]), config)
        for message in messages[:DEVICES]:  # each device's first fix: alerts nothing
            pipeline.decide([message], clock)
        part = messages[DEVICES : DEVICES + 4000]
        alerts: list[int] = []
        decided = _per_call_us(
            lambda m: alerts.append(len(pipeline.decide([m], clock).alerts)),  # noqa: B023
            part,
            gap_s,
        )
        assert sum(alerts) == len(part)  # each one decided, changed state and was alerted
        parsed = _per_call_us(lambda m: json.loads(m.payload), part, gap_s)
        figures[gap_s] = (decided, parsed)
    (hot, hot_control), (idle, idle_control) = figures[0.0], figures[IDLE_GAP_S]
    NOTES["lone_after_idle"] = (
        f"a lone fix, each call timed alone: back to back {hot:.1f} µs, after {IDLE_GAP_S * 1e3:g} "
        f"ms idle {idle:.1f} µs ({idle / hot:.1f}x); control json.loads of the payload: "
        f"{hot_control:.2f} µs, after idle {idle_control:.2f} µs "
        f"({idle_control / hot_control:.1f}x)"
    )
