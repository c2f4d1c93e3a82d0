"""The figures of one slice of a trial (a supplier, a scenario, a firmware version…).

Every figure the report prints comes from here, with its interval: Wilson for
rates, block bootstrap for percentiles. A slice with nothing to measure gets
NaN (shown as "not measured"), never zero.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from trials.intervals import block_bootstrap_percentiles, wilson
from trials.rows import Rows

Interval = tuple[float, float]
NAN_INTERVAL: Interval = (math.nan, math.nan)


def _pct(values: np.ndarray, q: float) -> float:
    values = values[np.isfinite(values)]
    return float(np.percentile(values, q)) if values.size else math.nan


def _pct_ci(values: np.ndarray, qs: tuple[float, ...], block: int) -> list[Interval]:
    values = values[np.isfinite(values)]
    if values.size < 2:
        return [NAN_INTERVAL for _ in qs]
    return block_bootstrap_percentiles(values, qs, block=block)


@dataclass(frozen=True)
class Figures:
    # accuracy (horizontal error against truth)
    fixes: int
    cep50_m: float
    cep50_ci_m: Interval
    r95_m: float
    r95_ci_m: Interval
    max_error_m: float
    drms2_m: float
    bias_east_m: float  # ISO 5725 trueness
    bias_north_m: float
    precision_m: float  # ISO 5725 precision: spread about the mean error
    # alerting
    excursions: int
    detected: int
    detection_rate: float
    detection_ci: Interval
    time_to_alert_p50_s: float
    time_to_alert_p95_s: float
    time_to_alert_p95_ci_s: Interval
    time_to_alert_max_s: float
    alert_timing_spread_s: float  # p95 - p5 of time to alert
    overshoot_p50_m: float
    overshoot_max_m: float
    false_alerts: int
    device_hours: float
    false_alerts_per_device_hour: float
    breach_share: float  # share of device time spent in breach (constant alarms show here)
    false_alarm_share: float  # share of device time in breach while truly safe
    breach_log_offset_p50_m: float
    breach_log_offset_p95_m: float
    # availability
    expected_fixes: int
    received_fixes: int
    availability: float
    availability_ci: Interval
    gaps: int
    unprotected_s: float
    unprotected_share: float
    # hops (ms): uplink simulated, decision and alert publish measured
    uplink_p50_ms: float
    decide_p50_ms: float
    decide_p95_ms: float
    publish_p50_ms: float
    publish_p95_ms: float

    def as_dict(self) -> dict:
        return asdict(self)


def figures(rows: Rows, *, block: int = 50, **keys: object) -> Figures:
    """The figures of the rows matching `keys` (e.g. supplier="acme", firmware="2.5.0")."""
    radial = rows.fix_values("error_m", **keys)
    count = int(radial.size)
    mean_square = float(np.dot(radial, radial)) / count if count else math.nan
    ex = rows.excursions
    emask = ex.where(**keys)
    hit = ex.detected[emask].astype(bool)
    tta = ex.time_to_alert_s[emask][hit].astype(np.float64)
    over = ex.overshoot_m[emask][hit].astype(np.float64)
    al = rows.alerts
    amask = al.where(**keys)
    offsets = al.log_offset_m[amask].astype(np.float64)
    ds = rows.device_shifts
    dmask = ds.where(**keys)
    # mean errors from each device-shift's sums: no pass over the fixes
    sum_e = float(ds.error_east_sum_m[dmask].sum())
    sum_n = float(ds.error_north_sum_m[dmask].sum())
    hours = float(ds.hours[dmask].sum())
    false_alerts = int(ds.false_alerts[dmask].sum())
    expected = int(ds.expected[dmask].sum())
    received = int(ds.received[dmask].sum())
    unprotected = float(ds.unprotected_s[dmask].sum())
    mean_e = sum_e / count if count else math.nan
    mean_n = sum_n / count if count else math.nan
    n_ex = int(emask.sum())
    cep50, r95 = np.percentile(radial, [50, 95]) if radial.size else (math.nan, math.nan)
    decisions = rows.fix_values("decide_ms", **keys)
    decisions = decisions[np.isfinite(decisions)]
    decide = np.percentile(decisions, [50, 95]) if decisions.size else (math.nan, math.nan)
    cep50_ci, r95_ci = _pct_ci(radial, (50, 95), block)
    return Figures(
        fixes=count,
        cep50_m=float(cep50),
        cep50_ci_m=cep50_ci,
        r95_m=float(r95),
        r95_ci_m=r95_ci,
        max_error_m=float(radial.max()) if radial.size else math.nan,
        drms2_m=2 * math.sqrt(mean_square) if count else math.nan,
        bias_east_m=mean_e,
        bias_north_m=mean_n,
        # spread about the mean error: E|e - mean|^2 = E|e|^2 - |mean|^2
        precision_m=math.sqrt(max(0.0, mean_square - mean_e**2 - mean_n**2)) if count else math.nan,
        excursions=n_ex,
        detected=int(hit.sum()),
        detection_rate=float(hit.mean()) if n_ex else math.nan,
        detection_ci=wilson(int(hit.sum()), n_ex),
        time_to_alert_p50_s=_pct(tta, 50),
        time_to_alert_p95_s=_pct(tta, 95),
        time_to_alert_p95_ci_s=_pct_ci(tta, (95,), 1)[0],  # excursions are independent
        time_to_alert_max_s=float(tta.max()) if tta.size else math.nan,
        alert_timing_spread_s=_pct(tta, 95) - _pct(tta, 5),
        overshoot_p50_m=_pct(over, 50),
        overshoot_max_m=float(over.max()) if over.size else math.nan,
        false_alerts=false_alerts,
        device_hours=hours,
        false_alerts_per_device_hour=false_alerts / hours if hours > 0 else math.nan,
        breach_share=float(ds.breach_s[dmask].sum()) / (hours * 3600) if hours > 0 else math.nan,
        false_alarm_share=(
            float(ds.false_alarm_s[dmask].sum()) / (hours * 3600) if hours > 0 else math.nan
        ),
        breach_log_offset_p50_m=_pct(offsets, 50),
        breach_log_offset_p95_m=_pct(offsets, 95),
        expected_fixes=expected,
        received_fixes=received,
        availability=received / expected if expected else math.nan,
        availability_ci=wilson(received, expected),
        gaps=int(ds.gaps[dmask].sum()),
        unprotected_s=unprotected,
        unprotected_share=unprotected / (hours * 3600) if hours > 0 else math.nan,
        uplink_p50_ms=_pct(ds.uplink_p50_ms[dmask].astype(np.float64), 50),
        decide_p50_ms=decide[0],
        decide_p95_ms=decide[1],
        publish_p50_ms=_pct(al.publish_ms[amask].astype(np.float64), 50),
        publish_p95_ms=_pct(al.publish_ms[amask].astype(np.float64), 95),
    )
