"""From a scenario to true paths, labelled excursions and the fixes each device reports.

All workers share one 10 Hz time grid, so their paths are arrays (workers × samples)
and every step below is one vectorised pass: movement, truth in site metres,
geofence evaluation of the truth, excursion labelling, and per supplier profile,
the device's sampling, error, losses, duplicates, latency and reordering.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from devices.sim.noise import gauss_markov, sigma_for_cep50
from devices.sim.profiles import SupplierProfile
from devices.sim.scenario import (
    REACQUIRE_S,
    STRUCTURE_EFFECTS,
    Scenario,
    ScenarioError,
    Worker,
)
from devices.sim.track import TrackFrame
from geofence.site import Site

TRUTH_HZ = 10.0
#: A person's sway about their intended path (m) and how slowly it wanders (s).
SWAY_SIGMA_M = 0.05
SWAY_CORRELATION_S = 3.0
#: Radius holding 68 % of a circular Gaussian error, in units of the per-axis σ.
RADIUS68_PER_SIGMA = float(np.sqrt(-2 * np.log(0.32)))


@dataclass(frozen=True)
class Truth:
    """Each worker's true path at TRUTH_HZ: arrays of shape (workers, samples)."""

    t_ms: np.ndarray  # (samples,) milliseconds from the scenario start
    along_m: np.ndarray  # metres along the scenario's line
    x_m: np.ndarray
    y_m: np.ndarray
    inside: np.ndarray  # in the safe zone
    distance_m: np.ndarray  # signed distance to its edge (+ inside)
    reader_x_m: np.ndarray  # the scenario's RFID readers, site metres
    reader_y_m: np.ndarray


@dataclass(frozen=True)
class Excursions:
    """True excursions out of the safe zone (one row each)."""

    worker: np.ndarray  # index into scenario.workers
    start_ms: np.ndarray  # first truth sample outside
    end_ms: np.ndarray  # first truth sample back inside (or the end of the scenario)
    depth_m: np.ndarray  # furthest outside the edge during the excursion


@dataclass(frozen=True)
class Fixes:
    """What the devices sent, in the order they sent it."""

    worker: np.ndarray
    seq: np.ndarray
    true_ms: np.ndarray  # when the position was true
    fix_ms: np.ndarray  # the time the device stamped (its own clock)
    send_ms: np.ndarray  # when it was published
    x_m: np.ndarray  # reported position, site metres
    y_m: np.ndarray
    accuracy_m: np.ndarray  # the accuracy the device reported
    fix_type: np.ndarray  # object array: what the device said its fix was
    reader: np.ndarray  # object array: the RFID reader that read the tag ("" for GNSS)
    battery_pct: np.ndarray
    lat: np.ndarray  # reported position, ETRS89
    lon: np.ndarray

    def __len__(self) -> int:
        return int(self.seq.size)


@dataclass(frozen=True)
class Simulation:
    scenario: Scenario
    truth: Truth
    excursions: Excursions
    fixes: Fixes


_FIX_RANK = {"3D": 0, "SBAS": 1, "DGPS": 1, "RTK float": 2, "RTK fixed": 3}


def _structure_effects(
    scenario: Scenario,
    p: SupplierProfile,
    rng: np.random.Generator,
    along: np.ndarray,
    t_s: np.ndarray,
    devices: int,
) -> tuple[np.ndarray, ...]:
    """Per fix: error multiplier, multipath bias (x, y), no-fix mask, and reported fix type."""
    shape = along.shape
    worse = np.ones(shape)
    bias_x = np.zeros(shape)
    bias_y = np.zeros(shape)
    outage = np.zeros(shape, dtype=bool)
    rank = np.full(shape, _FIX_RANK[p.fix_type])
    in_tunnel = np.zeros(shape, dtype=bool)
    for structure in scenario.structures:
        factor, bias_m, degraded, no_fix = STRUCTURE_EFFECTS[structure.kind]
        under = (along >= structure.from_along_m) & (along <= structure.to_along_m)
        if no_fix:
            outage |= under
            in_tunnel |= under
            continue
        worse = np.where(under, np.maximum(worse, factor), worse)
        # multipath: a bias in one direction per device while it is under the structure
        angle = rng.uniform(0, 2 * np.pi, devices)[:, None]
        bias_x += np.where(under, bias_m * np.cos(angle), 0.0)
        bias_y += np.where(under, bias_m * np.sin(angle), 0.0)
        if degraded is not None:
            rank = np.where(under, np.minimum(rank, _FIX_RANK[degraded]), rank)
    if in_tunnel.any():  # after a tunnel the receiver takes a while to settle
        last_in = np.maximum.accumulate(np.where(in_tunnel, t_s, -np.inf), axis=1)
        reacquiring = ~in_tunnel & (t_s - last_in < REACQUIRE_S)
        worse = np.where(reacquiring, np.maximum(worse, 3.0), worse)
        rank = np.where(reacquiring, np.minimum(rank, _FIX_RANK["DGPS"]), rank)
    names = np.array(["3D", "DGPS", "RTK float", "RTK fixed"], dtype=object)
    fix_type = names[rank]
    if p.fix_type == "SBAS":
        fix_type = np.where(fix_type == "DGPS", "SBAS", fix_type)
    return worse, bias_x, bias_y, outage, fix_type


