"""The index's one-fix path against its array path: the same answer, bit for bit.

`FenceIndex.evaluate_one` and `classify_one` decide a lone fix in plain Python; the
live service relies on them giving exactly what `evaluate` and `classify` give. So
every check here is equality: the same fence number, and the same float64 (its bytes,
so that -0.0 and 0.0 differ), on the points where a slip would show: vertices and
edges (where the exact path hands over to GEOS), cells crossed by several fences,
cells where an edge ends, long distance lists, beyond the horizon and off the grid.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geofence.index import (
    ENTRY_COUNT,
    ENTRY_FENCE,
    ENTRY_FLAGS,
    NO_REFERENCE,
    REFERENCE_MASK,
    REFERENCE_OFFSETS,
    SPANS_CELL,
    FenceIndex,
)
from loading.site_files import load_site
from tests.conftest import ROOT
from tests.test_index_oracle import polygon, tricky_points

SITES = sorted((ROOT / "examples" / "sites").glob("*.toml"))


def mismatches(index: FenceIndex, x: np.ndarray, y: np.ndarray) -> list[str]:
    """Every point where the one-fix path differs from the array path (empty: none)."""
    fence, distance = index.evaluate(x, y)
    classified = index.classify(x, y)
    wrong = []
    for i, (px, py) in enumerate(zip(x.tolist(), y.tolist(), strict=True)):
        one_fence, one_distance = index.evaluate_one(px, py)
        alone = index.classify_one(px, py)
        if not (type(one_fence) is int and type(alone) is int and type(one_distance) is float):
            wrong.append(f"({px!r}, {py!r}): not plain Python numbers")
        if (
            one_fence != fence[i]
            or alone != classified[i]
            or np.float64(one_distance).tobytes() != distance[i].tobytes()
        ):
            wrong.append(
                f"({px!r}, {py!r}): one fix ({one_fence}, {alone}, {one_distance!r}), "
                f"arrays ({fence[i]}, {classified[i]}, {distance[i]!r})"
            )
    return wrong


def assert_same(index: FenceIndex, x: np.ndarray, y: np.ndarray) -> None:
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    with np.errstate(over="ignore"):  # the far points: the array path's cell overflows to inf
        wrong = mismatches(index, x, y)
    assert not wrong, f"{len(wrong)} of {x.size} differ, e.g. " + "; ".join(wrong[:5])


def probe_points(geoms, index: FenceIndex, rng: np.random.Generator, count: int) -> np.ndarray:
    """Points where the decision is hard: every vertex, points on edges and a few ulps off
    them, cell corners, points at random distances across edges out past the horizon,
    random points around the fences, and points far off the grid."""
    coords = [shapely.get_coordinates(r) for r in shapely.get_rings(shapely.get_parts(geoms))]
    vertices = np.concatenate([c[:-1] for c in coords])
    a = np.concatenate([c[:-1] for c in coords])
    b = np.concatenate([c[1:] for c in coords])
    pick = rng.integers(0, len(a), count)
    t = rng.random((count, 1))
    on_edge = a[pick] + t * (b[pick] - a[pick])
    normal = (b - a)[pick][:, ::-1] * [1.0, -1.0]
    normal /= np.maximum(np.hypot(normal[:, 0], normal[:, 1]), 1e-300)[:, None]
    across = on_edge + rng.uniform(-1.5, 1.5, (count, 1)) * (index.horizon_m + 1) * normal
    lo, hi = shapely.total_bounds(geoms).reshape(2, 2)
    around = rng.uniform(lo - index.horizon_m - 5, hi + index.horizon_m + 5, (count, 2))
    corners = np.round((vertices[rng.integers(0, len(vertices), count // 4)] - [
        index.origin_x_m, index.origin_y_m]) / index.cell_m) * index.cell_m + [
        index.origin_x_m, index.origin_y_m]  # fmt: skip
    exact = np.concatenate([vertices, on_edge[: count // 4], corners])
    nudged = [
        np.nextafter(exact, np.inf),
        np.nextafter(exact, -np.inf),
        exact + np.array([1e-12, -1e-12]),
    ]
    big = np.finfo(np.float64).max
    far = np.array([[1e9, 0.0], [-1e9, -1e9], [0.0, 1e12], [big, -big], [-big, big],
                    [lo[0] - 1e6, lo[1]], [hi[0], hi[1] + 1e6], [5e-324, -5e-324]])  # fmt: skip
    return np.concatenate([exact, *nudged, across, around, far])


def paths_taken(index: FenceIndex, x: np.ndarray, y: np.ndarray) -> set[str]:
    """Which of the index's harder paths these points go down (to show a test reaches them)."""
    with np.errstate(over="ignore"):
        code, distance_list = index._lookup(x, y, want_distance=True)
        _, signed = index.evaluate(x, y)
        fx = (x - index.origin_x_m) / index.cell_m
        fy = (y - index.origin_y_m) / index.cell_m
    taken = set()
    boundary = code[code <= -2]
    for first in (-2 - boundary).tolist():
        rows = index.boundary_entries[first : first + index.boundary_entries[first, ENTRY_COUNT]]
        flags = rows[:, ENTRY_FLAGS]
        taken |= {"boundary cell"}
        if len(rows) > 1:
            taken |= {"several edges in a cell"}
        if len(set(rows[:, ENTRY_FENCE].tolist())) > 1:
            taken |= {"several fences in a cell"}
        if ((flags & SPANS_CELL) == 0).any():
            taken |= {"an edge that ends in the cell"}
        if ((flags & REFERENCE_MASK) == NO_REFERENCE).any():
            taken |= {"no certain reference"}
    listed = distance_list[distance_list >= 0]
    start = index.distance_overflow_start
    if (start[listed + 1] > start[listed]).any():
        taken |= {"overflowing distance list"}
    if (np.abs(signed) == index.horizon_m).any():
        taken |= {"beyond the horizon"}
    if ((fx < 0) | (fx > index.fine_cells_x - 1) | (fy < 0) | (fy > index.fine_cells_y - 1)).any():
        taken |= {"off the grid"}
    return taken


