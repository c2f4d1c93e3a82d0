"""A trial as four flat tables: one row per fix, excursion, alert and device-shift.

Each row carries the keys it is grouped by (supplier, scenario, firmware, device,
shift, week), so every figure of the report is one mask over one table, not a
loop over fixes. Building the tables loops over device-shifts (hundreds), each
step inside vectorised over its fixes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from trials.collect import Worn
from trials.metrics import availability, detection, distinct

#: Crossing speed is measured over this long either side of the true crossing.
SPEED_WINDOW_MS = 1000


@dataclass(frozen=True)
class Table:
    """Columns of equal length; text columns are object arrays."""

    def __len__(self) -> int:
        return len(getattr(self, fields(self)[0].name))

    def where(self, **keys: object) -> np.ndarray:
        """A row mask where each named column equals the given value."""
        mask = np.ones(len(self), dtype=bool)
        for name, value in keys.items():
            mask &= getattr(self, name) == value
        return mask


@dataclass(frozen=True)
class Keyed(Table):
    """The keys every figure is sliced by; each table below adds its own columns."""

    supplier: np.ndarray
    scenario: np.ndarray
    firmware: np.ndarray
    device: np.ndarray
    shift: np.ndarray
    week: np.ndarray


@dataclass(frozen=True)
class FixRows(Table):
    """Millions of rows: keyed by the device-shift's row number, not by text."""

    worn: np.ndarray  # row of DeviceShiftRows this fix belongs to
    error_east_m: np.ndarray
    error_north_m: np.ndarray
    decide_ms: np.ndarray  # measured: receive -> decision

    error_m: np.ndarray  # radial (horizontal) error, kept: every figure starts from it


@dataclass(frozen=True)
class ExcursionRows(Keyed):
    wearer: np.ndarray
    repeat_key: np.ndarray  # scenario/wearer/ordinal: the same movement in each repeat
    start_ms: np.ndarray
    end_ms: np.ndarray
    depth_m: np.ndarray
    speed_mps: np.ndarray  # how fast the wearer crossed the edge (outward)
    detected: np.ndarray
    time_to_alert_s: np.ndarray  # NaN where missed
    overshoot_m: np.ndarray  # NaN where missed


@dataclass(frozen=True)
class AlertRows(Keyed):
    alert_ms: np.ndarray
    log_offset_m: np.ndarray  # breach log position against the true position at the alert
    log_time_offset_m: np.ndarray  # ...against the true position at the time the log gives
    publish_ms: np.ndarray  # measured: decision -> alert published
    false: np.ndarray  # matched no true excursion


@dataclass(frozen=True)
class DeviceShiftRows(Keyed):
    date: np.ndarray
    configuration_hash: np.ndarray
    rate_hz: np.ndarray  # configured
    observed_rate_hz: np.ndarray  # distinct fixes stored per second of shift
    hours: np.ndarray
    expected: np.ndarray
    received: np.ndarray
    sent: np.ndarray  # distinct fixes the device sent
    gaps: np.ndarray
    unprotected_s: np.ndarray
    false_alerts: np.ndarray
    breach_s: np.ndarray  # time the device held its wearer in breach
    false_alarm_s: np.ndarray  # ...while the wearer was truly safe, away from any excursion
    uplink_p50_ms: np.ndarray  # simulated device -> broker
    error_east_sum_m: np.ndarray  # sums of the fixes' errors: means without touching fixes
    error_north_sum_m: np.ndarray


