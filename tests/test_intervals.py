"""Confidence bounds against published values, their definitions and simulated coverage.

Every bound here is one-sided at `confidence`; the pair is a (2C - 1) interval.
"""

import math
import time

import numpy as np
import pytest
from scipy.stats import binom, chi2

from trials import intervals
from trials.intervals import (
    clopper_pearson,
    cluster_bootstrap_percentiles,
    cluster_bootstrap_ratio,
    order_statistic_bounds,
    poisson_rate,
    values_needed,
    zero_event_exposure,
    zero_failure_trials,
)

# --- Clopper-Pearson -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "confidence", "low", "high"),
    [
        (0, 10, 0.95, 0.0, 1 - 0.05 ** (1 / 10)),  # 0.2589, the one-sided "rule of three" kind
        (10, 10, 0.95, 0.05 ** (1 / 10), 1.0),
        # two-sided 95 % = one-sided 97.5 % each end, as tabulated (and R's binom.test)
        (5, 10, 0.975, 0.1871, 0.8129),
        (95, 100, 0.975, 0.8872, 0.9836),
        (0, 20, 0.975, 0.0, 0.1684),
    ],
)
def test_clopper_pearson_matches_published_values(k, n, confidence, low, high):
    assert clopper_pearson(k, n, confidence) == pytest.approx((low, high), abs=1e-4)


def test_clopper_pearson_is_the_zero_failure_rule():
    assert clopper_pearson(299, 299)[0] >= 0.99
    assert clopper_pearson(298, 298)[0] < 0.99
    assert zero_failure_trials(0.99) == 299
    assert zero_failure_trials(0.999) == 2995
    assert zero_failure_trials(0.99, confidence=0.9) == 230  # ln 0.1 / ln 0.99 = 229.1


@pytest.mark.parametrize(
    ("rate", "confidence"),
    [(0.99, 0.95), (0.999, 0.95), (0.95, 0.9), (0.5, 0.75), (0.1 ** (1 / 7), 0.9), (0.9, 0.99)],
)
def test_zero_failure_trials_agrees_with_clopper_pearson_to_the_last_bit(rate, confidence):
    # (0.5, 0.75) and (0.1^(1/7), 0.9) put ln(1-C)/ln(R) on an integer: decided by the bits
    n = zero_failure_trials(rate, confidence)
    assert clopper_pearson(n, n, confidence)[0] >= rate
    assert n == 1 or clopper_pearson(n - 1, n - 1, confidence)[0] < rate
    assert abs(n - math.log(1 - confidence) / math.log(rate)) <= 1 + 1e-9


def test_clopper_pearson_refuses_impossible_counts_and_says_nothing_of_no_trials():
    for k, n in [(11, 10), (-1, 10), (0, -1)]:
        with pytest.raises(ValueError):
            clopper_pearson(k, n)
    with pytest.raises(ValueError):
        clopper_pearson(1, 2, confidence=1.0)
    with pytest.raises(TypeError):
        clopper_pearson(1.5, 2)
    assert all(math.isnan(v) for v in clopper_pearson(0, 0))
    assert clopper_pearson(np.int64(3), np.int64(4)) == clopper_pearson(3, 4)


def test_clopper_pearson_covers_at_least_its_confidence():
    rng = np.random.default_rng(11)
    n, p = 60, 0.97
    k = rng.binomial(n, p, size=20_000)
    bounds = {j: clopper_pearson(j, n) for j in np.unique(k)}
    low = np.array([bounds[j][0] for j in k])
    high = np.array([bounds[j][1] for j in k])
    assert (low <= p).mean() >= 0.95 and (p <= high).mean() >= 0.95


# --- Poisson rates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "upper"), [(0, 2.9957), (1, 4.7439), (2, 6.2958), (3, 7.7537), (4, 9.1535), (5, 10.5130)]
)
def test_poisson_upper_bounds_match_the_published_table(k, upper):
    assert poisson_rate(k, 1.0)[1] == pytest.approx(upper, abs=1e-4)


def test_poisson_rate_of_no_events_is_the_rule_of_three():
    assert poisson_rate(0, 1.0) == pytest.approx((0.0, 2.9957), abs=1e-4)
    assert poisson_rate(0, 10.0)[1] == pytest.approx(-math.log(0.05) / 10, rel=1e-12)
    # two-sided 95 % (Garwood) for 3 events, as tabulated
    assert poisson_rate(3, 1.0, 0.975) == pytest.approx((0.6187, 8.7673), abs=1e-4)


