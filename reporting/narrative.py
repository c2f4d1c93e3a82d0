"""The report in plain words: what each supplier's device would do to a track worker.

A safety task force reads the first page and decides. So the executive summary
says, per supplier, what the device does well, what fails, and what that means on
track, in sentences with units, from the same figures the tables show. The
recommendations are ranked by what a failure would do to a worker:

1. a worker left unwarned (missed or late alerts, a misaligned fence, no fixes);
2. alarms a worker learns to ignore (constant or frequent false alarms);
3. the evidence and the records (accuracy, breach log, configuration, firmware,
   a trial too small to show a criterion).

Each finding is said once: a check that judges the same thing as a criterion
(alarm timing and its spread, the breach log and its offset, the fence and its
alignment, supplier agreement) is folded into that criterion.

Pure: a scored trial in, words out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from trials.checks import (
    AGREEMENT,
    BREACH_LOG,
    CONFIGURATION,
    CRITERION_OF_CHECK,
    FENCE,
    FIRMWARE,
    Check,
    SupplierFinding,
)
from trials.definition import CRITERIA
from trials.design import Design
from trials.figures import Figures
from trials.score import TrialResult
from trials.verdict import FAIL, NOT_DEMONSTRATED, PASS, Verdict

#: Criteria by what their failure does to a worker (recommendation priority).
UNWARNED = {
    "detection_rate",
    "time_to_alert_p95_s",
    "fence_alignment_m",
    "availability",
    "unprotected_share",
    "supplier_agreement",
}
IGNORED = {"false_alarm_share", "false_alerts_per_device_hour", "alert_timing_spread_s"}
PRIORITY_WORDS = {
    1: "a worker left unwarned",
    2: "alarms a worker learns to ignore",
    3: "evidence and records",
}
#: Criteria measured on detected crossings only: with none detected, detection says it all.
DETECTED_ONLY = {"time_to_alert_p95_s", "alert_timing_spread_s"}
#: Above this share of device time in breach while truly safe, the alarm is "constant".
CONSTANT_ALARM = 0.5


def percent(share: float, digits: int = 1) -> str:
    """A share as a percentage, the one way the report prints shares."""
    if not math.isfinite(share):
        return "not measured"
    return f"{100 * share:.{digits}f}\u00a0%"


def _s(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "not measured"


def _when(seconds: float) -> str:
    """A time to alert in words: before or after the crossing, never a negative delay."""
    if not math.isfinite(seconds):
        return "not measured"
    side = "before" if seconds < 0 else "after"
    return f"{abs(seconds):.1f} s {side} the crossing"


@dataclass(frozen=True)
class Finding:
    """One thing to do, for one supplier, ranked by what it would do to a worker."""

    supplier: str
    priority: int
    subject: str  # what it is about, in words
    text: str


def _verdict(result: TrialResult, supplier: str, criterion: str) -> Verdict | None:
    return next((v for v in result.verdicts[supplier] if v.criterion == criterion), None)


def _check(result: TrialResult, code: str, supplier: str) -> SupplierFinding:
    """One supplier's finding in the check with this code (trials.checks: FENCE, …)."""
    return result.check(code).for_supplier(supplier)


def summary(result: TrialResult, supplier: str) -> dict[str, object]:
    """Headline, what it does well, what fails, and what that means on track.

    Said in the order a worker would ask: does it warn me, and in time; does it
    alarm when I am safe; is it where I am; and the records behind it.
    """
    f: Figures = result.overall[supplier]
    said = _Said(result, supplier)
    constant = math.isfinite(f.false_alarm_share) and f.false_alarm_share >= CONSTANT_ALARM
    _warning(said, f)
    _false_alarms(said, f, constant)
    _position(said, f)
    _records(said, f)
    undemonstrated = [v.what for v in result.verdicts[supplier] if v.status == NOT_DEMONSTRATED]
    return {
        "headline": _headline(result, supplier, constant),
        "verdict": result.overall_verdict(supplier),
        "does_well": said.good,
        "fails": said.bad,
        "not_demonstrated": undemonstrated,
    }


