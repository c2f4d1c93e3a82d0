"""The figures of one slice of a trial (a supplier, a scenario, a firmware version…).

Every figure the report prints comes from here, and every figure a criterion is
judged on carries its confidence bounds: each end of an interval is a one-sided
bound at the trial's confidence (95 % by default), so a criterion can pass only
when the unfavourable end meets its limit (trials.verdict). The method follows
what the figure is:

- a proportion of trials (crossings detected): the more cautious of Clopper-Pearson
  and a bootstrap over device-shifts (misses cluster: a device that misses under a
  bridge misses there all shift);
- a count per exposure (false alerts per device-hour): the more cautious of exact
  Poisson and a bootstrap over device-shifts (false alerts come in bursts);
- a percentile (of fix errors, times to alert, breach-log offsets): the more
  cautious of a bootstrap that resamples whole device-shifts (the values of one
  device on one shift are correlated) and the distribution-free order-statistic
  bound (which needs `values_needed` values: 59 for a p95 at 95 %);
- a share of time or of fixes (false-alarm time, availability, time without
  protection): a bootstrap over whole device-shifts, and for availability also
  Clopper-Pearson, the more cautious of the two.

A bootstrap over fewer than MIN_CLUSTERS device-shifts cannot speak for the
next shift, so it gives no bound at all (with two it covers about 40 % of the
time, not 95 %). Even from ten it is optimistic (about 80 % in a simulation
with shift-to-shift spread), which is why a percentile also takes the
order-statistic bound and a proportion its exact bound, whichever is wider.
A slice with nothing to measure gets NaN (shown as "not measured"), never zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from trials.intervals import (
    clopper_pearson,
    cluster_bootstrap_percentiles,
    cluster_bootstrap_ratio,
    order_statistic_bounds,
    poisson_rate,
)
from trials.rows import Rows

Interval = tuple[float, float]
NAN_INTERVAL: Interval = (math.nan, math.nan)
UNBOUNDED: Interval = (-math.inf, math.inf)
#: The fewest device-shifts a bootstrap bound is given from.
MIN_CLUSTERS = 10
#: The order-statistic bound is taken from at most this many values (evenly thinned).
ORDER_STATISTIC_VALUES = 20_000
#: Bootstrap resamples per figure (the bounds move by well under their width between seeds).
RESAMPLES = 1000


def _pct(values: np.ndarray, q: float) -> float:
    values = values[np.isfinite(values)]
    return float(np.percentile(values, q)) if values.size else math.nan


def _cautious(a: Interval, b: Interval) -> Interval:
    """The wider of two intervals at each end; an end that cannot be bounded is unbounded."""
    low = min(a[0], b[0]) if not (math.isnan(a[0]) or math.isnan(b[0])) else -math.inf
    high = max(a[1], b[1]) if not (math.isnan(a[1]) or math.isnan(b[1])) else math.inf
    return low, high


def _clusters(values: np.ndarray, cluster: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Finite values grouped contiguously by cluster, and the size of each cluster."""
    keep = np.isfinite(values)
    values, cluster = values[keep], cluster[keep]
    order = np.argsort(cluster, kind="stable")
    _, sizes = np.unique(cluster[order], return_counts=True)
    return values[order], sizes


