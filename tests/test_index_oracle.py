"""The fence index against its oracle: GEOS `covers` on the same geometry, every point."""

from __future__ import annotations

import numpy as np
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geofence.index import OUTSIDE, FenceIndex


def oracle(polygons, x, y):
    covers = np.stack([shapely.intersects_xy(p, x, y) for p in polygons])
    return np.where(covers.any(axis=0), covers.argmax(axis=0), OUTSIDE)


def oracle_distance(polygons, x, y, horizon):
    union = shapely.union_all(polygons)
    d = np.minimum(shapely.distance(union.boundary, shapely.points(x, y)), horizon)
    return d


def tricky_points(polygons, rng, cell_m):
    """Vertices, points along edges, cell corners and near-misses a few ulps away."""
    parts = []
    for p in polygons:
        for ring in shapely.get_rings(shapely.get_parts(p)):
            c = shapely.get_coordinates(ring)
            parts.append(c)
            t = rng.random((len(c) - 1, 1))
            parts.append(c[:-1] + t * (c[1:] - c[:-1]))
            parts.append(c[:-1] + 0.5 * (c[1:] - c[:-1]))
    pts = np.concatenate(parts)
    b = shapely.total_bounds(polygons)
    grid = np.mgrid[b[0] - 3 : b[2] + 3 : cell_m / 2, b[1] - 3 : b[3] + 3 : cell_m / 2]
    pts = np.concatenate([pts, grid.reshape(2, -1).T])
    nudges = [
        np.nextafter(pts, np.inf),
        np.nextafter(pts, -np.inf),
        pts + np.array([1e-12, -1e-12]),
    ]
    return np.concatenate([pts, *nudges])


coordinate = st.floats(-40, 40, allow_nan=False, allow_infinity=False).map(lambda v: round(v, 2))