@dataclass(frozen=True)
class Rows:
    fixes: FixRows
    excursions: ExcursionRows
    alerts: AlertRows
    device_shifts: DeviceShiftRows

    fixes_per_worn: np.ndarray  # fixes of each device-shift (its rows are contiguous)

    def fix_values(self, column: str, **keys: object) -> np.ndarray:
        """One fix column for the device-shifts matching `keys`: contiguous slices joined,
        so the cost is the size of the answer, not of the whole trial."""
        ends = np.cumsum(self.fixes_per_worn)
        starts = ends - self.fixes_per_worn
        values = getattr(self.fixes, column)
        chosen = np.flatnonzero(self.device_shifts.where(**keys))
        if chosen.size == 0:
            return values[:0]
        return np.concatenate([values[starts[i] : ends[i]] for i in chosen])

    def fix_mask(self, **keys: object) -> np.ndarray:
        """Fixes of the device-shifts matching `keys` (no text compared per fix).

        A device-shift's fixes are contiguous, so the mask is each device-shift's
        answer repeated over its fixes.
        """
        return np.repeat(self.device_shifts.where(**keys), self.fixes_per_worn)


def _cat(parts: list[dict], cls: type[Table]) -> Table:
    names = [f.name for f in fields(cls)]
    if not parts:
        return cls(*(np.zeros(0) for _ in names))
    return cls(*(np.concatenate([p[n] for p in parts]) for n in names))


