"""Trial metrics, vectorised: accuracy, breach detection, false alarms, availability.

Accuracy is per fix against the truth at the time the fix claims (so a device
whose clock is wrong is charged for it, as it would be on the track):
CEP50 (median), R95 (95th percentile), max, 2DRMS, bias (mean east/north error,
ISO 5725 trueness) and precision (spread about that mean). Percentiles are
empirical, never Gaussian shortcuts.

Detection is per true excursion out of the safe zone, and only a *fresh* alert
detects: a breach alert that starts inside the excursion's detection window,
from `lead_s` before the true crossing (an uncertainty circle may rightly reach
the edge a moment before the wearer does) to the end of the excursion. An alarm
that was already on when the window opened carries no information about this
crossing: the excursion is *saturated*, not detected. A device in breach all
shift therefore detects nothing, however often its wearer crosses. Time to alert
is the detecting alert's start minus the crossing, never floored or clamped.

False alarms are counted two ways, because a device can fail either: alert
*starts* outside every detection window (a flapping device), and *time* in
breach outside every excursion's window and its clearing allowance (a device
whose alarm never stops). An alarm that began before a window and runs into
the excursion is false until the window opens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trials.intervals import clopper_pearson, cluster_bootstrap_percentiles


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
    # one device's errors are a correlated series: resample whole blocks of `block` fixes
    blocks = np.full(radial.size // block, block)
    blocks = np.r_[blocks, radial.size - blocks.sum()] if radial.size % block else blocks
    cep50_ci, r95_ci = cluster_bootstrap_percentiles(radial, blocks, (50, 95))
    return Accuracy(
        fixes=int(radial.size),
        cep50_m=float(np.percentile(radial, 50)),
        cep50_ci_m=cep50_ci,
        r95_m=float(np.percentile(radial, 95)),
        r95_ci_m=r95_ci,
        max_m=float(radial.max()),
        drms2_m=float(2 * np.sqrt(np.mean(dx * dx + dy * dy))),
        bias_east_m=mean_x,
        bias_north_m=mean_y,
        precision_m=float(np.sqrt(np.mean((dx - mean_x) ** 2 + (dy - mean_y) ** 2))),
    )


@dataclass(frozen=True)
class Detection:
    """One device's alerts matched to its wearer's true excursions."""

    detected: np.ndarray  # per excursion: a fresh alert started in its window
    saturated: np.ndarray  # per excursion: not detected, an alarm already on as the window opened
    late: np.ndarray  # per excursion: not detected, alerted only after the wearer was back
    time_to_alert_s: np.ndarray  # per excursion: detecting alert minus crossing (NaN if none)
    alert: np.ndarray  # per excursion: index of the detecting alert, or -1
    false_start: np.ndarray  # per alert: it started outside every detection window

    @property
    def excursions(self) -> int:
        return int(self.detected.size)

    @property
    def missed(self) -> np.ndarray:
        """Excursions with no fresh alert (saturated or not)."""
        return np.flatnonzero(~self.detected)

    @property
    def false_alerts(self) -> int:
        return int(self.false_start.sum())


def detection(
    excursion_start_ms: np.ndarray,
    excursion_end_ms: np.ndarray,
    alert_ms: np.ndarray,
    alert_end_ms: np.ndarray | None = None,
    *,
    lead_s: float = 5.0,
    late_within_s: float = 10.0,
) -> Detection:
    """Match one device's breach alerts (start, end) to its true excursions (start, end).

    An alert detects an excursion when it *starts* in [crossing - lead_s, end of the
    excursion]; the earliest such alert is the one timed. An excursion with no such
    alert is saturated when a breach that started earlier is still on as its window
    opens. One that got only an alert after the wearer was back (within
    `late_within_s`) is *late*: not detected either, and said apart from "no alarm".
    An alert whose start lies in no window is a false alert.
    """
    starts = np.asarray(excursion_start_ms, dtype=np.int64)
    ends = np.asarray(excursion_end_ms, dtype=np.int64)
    alerts = np.asarray(alert_ms, dtype=np.int64)
    until = alerts if alert_end_ms is None else np.asarray(alert_end_ms, dtype=np.int64)
    until = np.maximum(until, alerts)
    window_start = starts - round(lead_s * 1000)
    # excursions x alerts: per device-shift these are tens, not millions
    fresh = (alerts[None, :] >= window_start[:, None]) & (alerts[None, :] <= ends[:, None])
    # the earliest fresh alert of each excursion (alerts may come in any order)
    never = np.iinfo(np.int64).max
    first_ms = np.where(fresh, alerts[None, :], never).min(axis=1, initial=never)
    detected = fresh.any(axis=1)
    alert = np.full(starts.size, -1, dtype=np.int64)
    if alerts.size:
        first = fresh & (alerts[None, :] == first_ms[:, None])
        alert[detected] = np.argmax(first, axis=1)[detected]
    time_to_alert = np.where(detected, (first_ms - starts) / 1000.0, np.nan)
    on_before = (alerts[None, :] < window_start[:, None]) & (
        until[None, :] > window_start[:, None]
    )
    saturated = ~detected & on_before.any(axis=1)
    after = (alerts[None, :] > ends[:, None]) & (
        alerts[None, :] <= ends[:, None] + round(late_within_s * 1000)
    )
    late = ~detected & ~saturated & after.any(axis=1)
    return Detection(
        detected=detected,
        saturated=saturated,
        late=late,
        time_to_alert_s=time_to_alert,
        alert=alert,
        false_start=~fresh.any(axis=0),
    )


def merge_excursions(
    start_ms: np.ndarray, end_ms: np.ndarray, depth_m: np.ndarray, gap_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Excursions closer together than `gap_s` as one.

    A wearer swaying on the edge crosses it again a moment after stepping back. A
    device rightly keeps its alarm on through that (the clearing dwell), so the
    second crossing is not a new one to detect: until the wearer has been back
    inside for the clearing allowance, it is the same excursion, as deep as its
    deepest part.
    """
    start = np.asarray(start_ms, dtype=np.int64)
    end = np.asarray(end_ms, dtype=np.int64)
    depth = np.asarray(depth_m, dtype=np.float64)
    if start.size < 2:
        return start, end, depth
    order = np.argsort(start, kind="stable")
    start, end, depth = start[order], end[order], depth[order]
    reach = np.maximum.accumulate(end)
    new = np.r_[True, start[1:] - reach[:-1] >= round(gap_s * 1000)]
    group = np.cumsum(new) - 1
    merged_end = np.zeros(int(group[-1]) + 1, dtype=np.int64)
    np.maximum.at(merged_end, group, end)
    merged_depth = np.full(merged_end.size, -np.inf)
    np.maximum.at(merged_depth, group, depth)
    return start[new], merged_end, merged_depth