def percentile_bounds(
    values: np.ndarray, sizes: np.ndarray, q: float, confidence: float
) -> Interval:
    """Bounds of the q-th percentile of clustered values (contiguous, `sizes` each)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return NAN_INTERVAL
    # the distribution-free bound from an even thinning of a long series: fewer values only
    # widen it (so it stays the cautious side), and millions of fixes need not be sorted
    step = max(1, -(-values.size // ORDER_STATISTIC_VALUES))
    ordered = order_statistic_bounds(values[::step], q, confidence)
    if np.count_nonzero(sizes) < MIN_CLUSTERS:
        return UNBOUNDED
    boot = cluster_bootstrap_percentiles(
        values, sizes, (q,), confidence=confidence, resamples=RESAMPLES
    )[0]
    return _cautious(ordered, boot)


def spread_bounds(values: np.ndarray, sizes: np.ndarray, confidence: float) -> Interval:
    """Bounds of p95 - p5: the widest the spread could be, and the narrowest."""
    if values.size == 0:
        return NAN_INTERVAL
    p5 = percentile_bounds(values, sizes, 5, confidence)
    p95 = percentile_bounds(values, sizes, 95, confidence)
    return max(0.0, p95[0] - p5[1]), p95[1] - p5[0]


def share_bounds(
    numerators: np.ndarray,
    denominators: np.ndarray,
    confidence: float,
    *,
    ceiling: float = 1.0,
) -> Interval:
    """Bounds of sum(numerators) / sum(denominators), one pair per device-shift; a share
    (ceiling 1) or a rate (no ceiling)."""
    if float(np.sum(denominators)) <= 0:
        return NAN_INTERVAL
    if numerators.size < MIN_CLUSTERS:
        return 0.0, ceiling
    return cluster_bootstrap_ratio(
        numerators.astype(np.float64),
        denominators.astype(np.float64),
        confidence=confidence,
        resamples=RESAMPLES,
    )


@dataclass(frozen=True)
class Figures:
    # accuracy (horizontal error against truth)
    fixes: int
    device_shifts: int
    cep50_m: float
    cep50_ci_m: Interval
    r95_m: float
    r95_ci_m: Interval
    max_error_m: float
    drms2_m: float
    bias_east_m: float  # ISO 5725 trueness
    bias_north_m: float
    precision_m: float  # ISO 5725 precision: spread about the mean error
    # alerting: detection by a fresh alert
    excursions: int
    detected: int
    saturated: int  # an alarm already on as the window opened: not detected
    late: int  # alerted only after the wearer was back
    missed: int  # no alarm at all
    detection_rate: float
    detection_ci: Interval
    early_alerts: int  # detected, with the alert before the true crossing
    time_to_alert_p50_s: float
    time_to_alert_p95_s: float
    time_to_alert_p95_ci_s: Interval
    time_to_alert_max_s: float
    alert_timing_spread_s: float  # p95 - p5 of time to alert
    alert_timing_spread_ci_s: Interval
    overshoot_p50_m: float  # how far truly outside at the alert
    overshoot_max_m: float
    depth_p50_m: float  # how far the wearer truly went (every excursion)
    depth_max_m: float
    # false alarms, by count and by time
    false_alerts: int
    device_hours: float
    false_alerts_per_device_hour: float
    false_alerts_per_device_hour_ci: Interval
    breach_share: float  # share of device time spent in breach
    false_alarm_share: float  # share of device time in breach while truly safe
    false_alarm_share_ci: Interval
    # the breach log against the truth
    alerts: int
    breach_log_offset_p50_m: float  # at the alert
    breach_log_offset_p95_m: float  # the worse of the two readings (at the alert, at its time)
    breach_log_offset_p95_ci_m: Interval
    # availability, owed at the approved (certificate) fix rate
    expected_fixes: int
    expected_fixes_configured: int
    received_fixes: int
    availability: float
    availability_ci: Interval
    availability_configured: float  # against the rate the devices were really set to
    gaps: int
    unprotected_s: float
    unprotected_share: float
    unprotected_share_ci: Interval
    # hops (ms): uplink simulated, decision and alert publish measured
    uplink_p50_ms: float
    decide_p50_ms: float
    decide_p95_ms: float
    publish_p50_ms: float
    publish_p95_ms: float

    def as_dict(self) -> dict:
        return asdict(self)


def figures(
    rows: Rows, *, confidence: float = 0.95, intervals: bool = True, **keys: object
) -> Figures:
    """The figures of the rows matching `keys` (e.g. supplier="acme", firmware="2.5.0").

    `intervals=False` skips the bounds (tables that print none, and they cost a
    bootstrap each).
    """
    part = _Slice.of(rows, keys, confidence, intervals)
    return Figures(
        **_accuracy(part),
        **_detection(part),
        **_false_alarms(part),
        **_breach_log(part),
        **_availability(part),
        **_hops(part),
    )


@dataclass(frozen=True)
class _Slice:
    """One slice of the trial's rows, gathered once: each group of figures starts here."""

    rows: Rows
    keys: dict[str, object]
    dmask: np.ndarray  # its device-shifts
    emask: np.ndarray  # its true crossings
    amask: np.ndarray  # its breach alerts
    confidence: float
    intervals: bool

    @classmethod
    def of(cls, rows: Rows, keys: dict[str, object], confidence: float,
           intervals: bool) -> _Slice:  # fmt: skip
        return cls(rows, keys, rows.device_shifts.where(**keys), rows.excursions.where(**keys),
                   rows.alerts.where(**keys), confidence, intervals)  # fmt: skip

    def bounds(self, compute: Callable[[], Interval]) -> Interval:
        """An interval, or none when the slice's table prints none (it costs a bootstrap)."""
        return compute() if self.intervals else NAN_INTERVAL

    def shifts(self, column: str) -> np.ndarray:
        """One device-shift column of the slice, as floats."""
        return getattr(self.rows.device_shifts, column)[self.dmask].astype(np.float64)

    @property
    def hours(self) -> float:
        return float(self.shifts("hours").sum())


