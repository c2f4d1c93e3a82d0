"""Orientation with a certified sign, or an honest "cannot tell".

The exact classification path decides point-in-polygon by counting segment
crossings. That needs the sign of a 2×2 determinant. In floating point the sign
is only certain when the determinant is larger than its rounding error; below
that we say "uncertain" and the caller asks GEOS, whose predicates are exact.
The bound is Shewchuk's static filter for orient2d ((3 + 16ε)ε of the summed
magnitudes), widened tenfold for comfort, plus an absolute floor: the relative
bound does not hold once products underflow into subnormal numbers (a property
test found a polygon with a vertex at y = 1e-323).
"""

from __future__ import annotations

import numpy as np

_EPS = np.finfo(np.float64).eps / 2
ORIENT_ERROR_FACTOR = 10 * (3 + 16 * _EPS) * _EPS
#: The relative bound assumes no underflow. Near the bottom of the float range products
#: lose their relative precision (subnormals), so anything this small is "uncertain".
ORIENT_UNDERFLOW_FLOOR = 1e-280


def orient(
    ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, px: np.ndarray, py: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Twice the signed area of (a, b, p) and whether its sign is certain.

    Positive when p is to the left of a→b. All arguments are float arrays (any unit);
    returns (det, certain), where `certain` is False when the sign is within rounding
    error of zero (the caller then asks GEOS).

    >>> det, certain = orient(0.0, 0.0, 1.0, 0.0, np.array([0.5, 0.5]), np.array([1.0, 0.0]))
    >>> det.tolist(), certain.tolist()
    ([1.0, 0.0], [True, False])
    """
    left = (bx - ax) * (py - ay)
    right = (by - ay) * (px - ax)
    det = left - right
    certain = np.abs(det) > ORIENT_ERROR_FACTOR * (np.abs(left) + np.abs(right))
    certain &= np.abs(det) > ORIENT_UNDERFLOW_FLOOR
    return det, certain
