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

A lone fix (the live service when it is quiet) is decided by `evaluate_one` and
`classify_one`: the same steps in plain Python on the same tables, giving the same
bits, in a few microseconds where numpy's per-call cost on arrays of one is tens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np
import shapely

from geofence.predicates import ORIENT_ERROR_FACTOR, ORIENT_UNDERFLOW_FLOOR, orient

#: Fine cells per block side and blocks per super cell side (4 bits each).
FANOUT_BITS = 4
FANOUT = 1 << FANOUT_BITS
FANOUT_MASK = FANOUT - 1
#: Fence number meaning "covered by no fence".
OUTSIDE = -1


def group_ranges(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expand CSR ranges: for each i, the indices starts[i] .. starts[i]+counts[i]-1.

    Returns (owner, index): owner[j] is the i that produced index[j].

    >>> group_ranges(np.array([10, 20]), np.array([2, 3]))
    (array([0, 0, 1, 1, 1]), array([10, 11, 20, 21, 22]))
    """
    total = int(counts.sum())
    owner = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    index = starts[owner] + (np.arange(total, dtype=np.int64) - first[owner])
    return owner, index


#: Where in a boundary cell its reference point may sit (fractions of the cell), tried in
#: order at build time until one has a certified side of every edge in the cell.
REFERENCE_OFFSETS = np.array(
    [(0.5731, 0.5419), (0.2917, 0.7383), (0.8137, 0.2269), (0.3541, 0.1877)], dtype=np.float64
)
#: Reference offset number meaning "no certain reference: always ask GEOS".
NO_REFERENCE = 7
#: Columns of a boundary entry record.
ENTRY_EDGE = 0  # fence edge crossing the cell
ENTRY_FENCE = 1  # the fence it belongs to
ENTRY_FLAGS = 2  # bits 0-2 reference offset; REFERENCE_INSIDE, REFERENCE_LEFT, RUN_FIRST
ENTRY_COUNT = 3  # entries in this cell (read from the cell's first entry)
ENTRY_FALLBACK = 4  # label of the cell when none of its listed fences covers the fix
ENTRY_FIELDS = 5
REFERENCE_MASK = 0b111
REFERENCE_INSIDE = 1 << 3  # the entry's fence covers the reference point
REFERENCE_LEFT = 1 << 4  # the reference point is left of the entry's edge
RUN_FIRST = 1 << 5  # first entry of its fence's run
SPANS_CELL = 1 << 6  # the edge runs right through the cell: there it is its own line
#: Distance lists keep their first two edges in fixed slots (most lists have one or two).
DISTANCE_SLOTS = 2
#: Fixes per pass of the distance arithmetic, so that its buffers stay in cache.
DISTANCE_CHUNK = 1 << 14
#: Up to this many fixes with overflow edges are done one by one in Python (a few µs each):
#: quicker than the dozens of numpy calls the vectorised passes make.
_FEW_OVERFLOWS = 32


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
    # level 1: blocks of FANOUT² coarse cells -> tile number (low 32 bits) and distance
    # list + 1 (high 32 bits; 0 = none), packed so one gather fetches both
    block_entry: np.ndarray  # int64 [blocks * FANOUT²]
    # level 2: tiles of FANOUT² fine cells -> fence number, OUTSIDE, or -2 - boundary cell
    tile_code: np.ndarray  # int32 [tiles * FANOUT²]
    # boundary cells: a tile code -2 - e points at entry e, the first of the cell's entries
    # (one per fence edge crossing the cell, grouped into runs of one fence in fence order).
    # An entry is one int32 record, so a fix in a boundary cell costs one cache line:
    boundary_entries: np.ndarray  # int32 [entries, ENTRY_FIELDS]
    edge_ax: np.ndarray  # fence edges, float64
    edge_ay: np.ndarray
    edge_bx: np.ndarray
    edge_by: np.ndarray
    # distance lists, per block cell: the union-boundary edges that can be nearest, as
    # segment parameters [ax, ay, dx, dy, 1/len²] in DISTANCE_SLOTS fixed slots, then overflow
    distance_slots: np.ndarray  # float64 [5 * DISTANCE_SLOTS, lists]
    distance_overflow_start: np.ndarray  # int32 [lists + 1]
    distance_overflow_edge: np.ndarray  # int32 -> union edge
    union_segments: np.ndarray  # float64 [5, union edges]

    @classmethod
    def build(
        cls,
        polygons: list | np.ndarray,
        *,
        cell_m: float = 1.0,
        horizon_m: float = 10.0,
        names: list[str] | None = None,
    ) -> FenceIndex:
        """Compile fences into an index.

        Parameters
        ----------
        polygons : sequence of shapely Polygon or MultiPolygon
            The fences, in one local metric frame (metres); fence i is number i.
        cell_m : float
            The fine cell's side, metres. It trades memory for speed: a smaller cell
            sends fewer fixes down the exact path.
        horizon_m : float
            How far from the boundary signed distances are exact, metres (0: none).
        names : list of str, optional
            The fences' names, for errors (default "#0", "#1", …).

        Returns
        -------
        FenceIndex

        Invalid or empty fences raise FenceError naming the fence.

        Examples
        --------
        >>> import shapely
        >>> index = FenceIndex.build([shapely.box(0, 0, 10, 4), shapely.box(8, 0, 30, 4)],
        ...                          cell_m=1.0, horizon_m=3.0, names=["west", "east"])
        >>> index.fence_count, index.horizon_m
        (2, 3.0)
        """
        from geofence.index_build import build_index

        return build_index(polygons, cell_m=cell_m, horizon_m=horizon_m, names=names)

    @property
    def fence_count(self) -> int:
        """How many fences the index holds (numbered 0 to fence_count - 1)."""
        return int(self.geometries.size)

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's arrays (the fences' own GEOS memory not counted)."""
        return sum(
            getattr(self, f.name).nbytes
            for f in fields(self)
            if isinstance(getattr(self, f.name), np.ndarray) and f.name != "geometries"
        )

    @cached_property
    def _has_overflow(self) -> np.ndarray:
        """Whether each distance list has overflow edges (a small table, built once)."""
        return np.diff(self.distance_overflow_start) > 0

    # ------------------------------------------------------------------ lookup
    def _cells(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fine-cell integer coordinates; fixes off the grid are clamped into its empty border."""
        inv = 1.0 / self.cell_m
        f = np.empty(x.shape, dtype=np.float64)  # one buffer for both axes
        out = []
        for values, origin, limit in (
            (x, self.origin_x_m, self.fine_cells_x - 1),
            (y, self.origin_y_m, self.fine_cells_y - 1),
        ):
            np.subtract(values, origin, out=f)
            f *= inv
            if f.size:
                lo, hi = f.min(), f.max()
                if np.isnan(lo) or np.isnan(hi):
                    raise ValueError("coordinates must be finite (validate fixes before the index)")
                if lo < 0 or hi > limit:
                    np.clip(f, 0.0, limit, out=f)
            out.append(f.astype(np.int32))
        return out[0], out[1]

    def _lookup(
        self, x: np.ndarray, y: np.ndarray, want_distance: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(tile code, distance list or -1) per fix: three gathers down the pyramid.

        The steps reuse two int32 arrays in place: every fresh temporary this size costs
        page faults on each call, once the allocator has handed the memory back.
        """
        ix, iy = self._cells(x, y)
        node = np.right_shift(iy, 2 * FANOUT_BITS)  # the super cell...
        node *= self.super_cells_x
        scratch = np.right_shift(ix, 2 * FANOUT_BITS)
        node += scratch
        # np.take: faster than fancy indexing for these large, randomly hit tables; mode
        # "clip" (every index is in range) lets it write into an array already there
        node, scratch = np.take(self.root_block, node, out=scratch, mode="clip"), node
        _descend(node, ix, iy, FANOUT_BITS, scratch)  # ...its block and block cell...
        entry = np.take(self.block_entry, node)
        if self.tile_code.size < 2**31:  # any index that fits in memory: int32 will do
            np.copyto(node, entry, casting="unsafe")  # the tile: the low 32 bits
        else:  # pragma: no cover
            node = entry & 0xFFFFFFFF
        _descend(node, ix, iy, 0, scratch)  # ...and the fine cell in its tile
        code = np.take(self.tile_code, node, out=scratch, mode="clip")
        distance_list = None
        if want_distance:
            entry >>= 32
            entry -= 1
            distance_list = entry
        return code, distance_list

    def _resolve_boundary(self, x: np.ndarray, y: np.ndarray, code: np.ndarray) -> None:
        """Replace boundary-cell codes by the exact covering fence (in place).

        Nearly every boundary cell has one fence edge crossing it, so every fix takes the
        short path (`_decide_single`) and the few in cells with several then the general one.
        """
        at = np.flatnonzero(code <= -2)
        if at.size == 0:
            return
        first = -2 - code[at]
        # np.take copies whole records; plain fancy indexing of rows is several times slower
        head = np.take(self.boundary_entries, first, axis=0)
        code[at] = self._decide_single(x[at], y[at], head)
        several = np.flatnonzero(head[:, ENTRY_COUNT] != 1)
        if several.size:  # their provisional answers are replaced here
            at = at[several]
            code[at] = self._decide_several(x[at], y[at], first[several], head[several])

    def _crossings(
        self, px: np.ndarray, py: np.ndarray, edge: np.ndarray, flags: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(crossing, sure) per entry: whether the segment from the cell's reference point r
        to the fix p crosses the entry's edge, and whether that is certain."""
        ax = np.take(self.edge_ax, edge)  # np.take: quicker than fancy indexing here
        ay = np.take(self.edge_ay, edge)
        bx = np.take(self.edge_bx, edge)
        by = np.take(self.edge_by, edge)
        # r→p crosses the edge only if r and p lie on opposite sides of its line...
        o_p, sure = orient(ax, ay, bx, by, px, py)
        crossing = (o_p > 0) != ((flags & REFERENCE_LEFT) != 0)
        reference = flags & REFERENCE_MASK
        sure &= reference != NO_REFERENCE
        # ...which is enough where the edge spans the cell; elsewhere a vertex of the edge
        # is in the cell, and p must also see the edge's ends on opposite sides of r→p.
        # r is a fixed place in the fix's own cell.
        partial = np.flatnonzero((flags & SPANS_CELL) == 0)
        if partial.size:
            qx, qy = px[partial], py[partial]
            cx, cy = self._cells(qx, qy)
            offsets = REFERENCE_OFFSETS[np.minimum(reference[partial], len(REFERENCE_OFFSETS) - 1)]
            rx = self.origin_x_m + (cx + offsets[:, 0]) * self.cell_m
            ry = self.origin_y_m + (cy + offsets[:, 1]) * self.cell_m
            o_a, sure_a = orient(rx, ry, qx, qy, ax[partial], ay[partial])
            o_b, sure_b = orient(rx, ry, qx, qy, bx[partial], by[partial])
            crossing[partial] &= (o_a > 0) != (o_b > 0)
            sure[partial] &= sure_a & sure_b
        return crossing, sure

    def _decide_single(self, fix_x: np.ndarray, fix_y: np.ndarray, head: np.ndarray) -> np.ndarray:
        """The covering fence of fixes in boundary cells crossed by one edge (`head`: the
        cell's entry): its fence if the fix is on the reference point's side, or not.

        Fixes in cells with several entries get a provisional answer (from the first entry,
        without asking GEOS): the caller replaces it.
        """
        flags = head[:, ENTRY_FLAGS]
        crossing, sure = self._crossings(fix_x, fix_y, head[:, ENTRY_EDGE], flags)
        inside = crossing ^ ((flags & REFERENCE_INSIDE) != 0)
        fence = head[:, ENTRY_FENCE]
        if not sure.all():
            ask = np.flatnonzero(~sure & (head[:, ENTRY_COUNT] == 1))
            inside[ask] = shapely.intersects_xy(self.geometries[fence[ask]], fix_x[ask], fix_y[ask])
        return np.where(inside, fence, head[:, ENTRY_FALLBACK])

    def _decide_several(
        self, fix_x: np.ndarray, fix_y: np.ndarray, first: np.ndarray, head: np.ndarray
    ) -> np.ndarray:
        """The covering fence of fixes in boundary cells with several entries (`first`, and
        `head` its record): ray parity per fence's run of edges, and the lowest fence wins."""
        owner, slot = group_ranges(first.astype(np.int64), head[:, ENTRY_COUNT].astype(np.int64))
        record = np.take(self.boundary_entries, slot, axis=0)
        flags = record[:, ENTRY_FLAGS]
        crossing, sure = self._crossings(fix_x[owner], fix_y[owner], record[:, ENTRY_EDGE], flags)
        runs = np.flatnonzero(flags & RUN_FIRST)
        ref_inside = (flags[runs] & REFERENCE_INSIDE) != 0
        parity = np.add.reduceat(crossing.astype(np.int8), runs) & 1
        inside = ref_inside ^ parity.astype(bool)
        uncertain = ~np.logical_and.reduceat(sure, runs)
        run_fence = record[runs, ENTRY_FENCE]
        run_owner = owner[runs]
        if uncertain.any():
            ask = np.flatnonzero(uncertain)
            fix = run_owner[ask]
            inside[ask] = shapely.intersects_xy(
                self.geometries[run_fence[ask]], fix_x[fix], fix_y[fix]
            )
        no_fence = np.iinfo(np.int32).max
        candidate = np.where(inside, run_fence, no_fence)
        fix_first = np.flatnonzero(np.r_[True, run_owner[1:] != run_owner[:-1]])
        candidate = np.minimum.reduceat(candidate, fix_first)
        return np.where(candidate < no_fence, candidate, head[:, ENTRY_FALLBACK])

    def _distance(self, x: np.ndarray, y: np.ndarray, distance_list: np.ndarray) -> np.ndarray:
        """Unsigned distance to the union boundary, capped at the horizon.

        The distances are written over `distance_list` (int64, one per fix: the same size),
        which is not needed after: memory reused, rather than fresh from the operating
        system (page faults) on every call.
        """
        at = np.flatnonzero(distance_list >= 0)
        lists = np.take(distance_list, at)
        nearest = np.empty(at.size, dtype=np.float64)
        if at.size:
            self._slot_distance2(x, y, at, lists, nearest)
            self._overflow_distance2(x, y, at, lists, nearest)
            np.sqrt(nearest, out=nearest)
            np.minimum(nearest, self.horizon_m, out=nearest)
        distance = distance_list.view(np.float64)
        distance.fill(self.horizon_m)
        distance[at] = nearest
        return distance

    def _slot_distance2(
        self, x: np.ndarray, y: np.ndarray, at: np.ndarray, lists: np.ndarray, nearest: np.ndarray
    ) -> None:
        """Squared distance from the fixes `at` to the nearest of their lists' fixed-slot
        edges, into `nearest`.

        Done DISTANCE_CHUNK fixes at a time in reused buffers, so that the dozen passes of
        arithmetic over them stay in cache rather than streaming whole arrays to memory.
        """
        n = lists.size
        step = min(n, DISTANCE_CHUNK)
        rows = 5 * DISTANCE_SLOTS + 5
        store = np.empty(rows * step, dtype=np.float64)
        for start in range(0, n, step):
            m = min(step, n - start)
            part = slice(start, start + m)
            buffers = store[: rows * m].reshape(rows, m)  # rows contiguous, for np.take
            params, (px, py, spare, ry, t) = buffers[:-5], buffers[-5:]
            # np.take: quicker than fancy indexing, and with mode "clip" (every index is
            # in range) it writes straight into the buffers
            np.take(x, at[part], out=px, mode="clip")
            np.take(y, at[part], out=py, mode="clip")
            np.take(self.distance_slots, lists[part], axis=1, out=params, mode="clip")
            best = nearest[part]
            _segment_distance2_into(px, py, params[0:5], best, ry, t)
            for k in range(1, DISTANCE_SLOTS):
                _segment_distance2_into(px, py, params[5 * k : 5 * k + 5], spare, ry, t)
                np.minimum(best, spare, out=best)

    def _overflow_distance2(
        self, x: np.ndarray, y: np.ndarray, at: np.ndarray, lists: np.ndarray, nearest: np.ndarray
    ) -> None:
        """Lower `nearest` to the squared distance from the fixes `at` to their lists'
        overflow edges, where nearer.

        The fixes whose lists overflow are put longest list first, so that those with a
        k-th overflow edge are a prefix: pass k takes that edge for all of them at once
        (lists are short, so there are few passes; a minimum does not mind the order).
        A few such fixes are done one by one, by the same float operations in Python.
        """
        more = np.flatnonzero(np.take(self._has_overflow, lists))
        if more.size <= _FEW_OVERFLOWS:  # numpy's per-call cost would be most of the time
            one = self._one
            for i in more.tolist():
                fix = at.item(i)
                nearest[i] = one.overflow(lists.item(i), x.item(fix), y.item(fix), nearest.item(i))
            return
        listed = np.take(lists, more)
        edge = np.take(self.distance_overflow_start, listed)
        left = np.take(self.distance_overflow_start, listed + 1) - edge
        # a stable sort of 16-bit integers is a radix sort: linear, and quick
        key = np.negative(left, dtype=np.int16 if left.max() < 2**15 else np.int64)
        order = np.argsort(key, kind="stable")
        more = np.take(more, order)
        edge = np.take(edge, order)
        fix = np.take(at, more)
        qx = np.take(x, fix)
        qy = np.take(y, fix)
        best = np.take(nearest, more)
        d2, ry, t = np.empty((3, more.size), dtype=np.float64)
        with_kth = np.cumsum(np.bincount(left)[::-1])[::-1]  # [k]: fixes with ≥ k overflow
        for m in with_kth[1:].tolist():
            seg = np.take(
                self.union_segments, np.take(self.distance_overflow_edge, edge[:m]), axis=1
            )
            _segment_distance2_into(qx[:m], qy[:m], seg, d2[:m], ry[:m], t[:m])
            np.minimum(best[:m], d2[:m], out=best[:m])
            edge[:m] += 1
        nearest[more] = best

    # ------------------------------------------------------------------ public
    def classify(self, x_m: np.ndarray, y_m: np.ndarray) -> np.ndarray:
        """The fence covering each fix: its number (the lowest if several), or OUTSIDE (-1).

        Agrees with `shapely.covers(fence, Point(x, y))` for every fix, boundary included.

        Parameters
        ----------
        x_m, y_m : array_like of float
            Positions in the fences' frame, metres. They must be finite (validate
            first: geofence.site does); a NaN raises ValueError.

        Returns
        -------
        ndarray of int32
            One fence number per fix.

        Examples
        --------
        >>> import shapely
        >>> index = FenceIndex.build([shapely.box(0, 0, 10, 4), shapely.box(8, 0, 30, 4)])
        >>> index.classify([5.0, 9.0, 10.0, 29.0, 31.0], [2.0, 2.0, 4.0, 2.0, 2.0])
        array([ 0,  0,  0,  1, -1], dtype=int32)
        """
        x = np.ascontiguousarray(x_m, dtype=np.float64)
        y = np.ascontiguousarray(y_m, dtype=np.float64)
        code, _ = self._lookup(x, y, want_distance=False)
        self._resolve_boundary(x, y, code)
        return code

    def evaluate(self, x_m: np.ndarray, y_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fence numbers (as `classify`) and signed distances to the edge of the fences' union.

        Parameters
        ----------
        x_m, y_m : array_like of float
            Finite positions in the fences' frame, metres.

        Returns
        -------
        fence : ndarray of int32
            As `classify`.
        distance_m : ndarray of float
            Metres to the boundary of the union of all fences: positive inside,
            negative outside, 0 on the boundary, and ±horizon_m beyond the horizon
            ("at least this far").

        Examples
        --------
        >>> import shapely
        >>> index = FenceIndex.build([shapely.box(0, 0, 10, 4)], horizon_m=3.0)
        >>> fence, distance = index.evaluate([5.0, 5.0, 11.0, 50.0], [2.0, 3.5, 2.0, 2.0])
        >>> fence.tolist(), distance.tolist()
        ([0, 0, -1, -1], [2.0, 0.5, -1.0, -3.0])
        """
        x = np.ascontiguousarray(x_m, dtype=np.float64)
        y = np.ascontiguousarray(y_m, dtype=np.float64)
        code, distance_list = self._lookup(x, y, want_distance=True)
        self._resolve_boundary(x, y, code)
        distance = self._distance(x, y, distance_list)
        # the distance is never negative, so taking the sign of the fence number negates it
        # exactly where outside (-1), +0 included: several times faster than a masked negate
        np.copysign(distance, code, out=distance)
        return code, distance

    # ------------------------------------------------------------------ one fix
    def classify_one(self, x_m: float, y_m: float) -> int:
        """`classify` of one fix, in plain Python: its fence number, or OUTSIDE (-1).

        For the live path's lone fix: numpy's per-call cost on arrays of one is tens of
        microseconds, most of the time `classify` would take. This reads the same tables
        and does the same float operations in the same order, so the answer is the same.

        Parameters
        ----------
        x_m, y_m : float
            A position in the fences' frame, metres. Non-finite raises ValueError.

        Returns
        -------
        int
            The covering fence's number (the lowest if several), or OUTSIDE.

        Examples
        --------
        >>> import shapely
        >>> index = FenceIndex.build([shapely.box(0, 0, 10, 4), shapely.box(8, 0, 30, 4)])
        >>> [index.classify_one(x, y) for x, y in [(9.0, 2.0), (10.0, 4.0), (31.0, 2.0)]]
        [0, 0, -1]
        """
        one = self._one
        x, y = float(x_m), float(y_m)
        code, _, ix, iy = one.locate(x, y)
        return code if code > -2 else one.resolve(code, x, y, ix, iy)

    def evaluate_one(self, x_m: float, y_m: float) -> tuple[int, float]:
        """`evaluate` of one fix, in plain Python: (fence number, signed distance).

        For the live path's lone fix: numpy's per-call cost on arrays of one is tens of
        microseconds, most of the time `evaluate` would take; this takes a few. It reads
        the same tables and does the same float operations in the same order, so both
        numbers are bit for bit those `evaluate` gives.

        Parameters
        ----------
        x_m, y_m : float
            A position in the fences' frame, metres. Non-finite raises ValueError.

        Returns
        -------
        fence : int
            As `classify_one`.
        distance_m : float
            Metres to the boundary of the union of all fences, as `evaluate`: positive
            inside, negative outside, ±horizon_m beyond the horizon.

        Examples
        --------
        >>> import shapely
        >>> index = FenceIndex.build([shapely.box(0, 0, 10, 4)], horizon_m=3.0)
        >>> [index.evaluate_one(x, y) for x, y in [(5.0, 3.5), (11.0, 2.0), (50.0, 2.0)]]
        [(0, 0.5), (-1, -1.0), (-1, -3.0)]
        """
        one = self._one
        x, y = float(x_m), float(y_m)
        code, distance_list, ix, iy = one.locate(x, y)
        if code <= -2:
            code = one.resolve(code, x, y, ix, iy)
        distance = one.distance(distance_list, x, y)
        return code, (distance if code >= 0 else -distance)

    @cached_property
    def _one(self) -> _OnePoint:
        """The tables as `classify_one` and `evaluate_one` read them (built on first use)."""
        return _OnePoint(self)

    def __getstate__(self) -> dict:
        """Pickle the fields alone: the lazily built caches are rebuilt where needed."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _descend(
    node: np.ndarray, x_cells: np.ndarray, y_cells: np.ndarray, shift: int, scratch: np.ndarray
) -> None:
    """Index of a cell within its parent node, in place in `node`: node·FANOUT² +
    (y mod FANOUT)·FANOUT + x mod FANOUT, of the cell coordinates shifted right by `shift`.

    `scratch` (int32, as long as the cells) is overwritten; the cells are left as they were.
    """
    node <<= 2 * FANOUT_BITS
    for cells, left in ((y_cells, FANOUT_BITS), (x_cells, 0)):
        if shift:
            np.right_shift(cells, shift, out=scratch)
            scratch &= FANOUT_MASK
        else:
            np.bitwise_and(cells, FANOUT_MASK, out=scratch)
        if left:
            scratch <<= left
        node |= scratch


def _segment_distance2_into(
    px: np.ndarray,
    py: np.ndarray,
    seg: np.ndarray,
    out: np.ndarray,
    ry: np.ndarray,
    t: np.ndarray,
) -> None:
    """`_segment_distance2` into `out`, with no temporaries: the same operations in the
    same order (so the same bits), using `ry` and `t` as scratch and `seg`'s first two
    rows as scratch once read."""
    rx = np.subtract(px, seg[0], out=out)
    np.subtract(py, seg[1], out=ry)
    scratch = seg[0]
    np.multiply(rx, seg[2], out=t)
    t += np.multiply(ry, seg[3], out=scratch)
    t *= seg[4]
    np.clip(t, 0.0, 1.0, out=t)
    rx -= np.multiply(t, seg[2], out=scratch)
    ry -= np.multiply(t, seg[3], out=scratch)
    rx *= rx
    ry *= ry
    rx += ry


def _segment_distance2(px: np.ndarray, py: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Squared distance from points to segments given as rows [ax, ay, dx, dy, 1/len²]."""
    rx = px - seg[0]
    ry = py - seg[1]
    t = rx * seg[2]
    t += ry * seg[3]
    t *= seg[4]
    np.clip(t, 0.0, 1.0, out=t)
    rx -= t * seg[2]
    ry -= t * seg[3]
    rx *= rx
    ry *= ry
    rx += ry
    return rx


# ---------------------------------------------------------------------------- one fix
_ERROR_FACTOR = float(ORIENT_ERROR_FACTOR)
_UNDERFLOW_FLOOR = float(ORIENT_UNDERFLOW_FLOOR)
_OFFSETS = [tuple(row) for row in REFERENCE_OFFSETS.tolist()]
_NO_FENCE = int(np.iinfo(np.int32).max)


def _flat_view(array: np.ndarray) -> memoryview:
    """A flat memoryview of a table: indexing one gives a Python int or float, in about
    half the time `ndarray.item` takes, and nothing is copied."""
    return memoryview(np.ascontiguousarray(array).reshape(-1))


def _orient_one(
    ax: float, ay: float, bx: float, by: float, px: float, py: float
) -> tuple[float, bool]:
    """`geofence.predicates.orient` of one point, in Python floats (the same operations).

    >>> _orient_one(0.0, 0.0, 1.0, 0.0, 0.5, 1.0), _orient_one(0.0, 0.0, 1.0, 0.0, 0.5, 0.0)
    ((1.0, True), (0.0, False))
    """
    left = (bx - ax) * (py - ay)
    right = (by - ay) * (px - ax)
    det = left - right
    size = abs(det)
    return det, size > _ERROR_FACTOR * (abs(left) + abs(right)) and size > _UNDERFLOW_FLOOR


def _segment_distance2_one(
    px: float, py: float, ax: float, ay: float, dx: float, dy: float, inv_len2: float
) -> float:
    """`_segment_distance2` of one point and one segment, in Python floats.

    The same operations in the same order; a clipped t of -0.0 (where numpy's clip
    gives 0.0) cannot change the result, which only ever sees t squared or t times
    an offset that is then squared.

    >>> _segment_distance2_one(3.0, 4.0, 0.0, 0.0, 10.0, 0.0, 0.01)
    16.0
    """
    rx = px - ax
    ry = py - ay
    t = (rx * dx + ry * dy) * inv_len2
    if t < 0.0:
        t = 0.0
    elif t > 1.0:
        t = 1.0
    rx -= t * dx
    ry -= t * dy
    return rx * rx + ry * ry


class _OnePoint:
    """A FenceIndex's tables as Python numbers and flat memoryviews, to decide one fix
    in plain Python (`FenceIndex.evaluate_one`), mirroring the array path step by step."""

    def __init__(self, index: FenceIndex):
        self.geometries = index.geometries
        self.origin_x, self.origin_y = float(index.origin_x_m), float(index.origin_y_m)
        self.cell_m = float(index.cell_m)
        self.inv = 1.0 / index.cell_m  # as `FenceIndex._cells`
        self.limit_x = float(index.fine_cells_x - 1)
        self.limit_y = float(index.fine_cells_y - 1)
        self.super_x = int(index.super_cells_x)
        self.horizon = float(index.horizon_m)
        self.root, self.block = _flat_view(index.root_block), _flat_view(index.block_entry)
        self.tile, self.entries = _flat_view(index.tile_code), _flat_view(index.boundary_entries)
        self.ax, self.ay = _flat_view(index.edge_ax), _flat_view(index.edge_ay)
        self.bx, self.by = _flat_view(index.edge_bx), _flat_view(index.edge_by)
        self.slots, self.lists = _flat_view(index.distance_slots), index.distance_slots.shape[1]
        self.overflow_start = _flat_view(index.distance_overflow_start)
        self.overflow_edge = _flat_view(index.distance_overflow_edge)
        self.union = _flat_view(index.union_segments)
        self.union_edges = index.union_segments.shape[1]

    def _clamp(self, value: float, f: float, limit: float) -> float:
        """A cell coordinate off the grid, clamped into its border as `np.clip` does."""
        if not math.isfinite(value):
            raise ValueError("coordinates must be finite (validate fixes before the index)")
        return 0.0 if f < 0.0 else limit

    def locate(self, x: float, y: float) -> tuple[int, int, int, int]:
        """(tile code, distance list or -1, fine cell x, fine cell y), as `_lookup`."""
        fx = (x - self.origin_x) * self.inv
        if not 0.0 <= fx <= self.limit_x:
            fx = self._clamp(x, fx, self.limit_x)
        fy = (y - self.origin_y) * self.inv
        if not 0.0 <= fy <= self.limit_y:
            fy = self._clamp(y, fy, self.limit_y)
        ix, iy = int(fx), int(fy)
        bx, by = ix >> FANOUT_BITS, iy >> FANOUT_BITS
        node = self.root[(by >> FANOUT_BITS) * self.super_x + (bx >> FANOUT_BITS)]
        entry = self.block[
            (node << 2 * FANOUT_BITS) | ((by & FANOUT_MASK) << FANOUT_BITS) | (bx & FANOUT_MASK)
        ]
        code = self.tile[
            ((entry & 0xFFFFFFFF) << 2 * FANOUT_BITS)
            | ((iy & FANOUT_MASK) << FANOUT_BITS)
            | (ix & FANOUT_MASK)
        ]
        return code, (entry >> 32) - 1, ix, iy

    def resolve(self, code: int, x: float, y: float, ix: int, iy: int) -> int:
        """The fence covering a fix in a boundary cell, as `_resolve_boundary`: ray parity
        per run of one fence's entries, GEOS where a sign is uncertain, lowest fence wins."""
        entries = self.entries
        at = ENTRY_FIELDS * (-2 - code)
        end = at + ENTRY_FIELDS * entries[at + ENTRY_COUNT]
        fallback = entries[at + ENTRY_FALLBACK]
        best = _NO_FENCE
        while at < end:  # one run: the entries of one fence
            fence = entries[at + ENTRY_FENCE]
            flags = entries[at + ENTRY_FLAGS]
            inside = (flags & REFERENCE_INSIDE) != 0
            sure = True
            while True:
                crossing, certain = self.crossing(entries[at + ENTRY_EDGE], flags, x, y, ix, iy)
                inside ^= crossing
                sure = sure and certain
                at += ENTRY_FIELDS
                if at >= end:
                    break
                flags = entries[at + ENTRY_FLAGS]
                if flags & RUN_FIRST:
                    break
            if not sure:
                inside = bool(shapely.intersects_xy(self.geometries[fence], x, y))
            if inside and fence < best:
                best = fence
        return best if best != _NO_FENCE else fallback

    def crossing(
        self, edge: int, flags: int, x: float, y: float, ix: int, iy: int
    ) -> tuple[bool, bool]:
        """(crossing, sure) for one entry, as `FenceIndex._crossings`."""
        ax, ay, bx, by = self.ax[edge], self.ay[edge], self.bx[edge], self.by[edge]
        det, sure = _orient_one(ax, ay, bx, by, x, y)
        crossing = (det > 0) != ((flags & REFERENCE_LEFT) != 0)
        reference = flags & REFERENCE_MASK
        if reference == NO_REFERENCE:
            sure = False
        if not flags & SPANS_CELL:
            off_x, off_y = _OFFSETS[min(reference, len(_OFFSETS) - 1)]
            rx = self.origin_x + (ix + off_x) * self.cell_m
            ry = self.origin_y + (iy + off_y) * self.cell_m
            det_a, sure_a = _orient_one(rx, ry, x, y, ax, ay)
            det_b, sure_b = _orient_one(rx, ry, x, y, bx, by)
            crossing = crossing and ((det_a > 0) != (det_b > 0))
            sure = sure and sure_a and sure_b
        return crossing, sure

    def distance(self, distance_list: int, x: float, y: float) -> float:
        """Unsigned distance to the union boundary, capped at the horizon, as `_distance`."""
        if distance_list < 0:
            return self.horizon
        slots, stride = self.slots, self.lists
        nearest = math.inf
        for k in range(DISTANCE_SLOTS):
            at = 5 * k * stride + distance_list
            d2 = _segment_distance2_one(x, y, slots[at], slots[at + stride],
                                        slots[at + 2 * stride], slots[at + 3 * stride],
                                        slots[at + 4 * stride])  # fmt: skip
            if d2 < nearest:
                nearest = d2
        distance = math.sqrt(self.overflow(distance_list, x, y, nearest))
        return distance if distance < self.horizon else self.horizon

    def overflow(self, distance_list: int, x: float, y: float, nearest: float) -> float:
        """`nearest` lowered to the squared distance to the list's overflow edges, if nearer."""
        start = self.overflow_start
        union, stride = self.union, self.union_edges
        for slot in range(start[distance_list], start[distance_list + 1]):
            at = self.overflow_edge[slot]
            d2 = _segment_distance2_one(x, y, union[at], union[at + stride],
                                        union[at + 2 * stride], union[at + 3 * stride],
                                        union[at + 4 * stride])  # fmt: skip
            if d2 < nearest:
                nearest = d2
        return nearest
