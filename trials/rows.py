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
from trials.metrics import (
    Detection,
    alarm_seconds,
    availability,
    detection,
    distinct,
    merge_excursions,
)

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
    worn: np.ndarray  # row of DeviceShiftRows (the cluster a bootstrap resamples)
    wearer: np.ndarray
    repeat_key: np.ndarray  # scenario/wearer/ordinal: the same movement in each repeat
    start_ms: np.ndarray
    end_ms: np.ndarray
    depth_m: np.ndarray  # furthest the wearer truly went beyond the edge (exact, not clamped)
    speed_mps: np.ndarray  # how fast the wearer crossed the edge (outward)
    detected: np.ndarray  # a fresh alert started in the detection window
    saturated: np.ndarray  # not detected: an alarm was already on as the window opened
    late: np.ndarray  # not detected: alerted only after the wearer was back
    time_to_alert_s: np.ndarray  # NaN where not detected; negative: alerted before the crossing
    overshoot_m: np.ndarray  # how far truly outside at the alert (NaN where not detected)
    # the same crossing judged on the device's own alarms, where it reports them
    own_reported: np.ndarray
    own_detected: np.ndarray
    own_saturated: np.ndarray
    own_time_to_alert_s: np.ndarray


@dataclass(frozen=True)
class AlertRows(Keyed):
    worn: np.ndarray  # row of DeviceShiftRows
    alert_ms: np.ndarray
    log_offset_m: np.ndarray  # breach log position against the true position at the alert
    log_offset_at_logged_time_m: np.ndarray  # ...against the truth at the time the log gives
    publish_ms: np.ndarray  # measured: decision -> alert published
    false: np.ndarray  # started outside every detection window: the wearer was truly safe


@dataclass(frozen=True)
class OwnAlarmRows(Keyed):
    """The devices' own breach alarms (reported on their alarm topic), one row each."""

    worn: np.ndarray
    alarm_ms: np.ndarray
    offset_m: np.ndarray  # where the device said the wearer was, against the truth then
    false: np.ndarray  # started outside every detection window


@dataclass(frozen=True)
class DeviceShiftRows(Keyed):
    date: np.ndarray
    configuration_hash: np.ndarray
    rate_hz: np.ndarray  # configured on the device that shift
    approved_rate_hz: np.ndarray  # on the supplier's acceptance certificate
    observed_rate_hz: np.ndarray  # distinct fixes stored per second of shift
    hours: np.ndarray
    expected: np.ndarray  # fixes the approved rate promises
    expected_configured: np.ndarray  # ...and the rate the device was really set to
    received: np.ndarray
    sent: np.ndarray  # distinct fixes the device sent
    gaps: np.ndarray
    unprotected_s: np.ndarray
    false_alerts: np.ndarray  # alert starts while the wearer was truly safe
    breach_s: np.ndarray  # time the device held its wearer in breach
    false_alarm_s: np.ndarray  # ...while the wearer was truly safe (outside every window)
    uplink_p50_ms: np.ndarray  # simulated device -> broker
    own_reported: np.ndarray  # the device reported its own alarms this shift
    own_false_alerts: np.ndarray
    own_false_alarm_s: np.ndarray
    own_breach_s: np.ndarray
    error_east_sum_m: np.ndarray  # sums of the fixes' errors: means without touching fixes
    error_north_sum_m: np.ndarray


@dataclass(frozen=True)
class Rows:
    fixes: FixRows
    excursions: ExcursionRows
    alerts: AlertRows
    device_shifts: DeviceShiftRows
    own_alarms: OwnAlarmRows

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


def build_rows(
    worn: list[Worn], *, lead_s: float = 5.0, clear_allowance_s: float = 10.0
) -> Rows:
    """The four tables of a trial, from its device-shifts.

    `lead_s`: how long before the true crossing a fresh alert still counts as
    detecting it; `clear_allowance_s`: how long after the wearer is back inside an
    alarm may take to clear before it counts as false (trials.metrics).
    """
    parts: dict[str, list[dict]] = {
        "fixes": [], "excursions": [], "alerts": [], "device_shifts": [], "own_alarms": []
    }  # fmt: skip
    for row, w in enumerate(worn):
        for name, part in _device_shift(row, w, lead_s, clear_allowance_s).items():
            parts[name].append(part)
    return Rows(
        _cat(parts["fixes"], FixRows),
        _cat(parts["excursions"], ExcursionRows),
        _cat(parts["alerts"], AlertRows),
        _cat(parts["device_shifts"], DeviceShiftRows),
        _cat(parts["own_alarms"], OwnAlarmRows),
        np.array([f["worn"].size for f in parts["fixes"]], dtype=np.int64),
    )