def reader_positions(scenario: Scenario, site: Site) -> tuple[np.ndarray, np.ndarray]:
    """Site metres of the scenario's RFID readers."""
    frame = TrackFrame.from_vertices(_line(scenario, site))
    along = np.array([r.along_m for r in scenario.rfid_readers], dtype=np.float64)
    lateral = np.array([r.lateral_m for r in scenario.rfid_readers], dtype=np.float64)
    return frame.to_xy(along, lateral)


def _rfid_reads(
    scenario: Scenario,
    p: SupplierProfile,
    rng: np.random.Generator,
    workers: np.ndarray,
    truth: Truth,
) -> dict[str, np.ndarray]:
    """Reads of each tag by the nearest reader in range, at the read rate, less misses."""
    readers = scenario.rfid_readers
    if not readers:
        raise ScenarioError("[[rfid_reader]]", "an RFID supplier needs readers on the site")
    rx, ry = truth.reader_x_m, truth.reader_y_m
    step = max(1, round(TRUTH_HZ / p.fix_rate_hz))
    idx = np.arange(0, truth.x_m.shape[1], step)
    x = truth.x_m[workers][:, idx]
    y = truth.y_m[workers][:, idx]
    distance = np.hypot(x[..., None] - rx, y[..., None] - ry)  # (tags, reads, readers)
    nearest = distance.argmin(axis=2)
    closest = np.take_along_axis(distance, nearest[..., None], axis=2)[..., 0]
    ranges = np.array([r.range_m for r in readers])
    misses = np.array([r.miss_rate for r in readers])
    read = (closest <= ranges[nearest]) & (rng.random(nearest.shape) >= misses[nearest])
    latency = np.maximum(0.0, rng.normal(p.latency_ms, p.latency_jitter_ms, nearest.shape))
    tag, k = np.nonzero(read)
    seq = np.cumsum(read, axis=1)[tag, k] - 1  # sequence numbers count actual reads
    r = nearest[tag, k]
    t_ms = truth.t_ms[idx][k]
    ids = np.array([reader.reader_id for reader in readers], dtype=object)
    return {
        "worker": workers[tag],
        "seq": seq.astype(np.int64),
        "true_ms": t_ms,
        "fix_ms": t_ms + round(p.clock_offset_ms),
        "send_ms": t_ms + np.round(latency[tag, k]).astype(np.int64),
        "x_m": rx[r],
        "y_m": ry[r],
        "accuracy_m": ranges[r],
        "fix_type": np.full(tag.size, "RFID", dtype=object),
        "reader": ids[r],
        "battery_pct": np.clip(100.0 - p.battery_drain_pct_per_h * t_ms / 3.6e6, 0.0, 100.0),
    }


def _rng(seed: int, *names: str) -> np.random.Generator:
    """A stream per (seed, name…): adding a worker does not change another's noise."""
    return np.random.default_rng([seed, *(zlib.crc32(n.encode()) for n in names)])


