"""Confidence bounds for a trial's figures and acceptance criteria.

Convention: every function returns (lower, upper) and EACH END IS A ONE-SIDED
BOUND at `confidence` (default 0.95); the pair is therefore a two-sided interval
at 2·confidence − 1 (90 % by default). That is what an acceptance criterion needs:
it passes when the unfavourable one-sided 95 % bound meets the limit, fails when
even the favourable one does not, and is undecided in between. It also makes the
bounds agree with the zero-failure sample-size rule n ≥ ln(1 − C) / ln(R): 299
crossings with no miss demonstrate detection ≥ 0.99 at 95 %, 298 do not.

Which interval for which kind of figure, and why:

* Proportions of independent trials (detection rate: crossings alerted out of
  crossings staged): `clopper_pearson`. It is exact (never covers less than it
  says), and it works at 0 % and 100 %, which is where acceptance lives; the
  Wilson and normal intervals are approximations that under-cover just there.
* Counts per exposure (false alerts per device-hour): `poisson_rate`, the exact
  (Garwood) chi-square bounds. A count of rare events in a time at risk is
  Poisson, and the exact bounds again behave at zero events.
* Percentiles of correlated values (R95 of position error, alert latency over
  all fixes): `cluster_bootstrap_percentiles`. Fixes from one device on one shift
  share its antenna, sky and firmware state, so they are not independent; the
  bootstrap resamples whole clusters (device-shifts), which keeps that
  correlation, where resampling single fixes would overstate the precision by
  a factor up to the square root of the cluster size. `cluster_bootstrap_ratio`
  does the same for a ratio of per-cluster sums (false-alarm seconds per hour).
* Percentiles from few values (one latency per staged crossing):
  `order_statistic_bounds`, distribution-free bounds from the binomial law of
  order statistics. They need no model, but need enough values: an upper bound
  of the 95th percentile exists only from `values_needed(95)` = 59 values on.
  `zero_failure_trials` and `zero_event_exposure` give the size of a trial that
  can demonstrate a rate with no failures at all.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import beta, binom, chi2


def _check_confidence(confidence: float) -> None:
    # each end is a one-sided bound; at or below 0.5 the ends would cross
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")


# --- proportions and rates ---------------------------------------------------------------


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) one-sided bounds on a success probability.

    Each end is the bound that would be reported by a one-sided test at
    `confidence`: lower = beta.ppf(1 - C, k, n - k + 1), upper = beta.ppf(C, k + 1, n - k),
    with 0 and 1 at the ends that cannot move (no successes, no failures). Exact
    rather than approximate because acceptance is decided near 100 %, where
    approximate intervals cover less than they claim. (nan, nan) when there
    were no trials: nothing is known.
    """
    k, n = operator.index(successes), operator.index(trials)
    _check_confidence(confidence)
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= successes <= trials, got {k} of {n}")
    if n == 0:
        return math.nan, math.nan
    lower = 0.0 if k == 0 else float(beta.ppf(1 - confidence, k, n - k + 1))
    upper = 1.0 if k == n else float(beta.ppf(confidence, k + 1, n - k))
    return lower, upper