@pytest.fixture
def geos_calls(monkeypatch):
    """Counts the one-fix path's questions to GEOS (the uncertain path)."""
    calls = []
    real = shapely.intersects_xy

    def counting(geometry, x, y):
        if np.ndim(x) == 0:
            calls.append((x, y))
        return real(geometry, x, y)

    monkeypatch.setattr(shapely, "intersects_xy", counting)
    return calls


#: A small fence at the origin: it pins the grid, so that cells can be placed in advance.
ANCHOR = shapely.box(0, 0, 1, 1)


def reference_points(cell_m: float, horizon_m: float) -> list[tuple[float, float]]:
    """The four candidate reference points of the cell [10, 11] × [10, 11], in an index
    of fences whose lowest corner is ANCHOR's (as the build computes them)."""
    probe = FenceIndex.build([ANCHOR], cell_m=cell_m, horizon_m=horizon_m)
    ox, oy, cell = probe.origin_x_m, probe.origin_y_m, probe.cell_m
    ix, iy = round((10 - ox) / cell), round((10 - oy) / cell)
    return [(ox + (ix + fx) * cell, oy + (iy + fy) * cell) for fx, fy in REFERENCE_OFFSETS.tolist()]


def comb_through_every_reference() -> list:
    """A comb whose four teeth run right through the cell, each exactly along the line of
    one candidate reference point: no reference is certain, so every fix there asks GEOS."""
    ya, yb, yc, yd = sorted(y for _, y in reference_points(1.0, 3.0))
    comb = shapely.Polygon([(5, ya), (15, ya), (15, yb), (6, yb), (6, yc), (15, yc), (15, yd),
                            (5, yd)])  # fmt: skip
    assert comb.is_valid
    return [ANCHOR, comb]


def edge_aimed_at_the_first_reference() -> list:
    """A triangle whose edge ends in the cell on the line through the first candidate
    reference point: the cell takes the second, and the edge's end decides crossings."""
    rx, ry = reference_points(1.0, 3.0)[0]
    return [ANCHOR, shapely.Polygon([(rx - 5, ry), (rx - 0.1, ry), (rx - 0.1, ry + 5)])]