def _knots(worker: Worker, line_length_m: float, where: str) -> tuple[np.ndarray, ...]:
    t, along, lateral = [0.0], [worker.along_m], [worker.lateral_m]
    if not 0 <= worker.along_m <= line_length_m:
        raise ScenarioError(f"{where}.along_m", f"is off the line (0 to {line_length_m:.0f} m)")
    for k, step in enumerate(worker.steps):
        a, lat = along[-1], lateral[-1]
        if step.do == "walk":
            a += step.distance_m
            duration = abs(step.distance_m) / step.speed_mps
            if not 0 <= a <= line_length_m:
                raise ScenarioError(f"{where}.steps[{k}]", "walks off the end of the line")
        elif step.do == "stand":
            duration = step.seconds
        elif step.do == "drift":
            lat, duration = step.to_lateral_m, step.seconds
        else:  # move
            duration = abs(step.to_lateral_m - lat) / step.speed_mps
            lat = step.to_lateral_m
        t.append(t[-1] + duration)
        along.append(a)
        lateral.append(lat)
    return np.array(t), np.array(along), np.array(lateral)


def simulate(scenario: Scenario, site: Site) -> Simulation:
    truth, excursions = true_paths(scenario, site)
    fixes = _fixes(scenario, site, truth)
    return Simulation(scenario, truth, excursions, fixes)


def true_paths(scenario: Scenario, site: Site) -> tuple[Truth, Excursions]:
    """Every worker's true path and labelled excursions, without any device (cheap: a
    trial's design counts its crossings from these before anything is run)."""
    line = _line(scenario, site)
    frame = TrackFrame.from_vertices(line)
    n = round(scenario.duration_s * TRUTH_HZ)
    t_s = np.arange(n) / TRUTH_HZ
    along = np.empty((len(scenario.workers), n))
    lateral = np.empty_like(along)
    for w, worker in enumerate(scenario.workers):
        kt, ka, kl = _knots(worker, frame.length_m, f"worker {worker.name!r}")
        along[w] = np.interp(t_s, kt, ka)
        lateral[w] = np.interp(t_s, kt, kl)
    # one sway per person: every device a person wears follows the same true path
    people = list(dict.fromkeys(w.person for w in scenario.workers))
    person = np.array([people.index(w.person) for w in scenario.workers])
    a = np.exp(-1 / (TRUTH_HZ * SWAY_CORRELATION_S))
    sway = gauss_markov(_rng(scenario.seed, "sway"), (2 * len(people), n), SWAY_SIGMA_M, a)
    along += sway[0::2][person]
    lateral += sway[1::2][person]
    x, y = frame.to_xy(along.ravel(), lateral.ravel())
    ev = site.evaluate(x, y)
    # the truth is scored, not decided: its distance is exact beyond the index's horizon
    distance = ev.distance_m.copy()
    far = np.flatnonzero(np.abs(distance) >= site.index.horizon_m)
    distance[far] = site.exact_distance_m(x[far], y[far])
    shape = along.shape
    truth = Truth(
        np.round(t_s * 1000).astype(np.int64),
        along,
        x.reshape(shape),
        y.reshape(shape),
        ev.inside.reshape(shape),
        distance.reshape(shape),
        *reader_positions(scenario, site),
    )
    return truth, label_excursions(truth)


def _line(scenario: Scenario, site: Site) -> np.ndarray:
    if not site.lines:
        raise ScenarioError("[scenario].site", "the site has no lines to measure along")
    if scenario.line is None:
        return site.lines[0].centreline_m
    for line in site.lines:
        if line.name == scenario.line:
            return line.centreline_m
    names = ", ".join(repr(line.name) for line in site.lines)
    raise ScenarioError("[scenario].line", f"no line {scenario.line!r} at the site ({names})")


def label_excursions(truth: Truth) -> Excursions:
    """Every run of truth samples outside the safe zone: start, end and depth."""
    outside = ~truth.inside
    edges = np.diff(outside.astype(np.int8), axis=1, prepend=0, append=0)
    w_start, i_start = np.nonzero(edges == 1)
    _, i_end = np.nonzero(edges == -1)  # same order: row-major, and runs alternate
    t_ms = np.r_[truth.t_ms, truth.t_ms[-1] + int(1000 / TRUTH_HZ)]
    depth = np.array(
        [-truth.distance_m[w, s:e].min() for w, s, e in zip(w_start, i_start, i_end, strict=True)]
    )
    return Excursions(w_start, t_ms[i_start], t_ms[i_end], depth.reshape(-1))


