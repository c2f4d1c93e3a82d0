"""A worksite as the safety system sees it: safe zone, danger zones, and where a fix falls.

safe zone = worksite areas − danger zones of open lines − drawn exclusions

A site is defined in a TOML document (see the README) or built in code. Its
geometry may come from ELR mileages on the real waymarks, British National Grid
vertices, or GeoJSON; all of it lands in one local metric frame centred on the
site. A site with any bad item is refused as a whole, with every problem listed:
a safe zone missing one of its danger zones would be wrong, not partial.
"""

from __future__ import annotations

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
    """A track centreline, open (trains running) or blocked."""

    name: str
    centreline_m: np.ndarray  # (n, 2) local metres
    open: bool
    line_speed_mph: float
    source: str


@dataclass(frozen=True)
class Evaluation:
    """Per-fix answers, aligned with the input arrays."""

    x_m: np.ndarray
    y_m: np.ndarray
    valid: np.ndarray  # False where the fix's coordinates were unusable
    fence: np.ndarray  # safe-zone fence number covering the fix, or -1
    distance_m: np.ndarray  # signed distance to the safe-zone boundary (+ inside), NaN if invalid
    danger_zone: np.ndarray  # danger-zone number the fix is in, or -1

    @property
    def inside(self) -> np.ndarray:
        return self.fence != OUTSIDE


@dataclass(frozen=True)
class Site:
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
        return [f.name for f in self.safe_zones]

    def evaluate(self, x_m: np.ndarray, y_m: np.ndarray) -> Evaluation:
        """Where local-frame fixes fall. Non-finite coordinates are marked invalid, not fatal."""
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
        """Device latitude/longitude to this site's local metres (NaN where unusable)."""
        return self.frame.from_device(lat_deg, lon_deg, DeviceDatum(datum), time_ms)

    def evaluate_latlon(
        self,
        lat_deg: np.ndarray,
        lon_deg: np.ndarray,
        datum: DeviceDatum | str = DeviceDatum.ETRS89,
        time_ms: np.ndarray | None = None,
    ) -> Evaluation:
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
    """Derive danger zones and safe zones, and compile the indexes."""
    rules = rules or Rules()
    dangers = tuple(
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
    """Parse a site TOML document; `read_text` resolves GeoJSON file references (caller's I/O)."""
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
    site = data.get("site")
    if not isinstance(site, Mapping) or not isinstance(site.get("name"), str):
        raise SiteError("[site]", "needs a table [site] with a text 'name'")
    name = site["name"]
    problems = _Problems(name)
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

    def to_local(raw: _Raw) -> np.ndarray:
        if raw.crs == "bng":
            x, y = frame.from_bng(raw.vertices[:, 0], raw.vertices[:, 1])
        else:
            x, y = frame.from_etrs89(raw.vertices[:, 1], raw.vertices[:, 0])
        return np.column_stack([x, y])

    lines: list[Line] = []
    for raw in raw_lines:
        if raw is None:
            continue
        try:
            centreline = to_local(raw)
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
    worksites = _build_areas(raw_worksites, FenceKind.WORKSITE, to_local, frame, problems)
    exclusions = _build_areas(raw_exclusions, FenceKind.EXCLUSION, to_local, frame, problems)
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
    raws: list[_Raw | None],
    kind: FenceKind,
    to_local: Callable[[_Raw], np.ndarray],
    frame: LocalFrame,
    problems: _Problems,
) -> list[Fence]:
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
                centreline = to_local(raw)
                geom = corridor(centreline, raw.extra["left_m"], raw.extra["right_m"], raw.name)
                out.append(Fence(raw.name, kind, geom, raw.source))
        except GeofenceError as exc:
            problems.add(raw.where, str(exc))
    return out