@dataclass
class _Said:
    """The sentences of one supplier's summary: what it does well, and what fails."""

    result: TrialResult
    supplier: str
    good: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)

    def by_verdict(self, criterion: str, text: str) -> None:
        """Put a sentence where its verdict says: shown met, shown missed, or neither (then
        it is named among what the trial did not demonstrate, and not here)."""
        v = _verdict(self.result, self.supplier, criterion)
        if v is None or v.status == PASS:
            self.good.append(text)
        elif v.status == FAIL:
            self.bad.append(text)


def _warning(said: _Said, f: Figures) -> None:
    """Does it warn a worker who crosses, and in time: fresh alerts for the true crossings
    (what kept the others from one), late alerts, and a firmware that behaves apart."""
    result, supplier = said.result, said.supplier
    not_warned, crossings = f.excursions - f.detected, f.excursions
    detection = _verdict(result, supplier, "detection_rate")
    timing = (
        f"{_when(f.time_to_alert_p50_s)} at the median and "
        f"{_when(f.time_to_alert_p95_s)} at the 95th percentile"
    )
    if crossings and not_warned == 0:
        text = f"gave a fresh alert for every one of its {crossings} true crossings, {timing}"
        if detection is not None and detection.status != PASS:
            text += ", though with alarms this frequent that is no proof of detection"
            said.bad.append(text)
        else:
            said.good.append(text)
    elif crossings:
        parts = []
        if f.saturated:
            parts.append(f"{f.saturated} while its alarm was already on")
        if f.late:
            parts.append(f"{f.late} alerted only after the wearer was back")
        if f.missed:
            parts.append(f"{f.missed} with no alarm at all")
        said.bad.append(
            f"gave no fresh alert for {not_warned} of {crossings} true crossings "
            f"({', '.join(parts)})"
        )
        if f.detected:
            said.good.append(f"alerted {f.detected} crossings, {timing}")
    tta = _verdict(result, supplier, "time_to_alert_p95_s")
    if tta is not None and tta.status == FAIL:
        said.bad.append(
            f"its alerts are late: {_when(f.time_to_alert_p95_s)} at the 95th percentile, "
            f"against {tta.limit:g} s"
        )
    firmware = _check(result, FIRMWARE, supplier)
    if firmware.status == "found":
        said.bad.append("it " + firmware.finding)


def _false_alarms(said: _Said, f: Figures, constant: bool) -> None:
    """Does it alarm while the worker is safe: an alarm on most of the time, or false
    alerts by the hour."""
    if constant:
        said.bad.append(
            f"its alarm is on {percent(f.false_alarm_share)} of the time while the wearer is "
            f"truly safe (in breach {percent(f.breach_share)} of the time in all)"
        )
    elif math.isfinite(f.false_alerts_per_device_hour):
        said.by_verdict(
            "false_alerts_per_device_hour",
            f"{f.false_alerts} false alerts in {f.device_hours:.1f} device-hours "
            f"({_s(f.false_alerts_per_device_hour, 2)} an hour)",
        )


def _position(said: _Said, f: Figures) -> None:
    """Is it where the worker is, on the fence that was surveyed, set up as certified."""
    result, supplier = said.result, said.supplier
    r95_limit = result.trial.criteria.get("r95_m", math.inf)
    said.by_verdict(
        "r95_m",
        f"positions within {_s(f.r95_m, 2)} m of the truth 95 % of the time"
        + ("" if f.r95_m <= r95_limit else f" (limit {r95_limit:g} m)"),
    )
    fence = _check(result, FENCE, supplier)
    if fence.status == FAIL:
        said.bad.append(
            f"its configured fence is {fence.figures.get('worst_offset_m', math.nan):.1f} m "
            "from the surveyed boundary at worst"
        )
    drift = _check(result, CONFIGURATION, supplier)
    if drift.status == FAIL:
        said.bad.append(
            "devices ran a configuration other than the certified one: " + drift.finding
        )


