"""Trial metrics against hand-computed cases, and the intervals against their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trials.intervals import block_bootstrap_percentile, wilson
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


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (5, 10, 0.2366, 0.7634),
        (95, 100, 0.8882, 0.9785),
    ],
)
def test_wilson_interval_matches_its_published_values(k, n, low, high):
    lo, hi = wilson(k, n)
    assert (lo, hi) == pytest.approx((low, high), abs=1e-4)


def test_wilson_refuses_impossible_counts_and_says_nothing_of_no_trials():
    with pytest.raises(ValueError):
        wilson(11, 10)
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_block_bootstrap_brackets_the_percentile_and_respects_correlation():
    rng = np.random.default_rng(3)
    white = rng.normal(size=20_000)
    lo, hi = block_bootstrap_percentile(white, 50, block=1)
    assert lo < np.median(white) < hi
    assert lo < 0 < hi  # the true median
    # a slowly wandering series knows its median less well than white noise does
    walk = np.convolve(rng.normal(size=20_100), np.ones(100) / 10, mode="valid")[:20_000]
    wl, wh = block_bootstrap_percentile(walk, 50, block=200)
    naive_l, naive_h = block_bootstrap_percentile(walk, 50, block=1)
    assert (wh - wl) > 2 * (naive_h - naive_l)


def test_detection_of_known_excursions_with_known_alert_times():
    starts = np.array([10_000, 50_000, 80_000])
    ends = np.array([20_000, 55_000, 85_000])
    alerts = np.array([12_000, 30_000, 49_000])  # 2 s late, a stray, 1 s early; the third missed
    truth_t = np.arange(0, 100_000, 100)
    distance = np.where((truth_t >= 10_000) & (truth_t < 20_000), -0.4, 1.0)
    d = detection(
        starts,
        ends,
        alerts,
        device_hours=2.0,
        truth_time_ms=truth_t,
        truth_distance_m=distance,
        lead_s=5.0,
    )
    assert (d.excursions, d.detected) == (3, 2)
    np.testing.assert_allclose(d.time_to_alert_s, [2.0, -1.0])
    np.testing.assert_allclose(d.overshoot_m, [0.4, 0.0])  # outside by 0.4 m at the first
    assert list(d.missed) == [2]
    assert d.false_alerts == 1 and d.false_alerts_per_device_hour == 0.5
    assert d.detection_rate == pytest.approx(2 / 3)
    assert d.detection_ci == pytest.approx(wilson(2, 3))


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
    from tests.conftest import ROOT
    from trackfence.sites import load_site
    from trials.score import decide_offline, score_run

    scenario = load_scenario(ROOT / "examples/scenarios/adjacent-open-line.toml")
    scenario = replace(scenario, duration_s=1800)
    site = load_site(scenario.site_file)
    sim = simulate(scenario, site)
    scores = {s.worker: s for s in score_run(sim, decide_offline(sim, site, BreachConfig()))}
    walker, absorbed = scores["cess walker"], scores["absorbed"]
    # the RTK device (CEP50 0.05 m) is accurate; the SBAS one (0.8 m) is not, and says less
    assert walker.accuracy.cep50_m < 0.15
    assert 0.4 < absorbed.accuracy.cep50_m < 1.3
    assert (
        absorbed.accuracy.cep50_ci_m[0]
        <= absorbed.accuracy.cep50_m
        <= absorbed.accuracy.cep50_ci_m[1]
    )
    # the one true excursion was detected, early rather than late
    assert (absorbed.detection.excursions, absorbed.detection.detected) == (1, 1)
    assert absorbed.detection.time_to_alert_s[0] < 5.0
    assert walker.detection.excursions == 0
    # availability reflects the RTK device's 1 % drop rate
    assert walker.availability.availability == pytest.approx(0.99, abs=0.01)


def test_a_device_that_never_alerts_misses_every_excursion():
    d = detection(np.array([10_000, 50_000]), np.array([20_000, 60_000]), np.array([]), 1.0)
    assert (d.excursions, d.detected, d.false_alerts) == (2, 0, 0)
    assert d.detection_rate == 0.0 and list(d.missed) == [0, 1]
    assert d.time_to_alert_s.size == 0
