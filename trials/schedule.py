"""The trial's schedule: which scenario is worked on which shift, and who wears what.

Shifts are spread evenly over the trial's weeks, every scenario's first repeat
before any second, so each scenario is seen early and late in the trial (a
firmware update in week 6 then shows up as a before and after). In a shift
every worker wears one device of each supplier, rotated between shifts so each
device is worn by different people on different days.

Pure: no clock and no I/O beyond reading the scenario files the trial names.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from devices.sim.scenario import Scenario, Worker
from trials.definition import Trial, TrialError, TrialScenario, config_hash
from trials.manifest import WornDevice


@dataclass(frozen=True)
class Shift:
    index: int
    run_id: str  # names the shift's truth in the store
    scenario_key: str
    scenario_name: str
    repeat: int  # 0-based
    date: dt.date
    week: int  # 1-based
    night: bool
    start_ms: int  # UTC epoch ms when the shift starts
    duration_s: float
    seed: int
    devices: tuple[WornDevice, ...]
    scenario: Scenario  # the scenario as worked on this shift: every device, every worker

    @property
    def end_ms(self) -> int:
        return self.start_ms + round(self.duration_s * 1000)


def plan(trial: Trial) -> list[Shift]:
    """Every shift of the trial, in date order."""
    order: list[tuple[TrialScenario, int]] = [
        (sc, r)
        for r in range(max(sc.repeats for sc in trial.scenarios))
        for sc in trial.scenarios
        if r < sc.repeats
    ]
    days = trial.weeks * 7
    shifts = []
    for i, (sc, repeat) in enumerate(order):
        date = trial.start_date + dt.timedelta(days=i * days // len(order))
        night = sc.scenario.night
        clock = trial.night_shift_start if night else trial.day_shift_start
        start = dt.datetime.combine(date, clock, tzinfo=dt.UTC)
        week = (date - trial.start_date).days // 7 + 1
        scenario, devices = _worked(trial, sc, i, week)
        seed = sc.scenario.seed + 1009 * repeat
        shifts.append(
            Shift(
                index=i,
                run_id=f"{date.isoformat()}-{sc.key}-r{repeat + 1}",
                scenario_key=sc.key,
                scenario_name=sc.scenario.name,
                repeat=repeat,
                date=date,
                week=week,
                night=night,
                start_ms=int(start.timestamp() * 1000),
                duration_s=sc.scenario.duration_s,
                seed=seed,
                devices=devices,
                scenario=replace(scenario, seed=seed),
            )
        )
    return shifts


def _worked(
    trial: Trial, sc: TrialScenario, shift: int, week: int
) -> tuple[Scenario, tuple[WornDevice, ...]]:
    """The scenario with every person wearing one device of each supplier."""
    people = list(dict.fromkeys(w.person for w in sc.scenario.workers))
    workers, worn, profiles = [], [], {}
    for supplier in trial.suppliers:
        if len(supplier.devices) < len(people):
            raise TrialError(
                f"scenario {sc.key} has {len(people)} workers but supplier {supplier.key} "
                f"has {len(supplier.devices)} device(s): each worker wears one"
            )
    for k, person in enumerate(people):
        template = next(w for w in sc.scenario.workers if w.person == person)
        for supplier in trial.suppliers:
            device = supplier.devices[(shift + k) % len(supplier.devices)]
            firmware, configuration = device.on_week(week)
            digest = config_hash(configuration)
            key = f"{firmware}#{digest}"  # behaviour depends on firmware and configuration
            profiles[(supplier.key, key)] = supplier.profile(firmware, configuration)
            device_id = f"{supplier.key}/{device.id}"
            workers.append(
                Worker(
                    name=f"{person} ({supplier.key})",
                    device=device_id,
                    along_m=template.along_m,
                    lateral_m=template.lateral_m,
                    steps=template.steps,
                    firmware=key,
                    wearer=person,
                )
            )
            worn.append(
                WornDevice(device_id, supplier.key, person, firmware, configuration, digest)
            )
    scenario = replace(
        sc.scenario,
        workers=tuple(workers),
        suppliers={s.key: s.simulated for s in trial.suppliers},
        firmware_profiles=profiles,
    )
    return scenario, tuple(worn)