def _covered(times: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Which `times` fall inside any of the intervals [start, end] (in any order, overlapping)."""
    if starts.size == 0:
        return np.zeros(times.size, dtype=bool)
    # +1 at each start, -1 after each end; a time is covered where the running sum is positive
    edges = np.concatenate([starts, ends + 1])
    steps = np.concatenate([np.ones(starts.size), -np.ones(ends.size)])
    order = np.argsort(edges, kind="stable")
    running = np.cumsum(steps[order])
    at = np.searchsorted(edges[order], times, side="right") - 1
    return (at >= 0) & (running[np.maximum(at, 0)] > 0)


def false_alarm_s(w: Worn, lead_s: float) -> float:
    """Time a device held its wearer in breach while they were truly safe.

    Sampled on the 10 Hz truth: in breach, truly inside the safe zone, and not within
    lead_s of a true excursion (an early warning or the clearing dwell is not false).
    """
    t = w.truth_ms
    lead_ms = round(lead_s * 1000)
    breach = _covered(t, w.alert_ms, np.minimum(w.alert_end_ms, w.end_ms))
    near = _covered(t, w.excursion_start_ms - lead_ms, w.excursion_end_ms + lead_ms)
    false = breach & (w.truth_distance_m > 0) & ~near
    step_s = float(np.median(np.diff(t))) / 1000 if t.size > 1 else 0.0
    return float(false.sum()) * step_s


def build_rows(worn: list[Worn], *, lead_s: float = 30.0) -> Rows:
    """The four tables of a trial, from its device-shifts."""
    fixes, excursions, alerts, shifts = [], [], [], []
    for row, w in enumerate(worn):
        keys = {
            "supplier": w.supplier,
            "scenario": w.scenario,
            "firmware": w.firmware,
            "device": w.device_id,
            "shift": w.shift,
        }

        def full(n: int, keys: dict = keys, **more: object) -> dict[str, np.ndarray]:
            return {k: np.full(n, v, dtype=object) for k, v in {**keys, **more}.items()}

        # accuracy: each fix against the truth at the time it claims (no extrapolation)
        inside = (w.fix_ms >= w.truth_ms[0]) & (w.fix_ms <= w.truth_ms[-1])
        t = w.fix_ms[inside]
        de = w.x_m[inside] - np.interp(t, w.truth_ms, w.truth_x_m)
        dn = w.y_m[inside] - np.interp(t, w.truth_ms, w.truth_y_m)
        fixes.append(
            {
                "worn": np.full(t.size, row, dtype=np.int32),
                "error_east_m": de,
                "error_north_m": dn,
                "error_m": np.hypot(de, dn),
                "decide_ms": w.decide_ms[inside],
            }
        )
        hours = (w.end_ms - w.start_ms) / 3_600_000
        found = detection(
            w.excursion_start_ms,
            w.excursion_end_ms,
            w.alert_ms,
            hours,
            w.truth_ms,
            w.truth_distance_m,
            lead_s=lead_s,
            alert_end_ms=w.alert_end_ms,
        )
        n = w.excursion_start_ms.size
        hit = np.zeros(n, dtype=bool)
        hit[np.setdiff1d(np.arange(n), found.missed)] = True
        tta = np.full(n, np.nan)
        tta[hit] = found.time_to_alert_s
        over = np.full(n, np.nan)
        over[hit] = found.overshoot_m
        before = np.interp(w.excursion_start_ms - SPEED_WINDOW_MS, w.truth_ms, w.truth_distance_m)
        after = np.interp(w.excursion_start_ms + SPEED_WINDOW_MS, w.truth_ms, w.truth_distance_m)
        ordinal = np.arange(n)
        excursions.append(
            {
                **full(n, week=w.week, wearer=w.wearer),
                "repeat_key": np.array(
                    [f"{w.scenario}/{w.wearer}/{k}" for k in ordinal], dtype=object
                ),
                "start_ms": w.excursion_start_ms,
                "end_ms": w.excursion_end_ms,
                "depth_m": w.excursion_depth_m,
                "speed_mps": (before - after) / (2 * SPEED_WINDOW_MS / 1000),
                "detected": hit,
                "time_to_alert_s": tta,
                "overshoot_m": over,
            }
        )
        # alerts: where the breach log put the wearer, against where they truly were
        a = w.alert_ms
        tx = np.interp(a, w.truth_ms, w.truth_x_m)
        ty = np.interp(a, w.truth_ms, w.truth_y_m)
        window_start = w.excursion_start_ms - round(lead_s * 1000)
        in_window = (
            (a[:, None] <= w.excursion_end_ms[None, :])
            & (w.alert_end_ms[:, None] >= window_start[None, :])
        ).any(axis=1)
        alerts.append(
            {
                **full(a.size, week=w.week),
                "alert_ms": a,
                "log_offset_m": np.hypot(w.alert_x_m - tx, w.alert_y_m - ty),
                "log_time_offset_m": np.hypot(
                    w.alert_x_m - np.interp(w.alert_logged_ms, w.truth_ms, w.truth_x_m),
                    w.alert_y_m - np.interp(w.alert_logged_ms, w.truth_ms, w.truth_y_m),
                ),
                "publish_ms": w.publish_ms,
                "false": ~in_window,
            }
        )
        seen = availability(w.fix_ms, w.start_ms, w.end_ms, w.rate_hz)
        duration_s = (w.end_ms - w.start_ms) / 1000
        shifts.append(
            {
                **full(1, week=w.week, date=w.date, configuration_hash=w.configuration_hash),
                "rate_hz": np.array([w.rate_hz]),
                "observed_rate_hz": np.array([distinct(w.fix_ms).size / duration_s]),
                "hours": np.array([hours]),
                "expected": np.array([seen.expected]),
                "received": np.array([seen.received]),
                "sent": np.array([w.sent_fix_ms.size]),
                "gaps": np.array([seen.gaps]),
                "unprotected_s": np.array([seen.unprotected_s]),
                "false_alerts": np.array([found.false_alerts]),
                "false_alarm_s": np.array([false_alarm_s(w, lead_s)]),
                "breach_s": np.array(
                    [
                        float((np.minimum(w.alert_end_ms, w.end_ms) - w.alert_ms).clip(0).sum())
                        / 1000
                    ]
                ),
                "error_east_sum_m": np.array([float(de.sum())]),
                "error_north_sum_m": np.array([float(dn.sum())]),
                "uplink_p50_ms": np.array([np.median(w.uplink_ms) if w.uplink_ms.size else np.nan]),
            }
        )
    return Rows(
        _cat(fixes, FixRows),
        _cat(excursions, ExcursionRows),
        _cat(alerts, AlertRows),
        _cat(shifts, DeviceShiftRows),
        np.array([f["worn"].size for f in fixes], dtype=np.int64),
    )
