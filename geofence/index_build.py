"""Compiling fences into a FenceIndex (see geofence.index for what the parts mean).

The build is vectorised too, so a site with a thousand worksites compiles in
seconds: edges are cut into pieces no longer than half a cell and each piece
marks the cells it can touch (with a small margin, so that rounding in where a
fix lands can never put it in a cell wrongly believed to be uniform). Cells no
edge touches are uniform, and one GEOS query per run of them says which way.
"""

from __future__ import annotations

import math
from typing import NamedTuple

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
    """Check each fence is a valid, non-empty area; raise FenceError naming the first bad one.

    Returns the fences as a flat object array.

    >>> validate_fences([shapely.box(0, 0, 1, 1), shapely.Point(0, 0)], ["a", "b"])
    Traceback (most recent call last):
    geofence.errors.FenceError: fence 'b': is a Point, not a polygon
    """
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
    """All ring edges (exteriors and holes) as ax, ay, bx, by and the fence each belongs to.

    >>> ax, ay, bx, by, fence = ring_edges(np.array([shapely.box(0, 0, 2, 1)], dtype=object))
    >>> ax.tolist(), ay.tolist(), fence.tolist()
    ([2.0, 2.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0, 0, 0, 0])
    """
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

    @property
    def fine_cells(self) -> int:
        """Fine cells in the grid: the stride of a (fence, fine cell) key."""
        return self.fine_x * self.fine_y

    @property
    def block_cells(self) -> int:
        """Block cells in the grid: the stride of a (fence, block cell) key."""
        return self.block_cells_x * self.block_cells_y


def build_index(
    polygons: list | np.ndarray,
    *,
    cell_m: float = 1.0,
    horizon_m: float = 10.0,
    names: list[str] | None = None,
) -> FenceIndex:
    """Compile fences into a FenceIndex (`FenceIndex.build` says what the parameters mean).

    The index answers most fixes with three array lookups, so the build's work is to
    label every cell that can be labelled, and to prepare the exact question for every
    cell that cannot. It goes in six steps, each over all fences at once:

    A. `_boundary_cells`: the fine cells each fence's edges can touch, with those edges;
    B. `_block_labels`: per 16 m block, the lowest fence covering all of it, and the
       blocks where a fence's boundary decides which fence a fine cell has;
    C. `_tiles`: for those blocks, a tile labelling each fine cell: a fence, OUTSIDE,
       or a boundary cell (with what it falls back to when no listed fence covers);
    D. `_boundary_entries`: each boundary cell's edges, by fence, with a reference
       point of certain status for the ray-parity test;
    E. `_distance_lists`: per block, the edges of the fences' union that can be the
       nearest within the horizon;
    F. `_tile_table` and `_block_tables`: the pyramid that finds a fix's tile and list.

    >>> import shapely
    >>> index = build_index([shapely.box(0, 0, 10, 4)], cell_m=1.0, horizon_m=5.0)
    >>> index.fence_count, index.classify(np.array([5.0, 12.0]), np.array([2.0, 2.0]))
    (1, array([ 0, -1], dtype=int32))
    """
    if not (math.isfinite(cell_m) and cell_m > 0):
        raise ValueError(f"cell_m must be a positive number of metres, got {cell_m!r}")
    if not (math.isfinite(horizon_m) and horizon_m >= 0):
        raise ValueError(f"horizon_m must be a non-negative number of metres, got {horizon_m!r}")
    geoms = validate_fences(polygons, names)
    shapely.prepare(geoms)
    edges = _Edges(*ring_edges(geoms))
    bounds = tuple(shapely.total_bounds(geoms)) if geoms.size else (0.0, 0.0, 0.0, 0.0)
    grid = _Grid(bounds, cell_m, horizon_m + cell_m * FANOUT)
    cells = _boundary_cells(edges, grid)
    blocks = _block_labels(geoms, grid, cells)
    tiles = _tiles(geoms, grid, cells, blocks)
    boundary_entries = _boundary_entries(geoms, grid, edges, cells, blocks, tiles)
    lists = _distance_lists(geoms, grid, horizon_m)
    table = _tile_table(blocks, tiles)
    root_block, block_entry = _block_tables(grid, table, blocks.tile_block, lists.block)
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
        tile_code=table.tile_code.reshape(-1),
        boundary_entries=boundary_entries,
        edge_ax=edges.ax,
        edge_ay=edges.ay,
        edge_bx=edges.bx,
        edge_by=edges.by,
        distance_slots=np.ascontiguousarray(lists.slots),
        distance_overflow_start=lists.overflow_start,
        distance_overflow_edge=lists.overflow_edge,
        union_segments=lists.union_segments,
    )