def _accuracy(part: _Slice) -> dict[str, object]:
    """Horizontal error against the truth: percentiles on their bounds (bootstrapped over
    device-shifts), 2DRMS, and ISO 5725 trueness (bias) and precision."""
    rows, c = part.rows, part.confidence
    radial = rows.fix_values("error_m", **part.keys)
    sizes = rows.fixes_per_worn[part.dmask]
    count = int(radial.size)
    mean_square = float(np.dot(radial, radial)) / count if count else math.nan
    # mean errors from each device-shift's sums: no pass over the fixes
    sum_e = float(rows.device_shifts.error_east_sum_m[part.dmask].sum())
    sum_n = float(rows.device_shifts.error_north_sum_m[part.dmask].sum())
    mean_e = sum_e / count if count else math.nan
    mean_n = sum_n / count if count else math.nan
    cep50, r95 = np.percentile(radial, [50, 95]) if radial.size else (math.nan, math.nan)
    return {
        "fixes": count,
        "device_shifts": int(part.dmask.sum()),
        "cep50_m": float(cep50),
        "cep50_ci_m": part.bounds(lambda: percentile_bounds(radial, sizes, 50, c)),
        "r95_m": float(r95),
        "r95_ci_m": part.bounds(lambda: percentile_bounds(radial, sizes, 95, c)),
        "max_error_m": float(radial.max()) if radial.size else math.nan,
        "drms2_m": 2 * math.sqrt(mean_square) if count else math.nan,
        "bias_east_m": mean_e,
        "bias_north_m": mean_n,
        # spread about the mean error: E|e - mean|^2 = E|e|^2 - |mean|^2
        "precision_m": (
            math.sqrt(max(0.0, mean_square - mean_e**2 - mean_n**2)) if count else math.nan
        ),
    }


def _detection(part: _Slice) -> dict[str, object]:
    """Detection by a fresh alert, on the more cautious of Clopper-Pearson and a bootstrap
    over device-shifts (misses cluster); time to alert, its spread, overshoot and depth."""
    ex, c = part.rows.excursions, part.confidence
    emask = part.emask
    hit = ex.detected[emask].astype(bool)
    saturated = ex.saturated[emask].astype(bool)
    late = ex.late[emask].astype(bool)
    n_ex = int(emask.sum())
    tta, tta_sizes = _clusters(
        ex.time_to_alert_s[emask].astype(np.float64), ex.worn[emask].astype(np.int64)
    )
    over = ex.overshoot_m[emask][hit].astype(np.float64)
    depth = ex.depth_m[emask].astype(np.float64)

    def detection_bounds() -> Interval:
        exact = clopper_pearson(int(hit.sum()), n_ex, c)
        if not n_ex:
            return exact
        _, index = np.unique(ex.worn[emask].astype(np.int64), return_inverse=True)
        per_shift = np.bincount(index, weights=hit.astype(np.float64))
        crossings = np.bincount(index).astype(np.float64)
        return _cautious(exact, share_bounds(per_shift, crossings, c))

    return {
        "excursions": n_ex,
        "detected": int(hit.sum()),
        "saturated": int(saturated.sum()),
        "late": int(late.sum()),
        "missed": int((~hit & ~saturated & ~late).sum()),
        "detection_rate": float(hit.mean()) if n_ex else math.nan,
        "detection_ci": part.bounds(detection_bounds),
        "early_alerts": int((tta < 0).sum()),
        "time_to_alert_p50_s": _pct(tta, 50),
        "time_to_alert_p95_s": _pct(tta, 95),
        "time_to_alert_p95_ci_s": part.bounds(lambda: percentile_bounds(tta, tta_sizes, 95, c)),
        "time_to_alert_max_s": float(tta.max()) if tta.size else math.nan,
        "alert_timing_spread_s": _pct(tta, 95) - _pct(tta, 5),
        "alert_timing_spread_ci_s": part.bounds(lambda: spread_bounds(tta, tta_sizes, c)),
        "overshoot_p50_m": _pct(over, 50),
        "overshoot_max_m": float(over.max()) if over.size else math.nan,
        "depth_p50_m": _pct(depth, 50),
        "depth_max_m": float(depth.max()) if depth.size else math.nan,
    }


