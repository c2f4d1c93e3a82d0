"""Scoring one simulation without a store: the devices decided offline, then measured.

`decide_offline` takes a simulation's fixes through the same pure core the live
service uses (frame conversion, geofence, breach state machine), so a run can be
scored without a broker or a store; `score_run` accepts alert times from anywhere
(offline, or read from the store after a live run). A simulation is the
simulator's (devices.sim), so this lives in the harness; what it measures with is
trials.metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devices.sim.generate import Simulation
from geofence.breach import BreachConfig, DeviceStates, EventKind, replay
from geofence.site import Site
from trials.metrics import Accuracy, Availability, Detection, accuracy, availability, detection


@dataclass(frozen=True)
class DeviceScore:
    worker: str
    device: str
    supplier: str
    firmware: str
    accuracy: Accuracy
    detection: Detection
    availability: Availability


def decide_offline(sim: Simulation, site: Site, config: BreachConfig) -> dict[int, np.ndarray]:
    """Breach alert times (run ms, fix clock) per worker, as the live service would decide."""
    f = sim.fixes
    ev = site.evaluate_latlon(f.lat, f.lon)
    result = replay(
        DeviceStates.new(len(sim.scenario.workers)),
        f.worker,
        f.fix_ms,
        f.seq,
        ev.distance_m,
        ev.fence,
        f.accuracy_m,
        config,
    )
    breach = result.events.kind == EventKind.BREACH.code
    return {
        w: result.events.time_ms[breach & (result.events.device == w)]
        for w in range(len(sim.scenario.workers))
    }


def score_run(
    sim: Simulation, alerts_ms: dict[int, np.ndarray], *, lead_s: float = 5.0
) -> list[DeviceScore]:
    """Accuracy, detection and availability of every device of a run."""
    t, f, ex = sim.truth, sim.fixes, sim.excursions
    scores = []
    for w, worker in enumerate(sim.scenario.workers):
        profile = sim.scenario.profile(worker)
        mine = f.worker == w
        located = mine & (f.fix_type != "RFID")  # a read places a tag at its reader: not a fix
        theirs = ex.worker == w
        scores.append(
            DeviceScore(
                worker=worker.name,
                device=worker.device,
                supplier=worker.supplier,
                firmware=profile.firmware,
                accuracy=accuracy(
                    f.fix_ms[located], f.x_m[located], f.y_m[located], t.t_ms, t.x_m[w], t.y_m[w]
                ),
                detection=detection(
                    ex.start_ms[theirs],
                    ex.end_ms[theirs],
                    alerts_ms.get(w, np.zeros(0, np.int64)),
                    lead_s=lead_s,
                ),
                availability=availability(f.true_ms[mine], 0, int(t.t_ms[-1]), profile.fix_rate_hz),
            )
        )
    return scores
