"""Compiling fences into a FenceIndex (see geofence.index for what the parts mean).

The build is vectorised too, so a site with a thousand worksites compiles in
seconds: edges are cut into pieces no longer than half a cell and each piece
marks the cells it can touch (with a small margin, so that rounding in where a
fix lands can never put it in a cell wrongly believed to be uniform). Cells no
edge touches are uniform, and one GEOS query per run of them says which way.
"""

from __future__ import annotations

import math

import numpy as np
import shapely

from geofence.errors import FenceError
from geofence.index import (
    DISTANCE_SLOTS,
    ENTRY_COUNT,
    ENTRY_EDGE,
    ENTRY_FALLBACK,
    ENTRY_FENCE,
    ENTRY_FIELDS,
    ENTRY_FLAGS,
    FANOUT,
    FANOUT_BITS,
    FANOUT_MASK,
    NO_REFERENCE,
    OUTSIDE,
    REFERENCE_INSIDE,
    REFERENCE_LEFT,
    REFERENCE_OFFSETS,
    RUN_FIRST,
    SPANS_CELL,
    FenceIndex,
    group_ranges,
)
from geofence.predicates import orient

#: How far (m) a fix may stray from its computed cell through rounding; far more than it can.
_MARGIN_M = 1e-6
_NO_FENCE = np.iinfo(np.int32).max


def validate_fences(polygons: list | np.ndarray, names: list[str] | None) -> np.ndarray:
    """Check each fence is a valid, non-empty area; raise FenceError naming the first bad one."""
    geoms = np.asarray(polygons, dtype=object).reshape(-1)
    labels = names if names is not None else [f"#{i}" for i in range(geoms.size)]
    if len(labels) != geoms.size:
        raise ValueError("names must give one name per fence")
    for i, geom in enumerate(geoms):
        if not isinstance(geom, shapely.Polygon | shapely.MultiPolygon):
            raise FenceError(labels[i], f"is a {type(geom).__name__}, not a polygon")
        if geom.is_empty or geom.area <= 0:
            raise FenceError(labels[i], "encloses no area")
        if not np.isfinite(shapely.get_coordinates(geom)).all():
            raise FenceError(labels[i], "has non-finite coordinates")
        if not geom.is_valid:
            raise FenceError(labels[i], f"is not a valid polygon ({shapely.is_valid_reason(geom)})")
    return geoms