def _fixes(scenario: Scenario, site: Site, truth: Truth) -> Fixes:
    parts = []
    keys = sorted({w.profile_key for w in scenario.workers}, key=lambda k: (k[0], k[1] or ""))
    for key in keys:  # devices of one supplier and firmware version are generated together
        workers = [i for i, w in enumerate(scenario.workers) if w.profile_key == key]
        profile = scenario.profile(scenario.workers[workers[0]])
        name = key[0] if key[1] is None else f"{key[0]}@{key[1]}"
        parts.append(_supplier_fixes(scenario, name, profile, np.array(workers), truth))
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.lexsort((merged["seq"], merged["send_ms"]))
    merged = {k: v[order] for k, v in merged.items()}
    lat, lon = site.frame.to_etrs89(merged["x_m"], merged["y_m"])
    return Fixes(**merged, lat=lat, lon=lon)


def _supplier_fixes(
    scenario: Scenario, supplier: str, p: SupplierProfile, workers: np.ndarray, truth: Truth
) -> dict[str, np.ndarray]:
    rng = _rng(scenario.seed, "supplier", supplier)
    period_s = 1.0 / p.fix_rate_hz
    if p.is_rfid:
        return _rfid_reads(scenario, p, rng, workers, truth)
    n = int(scenario.duration_s * p.fix_rate_hz)
    phase = rng.random(workers.size) * period_s  # devices are not in step with each other
    t_s = phase[:, None] + np.arange(n)[None, :] * period_s
    t_s = np.minimum(t_s, scenario.duration_s - 1 / TRUTH_HZ)
    # truth at the fix times, linear between 10 Hz samples
    pos = t_s * TRUTH_HZ
    i0 = np.floor(pos).astype(np.int64)
    frac = pos - i0
    i1 = np.minimum(i0 + 1, truth.x_m.shape[1] - 1)
    rows = workers[:, None]
    true_x = truth.x_m[rows, i0] * (1 - frac) + truth.x_m[rows, i1] * frac
    true_y = truth.y_m[rows, i0] * (1 - frac) + truth.y_m[rows, i1] * frac
    true_along = truth.along_m[rows, i0] * (1 - frac) + truth.along_m[rows, i1] * frac
    sigma = sigma_for_cep50(p.cep50_m)
    a = np.exp(-period_s / p.correlation_s)
    error = gauss_markov(rng, (2 * workers.size, n), sigma, a)
    worse, bias_x, bias_y, outage, fix_type = _structure_effects(
        scenario, p, rng, true_along, t_s, workers.size
    )
    x = true_x + error[0::2] * worse + bias_x
    y = true_y + error[1::2] * worse + bias_y
    seq = np.broadcast_to(np.arange(n), (workers.size, n))
    true_ms = np.round(t_s * 1000).astype(np.int64)
    latency = np.maximum(0.0, rng.normal(p.latency_ms, p.latency_jitter_ms, (workers.size, n)))
    send = true_ms + np.round(latency).astype(np.int64)
    late = rng.random((workers.size, n)) < p.reorder_rate
    send = np.where(late, send + int(period_s * 1000) + 1, send)  # overtaken by the next fix
    keep = (rng.random((workers.size, n)) >= p.drop_rate) & ~outage
    twice = keep & (rng.random((workers.size, n)) < p.duplicate_rate)
    # devices notice degradation only partly: reported accuracy grows as its square root
    reported = sigma * RADIUS68_PER_SIGMA * p.reported_accuracy_factor * np.sqrt(worse)
    out = {
        "worker": np.broadcast_to(workers[:, None], (workers.size, n)),
        "seq": seq,
        "true_ms": true_ms,
        "fix_ms": true_ms + round(p.clock_offset_ms),
        "send_ms": send,
        "x_m": x,
        "y_m": y,
        "accuracy_m": reported,
        "fix_type": fix_type,
        "reader": np.full((workers.size, n), "", dtype=object),
        "battery_pct": np.clip(100.0 - p.battery_drain_pct_per_h * t_s / 3600, 0.0, 100.0),
    }
    kept = {k: v[keep] for k, v in out.items()}
    again = {k: v[twice] for k, v in out.items()}
    again["send_ms"] = again["send_ms"] + 1  # the duplicate follows the original
    return {k: np.concatenate([kept[k], again[k]]) for k in out}