def test_poisson_rate_of_three_events_in_12_hours():
    low, high = poisson_rate(3, 12.1)
    assert low == pytest.approx(chi2.ppf(0.05, 6) / 2 / 12.1, rel=1e-12)
    assert high == pytest.approx(chi2.ppf(0.95, 8) / 2 / 12.1, rel=1e-12)
    assert (low, high) == pytest.approx((0.8177 / 12.1, 7.7537 / 12.1), rel=1e-4)
    # coverage by simulation: a true rate near the observed one, counts in 12.1 h
    rng = np.random.default_rng(7)
    for rate in (3 / 12.1, 0.1, 0.8):
        counts = rng.poisson(rate * 12.1, size=20_000)
        bounds = {k: poisson_rate(k, 12.1) for k in np.unique(counts)}
        lows = np.array([bounds[k][0] for k in counts])
        highs = np.array([bounds[k][1] for k in counts])
        assert (lows <= rate).mean() >= 0.95 and (rate <= highs).mean() >= 0.95


def test_poisson_rate_without_exposure_says_nothing_and_refuses_negative_counts():
    for exposure in (0.0, -1.0, math.inf, math.nan):
        assert all(math.isnan(v) for v in poisson_rate(2, exposure))
    with pytest.raises(ValueError):
        poisson_rate(-1, 1.0)


@pytest.mark.parametrize(("rate", "confidence"), [(0.01, 0.95), (1 / 3, 0.9), (2.5, 0.99)])
def test_zero_event_exposure_demonstrates_the_rate_with_poisson_rate(rate, confidence):
    exposure = zero_event_exposure(rate, confidence)
    assert exposure == pytest.approx(-math.log(1 - confidence) / rate, rel=1e-12)
    assert poisson_rate(0, exposure, confidence)[1] <= rate
    assert poisson_rate(0, exposure * (1 - 1e-9), confidence)[1] > rate
    assert zero_event_exposure(0.01) == pytest.approx(299.57, abs=0.01)


# --- order statistics ----------------------------------------------------------------------


def _ranks_by_definition(n, q, confidence):
    """1-based ranks of the bounds, by looping over the definition (no vectorising)."""
    p = q / 100
    upper = next((k for k in range(1, n + 1) if binom.cdf(k - 1, n, p) >= confidence), None)
    lower = max((j for j in range(1, n + 1) if binom.sf(j - 1, n, p) >= confidence), default=None)
    return lower, upper


@pytest.mark.parametrize(
    ("n", "q", "confidence"),
    [(10, 50, 0.95), (100, 95, 0.95), (59, 95, 0.95), (58, 95, 0.95), (300, 99, 0.95),
     (1000, 95, 0.9), (3, 10, 0.95), (20, 50, 0.6)],
)  # fmt: skip
def test_order_statistic_bounds_take_the_ranks_of_their_definition(n, q, confidence):
    values = np.arange(1.0, n + 1)[::-1]  # the k-th smallest is k, whatever the order given
    lower, upper = _ranks_by_definition(n, q, confidence)
    low, high = order_statistic_bounds(values, q, confidence)
    assert low == (lower if lower else -math.inf)
    assert high == (upper if upper else math.inf)


def test_order_statistic_bounds_known_ranks_and_values_needed():
    x = np.arange(1.0, 101)
    assert order_statistic_bounds(x, 95)[1] == 99  # X(99) of 100 bounds p95 at 95 %
    assert order_statistic_bounds(np.arange(1.0, 11), 50) == (2, 9)  # the median of 10
    assert values_needed(95) == 59
    assert values_needed(99) == 299
    assert values_needed(50) == 5  # 1 - 0.5^5 = 0.969
    assert order_statistic_bounds(np.ones(58), 95)[1] == math.inf
    assert order_statistic_bounds(np.ones(59), 95)[1] == 1.0
    assert order_statistic_bounds(np.ones(298), 99)[1] == math.inf
    assert order_statistic_bounds(np.ones(299), 99)[1] == 1.0


@pytest.mark.parametrize(
    ("q", "confidence"), [(95, 0.95), (99, 0.95), (50, 0.75), (90, 0.9), (99.9, 0.99)]
)
def test_values_needed_agrees_with_order_statistic_bounds(q, confidence):
    n = values_needed(q, confidence)
    assert math.isfinite(order_statistic_bounds(np.ones(n), q, confidence)[1])
    assert n == 1 or order_statistic_bounds(np.ones(n - 1), q, confidence)[1] == math.inf