def awkward_fences() -> list:
    """Overlapping fences (lowest number wins), a shared edge, a hole, a multipolygon, a
    triangle with vertices on cell corners, a sliver, and a many-sided circle (long
    distance lists)."""
    return [
        shapely.box(0, 0, 10, 10),
        shapely.box(10, 0, 20, 10),
        shapely.box(5, 5, 15, 15),
        shapely.Polygon([(30, 0), (40, 10), (30, 20), (20.5, 10)]),
        shapely.Polygon(
            [(50, 0), (60, 0), (60, 10), (50, 10)], [[(52, 2), (58, 2), (58, 8), (52, 8)]]
        ),
        shapely.MultiPolygon([shapely.box(70, 0, 72, 3), shapely.box(73.5, 1, 76, 2.25)]),
        shapely.Polygon([(0, 30), (25, 30.001), (25, 30.4), (0, 30.0002)]),
        shapely.Point(45, 40).buffer(6, quad_segs=64),
        shapely.Point(47, 41).buffer(3, quad_segs=16),
    ]


@pytest.mark.parametrize("cell_m, horizon_m", [(1.0, 5.0), (0.25, 2.0), (2.0, 10.0), (1.0, 0.0)])
def test_awkward_fences_agree_with_the_array_path(cell_m, horizon_m, geos_calls):
    geoms = awkward_fences()
    index = FenceIndex.build(geoms, cell_m=cell_m, horizon_m=horizon_m)
    pts = probe_points(np.array(geoms, dtype=object), index, np.random.default_rng(3), 3000)
    x, y = pts[:, 0].copy(), pts[:, 1].copy()
    assert_same(index, x, y)
    assert geos_calls, "points on edges and vertices should reach GEOS"
    expected = {
        "boundary cell",
        "several edges in a cell",
        "several fences in a cell",
        "an edge that ends in the cell",
        "overflowing distance list",
        "off the grid",
    }
    if horizon_m < 10:
        expected |= {"beyond the horizon"}
    assert expected <= paths_taken(index, x, y)


def test_small_batches_agree_with_large_ones():
    # a batch with few fixes near long distance lists takes those lists one fix at a
    # time; a large one takes them in vectorised passes: the same bits either way
    index = FenceIndex.build(awkward_fences(), horizon_m=5.0)
    rng = np.random.default_rng(4)
    pts = np.concatenate([rng.uniform([38, 33], [52, 47], (3000, 2)),
                          probe_points(index.geometries, index, rng, 1000)])  # fmt: skip
    x, y = pts[:, 0].copy(), pts[:, 1].copy()
    with np.errstate(over="ignore"):
        fence, distance = index.evaluate(x, y)
        for start in range(0, x.size, 7):
            part = slice(start, start + 7)
            small_fence, small_distance = index.evaluate(x[part], y[part])
            assert small_fence.tolist() == fence[part].tolist()
            assert small_distance.tobytes() == distance[part].tobytes()


def test_a_cell_without_a_certain_reference_asks_geos(geos_calls):
    geoms = comb_through_every_reference()
    index = FenceIndex.build(geoms, cell_m=1.0, horizon_m=3.0)
    rng = np.random.default_rng(5)
    cell = rng.uniform([10, 10], [11, 11], (400, 2))
    pts = np.concatenate([cell, probe_points(np.array(geoms, dtype=object), index, rng, 500)])
    x, y = pts[:, 0].copy(), pts[:, 1].copy()
    assert "no certain reference" in paths_taken(index, x, y)
    assert_same(index, x, y)
    asked = len(geos_calls)
    index.classify_one(10.5, 10.5)
    assert len(geos_calls) == asked + 1


def test_a_cell_using_its_second_reference_point_agrees():
    geoms = edge_aimed_at_the_first_reference()
    index = FenceIndex.build(geoms, cell_m=1.0, horizon_m=3.0)
    assert ((index.boundary_entries[:, ENTRY_FLAGS] & REFERENCE_MASK) == 1).any()
    rng = np.random.default_rng(6)
    cell = rng.uniform([10, 10], [11, 11], (400, 2))
    pts = np.concatenate([cell, probe_points(np.array(geoms, dtype=object), index, rng, 500)])
    x, y = pts[:, 0].copy(), pts[:, 1].copy()
    assert "an edge that ends in the cell" in paths_taken(index, x, y)
    assert_same(index, x, y)