class _Edges(NamedTuple):
    """Every ring edge of every fence (a → b), and the fence it belongs to."""

    ax: np.ndarray
    ay: np.ndarray
    bx: np.ndarray
    by: np.ndarray
    fence: np.ndarray  # int32


# --- A. boundary fine cells, per fence, with the edges that touch each ---------------------
class _BoundaryCells(NamedTuple):
    """(fence, fine cell) pairs a fence's boundary touches, and the edges touching each."""

    key: np.ndarray  # sorted fence × grid.fine_cells + fine key, one per (pair, edge)...
    edge: np.ndarray  # ...and that edge
    fence: np.ndarray  # int32, one per distinct pair
    ix: np.ndarray  # its fine cell
    iy: np.ndarray
    block: np.ndarray  # its block cell's key


def _boundary_cells(edges: _Edges, grid: _Grid) -> _BoundaryCells:
    """The fine cells each fence's edges can touch, with the edges that touch each.

    Edges are cut into pieces no longer than half a cell, so a piece's box (grown by
    a margin for rounding) covers at most 2 × 2 cells; every cell a piece's box meets
    is a boundary cell of the piece's fence. Over-marking is safe (a boundary cell is
    decided exactly), under-marking never happens.
    """
    piece_edge, p0x, p0y, p1x, p1y = _pieces(edges.ax, edges.ay, edges.bx, edges.by,
                                             grid.cell_m / 2)  # fmt: skip
    piece, cx, cy = _touched_cells(
        p0x, p0y, p1x, p1y, grid.x0, grid.y0, grid.cell_m, 2 * _MARGIN_M, 2
    )
    stride = grid.fine_cells
    touched_edge = piece_edge[piece]
    key = edges.fence[touched_edge].astype(np.int64) * stride + grid.fine_key(cx, cy)
    key, edge = _unique_pairs(key, touched_edge.astype(np.int64))
    pairs = np.unique(key)  # (fence, fine cell) boundary pairs
    ix, iy = grid.fine_xy(pairs % stride)
    block = grid.block_key(ix >> FANOUT_BITS, iy >> FANOUT_BITS)
    return _BoundaryCells(key, edge, (pairs // stride).astype(np.int32), ix, iy, block)


# --- B. per fence, each 16 m block cell is mixed (has boundary) or uniform -----------------
class _Blocks(NamedTuple):
    """What the blocks are: labelled whole, or decided fine cell by fine cell."""

    all_blocks: np.ndarray  # every block a fence covers or crosses, sorted...
    min_in: np.ndarray  # ...and the lowest fence covering all of it (_NO_FENCE if none)
    q_block: np.ndarray  # (block, fence) pairs where the fence's boundary decides,
    q_fence: np.ndarray  # int32 ... sorted by block, then fence
    tile_block: np.ndarray  # the blocks that get a tile of their own, sorted
    q_group: np.ndarray  # each pair's tile (index into tile_block)


def _block_labels(geoms: np.ndarray, grid: _Grid, cells: _BoundaryCells) -> _Blocks:
    """Per block, the lowest fence covering all of it, and where a boundary decides.

    A block a fence's boundary crosses is mixed for that fence. A boundary only matters
    where no lower-numbered fence covers the whole block (the lowest fence wins), so
    those (block, fence) pairs are all that go on to get fine cells.
    """
    stride = grid.block_cells
    mixed_key = np.unique(cells.fence.astype(np.int64) * stride + cells.block)
    in_block, in_fence = _covered_blocks(geoms, grid, mixed_key)
    mix_block = mixed_key % stride
    mix_fence = (mixed_key // stride).astype(np.int32)
    all_blocks = np.unique(np.concatenate([in_block, mix_block]))
    min_in = np.full(all_blocks.size, _NO_FENCE, dtype=np.int32)
    np.minimum.at(min_in, np.searchsorted(all_blocks, in_block), in_fence)
    relevant = mix_fence < min_in[np.searchsorted(all_blocks, mix_block)]
    q_block, q_fence = _unique_pairs(mix_block[relevant], mix_fence[relevant].astype(np.int64))
    tile_block, q_group = np.unique(q_block, return_inverse=True)
    return _Blocks(all_blocks, min_in, q_block, q_fence.astype(np.int32), tile_block,
                   q_group.reshape(-1))  # fmt: skip


def _covered_blocks(
    geoms: np.ndarray, grid: _Grid, mixed_key: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(block, fence) for every block inside a fence's bounds that the fence covers whole.

    A block no edge of the fence touches is all inside or all outside it, so one GEOS
    question, at its centre, says which.
    """
    stride = grid.block_cells
    fb = shapely.bounds(geoms).reshape(-1, 4)
    lo_x = np.floor((fb[:, 0] - grid.x0) / grid.block_m).astype(np.int64)
    hi_x = np.floor((fb[:, 2] - grid.x0) / grid.block_m).astype(np.int64)
    lo_y = np.floor((fb[:, 1] - grid.y0) / grid.block_m).astype(np.int64)
    hi_y = np.floor((fb[:, 3] - grid.y0) / grid.block_m).astype(np.int64)
    width = hi_x - lo_x + 1
    fence_of, k = group_ranges(np.zeros(geoms.size, np.int64), width * (hi_y - lo_y + 1))
    ucx = lo_x[fence_of] + k % width[fence_of]
    ucy = lo_y[fence_of] + k // width[fence_of]
    ukey = fence_of * stride + grid.block_key(ucx, ucy)
    uniform = ~np.isin(ukey, mixed_key, assume_unique=True)
    fence_of, ucx, ucy, ukey = fence_of[uniform], ucx[uniform], ucy[uniform], ukey[uniform]
    centre_in = shapely.contains_xy(
        geoms[fence_of], grid.x0 + (ucx + 0.5) * grid.block_m, grid.y0 + (ucy + 0.5) * grid.block_m
    )
    return ukey[centre_in] % stride, fence_of[centre_in].astype(np.int32)


# --- C. tiles of fine cells for blocks where a boundary decides ----------------------------
class _Tiles(NamedTuple):
    """The fine-cell tiles of the blocks where a boundary decides (one row per tile)."""

    is_boundary: np.ndarray  # bool [pair, fine cell]: the pair's fence boundary is in it
    relevant: np.ndarray  # bool [pair, fine cell]: ...and it decides (no lower fence covers)
    boundary_number: np.ndarray  # [tile, fine cell]: the boundary cell's number
    has_boundary: np.ndarray  # bool [tile, fine cell]: a boundary cell
    codes: np.ndarray  # int32 [tile, fine cell]: fence, OUTSIDE, or -2 - boundary cell
    fallback: np.ndarray  # int32 per boundary cell: its label when no listed fence covers


def _tiles(geoms: np.ndarray, grid: _Grid, cells: _BoundaryCells, blocks: _Blocks) -> _Tiles:
    """A tile per deciding block: each fine cell a fence, OUTSIDE, or a boundary cell.

    A fine cell no deciding boundary touches takes the lowest fence that covers it
    (or the block's covering fence, if lower); one a boundary touches becomes a boundary
    cell, decided per fix, remembering the label it falls back to.
    """
    is_bnd = _boundary_cell_masks(grid, cells, blocks)
    cell_in = _inside_cells(geoms, grid, blocks, is_bnd)
    q_fence, q_group = blocks.q_fence, blocks.q_group
    group_starts = np.flatnonzero(np.r_[True, q_group[1:] != q_group[:-1]])[
        : blocks.tile_block.size
    ]
    candidate = np.where(cell_in, q_fence[:, None], _NO_FENCE)
    tile_label = _reduce_groups(np.minimum, candidate, group_starts)
    covering = blocks.min_in[np.searchsorted(blocks.all_blocks, blocks.tile_block)]
    tile_label = np.minimum(tile_label, covering[:, None])
    bnd_relevant = is_bnd & (q_fence[:, None] < tile_label[q_group])
    tile_bnd = _reduce_groups(np.logical_or, bnd_relevant, group_starts)
    boundary_number = np.cumsum(tile_bnd.reshape(-1)).reshape(tile_bnd.shape) - 1
    mixed_codes = np.where(tile_label == _NO_FENCE, OUTSIDE, tile_label).astype(np.int32)
    fallback = mixed_codes[tile_bnd]
    mixed_codes[tile_bnd] = -2 - boundary_number[tile_bnd]
    return _Tiles(is_bnd, bnd_relevant, boundary_number, tile_bnd, mixed_codes, fallback)


def _boundary_cell_masks(grid: _Grid, cells: _BoundaryCells, blocks: _Blocks) -> np.ndarray:
    """bool [pair, fine cell]: which fine cells of each (block, fence) pair its boundary
    touches (boundary cells of pairs that do not decide are dropped)."""
    n_q = blocks.q_block.size
    is_bnd = np.zeros((n_q, FANOUT * FANOUT), dtype=bool)
    q_lookup = blocks.q_fence.astype(np.int64) * grid.block_cells + blocks.q_block
    q_order = np.argsort(q_lookup)
    bkey = cells.fence.astype(np.int64) * grid.block_cells + cells.block
    pos = np.searchsorted(q_lookup[q_order], bkey)
    pos = np.minimum(pos, max(n_q - 1, 0))
    hit = q_lookup[q_order][pos] == bkey if n_q else np.zeros(bkey.size, bool)
    bnd_q = q_order[pos[hit]]
    bnd_local = ((cells.iy[hit] & FANOUT_MASK) << FANOUT_BITS) | (cells.ix[hit] & FANOUT_MASK)
    is_bnd[bnd_q, bnd_local] = True
    return is_bnd


def _inside_cells(
    geoms: np.ndarray, grid: _Grid, blocks: _Blocks, is_bnd: np.ndarray
) -> np.ndarray:
    """bool [pair, fine cell]: the pair's fence covers the (non-boundary) fine cell.

    Along a row of a tile, the cells between two boundary cells are all inside or all
    outside, so one GEOS question per run of them, at its first cell's centre, says
    which.
    """
    n_q = blocks.q_block.size
    rows = is_bnd.reshape(n_q, FANOUT, FANOUT)  # [q, row (y), column (x)]
    before = np.ones_like(rows)
    before[:, :, 1:] = rows[:, :, :-1]
    run_start = ~rows & before
    run_id = np.cumsum(run_start.reshape(-1)).reshape(rows.shape) - 1
    sq, srow, scol = np.nonzero(run_start)
    sbx = blocks.q_block[sq] % grid.block_cells_x
    sby = blocks.q_block[sq] // grid.block_cells_x
    run_in = shapely.contains_xy(
        geoms[blocks.q_fence[sq]],
        grid.x0 + ((sbx << FANOUT_BITS) + scol + 0.5) * grid.cell_m,
        grid.y0 + ((sby << FANOUT_BITS) + srow + 0.5) * grid.cell_m,
    )
    return (~rows & run_in[np.maximum(run_id, 0)]).reshape(n_q, FANOUT * FANOUT)


# --- D. boundary-cell entries: per fence crossing the cell (fence order), its edges --------
class _Runs(NamedTuple):
    """Each boundary cell's runs (one per fence crossing it, in fence order) and entries
    (one per edge of the run's fence in the cell)."""

    cell: np.ndarray  # per run: its boundary cell's number
    fence: np.ndarray  # per run: its fence
    ix: np.ndarray  # per run: its fine cell
    iy: np.ndarray
    first_entry: np.ndarray  # per run: its first entry
    entry_run: np.ndarray  # per entry: its run
    entry_edge: np.ndarray  # int32 per entry: the edge
    entry_start: np.ndarray  # int32 per boundary cell (+ 1): its first entry


def _boundary_entries(
    geoms: np.ndarray,
    grid: _Grid,
    edges: _Edges,
    cells: _BoundaryCells,
    blocks: _Blocks,
    tiles: _Tiles,
) -> np.ndarray:
    """The boundary cells' entry records (ENTRY_FIELDS each); points tile codes at them.

    A fix in a boundary cell is decided by ray parity from a reference point in the
    cell whose side of every edge there is certain. So each entry carries its edge,
    its fence, the reference point used and which side of the edge it lies, whether
    the fence covers it, and the cell's entry count and fallback: one cache line.
    Afterwards a tile's boundary code points at the cell's first entry (in place).
    """
    runs = _boundary_runs(grid, cells, blocks, tiles)
    ex = (edges.ax[runs.entry_edge], edges.ay[runs.entry_edge], edges.bx[runs.entry_edge],
          edges.by[runs.entry_edge])  # fmt: skip
    run_reference, entry_left = _references(grid, runs, ex)
    have = run_reference != NO_REFERENCE
    offsets = REFERENCE_OFFSETS[np.where(have, run_reference, 0)]
    ref_x = grid.x0 + (runs.ix + offsets[:, 0]) * grid.cell_m
    ref_y = grid.y0 + (runs.iy + offsets[:, 1]) * grid.cell_m
    run_inside = shapely.intersects_xy(geoms[runs.fence], ref_x, ref_y)
    # one record per entry; the cell's count and fallback ride on every entry of the cell
    entry_run = runs.entry_run
    entry_cell = runs.cell[entry_run]
    entry_run_first = np.zeros(runs.entry_edge.size, dtype=bool)
    entry_run_first[runs.first_entry] = True
    flags = run_reference[entry_run]
    flags |= np.where(run_inside[entry_run], REFERENCE_INSIDE, 0)
    flags |= np.where(entry_left, REFERENCE_LEFT, 0)
    flags |= np.where(entry_run_first, RUN_FIRST, 0)
    flags |= np.where(_spans_cell(grid, runs.ix[entry_run], runs.iy[entry_run], *ex),
                      SPANS_CELL, 0)  # fmt: skip
    records = np.empty((runs.entry_edge.size, ENTRY_FIELDS), dtype=np.int32)
    records[:, ENTRY_EDGE] = runs.entry_edge
    records[:, ENTRY_FENCE] = runs.fence[entry_run]
    records[:, ENTRY_FLAGS] = flags
    records[:, ENTRY_COUNT] = np.diff(runs.entry_start)[entry_cell]
    records[:, ENTRY_FALLBACK] = tiles.fallback[entry_cell]
    # tile codes point at the cell's first entry rather than the cell's number
    codes = tiles.codes
    in_boundary = codes <= -2
    codes[in_boundary] = -2 - runs.entry_start[-2 - codes[in_boundary]]
    return records


def _boundary_runs(grid: _Grid, cells: _BoundaryCells, blocks: _Blocks, tiles: _Tiles) -> _Runs:
    """Each deciding boundary cell's runs, in (tile, cell, fence) order, with their edges."""
    q_fence, q_group = blocks.q_fence, blocks.q_group
    rq, rlocal = np.nonzero(tiles.relevant)
    order = np.lexsort((q_fence[rq], rlocal, q_group[rq]))
    rq, rlocal = rq[order], rlocal[order]
    run_cell = tiles.boundary_number[q_group[rq], rlocal]
    n_cells = int(tiles.has_boundary.sum())
    run_fence = q_fence[rq]
    rix = ((blocks.q_block[rq] % grid.block_cells_x) << FANOUT_BITS) + (rlocal & FANOUT_MASK)
    riy = ((blocks.q_block[rq] // grid.block_cells_x) << FANOUT_BITS) + (rlocal >> FANOUT_BITS)
    run_key = run_fence.astype(np.int64) * grid.fine_cells + grid.fine_key(rix, riy)
    first = np.searchsorted(cells.key, run_key, side="left")
    last = np.searchsorted(cells.key, run_key, side="right")
    edge_count = last - first
    entry_run, slot = group_ranges(first, edge_count)
    entry_start = np.zeros(n_cells + 1, dtype=np.int32)
    np.cumsum(
        np.bincount(run_cell, weights=edge_count, minlength=n_cells).astype(np.int64),
        out=entry_start[1:],
    )
    return _Runs(run_cell, run_fence, rix, riy, np.cumsum(edge_count) - edge_count,
                 entry_run, cells.edge[slot].astype(np.int32), entry_start)  # fmt: skip


def _references(grid: _Grid, runs: _Runs, ex: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(reference offset per run, reference left of the entry's edge per entry).

    A run's reference point is the first of REFERENCE_OFFSETS in its cell whose side of
    every edge of the run is certain; a run with none (NO_REFERENCE) always asks GEOS.
    """
    run_reference = np.full(runs.cell.size, NO_REFERENCE, dtype=np.int32)
    entry_left = np.zeros(runs.entry_edge.size, dtype=bool)
    entry_run = runs.entry_run
    for number, (fx, fy) in enumerate(REFERENCE_OFFSETS):
        todo = run_reference == NO_REFERENCE
        if not todo.any():
            break
        tx = grid.x0 + (runs.ix + fx) * grid.cell_m
        ty = grid.y0 + (runs.iy + fy) * grid.cell_m
        det, sure = orient(*ex, tx[entry_run], ty[entry_run])
        run_sure = np.logical_and.reduceat(sure, runs.first_entry) if sure.size else sure
        take = todo & run_sure
        run_reference[take] = number
        entry_left[take[entry_run]] = (det > 0)[take[entry_run]]
    return run_reference, entry_left


# --- E. distance lists per block cell, against the union's boundary -----------------------
class _DistanceLists(NamedTuple):
    """Per block within the horizon of the union's boundary, the edges that can be nearest."""

    block: np.ndarray  # the blocks that have a list, sorted
    slots: np.ndarray  # float64 [5 * DISTANCE_SLOTS, lists]: the first edges' segments
    overflow_start: np.ndarray  # int32 [lists + 1]
    overflow_edge: np.ndarray  # int32: the rest of each list's edges
    union_segments: np.ndarray  # float64 [5, union edges]: ax, ay, dx, dy, 1/len²


def _distance_lists(geoms: np.ndarray, grid: _Grid, horizon_m: float) -> _DistanceLists:
    """Per block, the union-boundary edges that can be nearest to some point in it.

    An edge whose least distance to the block is more than another edge's greatest
    distance to it (or than the horizon) can never be the nearest there, and is left
    out: most lists keep one to three edges, and the first two go in fixed slots.
    """
    uax, uay, ubx, uby = _union_edges(geoms)
    d_block, d_edge, min_d, max_d = _block_edge_bounds(grid, horizon_m, uax, uay, ubx, uby)
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
    overflow_start = np.zeros(list_block_kept.size + 1, dtype=np.int32)
    np.cumsum(np.maximum(list_len - DISTANCE_SLOTS, 0), out=overflow_start[1:])
    return _DistanceLists(list_block_kept, distance_slots, overflow_start,
                          kept_edge[overflow].astype(np.int32), union_segments)  # fmt: skip


def _union_edges(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The edges of the fences' union's boundary, without the sub-nanometre ones.

    An edge shorter than a nanometre cannot move a distance by more than that, and its
    subnormal arithmetic is what would make one wrong (classification keeps every edge).
    """
    union = shapely.union_all(geoms) if geoms.size else shapely.Polygon()
    uax, uay, ubx, uby, _ = (
        ring_edges(np.array([union], dtype=object)) if not union.is_empty else (np.zeros(0),) * 5
    )
    usable = np.hypot(ubx - uax, uby - uay) > 1e-9
    return uax[usable], uay[usable], ubx[usable], uby[usable]


def _block_edge_bounds(
    grid: _Grid, horizon_m: float, uax, uay, ubx, uby
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(block, edge, least distance, greatest distance) for each block within the horizon
    of each union edge; the distances are from the edge to the block (grown by the margin)."""
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
    return d_block, d_edge, min_d, max_d


# --- F. assemble the pyramid ---------------------------------------------------------------
class _TileTable(NamedTuple):
    """Every tile: 0 all OUTSIDE, then one per label of a uniform block, then the mixed."""

    tile_code: np.ndarray  # int32 [tiles, FANOUT²]
    uniform_blocks: np.ndarray  # blocks covered whole by a fence (and given no tile)...
    label_tile: np.ndarray  # ...and which label's tile (1 + this) each points at
    labels_used: int  # how many uniform labels' tiles there are


def _tile_table(blocks: _Blocks, tiles: _Tiles) -> _TileTable:
    """The tiles: uniform blocks share one tile per fence, mixed blocks have their own."""
    uniform_blocks = blocks.all_blocks[(blocks.min_in != _NO_FENCE)]
    uniform_blocks = uniform_blocks[~np.isin(uniform_blocks, blocks.tile_block, assume_unique=True)]
    uniform_label = blocks.min_in[np.searchsorted(blocks.all_blocks, uniform_blocks)]
    labels_used, label_tile = np.unique(uniform_label, return_inverse=True)
    n_tiles = 1 + labels_used.size + blocks.tile_block.size
    tile_code = np.empty((n_tiles, FANOUT * FANOUT), dtype=np.int32)
    tile_code[0] = OUTSIDE
    tile_code[1 : 1 + labels_used.size] = labels_used[:, None]
    tile_code[1 + labels_used.size :] = tiles.codes
    return _TileTable(tile_code, uniform_blocks, label_tile.reshape(-1), labels_used.size)


def _block_tables(
    grid: _Grid, table: _TileTable, tile_block: np.ndarray, list_block: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(root_block, block_entry): the sparse pyramid's upper two levels.

    Only super cells holding a used block get a block node (node 0 is empty, for the
    rest); each used block cell packs its tile (low 32 bits) and distance list + 1
    (high 32 bits) into one int64, so one gather fetches both.
    """
    used_blocks = np.unique(np.concatenate([table.uniform_blocks, tile_block, list_block]))
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

    block_entry = np.zeros(n_blocks * FANOUT * FANOUT, dtype=np.int64)
    block_entry[block_slot(table.uniform_blocks)] = 1 + table.label_tile
    block_entry[block_slot(tile_block)] = 1 + table.labels_used + np.arange(tile_block.size)
    block_entry[block_slot(list_block)] |= np.arange(1, list_block.size + 1) << 32
    return root_block, block_entry
