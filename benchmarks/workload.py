"""The reference workload: worksite corridors on real ELR geometry, and fixes near them.

1,000 corridors a quarter mile long are laid along the ELRs around London
(real waymark geometry, bundled), each 6.5 m either side of the route line:
double track with its cess. One million fixes: a third within 5 m of a
corridor boundary (where decisions are hard), a third inside corridors, a third
scattered around them. Seeded, so every run measures the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from geofence.fences import corridor
from geofence.frames import LocalFrame
from loading.waymarks import bundled_waymarks

LONDON_BNG = (530_000.0, 180_000.0)
CORRIDOR_LENGTH_YD = 440
CORRIDOR_SPACING_YD = 880
HALF_WIDTH_M = 6.5


@dataclass(frozen=True)
class Workload:
    frame: LocalFrame
    corridors: list[shapely.Polygon]
    x_m: np.ndarray
    y_m: np.ndarray


def corridors_on_real_elrs(count: int, frame: LocalFrame) -> list[shapely.Polygon]:
    waymarks = bundled_waymarks()
    out: list[shapely.Polygon] = []
    for elr in waymarks.elrs:
        posts = waymarks.elr(elr)
        start = posts.first_yd
        while start + CORRIDOR_LENGTH_YD <= posts.last_yd and len(out) < count:
            route = posts.route_bng(start, start + CORRIDOR_LENGTH_YD)
            x, y = frame.from_bng(route[:, 0], route[:, 1])
            out.append(
                corridor(np.column_stack([x, y]), HALF_WIDTH_M, HALF_WIDTH_M, f"{elr}@{start}")
            )
            start += CORRIDOR_SPACING_YD
        if len(out) >= count:
            break
    if len(out) < count:
        raise RuntimeError(f"only {len(out)} corridors fit on the bundled ELRs")
    return out


def fixes_near(
    corridors: list[shapely.Polygon], count: int, seed: int = 7
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    geoms = np.array(corridors, dtype=object)
    third = count // 3
    # 1/3: within 5 m of a boundary, either side
    rings = shapely.get_exterior_ring(geoms[rng.integers(0, geoms.size, third)])
    along = shapely.line_interpolate_point(rings, rng.random(third), normalized=True)
    base = shapely.get_coordinates(along)
    angle = rng.uniform(0, 2 * np.pi, third)
    radius = rng.uniform(0, 5.0, third)
    near = base + np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    # 1/3: inside corridors (rejection sampling in each corridor's box)
    inside = []
    picks = geoms[rng.integers(0, geoms.size, third * 3)]
    b = shapely.bounds(picks)
    cand = np.column_stack([rng.uniform(b[:, 0], b[:, 2]), rng.uniform(b[:, 1], b[:, 3])])
    ok = shapely.contains_xy(picks, cand[:, 0], cand[:, 1])
    inside = cand[ok][:third]
    if len(inside) < third:
        inside = np.concatenate([inside, near[: third - len(inside)]])
    # the rest: around corridors, mostly outside
    rest = count - 2 * third
    picks = geoms[rng.integers(0, geoms.size, rest)]
    b = shapely.bounds(picks)
    around = np.column_stack(
        [rng.uniform(b[:, 0] - 50, b[:, 2] + 50), rng.uniform(b[:, 1] - 50, b[:, 3] + 50)]
    )
    points = np.concatenate([near, inside, around])
    points = points[rng.permutation(len(points))]
    return np.ascontiguousarray(points[:, 0]), np.ascontiguousarray(points[:, 1])


def reference_workload(corridor_count: int = 1000, fix_count: int = 1_000_000) -> Workload:
    frame = LocalFrame.centred_on_bng(*LONDON_BNG)
    corridors = corridors_on_real_elrs(corridor_count, frame)
    x, y = fixes_near(corridors, fix_count)
    return Workload(frame, corridors, x, y)
