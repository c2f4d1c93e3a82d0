"""The falling-behind watch: a fleet's late fixes raise it, one device's stale burst does not."""

from __future__ import annotations

import numpy as np

from ingest.lag import LagWatch


def feed(watch: LagWatch, start_ms: int, seconds: int, ages_ms: dict[str, float]):
    """One batch every 100 ms for `seconds`, every device with the given age; the changes seen."""
    devices = np.array(list(ages_ms), dtype=object)
    ages = np.array(list(ages_ms.values()), dtype=float)
    changes = []
    for k in range(seconds * 10 + 1):
        change = watch.observe(start_ms + 100 * k, devices, ages)
        if change is not None:
            changes.append((start_ms + 100 * k, change))
    return changes


FLEET = [f"acme/d{k}" for k in range(10)]


def test_a_fleet_arriving_late_raises_the_alarm_after_three_windows_and_clears_when_current():
    watch = LagWatch()
    assert feed(watch, 0, 5, dict.fromkeys(FLEET, 200.0)) == []
    raised = feed(watch, 5_100, 5, dict.fromkeys(FLEET, 4_000.0))
    assert [c for _, c in raised] == [True]
    assert raised[0][0] - 5_100 >= 2_000  # not on the first late window
    assert watch.raised and "4.0 s" in watch.detail()
    cleared = feed(watch, 10_200, 3, dict.fromkeys(FLEET, 150.0))
    assert [c for _, c in cleared] == [False] and not watch.raised


def test_one_device_bursting_stale_fixes_after_a_tunnel_is_not_the_fleet_falling_behind():
    watch = LagWatch()
    ages = dict.fromkeys(FLEET, 200.0) | {"acme/tunnel": 600_000.0}
    assert feed(watch, 0, 10, ages) == []
    assert watch.last_median_ms == 200.0


def test_a_device_counts_its_youngest_fix_so_its_own_backlog_does_not_outvote_it():
    watch = LagWatch(min_devices=1)
    # device a sends a backlog (old) and then live fixes in one window: it is current
    watch.observe(0, np.array(["a", "a", "a"], dtype=object), np.array([9e3, 8e3, 50.0]))
    watch.observe(1_000, np.array([], dtype=object), np.array([]))
    assert watch.last_median_ms == 50.0


def test_too_few_devices_give_no_verdict_and_silence_clears_a_raised_alarm():
    watch = LagWatch()
    assert feed(watch, 0, 10, {"acme/a": 9_000.0, "acme/b": 9_000.0}) == []
    assert watch.last_median_ms is None
    feed(watch, 20_000, 4, dict.fromkeys(FLEET, 9_000.0))
    assert watch.raised
    quiet = [watch.observe(30_000 + 250 * k, np.array([], object), np.array([])) for k in range(9)]
    assert False in quiet and not watch.raised