@st.composite
def polygon(draw):
    """A valid polygon: random star-shaped rings, sometimes with a hole, sometimes snapped."""
    cx, cy = draw(coordinate), draw(coordinate)
    n = draw(st.integers(3, 12))
    angles = np.sort(np.array(draw(st.lists(st.floats(0, 2 * np.pi), min_size=n, max_size=n))))
    radii = np.array(draw(st.lists(st.floats(2, 25), min_size=n, max_size=n)))
    ring = np.column_stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)])
    if draw(st.booleans()):
        ring = np.round(ring * 2) / 2  # vertices on half-metre lines: cell corners and edges
    poly = shapely.make_valid(shapely.Polygon(ring))
    if draw(st.booleans()):
        hole = shapely.Point(cx, cy).buffer(draw(st.floats(0.3, 1.5)), quad_segs=2)
        poly = shapely.make_valid(poly.difference(hole))
    parts = [g for g in shapely.get_parts(poly) if isinstance(g, shapely.Polygon) and g.area > 0.5]
    if not parts:
        poly = shapely.box(cx, cy, cx + 3, cy + 2)
    else:
        poly = parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)
    return shapely.normalize(poly) if draw(st.booleans()) else poly


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    polygons=st.lists(polygon(), min_size=1, max_size=4),
    cell_m=st.sampled_from([0.5, 1.0, 2.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_classification_agrees_with_geos_covers(polygons, cell_m, seed):
    rng = np.random.default_rng(seed)
    index = FenceIndex.build(polygons, cell_m=cell_m, horizon_m=5.0)
    pts = tricky_points(polygons, rng, cell_m)
    b = shapely.total_bounds(polygons)
    random = rng.uniform([b[0] - 10, b[1] - 10], [b[2] + 10, b[3] + 10], (2000, 2))
    pts = np.concatenate([pts, random])
    x, y = pts[:, 0].copy(), pts[:, 1].copy()
    expected = oracle(polygons, x, y)
    fence, distance = index.evaluate(x, y)
    np.testing.assert_array_equal(index.classify(x, y), expected)
    np.testing.assert_array_equal(fence, expected)
    want = oracle_distance(polygons, x, y, 5.0)
    np.testing.assert_allclose(np.abs(distance), want, atol=1e-9)
    assert (
        np.sign(distance[np.abs(want) > 1e-9])
        == np.where(expected >= 0, 1, -1)[np.abs(want) > 1e-9]
    ).all()


def test_points_exactly_on_shared_edges_and_vertices():
    # two worksites sharing an edge, a triangle whose vertices sit on cell corners,
    # a square with a hole, and an overlap: the lowest fence number wins
    polygons = [
        shapely.box(0, 0, 10, 10),
        shapely.box(10, 0, 20, 10),
        shapely.Polygon([(30, 0), (40, 10), (30, 20), (20.5, 10)]),
        shapely.Polygon(
            [(50, 0), (60, 0), (60, 10), (50, 10)], [[(52, 2), (58, 2), (58, 8), (52, 8)]]
        ),
        shapely.box(5, 5, 15, 15),
    ]
    index = FenceIndex.build(polygons)
    x = np.array([10.0, 10.0, 0.0, 20.0, 30.0, 20.5, 52.0, 55.0, 55.0, 7.0, 12.0, 25.0])
    y = np.array([5.0, 10.0, 0.0, 10.0, 20.0, 10.0, 5.0, 2.0, 5.0, 12.0, 12.0, 10.0])
    np.testing.assert_array_equal(index.classify(x, y), oracle(polygons, x, y))
    # a point on the shared edge belongs to the lower-numbered fence; inside the hole is out
    assert index.classify(np.array([10.0]), np.array([5.0]))[0] == 0
    assert index.classify(np.array([55.0]), np.array([5.0]))[0] == OUTSIDE


def test_far_away_and_huge_coordinates_are_outside_not_errors():
    index = FenceIndex.build([shapely.box(0, 0, 10, 10)], horizon_m=3.0)
    x = np.array([1e9, -1e9, 5.0, 1e6])
    y = np.array([5.0, -1e9, 1e9, 1e6])
    fence, distance = index.evaluate(x, y)
    assert (fence == OUTSIDE).all()
    np.testing.assert_array_equal(distance, -3.0)


def test_distance_is_exact_within_the_horizon_and_clamped_beyond():
    index = FenceIndex.build([shapely.box(0, 0, 100, 20)], horizon_m=5.0)
    x = np.array([50.0, 50.0, 50.0, 50.0, -2.5, 50.0])
    y = np.array([10.0, 1.25, 0.0, -3.0, 10.0, 30.0])
    fence, distance = index.evaluate(x, y)
    np.testing.assert_allclose(distance, [5.0, 1.25, 0.0, -3.0, -2.5, -5.0])
    np.testing.assert_array_equal(fence, [0, 0, 0, -1, -1, -1])


def test_non_finite_coordinates_are_refused_by_the_raw_index():
    index = FenceIndex.build([shapely.box(0, 0, 10, 10)])
    try:
        index.classify(np.array([np.nan]), np.array([1.0]))
    except ValueError as exc:
        assert "finite" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("NaN must not be silently classified")


def test_real_elr_corridors_agree_with_prepared_shapely():
    from benchmarks.workload import reference_workload

    work = reference_workload(corridor_count=60, fix_count=60_000)
    index = FenceIndex.build(work.corridors)
    fence = index.classify(work.x_m, work.y_m)
    np.testing.assert_array_equal(fence, oracle(work.corridors, work.x_m, work.y_m))


def test_subnormal_coordinates_do_not_fool_the_certified_sign():
    # found by the property test: an edge 1e-323 long, where products underflow
    polygons = [shapely.Polygon([(3, 0), (2, 0), (2, 1e-323), (1.081, 1.683), (3, 0)])]
    index = FenceIndex.build(polygons, cell_m=0.5, horizon_m=5.0)
    pts = tricky_points(polygons, np.random.default_rng(0), 0.5)
    x, y = pts[:, 0].copy(), pts[:, 1].copy()
    np.testing.assert_array_equal(index.classify(x, y), oracle(polygons, x, y))