def poisson_rate(events: int, exposure: float, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) one-sided bounds on a Poisson rate per unit of exposure.

    For false alerts per device-hour and the like: k events in exposure T give
    lower = chi2.ppf(1 - C, 2k) / 2T (0 when k = 0) and upper = chi2.ppf(C, 2k + 2) / 2T.
    With no events the upper bound is -ln(1 - C) / T (2.9957 / T at 95 %), the
    "rule of three". (nan, nan) when there was no (or no finite) exposure.
    """
    k = operator.index(events)
    _check_confidence(confidence)
    if k < 0:
        raise ValueError(f"need events >= 0, got {k}")
    exposure = float(exposure)
    if not (math.isfinite(exposure) and exposure > 0):
        return math.nan, math.nan
    lower = 0.0 if k == 0 else float(chi2.ppf(1 - confidence, 2 * k)) / 2 / exposure
    upper = float(chi2.ppf(confidence, 2 * k + 2)) / 2 / exposure
    return lower, upper


def _smallest_n(holds: Callable[[int], bool], guess: float) -> int:
    """The smallest n >= 1 for which the monotone predicate `holds` is true, from a guess.

    The closed-form sizes are ratios of logarithms that land within a rounding
    error of an integer just where it matters (the predicate is then decided by
    the last bits), so the guess is only a starting point: the answer is the n
    that the bound functions themselves accept and whose predecessor they refuse.
    """
    n = max(1, math.ceil(guess))
    while n > 1 and holds(n - 1):
        n -= 1
    while not holds(n):
        n += 1
    return n


def zero_failure_trials(rate: float, confidence: float = 0.95) -> int:
    """Fewest trials that, all succeeding, demonstrate a success probability >= rate.

    The zero-failure rule n >= ln(1 - C) / ln(rate): 299 crossings without a miss
    demonstrate detection >= 0.99 at 95 %, 2995 demonstrate 0.999. Decided by
    `clopper_pearson` itself, so a plan sized with this passes with exactly this
    many (its lower bound >= rate) and would not with one fewer.
    """
    _check_confidence(confidence)
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    return _smallest_n(
        lambda n: clopper_pearson(n, n, confidence)[0] >= rate,
        math.log1p(-confidence) / math.log(rate),
    )


def zero_event_exposure(rate: float, confidence: float = 0.95) -> float:
    """Exposure that, with no events at all, demonstrates a Poisson rate <= rate.

    -ln(1 - C) / rate (2.9957 / rate at 95 %): e.g. the device-hours without a
    false alert that show fewer than one per 100 h. Returned so that
    `poisson_rate(0, exposure, confidence)[1] <= rate` holds exactly.
    """
    _check_confidence(confidence)
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be positive and finite, got {rate}")
    exposure = float(chi2.ppf(confidence, 2)) / 2 / rate
    while poisson_rate(0, exposure, confidence)[1] > rate:  # a last-bit rounding, at most
        exposure = math.nextafter(exposure, math.inf)
    return exposure


# --- percentiles from few values: order statistics --------------------------------------


def _check_percent(q: float) -> float:
    if not 0 < q < 100:
        raise ValueError(f"q must be a percentage in (0, 100), got {q}")
    return q / 100


def values_needed(q: float, confidence: float = 0.95) -> int:
    """Fewest values from which a distribution-free upper bound of the q-th percentile exists.

    The largest of n values lies above the q-th percentile with probability
    1 - (q/100)^n, so n >= ln(1 - C) / ln(q/100): 59 values for p95 at 95 %,
    299 for p99. With fewer, `order_statistic_bounds` returns an infinite upper
    bound: no amount of goodness in the values can show the percentile is small.
    Decided by the same binomial computation as `order_statistic_bounds`.
    """
    p = _check_percent(q)
    _check_confidence(confidence)
    return _smallest_n(
        lambda n: binom.cdf(n - 1, n, p) >= confidence, math.log1p(-confidence) / math.log(p)
    )


def _first_true(
    holds: Callable[[np.ndarray], np.ndarray], n: int, guess: float, spread: float
) -> int:
    """The first i in [0, n) where the vectorised, monotone `holds` is true (n if none).

    Evaluated on a window around the guess (a normal approximation) when that
    window provably brackets the answer, on all of [0, n) otherwise: a million
    values need a few dozen binomial CDFs, not a million.
    """
    width = math.ceil(10 * spread) + 20
    start = min(max(0, math.floor(guess) - width), n - 1)
    index = np.arange(start, min(n, start + 2 * width + 1))
    hit = holds(index)
    if not ((index[0] == 0 or not hit[0]) and (index[-1] == n - 1 or hit[-1])):
        index = np.arange(n)
        hit = holds(index)
    return int(index[0] + np.argmax(hit)) if hit.any() else n


def order_statistic_bounds(
    values: np.ndarray, q: float, confidence: float = 0.95
) -> tuple[float, float]:
    """Distribution-free one-sided bounds on the q-th percentile from exchangeable values.

    The number of values below the true percentile is binomial(n, q/100), so the
    k-th smallest value lies at or above it with probability binom.cdf(k - 1, n, q/100):
    the upper bound is the k-th smallest value for the smallest such k that reaches
    `confidence`, the lower bound the j-th smallest for the largest j with
    binom.sf(j - 1, n, q/100) >= confidence. No distribution is assumed, only that
    the values are exchangeable (e.g. one per independent crossing). Too few values
    give +inf (or -inf): see `values_needed`. NaNs are ignored; no values -> (nan, nan).
    """
    p = _check_percent(q)
    _check_confidence(confidence)
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    n = x.size
    if n == 0:
        return math.nan, math.nan
    spread = math.sqrt(n * p * (1 - p))
    # upper: the k-th smallest, k - 1 the first i with binom.cdf(i, n, p) >= C (n: none)
    i_up = _first_true(lambda i: binom.cdf(i, n, p) >= confidence, n, n * p, spread)
    # lower: the j-th smallest, j the last with binom.sf(j - 1, n, p) >= C, so the first i
    # with binom.sf(i, n, p) < C is j itself (0: none)
    j = _first_true(lambda i: binom.sf(i, n, p) < confidence, n, n * p, spread)
    ranks = [r for r in (j - 1, i_up) if 0 <= r < n]
    part = np.partition(x, ranks) if ranks else x
    lower = float(part[j - 1]) if j >= 1 else -math.inf
    upper = float(part[i_up]) if i_up < n else math.inf
    return lower, upper


# --- shared grid/CDF machinery of the bootstraps -------------------------------------------

#: Values are binned in chunks of this many (bounds the temporaries).
CHUNK = 1 << 20
#: Below this many values, binning is a plain binary search.
_TABLE_MIN_VALUES = 1 << 16
_SIGN_OFF = np.int64(0x7FFF_FFFF_FFFF_FFFF)


def _ordered_keys(x: np.ndarray) -> np.ndarray:
    """int64 keys in the same order as the float64 values (after -0.0 -> +0.0; not NaN)."""
    s = np.ascontiguousarray(x, dtype=np.float64).view(np.int64)
    return s ^ ((s >> 63) & _SIGN_OFF)


class _Binner:
    """np.searchsorted(grid, x, side="left"), exactly, in a fraction of its time.

    A binary search over a grid of thousands of points costs ~100 ns a value,
    which is the whole budget for hundreds of millions of them. Instead each value
    goes through a monotone map, x - min + d with d = (max - min) / 1024 (so buckets
    are fine near the minimum and log-spaced up a long tail), whose float bits,
    read as ordered integers, are cut into at most 2^22 buckets; a table says how
    many grid points lie below each bucket and whether it holds none, one or more
    of them. Since the map is monotone (rounding included), a grid point in a lower
    bucket is below the value and one in a higher bucket above it, so one lookup
    and at most one comparison bin most values exactly; only those in buckets with
    several grid points take the binary search. NaN goes after everything (bin
    len(grid)), as in searchsorted.
    """

    BITS = 22

    def __init__(self, grid: np.ndarray, low: float, high: float, size: int) -> None:
        self.grid = grid
        self.table = (
            size >= _TABLE_MIN_VALUES and not math.isnan(low - high) and not np.isnan(grid).any()
        )
        if not self.table:
            return
        if math.isfinite(low) and math.isfinite(high):
            self.origin, self.offset = low, (high - low) / 1024 or 1.0
        else:  # infinite values: the ordered float bits themselves
            self.origin, self.offset = 0.0, 0.0
        kmin, kmax = (int(k) for k in self._keys(np.array([low, high])))
        bits = min(self.BITS, max(10, size.bit_length() - 2))
        self.shift = max(0, (kmax - kmin).bit_length() - bits)
        self.base = kmin >> self.shift
        self.buckets = (kmax >> self.shift) - self.base + 1
        at = (self._keys(grid) >> self.shift) - self.base
        per = np.bincount(np.clip(at + 1, 0, self.buckets + 1), minlength=self.buckets + 2)
        self.below = np.cumsum(per)[: self.buckets].astype(np.int32)  # grid points < bucket
        self.inside = np.minimum(per[1 : self.buckets + 1], 2).astype(np.int8)  # 0, 1 or more
        self.padded = np.append(grid, np.inf)

    def _keys(self, x: np.ndarray) -> np.ndarray:
        """Ordered integer keys of the monotone map of x (+ 0.0 makes -0.0 equal to 0.0)."""
        if self.offset:
            return _ordered_keys((x - self.origin) + self.offset)
        return _ordered_keys(x + 0.0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not self.table:
            return np.searchsorted(self.grid, x, side="left")
        bucket = (self._keys(x) >> self.shift) - self.base
        np.clip(bucket, 0, self.buckets - 1, out=bucket)  # only NaN is out of range
        bins = self.below[bucket].astype(np.int64)
        inside = self.inside[bucket]
        bins += (inside == 1) & (x > self.padded[bins])
        several = np.flatnonzero(inside > 1)
        bins[several] = np.searchsorted(self.grid, x[several], side="left")
        bins[np.isnan(x)] = self.grid.size
        return bins


def _value_range(x: np.ndarray) -> tuple[float, float]:
    """Smallest and largest non-NaN value; (nan, nan) when there is none."""
    if x.size == 0:
        return math.nan, math.nan
    with warnings.catch_warnings():  # all NaN: said by the NaN returned
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmin(x)), float(np.nanmax(x))


def _cluster_bin_counts(x: np.ndarray, sizes: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Per cluster, how many of its values fall in each grid bin: (clusters, len(grid) + 1).

    Bin b holds grid[b-1] < value <= grid[b]; the last column holds values above
    the grid and NaN. Clusters are contiguous runs of `x`, `sizes` long (0 allowed).
    One pass over x in chunks: memory is the count table plus a chunk.
    """
    width = grid.size + 1
    counts = np.zeros((sizes.size, width))
    if x.size == 0:
        return counts
    binner = _Binner(grid, *_value_range(x), x.size)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    for a in range(0, x.size, CHUNK):
        b = min(a + CHUNK, x.size)
        bins = binner(x[a:b])
        c0 = int(np.searchsorted(ends, a, side="right"))
        c1 = int(np.searchsorted(ends, b - 1, side="right")) + 1
        part = np.minimum(ends[c0:c1], b) - np.maximum(starts[c0:c1], a)
        local = np.repeat(np.arange(part.size), part)
        counts[c0:c1] += np.bincount(local * width + bins, minlength=part.size * width).reshape(
            part.size, width
        )
    return counts


