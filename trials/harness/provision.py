"""What a trial will give each supplier, worked out before anything is scored.

The design of a trial (trials.design) asks, per criterion, whether the trial is
large enough to show it. Before a run that needs the crossings each supplier will
see: a simulated trial's come from the true paths of every planned shift (only
the people's movements are simulated, no device, so it costs a fraction of a
run); a real trial's from its wearers' reference tracks, labelled by the surveyed
fence. Both drive the simulator's truth, so they live in the harness; the table
built from them is design's.
"""

from __future__ import annotations

from collections import Counter

from devices.sim.generate import label_excursions, true_paths
from loading.site_files import load_site
from trials.definition import Trial
from trials.design import Provision, provision_before_a_run
from trials.harness.live import reference_truth
from trials.schedule import plan


def provided_by_plan(trial: Trial) -> dict[str, Provision]:
    """What each supplier will be exposed to, from the true paths of every planned shift.

    It is what `trackfence trial plan` prints and `trial run` checks first; a real
    trial's crossings are counted on its reference tracks instead.
    """
    if trial.is_real:
        return _provided_by_references(trial)
    sites: dict = {}
    crossings: dict[str, Counter] = {s.key: Counter() for s in trial.suppliers}
    hours: Counter = Counter()
    device_shifts: Counter = Counter()
    expected: Counter = Counter()
    for shift in plan(trial):
        site_file = shift.scenario.site_file
        if site_file not in sites:
            sites[site_file] = load_site(site_file)
        _, excursions = true_paths(shift.scenario, sites[site_file])
        per_worker = Counter(int(w) for w in excursions.worker)
        for w, worker in enumerate(shift.scenario.workers):
            crossings[worker.supplier][shift.scenario_key] += per_worker.get(w, 0)
        for d in shift.devices:
            rate = _approved_rate(trial.supplier(d.supplier), d.firmware, d.configuration)
            hours[d.supplier] += shift.duration_s / 3600
            device_shifts[d.supplier] += 1
            expected[d.supplier] += max(1, round(shift.duration_s * rate))
    return provision_before_a_run(trial, crossings, hours, device_shifts, expected)


def _approved_rate(supplier, firmware: str, configuration: dict) -> float:
    """The fix rate on the supplier's certificate, else the one the device is set to."""
    rate = supplier.approved_configuration.get("fix_rate_hz")
    if not isinstance(rate, int | float) or isinstance(rate, bool) or rate <= 0:
        rate = supplier.profile(firmware, configuration).fix_rate_hz
    return float(rate)


def _provided_by_references(trial: Trial) -> dict[str, Provision]:
    """A real trial's provision: the crossings on each wearer's reference track, counted
    once for every device the wearer wore (before any fix is scored)."""
    sites: dict = {}
    crossings: dict[str, Counter] = {s.key: Counter() for s in trial.suppliers}
    hours: Counter = Counter()
    device_shifts: Counter = Counter()
    expected: Counter = Counter()
    for shift in trial.shifts:
        if shift.site_file not in sites:
            sites[shift.site_file] = load_site(shift.site_file)
        duration_s = (shift.end_ms - shift.start_ms) / 1000
        week = (shift.date - trial.start_date).days // 7 + 1
        for wearer in shift.wearers:
            *_, truth = reference_truth(
                wearer.reference, sites[shift.site_file], shift.start_ms, shift.end_ms
            )
            found = int(label_excursions(truth).start_ms.size)
            for device_id in wearer.devices:
                key, name = device_id.split("/", 1)
                supplier = trial.supplier(key)
                device = next(d for d in supplier.devices if d.id == name)
                crossings[key][shift.scenario] += found
                hours[key] += duration_s / 3600
                device_shifts[key] += 1
                rate = _approved_rate(supplier, *device.on_week(week))
                expected[key] += max(1, round(duration_s * rate))
    return provision_before_a_run(trial, crossings, hours, device_shifts, expected)
