"""Trial design: can this trial demonstrate its acceptance criteria at all?

A criterion is judged on its confidence bound (trials.verdict), so a trial too
small for a criterion cannot pass it, however good the devices are: zero misses
in n crossings show detection >= R at confidence C only when n >= ln(1-C)/ln(R)
(299 for 0.99 at 95 %, 2,995 for 0.999). A trial is designed from this, not found
short of it afterwards. For each criterion this module says what it needs (in
crossings, device-hours, values or device-shifts), what the trial provides per
supplier, and whether the criterion can be demonstrated even by a perfect device.

The provision comes from the plan before a run (trials.harness.provision: the
true paths of every shift, no device simulated, or a real trial's reference
tracks) or from the scored rows after one (`provided_by_rows`); the table is the
same.

Pure: the counts in, the table out.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from trials.definition import CRITERIA, Trial
from trials.figures import MIN_CLUSTERS
from trials.intervals import values_needed, zero_event_exposure, zero_failure_trials
from trials.rows import Rows


@dataclass(frozen=True)
class Provision:
    """What one supplier's devices are exposed to over the whole trial."""

    crossings: int
    crossings_by_scenario: dict[str, int]
    alerted_crossings: int  # crossings detected by a fresh alert (before a run: all of them)
    alerts: int  # breach alerts in the log (before a run: one a crossing, at best)
    shared_crossings: int  # crossings every supplier saw
    device_hours: float
    device_shifts: int
    expected_fixes: int  # at the approved fix rate


@dataclass(frozen=True)
class Need:
    criterion: str
    what: str
    needs: str  # in words, e.g. "299 crossings, none missed"
    unit: str  # what is counted: crossings, device-hours, …
    needed: float
    provided: dict[str, float]  # supplier -> how many the trial gives
    demonstrable: dict[str, bool]


@dataclass(frozen=True)
class Design:
    confidence: float
    needs: tuple[Need, ...]
    provisions: dict[str, Provision]
    untested_scenarios: dict[str, list[str]] = field(default_factory=dict)  # no crossing

    def shortfalls(self, suppliers: list[str] | None = None) -> list[str]:
        """Every criterion some of `suppliers` (default all) cannot demonstrate, in words;
        each line names only those suppliers."""
        chosen = list(self.provisions) if suppliers is None else suppliers
        out = []
        for n in self.needs:
            short = [s for s in chosen if not n.demonstrable[s]]
            if short:
                have = ", ".join(f"{s} {_count(n.provided[s])}" for s in short)
                out.append(f"{n.what}: needs {n.needs}; the trial gives {have} {n.unit}")
        for supplier, scenarios in self.untested_scenarios.items():
            if scenarios and supplier in chosen:
                out.append(f"{supplier}: no true crossing in {', '.join(scenarios)}")
        return out


def _count(value: float) -> str:
    return f"{value:,.1f}" if value != int(value) else f"{int(value):,}"


def _rule(name: str, limit: float, confidence: float) -> tuple[str, float, str, str]:
    """(what is counted, how many, in words, unit) for one criterion at its limit."""
    p95 = values_needed(95, confidence)
    if name == "detection_rate":
        n = zero_failure_trials(limit, confidence) if limit < 1 else math.inf
        return "crossings", n, f"{_count(n)} crossings with none missed", "crossings"
    if name == "supplier_agreement":
        n = zero_failure_trials(limit, confidence) if limit < 1 else math.inf
        words = f"{_count(n)} crossings seen by every supplier"
        return "shared_crossings", n, words, "crossings"
    if name in ("time_to_alert_p95_s", "alert_timing_spread_s"):
        words = f"{p95} crossings alerted (a p95 of fewer values has no upper bound)"
        return "alerted_crossings", p95, words, "alerted crossings"
    if name == "breach_log_offset_p95_m":
        words = f"{p95} alerts in the breach log (a p95 of fewer has no upper bound)"
        return "alerts", p95, words, "alerts"
    if name == "false_alerts_per_device_hour":
        hours = zero_event_exposure(limit, confidence) if limit > 0 else math.inf
        words = f"{_count(round(hours, 1))} device-hours with no false alert"
        return "device_hours", hours, words, "device-hours"
    if name == "availability":
        n = zero_failure_trials(limit, confidence) if limit < 1 else math.inf
        words = f"{_count(n)} expected fixes, none lost, over {MIN_CLUSTERS}+ device-shifts"
        # fixes within a shift are not independent: the device-shifts are checked as well
        return "expected_fixes", n, words, "expected fixes"
    if name == "fence_alignment_m":
        return "device_shifts", 0, "the configured fence and the survey (geometry)", "device-shifts"
    # percentiles of fix errors and shares of time: a bootstrap over whole device-shifts
    words = f"{MIN_CLUSTERS} device-shifts (whole shifts are resampled)"
    return "device_shifts", MIN_CLUSTERS, words, "device-shifts"


