"""Trial metrics against hand-computed cases, and the intervals against their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trials.metrics import accuracy, availability, detection

TRUTH_T = np.array([0, 10_000])
TRUTH_X = np.array([0.0, 10.0])  # walking east at 1 m/s
TRUTH_Y = np.array([0.0, 0.0])


def test_a_constant_error_is_all_bias_and_no_spread():
    t = np.arange(0, 10_001, 1000)
    fix_x = t / 1000 + 1.0  # always 1 m east of the truth
    a = accuracy(t, fix_x, np.zeros_like(fix_x), TRUTH_T, TRUTH_X, TRUTH_Y)
    assert a.fixes == 11
    assert (a.bias_east_m, a.bias_north_m) == pytest.approx((1.0, 0.0))
    assert a.precision_m == pytest.approx(0.0, abs=1e-12)
    assert (a.cep50_m, a.r95_m, a.max_m) == pytest.approx((1.0, 1.0, 1.0))
    assert a.drms2_m == pytest.approx(2.0)


def test_percentiles_are_empirical():
    t = np.arange(1000, 11_000, 1000)  # 10 fixes
    radial = np.arange(1.0, 11.0)  # 1 m … 10 m north of the truth
    a = accuracy(t, t / 1000, radial, TRUTH_T, TRUTH_X, TRUTH_Y)
    assert a.cep50_m == pytest.approx(5.5)  # the median of 1..10
    assert a.r95_m == pytest.approx(9.55)  # linear interpolation between 9 and 10
    assert a.max_m == 10.0
    assert a.drms2_m == pytest.approx(2 * math.sqrt(np.mean(radial**2)))
    assert a.bias_north_m == pytest.approx(5.5)
    assert a.precision_m == pytest.approx(np.std(radial))


def test_fixes_outside_the_truth_are_not_scored_against_a_guess():
    t = np.array([-5000, 5000, 15_000])
    a = accuracy(t, t / 1000, np.zeros(3), TRUTH_T, TRUTH_X, TRUTH_Y)
    assert a.fixes == 1


def test_detection_of_known_excursions_with_known_alert_times():
    starts = np.array([10_000, 50_000, 80_000])
    ends = np.array([20_000, 55_000, 85_000])
    alerts = np.array([12_000, 30_000, 49_000])  # 2 s late, a stray, 1 s early; the third missed
    d = detection(starts, ends, alerts, lead_s=5.0)
    assert d.excursions == 3 and list(d.detected) == [True, True, False]
    np.testing.assert_allclose(d.time_to_alert_s, [2.0, -1.0, np.nan])
    assert list(d.alert) == [0, 2, -1]
    assert list(d.missed) == [2] and not d.saturated.any()
    assert list(d.false_start) == [False, True, False] and d.false_alerts == 1


def test_availability_and_time_without_protection():
    received = np.r_[np.arange(0, 50_000, 1000), np.arange(70_000, 100_000, 1000)]
    a = availability(received, 0, 100_000, 1.0, gap_s=5.0, lost_after_s=10.0)
    assert (a.expected, a.received) == (100, 80)
    assert a.availability == pytest.approx(0.8)
    assert a.gaps == 1  # 49 s to 70 s
    assert a.unprotected_s == pytest.approx(21.0 - 10.0)


def test_a_simulated_run_scored_offline_finds_what_the_scenario_put_in():
    from dataclasses import replace

    from devices.sim.generate import simulate
    from devices.sim.scenario import load_scenario
    from geofence.breach import BreachConfig
    from loading.site_files import load_site
    from tests.conftest import ROOT
    from trials.harness.offline import decide_offline, score_run

    scenario = load_scenario(ROOT / "examples/scenarios/adjacent-open-line.toml")
    scenario = replace(scenario, duration_s=1800)
    site = load_site(scenario.site_file)
    sim = simulate(scenario, site)
    # as the example trial decides: its workers stand about 2 m inside between crossings
    decided = decide_offline(sim, site, BreachConfig(clearing_margin_m=0.5))
    scores = {s.worker: s for s in score_run(sim, decided)}
    walker, absorbed = scores["cess walker"], scores["absorbed"]
    # the RTK device (CEP50 0.05 m) is accurate; the SBAS one (0.8 m) is not, and says less
    assert walker.accuracy.cep50_m < 0.15
    assert 0.4 < absorbed.accuracy.cep50_m < 1.3
    assert (
        absorbed.accuracy.cep50_ci_m[0]
        <= absorbed.accuracy.cep50_m
        <= absorbed.accuracy.cep50_ci_m[1]
    )
    # every crossing the scenario scripts (7 off the cess, 8 into the six-foot) is a true
    # excursion, and each was detected by a fresh alert, early rather than late
    assert (walker.detection.excursions, absorbed.detection.excursions) == (7, 8)
    for worker in (walker, absorbed):
        assert int(np.sum(worker.detection.detected)) == worker.detection.excursions
        assert np.nanmax(worker.detection.time_to_alert_s) < 5.0
    assert np.nanmax(walker.detection.time_to_alert_s) < 2.0  # RTK at 1 Hz, 300 ms uplink
    # availability reflects the RTK device's 1 % drop rate
    assert walker.availability.availability == pytest.approx(0.99, abs=0.01)


def test_a_device_that_never_alerts_misses_every_excursion():
    d = detection(np.array([10_000, 50_000]), np.array([20_000, 60_000]), np.array([]))
    assert d.excursions == 2 and not d.detected.any() and not d.saturated.any()
    assert d.false_alerts == 0 and list(d.missed) == [0, 1]
    assert np.isnan(d.time_to_alert_s).all()


def test_a_breach_held_across_the_crossing_is_saturated_and_its_start_is_false():
    starts, ends = np.array([60_000]), np.array([70_000])
    # raised 100 s before the crossing and held through it: it says nothing of this crossing
    held = detection(starts, ends, np.array([-40_000]), np.array([75_000]), lead_s=5.0)
    assert not held.detected[0] and held.saturated[0] and held.false_alerts == 1
    assert np.isnan(held.time_to_alert_s[0])  # never floored to a flattering number
    # the same breach cleared before the window opened: missed (not saturated), still false
    early = detection(starts, ends, np.array([-40_000]), np.array([20_000]), lead_s=5.0)
    assert not early.detected[0] and not early.saturated[0] and early.false_alerts == 1


def test_false_alarm_time_counts_breach_while_truly_safe_away_from_excursions():
    from trials.metrics import alarm_seconds

    # a crossing at 50-60 s; its window is 45 s (lead 5 s) to 70 s (10 s to clear)
    excursion = (np.array([50_000]), np.array([60_000]))
    # 0-10 s: wholly false; 30-65 s: false from 30 s until the window opens at 45 s;
    # 5-8 s overlaps the first and is counted once
    breach, false = alarm_seconds(
        np.array([0, 30_000, 5_000]),
        np.array([10_000, 65_000, 8_000]),
        *excursion,
        0,
        100_000,
        lead_s=5.0,
        clear_allowance_s=10.0,
    )
    assert breach == pytest.approx(10 + 35)
    assert false == pytest.approx(10 + 15)
    # an alarm left on past the shift's end is counted to the end only
    breach, false = alarm_seconds(np.array([90_000]), np.array([500_000]), *excursion, 0, 100_000)
    assert (breach, false) == (pytest.approx(10.0), pytest.approx(10.0))


def test_verdicts_are_earned_by_their_bounds_and_rank_with_honest_ties():
    from trials.figures import Figures
    from trials.verdict import judge, rank

    def figures(r95, r95_ci, rate, rate_ci):
        values = dict.fromkeys(Figures.__dataclass_fields__, math.nan)
        values.update(r95_m=r95, r95_ci_m=r95_ci, detection_rate=rate, detection_ci=rate_ci)
        return Figures(**values)

    f = {
        "a": figures(0.9, (0.8, 1.1), 1.0, (0.9, 1.0)),  # both intervals reach across the limit
        "b": figures(0.85, (0.75, 0.95), 1.0, (0.995, 1.0)),  # both shown
        "c": figures(3.0, (2.8, 3.2), 0.5, (0.3, 0.7)),  # both shown missed
    }
    criteria = {"r95_m": 1.0, "detection_rate": 0.99}
    verdicts = {s: judge(f[s], criteria, {}) for s in f}
    # 100 % detected, but the bound (90 %) cannot show 99 %: not a pass
    assert [v.status for v in verdicts["a"]] == ["not demonstrated", "not demonstrated"]
    assert [v.status for v in verdicts["b"]] == ["pass", "pass"]
    assert [v.status for v in verdicts["c"]] == ["fail", "fail"]
    assert all(v.method for vs in verdicts.values() for v in vs)  # each says how it was bounded
    ranks = {r.supplier: r for r in rank(verdicts, f)}
    assert (ranks["b"].position, ranks["a"].position, ranks["c"].position) == (1, 2, 3)
    # two suppliers with the same outcomes and overlapping intervals tie
    f["d"] = figures(0.88, (0.79, 1.05), 1.0, (0.9, 1.0))
    verdicts["d"] = judge(f["d"], criteria, {})
    ranks = {r.supplier: r for r in rank(verdicts, f)}
    assert ranks["a"].position == ranks["d"].position == 2 and ranks["a"].tied


def _worn(**overrides):
    from trials.collect import Worn

    t = np.arange(0, 100_000, 100)  # 100 s of truth at 10 Hz, standing at the origin
    base = dict(
        shift=0, run_id="r", scenario="s", week=1, date="2026-06-01", night=False,
        device_id="a/1", supplier="a", wearer="w", firmware="1", configuration={},
        configuration_hash="h", rate_hz=1.0, approved_rate_hz=1.0, start_ms=0, end_ms=100_000,
        fix_ms=np.arange(0, 100_000, 1000), x_m=np.zeros(100), y_m=np.zeros(100),
        decide_ms=np.full(100, 2.0), truth_ms=t, truth_x_m=np.zeros(t.size),
        truth_y_m=np.zeros(t.size), truth_distance_m=np.ones(t.size),
        excursion_start_ms=np.zeros(0, np.int64), excursion_end_ms=np.zeros(0, np.int64),
        excursion_depth_m=np.zeros(0), alert_ms=np.zeros(0, np.int64),
        alert_end_ms=np.zeros(0, np.int64), alert_logged_ms=np.zeros(0, np.int64),
        alert_x_m=np.zeros(0), alert_y_m=np.zeros(0), publish_ms=np.zeros(0),
        uplink_ms=np.full(100, 300.0), sent_fix_ms=np.arange(0, 100_000, 1000),
    )  # fmt: skip
    base.update(overrides)
    return Worn(**base)


def test_trial_figures_from_a_known_set_of_errors_and_a_known_alert():
    from trials.figures import figures
    from trials.rows import build_rows

    # errors: 60 fixes 3 m east, 40 fixes 4 m north -> radial 3 (x60) and 4 (x40)
    x = np.r_[np.full(60, 3.0), np.zeros(40)]
    y = np.r_[np.zeros(60), np.full(40, 4.0)]
    distance = np.ones(1000)
    distance[400:500] = -0.5  # truly outside from 40 s to 50 s
    worn = _worn(
        x_m=x,
        y_m=y,
        truth_distance_m=distance,
        excursion_start_ms=np.array([40_000]),
        excursion_end_ms=np.array([50_000]),
        excursion_depth_m=np.array([0.5]),
        alert_ms=np.array([41_500, 80_000]),  # 1.5 s after the crossing; then a stray
        alert_end_ms=np.array([52_000, 81_000]),
        alert_logged_ms=np.array([41_000, 80_000]),
        alert_x_m=np.array([0.0, 0.0]),
        alert_y_m=np.array([2.0, 0.0]),
        publish_ms=np.array([1.0, 1.0]),
    )
    f = figures(build_rows([worn]), supplier="a")
    assert f.fixes == 100
    assert f.cep50_m == 3.0 and f.r95_m == 4.0 and f.max_error_m == 4.0
    assert f.drms2_m == pytest.approx(2 * math.sqrt((60 * 9 + 40 * 16) / 100))
    assert (f.bias_east_m, f.bias_north_m) == (pytest.approx(1.8), pytest.approx(1.6))
    # precision: spread about the mean error
    spread = np.sqrt(np.mean((x - 1.8) ** 2 + (y - 1.6) ** 2))
    assert f.precision_m == pytest.approx(spread)
    assert (f.excursions, f.detected, f.detection_rate) == (1, 1, 1.0)
    assert f.time_to_alert_p50_s == 1.5 and f.overshoot_p50_m == 0.5
    assert f.false_alerts == 1
    assert f.false_alerts_per_device_hour == pytest.approx(1 / (100 / 3600))
    assert f.breach_log_offset_p50_m == pytest.approx(1.0)  # median of 2 m and 0 m
    # the stray breach, 80-81 s, truly safe: 1.0 s of false alarm in 100 s; the true one
    # (41.5-52 s) is within its window (35 s to 60 s)
    assert f.false_alarm_share == pytest.approx(1.0 / 100)
    assert f.breach_share == pytest.approx((10.5 + 1.0) / 100)
    assert f.availability == 1.0 and f.unprotected_s == 0.0
