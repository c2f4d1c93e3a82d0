"""Scoring: a run's devices against the ground truth of their wearers, and a whole trial.

`decide_offline` takes a run's fixes through the same pure core the live service
uses (frame conversion, geofence, breach state machine), so a run can be scored
without a broker; `score_run` accepts alert times from anywhere (offline, or read
from the store after a live run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from devices.sim.generate import Simulation
from geofence.breach import BreachConfig, DeviceStates, EventKind, replay
from geofence.site import Site
from trials.checks import (
    CRITERION_OF_CHECK,
    Check,
    alarm_timing,
    breach_log_position,
    configuration_drift,
    fence_alignment,
    firmware_differences,
    own_alarms,
    supplier_agreement,
)
from trials.collect import Collected
from trials.definition import Trial
from trials.design import Design, design, provided_by_rows
from trials.feedback import Feedback, read_feedback
from trials.figures import Figures, OwnAlarmFigures, figures, own_alarm_figures
from trials.metrics import Accuracy, Availability, Detection, accuracy, availability, detection
from trials.rows import Rows, build_rows
from trials.verdict import SAFETY, Rank, Verdict, judge, rank


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
    breach = result.events.kind == EventKind.BREACH
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


# ------------------------------------------------------------------ a whole trial, from the store


@dataclass(frozen=True)
class Readiness:
    trl: int
    rationale: str


@dataclass
class TrialResult:
    """Everything the report says about a trial, computed once."""

    trial: Trial
    manifest: dict
    rows: Rows
    overall: dict[str, Figures]
    by_scenario: dict[tuple[str, str], Figures]
    by_firmware: dict[tuple[str, str], Figures]
    by_scenario_firmware: dict[tuple[str, str, str], Figures]
    verdicts: dict[str, list[Verdict]]
    ranking: list[Rank]
    checks: list[Check]
    repeat_consistency: dict[str, float]
    weekly: dict[str, list[dict]]
    feedback: Feedback | None
    missing: list[str]
    readiness: dict[str, Readiness]
    design: Design  # what each criterion needed, and what the run gave each supplier
    own_alarms: dict[str, OwnAlarmFigures]  # the devices' own alarms, where they report them

    def accepted(self, supplier: str) -> bool:
        """Every criterion demonstrated met, and no NRA24-05 check failed."""
        return self.overall_verdict(supplier) == "PASS"

    def overall_verdict(self, supplier: str) -> str:
        """PASS (every criterion shown met, no check failed), FAIL (any criterion shown
        missed or any check failed) or NOT DEMONSTRATED (the trial cannot tell yet)."""
        failed_check = any(
            r.supplier == supplier and r.status == "fail" for c in self.checks for r in c.results
        )
        statuses = {v.status for v in self.verdicts[supplier]}
        if "fail" in statuses or failed_check:
            return "FAIL"
        if statuses == {"pass"}:
            return "PASS"
        return "NOT DEMONSTRATED"


def score_trial(trial: Trial, manifest: dict, collected: Collected) -> TrialResult:
    """Score a collected trial run: figures per slice, criteria, NRA24-05 checks, readiness."""
    from loading.site_files import load_site

    scoring = trial.scoring
    rows = build_rows(
        collected.worn, lead_s=scoring.alert_lead_s, clear_allowance_s=scoring.clear_allowance_s
    )
    ds = rows.device_shifts
    suppliers = [s.key for s in trial.suppliers]
    scenarios = trial.scenario_keys
    present = {(s, sc) for s, sc in zip(ds.supplier, ds.scenario, strict=True)}
    missing = list(collected.missing)
    for s in suppliers:
        for sc in scenarios:
            if (s, sc) not in present:
                missing.append(f"{s} on {sc}: no stored data; not scored")
    c = scoring.confidence
    overall = {s: figures(rows, supplier=s, confidence=c) for s in suppliers}
    by_scenario = {
        (s, sc): figures(rows, supplier=s, scenario=sc, confidence=c)
        for s in suppliers
        for sc in scenarios
        if (s, sc) in present
    }
    versions = sorted({(s, f) for s, f in zip(ds.supplier, ds.firmware, strict=True)})
    by_firmware = {
        (s, f): figures(rows, supplier=s, firmware=f, confidence=c) for s, f in versions
    }
    triples = sorted(set(zip(ds.supplier, ds.scenario, ds.firmware, strict=True)))
    by_scenario_firmware = {
        (s, sc, f): figures(rows, supplier=s, scenario=sc, firmware=f, intervals=False)
        for s, sc, f in triples
    }
    sites: dict = {}

    def load(path) -> Site:
        key = str(path)
        if key not in sites:
            sites[key] = load_site(path)
        return sites[key]

    sites_used = sorted({s["site_file"] for s in manifest["shifts"]})
    configurations = {
        d["configuration_hash"]: d["configuration"]
        for shift in manifest["shifts"]
        for d in shift["devices"]
    }
    fences = fence_alignment(trial, load, sites_used)
    agreement = supplier_agreement(trial, rows)
    spread = trial.criteria.get("alert_timing_spread_s", 3.0)
    own = {
        s: own_alarm_figures(rows, supplier=s, spread_limit_s=spread, confidence=c)
        for s in suppliers
    }
    checks = [
        fences,
        alarm_timing(trial, rows, overall),
        firmware_differences(trial, rows),
        configuration_drift(trial, rows, configurations),
        breach_log_position(trial, rows, overall),
        agreement,
        own_alarms(trial, rows, own),
    ]
    extra = {}
    for s in suppliers:
        offset = _finding(fences, s).figures.get("worst_offset_m", math.nan)
        agreed = _finding(agreement, s).figures
        extra[s] = {
            "fence_alignment_m": (offset, (offset, offset)),  # geometry: no sampling error
            "supplier_agreement": (
                agreed.get("agreement", math.nan),
                agreed.get("agreement_ci", (math.nan, math.nan)),
            ),
        }
    verdicts = {s: judge(overall[s], trial.criteria, extra[s]) for s in suppliers}
    return TrialResult(
        trial=trial,
        manifest=manifest,
        rows=rows,
        overall=overall,
        by_scenario=by_scenario,
        by_firmware=by_firmware,
        by_scenario_firmware=by_scenario_firmware,
        verdicts=verdicts,
        ranking=rank(verdicts, overall),
        checks=checks,
        repeat_consistency={s: repeat_consistency(rows, s) for s in suppliers},
        weekly={s: weekly(rows, s, trial.weeks) for s in suppliers},
        feedback=read_feedback(trial.feedback, suppliers),
        missing=missing,
        readiness={s: readiness(verdicts[s], checks, s) for s in suppliers},
        design=design(trial, provided_by_rows(trial, rows)),
        own_alarms=own,
    )


def _finding(check: Check, supplier: str):
    return next(r for r in check.results if r.supplier == supplier)


def repeat_consistency(rows: Rows, supplier: str) -> float:
    """Share of repeated movements (scenario, person, n-th excursion) alarmed alike each time."""
    ex = rows.excursions
    mine = ex.where(supplier=supplier)
    outcomes: dict[str, set[bool]] = {}
    counts: dict[str, int] = {}
    for key, hit in zip(ex.repeat_key[mine], ex.detected[mine], strict=True):
        outcomes.setdefault(key, set()).add(bool(hit))
        counts[key] = counts.get(key, 0) + 1
    repeated = [k for k, n in counts.items() if n > 1]
    if not repeated:
        return math.nan
    return sum(len(outcomes[k]) == 1 for k in repeated) / len(repeated)


def weekly(rows: Rows, supplier: str, weeks: int) -> list[dict]:
    """Availability and time without protection, week by week (weeks with no shift omitted)."""
    ds = rows.device_shifts
    out = []
    for week in range(1, weeks + 1):
        m = ds.where(supplier=supplier) & (ds.week == week)
        if not m.any():
            continue
        expected = int(ds.expected[m].sum())
        out.append(
            {
                "week": week,
                "shifts": len(set(ds.shift[m])),
                "availability": int(ds.received[m].sum()) / expected if expected else math.nan,
                "unprotected_s": float(ds.unprotected_s[m].sum()),
            }
        )
    return out


def readiness(verdicts: list[Verdict], checks: list[Check], supplier: str) -> Readiness:
    """The technology readiness the trial's evidence supports (product acceptance asks TRL 6).

    TRL 7 (prototype demonstrated in an operational environment): every criterion
    shown met and no NRA24-05 check failed. TRL 6 (demonstrated in a relevant
    environment): the safety function shown (trials.verdict.SAFETY: crossings
    detected, promptly, by alarms with few false starts that stop when the wearer
    is safe), with other findings to close. Otherwise TRL 5: the
    safety function itself is not yet shown. "Shown" means on the confidence
    bound, not the point estimate.
    """
    by_status: dict[str, list[str]] = {}
    for v in verdicts:
        by_status.setdefault(v.status, []).append(v.what)
    judged = {v.criterion for v in verdicts}
    check_fails = [
        c.title
        for c in checks
        if _finding(c, supplier).status == "fail" and CRITERION_OF_CHECK.get(c.code) not in judged
    ]  # a check judged as a criterion is said once, under the criterion
    # the safety function: excursions alerted, by alarms that stop when the wearer is safe
    # (a device in breach all shift "detects" nothing and protects no one)
    safety_shown = all(v.status == "pass" for v in verdicts if v.criterion in SAFETY)
    problems = [f"{w} (fails)" for w in by_status.get("fail", [])] + check_fails
    problems += [f"{w} (not demonstrated)" for w in by_status.get("not demonstrated", [])]
    problems += [f"{w} (not measured)" for w in by_status.get("not measured", [])]
    if not problems:
        return Readiness(7, "every acceptance criterion shown met and no NRA24-05 check failed")
    if safety_shown:
        return Readiness(
            6,
            "the safety function is shown (crossings detected promptly, by alarms that mean "
            "something and stop); to close: "
            + "; ".join(problems),
        )
    return Readiness(5, "the safety function is not yet shown: " + "; ".join(problems))