def ring_edges(geoms: np.ndarray) -> tuple[np.ndarray, ...]:
    """All ring edges (exteriors and holes) as ax, ay, bx, by and the fence each belongs to."""
    parts, part_fence = shapely.get_parts(geoms, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    same = ring_of[1:] == ring_of[:-1]
    a = coords[:-1][same]
    b = coords[1:][same]
    fence = part_fence[ring_part[ring_of[:-1][same]]].astype(np.int32)
    keep = (a != b).any(axis=1)  # repeated vertices make zero-length edges
    return a[keep, 0], a[keep, 1], b[keep, 0], b[keep, 1], fence[keep]


def _pieces(ax, ay, bx, by, max_len_m: float):
    """Cut edges into pieces no longer than max_len_m; returns (edge, x0, y0, x1, y1)."""
    length = np.hypot(bx - ax, by - ay)
    count = np.maximum(1, np.ceil(length / max_len_m)).astype(np.int64)
    edge, k = group_ranges(np.zeros(count.size, dtype=np.int64), count)
    n = count[edge]
    t0 = k / n
    t1 = (k + 1) / n
    dx = (bx - ax)[edge]
    dy = (by - ay)[edge]
    return edge, ax[edge] + t0 * dx, ay[edge] + t0 * dy, ax[edge] + t1 * dx, ay[edge] + t1 * dy


def _touched_cells(x0, y0, x1, y1, grid_x0, grid_y0, size_m, reach_m, span):
    """Cells of side size_m that a box around each piece (grown by reach_m) can touch.

    Returns (piece, cx, cy); `span` is the most cells a grown piece can cover per axis.
    """
    lo_x = np.floor((np.minimum(x0, x1) - reach_m - grid_x0) / size_m).astype(np.int64)
    hi_x = np.floor((np.maximum(x0, x1) + reach_m - grid_x0) / size_m).astype(np.int64)
    lo_y = np.floor((np.minimum(y0, y1) - reach_m - grid_y0) / size_m).astype(np.int64)
    hi_y = np.floor((np.maximum(y0, y1) + reach_m - grid_y0) / size_m).astype(np.int64)
    if (hi_x - lo_x).max(initial=0) >= span or (hi_y - lo_y).max(initial=0) >= span:
        raise AssertionError("piece spans more cells than allowed")  # pragma: no cover
    piece = np.arange(lo_x.size)
    out_piece, out_x, out_y = [], [], []
    for dx in range(span):
        for dy in range(span):
            ok = (lo_x + dx <= hi_x) & (lo_y + dy <= hi_y)
            out_piece.append(piece[ok])
            out_x.append(lo_x[ok] + dx)
            out_y.append(lo_y[ok] + dy)
    return np.concatenate(out_piece), np.concatenate(out_x), np.concatenate(out_y)


def _spans_cell(grid: _Grid, ix, iy, ax, ay, bx, by) -> np.ndarray:
    """Whether each edge runs right through its cell (grown by twice the query margin).

    Both ends outside the grown cell, and the segment meeting it: then inside the
    cell the edge is its whole line, and one orientation decides a crossing.
    """
    grow = 2 * _MARGIN_M
    lo_x = grid.x0 + ix * grid.cell_m - grow
    lo_y = grid.y0 + iy * grid.cell_m - grow
    hi_x = lo_x + grid.cell_m + 2 * grow
    hi_y = lo_y + grid.cell_m + 2 * grow

    def outside(x, y):
        return (x < lo_x) | (x > hi_x) | (y < lo_y) | (y > hi_y)

    spans = outside(ax, ay) & outside(bx, by)
    at = np.flatnonzero(spans)
    if at.size:
        boxes = shapely.box(lo_x[at], lo_y[at], hi_x[at], hi_y[at])
        segments = shapely.linestrings(
            np.stack([np.column_stack([ax[at], ay[at]]), np.column_stack([bx[at], by[at]])], axis=1)
        )
        spans[at] = shapely.intersects(boxes, segments)
    return spans


def _reduce_groups(ufunc: np.ufunc, rows: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """`ufunc.reduceat` over groups of rows starting at `starts`, also when there are none."""
    if rows.shape[0] == 0:
        return rows[:0]
    return ufunc.reduceat(rows, starts, axis=0)


def _unique_pairs(major: np.ndarray, minor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((minor, major))
    major, minor = major[order], minor[order]
    keep = np.ones(major.size, dtype=bool)
    keep[1:] = (major[1:] != major[:-1]) | (minor[1:] != minor[:-1])
    return major[keep], minor[keep]


def _point_segment_distance(px, py, ax, ay, bx, by):
    dx, dy = bx - ax, by - ay
    len2 = dx * dx + dy * dy
    t = ((px - ax) * dx + (py - ay) * dy) / np.where(len2 > 0, len2, 1.0)
    t = np.clip(t, 0.0, 1.0)
    return np.hypot(px - ax - t * dx, py - ay - t * dy)


class _Grid:
    """Integer cell arithmetic shared by every build step."""

    def __init__(self, bounds: tuple[float, float, float, float], cell_m: float, pad_m: float):
        self.cell_m = cell_m
        self.block_m = cell_m * FANOUT
        self.super_m = cell_m * FANOUT * FANOUT
        minx, miny, maxx, maxy = bounds
        # one empty super cell all round: clamped far-away fixes land there
        self.x0 = math.floor((minx - pad_m) / self.super_m) * self.super_m - self.super_m
        self.y0 = math.floor((miny - pad_m) / self.super_m) * self.super_m - self.super_m
        self.super_x = math.ceil((maxx + pad_m - self.x0) / self.super_m) + 1
        self.super_y = math.ceil((maxy + pad_m - self.y0) / self.super_m) + 1
        self.block_cells_x = self.super_x * FANOUT
        self.block_cells_y = self.super_y * FANOUT
        self.fine_x = self.block_cells_x * FANOUT
        self.fine_y = self.block_cells_y * FANOUT
        if self.fine_x >= 2**31 or self.fine_y >= 2**31:
            raise FenceError("site", "extends too far for one local frame at this cell size")

    def fine_key(self, ix, iy):
        return iy.astype(np.int64) * self.fine_x + ix

    def fine_xy(self, key):
        return key % self.fine_x, key // self.fine_x

    def block_key(self, cx, cy):
        return cy.astype(np.int64) * self.block_cells_x + cx


def build_index(
    polygons: list | np.ndarray,
    *,
    cell_m: float = 1.0,
    horizon_m: float = 10.0,
    names: list[str] | None = None,
) -> FenceIndex:
    if not (math.isfinite(cell_m) and cell_m > 0):
        raise ValueError(f"cell_m must be a positive number of metres, got {cell_m!r}")
    if not (math.isfinite(horizon_m) and horizon_m >= 0):
        raise ValueError(f"horizon_m must be a non-negative number of metres, got {horizon_m!r}")
    geoms = validate_fences(polygons, names)
    shapely.prepare(geoms)
    ax, ay, bx, by, edge_fence = ring_edges(geoms)
    bounds = tuple(shapely.total_bounds(geoms)) if geoms.size else (0.0, 0.0, 0.0, 0.0)
    grid = _Grid(bounds, cell_m, horizon_m + cell_m * FANOUT)

    # --- A. boundary fine cells, per fence, with the edges that touch each ------------------
    piece_edge, p0x, p0y, p1x, p1y = _pieces(ax, ay, bx, by, cell_m / 2)
    piece, cx, cy = _touched_cells(p0x, p0y, p1x, p1y, grid.x0, grid.y0, cell_m, 2 * _MARGIN_M, 2)
    fence_cells = grid.fine_x * grid.fine_y
    touched_edge = piece_edge[piece]
    fc_key = edge_fence[touched_edge].astype(np.int64) * fence_cells + grid.fine_key(cx, cy)
    fc_key, fc_edge = _unique_pairs(fc_key, touched_edge.astype(np.int64))
    bnd_key = np.unique(fc_key)  # (fence, fine cell) boundary pairs
    bnd_fence = (bnd_key // fence_cells).astype(np.int32)
    bnd_ix, bnd_iy = grid.fine_xy(bnd_key % fence_cells)

    # --- B. per fence, each 16 m block cell is mixed (has boundary) or uniform --------------
    block_cells = grid.block_cells_x * grid.block_cells_y
    mixed_key = np.unique(
        bnd_fence.astype(np.int64) * block_cells
        + grid.block_key(bnd_ix >> FANOUT_BITS, bnd_iy >> FANOUT_BITS)
    )
    fb = shapely.bounds(geoms).reshape(-1, 4)
    lo_x = np.floor((fb[:, 0] - grid.x0) / grid.block_m).astype(np.int64)
    hi_x = np.floor((fb[:, 2] - grid.x0) / grid.block_m).astype(np.int64)
    lo_y = np.floor((fb[:, 1] - grid.y0) / grid.block_m).astype(np.int64)
    hi_y = np.floor((fb[:, 3] - grid.y0) / grid.block_m).astype(np.int64)
    width = hi_x - lo_x + 1
    fence_of, k = group_ranges(np.zeros(geoms.size, np.int64), width * (hi_y - lo_y + 1))
    ucx = lo_x[fence_of] + k % width[fence_of]
    ucy = lo_y[fence_of] + k // width[fence_of]
    ukey = fence_of * block_cells + grid.block_key(ucx, ucy)
    uniform = ~np.isin(ukey, mixed_key, assume_unique=True)
    fence_of, ucx, ucy, ukey = fence_of[uniform], ucx[uniform], ucy[uniform], ukey[uniform]
    centre_in = shapely.contains_xy(
        geoms[fence_of], grid.x0 + (ucx + 0.5) * grid.block_m, grid.y0 + (ucy + 0.5) * grid.block_m
    )
    in_block = ukey[centre_in] % block_cells
    in_fence = fence_of[centre_in].astype(np.int32)
    mix_block = mixed_key % block_cells
    mix_fence = (mixed_key // block_cells).astype(np.int32)

    all_blocks = np.unique(np.concatenate([in_block, mix_block]))
    min_in = np.full(all_blocks.size, _NO_FENCE, dtype=np.int32)
    np.minimum.at(min_in, np.searchsorted(all_blocks, in_block), in_fence)
    relevant = mix_fence < min_in[np.searchsorted(all_blocks, mix_block)]
    q_block, q_fence = _unique_pairs(mix_block[relevant], mix_fence[relevant].astype(np.int64))
    q_fence = q_fence.astype(np.int32)
    tile_block, q_group = np.unique(q_block, return_inverse=True)
    q_group = q_group.reshape(-1)

    # --- C. tiles of fine cells for blocks where a boundary decides -----------------------
    n_q = q_block.size
    cells_per_tile = FANOUT * FANOUT
    is_bnd = np.zeros((n_q, cells_per_tile), dtype=bool)
    q_lookup = q_fence.astype(np.int64) * block_cells + q_block
    q_order = np.argsort(q_lookup)
    bkey = bnd_fence.astype(np.int64) * block_cells + grid.block_key(
        bnd_ix >> FANOUT_BITS, bnd_iy >> FANOUT_BITS
    )
    pos = np.searchsorted(q_lookup[q_order], bkey)
    pos = np.minimum(pos, max(n_q - 1, 0))
    hit = q_lookup[q_order][pos] == bkey if n_q else np.zeros(bkey.size, bool)
    bnd_q = q_order[pos[hit]]
    bnd_local = ((bnd_iy[hit] & FANOUT_MASK) << FANOUT_BITS) | (bnd_ix[hit] & FANOUT_MASK)
    is_bnd[bnd_q, bnd_local] = True

    rows = is_bnd.reshape(n_q, FANOUT, FANOUT)  # [q, row (y), column (x)]
    before = np.ones_like(rows)
    before[:, :, 1:] = rows[:, :, :-1]
    run_start = ~rows & before
    run_id = np.cumsum(run_start.reshape(-1)).reshape(rows.shape) - 1
    sq, srow, scol = np.nonzero(run_start)
    sbx = q_block[sq] % grid.block_cells_x
    sby = q_block[sq] // grid.block_cells_x
    run_in = shapely.contains_xy(
        geoms[q_fence[sq]],
        grid.x0 + ((sbx << FANOUT_BITS) + scol + 0.5) * cell_m,
        grid.y0 + ((sby << FANOUT_BITS) + srow + 0.5) * cell_m,
    )
    cell_in = (~rows & run_in[np.maximum(run_id, 0)]).reshape(n_q, cells_per_tile)

    group_starts = np.flatnonzero(np.r_[True, q_group[1:] != q_group[:-1]])[: tile_block.size]
    candidate = np.where(cell_in, q_fence[:, None], _NO_FENCE)
    tile_label = _reduce_groups(np.minimum, candidate, group_starts)
    tile_label = np.minimum(tile_label, min_in[np.searchsorted(all_blocks, tile_block)][:, None])
    bnd_relevant = is_bnd & (q_fence[:, None] < tile_label[q_group])
    tile_bnd = _reduce_groups(np.logical_or, bnd_relevant, group_starts)
    boundary_number = np.cumsum(tile_bnd.reshape(-1)).reshape(tile_bnd.shape) - 1
    mixed_codes = np.where(tile_label == _NO_FENCE, OUTSIDE, tile_label).astype(np.int32)
    fallback = mixed_codes[tile_bnd]
    mixed_codes[tile_bnd] = -2 - boundary_number[tile_bnd]

    # --- D. boundary-cell entries: per fence crossing the cell (fence order), its edges ------
    rq, rlocal = np.nonzero(bnd_relevant)
    order = np.lexsort((q_fence[rq], rlocal, q_group[rq]))
    rq, rlocal = rq[order], rlocal[order]
    run_cell = boundary_number[q_group[rq], rlocal]
    n_cells = int(tile_bnd.sum())
    run_fence = q_fence[rq]
    rix = ((q_block[rq] % grid.block_cells_x) << FANOUT_BITS) + (rlocal & FANOUT_MASK)
    riy = ((q_block[rq] // grid.block_cells_x) << FANOUT_BITS) + (rlocal >> FANOUT_BITS)
    run_key = run_fence.astype(np.int64) * fence_cells + grid.fine_key(rix, riy)
    first = np.searchsorted(fc_key, run_key, side="left")
    last = np.searchsorted(fc_key, run_key, side="right")
    edge_count = last - first
    entry_run, slot = group_ranges(first, edge_count)
    entry_edge = fc_edge[slot].astype(np.int32)
    run_first_entry = np.cumsum(edge_count) - edge_count
    entry_run_first = np.zeros(entry_edge.size, dtype=bool)
    entry_run_first[run_first_entry] = True
    boundary_entry_start = np.zeros(n_cells + 1, dtype=np.int32)
    np.cumsum(
        np.bincount(run_cell, weights=edge_count, minlength=n_cells).astype(np.int64),
        out=boundary_entry_start[1:],
    )

    # a reference point per run whose side of every edge of the run is certain
    run_reference = np.full(run_key.size, NO_REFERENCE, dtype=np.int32)
    entry_left = np.zeros(entry_edge.size, dtype=bool)
    ex = (ax[entry_edge], ay[entry_edge], bx[entry_edge], by[entry_edge])
    for number, (fx, fy) in enumerate(REFERENCE_OFFSETS):
        todo = run_reference == NO_REFERENCE
        if not todo.any():
            break
        tx = grid.x0 + (rix + fx) * cell_m
        ty = grid.y0 + (riy + fy) * cell_m
        det, sure = orient(*ex, tx[entry_run], ty[entry_run])
        run_sure = np.logical_and.reduceat(sure, run_first_entry) if sure.size else sure
        take = todo & run_sure
        run_reference[take] = number
        entry_left[take[entry_run]] = (det > 0)[take[entry_run]]
    have = run_reference != NO_REFERENCE
    ref_x = grid.x0 + (rix + REFERENCE_OFFSETS[np.where(have, run_reference, 0), 0]) * cell_m
    ref_y = grid.y0 + (riy + REFERENCE_OFFSETS[np.where(have, run_reference, 0), 1]) * cell_m
    run_inside = shapely.intersects_xy(geoms[run_fence], ref_x, ref_y)

    # one record per entry; the cell's count and fallback ride on every entry of the cell
    entry_cell = run_cell[entry_run]
    flags = run_reference[entry_run]
    flags |= np.where(run_inside[entry_run], REFERENCE_INSIDE, 0)
    flags |= np.where(entry_left, REFERENCE_LEFT, 0)
    flags |= np.where(entry_run_first, RUN_FIRST, 0)
    flags |= np.where(_spans_cell(grid, rix[entry_run], riy[entry_run], *ex), SPANS_CELL, 0)
    boundary_entries = np.empty((entry_edge.size, ENTRY_FIELDS), dtype=np.int32)
    boundary_entries[:, ENTRY_EDGE] = entry_edge
    boundary_entries[:, ENTRY_FENCE] = run_fence[entry_run]
    boundary_entries[:, ENTRY_FLAGS] = flags
    boundary_entries[:, ENTRY_COUNT] = np.diff(boundary_entry_start)[entry_cell]
    boundary_entries[:, ENTRY_FALLBACK] = fallback[entry_cell]
    # tile codes point at the cell's first entry rather than the cell's number
    in_boundary = mixed_codes <= -2
    mixed_codes[in_boundary] = -2 - boundary_entry_start[-2 - mixed_codes[in_boundary]]

    # --- E. distance lists per block cell, against the union's boundary ---------------------
    union = shapely.union_all(geoms) if geoms.size else shapely.Polygon()
    uax, uay, ubx, uby, _ = (
        ring_edges(np.array([union], dtype=object)) if not union.is_empty else (np.zeros(0),) * 5
    )
    # an edge shorter than a nanometre cannot move a distance by more than that, and its
    # subnormal arithmetic is what would make one wrong (classification keeps every edge)
    usable = np.hypot(ubx - uax, uby - uay) > 1e-9
    uax, uay, ubx, uby = uax[usable], uay[usable], ubx[usable], uby[usable]
    d_piece_edge, d0x, d0y, d1x, d1y = _pieces(uax, uay, ubx, uby, grid.block_m)
    reach = horizon_m + 2 * _MARGIN_M
    span = 2 + math.ceil(2 * reach / grid.block_m)
    dpiece, dcx, dcy = _touched_cells(
        d0x, d0y, d1x, d1y, grid.x0, grid.y0, grid.block_m, reach, span
    )
    d_block, d_edge = _unique_pairs(grid.block_key(dcx, dcy), d_piece_edge[dpiece].astype(np.int64))
    bxlo = grid.x0 + (d_block % grid.block_cells_x) * grid.block_m - _MARGIN_M
    bylo = grid.y0 + (d_block // grid.block_cells_x) * grid.block_m - _MARGIN_M
    bxhi = bxlo + grid.block_m + 2 * _MARGIN_M
    byhi = bylo + grid.block_m + 2 * _MARGIN_M
    segments = (
        shapely.linestrings(
            np.stack(
                [
                    np.column_stack([uax[d_edge], uay[d_edge]]),
                    np.column_stack([ubx[d_edge], uby[d_edge]]),
                ],
                axis=1,
            )
        )
        if d_edge.size
        else np.zeros(0, dtype=object)
    )
    min_d = (
        shapely.distance(shapely.box(bxlo, bylo, bxhi, byhi), segments)
        if d_edge.size
        else np.zeros(0)
    )
    max_d = np.zeros(d_edge.size)
    for cxx, cyy in ((bxlo, bylo), (bxhi, bylo), (bxlo, byhi), (bxhi, byhi)):
        max_d = np.maximum(
            max_d,
            _point_segment_distance(cxx, cyy, uax[d_edge], uay[d_edge], ubx[d_edge], uby[d_edge]),
        )
    list_block, list_of = np.unique(d_block, return_inverse=True)
    bound = np.full(list_block.size, np.inf)
    np.minimum.at(bound, list_of, max_d)
    keep = min_d <= np.minimum(horizon_m, bound[list_of]) + 1e-9
    list_block_kept, kept_of = np.unique(d_block[keep], return_inverse=True)
    kept_of = kept_of.reshape(-1)
    kept_edge = d_edge[keep]
    list_len = np.bincount(kept_of, minlength=list_block_kept.size)
    list_first = np.cumsum(list_len) - list_len
    udx = ubx - uax
    udy = uby - uay
    len2 = udx * udx + udy * udy
    union_segments = np.stack([uax, uay, udx, udy, 1.0 / np.where(len2 > 0, len2, 1.0)])
    slots = []
    for k in range(DISTANCE_SLOTS):  # short lists repeat their first edge: min is unchanged
        pick = kept_edge[list_first + np.where(list_len > k, k, 0)]
        slots.append(union_segments[:, pick])
    distance_slots = np.concatenate(slots, axis=0) if slots else np.zeros((0, 0))
    overflow = np.arange(kept_edge.size) - list_first[kept_of] >= DISTANCE_SLOTS
    distance_overflow_edge = kept_edge[overflow].astype(np.int32)
    distance_overflow_start = np.zeros(list_block_kept.size + 1, dtype=np.int32)
    np.cumsum(np.maximum(list_len - DISTANCE_SLOTS, 0), out=distance_overflow_start[1:])

    # --- F. assemble the pyramid -----------------------------------------------------------
    uniform_blocks = all_blocks[(min_in != _NO_FENCE)]
    uniform_blocks = uniform_blocks[~np.isin(uniform_blocks, tile_block, assume_unique=True)]
    uniform_label = min_in[np.searchsorted(all_blocks, uniform_blocks)]
    labels_used, label_tile = np.unique(uniform_label, return_inverse=True)
    n_tiles = 1 + labels_used.size + tile_block.size
    tile_code = np.empty((n_tiles, cells_per_tile), dtype=np.int32)
    tile_code[0] = OUTSIDE
    tile_code[1 : 1 + labels_used.size] = labels_used[:, None]
    tile_code[1 + labels_used.size :] = mixed_codes

    used_blocks = np.unique(np.concatenate([uniform_blocks, tile_block, list_block_kept]))
    bcx = used_blocks % grid.block_cells_x
    bcy = used_blocks // grid.block_cells_x
    supers, super_of = np.unique(
        (bcy >> FANOUT_BITS) * grid.super_x + (bcx >> FANOUT_BITS), return_inverse=True
    )
    root_block = np.zeros(grid.super_x * grid.super_y, dtype=np.int32)
    root_block[supers] = np.arange(1, supers.size + 1, dtype=np.int32)
    n_blocks = supers.size + 1

    def block_slot(blocks: np.ndarray) -> np.ndarray:
        at = np.searchsorted(used_blocks, blocks)
        local = ((bcy[at] & FANOUT_MASK) << FANOUT_BITS) | (bcx[at] & FANOUT_MASK)
        return (
            root_block[supers[super_of.reshape(-1)[at]]].astype(np.int64) << (2 * FANOUT_BITS)
        ) | local

    block_entry = np.zeros(n_blocks * cells_per_tile, dtype=np.int64)
    block_entry[block_slot(uniform_blocks)] = 1 + label_tile.reshape(-1)
    block_entry[block_slot(tile_block)] = 1 + labels_used.size + np.arange(tile_block.size)
    block_entry[block_slot(list_block_kept)] |= np.arange(1, list_block_kept.size + 1) << 32

    return FenceIndex(
        geometries=geoms,
        cell_m=float(cell_m),
        horizon_m=float(horizon_m),
        origin_x_m=grid.x0,
        origin_y_m=grid.y0,
        fine_cells_x=grid.fine_x,
        fine_cells_y=grid.fine_y,
        super_cells_x=grid.super_x,
        root_block=root_block,
        block_entry=block_entry,
        tile_code=tile_code.reshape(-1),
        boundary_entries=boundary_entries,
        edge_ax=ax,
        edge_ay=ay,
        edge_bx=bx,
        edge_by=by,
        distance_slots=np.ascontiguousarray(distance_slots),
        distance_overflow_start=distance_overflow_start,
        distance_overflow_edge=distance_overflow_edge,
        union_segments=union_segments,
    )
