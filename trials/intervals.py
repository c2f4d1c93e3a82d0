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
#: Block CDFs are kept on this many grid points around the percentile...
GRID_POINTS = 801
#: ...placed at quantiles of at most this many of its values...
GRID_SAMPLE = 200_000
#: ...and at most this many blocks (longer blocks when the series is longer).
MAX_BLOCKS = 4000


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
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    if n == 0:
        return math.nan, math.nan
    block = max(1, min(block, n))
    if n * resamples > EXACT_LIMIT:
        return _block_cdf_bootstrap(x, q, block, resamples, seed, confidence)
    blocks = math.ceil(n / block)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n - block + 1, size=(resamples, blocks))
    index = (starts[:, :, None] + np.arange(block)).reshape(resamples, -1)[:, :n]
    estimates = np.percentile(x[index], q, axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return float(low), float(high)


def _block_cdf_bootstrap(
    x: np.ndarray, q: float, block: int, resamples: int, seed: int, confidence: float
) -> tuple[float, float]:
    """The same block bootstrap for long series, in O(n + resamples x blocks x grid).

    The series is cut into non-overlapping blocks (at least `block` long, at most
    MAX_BLOCKS of them; longer blocks only keep more of the correlation). Each
    block is summarised by its empirical CDF on a grid of the whole series' own
    quantiles, dense around the q-th; a resample's CDF is then a weighted mean of
    block CDFs (one matrix product for all resamples), and its q-th percentile is
    read off the grid. The grid spacing bounds the rounding: far inside the
    interval's width for the series this path is used for.
    """
    n = x.size
    length = max(block, math.ceil(n / MAX_BLOCKS))
    nblocks = n // length
    x = x[: nblocks * length]  # the ragged tail (< one block) is left out
    span = min(10.0, q, 100 - q)
    # the grid is only where the CDFs are read: quantiles of a sample of the series are
    # as good as exact ones, and cost O(sample log sample) instead of a sort of it all
    sample = x if n <= GRID_SAMPLE else x[np.random.default_rng(seed).integers(0, n, GRID_SAMPLE)]
    grid = np.unique(np.percentile(sample, np.linspace(q - span, q + span, GRID_POINTS)))
    bins = np.searchsorted(grid, x, side="left")  # grid[bins-1] < x <= grid[bins]
    block_id = np.repeat(np.arange(nblocks), length)
    counts = np.bincount(block_id * (grid.size + 1) + bins, minlength=nblocks * (grid.size + 1))
    cdf = np.cumsum(counts.reshape(nblocks, grid.size + 1), axis=1)[:, :-1] / length
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, nblocks, size=(resamples, nblocks))
    weights = np.zeros((resamples, nblocks))
    np.add.at(weights, (np.arange(resamples)[:, None], picks), 1.0)
    resampled = weights @ cdf / nblocks  # (resamples, grid): each resample's CDF at the grid
    target = q / 100
    # the first grid point where the resample's CDF reaches q (np.percentile's interpolation
    # is finer than the grid; the grid is dense where it matters)
    at = np.minimum((resampled < target).sum(axis=1), grid.size - 1)
    estimates = grid[at]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return float(low), float(high)
