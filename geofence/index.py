"""The compiled fence index: which fence covers each fix, and how far it is from the edge.

Evaluating a million fixes a second against GEOS one point at a time is too
slow for a live service and too slow for replaying a ten-week trial, and an
approximation is not acceptable for a safety decision. This index gives GEOS's
answer at array speed by deciding almost every fix with integer arithmetic and
only ever asking an exact question about the few that are genuinely close:

1. A sparse pyramid of square cells (256 m super cells → 16 m blocks → 1 m
   fine cells, with the default 1 m cell) labels every fine cell either with the
   fence that covers all of it, with "outside", or as a *boundary cell*. A fix
   is located by three array gathers.
2. In a boundary cell, a fix is classified exactly by ray parity from a
   reference point of known status, against only the edges that cross the cell,
   using orientation tests with a certified sign (geofence.predicates).
3. A fix whose sign cannot be certified (on an edge, on a vertex, within a few
   ulps) is given to GEOS itself (`shapely.intersects_xy`, which for a point is
   `covers`). So the answer agrees with `shapely.covers` on every input, by
   construction rather than by tolerance.

Signed distance to the boundary of the union of fences (positive inside) is
exact within `horizon_m`; further away it is reported as ±`horizon_m`, which
reads "at least this far". Each 16 m block keeps only the edges that can be the
nearest for some point in it (a min–max bound), usually one to three.

Fences may overlap; a fix covered by several is given the lowest fence number.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import shapely

from geofence.predicates import orient

#: Fine cells per block side and blocks per super cell side (4 bits each).
FANOUT_BITS = 4
FANOUT = 1 << FANOUT_BITS
FANOUT_MASK = FANOUT - 1
#: Fence number meaning "covered by no fence".
OUTSIDE = -1


def group_ranges(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expand CSR ranges: for each i, the indices starts[i] .. starts[i]+counts[i]-1.

    Returns (owner, index): owner[j] is the i that produced index[j].
    """
    total = int(counts.sum())
    owner = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    index = starts[owner] + (np.arange(total, dtype=np.int64) - first[owner])
    return owner, index