@dataclass(frozen=True)
class _Judged:
    """Alarms (trackfence's or the device's own) against the true crossings: detection,
    then time in breach, and in breach while the wearer was truly safe."""

    found: Detection
    breach_s: float
    false_s: float


def _device_shift(row: int, w: Worn, lead_s: float, clear_allowance_s: float) -> dict[str, dict]:
    """One device-shift's rows of each table (`row`: its row in the device-shift table).

    Its crossings are merged first: a re-crossing before the wearer has been back for
    the clearing allowance is the same excursion (a device rightly keeps its alarm on
    through it). Then trackfence's alarms and the device's own are judged by the same
    definitions against them.
    """
    fixes = _fix_rows(row, w)
    x_start, x_end, x_depth = merge_excursions(
        w.excursion_start_ms, w.excursion_end_ms, w.excursion_depth_m, clear_allowance_s
    )

    def judged(start_ms: np.ndarray, end_ms: np.ndarray) -> _Judged:
        found = detection(
            x_start, x_end, start_ms, end_ms, lead_s=lead_s, late_within_s=clear_allowance_s
        )
        seconds = alarm_seconds(
            start_ms, end_ms, x_start, x_end, w.start_ms, w.end_ms,
            lead_s=lead_s, clear_allowance_s=clear_allowance_s,
        )  # fmt: skip
        return _Judged(found, *seconds)

    platform = judged(w.alert_ms, w.alert_end_ms)
    own = judged(w.own_alarm_ms, w.own_alarm_end_ms)
    return {
        "fixes": fixes,
        "excursions": _excursion_rows(row, w, (x_start, x_end, x_depth), platform.found, own.found),
        "alerts": _alert_rows(row, w, platform.found),
        "own_alarms": _own_alarm_rows(row, w, own.found),
        "device_shifts": _shift_row(w, fixes, platform, own),
    }


def _keyed(w: Worn, n: int, **more: object) -> dict[str, np.ndarray]:
    """The keys every row of a device-shift is sliced by (and `more`), repeated n times."""
    keys = {
        "supplier": w.supplier,
        "scenario": w.scenario,
        "firmware": w.firmware,
        "device": w.device_id,
        "shift": w.shift,
        **more,
    }
    return {k: np.full(n, v, dtype=object) for k, v in keys.items()}


def _fix_rows(row: int, w: Worn) -> dict[str, np.ndarray]:
    """Accuracy: each fix against the truth at the time it claims (no extrapolation)."""
    inside = (w.fix_ms >= w.truth_ms[0]) & (w.fix_ms <= w.truth_ms[-1])
    t = w.fix_ms[inside]
    de = w.x_m[inside] - np.interp(t, w.truth_ms, w.truth_x_m)
    dn = w.y_m[inside] - np.interp(t, w.truth_ms, w.truth_y_m)
    return {
        "worn": np.full(t.size, row, dtype=np.int32),
        "error_east_m": de,
        "error_north_m": dn,
        "error_m": np.hypot(de, dn),
        "decide_ms": w.decide_ms[inside],
    }


def _excursion_rows(row: int, w: Worn, crossings: tuple[np.ndarray, np.ndarray, np.ndarray],
                    found: Detection, own: Detection) -> dict[str, np.ndarray]:  # fmt: skip
    """Each true crossing as this device saw it: detected, saturated or late, its time to
    alert and how far the wearer truly was outside at the alert; how fast the wearer
    crossed; and the same crossing judged on the device's own alarms."""
    x_start, x_end, x_depth = crossings
    n = x_start.size
    alerted_at = np.zeros(n, dtype=np.int64)  # a device with no alert at all is scored too
    alerted_at[found.detected] = w.alert_ms[found.alert[found.detected]]
    truly = np.interp(alerted_at, w.truth_ms, w.truth_distance_m)
    overshoot = np.where(found.detected, np.maximum(0.0, -truly), np.nan)
    before = np.interp(x_start - SPEED_WINDOW_MS, w.truth_ms, w.truth_distance_m)
    after = np.interp(x_start + SPEED_WINDOW_MS, w.truth_ms, w.truth_distance_m)
    return {
        **_keyed(w, n, week=w.week, wearer=w.wearer),
        "worn": np.full(n, row, dtype=np.int64),
        "repeat_key": np.array([f"{w.scenario}/{w.wearer}/{k}" for k in range(n)], dtype=object),
        "start_ms": x_start,
        "end_ms": x_end,
        "depth_m": x_depth,
        "speed_mps": (before - after) / (2 * SPEED_WINDOW_MS / 1000),
        "detected": found.detected,
        "saturated": found.saturated,
        "late": found.late,
        "time_to_alert_s": found.time_to_alert_s,
        "overshoot_m": overshoot,
        "own_reported": np.full(n, w.own_reported),
        "own_detected": own.detected & w.own_reported,
        "own_saturated": own.saturated & w.own_reported,
        "own_time_to_alert_s": own.time_to_alert_s,
    }


