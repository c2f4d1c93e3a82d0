"""What a surveyor hands over after a real shift, made from a simulated one.

On a real trial each wearer carries a reference receiver (an RTK pole, a survey
grade receiver) beside the devices under trial, and its track is exported
afterwards as GPX or CSV. A simulated shift knows the truth exactly; this module
writes it as such a reference track (at the receiver's rate, with its own small
error if asked), and the shift log line for each wearer, so the real-trial path
(trials.shiftlog, trials.harness.live) can be exercised and tested end to end from a
simulation.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np

from devices.sim.generate import Simulation
from geofence.site import Site


def reference_track(
    sim: Simulation,
    person: str,
    site: Site,
    start_ms: int,
    *,
    rate_hz: float = 10.0,
    noise_m: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epoch ms, lat, lon) of one person's true path, as their reference receiver logged it."""
    rows = [i for i, w in enumerate(sim.scenario.workers) if w.person == person]
    if not rows:
        raise ValueError(f"no worker {person!r} in the scenario")
    row = rows[0]  # every device a person wears shares the person's true path
    truth = sim.truth
    step = max(1, round(10.0 / rate_hz))  # the truth is at 10 Hz
    x = truth.x_m[row, ::step].copy()
    y = truth.y_m[row, ::step].copy()
    if noise_m > 0:
        rng = np.random.default_rng(seed)
        x += rng.normal(0.0, noise_m / np.sqrt(2), x.size)
        y += rng.normal(0.0, noise_m / np.sqrt(2), y.size)
    lat, lon = site.frame.to_etrs89(x, y)
    return start_ms + truth.t_ms[::step], lat, lon


def write_reference(path: Path, time_ms: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> Path:
    """A reference track as GPX (ISO times, 9 decimals: sub-millimetre) or CSV (epoch ms)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        with path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["time_ms", "lat", "lon"])
            rows = zip(time_ms, lat, lon, strict=True)
            writer.writerows((int(t), f"{a:.10f}", f"{o:.10f}") for t, a, o in rows)
        return path
    points = "\n".join(
        f'<trkpt lat="{a:.10f}" lon="{o:.10f}"><time>{_iso(int(t))}</time></trkpt>'
        for t, a, o in zip(time_ms, lat, lon, strict=True)
    )
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gpx version="1.1" creator="trackfence reference export" '
        'xmlns="http://www.topografix.com/GPX/1/1">\n'
        f"<trk><name>{path.stem}</name><trkseg>\n{points}\n</trkseg></trk>\n</gpx>\n"
    )
    return path


def _iso(ms: int) -> str:
    stamp = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def shift_log_rows(
    sim: Simulation,
    site_file: str,
    scenario: str,
    start_ms: int,
    references: dict[str, str],
    accuracy_m: float,
) -> list[dict[str, str]]:
    """The shift log's CSV rows for one simulated shift: one per person, their devices.

    The shift ends at the last instant the truth knows (a reference must cover it)."""
    end_ms = start_ms + int(sim.truth.t_ms[-1])
    people: dict[str, list[str]] = {}
    for w in sim.scenario.workers:
        people.setdefault(w.person, []).append(w.device)
    return [
        {
            "start": _iso(start_ms),
            "end": _iso(end_ms),
            "site": site_file,
            "scenario": scenario,
            "wearer": person,
            "devices": " ".join(devices),
            "reference": references[person],
            "reference_accuracy_m": f"{accuracy_m:g}",
        }
        for person, devices in people.items()
    ]


def write_shift_log(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