def _false_alarms(part: _Slice) -> dict[str, object]:
    """False alarms by count (per device-hour, the more cautious of exact Poisson and a
    bootstrap: they come in bursts) and by time (share of device time, bootstrapped)."""
    c, hours = part.confidence, part.hours
    hours_each = part.shifts("hours")
    false_alerts = int(part.rows.device_shifts.false_alerts[part.dmask].sum())
    false_each = part.shifts("false_alarm_s")
    seconds = hours * 3600

    def false_alert_bounds() -> Interval:
        exact = poisson_rate(false_alerts, hours, c)
        if hours <= 0:
            return exact
        each = part.shifts("false_alerts")
        return _cautious(exact, share_bounds(each, hours_each, c, ceiling=math.inf))

    return {
        "false_alerts": false_alerts,
        "device_hours": hours,
        "false_alerts_per_device_hour": false_alerts / hours if hours > 0 else math.nan,
        "false_alerts_per_device_hour_ci": part.bounds(false_alert_bounds),
        "breach_share": (
            float(part.rows.device_shifts.breach_s[part.dmask].sum()) / seconds
            if hours > 0
            else math.nan
        ),
        "false_alarm_share": float(false_each.sum()) / seconds if hours > 0 else math.nan,
        "false_alarm_share_ci": part.bounds(
            lambda: share_bounds(false_each, hours_each * 3600, c)
        ),
    }


def _breach_log(part: _Slice) -> dict[str, object]:
    """Where the breach log puts the wearer: at the alert, and the worse of the two readings
    (at the alert, at the time it logs) at the 95th percentile, on its bounds."""
    al, c = part.rows.alerts, part.confidence
    at_alert = al.log_offset_m[part.amask].astype(np.float64)
    at_time = al.log_offset_at_logged_time_m[part.amask].astype(np.float64)
    cluster = al.worn[part.amask].astype(np.int64)

    def log_bounds() -> Interval:
        a_values, a_sizes = _clusters(at_alert, cluster)
        t_values, t_sizes = _clusters(at_time, cluster)
        a = percentile_bounds(a_values, a_sizes, 95, c)
        t = percentile_bounds(t_values, t_sizes, 95, c)
        return max(a[0], t[0]), max(a[1], t[1])

    return {
        "alerts": int(part.amask.sum()),
        "breach_log_offset_p50_m": _pct(at_alert, 50),
        "breach_log_offset_p95_m": (
            max(_pct(at_alert, 95), _pct(at_time, 95)) if at_alert.size else math.nan
        ),
        "breach_log_offset_p95_ci_m": part.bounds(log_bounds) if at_alert.size else NAN_INTERVAL,
    }


def _availability(part: _Slice) -> dict[str, object]:
    """Fixes received against those the approved configuration promises (Clopper-Pearson
    and a bootstrap, the more cautious), against the rates set, and time unprotected."""
    ds, c, hours = part.rows.device_shifts, part.confidence, part.hours
    expected_each = part.shifts("expected")
    received_each = part.shifts("received")
    expected, received = int(expected_each.sum()), int(received_each.sum())
    expected_configured = int(ds.expected_configured[part.dmask].sum())
    unprotected_each = part.shifts("unprotected_s")
    seconds = hours * 3600

    def availability_bounds() -> Interval:
        if not expected:
            return NAN_INTERVAL
        return _cautious(
            clopper_pearson(received, expected, c),
            share_bounds(received_each, expected_each, c),
        )

    return {
        "expected_fixes": expected,
        "expected_fixes_configured": expected_configured,
        "received_fixes": received,
        "availability": received / expected if expected else math.nan,
        "availability_ci": part.bounds(availability_bounds),
        "availability_configured": (
            min(received, expected_configured) / expected_configured
            if expected_configured
            else math.nan
        ),
        "gaps": int(ds.gaps[part.dmask].sum()),
        "unprotected_s": float(unprotected_each.sum()),
        "unprotected_share": float(unprotected_each.sum()) / seconds if hours > 0 else math.nan,
        "unprotected_share_ci": part.bounds(
            lambda: share_bounds(unprotected_each, part.shifts("hours") * 3600, c)
        ),
    }