def test_order_statistic_bounds_cover_the_true_percentile():
    rng = np.random.default_rng(5)
    true_p95 = math.log(20)  # of the unit exponential
    samples = rng.exponential(size=(4000, 100))
    bounds = np.array([order_statistic_bounds(s, 95) for s in samples])
    upper_coverage = (true_p95 <= bounds[:, 1]).mean()
    lower_coverage = (bounds[:, 0] <= true_p95).mean()
    # exact coverages: P(X(99) >= xi) = binom.cdf(98, 100, .95) = 0.963, and the lower's
    lower_rank, upper_rank = _ranks_by_definition(100, 95, 0.95)
    exact_upper = binom.cdf(upper_rank - 1, 100, 0.95)
    exact_lower = binom.sf(lower_rank - 1, 100, 0.95)
    sd = math.sqrt(0.05 * 0.95 / 4000)
    assert exact_upper >= 0.95 and exact_lower >= 0.95
    assert abs(upper_coverage - exact_upper) < 4 * sd and abs(lower_coverage - exact_lower) < 4 * sd
    assert upper_coverage >= 0.94 and lower_coverage >= 0.94


def test_order_statistic_bounds_ignore_nan_and_scale():
    x = np.array([np.nan, *range(1, 101), np.nan], dtype=float)
    assert order_statistic_bounds(x, 95) == order_statistic_bounds(np.arange(1.0, 101), 95)
    assert all(math.isnan(v) for v in order_statistic_bounds(np.array([np.nan]), 95))
    assert all(math.isnan(v) for v in order_statistic_bounds(np.array([]), 95))
    with pytest.raises(ValueError):
        order_statistic_bounds(x, 100)
    # a million values: the ranks come from a window of binomial CDFs, checked at its edges
    big = np.random.default_rng(1).permutation(1_000_000).astype(float) + 1
    p = 0.95
    low, high = order_statistic_bounds(big, 95)
    assert binom.cdf(high - 1, big.size, p) >= 0.95 > binom.cdf(high - 2, big.size, p)
    assert binom.sf(low - 1, big.size, p) >= 0.95 > binom.sf(low, big.size, p)


# --- the cluster bootstrap -----------------------------------------------------------------


def _brute_percentiles(values, sizes, qs, confidence, resamples, seed, rows=None):
    """Materialise every resample: draw clusters, pool them, take numpy's percentile."""
    clusters = [c[~np.isnan(c)] for c in np.split(values, np.cumsum(sizes)[:-1])]
    clusters = [c for c in clusters if c.size]
    k = len(clusters)
    rng = np.random.default_rng(seed)
    rows = rows or resamples
    picks = np.concatenate(
        [rng.integers(0, k, size=(min(rows, resamples - r), k)) for r in range(0, resamples, rows)]
    )
    estimates = np.array(
        [
            np.percentile(np.concatenate([clusters[i] for i in row]), qs, method="inverted_cdf")
            for row in picks
        ]
    )
    return [
        tuple(float(v) for v in np.percentile(est, [100 * (1 - confidence), 100 * confidence]))
        for est in estimates.T
    ]


def _clustered(rng, sizes, spread=1.0, noise=0.1):
    """Each cluster with its own offset: values within a cluster are strongly correlated."""
    offsets = np.repeat(rng.normal(0, spread, len(sizes)), sizes)
    return offsets + rng.normal(0, noise, int(np.sum(sizes)))


@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_cluster_bootstrap_equals_brute_force_on_small_data(confidence):
    rng = np.random.default_rng(2)
    sizes = rng.integers(0, 40, 15)
    sizes[[0, 6]] = 0  # empty clusters are skipped
    values = _clustered(rng, sizes)
    qs = (5, 50, 95, 99, 100)
    fast = cluster_bootstrap_percentiles(
        values, sizes, qs, confidence=confidence, resamples=400, seed=4
    )
    assert fast == _brute_percentiles(values, sizes, qs, confidence, 400, 4)


def test_cluster_bootstrap_equals_brute_force_with_ties_and_whole_thresholds():
    # sizes of 20 and 40 put n x 0.95 on integers; rounding to 0.5 m makes many ties
    rng = np.random.default_rng(3)
    sizes = rng.choice([20, 40], 12)
    values = np.round(_clustered(rng, sizes, noise=1.0) * 2) / 2
    qs = (50, 95)
    fast = cluster_bootstrap_percentiles(values, sizes, qs, resamples=300, seed=1)
    assert fast == _brute_percentiles(values, sizes, qs, 0.95, 300, 1)


