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
    blocks = math.ceil(n / block)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n - block + 1, size=(resamples, blocks))
    index = (starts[:, :, None] + np.arange(block)).reshape(resamples, -1)[:, :n]
    estimates = np.percentile(x[index], q, axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return float(low), float(high)
