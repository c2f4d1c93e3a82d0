"""Each acceptance criterion judged on its confidence bounds, and a ranking that admits ties.

A trial measures a sample; a criterion is about the device. So a criterion is
judged on its bounds, never on the point estimate alone (each end is a one-sided
bound at the trial's confidence, trials.figures):

- **pass**: the unfavourable end meets the limit (the device meets it, at that
  confidence);
- **fail**: even the favourable end misses the limit (it does not);
- **not demonstrated**: the interval reaches across the limit; the trial cannot
  tell, however good the point estimate looks (12 of 12 crossings alerted is not
  evidence of 99 %);
- **not measured**: nothing to measure (no crossings, no fixes).

Suppliers are ranked first by the safety criteria they have not shown met (a
device that never alarms passes accuracy and false alarms, and must not rank
above one that warns), then by criteria passed; two suppliers alike on both are
tied unless their intervals for detection rate or R95 are apart. A tie is
printed as a tie ("=2"), not broken by a decimal the trial cannot support.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from trials.definition import CRITERIA
from trials.figures import Figures

PASS, FAIL, NOT_DEMONSTRATED, NOT_MEASURED = "pass", "fail", "not demonstrated", "not measured"

#: Which figure (and interval) each criterion is judged on.
JUDGED_ON = {
    "r95_m": ("r95_m", "r95_ci_m"),
    "cep50_m": ("cep50_m", "cep50_ci_m"),
    "detection_rate": ("detection_rate", "detection_ci"),
    "time_to_alert_p95_s": ("time_to_alert_p95_s", "time_to_alert_p95_ci_s"),
    "false_alerts_per_device_hour": (
        "false_alerts_per_device_hour",
        "false_alerts_per_device_hour_ci",
    ),
    "availability": ("availability", "availability_ci"),
    "false_alarm_share": ("false_alarm_share", "false_alarm_share_ci"),
    "unprotected_share": ("unprotected_share", "unprotected_share_ci"),
    "alert_timing_spread_s": ("alert_timing_spread_s", "alert_timing_spread_ci_s"),
    "breach_log_offset_p95_m": ("breach_log_offset_p95_m", "breach_log_offset_p95_ci_m"),
}

_PERCENTILE = (
    "the more cautious of a bootstrap over whole device-shifts and the distribution-free "
    "order-statistic bound ({needed} values needed for a p{q})"
)
_SHARE = "bootstrap over whole device-shifts (time within one shift is correlated)"
#: How each criterion's interval is made, in words for the methodology.
METHOD = {
    "r95_m": _PERCENTILE.format(needed=59, q=95),
    "cep50_m": _PERCENTILE.format(needed=5, q=50),
    "detection_rate": "Clopper-Pearson (exact binomial) over true crossings",
    "time_to_alert_p95_s": _PERCENTILE.format(needed=59, q=95),
    "false_alerts_per_device_hour": "exact Poisson over device-hours",
    "availability": f"the more cautious of Clopper-Pearson over expected fixes and a {_SHARE}",
    "false_alarm_share": _SHARE,
    "unprotected_share": _SHARE,
    "fence_alignment_m": "a geometric measurement (Hausdorff distance): no sampling error",
    "breach_log_offset_p95_m": _PERCENTILE.format(needed=59, q=95)
    + ", the worse of the two readings",
    "alert_timing_spread_s": "from the bounds of the p95 and the p5 of time to alert, each "
    + _PERCENTILE.format(needed=59, q=95),
    "supplier_agreement": "Clopper-Pearson over the crossings every supplier saw",
}


@dataclass(frozen=True)
class Verdict:
    criterion: str
    what: str
    limit: float
    direction: str  # "max" or "min"
    value: float
    interval: tuple[float, float]
    status: str  # pass, fail, not demonstrated, not measured
    method: str


#: The safety function: crossings detected, promptly, by alarms that mean something (few
#: false starts) and that stop once the wearer is safe. Ranking and readiness start here.
SAFETY = ("detection_rate", "time_to_alert_p95_s", "false_alerts_per_device_hour",
          "false_alarm_share")  # fmt: skip
#: Detection is credited only when the alarms it counts carry information: a device that
#: beeps on a timer lands an alert in every crossing's window by chance.
DETECTION_NEEDS = ("false_alerts_per_device_hour", "false_alarm_share")


def outcome(value: float, interval: tuple[float, float], limit: float, direction: str) -> str:
    """Pass, fail or not demonstrated, from the interval's ends (NaN ends are unbounded)."""
    if not math.isfinite(value):
        return NOT_MEASURED
    low = -math.inf if math.isnan(interval[0]) else interval[0]
    high = math.inf if math.isnan(interval[1]) else interval[1]
    if low > high:  # not an interval: nothing can be claimed from it
        return NOT_DEMONSTRATED
    if direction == "max":
        return PASS if high <= limit else FAIL if low > limit else NOT_DEMONSTRATED
    return PASS if low >= limit else FAIL if high < limit else NOT_DEMONSTRATED


