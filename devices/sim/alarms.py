"""A simulated device's own alarm: the decision a supplier's device makes for itself.

A real wearable does not wait for trackfence: the device (or its supplier's cloud)
decides from its own fixes when to vibrate, and reports that alarm on its alarm
topic. A supplier profile with `own_alarm = "on"` does the same here: the device
runs a breach state machine (the same pure core, with the supplier's own
settings) on its own fixes, against the fence it was configured with, and each
breach and clear is raised `own_alarm_delay_ms` after the fix that caused it.
The alarm carries the device's own clock and the position it decided on, so a
late decision or a wrong dashboard position shows in the trial, beside
trackfence's decision on the same fixes.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from devices.sim.generate import Simulation
from geofence.breach import BreachConfig, DeviceStates, EventKind, event_kind, replay
from geofence.site import Site


@dataclass(frozen=True)
class OwnAlarms:
    """Every own alarm the simulated devices raised, in the order they were raised."""

    worker: np.ndarray
    kind: np.ndarray  # object array of EventKind: BREACH or CLEAR
    alarm_ms: np.ndarray  # on the device's clock, from the scenario's start
    send_ms: np.ndarray  # when it was published
    x_m: np.ndarray  # the position the device decided on (the simulation's frame)
    y_m: np.ndarray
    lat: np.ndarray  # ...as it reports it (ETRS89)
    lon: np.ndarray

    def __len__(self) -> int:
        return int(self.worker.size)

    @classmethod
    def empty(cls) -> OwnAlarms:
        z = np.zeros(0)
        return cls(z.astype(np.int64), z.astype(object), z.astype(np.int64),
                   z.astype(np.int64), z, z, z, z)  # fmt: skip


def own_alarms(
    sim: Simulation,
    site: Site,
    fences: dict[str, Site] | None = None,
    workers: Collection[int] | None = None,
) -> OwnAlarms:
    """The own alarms of every device whose profile decides for itself (`own_alarm = "on"`).

    A device decides on the fence its supplier configured (`fences`, by supplier), or
    on the site's own; positions are in `site`'s frame, as the simulation's are.
    `workers`: only these workers' devices (by index).
    """
    f = sim.fixes
    scenario = sim.scenario
    deciding = [w for w, worker in enumerate(scenario.workers)
                if scenario.profile(worker).own_alarm == "on"
                and (workers is None or w in workers)]  # fmt: skip
    if not deciding or not len(f):
        return OwnAlarms.empty()
    parts = []
    for w in deciding:
        profile = scenario.profile(scenario.workers[w])
        mine = np.flatnonzero((f.worker == w) & (f.fix_type != "RFID"))
        if mine.size == 0:
            continue
        # each distinct fix once, in the device's own order (it does not see duplicates)
        _, first = np.unique(f.seq[mine], return_index=True)
        mine = mine[np.sort(first)]
        fence = (fences or {}).get(scenario.workers[w].supplier, site)
        x, y = f.x_m[mine], f.y_m[mine]
        if fence is not site:  # its own copy of the fence, in its own frame
            x, y = fence.frame.from_etrs89(f.lat[mine], f.lon[mine])
        ev = fence.evaluate(x, y)
        config = BreachConfig(accuracy_factor=profile.own_alarm_accuracy_factor)
        result = replay(
            DeviceStates.new(1),
            np.zeros(mine.size, dtype=np.int64),
            f.fix_ms[mine],
            f.seq[mine],
            ev.distance_m,
            ev.fence,
            f.accuracy_m[mine],
            config,
        )
        events = result.events
        raised = (events.kind == EventKind.BREACH.code) | (events.kind == EventKind.CLEAR.code)
        at = np.searchsorted(f.fix_ms[mine], events.time_ms[raised])
        at = np.clip(at, 0, mine.size - 1)
        delay = round(profile.own_alarm_delay_ms)
        parts.append(
            {
                "worker": np.full(int(raised.sum()), w, dtype=np.int64),
                "kind": np.array([event_kind(k) for k in events.kind[raised]], dtype=object),
                "alarm_ms": events.time_ms[raised].astype(np.int64) + delay,
                "send_ms": f.send_ms[mine][at] + delay,
                "x_m": f.x_m[mine][at],
                "y_m": f.y_m[mine][at],
                "lat": f.lat[mine][at],
                "lon": f.lon[mine][at],
            }
        )
    if not parts:
        return OwnAlarms.empty()
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(merged["send_ms"], kind="stable")
    return OwnAlarms(**{k: v[order] for k, v in merged.items()})