def _records(said: _Said, f: Figures) -> None:
    """The rest of the evidence: fixes that arrived, the breach log, crossings another
    supplier caught and it did not, and its own alarm, the one the wearer feels."""
    result, supplier = said.result, said.supplier
    said.by_verdict(
        "availability",
        f"{percent(f.availability, 2)} of the fixes its certificate promises arrived "
        f"({_s(f.unprotected_s / 60, 0)} min without protection over {f.device_hours:.0f} "
        "device-hours)",
    )
    log = _check(result, BREACH_LOG, supplier)
    if log.status == FAIL:
        said.bad.append(
            f"its breach log places the wearer {_s(log.figures.get('worst_p95_m', math.nan), 1)}"
            " m (95th percentile) from where they truly were"
        )
    at_fault = _check(result, AGREEMENT, supplier).figures.get("at_fault", 0)
    if at_fault:
        said.bad.append(
            f"on {at_fault} crossings it failed to alarm in time where another supplier's "
            "device did"
        )
    own = result.own_alarms.get(supplier)
    if own is None or not own.device_shifts:
        return  # it reports no alarms of its own: "not reported", never scored as silent
    if own.excursions - own.detected or own.later_than_platform:
        said.bad.append(
            f"its own alarm, the one the wearer feels, gave a fresh alert for {own.detected} "
            f"of {own.excursions} crossings ({_when(own.time_to_alert_p95_s)} at the 95th "
            f"percentile), {own.later_than_platform} of them later than trackfence's "
            "decision on the same fixes"
        )


def _headline(result: TrialResult, supplier: str, constant: bool) -> str:
    """What it means on track, in one sentence: the worst of what it would do to a worker."""
    f = result.overall[supplier]
    not_warned, crossings = f.excursions - f.detected, f.excursions
    false_alerts = _verdict(result, supplier, "false_alerts_per_device_hour")
    tta = _verdict(result, supplier, "time_to_alert_p95_s")
    if constant:
        return (
            "Alarms almost all the time: a worker would be in alarm for most of the shift "
            "and could not tell a real danger from the usual buzz. It does not protect."
        )
    if not_warned and crossings:
        return (
            f"Leaves a worker unwarned on {percent(not_warned / crossings)} of crossings "
            "out of the safe zone."
        )
    if false_alerts is not None and false_alerts.status == FAIL:
        return (
            f"Alarms without cause {_s(f.false_alerts_per_device_hour, 1)} times an hour: a "
            "worker would learn to ignore it, and its alerts at crossings cannot be told from "
            "chance."
        )
    if tta is not None and tta.status == FAIL:
        return (
            f"Warns a worker who strays, but late: {_s(f.time_to_alert_p95_s)} s after the "
            "crossing for the slowest 5 %."
        )
    if result.readiness[supplier].trl >= 6:
        return "Warns a worker who strays from the safe zone, promptly, with alarms that stop."
    return "Has not shown that it protects a worker: see what fails."


def findings(result: TrialResult, suppliers: list[str], plan: Design | None) -> list[Finding]:
    """Recommendations, most dangerous first; each failure once, specific to what was found."""
    out: list[Finding] = []
    criteria = result.trial.criteria
    for s in suppliers:
        f = result.overall[s]
        folded = set()
        for v in result.verdicts[s]:
            if v.status == PASS:
                continue
            priority = 1 if v.criterion in UNWARNED else 2 if v.criterion in IGNORED else 3
            text = _advice(result, s, v, f, plan)
            if text:
                out.append(Finding(s, priority if v.status == FAIL else 3, v.what, text))
            folded |= {code for code, c in CRITERION_OF_CHECK.items() if c == v.criterion}
        tta = _verdict(result, s, "time_to_alert_p95_s")
        if tta is not None and tta.status == FAIL:
            folded.add(FIRMWARE)  # named as the cause of late alerts, once
        for c in result.checks:
            r = c.for_supplier(s)
            said_under_criterion = CRITERION_OF_CHECK.get(c.code) in criteria or c.code == FIRMWARE
            if c.code in folded and said_under_criterion:
                continue
            if r.status not in ("fail", "found"):
                continue
            priority = 1 if c.code in (FENCE, AGREEMENT) else 3
            out.append(Finding(s, priority, c.title, _check_advice(c, r)))
    out.sort(key=lambda x: (x.priority, x.supplier))
    return out


