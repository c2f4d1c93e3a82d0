"""Locating things by Engineer's Line Reference and mileage, on the real waymarks.

A worksite's limits are usually given as "ELR ECM1 from 2m 0440y to 2m 1320y".
The waymarks (mileposts, mostly a quarter mile apart) put those numbers on the
ground: a mileage between two posts is placed in proportion between them. That
is how a mileage is read on the track, and it is the route at quarter-mile
resolution, not a surveyed centreline; a site that needs better gives its
centrelines as drawn geometry instead.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from geofence.errors import LocationError
from geofence.mileage import format_mileage, parse_mileage_yd


@dataclass(frozen=True)
class ElrPosts:
    """One ELR's mileposts, sorted by mileage: yards from zero and BNG metres.

    >>> posts = ElrPosts("ECM1", np.array([0.0, 440.0]), np.array([530_000.0, 530_000.0]),
    ...                  np.array([182_000.0, 182_402.3]))
    >>> posts.first_yd, posts.last_yd
    (0.0, 440.0)
    """

    elr: str
    mileage_yd: np.ndarray
    easting_m: np.ndarray
    northing_m: np.ndarray

    @property
    def first_yd(self) -> float:
        """The first post's mileage, yards from the ELR's zero."""
        return float(self.mileage_yd[0])

    @property
    def last_yd(self) -> float:
        """The last post's mileage, yards from the ELR's zero."""
        return float(self.mileage_yd[-1])

    def _check_range(self, mileage_yd: np.ndarray) -> None:
        outside = (mileage_yd < self.first_yd) | (mileage_yd > self.last_yd)
        if np.any(outside):
            bad = float(np.asarray(mileage_yd)[outside].flat[0])
            raise LocationError(
                f"mileage {format_mileage(bad)} is outside ELR {self.elr}'s waymarks "
                f"({format_mileage(self.first_yd)} to {format_mileage(self.last_yd)})"
            )

    def locate_bng(self, mileage_yd: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Where mileages are: BNG (easting_m, northing_m), in proportion between posts.

        Parameters
        ----------
        mileage_yd : float or array_like of float
            Yards from the ELR's zero (`parse_mileage_yd` reads the railway's forms).

        Returns
        -------
        easting_m, northing_m : ndarray of float

        Raises LocationError for a mileage beyond the first or last post.

        >>> posts = ElrPosts("ECM1", np.array([0.0, 440.0]), np.array([530_000.0, 530_000.0]),
        ...                  np.array([182_000.0, 182_402.3]))
        >>> posts.locate_bng(220.0)
        (array([530000.]), array([182201.15]))
        """
        m = np.atleast_1d(np.asarray(mileage_yd, dtype=np.float64))
        self._check_range(m)
        return (
            np.interp(m, self.mileage_yd, self.easting_m),
            np.interp(m, self.mileage_yd, self.northing_m),
        )

    def route_bng(self, from_yd: float, to_yd: float) -> np.ndarray:
        """The route between two mileages as BNG vertices (the posts between, plus both ends).

        Parameters
        ----------
        from_yd, to_yd : float
            The stretch's ends, yards from the ELR's zero; the direction follows them,
            from `from_yd` towards `to_yd` (so "left" of it is well defined).

        Returns
        -------
        ndarray of float, shape (n, 2)
            BNG easting and northing, metres.

        >>> posts = ElrPosts("ECM1", np.array([0.0, 440.0, 880.0]),
        ...                  np.array([530_000.0, 530_000.0, 530_100.0]),
        ...                  np.array([182_000.0, 182_400.0, 182_800.0]))
        >>> posts.route_bng(660.0, 220.0).tolist()
        [[530050.0, 182600.0], [530000.0, 182400.0], [530000.0, 182200.0]]
        """
        if from_yd == to_yd:
            raise LocationError(f"ELR {self.elr}: a stretch needs two different mileages")
        lo, hi = sorted((from_yd, to_yd))
        self._check_range(np.array([lo, hi]))
        inner = (self.mileage_yd > lo) & (self.mileage_yd < hi)
        mileages = np.concatenate([[lo], self.mileage_yd[inner], [hi]])
        e, n = self.locate_bng(mileages)
        vertices = np.column_stack([e, n])
        return vertices if from_yd < to_yd else vertices[::-1]


class Waymarks:
    """All known ELRs' mileposts; look one up by name (`loading.waymarks` bundles them).

    >>> waymarks = Waymarks.from_csv_text(
    ...     "elr,system,waymark_value,easting,northing\\n"
    ...     "ECM1,M,2.0000,530000,182000\\nECM1,M,2.0440,530000,182402\\n")
    >>> "ecm1" in waymarks, waymarks.elrs, waymarks.locate_bng("ECM1", "2m 220y")
    (True, ['ECM1'], (530000.0, 182201.0))
    """

    def __init__(self, posts: dict[str, ElrPosts]) -> None:
        self._posts = posts

    def __contains__(self, elr: str) -> bool:
        return elr.upper() in self._posts

    def __len__(self) -> int:
        return len(self._posts)

    @property
    def elrs(self) -> list[str]:
        """The ELRs known, sorted."""
        return sorted(self._posts)

    def elr(self, name: str) -> ElrPosts:
        """One ELR's posts, by its name (any case); LocationError if unknown."""
        key = str(name).strip().upper()
        try:
            return self._posts[key]
        except KeyError:
            raise LocationError(
                f"unknown ELR {name!r} (the waymarks know {len(self._posts)} ELRs)"
            ) from None

    def locate_bng(self, elr: str, mileage: object) -> tuple[float, float]:
        """BNG (easting_m, northing_m) of an ELR and a mileage in any accepted form.

        `mileage` is read by `parse_mileage_yd` ("12.0440", "12m 440y", "12m 20ch", or a
        table {miles, yards}); LocationError if the ELR or the mileage is not known.
        """
        posts = self.elr(elr)
        e, n = posts.locate_bng(parse_mileage_yd(mileage))
        return float(e[0]), float(n[0])

    @classmethod
    def from_csv_text(cls, text: str) -> Waymarks:
        """Read the Network Rail waymark CSV layout (elr, system, waymark_value, easting, northing).

        Kilometric ELRs (system K) are skipped: their posts count kilometres, and a
        mileage on them would be misplaced.
        """
        columns: dict[str, list[tuple[float, float, float]]] = {}
        reader = csv.DictReader(io.StringIO(text))
        required = {"elr", "system", "waymark_value", "easting", "northing"}
        missing = required - set(reader.fieldnames or ())
        if missing:
            raise LocationError(f"waymark CSV lacks column(s) {sorted(missing)}")
        for line_no, row in enumerate(reader, start=2):
            if row["system"].strip().upper() != "M":
                continue
            try:
                yards = parse_mileage_yd(row["waymark_value"])
                point = (yards, float(row["easting"]), float(row["northing"]))
            except ValueError as exc:
                raise LocationError(f"waymark CSV line {line_no}: {exc}") from None
            columns.setdefault(row["elr"].strip().upper(), []).append(point)
        posts = {}
        for elr, points in columns.items():
            table = np.array(sorted(points))
            _, first = np.unique(table[:, 0], return_index=True)  # one post per mileage
            table = table[first]
            if len(table) < 2:
                continue
            posts[elr] = ElrPosts(elr, table[:, 0], table[:, 1], table[:, 2])
        return cls(posts)
