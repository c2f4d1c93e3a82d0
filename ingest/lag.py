"""Is this worker falling behind? The age of fixes when they reach it, across devices.

A worker that cannot keep up loses nothing: it acknowledges a fix only once stored, so
the broker holds the backlog. But every fix in that backlog is decided late, and so is
its alert. The worker cannot see the broker's queue, so it measures the backlog where it
shows: how old a fix is when it arrives (receive time minus the device's fix time).

One device can make that age large on its own: a burst of stale fixes after a tunnel, or
a clock that is wrong. So the measure is taken across devices: for each device, its
youngest fix in a window of wall time; then the median over devices. A whole fleet's
fixes arriving late means the delay is ours (or the broker's), not theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

FALLING_BEHIND = "falling-behind"


@dataclass
class LagWatch:
    """Pure: fed each batch's devices and fix ages, says when the alarm starts and ends.

    The alarm is raised once the median age has exceeded `raise_after_ms` for
    `windows_to_raise` windows in a row (a restart's brief backlog is not an alarm), and
    cleared by the first window below `clear_below_ms`.
    """

    window_ms: int = 1_000
    raise_after_ms: int = 2_000
    clear_below_ms: int = 1_000
    windows_to_raise: int = 3
    min_devices: int = 3  # fewer devices than this say nothing about the fleet
    raised: bool = False
    last_median_ms: float | None = None
    _window_start_ms: int | None = None
    _devices: list[str] = field(default_factory=list)
    _ages_ms: list[float] = field(default_factory=list)
    _late_windows: int = 0

    def observe(
        self, now_ms: int, devices: Sequence[str], ages_ms: Sequence[float]
    ) -> bool | None:
        """Take one batch (or a sample of it); True when the alarm starts, False when it ends.

        Kept as plain lists until the window closes: a batch is often one fix, and
        arrays made per batch would cost more than the fix's decision.
        """
        if self._window_start_ms is None:
            self._window_start_ms = now_ms
        self._devices.extend(devices)
        self._ages_ms.extend(ages_ms)
        if now_ms - self._window_start_ms < self.window_ms:
            return None
        return self._close_window(now_ms)

    def _close_window(self, now_ms: int) -> bool | None:
        devices = np.array(self._devices, dtype=object)
        ages = np.array(self._ages_ms, dtype=float)
        self._devices, self._ages_ms = [], []
        self._window_start_ms = now_ms
        names, which = np.unique(devices.astype(str), return_inverse=True)
        if len(names) == 0 and self.raised:  # nothing arrives, so nothing waits upstream
            self.raised, self._late_windows = False, 0
            return False
        if len(names) < self.min_devices:
            return None
        youngest = np.full(len(names), np.inf)
        np.minimum.at(youngest, which, ages)
        self.last_median_ms = float(np.median(youngest))
        if self.last_median_ms > self.raise_after_ms:
            self._late_windows += 1
        else:
            self._late_windows = 0
        if not self.raised and self._late_windows >= self.windows_to_raise:
            self.raised = True
            return True
        if self.raised and self.last_median_ms < self.clear_below_ms:
            self.raised = False
            return False
        return None

    def detail(self) -> str:
        return (
            f"fixes arrive a median {self.last_median_ms / 1000:.1f} s after their fix time "
            "across devices: the backlog is waiting in the broker, and alerts are that late"
        )