def design(trial: Trial, provisions: dict[str, Provision]) -> Design:
    """What each criterion needs at the trial's confidence, and what each supplier gets."""
    c = trial.scoring.confidence
    needs = []
    for name, limit in trial.criteria.items():
        attribute, needed, words, unit = _rule(name, limit, c)
        provided = {s: float(getattr(p, attribute)) for s, p in provisions.items()}
        ok = {
            s: provided[s] >= needed
            and (name != "availability" or provisions[s].device_shifts >= MIN_CLUSTERS)
            for s in provisions
        }
        needs.append(Need(name, CRITERIA[name][0], words, unit, float(needed), provided, ok))
    untested = {
        s: sorted(k for k in trial.scenario_keys if not p.crossings_by_scenario.get(k))
        for s, p in provisions.items()
    }
    return Design(c, tuple(needs), provisions, untested)


def provided_by_rows(trial: Trial, rows: Rows) -> dict[str, Provision]:
    """What each supplier was exposed to in a scored run."""
    ex, ds = rows.excursions, rows.device_shifts
    seen_by: dict[tuple, set] = {}
    for key in zip(ex.shift, ex.wearer, ex.start_ms, ex.supplier, strict=True):
        seen_by.setdefault(key[:3], set()).add(key[3])
    everyone = {s.key for s in trial.suppliers}
    shared = sum(suppliers == everyone for suppliers in seen_by.values())
    out = {}
    for s in trial.suppliers:
        emask = ex.where(supplier=s.key)
        dmask = ds.where(supplier=s.key)
        out[s.key] = Provision(
            crossings=int(emask.sum()),
            crossings_by_scenario=dict(Counter(str(k) for k in ex.scenario[emask])),
            alerted_crossings=int(ex.detected[emask].astype(bool).sum()),
            alerts=int(rows.alerts.where(supplier=s.key).sum()),
            shared_crossings=shared,
            device_hours=float(ds.hours[dmask].sum()),
            device_shifts=int(dmask.sum()),
            expected_fixes=int(ds.expected[dmask].sum()),
        )
    return out


def provision_before_a_run(
    trial: Trial,
    crossings: dict[str, Counter],
    hours: Counter,
    device_shifts: Counter,
    expected: Counter,
) -> dict[str, Provision]:
    """Each supplier's provision before a run: what a perfect device would give (every
    crossing alerted and logged; every person wears every supplier's device, so every
    crossing is seen by all)."""
    return {
        s.key: Provision(
            crossings=sum(crossings[s.key].values()),
            crossings_by_scenario=dict(crossings[s.key]),
            alerted_crossings=sum(crossings[s.key].values()),
            alerts=sum(crossings[s.key].values()),
            shared_crossings=min(sum(c.values()) for c in crossings.values()),
            device_hours=float(hours[s.key]),
            device_shifts=int(device_shifts[s.key]),
            expected_fixes=int(expected[s.key]),
        )
        for s in trial.suppliers
    }


def design_table(d: Design) -> str:
    """The design as plain text for the terminal: per criterion, its need and each supplier."""
    lines = []
    for n in d.needs:
        given = " · ".join(
            f"{s} {_count(round(n.provided[s], 1))}{'' if n.demonstrable[s] else ' (SHORT)'}"
            for s in d.provisions
        )
        lines += [n.what, f"    needs {n.needs}", f"    gives {given} {n.unit}", ""]
    for s, p in d.provisions.items():
        by = ", ".join(f"{k} {v}" for k, v in sorted(p.crossings_by_scenario.items()))
        lines.append(
            f"{s}: {p.crossings} true crossings ({by or 'none'}); "
            f"{p.device_hours:.1f} device-hours over {p.device_shifts} device-shifts"
        )
    untested = [f"{s}: {', '.join(v)}" for s, v in d.untested_scenarios.items() if v]
    if untested:
        lines.append("scenarios that test no detection: " + "; ".join(untested))
    return "\n".join(lines)