def test_cluster_bootstrap_equals_brute_force_on_a_fine_grid_in_blocks(monkeypatch):
    # 15,000 distinct values: a grid of 15,000 points searched coarse then fine, and the
    # resamples processed in blocks of 50 (each block draws its own rows)
    rng = np.random.default_rng(8)
    sizes = rng.integers(500, 1000, 20)
    values = np.round(rng.gamma(2, 1, int(sizes.sum())) + np.repeat(rng.gamma(1, 1, 20), sizes), 9)
    monkeypatch.setattr(intervals, "BLOCK_CELLS", 50 * sizes.size)
    qs = (50, 95, 99)
    fast = cluster_bootstrap_percentiles(values, sizes, qs, resamples=200, seed=9)
    assert fast == _brute_percentiles(values, sizes, qs, 0.95, 200, 9, rows=50)


def test_cluster_bootstrap_on_a_quantile_grid_rounds_up_to_a_nearby_value(monkeypatch):
    # above CLUSTER_GRID distinct values the percentiles are read at sample quantiles:
    # each resample's is rounded up to the next grid point, so never below the exact one
    # (a tenth of the real grid here, so ten times the rounding: < 0.1 % of the width there)
    rng = np.random.default_rng(6)
    sizes = rng.integers(500, 2000, 25)
    values = rng.exponential(1, int(sizes.sum())) * np.repeat(rng.uniform(0.5, 2, 25), sizes)
    monkeypatch.setattr(intervals, "CLUSTER_GRID", 2000)
    qs = (50, 95)
    fast = cluster_bootstrap_percentiles(values, sizes, qs, resamples=300)
    brute = _brute_percentiles(values, sizes, qs, 0.95, 300, 0)
    for (fl, fh), (bl, bh) in zip(fast, brute, strict=True):
        assert bl <= fl <= bl + 0.03 * (bh - bl)
        assert bh <= fh <= bh + 0.03 * (bh - bl)


def test_cluster_bootstrap_ignores_nan_and_clusters_of_only_nan():
    rng = np.random.default_rng(12)
    sizes = np.array([30, 5, 25, 40, 0, 20])
    values = _clustered(rng, sizes)
    values[[0, 7, 70]] = np.nan
    values[30:35] = np.nan  # the whole second cluster
    keep = ~np.isnan(values)
    clean_sizes = np.add.reduceat(keep, np.r_[0, np.cumsum(sizes)[:-1]]) * (sizes > 0)
    qs = (50, 90)
    assert cluster_bootstrap_percentiles(values, sizes, qs) == cluster_bootstrap_percentiles(
        values[keep], clean_sizes, qs
    )


def test_one_cluster_says_nothing():
    values = np.arange(100.0)
    for sizes in ([100], [0, 100, 0]):
        out = cluster_bootstrap_percentiles(values, np.array(sizes), (50, 95))
        assert len(out) == 2 and all(math.isnan(v) for pair in out for v in pair)
    out = cluster_bootstrap_percentiles(np.array([]), np.array([], dtype=int), (50,))
    assert all(math.isnan(v) for v in out[0])
    assert all(
        math.isnan(v) for v in cluster_bootstrap_percentiles(np.full(9, np.nan), [4, 5], [50])[0]
    )
    nan_cluster = np.r_[np.arange(50.0), np.full(50, np.nan)]
    assert all(math.isnan(v) for v in cluster_bootstrap_percentiles(nan_cluster, [50, 50], [50])[0])


def test_cluster_bootstrap_refuses_sizes_that_do_not_fit():
    with pytest.raises(ValueError):
        cluster_bootstrap_percentiles(np.arange(10.0), np.array([5, 4]), (50,))
    with pytest.raises(ValueError):
        cluster_bootstrap_percentiles(np.arange(10.0), np.array([11, -1]), (50,))
    with pytest.raises(ValueError):
        cluster_bootstrap_percentiles(np.arange(10.0), np.array([5, 5]), (0,))