def _union(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge intervals [start, end) into disjoint ones, sorted."""
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if starts.size == 0:
        return starts, ends
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    new = np.r_[True, starts[1:] > reach[:-1]]
    group = np.cumsum(new) - 1
    merged_end = np.zeros(int(group[-1]) + 1, dtype=reach.dtype)
    np.maximum.at(merged_end, group, ends)
    return starts[new], merged_end


def _length(starts: np.ndarray, ends: np.ndarray) -> float:
    s, e = _union(starts, ends)
    return float((e - s).sum())


def _overlap(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Total length covered by both interval sets (each may overlap itself)."""
    a0, a1 = _union(*a)
    b0, b1 = _union(*b)
    if a0.size == 0 or b0.size == 0:
        return 0.0
    # disjoint sorted sets: pairwise overlap, only pairs that can meet (tens per shift)
    lo = np.maximum(a0[:, None], b0[None, :])
    hi = np.minimum(a1[:, None], b1[None, :])
    return float(np.clip(hi - lo, 0, None).sum())


def alarm_seconds(
    alert_ms: np.ndarray,
    alert_end_ms: np.ndarray,
    excursion_start_ms: np.ndarray,
    excursion_end_ms: np.ndarray,
    shift_start_ms: int,
    shift_end_ms: int,
    *,
    lead_s: float = 5.0,
    clear_allowance_s: float = 10.0,
) -> tuple[float, float]:
    """(time in breach, time in breach while truly safe), in seconds of one device-shift.

    Truly safe is outside every excursion's window: from `lead_s` before the crossing
    to `clear_allowance_s` after the wearer is back inside (the clearing dwell and
    margin keep a true alarm on a few seconds after the return, by design).
    """
    a0 = np.clip(np.asarray(alert_ms, dtype=np.int64), shift_start_ms, shift_end_ms)
    a1 = np.clip(np.asarray(alert_end_ms, dtype=np.int64), shift_start_ms, shift_end_ms)
    w0 = np.asarray(excursion_start_ms, dtype=np.int64) - round(lead_s * 1000)
    w1 = np.asarray(excursion_end_ms, dtype=np.int64) + round(clear_allowance_s * 1000)
    breach = _length(a0, a1)
    justified = _overlap((a0, a1), (w0, w1))
    return breach / 1000.0, (breach - justified) / 1000.0


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
    """Share of the promised fixes received (each slot of 1/rate_hz seconds that holds a
    fix), and how long the wearer went unprotected."""
    t = distinct(np.asarray(received_time_ms, dtype=np.int64))
    t = t[(t >= start_ms) & (t <= end_ms)]
    expected = max(1, round((end_ms - start_ms) / 1000 * rate_hz))
    # slots of the promised rate that hold a fix, not fixes: a burst at ten times the rate
    # followed by silence covers a tenth of the shift, and is charged for the rest
    # (t is sorted, so its slots are too: count where they change, no hashing)
    slots = np.minimum(((t - start_ms) * rate_hz // 1000).astype(np.int64), expected - 1)
    received = int(slots.size and 1 + np.count_nonzero(np.diff(slots)))
    edges = np.r_[start_ms, t, end_ms]
    silences = np.diff(edges) / 1000.0
    return Availability(
        expected=expected,
        received=received,
        availability=received / expected,
        availability_ci=clopper_pearson(received, expected),
        gaps=int((silences > gap_s).sum()),
        unprotected_s=float(np.maximum(0.0, silences - lost_after_s).sum()),
    )
