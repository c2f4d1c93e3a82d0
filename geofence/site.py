"""A worksite as the safety system sees it: safe zone, danger zones, and where a fix falls.

safe zone = worksite areas − danger zones of open lines − drawn exclusions

A site is defined in a TOML document (see the README) or built in code. Its
geometry may come from ELR mileages on the real waymarks, British National Grid
vertices, or GeoJSON; all of it lands in one local metric frame centred on the
site. A site with any bad item is refused as a whole, with every problem listed:
a safe zone missing one of its danger zones would be wrong, not partial.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import shapely

from geofence import ostn15
from geofence.elr import Waymarks
from geofence.errors import GeofenceError, SiteError
from geofence.fences import (
    Fence,
    FenceKind,
    corridor,
    danger_zone,
    geojson_lonlat,
    geojson_polygons,
)
from geofence.frames import DeviceDatum, LocalFrame, check_latlon
from geofence.index import OUTSIDE, FenceIndex
from geofence.mileage import parse_mileage_yd
from geofence.rules import Rules

#: Default distance horizon: exact signed distances up to this far from the boundary.
DEFAULT_HORIZON_M = 20.0


@dataclass(frozen=True)
class Line:
    """A track centreline, open (trains running) or blocked.

    An open line gets a danger zone (`Rules.danger_half_width_m` of its line speed
    either side of the centreline), which is cut out of the safe zone.
    """

    name: str
    centreline_m: np.ndarray  # (n, 2) local metres
    open: bool
    line_speed_mph: float
    source: str


@dataclass(frozen=True)
class Evaluation:
    """Per-fix answers of `Site.evaluate`, aligned with the input arrays."""

    x_m: np.ndarray
    y_m: np.ndarray
    valid: np.ndarray  # False where the fix's coordinates were unusable
    fence: np.ndarray  # safe-zone fence number covering the fix, or -1
    distance_m: np.ndarray  # signed distance to the safe-zone boundary (+ inside), NaN if invalid
    danger_zone: np.ndarray  # danger-zone number the fix is in, or -1

    @property
    def inside(self) -> np.ndarray:
        """Whether each fix is in the safe zone (covered by a safe-zone fence)."""
        return self.fence != OUTSIDE


@dataclass(frozen=True)
class Site:
    """A worksite compiled for deciding: its frame, its fences and their indexes.

    Build one with `build_site` (from fences in code), `site_from_toml` or
    `site_from_mapping` (from a site document). Positions on a site are in its frame
    (`frame`): x metres east and y metres north of its centre. Its safe zones are
    numbered as in `fence_names`, and fixes are answered with those numbers.
    """

    name: str
    frame: LocalFrame
    rules: Rules
    lines: tuple[Line, ...]
    worksites: tuple[Fence, ...]
    exclusions: tuple[Fence, ...]
    danger_zones: tuple[Fence, ...]
    safe_zones: tuple[Fence, ...]  # one per worksite that keeps any area, in worksite order
    index: FenceIndex = field(repr=False)
    danger_index: FenceIndex | None = field(repr=False)

    @property
    def fence_names(self) -> list[str]:
        """The safe zones' names, by fence number (what `Evaluation.fence` numbers)."""
        return [f.name for f in self.safe_zones]

    def evaluate(self, x_m: np.ndarray, y_m: np.ndarray) -> Evaluation:
        """Where fixes in the site's frame fall: the safe-zone fence covering each, its
        signed distance to the safe zone's edge, and any danger zone it is in.

        Parameters
        ----------
        x_m, y_m : array_like of float
            Positions in the site's frame, metres east and north of its centre.
            Non-finite coordinates are marked invalid, not fatal.

        Returns
        -------
        Evaluation
            Aligned with the input: `fence`, the covering fence's number in
            `fence_names` (the lowest if several) or -1 outside; `distance_m`, the
            signed distance to the safe zone's edge in metres (+ inside, exact within
            the index's horizon, ±horizon beyond it, NaN if invalid); `danger_zone`, the
            danger zone a fix outside the safe zone is in, or -1; `valid`; `inside`.

        Examples
        --------
        >>> yard = Fence("yard", FenceKind.WORKSITE, shapely.box(0, 0, 20, 10), "drawn")
        >>> site = build_site("depot", LocalFrame(51.56, -0.11), worksites=[yard], horizon_m=5.0)
        >>> ev = site.evaluate([10.0, 19.0, 30.0, np.nan], [5.0, 5.0, 5.0, 5.0])
        >>> ev.fence.tolist(), ev.distance_m.tolist(), ev.valid.tolist()
        ([0, 0, -1, -1], [5.0, 1.0, -5.0, nan], [True, True, True, False])
        """
        x = np.asarray(x_m, dtype=np.float64)
        y = np.asarray(y_m, dtype=np.float64)
        valid = np.isfinite(x) & np.isfinite(y)
        if not valid.all():
            x = np.where(valid, x, 0.0)
            y = np.where(valid, y, 0.0)
        fence, distance = self.index.evaluate(x, y)
        danger = np.full(x.shape, OUTSIDE, dtype=np.int32)
        if self.danger_index is not None:
            outside = np.flatnonzero(fence == OUTSIDE)
            danger[outside] = self.danger_index.classify(x[outside], y[outside])
        if not valid.all():
            fence = np.where(valid, fence, OUTSIDE)
            distance = np.where(valid, distance, np.nan)
            danger = np.where(valid, danger, OUTSIDE)
            x = np.where(valid, x, np.nan)
            y = np.where(valid, y, np.nan)
        return Evaluation(x, y, valid, fence, distance, danger)

    def exact_distance_m(self, x_m: np.ndarray, y_m: np.ndarray) -> np.ndarray:
        """Signed distance to the safe-zone edge (+ inside) that is exact at any range.

        The live decision needs distances only near the edge, so the fence index
        clamps them at its horizon. Scoring a trial does not: how deep a wearer truly
        went, or how far outside they were when alerted, is a figure in the report,
        and a clamp would print the horizon as the depth. The few points beyond the
        horizon are measured with GEOS against the safe zone's boundary.

        Parameters
        ----------
        x_m, y_m : array_like of float
            Finite positions in the site's frame, metres east and north of its centre.

        Returns
        -------
        ndarray of float
            Metres to the safe zone's edge, positive inside, negative outside.

        Examples
        --------
        >>> yard = Fence("yard", FenceKind.WORKSITE, shapely.box(0, 0, 20, 10), "drawn")
        >>> site = build_site("depot", LocalFrame(51.56, -0.11), worksites=[yard], horizon_m=5.0)
        >>> site.evaluate([45.0], [5.0]).distance_m.tolist(), site.exact_distance_m([45.0], [5.0])
        ([-5.0], array([-25.]))
        """
        x = np.asarray(x_m, dtype=np.float64)
        y = np.asarray(y_m, dtype=np.float64)
        _, distance = self.index.evaluate(x, y)
        far = np.flatnonzero(np.abs(distance) >= self.index.horizon_m)
        if far.size:
            edge = shapely.union_all([z.geometry for z in self.safe_zones]).boundary
            points = shapely.points(x[far], y[far])
            distance[far] = np.sign(distance[far]) * shapely.distance(edge, points)
        return distance

    def locate(
        self,
        lat_deg: np.ndarray,
        lon_deg: np.ndarray,
        datum: DeviceDatum | str = DeviceDatum.ETRS89,
        time_ms: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Device latitudes/longitudes in this site's frame (`LocalFrame.from_device`).

        Parameters
        ----------
        lat_deg, lon_deg : array_like of float
            The fixes as the devices reported them, degrees.
        datum : DeviceDatum or str
            What the devices report in: "ETRS89" (RTK networks) or "WGS84"
            (standalone and SBAS receivers, moved into ETRS89 at each fix's epoch).
        time_ms : array_like of int, optional
            Fix times, UTC epoch ms; needed for WGS84.

        Returns
        -------
        x_m, y_m : ndarray of float
            Metres east and north of the site's centre; NaN where a fix is unusable.

        Examples
        --------
        >>> yard = Fence("yard", FenceKind.WORKSITE, shapely.box(0, 0, 20, 10), "drawn")
        >>> site = build_site("depot", LocalFrame(51.56, -0.11), worksites=[yard])
        >>> x, y = site.locate([51.56, 91.0], [-0.11, 0.0])
        >>> np.round(x, 6).tolist(), np.isnan(y).tolist()
        ([0.0, nan], [False, True])
        """
        return self.frame.from_device(lat_deg, lon_deg, DeviceDatum(datum), time_ms)

    def locate_one(
        self,
        lat_deg: float,
        lon_deg: float,
        datum: DeviceDatum | str = DeviceDatum.ETRS89,
        time_ms: int | None = None,
    ) -> tuple[float, float]:
        """`locate` for one fix, on plain Python numbers (`LocalFrame.from_device_one`).

        >>> yard = Fence("yard", FenceKind.WORKSITE, shapely.box(0, 0, 20, 10), "drawn")
        >>> site = build_site("depot", LocalFrame(51.56, -0.11), worksites=[yard])
        >>> site.locate_one(51.56, -0.11)
        (0.0, 0.0)
        """
        return self.frame.from_device_one(lat_deg, lon_deg, DeviceDatum(datum), time_ms)

    def evaluate_one(self, x_m: float, y_m: float) -> tuple[int, float]:
        """The safe-zone fence covering one fix and its signed distance, as `evaluate`.

        For the live path's lone fix, where numpy's per-call cost on arrays of one
        would be most of the time taken (`FenceIndex.evaluate_one`). It answers what
        the decision needs, (fence, distance_m), without the danger zone.

        Returns
        -------
        fence : int
            The covering fence's number in `fence_names`, or -1.
        distance_m : float
            Signed distance to the safe zone's edge, metres (+ inside); NaN, with
            fence -1, for a non-finite position.

        >>> yard = Fence("yard", FenceKind.WORKSITE, shapely.box(0, 0, 20, 10), "drawn")
        >>> site = build_site("depot", LocalFrame(51.56, -0.11), worksites=[yard], horizon_m=5.0)
        >>> site.evaluate_one(19.0, 5.0), site.evaluate_one(float("nan"), 5.0)
        ((0, 1.0), (-1, nan))
        """
        if not (math.isfinite(x_m) and math.isfinite(y_m)):
            return OUTSIDE, math.nan
        return self.index.evaluate_one(x_m, y_m)

    def evaluate_latlon(
        self,
        lat_deg: np.ndarray,
        lon_deg: np.ndarray,
        datum: DeviceDatum | str = DeviceDatum.ETRS89,
        time_ms: np.ndarray | None = None,
    ) -> Evaluation:
        """`evaluate` of device latitudes/longitudes: `locate` them, then evaluate.

        >>> yard = Fence("yard", FenceKind.WORKSITE, shapely.box(-10, -5, 10, 5), "drawn")
        >>> site = build_site("depot", LocalFrame(51.56, -0.11), worksites=[yard])
        >>> site.evaluate_latlon([51.56], [-0.11]).inside.tolist()
        [True]
        """
        x, y = self.locate(lat_deg, lon_deg, datum, time_ms)
        return self.evaluate(x, y)


# ------------------------------------------------------------------------------- building
def build_site(
    name: str,
    frame: LocalFrame,
    *,
    lines: Sequence[Line] = (),
    worksites: Sequence[Fence],
    exclusions: Sequence[Fence] = (),
    rules: Rules | None = None,
    horizon_m: float = DEFAULT_HORIZON_M,
    cell_m: float = 1.0,
) -> Site:
    """A site from fences in its frame: derive its danger and safe zones, compile indexes.

    safe zone = worksites − danger zones of open lines − exclusions; each worksite that
    keeps any area is one safe-zone fence, in worksite order.

    Parameters
    ----------
    name : str
        The site's name (in the breach log and reports).
    frame : LocalFrame
        The site's metric frame; every geometry below is in it, in metres.
    lines : sequence of Line
        Tracks; each open one gets a danger zone by its line speed and `rules`.
    worksites : sequence of Fence
        Where the work is allowed (at least one must keep some area).
    exclusions : sequence of Fence
        Drawn hazards removed from the safe zone.
    rules : Rules, optional
        Rule Book distances (default: the Rule Book's own).
    horizon_m : float
        How far from the safe zone's edge signed distances are exact, metres.
    cell_m : float
        The fence index's fine cell, metres (smaller: faster near edges, more memory).

    Returns
    -------
    Site

    Raises SiteError when no safe zone remains, and FenceError for a bad fence.

    Examples
    --------
    >>> frame = LocalFrame(51.56, -0.11)
    >>> track = Line("Up Fast", np.array([[-50.0, 0.0], [50.0, 0.0]]), True, 125.0, "drawn")
    >>> cess = Fence("cess", FenceKind.WORKSITE, shapely.box(-40, 0, 40, 8), "drawn")
    >>> site = build_site("ECM1", frame, lines=[track], worksites=[cess])
    >>> site.fence_names, round(site.safe_zones[0].geometry.bounds[1], 2)  # 2 m from the rail
    (['cess'], 2.79)
    """
    rules = rules or Rules()
    dangers = _danger_zones(lines, rules)
    safe = _safe_zones(name, worksites, dangers, exclusions)
    index = FenceIndex.build(
        [f.geometry for f in safe], cell_m=cell_m, horizon_m=horizon_m, names=[f.name for f in safe]
    )
    danger_index = (
        FenceIndex.build(
            [f.geometry for f in dangers],
            cell_m=cell_m,
            horizon_m=0.0,
            names=[f.name for f in dangers],
        )
        if dangers
        else None
    )
    return Site(
        name,
        frame,
        rules,
        tuple(lines),
        tuple(worksites),
        tuple(exclusions),
        dangers,
        tuple(safe),
        index,
        danger_index,
    )


def _danger_zones(lines: Sequence[Line], rules: Rules) -> tuple[Fence, ...]:
    """A danger zone round each open line, as wide as the Rule Book says for its speed."""
    return tuple(
        Fence(
            f"danger zone of {line.name}",
            FenceKind.DANGER_ZONE,
            danger_zone(
                line.centreline_m, rules.danger_half_width_m(line.line_speed_mph), line.name
            ),
            f"{line.source}, {line.line_speed_mph:g} mph, "
            f"{rules.danger_half_width_m(line.line_speed_mph):.2f} m from centreline",
        )
        for line in lines
        if line.open
    )


def _safe_zones(
    name: str,
    worksites: Sequence[Fence],
    dangers: tuple[Fence, ...],
    exclusions: Sequence[Fence],
) -> list[Fence]:
    """Each worksite less every danger zone and exclusion, if any area remains of it.

    A site with no safe zone left is refused: it would alarm everyone everywhere.
    """
    removed = [f.geometry for f in dangers] + [f.geometry for f in exclusions]
    hazards = shapely.union_all(removed) if removed else None
    safe = []
    for worksite in worksites:
        area = worksite.geometry if hazards is None else worksite.geometry.difference(hazards)
        area = _polygonal(area)
        if area is not None:
            safe.append(Fence(worksite.name, FenceKind.WORKSITE, area, worksite.source))
    if not safe:
        raise SiteError(name, "no safe zone remains once danger zones and exclusions are removed")
    return safe


def _polygonal(geom: shapely.Geometry) -> shapely.Polygon | shapely.MultiPolygon | None:
    """Keep only the areal part of an overlay result (slivers of lines/points dropped)."""
    parts = [p for p in shapely.get_parts(geom) if isinstance(p, shapely.Polygon) and p.area > 1e-6]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


# ------------------------------------------------------------------------------- TOML
ReadText = Callable[[str], str]


class _Problems:
    """Collects every problem in a site document, so the user sees them all at once."""

    def __init__(self, site_name: str) -> None:
        self.site_name = site_name
        self.items: list[str] = []

    def add(self, where: str, reason: str) -> None:
        self.items.append(f"{where}: {reason}")

    def raise_if_any(self) -> None:
        if self.items:
            raise SiteError(
                f"site {self.site_name!r}",
                f"{len(self.items)} problem(s):\n  - " + "\n  - ".join(self.items),
            )


def site_from_toml(
    text: str, *, waymarks: Waymarks | None, read_text: ReadText | None = None
) -> Site:
    """A site from the text of a site TOML document (see the README's "Site files").

    Parameters
    ----------
    text : str
        The TOML document.
    waymarks : Waymarks or None
        The ELR mileposts that place `elr`/`from`/`to` items (None: refused).
    read_text : callable, optional
        Resolves a `geojson_file` reference to its text (the caller's I/O).

    Returns
    -------
    Site
        As `site_from_mapping` builds it; SiteError lists every problem at once.

    Examples
    --------
    >>> site = site_from_toml('''
    ... [site]
    ... name = "yard"
    ... centre = {lat = 51.56, lon = -0.11}
    ... [[worksite]]
    ... name = "w"
    ... geojson = {type = "Polygon", coordinates = [[[-0.1101, 51.5599], [-0.1099, 51.5599],
    ...            [-0.1099, 51.5601], [-0.1101, 51.5601], [-0.1101, 51.5599]]]}
    ... ''', waymarks=None)
    >>> site.name, site.fence_names
    ('yard', ['w'])
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SiteError("site file", f"is not valid TOML ({exc})") from None
    return site_from_mapping(data, waymarks=waymarks, read_text=read_text)


_SITE_KEYS = {"name", "horizon_m", "cell_m", "centre"}
_LINE_KEYS = {"name", "elr", "from", "to", "offset_m", "bng", "lonlat", "line_speed_mph", "open"}
_WORKSITE_KEYS = {"name", "elr", "from", "to", "left_m", "right_m", "geojson", "geojson_file"}
_EXCLUSION_KEYS = {"name", "geojson", "geojson_file"}


def site_from_mapping(
    data: Mapping, *, waymarks: Waymarks | None, read_text: ReadText | None = None
) -> Site:
    """A site from a parsed site document (the tables of a site TOML file; see the README).

    Parameters:
      data: the document: a table `site` (name, and optionally horizon_m, cell_m in
        metres and centre {lat, lon} in ETRS89 degrees), optional `rules`, and arrays
        of `line`, `worksite` and `exclusion` tables.
      waymarks: the ELR mileposts that place `elr`/`from`/`to` items (None: such items
        are refused).
      read_text: resolves a `geojson_file` reference to its text (the caller's I/O).

    Returns the built Site. Raises SiteError listing every problem in the document at
    once (table, index and field): a site with any bad item is refused as a whole.

    It reads in two passes. First every item's vertices, in BNG or ETRS89 lon/lat, to
    find the site's centre (unless given); then everything in the site's own frame,
    then the safe zone (`build_site`).

    >>> site = site_from_mapping({
    ...     "site": {"name": "yard", "centre": {"lat": 51.56, "lon": -0.11}},
    ...     "worksite": [{"name": "w", "geojson": {"type": "Polygon", "coordinates": [[
    ...         [-0.1101, 51.5599], [-0.1099, 51.5599], [-0.1099, 51.5601],
    ...         [-0.1101, 51.5601], [-0.1101, 51.5599]]]}}],
    ... }, waymarks=None)
    >>> site.fence_names, bool(site.evaluate_latlon([51.56], [-0.11]).inside[0])
    (['w'], True)
    """
    site = data.get("site")
    if not isinstance(site, Mapping) or not isinstance(site.get("name"), str):
        raise SiteError("[site]", "needs a table [site] with a text 'name'")
    name = site["name"]
    problems = _Problems(name)
    rules, horizon_m, cell_m = _site_settings(data, site, problems)
    # Pass 1: every item's vertices in BNG or ETRS89 lon/lat, to find the site's centre.
    raw_lines = [
        _raw_line(i, item, waymarks, problems)
        for i, item in enumerate(_tables(data, "line", problems))
    ]
    raw_worksites = [
        _raw_worksite(i, item, waymarks, read_text, problems)
        for i, item in enumerate(_tables(data, "worksite", problems))
    ]
    raw_exclusions = [
        _raw_drawn(f"exclusion[{i}]", item, _EXCLUSION_KEYS, read_text, problems)
        for i, item in enumerate(_tables(data, "exclusion", problems))
    ]
    if not raw_worksites:
        problems.add("[[worksite]]", "a site needs at least one worksite")
    problems.raise_if_any()
    frame = _frame(site.get("centre"), raw_lines + raw_worksites + raw_exclusions, problems)
    problems.raise_if_any()
    assert frame is not None
    # Pass 2: every item in the site's frame.
    lines = _build_lines(raw_lines, frame, problems)
    worksites = _build_areas(raw_worksites, FenceKind.WORKSITE, frame, problems)
    exclusions = _build_areas(raw_exclusions, FenceKind.EXCLUSION, frame, problems)
    problems.raise_if_any()
    try:
        return build_site(
            name,
            frame,
            lines=lines,
            worksites=worksites,
            exclusions=exclusions,
            rules=rules,
            horizon_m=horizon_m,
            cell_m=cell_m,
        )
    except GeofenceError as exc:
        problems.add("site", str(exc))
        problems.raise_if_any()
        raise  # pragma: no cover


def _site_settings(
    data: Mapping, site: Mapping, problems: _Problems
) -> tuple[Rules, float, float]:
    """The document's site-wide settings: (rules, horizon_m, cell_m), every problem noted."""
    _unknown_keys(site, _SITE_KEYS, "[site]", problems)
    for table in set(data) - {"site", "rules", "line", "worksite", "exclusion"}:
        problems.add(
            f"[{table}]", "unknown table (expected site, rules, line, worksite, exclusion)"
        )
    rules = Rules()
    if "rules" in data:
        try:
            rules = rules.with_overrides(**dict(data["rules"]))
        except (KeyError, ValueError, TypeError) as exc:
            problems.add("[rules]", str(exc).strip("'\""))
    horizon_m = _number(site.get("horizon_m", DEFAULT_HORIZON_M), "[site].horizon_m", problems, 0)
    cell_m = _number(site.get("cell_m", 1.0), "[site].cell_m", problems, 1e-3)
    return rules, horizon_m, cell_m


def _to_local(raw: _Raw, frame: LocalFrame) -> np.ndarray:
    """An item's BNG or lon/lat vertices in the site's frame, (n, 2) metres."""
    if raw.crs == "bng":
        x, y = frame.from_bng(raw.vertices[:, 0], raw.vertices[:, 1])
    else:
        x, y = frame.from_etrs89(raw.vertices[:, 1], raw.vertices[:, 0])
    return np.column_stack([x, y])


def _build_lines(raws: list[_Raw | None], frame: LocalFrame, problems: _Problems) -> list[Line]:
    """The tracks in the site's frame, each moved sideways by its offset if it has one."""
    lines: list[Line] = []
    for raw in raws:
        if raw is None:
            continue
        try:
            centreline = _to_local(raw, frame)
            offset = raw.extra.get("offset_m", 0.0)
            if offset:
                # positive offsets are to the left, looking from 'from' towards 'to'
                shifted = shapely.offset_curve(
                    shapely.LineString(centreline), offset, join_style="mitre", mitre_limit=5.0
                )
                centreline = shapely.get_coordinates(shifted)
            lines.append(
                Line(raw.name, centreline, raw.extra["open"], raw.extra["speed"], raw.source)
            )
        except GeofenceError as exc:
            problems.add(raw.where, str(exc))
    return lines


@dataclass
class _Raw:
    where: str
    name: str
    source: str
    crs: str = "bng"  # "bng" (easting, northing) or "lonlat"
    vertices: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    geojson: object = None
    extra: dict = field(default_factory=dict)


def _tables(data: Mapping, key: str, problems: _Problems) -> list[Mapping]:
    items = data.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        problems.add(f"[[{key}]]", "must be an array of tables")
        return []
    return items


def _unknown_keys(item: Mapping, allowed: set[str], where: str, problems: _Problems) -> None:
    for key in sorted(set(item) - allowed):
        problems.add(
            f"{where}.{key}", f"unknown field (expected one of {', '.join(sorted(allowed))})"
        )


def _number(value: object, where: str, problems: _Problems, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        problems.add(where, f"must be a number, got {value!r}")
        return float(minimum) if minimum > 0 else 1.0
    if value < minimum:
        problems.add(where, f"must be at least {minimum}, got {value}")
    return float(value)


def _item_name(item: Mapping, where: str, problems: _Problems) -> str:
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.add(f"{where}.name", "every item needs a text name (it appears in the breach log)")
        return where
    return name


def _elr_route(
    item: Mapping, where: str, waymarks: Waymarks | None, problems: _Problems
) -> tuple[np.ndarray, str] | None:
    if waymarks is None:
        problems.add(f"{where}.elr", "no waymarks were given to locate ELR mileages")
        return None
    for key in ("from", "to"):
        if key not in item:
            problems.add(f"{where}.{key}", "an ELR stretch needs both 'from' and 'to' mileages")
            return None
    try:
        start = parse_mileage_yd(item["from"])
    except ValueError as exc:
        problems.add(f"{where}.from", str(exc))
        return None
    try:
        end = parse_mileage_yd(item["to"])
    except ValueError as exc:
        problems.add(f"{where}.to", str(exc))
        return None
    try:
        posts = waymarks.elr(str(item["elr"]))
        route = posts.route_bng(start, end)
    except GeofenceError as exc:
        problems.add(f"{where}.elr", str(exc))
        return None
    return route, f"ELR {posts.elr} {item['from']} to {item['to']}"


def _vertex_list(value: object, where: str, problems: _Problems) -> np.ndarray | None:
    try:
        vertices = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        problems.add(where, "must be a list of [x, y] pairs")
        return None
    if vertices.ndim != 2 or vertices.shape[1] != 2 or len(vertices) < 2:
        problems.add(where, "must be a list of at least two [x, y] pairs")
        return None
    if not np.isfinite(vertices).all():
        problems.add(where, "has non-finite coordinates")
        return None
    return vertices


def _raw_line(i: int, item: Mapping, waymarks: Waymarks | None, problems: _Problems) -> _Raw | None:
    where = f"line[{i}]"
    _unknown_keys(item, _LINE_KEYS, where, problems)
    name = _item_name(item, where, problems)
    is_open = item.get("open", True)
    if not isinstance(is_open, bool):
        problems.add(f"{where}.open", f"must be true or false, got {is_open!r}")
    speed = item.get("line_speed_mph")
    if is_open is not False:
        if speed is None:
            problems.add(f"{where}.line_speed_mph", "an open line needs its line speed (mph)")
            speed = 0.0
        else:
            speed = _number(speed, f"{where}.line_speed_mph", problems, 0)
    speed = float(speed or 0.0)
    raw = _Raw(where, name, "", extra={"open": bool(is_open), "speed": speed})
    sources = [k for k in ("elr", "bng", "lonlat") if k in item]
    if len(sources) != 1:
        problems.add(where, "give the centreline exactly one way: elr+from+to, bng, or lonlat")
        return None
    if "elr" in item:
        located = _elr_route(item, where, waymarks, problems)
        if located is None:
            return None
        route, raw.source = located
        offset = _number(item.get("offset_m", 0.0), f"{where}.offset_m", problems, -1e6)
        raw.vertices = route
        raw.extra["offset_m"] = offset
    else:
        crs = sources[0]
        vertices = _vertex_list(item[crs], f"{where}.{crs}", problems)
        if vertices is None:
            return None
        raw.crs, raw.vertices, raw.source = crs, vertices, f"drawn ({crs})"
    return raw


def _raw_worksite(
    i: int,
    item: Mapping,
    waymarks: Waymarks | None,
    read_text: ReadText | None,
    problems: _Problems,
) -> _Raw | None:
    where = f"worksite[{i}]"
    if "elr" not in item:
        return _raw_drawn(where, item, _WORKSITE_KEYS, read_text, problems)
    _unknown_keys(item, _WORKSITE_KEYS, where, problems)
    name = _item_name(item, where, problems)
    located = _elr_route(item, where, waymarks, problems)
    left = _number(item.get("left_m"), f"{where}.left_m", problems, -1e6)
    right = _number(item.get("right_m"), f"{where}.right_m", problems, -1e6)
    if located is None:
        return None
    route, source = located
    return _Raw(where, name, source, vertices=route, extra={"left_m": left, "right_m": right})


def _raw_drawn(
    where: str, item: Mapping, allowed: set[str], read_text: ReadText | None, problems: _Problems
) -> _Raw | None:
    _unknown_keys(item, allowed, where, problems)
    name = _item_name(item, where, problems)
    if ("geojson" in item) == ("geojson_file" in item):
        problems.add(
            where, "give the area as elr+from+to, 'geojson' or 'geojson_file' (one of them)"
        )
        return None
    if "geojson_file" in item:
        if read_text is None:
            problems.add(f"{where}.geojson_file", "file references are not available here")
            return None
        try:
            document: object = read_text(str(item["geojson_file"]))
        except OSError as exc:
            problems.add(
                f"{where}.geojson_file", f"cannot read {item['geojson_file']!r} ({exc.strerror})"
            )
            return None
        source = f"GeoJSON {item['geojson_file']}"
    else:
        document = item["geojson"]
        source = "GeoJSON (inline)"
    return _Raw(where, name, source, crs="geojson", geojson=document)


def _frame(centre: object, raws: list[_Raw | None], problems: _Problems) -> LocalFrame | None:
    if centre is not None:
        if not isinstance(centre, Mapping) or set(centre) != {"lat", "lon"}:
            problems.add("[site].centre", "must be a table {lat = …, lon = …} in ETRS89 degrees")
            return None
        try:
            return LocalFrame(float(centre["lat"]), float(centre["lon"]))
        except (GeofenceError, TypeError, ValueError) as exc:
            problems.add("[site].centre", str(exc))
            return None
    lats, lons = [], []
    for raw in raws:
        if raw is None:
            continue
        try:
            if raw.crs == "bng":
                lat, lon = ostn15.bng_to_etrs89(raw.vertices[:, 0], raw.vertices[:, 1])
            elif raw.crs == "lonlat":
                lat, lon = raw.vertices[:, 1], raw.vertices[:, 0]
                if not check_latlon(lat, lon).all():
                    problems.add(raw.where, "has latitude/longitude out of range")
                    continue
            else:
                lat, lon = geojson_lonlat(raw.geojson, raw.name)  # type: ignore[arg-type]
        except GeofenceError as exc:
            problems.add(raw.where, str(exc))
            continue
        lats.append(lat)
        lons.append(lon)
    if not lats:
        problems.add(
            "[site].centre",
            "no ELR or coordinate geometry to centre the site on: give centre = {lat, lon}",
        )
        return None
    lat = np.concatenate(lats)
    lon = np.concatenate(lons)
    return LocalFrame(float((lat.min() + lat.max()) / 2), float((lon.min() + lon.max()) / 2))


def _build_areas(
    raws: list[_Raw | None], kind: FenceKind, frame: LocalFrame, problems: _Problems
) -> list[Fence]:
    """Worksites or exclusions in the site's frame: drawn polygons, or ELR corridors."""
    out = []
    for raw in raws:
        if raw is None:
            continue
        try:
            if raw.crs == "geojson":
                for label, geom in geojson_polygons(
                    raw.geojson,  # type: ignore[arg-type]
                    frame.from_etrs89,
                    frame.from_bng,
                    raw.name,
                ):
                    out.append(Fence(label, kind, geom, raw.source))
            else:
                centreline = _to_local(raw, frame)
                geom = corridor(centreline, raw.extra["left_m"], raw.extra["right_m"], raw.name)
                out.append(Fence(raw.name, kind, geom, raw.source))
        except GeofenceError as exc:
            problems.add(raw.where, str(exc))
    return out
