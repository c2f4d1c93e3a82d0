"""Track coordinates: metres along a line and metres to its left, to and from site metres.

Workers are described the way people on site describe them: "walking the Down
cess at 300 m", "two metres into the six-foot". This frame turns that into the
site's local metric frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrackFrame:
    """A polyline (site metres) with cumulative length; lateral offsets are to its left."""

    vertices: np.ndarray  # (n, 2)
    chainage_m: np.ndarray  # (n,) distance along the line at each vertex

    @classmethod
    def from_vertices(cls, vertices: np.ndarray) -> TrackFrame:
        v = np.asarray(vertices, dtype=np.float64)
        step = np.hypot(*np.diff(v, axis=0).T)
        keep = np.r_[True, step > 0]
        v = v[keep]
        if len(v) < 2:
            raise ValueError("a track needs at least two distinct vertices")
        return cls(v, np.r_[0.0, np.cumsum(np.hypot(*np.diff(v, axis=0).T))])

    @property
    def length_m(self) -> float:
        return float(self.chainage_m[-1])

    def to_xy(self, along_m: np.ndarray, lateral_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Site metres of points `along_m` down the line and `lateral_m` to its left."""
        along = np.clip(np.asarray(along_m, dtype=np.float64), 0.0, self.length_m)
        seg = np.clip(
            np.searchsorted(self.chainage_m, along, side="right") - 1, 0, len(self.vertices) - 2
        )
        a = self.vertices[seg]
        d = self.vertices[seg + 1] - a
        length = self.chainage_m[seg + 1] - self.chainage_m[seg]
        t = (along - self.chainage_m[seg]) / length
        ux, uy = d[:, 0] / length, d[:, 1] / length
        lateral = np.asarray(lateral_m, dtype=np.float64)
        return a[:, 0] + t * d[:, 0] - uy * lateral, a[:, 1] + t * d[:, 1] + ux * lateral

    def from_xy(self, x_m: np.ndarray, y_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Metres along the line and to its left of site points (the inverse of to_xy).

        Each point goes to its nearest point on the line; drawing a site "straightened"
        along its track is how railway diagrams are read.
        """
        import shapely

        line = shapely.LineString(self.vertices)
        points = shapely.points(
            np.asarray(x_m, dtype=np.float64), np.asarray(y_m, dtype=np.float64)
        )
        along = shapely.line_locate_point(line, points)
        seg = np.clip(
            np.searchsorted(self.chainage_m, along, side="right") - 1, 0, len(self.vertices) - 2
        )
        d = self.vertices[seg + 1] - self.vertices[seg]
        length = self.chainage_m[seg + 1] - self.chainage_m[seg]
        foot = self.vertices[seg] + d * ((along - self.chainage_m[seg]) / length)[:, None]
        ux, uy = d[:, 0] / length, d[:, 1] / length
        lateral = ux * (np.asarray(y_m) - foot[:, 1]) - uy * (np.asarray(x_m) - foot[:, 0])
        return along, lateral