def _draw_weights(rng: np.random.Generator, resamples: int, clusters: int) -> np.ndarray:
    """How often each cluster is drawn in each resample: (resamples, clusters).

    `clusters` draws with replacement per resample, as
    rng.integers(0, clusters, size=(resamples, clusters)); a resample is then a
    weighted sum over clusters, never a copy of the values.
    """
    picks = rng.integers(0, clusters, size=(resamples, clusters))
    return np.bincount(
        (np.arange(resamples)[:, None] * clusters + picks).ravel(), minlength=resamples * clusters
    ).reshape(resamples, clusters)


# --- percentiles of correlated values: the cluster bootstrap ------------------------------

#: Up to this many distinct values, the cluster bootstrap reads percentiles at every
#: one of them (exact); above, at this many quantiles of a sample of the values.
CLUSTER_GRID = 20_000
#: The grid comes from at most this many values, drawn at random.
CLUSTER_GRID_SAMPLE = 250_000
#: Clusters x grid points are capped at this (the count table; 128 MB); many clusters
#: get a coarser grid.
MAX_CELLS = 1 << 24
#: Resamples are processed in blocks of at most this many resamples x clusters.
BLOCK_CELLS = 1 << 22


def _percentile_grid(
    x: np.ndarray, qs: Sequence[float], points: int, rng: np.random.Generator
) -> np.ndarray:
    """Where the resampled CDFs are read: candidate values of every resample's percentile.

    All distinct values when (a sample shows) there are at most `points` of them,
    which makes the bootstrap exact. Otherwise sample quantiles (so grid points are
    data values), a quarter spread evenly over 0-100 % and the rest geometrically
    dense around each requested q down to the sample's resolution: a resample's
    percentile is rounded up to the next grid point, far less than the interval's
    width. Always holds the data's minimum and maximum, so every resample's CDF
    reaches 1 on the grid.
    """
    sampled = x.size > CLUSTER_GRID_SAMPLE
    sample = x[rng.integers(0, x.size, CLUSTER_GRID_SAMPLE)] if sampled else x
    sample = sample[~np.isnan(sample)]
    sample = np.sort(sample)
    distinct = sample[np.concatenate(([sample.size > 0], sample[1:] != sample[:-1]))]
    if distinct.size <= points:
        grid = distinct
    else:
        m = sample.size
        even = np.linspace(0, 100, max(2, points // 4))
        side = max(1, (points - even.size) // (2 * len(qs)))
        offsets = np.geomspace(100 / m, 100, side)
        levels = np.concatenate(
            [even, *[np.clip([q - offsets, q + offsets], 0, 100).ravel() for q in qs]]
        )
        # inverted-CDF quantiles: the ceil(m p)-th smallest sample value
        index = np.clip(np.ceil(m * levels / 100).astype(np.int64) - 1, 0, m - 1)
        grid = np.unique(sample[index])
    if sampled:  # a sample may miss the extremes
        grid = np.unique(np.concatenate([grid, _value_range(x)]))
    return grid


def cluster_bootstrap_percentiles(
    values: np.ndarray,
    cluster_sizes: np.ndarray,
    qs: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> list[tuple[float, float]]:
    """One-sided bounds on percentiles of pooled values, resampling whole clusters.

    `values` is the concatenation of clusters (e.g. all fixes of one device worn on
    one shift), cluster i being the next `cluster_sizes[i]` values. Values in a
    cluster are correlated, so resampling them one by one would overstate the
    precision; each resample instead draws as many whole clusters as there are
    (non-empty ones), with replacement, pools them and takes the q-th percentile
    (numpy's "inverted_cdf": the smallest value with at least q % of the pool at or
    below it). Per q, the bounds are the 100(1 - C) and 100C percentiles of those
    estimates. NaNs are ignored (a cluster of only NaN is empty). Fewer than two
    non-empty clusters: (nan, nan) for each q, the bootstrap cannot speak.

    Nothing is resampled value by value. Each cluster is reduced to its cumulative
    counts on a grid of candidate values (`_percentile_grid`: exact up to
    CLUSTER_GRID distinct values), so a resample's CDF is (W @ counts) / (W @ sizes)
    with W the number of times each cluster was drawn; its percentile is the first
    grid value where that reaches q %. The grid is searched coarse (every
    ~sqrt(grid)-th point, for all resamples at once), then fine only where the
    bounds are read. One pass over the values, then work in resamples x clusters x
    sqrt(grid); memory is clusters x grid (capped by MAX_CELLS) plus resamples x
    clusters small integers. 20 million values in 500 clusters take under a second,
    200 million in 5000 clusters about four (two cores).
    """
    _check_confidence(confidence)
    if resamples < 1:
        raise ValueError(f"need resamples >= 1, got {resamples}")
    for q in qs:
        if not 0 < q <= 100:
            raise ValueError(f"q must be a percentage in (0, 100], got {q}")
    x = np.asarray(values, dtype=np.float64)
    sizes = np.asarray(cluster_sizes)
    if x.ndim != 1 or sizes.ndim != 1:
        raise ValueError("values and cluster_sizes must be one-dimensional")
    if sizes.size and (not np.issubdtype(sizes.dtype, np.integer) or sizes.min() < 0):
        raise ValueError("cluster_sizes must be non-negative integers")
    sizes = sizes.astype(np.int64)
    if int(sizes.sum()) != x.size:
        raise ValueError(f"cluster_sizes sum to {int(sizes.sum())}, but there are {x.size} values")
    nothing = [(math.nan, math.nan) for _ in qs]
    sizes = sizes[sizes > 0]  # empty clusters are never drawn
    if sizes.size < 2 or not qs or math.isnan(_value_range(x)[0]):
        return nothing
    points = min(CLUSTER_GRID, max(64, MAX_CELLS // sizes.size - 1))
    grid = _percentile_grid(x, qs, points, np.random.default_rng([seed, 1]))
    counts = _cluster_bin_counts(x, sizes, grid)
    cum = np.cumsum(counts[:, : grid.size], axis=1, out=counts[:, : grid.size])  # NaN column off
    del counts
    if not (cum[:, -1] > 0).all():  # clusters of only NaN
        cum = cum[cum[:, -1] > 0]
        if cum.shape[0] < 2:
            return nothing
    return _cluster_percentile_bounds(cum, grid, qs, confidence, resamples, seed)


def _cluster_percentile_bounds(
    cum: np.ndarray,
    grid: np.ndarray,
    qs: Sequence[float],
    confidence: float,
    resamples: int,
    seed: int,
) -> list[tuple[float, float]]:
    """Resample clusters of cumulative grid counts `cum`; bounds of each resample's percentiles.

    Coarse first: every resample's CDF at every ~sqrt(grid)-th grid point (one matrix
    product per block of resamples) places its percentile in a coarse cell. The
    cells order the resamples, so only the cells holding the few estimates that the
    bounds are interpolated from need the fine grid; the others stand in with their
    cell's last grid value, which keeps them on the right side.
    """
    k, g = cum.shape
    n = cum[:, -1]  # values per cluster
    step = math.isqrt(g - 1) + 1
    coarse = np.unique(np.append(np.arange(step - 1, g, step), g - 1))  # each cell's last column
    first = np.concatenate(([0], coarse[:-1] + 1))  # and its first
    cum_coarse = np.ascontiguousarray(cum[:, coarse])
    rows = max(1, BLOCK_CELLS // k)
    draws = np.empty((resamples, k), dtype=np.min_scalar_type(k))  # each is at most k
    need = np.empty((len(qs), resamples))
    cell = np.empty((len(qs), resamples), dtype=np.int64)
    rng = np.random.default_rng(seed)
    for r0 in range(0, resamples, rows):
        w = _draw_weights(rng, min(rows, resamples - r0), k)
        r1 = r0 + w.shape[0]
        draws[r0:r1] = w
        w = w.astype(np.float64)
        total = w @ n  # exact: integers far below 2^53
        at_coarse = w @ cum_coarse
        for iq, q in enumerate(qs):
            # reaching q % of the pool: count >= total x q/100, as numpy's inverted_cdf reads it
            need[iq, r0:r1] = total * (q / 100)
            below = (at_coarse < need[iq, r0:r1, None]).sum(axis=1)
            cell[iq, r0:r1] = np.minimum(below, coarse.size - 1)
    levels = [100 * (1 - confidence), 100 * confidence]
    # the order statistics np.percentile interpolates between (and a neighbour for rounding)
    at = np.floor((resamples - 1) * np.array(levels) / 100).astype(np.int64)
    ranks = np.clip((at[:, None] + np.arange(-1, 3)).ravel(), 0, resamples - 1)
    out = []
    for iq in range(len(qs)):
        estimates = grid[coarse[cell[iq]]]
        for c in np.unique(np.sort(cell[iq])[ranks]):
            lo, hi = first[c], coarse[c]
            sel = np.flatnonzero(cell[iq] == c)
            for s0 in range(0, sel.size, rows):
                part = sel[s0 : s0 + rows]
                fine = draws[part].astype(np.float64) @ cum[:, lo : hi + 1]
                found = np.minimum((fine < need[iq, part, None]).sum(axis=1), hi - lo)
                estimates[part] = grid[lo + found]
        low, high = np.percentile(estimates, levels)
        out.append((float(low), float(high)))
    return out


def cluster_bootstrap_ratio(
    numerators: np.ndarray,
    denominators: np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """One-sided bounds on sum(numerators) / sum(denominators), resampling clusters.

    One pair per cluster, e.g. false-alarm seconds and hours worn for each
    device-shift: the ratio of sums weights each cluster by its exposure, and
    resampling the clusters (as `cluster_bootstrap_percentiles` does) keeps
    whatever makes one device-shift worse than another. Clusters with zero
    denominator are drawn like any other; a resample drawing only such clusters
    has no ratio and is left out. (nan, nan) with fewer than two clusters or no
    denominator at all.
    """
    _check_confidence(confidence)
    if resamples < 1:
        raise ValueError(f"need resamples >= 1, got {resamples}")
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    if num.ndim != 1 or num.shape != den.shape:
        raise ValueError("numerators and denominators must be one-dimensional, of equal length")
    if not (np.isfinite(num).all() and np.isfinite(den).all()) or (den < 0).any():
        raise ValueError("need finite numerators and finite, non-negative denominators")
    k = num.size
    if k < 2 or den.sum() == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    rows = max(1, BLOCK_CELLS // k)
    ratios = []
    for r0 in range(0, resamples, rows):
        w = _draw_weights(rng, min(rows, resamples - r0), k).astype(np.float64)
        top, bottom = w @ num, w @ den
        ratios.append(top[bottom > 0] / bottom[bottom > 0])
    estimates = np.concatenate(ratios)
    if estimates.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(estimates, [100 * (1 - confidence), 100 * confidence])
    return float(low), float(high)

