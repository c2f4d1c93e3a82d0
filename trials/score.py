"""Scoring a whole trial: every device-shift read back from the store, against its truth.

`score_trial` takes what the store reader collected (trials.collect) and the
run's manifest (trials.manifest), and computes everything the report says: the
figures of every slice (supplier, scenario, firmware), each criterion's verdict
on its bounds, the NRA24-05 checks, the ranking and the readiness. Pure: the
collected rows in, the result out (it reads the sites' files, nothing else).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from geofence.site import Site
from trials.checks import (
    AGREEMENT,
    CRITERION_OF_CHECK,
    FENCE,
    Check,
    alarm_timing,
    breach_log_position,
    configuration_drift,
    fence_alignment,
    find_check,
    firmware_differences,
    own_alarms,
    supplier_agreement,
)
from trials.collect import Collected
from trials.definition import Trial
from trials.design import Design, design, provided_by_rows
from trials.feedback import Feedback, read_feedback
from trials.figures import Figures, OwnAlarmFigures, figures, own_alarm_figures
from trials.manifest import Manifest
from trials.rows import Rows, build_rows
from trials.verdict import SAFETY, Rank, Verdict, judge, rank


@dataclass(frozen=True)
class Readiness:
    trl: int
    rationale: str


@dataclass
class TrialResult:
    """Everything the report says about a trial, computed once."""

    trial: Trial
    manifest: Manifest
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

    def check(self, code: str) -> Check:
        """The NRA24-05 check with this code (trials.checks: FENCE, AGREEMENT, …)."""
        return find_check(self.checks, code)

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


def score_trial(trial: Trial, manifest: Manifest, collected: Collected) -> TrialResult:
    """Score a collected trial run: figures per slice, criteria, NRA24-05 checks, readiness."""
    scoring = trial.scoring
    rows = build_rows(
        collected.worn, lead_s=scoring.alert_lead_s, clear_allowance_s=scoring.clear_allowance_s
    )
    suppliers = [s.key for s in trial.suppliers]
    sliced = _slices(trial, rows)
    spread = trial.criteria.get("alert_timing_spread_s", 3.0)
    own = {
        s: own_alarm_figures(rows, supplier=s, spread_limit_s=spread, confidence=scoring.confidence)
        for s in suppliers
    }
    checks = _checks(trial, manifest, rows, sliced.overall, own)
    verdicts = {
        s: judge(sliced.overall[s], trial.criteria, _check_figures(checks, s)) for s in suppliers
    }
    return TrialResult(
        trial=trial,
        manifest=manifest,
        rows=rows,
        overall=sliced.overall,
        by_scenario=sliced.by_scenario,
        by_firmware=sliced.by_firmware,
        by_scenario_firmware=sliced.by_scenario_firmware,
        verdicts=verdicts,
        ranking=rank(verdicts, sliced.overall),
        checks=checks,
        repeat_consistency={s: repeat_consistency(rows, s) for s in suppliers},
        weekly={s: weekly(rows, s, trial.weeks) for s in suppliers},
        feedback=read_feedback(trial.feedback, suppliers),
        missing=list(collected.missing) + _not_scored(trial, rows),
        readiness={s: readiness(verdicts[s], checks, s) for s in suppliers},
        design=design(trial, provided_by_rows(trial, rows)),
        own_alarms=own,
    )


def _not_scored(trial: Trial, rows: Rows) -> list[str]:
    """Each supplier x scenario the trial names with nothing stored: missing data, said so
    (never scored as zero)."""
    ds = rows.device_shifts
    present = {(s, sc) for s, sc in zip(ds.supplier, ds.scenario, strict=True)}
    return [
        f"{s.key} on {sc}: no stored data; not scored"
        for s in trial.suppliers
        for sc in trial.scenario_keys
        if (s.key, sc) not in present
    ]


@dataclass(frozen=True)
class _Slices:
    """The figures of every slice the report prints: overall, by scenario, by firmware, and
    by both (the last without bounds: that table prints none)."""

    overall: dict[str, Figures]
    by_scenario: dict[tuple[str, str], Figures]
    by_firmware: dict[tuple[str, str], Figures]
    by_scenario_firmware: dict[tuple[str, str, str], Figures]


def _slices(trial: Trial, rows: Rows) -> _Slices:
    """Each supplier's figures, overall and by every scenario and firmware it was worn on
    (a slice with no device-shift is left out, and named as missing elsewhere)."""
    ds = rows.device_shifts
    c = trial.scoring.confidence
    suppliers = [s.key for s in trial.suppliers]
    present = {(s, sc) for s, sc in zip(ds.supplier, ds.scenario, strict=True)}
    versions = sorted({(s, f) for s, f in zip(ds.supplier, ds.firmware, strict=True)})
    triples = sorted(set(zip(ds.supplier, ds.scenario, ds.firmware, strict=True)))
    return _Slices(
        overall={s: figures(rows, supplier=s, confidence=c) for s in suppliers},
        by_scenario={
            (s, sc): figures(rows, supplier=s, scenario=sc, confidence=c)
            for s in suppliers
            for sc in trial.scenario_keys
            if (s, sc) in present
        },
        by_firmware={
            (s, f): figures(rows, supplier=s, firmware=f, confidence=c) for s, f in versions
        },
        by_scenario_firmware={
            (s, sc, f): figures(rows, supplier=s, scenario=sc, firmware=f, intervals=False)
            for s, sc, f in triples
        },
    )


def _checks(trial: Trial, manifest: Manifest, rows: Rows, overall: dict[str, Figures],
            own: dict[str, OwnAlarmFigures]) -> list[Check]:  # fmt: skip
    """The NRA24-05 checks, in the order the report lists them; each is found by its code."""
    from loading.site_files import load_site

    sites: dict[str, Site] = {}

    def load(path) -> Site:
        key = str(path)
        if key not in sites:
            sites[key] = load_site(path)
        return sites[key]

    return [
        fence_alignment(trial, load, manifest.site_files),
        alarm_timing(trial, rows, overall),
        firmware_differences(trial, rows),
        configuration_drift(trial, rows, manifest.configurations),
        breach_log_position(trial, rows, overall),
        supplier_agreement(trial, rows),
        own_alarms(trial, rows, own),
    ]


def _check_figures(checks: list[Check], supplier: str) -> dict[str, tuple]:
    """What two criteria are judged on that a check measures: the fence's worst offset
    (geometry: no sampling error, so its interval is the point) and the share of shared
    crossings not at fault, with its bounds."""
    fence = find_check(checks, FENCE).for_supplier(supplier).figures
    offset = fence.get("worst_offset_m", math.nan)
    agreed = find_check(checks, AGREEMENT).for_supplier(supplier).figures
    return {
        "fence_alignment_m": (offset, (offset, offset)),
        "supplier_agreement": (
            agreed.get("agreement", math.nan),
            agreed.get("agreement_ci", (math.nan, math.nan)),
        ),
    }


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
        if c.for_supplier(supplier).status == "fail"
        and CRITERION_OF_CHECK.get(c.code) not in judged
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
