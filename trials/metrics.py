"""Trial metrics, vectorised: accuracy, breach detection, availability.

Accuracy is per fix against the truth at the time the fix claims (so a device
whose clock is wrong is charged for it, as it would be on the track):
CEP50 (median), R95 (95th percentile), max, 2DRMS, bias (mean east/north error,
ISO 5725 trueness) and precision (spread about that mean). Percentiles are
empirical, never Gaussian shortcuts.

Detection is per true excursion out of the safe zone: detected if the device
was in breach at some time between `lead_s` before the true crossing (an
uncertainty circle may, rightly, warn early) and the end of the excursion; time
to alert is the breach's start minus the true crossing; overshoot is how far
outside the wearer truly was at the alert. A breach that overlaps no excursion
is a false alert.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trials.intervals import block_bootstrap_percentile, wilson


@dataclass(frozen=True)
class Accuracy:
    fixes: int
    cep50_m: float
    cep50_ci_m: tuple[float, float]
    r95_m: float
    r95_ci_m: tuple[float, float]
    max_m: float
    drms2_m: float  # 2DRMS: twice the root-mean-square radial error
    bias_east_m: float  # trueness (ISO 5725): the mean error
    bias_north_m: float
    precision_m: float  # spread about the mean error (radial standard deviation)


def accuracy(
    fix_time_ms: np.ndarray,
    fix_x_m: np.ndarray,
    fix_y_m: np.ndarray,
    truth_time_ms: np.ndarray,
    truth_x_m: np.ndarray,
    truth_y_m: np.ndarray,
    *,
    block: int = 50,
) -> Accuracy:
    """Horizontal error of fixes against a truth track (time-interpolated), in one frame."""
    t = np.asarray(fix_time_ms, dtype=np.float64)
    inside = (t >= truth_time_ms[0]) & (t <= truth_time_ms[-1])  # no extrapolated truth
    t = t[inside]
    dx = np.asarray(fix_x_m, dtype=np.float64)[inside] - np.interp(t, truth_time_ms, truth_x_m)
    dy = np.asarray(fix_y_m, dtype=np.float64)[inside] - np.interp(t, truth_time_ms, truth_y_m)
    if dx.size == 0:
        nan = math.nan
        return Accuracy(0, nan, (nan, nan), nan, (nan, nan), nan, nan, nan, nan, nan)
    radial = np.hypot(dx, dy)
    mean_x, mean_y = float(dx.mean()), float(dy.mean())
    return Accuracy(
        fixes=int(radial.size),
        cep50_m=float(np.percentile(radial, 50)),
        cep50_ci_m=block_bootstrap_percentile(radial, 50, block=block),
        r95_m=float(np.percentile(radial, 95)),
        r95_ci_m=block_bootstrap_percentile(radial, 95, block=block),
        max_m=float(radial.max()),
        drms2_m=float(2 * np.sqrt(np.mean(dx * dx + dy * dy))),
        bias_east_m=mean_x,
        bias_north_m=mean_y,
        precision_m=float(np.sqrt(np.mean((dx - mean_x) ** 2 + (dy - mean_y) ** 2))),
    )


@dataclass(frozen=True)
class Detection:
    excursions: int
    detected: int
    detection_rate: float
    detection_ci: tuple[float, float]
    time_to_alert_s: np.ndarray  # per detected excursion (negative: alerted before crossing)
    overshoot_m: np.ndarray  # per detected excursion: how far truly outside at the alert
    missed: np.ndarray  # indices of excursions never alerted
    false_alerts: int
    device_hours: float
    false_alerts_per_device_hour: float


def detection(
    excursion_start_ms: np.ndarray,
    excursion_end_ms: np.ndarray,
    alert_ms: np.ndarray,
    device_hours: float,
    truth_time_ms: np.ndarray | None = None,
    truth_distance_m: np.ndarray | None = None,
    lead_s: float = 30.0,
    alert_end_ms: np.ndarray | None = None,
) -> Detection:
    """Match one device's breach alerts to its true excursions.

    An alert is the start of a breach that lasts until `alert_end_ms` (its clear;
    without it, an instant). An excursion is detected when some breach overlaps
    its window [start - lead_s, end]: a device already in breach when the wearer
    crosses is warning them. Time to alert is the first such breach's start minus
    the crossing, floored at -lead_s. A breach overlapping no window is false.
    """
    starts = np.asarray(excursion_start_ms, dtype=np.int64)
    ends = np.asarray(excursion_end_ms, dtype=np.int64)
    alerts = np.asarray(alert_ms, dtype=np.int64)
    until = alerts if alert_end_ms is None else np.asarray(alert_end_ms, dtype=np.int64)
    order = np.argsort(alerts, kind="stable")
    alerts, until = alerts[order], np.maximum(until[order], alerts[order])
    lead_ms = round(lead_s * 1000)
    window_start = starts - lead_ms
    # (excursions x alerts): excursions and alerts per device are tens, not millions
    overlaps = (alerts[None, :] <= ends[:, None]) & (until[None, :] >= window_start[:, None])
    hit = overlaps.any(axis=1)
    # the earliest overlapping breach (alerts are sorted); none -> never indexed
    first = np.argmax(overlaps, axis=1) if alerts.size else np.zeros(starts.size, np.int64)
    raised = np.maximum(alerts[first[hit]], window_start[hit])
    time_to_alert = (raised - starts[hit]) / 1000.0
    if truth_time_ms is not None and truth_distance_m is not None:
        at = np.clip(np.searchsorted(truth_time_ms, raised), 0, len(truth_time_ms) - 1)
        overshoot = np.maximum(0.0, -np.asarray(truth_distance_m)[at])
    else:
        overshoot = np.full(int(hit.sum()), math.nan)
    false_alerts = int((~overlaps.any(axis=0)).sum()) if alerts.size else 0
    return Detection(
        excursions=int(starts.size),
        detected=int(hit.sum()),
        detection_rate=float(hit.mean()) if starts.size else math.nan,
        detection_ci=wilson(int(hit.sum()), int(starts.size)),
        time_to_alert_s=time_to_alert,
        overshoot_m=overshoot,
        missed=np.flatnonzero(~hit),
        false_alerts=false_alerts,
        device_hours=device_hours,
        false_alerts_per_device_hour=false_alerts / device_hours if device_hours > 0 else math.nan,
    )


def distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values; O(n) for the already-sorted times a store returns."""
    if values.size < 2 or bool((values[1:] >= values[:-1]).all()):
        return values[np.r_[True, values[1:] != values[:-1]]] if values.size else values
    return np.unique(values)


@dataclass(frozen=True)
class Availability:
    expected: int
    received: int
    availability: float
    availability_ci: tuple[float, float]
    gaps: int  # silences longer than the gap threshold
    unprotected_s: float  # time beyond lost_after_s in those silences


def availability(
    received_time_ms: np.ndarray,
    start_ms: int,
    end_ms: int,
    rate_hz: float,
    *,
    gap_s: float = 5.0,
    lost_after_s: float = 10.0,
) -> Availability:
    """Share of expected fixes received, and how long the wearer went unprotected."""
    t = distinct(np.asarray(received_time_ms, dtype=np.int64))
    t = t[(t >= start_ms) & (t <= end_ms)]
    expected = max(1, round((end_ms - start_ms) / 1000 * rate_hz))
    received = min(int(t.size), expected)
    edges = np.r_[start_ms, t, end_ms]
    silences = np.diff(edges) / 1000.0
    return Availability(
        expected=expected,
        received=received,
        availability=received / expected,
        availability_ci=wilson(received, expected),
        gaps=int((silences > gap_s).sum()),
        unprotected_s=float(np.maximum(0.0, silences - lost_after_s).sum()),
    )