def _advice(result: TrialResult, s: str, v: Verdict, f: Figures, plan: Design | None) -> str:
    unit = {"max": "at most", "min": "at least"}[v.direction]
    what = v.what[0].upper() + v.what[1:]
    limit = f"{unit} {_value(v, v.limit)}"
    if v.status == NOT_DEMONSTRATED:
        need = next((n for n in plan.needs if n.criterion == v.criterion), None) if plan else None
        if need is not None and not need.demonstrable.get(s, True):
            return (
                f"{what}: the trial is too small to show it ({limit}); it needs "
                f"{need.needs} and gave {need.provided[s]:,.0f}. Extend the trial."
            )
        return (
            f"{what}: measured {_value(v)}, but its bounds reach across the limit ({limit}); "
            "more shifts are needed to tell."
        )
    if v.status == "not measured":
        if v.criterion in DETECTED_ONLY and f.excursions and not f.detected:
            return ""  # nothing detected: said once, under detection
        return f"{what} could not be measured: extend the trial to cover it."
    c = v.criterion
    if c == "detection_rate":
        return (
            f"{f.saturated + f.missed} of {f.excursions} true crossings had no fresh alert "
            f"({f.saturated} with the alarm already on, {f.missed} with none): the supplier to "
            "show why, crossing by crossing, before the device is worn on open lines."
        )
    if c == "false_alarm_share":
        return (
            f"The alarm is on {percent(f.false_alarm_share)} of the time while the wearer is "
            "truly safe: an alarm that seldom stops teaches workers to ignore it. Check the "
            "accuracy the device reports (its uncertainty circle), its fence, and that it "
            "clears when the wearer steps back."
        )
    if c == "false_alerts_per_device_hour":
        return (
            f"{_s(f.false_alerts_per_device_hour, 2)} false alerts an hour (limit "
            f"{v.limit:g}): reduce position jitter near the edge or the reported accuracy "
            "that drives it."
        )
    if c == "time_to_alert_p95_s":
        firmware = _check(result, FIRMWARE, s)
        cause = f" The device {firmware.finding}." if firmware.status == "found" else ""
        return (
            f"Alerts are late: {_when(f.time_to_alert_p95_s)} at the 95th "
            f"percentile, against {v.limit:g} s.{cause} Hold back the slow version until "
            "alerts are within the limit."
        )
    if c == "fence_alignment_m":
        return (
            f"The configured fence is {v.value:.1f} m from the surveyed safe-zone boundary at "
            f"worst (limit {v.limit:g} m): re-key it from the survey and check it before each "
            "possession; a fence beyond the limit board alarms late or never."
        )
    if c == "availability":
        return (
            f"Only {percent(f.availability, 2)} of the fixes the certificate promises arrived "
            f"(limit {percent(v.limit, 2)}): find where the fixes were lost (tunnels, "
            "configuration, radio) and say how the wearer is warned when protection is lost."
        )
    if c == "alert_timing_spread_s":
        return (
            f"Time to alert varies by {_s(f.alert_timing_spread_s)} s between like crossings "
            f"(p95 - p5, limit {v.limit:g} s): a worker cannot learn what the device will do."
        )
    if c == "breach_log_offset_p95_m":
        log = _check(result, BREACH_LOG, s)
        return f"The breach log does not show where the wearer was: {log.finding}."
    if c == "r95_m":
        return (
            f"R95 is {_s(f.r95_m, 2)} m against {v.limit:g} m: the device cannot place a "
            "worker within the clearances the fence relies on."
        )
    if c == "supplier_agreement":
        agreement = _check(result, AGREEMENT, s)
        return f"It alarms unlike the others: {agreement.finding}."
    return f"{v.what} is {_value(v)} against a limit of {unit} {v.limit:g}."


def _value(v: Verdict, value: float | None = None) -> str:
    """A criterion's figure (or its limit) in the criterion's own unit."""
    value = v.value if value is None else value
    if not math.isfinite(value):
        return "not measured"
    unit = CRITERIA[v.criterion][2]
    if unit.startswith("a share"):
        return percent(value, 2)
    suffix = {"metres": "\u00a0m", "seconds": "\u00a0s", "per hour": " per device-hour"}
    return f"{value:.3g}{suffix.get(unit, '')}"


def _check_advice(check: Check, r: SupplierFinding) -> str:
    if check.code == CONFIGURATION:
        return f"Restore the certified configuration and lock it: {r.finding}."
    if check.code == FIRMWARE:
        return f"Qualify each firmware version before it is worn: {r.finding}."
    return f"{check.title}: {r.finding}."