def test_clustered_values_know_their_percentiles_far_less_well_than_independent_ones():
    rng = np.random.default_rng(4)
    sizes = np.full(40, 250)
    values = _clustered(rng, sizes)  # 40 device-shifts, each with its own bias
    (cl, ch), (cl95, ch95) = cluster_bootstrap_percentiles(values, sizes, (50, 95))
    # the naive bootstrap: every value its own cluster
    (nl, nh), (nl95, nh95) = cluster_bootstrap_percentiles(
        values, np.ones(values.size, int), (50, 95)
    )
    assert (ch - cl) > 5 * (nh - nl)
    assert (ch95 - cl95) > 3 * (nh95 - nl95)
    assert cl < np.median(values) < ch and nl < np.median(values) < nh
    assert cl < 0 < ch  # the true median of the offsets' distribution


def test_cluster_bootstrap_of_20_million_values_in_500_clusters():
    rng = np.random.default_rng(0)
    sizes = rng.multinomial(20_000_000, np.full(500, 1 / 500))
    values = rng.exponential(1.0, 20_000_000) + np.repeat(rng.normal(0, 0.2, 500), sizes)
    qs = (50, 95, 99)
    start = time.perf_counter()
    out = cluster_bootstrap_percentiles(values, sizes, qs)
    print(f"\n20 million values, 500 clusters: {time.perf_counter() - start:.2f} s")
    for (low, high), estimate in zip(out, np.percentile(values, qs), strict=True):
        assert math.isfinite(low) and math.isfinite(high)
        assert low < estimate < high
        assert high - low < 0.2  # 500 clusters pin it down to a few cm


def test_binner_is_searchsorted_exactly():
    rng = np.random.default_rng(9)
    x = np.concatenate(
        [
            rng.normal(0, 1, 100_000),
            rng.exponential(1, 50_000) * 1e6,
            np.round(rng.normal(0, 3, 50_000), 1),
            [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 5e-324, -5e-324, 1e-300],
        ]
    )
    rng.shuffle(x)
    finite = x[np.isfinite(x)]
    grids = [
        np.unique(rng.choice(finite, 3000)),
        np.unique(np.r_[np.round(np.linspace(-5, 5, 2001), 3), -np.inf, 0.0, np.inf, 1e7]),
        np.unique(np.r_[rng.normal(0, 1e-6, 500), [-1e9, 1e9]]),  # clumped, beyond the data
        np.array([0.0]),
    ]
    for grid in grids:
        for low, high in [(np.nanmin(x), np.nanmax(x)), (finite.min(), finite.max())]:
            data = x if math.isinf(low) else x[~np.isinf(x)]
            binner = intervals._Binner(grid, low, high, data.size)
            assert binner.table
            assert np.array_equal(binner(data), np.searchsorted(grid, data, side="left"))


# --- the cluster bootstrap of a ratio ------------------------------------------------------


def _brute_ratio(num, den, confidence, resamples, seed):
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, num.size, size=(resamples, num.size))
    top, bottom = num[picks].sum(axis=1), den[picks].sum(axis=1)
    ratios = top[bottom > 0] / bottom[bottom > 0]
    return tuple(np.percentile(ratios, [100 * (1 - confidence), 100 * confidence]))


def test_cluster_bootstrap_ratio_equals_brute_force():
    rng = np.random.default_rng(13)
    hours = rng.uniform(2, 10, 30)
    hours[[3, 17]] = 0.0  # worn but never switched on: still drawn
    seconds = rng.gamma(1, 20, 30) * hours
    for confidence in (0.95, 0.8):
        fast = cluster_bootstrap_ratio(seconds, hours, confidence=confidence, resamples=500, seed=2)
        assert fast == pytest.approx(_brute_ratio(seconds, hours, confidence, 500, 2), rel=1e-12)
        assert fast[0] < seconds.sum() / hours.sum() < fast[1]


def test_cluster_bootstrap_ratio_leaves_out_resamples_without_a_denominator():
    num, den = np.array([0.0, 3.0]), np.array([0.0, 2.0])  # a quarter draw the empty one twice
    assert cluster_bootstrap_ratio(num, den, resamples=400) == pytest.approx(
        _brute_ratio(num, den, 0.95, 400, 0)
    )


def test_cluster_bootstrap_ratio_says_nothing_without_two_clusters_or_exposure():
    assert all(math.isnan(v) for v in cluster_bootstrap_ratio(np.array([1.0]), np.array([2.0])))
    assert all(math.isnan(v) for v in cluster_bootstrap_ratio(np.zeros(3), np.zeros(3)))
    with pytest.raises(ValueError):
        cluster_bootstrap_ratio(np.ones(3), np.array([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError):
        cluster_bootstrap_ratio(np.ones(3), np.ones(2))
