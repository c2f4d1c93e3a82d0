"""Uncertainty for trial figures: Wilson intervals for rates, block-bootstrap for percentiles.

A trial's counts are small (a few dozen excursions per supplier and scenario),
so a rate is reported with its Wilson score interval, which behaves at 0 % and
100 % where the textbook normal interval does not. GNSS errors are correlated in
time, so resampling fixes one by one would overstate how well a percentile is
known; percentiles get a moving-block bootstrap, blocks as long as the error's
memory.
"""

from __future__ import annotations

import math

import numpy as np

#: z for a two-sided 95 % interval.
Z95 = 1.959963984540054


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (nan, nan) when there were no trials."""
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return math.nan, math.nan
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


#: Above this many resampled values, the bootstrap works on block CDFs (see below).
EXACT_LIMIT = 500_000
#: Block CDFs are kept on this many grid points around each percentile...
GRID_POINTS = 201
#: ...placed at quantiles of at most this many of its values...
GRID_SAMPLE = 50_000
#: ...over at most this many blocks (longer blocks when the series is longer)...
MAX_BLOCKS = 500
#: ...built from at most this many values: a longer series is thinned evenly first.
#: Thinning a correlated series loses little, and only ever widens the interval.
MAX_VALUES = 250_000


def block_bootstrap_percentile(
    values: np.ndarray,
    q: float,
    *,
    block: int = 50,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Interval for the q-th percentile of a time series by the moving-block bootstrap.

    Resamples are built from random runs of `block` consecutive values, which keeps
    the series' short-range correlation inside each resample.
    """
    return block_bootstrap_percentiles(
        values, (q,), block=block, resamples=resamples, seed=seed, confidence=confidence
    )[0]


def block_bootstrap_percentiles(
    values: np.ndarray,
    qs: tuple[float, ...],
    *,
    block: int = 50,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[tuple[float, float]]:
    """Intervals for several percentiles of one series, sharing the resampling work."""
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    if n == 0:
        return [(math.nan, math.nan) for _ in qs]
    block = max(1, min(block, n))
    if n * resamples > EXACT_LIMIT:
        return _block_cdf_bootstrap(x, qs, block, resamples, seed, confidence)
    blocks = math.ceil(n / block)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n - block + 1, size=(resamples, blocks))
    index = (starts[:, :, None] + np.arange(block)).reshape(resamples, -1)[:, :n]
    resampled = x[index]
    tail = (1 - confidence) / 2 * 100
    out = []
    for q in qs:
        estimates = np.percentile(resampled, q, axis=1)
        low, high = np.percentile(estimates, [tail, 100 - tail])
        out.append((float(low), float(high)))
    return out


def _block_cdf_bootstrap(
    x: np.ndarray,
    qs: tuple[float, ...],
    block: int,
    resamples: int,
    seed: int,
    confidence: float,
) -> list[tuple[float, float]]:
    """The same block bootstrap for long series, in O(n + resamples x blocks x grid).

    The series (thinned evenly to MAX_VALUES) is cut into non-overlapping blocks
    (at least `block` long, at most MAX_BLOCKS of them; longer blocks only keep more
    of the correlation). Each block is summarised by its empirical CDF on a grid of
    the series' own quantiles, dense around each q; a resample's CDF is then a
    weighted mean of block CDFs (one matrix product for all resamples), and its
    percentile is read off the grid. The grid spacing bounds the rounding: far
    inside the interval's width for the series this path is used for.
    """
    step = max(1, math.ceil(x.size / MAX_VALUES))
    x = x[::step]
    block = max(1, math.ceil(block / step))
    n = x.size
    length = max(block, math.ceil(n / MAX_BLOCKS))
    nblocks = n // length
    x = x[: nblocks * length]  # the ragged tail (< one block) is left out
    rng = np.random.default_rng(seed)
    # the grid is only where the CDFs are read: quantiles of a sample of the series are
    # as good as exact ones, and cost O(sample log sample) instead of a sort of it all
    sample = x if x.size <= GRID_SAMPLE else x[rng.integers(0, x.size, GRID_SAMPLE)]
    levels = np.concatenate(
        [np.linspace(q - min(10.0, q, 100 - q), q + min(10.0, q, 100 - q), GRID_POINTS) for q in qs]
    )
    grid = np.unique(np.percentile(sample, levels))
    bins = np.searchsorted(grid, x, side="left")  # grid[bins-1] < x <= grid[bins]
    width = grid.size + 1
    counts = np.bincount(
        (np.arange(x.size) // length) * width + bins, minlength=nblocks * width
    ).reshape(nblocks, width)
    cdf = np.cumsum(counts, axis=1)[:, :-1] / length
    picks = rng.integers(0, nblocks, size=(resamples, nblocks))
    weights = np.bincount(
        (np.arange(resamples)[:, None] * nblocks + picks).ravel(), minlength=resamples * nblocks
    ).reshape(resamples, nblocks)
    resampled = weights @ cdf / nblocks  # (resamples, grid): each resample's CDF at the grid
    tail = (1 - confidence) / 2 * 100
    out = []
    for q in qs:
        # the first grid point where the resample's CDF reaches q
        at = np.minimum((resampled < q / 100).sum(axis=1), grid.size - 1)
        low, high = np.percentile(grid[at], [tail, 100 - tail])
        out.append((float(low), float(high)))
    return out