@pytest.mark.slow
@settings(max_examples=80, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(
    polygons=st.lists(polygon(), min_size=1, max_size=4),
    merged=st.booleans(),
    cell_m=st.sampled_from([0.25, 0.5, 1.0, 2.0]),
    horizon_m=st.sampled_from([0.0, 1.0, 5.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_fences_agree_with_the_array_path(polygons, merged, cell_m, horizon_m, seed):
    if merged and len(polygons) > 1:  # one fence of several parts, often a multipolygon
        polygons = [shapely.union_all(polygons[:2]), *polygons[2:]]
    index = FenceIndex.build(polygons, cell_m=cell_m, horizon_m=horizon_m)
    rng = np.random.default_rng(seed)
    pts = probe_points(np.array(polygons, dtype=object), index, rng, 600)
    tricky = tricky_points(polygons, rng, cell_m)
    pts = np.concatenate([pts, tricky[rng.integers(0, len(tricky), 1500)]])
    assert_same(index, pts[:, 0].copy(), pts[:, 1].copy())


@pytest.mark.parametrize("path", SITES, ids=lambda p: p.stem)
def test_example_sites_agree_with_the_array_path(path):
    site = load_site(path)
    rng = np.random.default_rng(11)
    for index in (site.index, site.danger_index):
        if index is None:
            continue
        pts = probe_points(index.geometries, index, rng, 4000)
        x, y = pts[:, 0].copy(), pts[:, 1].copy()
        assert_same(index, x, y)
        assert {"boundary cell", "beyond the horizon", "off the grid"} <= paths_taken(index, x, y)


def test_inputs_other_than_python_floats_give_the_same_answer():
    index = FenceIndex.build([shapely.box(0, 0, 10, 4)], horizon_m=3.0)
    want = index.evaluate_one(5.0, 3.0)
    assert want == (0, 1.0)
    for x, y in [(5, 3), (np.float64(5.0), np.float64(3.0)), (np.float32(5.0), np.int64(3))]:
        got = index.evaluate_one(x, y)
        assert got == want and type(got[0]) is int and type(got[1]) is float
        assert index.classify_one(x, y) == 0


def test_outside_on_the_edge_of_the_union_is_minus_zero_as_the_arrays_say():
    # a fix on a shared edge is inside (distance +0.0); outside at distance 0 cannot
    # happen (covers includes the boundary), so the sign of zero follows the fence
    index = FenceIndex.build([shapely.box(0, 0, 10, 4)], horizon_m=3.0)
    fence, distance = index.evaluate_one(10.0, 2.0)
    assert (fence, distance) == (0, 0.0) and math.copysign(1.0, distance) == 1.0
    assert_same(index, np.array([10.0, 10.0 + 1e-15, 0.0]), np.array([2.0, 2.0, 4.0]))


def test_non_finite_positions_are_refused():
    index = FenceIndex.build([shapely.box(0, 0, 10, 4)])
    for x, y in [(math.nan, 1.0), (1.0, math.nan), (math.inf, 1.0), (1.0, -math.inf)]:
        with pytest.raises(ValueError, match="finite"):
            index.evaluate_one(x, y)
        with pytest.raises(ValueError, match="finite"):
            index.classify_one(x, y)
    with pytest.raises(ValueError, match="finite"):
        index.evaluate(np.array([math.nan]), np.array([1.0]))


def test_the_index_still_pickles_once_the_one_fix_tables_are_built():
    index = FenceIndex.build(awkward_fences(), horizon_m=5.0)
    before = index.evaluate_one(45.0, 34.5)
    again = pickle.loads(pickle.dumps(index))
    assert again.evaluate_one(45.0, 34.5) == before
    pts = probe_points(again.geometries, again, np.random.default_rng(2), 300)
    assert_same(again, pts[:, 0].copy(), pts[:, 1].copy())


def test_subnormal_coordinates_agree_with_the_array_path():
    # from the oracle's property test: an edge 1e-323 long, where products underflow and
    # only the absolute floor keeps an orientation's sign from being believed
    polygons = [shapely.Polygon([(3, 0), (2, 0), (2, 1e-323), (1.081, 1.683), (3, 0)])]
    index = FenceIndex.build(polygons, cell_m=0.5, horizon_m=5.0)
    pts = tricky_points(polygons, np.random.default_rng(0), 0.5)
    tiny = np.array([[2.0, 5e-324], [2.0, 1e-323], [2.5, 5e-324], [2.0 + 1e-16, 1e-323]])
    pts = np.concatenate(
        [pts, tiny, probe_points(np.array(polygons), index, np.random.default_rng(1), 500)]
    )
    assert_same(index, pts[:, 0].copy(), pts[:, 1].copy())