def _hops(part: _Slice) -> dict[str, float]:
    """The hops: the device's uplink (simulated), receive -> decision and decision -> alert
    published (measured)."""
    decisions = part.rows.fix_values("decide_ms", **part.keys)
    decisions = decisions[np.isfinite(decisions)]
    decide = np.percentile(decisions, [50, 95]) if decisions.size else (math.nan, math.nan)
    publish = part.rows.alerts.publish_ms[part.amask].astype(np.float64)
    return {
        "uplink_p50_ms": _pct(part.shifts("uplink_p50_ms"), 50),
        "decide_p50_ms": float(decide[0]),
        "decide_p95_ms": float(decide[1]),
        "publish_p50_ms": _pct(publish, 50),
        "publish_p95_ms": _pct(publish, 95),
    }


@dataclass(frozen=True)
class OwnAlarmFigures:
    """The devices' own alarms, by the same definitions, beside trackfence's decision.

    A supplier's device (or its cloud) decides for itself when to vibrate its wearer;
    NRA24-05's "alarms did not trigger consistently" is about those alarms. They are
    scored as trackfence's decisions are: fresh alerts per crossing, false alarms by
    count and by time, and where the device said the wearer was. Only device-shifts
    whose device reported its alarms count: one that reports none is "not reported",
    never scored as silent.
    """

    device_shifts: int  # that reported their own alarms
    excursions: int
    detected: int
    saturated: int
    detection_rate: float
    detection_ci: Interval
    time_to_alert_p50_s: float
    time_to_alert_p95_s: float
    device_hours: float
    false_alerts: int
    false_alerts_per_device_hour: float
    false_alerts_per_device_hour_ci: Interval
    false_alarm_share: float
    alarm_position_offset_p95_m: float  # where the device said the wearer was, at its alarm
    # the same crossings, against trackfence's decision on the same device's fixes
    detected_by_platform_only: int
    detected_by_device_only: int
    later_than_platform: int  # both alerted, the device more than the spread limit later

    def as_dict(self) -> dict:
        return asdict(self)


def own_alarm_figures(
    rows: Rows, *, spread_limit_s: float, confidence: float = 0.95, **keys: object
) -> OwnAlarmFigures:
    """The devices' own alarms of the rows matching `keys` (device-shifts that reported)."""
    ex, ds, own = rows.excursions, rows.device_shifts, rows.own_alarms
    emask = ex.where(**keys) & ex.own_reported.astype(bool)
    dmask = ds.where(**keys) & ds.own_reported.astype(bool)
    omask = own.where(**keys)
    hit = ex.own_detected[emask].astype(bool)
    platform = ex.detected[emask].astype(bool)
    tta = ex.own_time_to_alert_s[emask].astype(np.float64)
    platform_tta = ex.time_to_alert_s[emask].astype(np.float64)
    hours = float(ds.hours[dmask].sum())
    false_alerts = int(ds.own_false_alerts[dmask].sum())
    n = int(emask.sum())
    both = hit & platform
    return OwnAlarmFigures(
        device_shifts=int(dmask.sum()),
        excursions=n,
        detected=int(hit.sum()),
        saturated=int(ex.own_saturated[emask].astype(bool).sum()),
        detection_rate=float(hit.mean()) if n else math.nan,
        detection_ci=clopper_pearson(int(hit.sum()), n, confidence),
        time_to_alert_p50_s=_pct(tta, 50),
        time_to_alert_p95_s=_pct(tta, 95),
        device_hours=hours,
        false_alerts=false_alerts,
        false_alerts_per_device_hour=false_alerts / hours if hours > 0 else math.nan,
        false_alerts_per_device_hour_ci=poisson_rate(false_alerts, hours, confidence),
        false_alarm_share=(
            float(ds.own_false_alarm_s[dmask].sum()) / (hours * 3600) if hours > 0 else math.nan
        ),
        alarm_position_offset_p95_m=_pct(own.offset_m[omask].astype(np.float64), 95),
        detected_by_platform_only=int((platform & ~hit).sum()),
        detected_by_device_only=int((hit & ~platform).sum()),
        later_than_platform=int((both & (tta - platform_tta > spread_limit_s)).sum()),
    )
