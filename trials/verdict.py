"""Pass or fail against the acceptance criteria, and a ranking that admits ties.

A criterion passes on the point estimate (what the trial measured), and the
verdict also says when the 95 % interval straddles the limit ("marginal"): the
trial cannot tell that supplier's pass from a fail, and the reader should know.

Suppliers are ranked by criteria passed; two suppliers that pass as many are
tied unless their intervals for detection rate or R95 are apart. A tie is
printed as a tie ("=2"), not broken by a decimal the trial cannot support.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trials.definition import CRITERIA
from trials.figures import Figures

#: Which figure (and interval) each criterion is judged on.
JUDGED_ON = {
    "r95_m": ("r95_m", "r95_ci_m"),
    "cep50_m": ("cep50_m", "cep50_ci_m"),
    "detection_rate": ("detection_rate", "detection_ci"),
    "time_to_alert_p95_s": ("time_to_alert_p95_s", "time_to_alert_p95_ci_s"),
    "false_alerts_per_device_hour": ("false_alerts_per_device_hour", None),
    "availability": ("availability", "availability_ci"),
    "false_alarm_share": ("false_alarm_share", None),
    "unprotected_share": ("unprotected_share", None),
    "alert_timing_spread_s": ("alert_timing_spread_s", None),
}


@dataclass(frozen=True)
class Verdict:
    criterion: str
    what: str
    limit: float
    direction: str  # "max" or "min"
    value: float
    interval: tuple[float, float] | None
    status: str  # pass, fail, not measured
    marginal: bool  # the interval straddles the limit


def judge(figures: Figures, criteria: dict[str, float], extra: dict[str, float]) -> list[Verdict]:
    """Every criterion for one supplier; `extra` holds values measured by the checks."""
    out = []
    for name, limit in criteria.items():
        what, direction, _unit, _, _ = CRITERIA[name]
        if name in JUDGED_ON:
            field, ci_field = JUDGED_ON[name]
            value = getattr(figures, field)
            interval = getattr(figures, ci_field) if ci_field else None
        else:
            value, interval = extra.get(name, math.nan), None
        if not math.isfinite(value):
            out.append(
                Verdict(name, what, limit, direction, value, interval, "not measured", False)
            )
            continue
        ok = value <= limit if direction == "max" else value >= limit
        marginal = bool(
            interval is not None
            and all(math.isfinite(v) for v in interval)
            and interval[0] <= limit <= interval[1]
        )
        out.append(
            Verdict(
                name, what, limit, direction, value, interval, "pass" if ok else "fail", marginal
            )
        )
    return out


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
        return sum(v.status == "pass" for v in verdicts[s])

    def key(s: str) -> tuple:
        f = figures[s]
        detection = f.detection_rate if math.isfinite(f.detection_rate) else -1.0
        r95 = f.r95_m if math.isfinite(f.r95_m) else math.inf
        return (-passed(s), -detection, r95, s)

    order = sorted(verdicts, key=key)
    ranks: list[Rank] = []
    for i, s in enumerate(order):
        position = i + 1
        tied = False
        if i:
            prev = order[i - 1]
            a, b = figures[prev], figures[s]
            if passed(prev) == passed(s) and not (
                _apart(a.detection_ci, b.detection_ci) or _apart(a.r95_ci_m, b.r95_ci_m)
            ):
                position, tied = ranks[-1].position, True
                ranks[-1] = Rank(prev, ranks[-1].position, True, ranks[-1].passed, ranks[-1].judged)
        judged = sum(v.status != "not measured" for v in verdicts[s])
        ranks.append(Rank(s, position, tied, passed(s), judged))
    return ranks
