"""Scoring a trial at ≥ 5 million fixes/s, and the projection for a full trial.

The sample is one shift of the full trial's shape: three suppliers × 10 devices ×
10 Hz × 6 hours (6.48 million fixes, with their 10 Hz truth, excursions and breach
intervals), scored as `trials.score` scores a trial: the four row tables, then the
figures (with bootstrap and Wilson intervals) per supplier, per supplier and
scenario, and per supplier and firmware. Reading the store is not part of it.

Beside it, the obvious peer: the same error figures written as a per-fix Python
loop (interpolate the truth, take the error, sort for the percentiles), on a
sample, as a rate.
"""

from __future__ import annotations

import bisect
import math
import time

import numpy as np

from benchmarks.conftest import NOTES, RESULTS, record
from devices.sim.noise import gauss_markov, sigma_for_cep50
from trials.collect import Worn
from trials.figures import figures
from trials.rows import build_rows

SUPPLIERS = {"acme": 0.05, "gnssco": 0.45, "phones": 1.2}  # CEP50 (m)
DEVICES = 10
RATE_HZ = 10
HOURS = 6
SHIFTS_IN_FULL_TRIAL = 50
OURS = "ours: trial scoring (rows + figures)"
PEER = "peer: per-fix Python loop (error figures)"


def _worn(supplier: str, cep50_m: float, device: int, rng: np.random.Generator) -> Worn:
    n = HOURS * 3600 * RATE_HZ
    t = np.arange(n, dtype=np.int64) * 100
    # in the cess 1.5 m inside the edge, stepping out about once an hour for ~20 s
    lateral = -3.0 + gauss_markov(rng, (1, n), 0.1, math.exp(-1 / 30))[0]
    outs = rng.choice(n - 400, size=HOURS, replace=False)
    for s in outs:
        lateral[s : s + 200] -= 2.5
    distance = lateral + 4.5
    x = np.cumsum(np.full(n, 0.02))
    sigma = sigma_for_cep50(cep50_m)
    error = gauss_markov(rng, (2, n), sigma, math.exp(-0.1 / 20))
    outside = distance < 0
    edges = np.diff(outside.astype(np.int8), prepend=0, append=0)
    starts, ends = t[np.flatnonzero(edges == 1)], t[np.flatnonzero(edges == -1) - 1]
    alerts = starts + 700
    return Worn(
        shift=0,
        run_id="sample",
        scenario=f"scenario-{device % 4}",
        week=1,
        date="2026-06-01",
        night=False,
        device_id=f"{supplier}/{device:02d}",
        supplier=supplier,
        wearer=f"worker {device}",
        firmware="1.0" if device % 2 else "1.1",
        configuration={},
        configuration_hash="sha256:0",
        rate_hz=RATE_HZ,
        approved_rate_hz=RATE_HZ,
        start_ms=0,
        end_ms=int(t[-1]),
        fix_ms=t,
        x_m=x + error[0],
        y_m=lateral + error[1],
        decide_ms=np.full(n, 2.0),
        truth_ms=t,
        truth_x_m=x,
        truth_y_m=lateral,
        truth_distance_m=distance,
        excursion_start_ms=starts,
        excursion_end_ms=ends,
        excursion_depth_m=np.full(starts.size, 1.0),
        alert_ms=alerts,
        alert_end_ms=ends + 5000,
        alert_logged_ms=alerts - 500,
        alert_x_m=np.interp(alerts, t, x),
        alert_y_m=np.interp(alerts, t, lateral),
        publish_ms=np.full(alerts.size, 1.0),
        uplink_ms=np.full(n, 300.0),
        sent_fix_ms=t,
    )


def sample() -> list[Worn]:
    rng = np.random.default_rng(5)
    return [_worn(s, cep, d, rng) for s, cep in SUPPLIERS.items() for d in range(DEVICES)]


def score(worn: list[Worn]) -> int:
    rows = build_rows(worn)
    ds = rows.device_shifts
    for s in SUPPLIERS:
        figures(rows, supplier=s)
        for sc in sorted(set(ds.scenario)):
            figures(rows, supplier=s, scenario=sc)
        for fw in sorted(set(ds.firmware)):
            figures(rows, supplier=s, firmware=fw)
    return len(rows.fixes)


def peer_error_figures(worn: list[Worn], limit: int) -> int:
    """CEP50, R95 and max per supplier, one fix at a time."""
    done = 0
    for w in worn:
        truth_t = w.truth_ms.tolist()
        tx, ty = w.truth_x_m.tolist(), w.truth_y_m.tolist()
        errors = []
        for t, x, y in zip(w.fix_ms[:limit].tolist(), w.x_m[:limit].tolist(),
                           w.y_m[:limit].tolist(), strict=True):  # fmt: skip
            i = min(max(bisect.bisect_left(truth_t, t), 1), len(truth_t) - 1)
            f = (t - truth_t[i - 1]) / (truth_t[i] - truth_t[i - 1])
            ex = x - (tx[i - 1] + f * (tx[i] - tx[i - 1]))
            ey = y - (ty[i - 1] + f * (ty[i] - ty[i - 1]))
            errors.append(math.hypot(ex, ey))
        errors.sort()
        _ = errors[len(errors) // 2], errors[int(0.95 * (len(errors) - 1))], errors[-1]
        done += len(errors)
    return done


def test_trial_scoring_speed(benchmark):
    worn = sample()
    fixes = benchmark.pedantic(score, args=(worn,), rounds=3, iterations=1)
    record(OURS, benchmark, fixes)
    start = time.perf_counter()
    peer_fixes = peer_error_figures(worn, limit=10_000)
    RESULTS[PEER] = peer_fixes / (time.perf_counter() - start)
    rate = RESULTS[OURS]
    full = SHIFTS_IN_FULL_TRIAL * fixes
    NOTES["scoring"] = (
        f"scoring {fixes / 1e6:.2f} M fixes: {rate / 1e6:.1f} M fixes/s "
        f"({rate / RESULTS[PEER]:.0f}x the per-fix loop, which computes less); a full trial "
        f"of {full / 1e6:.0f} M fixes (3 suppliers x 10 devices x 10 Hz x 6 h x 50 shifts) "
        f"would score in about {full / rate:.0f} s (target >= 5 M fixes/s)"
    )
    assert fixes == len(SUPPLIERS) * DEVICES * HOURS * 3600 * RATE_HZ