def _alert_rows(row: int, w: Worn, found: Detection) -> dict[str, np.ndarray]:
    """Each breach alert: where the breach log put the wearer, against where they truly were
    at the alert and at the time the log gives."""
    a = w.alert_ms
    tx = np.interp(a, w.truth_ms, w.truth_x_m)
    ty = np.interp(a, w.truth_ms, w.truth_y_m)
    # a logged time outside the truth is not compared with a guess (as for fixes)
    logged_in_truth = (w.alert_logged_ms >= w.truth_ms[0]) & (w.alert_logged_ms <= w.truth_ms[-1])
    return {
        **_keyed(w, a.size, week=w.week),
        "worn": np.full(a.size, row, dtype=np.int64),
        "alert_ms": a,
        "log_offset_m": np.hypot(w.alert_x_m - tx, w.alert_y_m - ty),
        "log_offset_at_logged_time_m": np.where(
            logged_in_truth,
            np.hypot(
                w.alert_x_m - np.interp(w.alert_logged_ms, w.truth_ms, w.truth_x_m),
                w.alert_y_m - np.interp(w.alert_logged_ms, w.truth_ms, w.truth_y_m),
            ),
            np.nan,
        ),
        "publish_ms": w.publish_ms,
        "false": found.false_start,
    }


def _own_alarm_rows(row: int, w: Worn, own: Detection) -> dict[str, np.ndarray]:
    """Each of the device's own breach alarms: where it said the wearer was, against the
    truth then, and whether it started while the wearer was truly safe."""
    own_truth = (
        np.hypot(
            w.own_alarm_x_m - np.interp(w.own_alarm_ms, w.truth_ms, w.truth_x_m),
            w.own_alarm_y_m - np.interp(w.own_alarm_ms, w.truth_ms, w.truth_y_m),
        )
        if w.own_alarm_ms.size
        else np.zeros(0)
    )
    return {
        **_keyed(w, w.own_alarm_ms.size, week=w.week),
        "worn": np.full(w.own_alarm_ms.size, row, dtype=np.int64),
        "alarm_ms": w.own_alarm_ms,
        "offset_m": own_truth,
        "false": own.false_start,
    }


def _shift_row(w: Worn, fixes: dict[str, np.ndarray], platform: _Judged,
               own: _Judged) -> dict[str, np.ndarray]:  # fmt: skip
    """The device-shift itself: availability (owed at the approved rate: a device set
    slower is charged for it), false alarms, time in breach, and its errors' sums."""
    seen = availability(w.fix_ms, w.start_ms, w.end_ms, w.approved_rate_hz)
    configured = max(1, round((w.end_ms - w.start_ms) / 1000 * w.rate_hz))
    duration_s = (w.end_ms - w.start_ms) / 1000
    return {
        **_keyed(w, 1, week=w.week, date=w.date, configuration_hash=w.configuration_hash),
        "rate_hz": np.array([w.rate_hz]),
        "approved_rate_hz": np.array([w.approved_rate_hz]),
        "observed_rate_hz": np.array([distinct(w.fix_ms).size / duration_s]),
        "hours": np.array([(w.end_ms - w.start_ms) / 3_600_000]),
        "expected": np.array([seen.expected]),
        "expected_configured": np.array([configured]),
        "received": np.array([seen.received]),
        "sent": np.array([w.sent_fix_ms.size]),
        "gaps": np.array([seen.gaps]),
        "unprotected_s": np.array([seen.unprotected_s]),
        "false_alerts": np.array([platform.found.false_alerts]),
        "false_alarm_s": np.array([platform.false_s]),
        "breach_s": np.array([platform.breach_s]),
        "error_east_sum_m": np.array([float(fixes["error_east_m"].sum())]),
        "error_north_sum_m": np.array([float(fixes["error_north_m"].sum())]),
        "uplink_p50_ms": np.array([np.median(w.uplink_ms) if w.uplink_ms.size else np.nan]),
        "own_reported": np.array([w.own_reported]),
        "own_false_alerts": np.array([own.found.false_alerts]),
        "own_false_alarm_s": np.array([own.false_s]),
        "own_breach_s": np.array([own.breach_s]),
    }