def judge(
    figures: Figures,
    criteria: dict[str, float],
    extra: dict[str, tuple[float, tuple[float, float]]],
) -> list[Verdict]:
    """Every criterion for one supplier; `extra` holds (value, interval) from the checks."""
    out = []
    for name, limit in criteria.items():
        what, direction, _unit, _, _ = CRITERIA[name]
        if name in JUDGED_ON:
            field, ci_field = JUDGED_ON[name]
            value, interval = getattr(figures, field), getattr(figures, ci_field)
        else:
            value, interval = extra.get(name, (math.nan, (math.nan, math.nan)))
        status = outcome(value, interval, limit, direction)
        out.append(
            Verdict(name, what, limit, direction, value, tuple(interval), status, METHOD[name])
        )
    return _gate_detection(out)


def _gate_detection(verdicts: list[Verdict]) -> list[Verdict]:
    """Detection passes only beside false-alarm criteria that pass: otherwise its alerts
    cannot be told from chance, and the pass is not demonstrated."""
    status = {v.criterion: v.status for v in verdicts}
    noisy = [c for c in DETECTION_NEEDS if c in status and status[c] != PASS]
    if status.get("detection_rate") != PASS or not noisy:
        return verdicts
    return [
        replace(
            v,
            status=NOT_DEMONSTRATED,
            method=v.method + "; credited only beside false-alarm criteria that pass, and "
            + " and ".join(CRITERIA[c][0] for c in noisy) + " did not",
        )
        if v.criterion == "detection_rate"
        else v
        for v in verdicts
    ]


@dataclass(frozen=True)
class Rank:
    supplier: str
    position: int
    tied: bool
    passed: int
    judged: int


def _apart(a: tuple[float, float], b: tuple[float, float]) -> bool:
    if not all(math.isfinite(v) for v in (*a, *b)):
        return False
    return a[1] < b[0] or b[1] < a[0]


def rank(verdicts: dict[str, list[Verdict]], figures: dict[str, Figures]) -> list[Rank]:
    """Suppliers best first; equal positions where the trial cannot separate them."""

    def passed(s: str) -> int:
        return sum(v.status == PASS for v in verdicts[s])

    def failed(s: str) -> int:
        return sum(v.status == FAIL for v in verdicts[s])

    def unsafe(s: str) -> int:
        """Safety criteria not shown met: a device that never alarms passes the others."""
        return sum(v.status != PASS for v in verdicts[s] if v.criterion in SAFETY)

    def key(s: str) -> tuple:
        f = figures[s]
        detection = f.detection_rate if math.isfinite(f.detection_rate) else -1.0
        r95 = f.r95_m if math.isfinite(f.r95_m) else math.inf
        return (unsafe(s), -passed(s), failed(s), -detection, r95, s)

    order = sorted(verdicts, key=key)
    ranks: list[Rank] = []
    for i, s in enumerate(order):
        position = i + 1
        tied = False
        if i:
            prev = order[i - 1]
            a, b = figures[prev], figures[s]
            same = (unsafe(prev), passed(prev), failed(prev)) == (unsafe(s), passed(s), failed(s))
            if same and not (
                _apart(a.detection_ci, b.detection_ci) or _apart(a.r95_ci_m, b.r95_ci_m)
            ):
                position, tied = ranks[-1].position, True
                ranks[-1] = Rank(prev, ranks[-1].position, True, ranks[-1].passed, ranks[-1].judged)
        judged = sum(v.status != NOT_MEASURED for v in verdicts[s])
        ranks.append(Rank(s, position, tied, passed(s), judged))
    return ranks
