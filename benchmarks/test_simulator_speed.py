"""Simulating a shift: 30 devices × 6 hours × 10 Hz (6.5 million fixes) in under 30 s.

Beside it, the obvious peer for the costly part: the same Gauss-Markov error and
fix sampling written as a per-fix Python loop, on a sample, as a rate.
"""

from __future__ import annotations

import math
import random
import time

from benchmarks.conftest import NOTES, RESULTS, record
from devices.sim.generate import simulate
from devices.sim.scenario import scenario_from_mapping
from loading.site_files import load_site
from tests.conftest import ROOT

SITE = ROOT / "examples" / "sites" / "ecm1-kings-cross.toml"
WORKERS = 30
HOURS = 6
PEER = "peer: per-fix Python loop (error + sampling)"
OURS_ERROR = "ours: error + sampling, vectorised"


def shift_scenario():
    workers = []
    for i in range(WORKERS):
        workers.append(
            {
                "name": f"w{i}",
                "device": f"acme/d{i:02d}",
                "along_m": 420 + 10 * i,
                "lateral_m": -3.0,
                "steps": [
                    {"do": "walk", "distance_m": 60, "speed_mps": 1.2},
                    {"do": "stand", "seconds": 3600},
                    {"do": "drift", "to_lateral_m": 1.0, "seconds": 30},
                    {"do": "move", "to_lateral_m": -3.0, "speed_mps": 1.0},
                    {"do": "walk", "distance_m": -60, "speed_mps": 1.0},
                ],
            }
        )
    return scenario_from_mapping(
        {
            "scenario": {"name": "shift", "site": str(SITE), "duration_s": HOURS * 3600, "seed": 1},
            "supplier": {
                "acme": {
                    "fix_rate_hz": 10,
                    "cep50_m": 0.5,
                    "correlation_s": 20,
                    "drop_rate": 0.01,
                    "duplicate_rate": 0.002,
                }
            },
            "worker": workers,
        }
    )


def test_ours_simulate_a_shift(benchmark):
    scenario, site = shift_scenario(), load_site(SITE)
    started = time.perf_counter()
    sim = benchmark.pedantic(simulate, args=(scenario, site), rounds=1, iterations=1)
    seconds = time.perf_counter() - started
    n = len(sim.fixes)
    record("ours: simulate fixes", benchmark, n)
    NOTES["simulator"] = (
        f"simulator: {WORKERS} devices × {HOURS} h × 10 Hz = {n:,} fixes (+ {sim.truth.x_m.size:,} "
        f"truth samples, geofenced) in {seconds:.1f} s (target < 30 s)"
    )
    assert n > 0.98 * WORKERS * HOURS * 3600 * 10


def test_peer_per_fix_python_loop(benchmark):
    """The same error process and sampling, one fix at a time (one device, ten minutes)."""
    n = 6000
    a = math.exp(-0.1 / 20)
    sigma = 0.5 / math.sqrt(2 * math.log(2))
    scale = sigma * math.sqrt(1 - a * a)

    def loop() -> list[tuple[float, float]]:
        rng = random.Random(1)
        ex = ey = 0.0
        out = []
        for k in range(n):
            ex = a * ex + scale * rng.gauss(0, 1)
            ey = a * ey + scale * rng.gauss(0, 1)
            if rng.random() >= 0.01:
                out.append((k * 0.1 + ex, ey))
        return out

    benchmark.pedantic(loop, rounds=3, iterations=1)
    record(PEER, benchmark, n)


def test_ours_error_process_vectorised(benchmark):
    """The same work as the peer loop, as the simulator does it: all devices at once."""
    import numpy as np

    from devices.sim.noise import gauss_markov, sigma_for_cep50

    n = HOURS * 3600 * 10
    a = math.exp(-0.1 / 20)

    def vectorised():
        rng = np.random.default_rng(1)
        error = gauss_markov(rng, (2 * WORKERS, n), sigma_for_cep50(0.5), a)
        keep = rng.random((WORKERS, n)) >= 0.01
        return error[0::2][keep], error[1::2][keep]

    benchmark.pedantic(vectorised, rounds=1, iterations=1)
    record(OURS_ERROR, benchmark, WORKERS * n)
    if PEER in RESULTS:
        NOTES["simulator ratio"] = (
            f"error process and sampling: vectorised / per-fix Python loop = "
            f"{RESULTS[OURS_ERROR] / RESULTS[PEER]:.0f}x"
        )