@dataclass(frozen=True, eq=False)
class FenceIndex:
    """An immutable, compiled view of a set of fences in one local metric frame.

    Build it once per site with `FenceIndex.build(polygons)`; evaluate with
    `classify` (fence numbers only) or `evaluate` (fence numbers and signed
    distances). Both take float64 arrays of local x/y in metres.
    """

    geometries: np.ndarray  # object array of prepared (Multi)Polygons, one per fence
    cell_m: float
    horizon_m: float
    origin_x_m: float
    origin_y_m: float
    fine_cells_x: int
    fine_cells_y: int
    # level 0: dense super-cell grid -> block number (block 0 is empty)
    super_cells_x: int
    root_block: np.ndarray  # int32 [super_y * super_x]
    # level 1: blocks of FANOUT² coarse cells -> tile number, and distance list (or -1)
    block_tile: np.ndarray  # int32 [blocks * FANOUT²]
    block_distance_list: np.ndarray  # int32 [blocks * FANOUT²]
    # level 2: tiles of FANOUT² fine cells -> fence number, OUTSIDE, or -2 - boundary cell
    tile_code: np.ndarray  # int32 [tiles * FANOUT²]
    # boundary cells: label if no listed fence covers, then per-fence runs of edges
    boundary_fallback: np.ndarray  # int32 [cells]
    boundary_run_start: np.ndarray  # int64 [cells + 1]
    run_fence: np.ndarray  # int32 [runs]
    run_ref_x: np.ndarray  # float64 [runs]
    run_ref_y: np.ndarray
    run_ref_inside: np.ndarray  # bool [runs]
    run_ref_certain: np.ndarray  # bool [runs]: False -> always ask GEOS
    run_edge_start: np.ndarray  # int64 [runs + 1]
    run_edge: np.ndarray  # int32 -> fence edge
    run_edge_ref_left: np.ndarray  # bool: reference point is left of the edge
    edge_ax: np.ndarray  # fence edges, float64
    edge_ay: np.ndarray
    edge_bx: np.ndarray
    edge_by: np.ndarray
    # distance lists: per block cell, the union-boundary edges that can be nearest
    distance_start: np.ndarray  # int64 [lists + 1]
    distance_edge: np.ndarray  # int32 -> union edge
    union_ax: np.ndarray
    union_ay: np.ndarray
    union_dx: np.ndarray
    union_dy: np.ndarray
    union_inv_len2: np.ndarray

    @classmethod
    def build(
        cls,
        polygons: list | np.ndarray,
        *,
        cell_m: float = 1.0,
        horizon_m: float = 10.0,
        names: list[str] | None = None,
    ) -> FenceIndex:
        """Compile fences (shapely Polygons/MultiPolygons in local metres).

        `cell_m` trades memory for speed (a smaller cell sends fewer fixes down the
        exact path); `horizon_m` is how far from the boundary distances are exact.
        Invalid or empty fences raise FenceError naming the fence.
        """
        from geofence.index_build import build_index

        return build_index(polygons, cell_m=cell_m, horizon_m=horizon_m, names=names)

    @property
    def fence_count(self) -> int:
        return int(self.geometries.size)

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's arrays (the fences' own GEOS memory not counted)."""
        return sum(
            getattr(self, f.name).nbytes
            for f in fields(self)
            if isinstance(getattr(self, f.name), np.ndarray) and f.name != "geometries"
        )

    # ------------------------------------------------------------------ lookup
    def _cells(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fine-cell integer coordinates, clamped into the grid's empty border."""
        inv = 1.0 / self.cell_m
        fx = np.subtract(x, self.origin_x_m)
        fx *= inv
        np.clip(fx, 0.0, self.fine_cells_x - 1, out=fx)
        fy = np.subtract(y, self.origin_y_m)
        fy *= inv
        np.clip(fy, 0.0, self.fine_cells_y - 1, out=fy)
        return fx.astype(np.int32), fy.astype(np.int32)

    def _lookup(
        self, x: np.ndarray, y: np.ndarray, want_distance: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        ix, iy = self._cells(x, y)
        shift2 = 2 * FANOUT_BITS
        block = self.root_block[(iy >> shift2) * self.super_cells_x + (ix >> shift2)]
        block_cell = (block << shift2) | (((iy >> FANOUT_BITS) & FANOUT_MASK) << FANOUT_BITS)
        block_cell |= (ix >> FANOUT_BITS) & FANOUT_MASK
        tile = self.block_tile[block_cell]
        iy &= FANOUT_MASK
        iy <<= FANOUT_BITS
        ix &= FANOUT_MASK
        ix |= iy
        ix |= tile << shift2
        code = self.tile_code[ix]
        distance_list = self.block_distance_list[block_cell] if want_distance else None
        return code, distance_list

    def _resolve_boundary(self, x: np.ndarray, y: np.ndarray, code: np.ndarray) -> None:
        """Replace boundary-cell codes by the exact covering fence (in place)."""
        at = np.flatnonzero(code <= -2)
        if at.size == 0:
            return
        cell = -2 - code[at]
        px_fix = x[at]
        py_fix = y[at]
        run_first = self.boundary_run_start[cell]
        run_count = self.boundary_run_start[cell + 1] - run_first
        fix_of_run, run = group_ranges(run_first, run_count)
        edge_first = self.run_edge_start[run]
        edge_count = self.run_edge_start[run + 1] - edge_first
        pair_run, slot = group_ranges(edge_first, edge_count)
        edge = self.run_edge[slot]
        ax = self.edge_ax[edge]
        ay = self.edge_ay[edge]
        bx = self.edge_bx[edge]
        by = self.edge_by[edge]
        fix_of_pair = fix_of_run[pair_run]
        px = px_fix[fix_of_pair]
        py = py_fix[fix_of_pair]
        run_of_pair = run[pair_run]
        rx = self.run_ref_x[run_of_pair]
        ry = self.run_ref_y[run_of_pair]
        o_p, sure_p = orient(ax, ay, bx, by, px, py)
        o_a, sure_a = orient(rx, ry, px, py, ax, ay)
        o_b, sure_b = orient(rx, ry, px, py, bx, by)
        crossing = ((o_p > 0) != self.run_edge_ref_left[slot]) & ((o_a > 0) != (o_b > 0))
        uncertain = ~(sure_p & sure_a & sure_b)
        pair_starts = np.cumsum(edge_count) - edge_count
        parity = np.add.reduceat(crossing.astype(np.int32), pair_starts) & 1
        run_uncertain = np.logical_or.reduceat(uncertain, pair_starts)
        run_uncertain |= ~self.run_ref_certain[run]
        inside = self.run_ref_inside[run] ^ parity.astype(bool)
        if run_uncertain.any():
            ask = np.flatnonzero(run_uncertain)
            fix = fix_of_run[ask]
            inside[ask] = shapely.intersects_xy(
                self.geometries[self.run_fence[run[ask]]], px_fix[fix], py_fix[fix]
            )
        no_fence = np.iinfo(np.int32).max
        candidate = np.where(inside, self.run_fence[run], no_fence)
        run_starts = np.cumsum(run_count) - run_count
        best = np.minimum.reduceat(candidate, run_starts)
        code[at] = np.where(best < no_fence, best, self.boundary_fallback[cell])

    def _distance(
        self, x: np.ndarray, y: np.ndarray, distance_list: np.ndarray
    ) -> np.ndarray:
        """Unsigned distance to the union boundary, capped at the horizon."""
        distance = np.full(x.shape, self.horizon_m, dtype=np.float64)
        at = np.flatnonzero(distance_list >= 0)
        if at.size == 0:
            return distance
        lists = distance_list[at]
        first = self.distance_start[lists]
        count = self.distance_start[lists + 1] - first
        owner, slot = group_ranges(first, count)
        edge = self.distance_edge[slot]
        px = x[at][owner]
        py = y[at][owner]
        rx = px - self.union_ax[edge]
        ry = py - self.union_ay[edge]
        dx = self.union_dx[edge]
        dy = self.union_dy[edge]
        t = (rx * dx + ry * dy) * self.union_inv_len2[edge]
        np.clip(t, 0.0, 1.0, out=t)
        rx -= t * dx
        ry -= t * dy
        d2 = rx * rx + ry * ry
        nearest = np.minimum.reduceat(d2, np.cumsum(count) - count)
        distance[at] = np.minimum(np.sqrt(nearest), self.horizon_m)
        return distance

    # ------------------------------------------------------------------ public
    def classify(self, x_m: np.ndarray, y_m: np.ndarray) -> np.ndarray:
        """Fence number covering each fix (lowest if several), or OUTSIDE (-1).

        Inputs must be finite (validate first: geofence.site does). Agrees with
        `shapely.covers(fence, Point(x, y))` for every fix, boundary included.
        """
        x = np.ascontiguousarray(x_m, dtype=np.float64)
        y = np.ascontiguousarray(y_m, dtype=np.float64)
        code, _ = self._lookup(x, y, want_distance=False)
        self._resolve_boundary(x, y, code)
        return code

    def evaluate(self, x_m: np.ndarray, y_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fence numbers and signed distances (m) to the boundary of the union of fences.

        Distance is positive inside, negative outside, 0 on the boundary, and
        clamped to ±horizon_m beyond the horizon.
        """
        x = np.ascontiguousarray(x_m, dtype=np.float64)
        y = np.ascontiguousarray(y_m, dtype=np.float64)
        code, distance_list = self._lookup(x, y, want_distance=True)
        self._resolve_boundary(x, y, code)
        distance = self._distance(x, y, distance_list)
        np.negative(distance, out=distance, where=code < 0)
        return code, distance
