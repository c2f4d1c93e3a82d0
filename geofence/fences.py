"""Fences in a site's local frame: worksite corridors, danger zones of open lines, drawn polygons.

Rail-native fences are built from a track centreline and lateral offsets, the
way a worksite is described on site ("from the Up Main to 5 m into the cess").
Left and right are as seen looking along the line in the direction the
centreline is given.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import shapely

from geofence.errors import FenceError

#: Corridor corners are mitred (a track does not have rounded corners); a mitre longer
#: than this multiple of the offset is bevelled instead.
_MITRE_LIMIT = 5.0


class FenceKind(StrEnum):
    """What a fence is for: the safe zone is worksites less danger zones and exclusions."""

    WORKSITE = "worksite"  # where the work is allowed: the safe zone is inside these
    EXCLUSION = "exclusion"  # drawn hazards removed from the safe zone
    DANGER_ZONE = "danger_zone"  # around an open line, from the Rule Book


@dataclass(frozen=True)
class Fence:
    """A named area in the site's local frame (metres)."""

    name: str
    kind: FenceKind
    geometry: shapely.Polygon | shapely.MultiPolygon
    source: str  # how it was defined, for the breach log and reports ("ELR ECM1 2m 0440y-…")


def corridor(centreline: np.ndarray, left_m: float, right_m: float, name: str) -> shapely.Polygon:
    """The area from `right_m` right of a centreline to `left_m` left of it, square at the ends.

    Parameters
    ----------
    centreline : array_like of float, shape (n, 2)
        The track's centreline in a local frame, metres, in the direction "left" is
        seen from.
    left_m, right_m : float
        How far the area reaches left and right of the centreline, metres. Either may
        be negative (a strip entirely to one side), but left + right must be positive.
    name : str
        The fence's name, for errors (FenceError).

    Returns
    -------
    shapely Polygon or MultiPolygon
        Corners are mitred, as a track's are, not rounded.

    >>> area = corridor(np.array([[0.0, 0.0], [100.0, 0.0]]), 5.0, 4.5, "possession")
    >>> area.bounds, area.area
    ((0.0, -4.5, 100.0, 5.0), 950.0)
    """
    line = _centreline(centreline, name)
    if not (np.isfinite(left_m) and np.isfinite(right_m)) or left_m + right_m <= 0:
        raise FenceError(name, f"offsets left {left_m} m, right {right_m} m enclose no width")
    if left_m > 0 and right_m > 0:
        left = shapely.buffer(
            line, left_m, single_sided=True, join_style="mitre", mitre_limit=_MITRE_LIMIT
        )
        right = shapely.buffer(
            line, -right_m, single_sided=True, join_style="mitre", mitre_limit=_MITRE_LIMIT
        )
        area = shapely.union(left, right)
    else:
        # a strip beside the line: between the two offset curves
        near, far = (-right_m, left_m) if right_m <= 0 else (left_m, -right_m)
        area = shapely.difference(
            shapely.buffer(
                line, far, single_sided=True, join_style="mitre", mitre_limit=_MITRE_LIMIT
            ),
            shapely.buffer(
                line, near, single_sided=True, join_style="mitre", mitre_limit=_MITRE_LIMIT
            ),
        )
    return _as_polygon(area, name)


def danger_zone(centreline: np.ndarray, half_width_m: float, name: str) -> shapely.Polygon:
    """The strip within `half_width_m` of an open line's centreline, both sides.

    `half_width_m` is metres from the centreline (`Rules.danger_half_width_m` of the
    line speed); FenceError unless it is positive.

    >>> danger_zone(np.array([[0.0, 0.0], [10.0, 0.0]]), 2.79, "Up Fast").bounds
    (0.0, -2.79, 10.0, 2.79)
    """
    if not (np.isfinite(half_width_m) and half_width_m > 0):
        raise FenceError(name, f"danger zone half-width must be positive, got {half_width_m}")
    return corridor(centreline, half_width_m, half_width_m, name)


def _centreline(vertices: np.ndarray, name: str) -> shapely.LineString:
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 2 or len(v) < 2:
        raise FenceError(name, "a centreline needs at least two (x, y) vertices")
    if not np.isfinite(v).all():
        raise FenceError(name, "centreline has non-finite coordinates")
    keep = np.r_[True, (np.diff(v, axis=0) != 0).any(axis=1)]
    v = v[keep]
    if len(v) < 2:
        raise FenceError(name, "centreline has no length")
    return shapely.LineString(v)


def _as_polygon(area: shapely.Geometry, name: str) -> shapely.Polygon | shapely.MultiPolygon:
    area = shapely.make_valid(area) if not area.is_valid else area
    if isinstance(area, shapely.GeometryCollection):
        polys = [g for g in shapely.get_parts(area) if isinstance(g, shapely.Polygon)]
        area = shapely.MultiPolygon(polys) if len(polys) > 1 else (polys[0] if polys else area)
    if area.is_empty or not isinstance(area, shapely.Polygon | shapely.MultiPolygon):
        raise FenceError(name, "encloses no area")
    return area


# ------------------------------------------------------------------------------- GeoJSON
#: GeoJSON CRS names (the pre-RFC 7946 "crs" member) we accept, and what they mean.
_GEOGRAPHIC_CRS = {
    "urn:ogc:def:crs:ogc:1.3:crs84",
    "epsg:4326",
    "urn:ogc:def:crs:epsg::4326",
    "epsg:4258",
    "urn:ogc:def:crs:epsg::4258",
}
_BNG_CRS = {"epsg:27700", "urn:ogc:def:crs:epsg::27700"}

ToLocal = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def geojson_polygons(
    document: str | dict,
    from_lonlat: ToLocal,
    from_bng: ToLocal,
    name: str,
    *,
    check_valid: bool = True,
) -> list[tuple[str, shapely.Polygon | shapely.MultiPolygon]]:
    """Polygons of a GeoJSON object (geometry, Feature or FeatureCollection) in local metres.

    RFC 7946 positions are longitude, latitude; a legacy "crs" member may name
    EPSG:27700 (then positions are easting, northing). Any other CRS is refused
    rather than guessed. Features are named by their "name" property if present.
    Each returned polygon is checked to be valid; the first bad one raises FenceError.

    Parameters
    ----------
    document : str or dict
        The GeoJSON, as text or parsed.
    from_lonlat : callable
        (lat_deg, lon_deg) -> (x_m, y_m) in the local frame (`LocalFrame.from_etrs89`).
    from_bng : callable
        (easting_m, northing_m) -> (x_m, y_m) (`LocalFrame.from_bng`).
    name : str
        The document's name, for errors and for unnamed features.
    check_valid : bool
        Check each polygon is valid and has area (False: just convert).

    Returns
    -------
    list of (str, shapely Polygon or MultiPolygon)
        Each polygon's name and its shape in metres.

    >>> from geofence.frames import LocalFrame
    >>> frame = LocalFrame(51.56, -0.11)
    >>> square = {"type": "Feature", "properties": {"name": "yard"}, "geometry": {
    ...     "type": "Polygon", "coordinates": [[[-0.1101, 51.5599], [-0.1099, 51.5599],
    ...     [-0.1099, 51.5601], [-0.1101, 51.5601], [-0.1101, 51.5599]]]}}
    >>> [(label, round(shape.area)) for label, shape in
    ...  geojson_polygons(square, frame.from_etrs89, frame.from_bng, "doc")]
    [('yard', 309)]
    """
    try:
        obj = json.loads(document) if isinstance(document, str) else document
    except json.JSONDecodeError as exc:
        raise FenceError(name, f"is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(obj, dict) or "type" not in obj:
        raise FenceError(name, "is not a GeoJSON object (no 'type')")
    convert = _converter(obj.get("crs"), from_lonlat, from_bng, name)
    out = []
    for label, geometry in _geometries(obj, name):
        if geometry.get("type") not in ("Polygon", "MultiPolygon"):
            raise FenceError(label, f"GeoJSON {geometry.get('type')!r} is not an area")
        try:
            shape = shapely.from_geojson(json.dumps(geometry))
        except shapely.errors.GEOSException as exc:
            raise FenceError(label, f"malformed GeoJSON polygon ({exc})") from None
        coords = shapely.get_coordinates(shape)
        if not np.isfinite(coords).all():
            raise FenceError(label, "has non-finite coordinates")
        x, y = convert(coords[:, 0], coords[:, 1])
        local = shapely.set_coordinates(shape, np.column_stack([x, y]))
        if not check_valid:
            out.append((label, local))
            continue
        if not local.is_valid:
            raise FenceError(label, f"is not a valid polygon ({shapely.is_valid_reason(local)})")
        if local.area <= 0:
            raise FenceError(label, "encloses no area")
        out.append((label, local))
    if not out:
        raise FenceError(name, "contains no polygons")
    return out


def geojson_lonlat(document: str | dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    """ETRS89 latitude/longitude of every position in a GeoJSON object (to centre a site on it).

    Returns (lat_deg, lon_deg) arrays; a document in EPSG:27700 is converted through
    OSTN15. Raises FenceError for what geojson_polygons would refuse: bad JSON, unknown CRS.

    >>> lat, lon = geojson_lonlat('{"type": "Polygon", "coordinates": [[[-0.11, 51.56], '
    ...                           '[-0.1, 51.56], [-0.1, 51.57], [-0.11, 51.56]]]}', "doc")
    >>> lat.tolist(), lon.tolist()
    ([51.56, 51.56, 51.57, 51.56], [-0.11, -0.1, -0.1, -0.11])
    """
    from geofence import ostn15

    def identity(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return lat, lon

    def bng(e: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return ostn15.bng_to_etrs89(e, n)

    lats, lons = [], []
    for _, geom in geojson_polygons(document, identity, bng, name, check_valid=False):
        coords = shapely.get_coordinates(geom)
        lats.append(coords[:, 0])
        lons.append(coords[:, 1])
    return np.concatenate(lats), np.concatenate(lons)


def _converter(crs: object, from_lonlat: ToLocal, from_bng: ToLocal, name: str) -> ToLocal:
    if crs is None:
        return _checked_lonlat(from_lonlat, name)
    crs_name = ""
    if isinstance(crs, dict):
        crs_name = str((crs.get("properties") or {}).get("name", "")).strip().lower()
    if crs_name in _GEOGRAPHIC_CRS:
        return _checked_lonlat(from_lonlat, name)
    if crs_name in _BNG_CRS:
        return from_bng
    raise FenceError(name, f"unknown CRS {crs!r}: use RFC 7946 longitude/latitude or EPSG:27700")


def _checked_lonlat(from_lonlat: ToLocal, name: str) -> ToLocal:
    def convert(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if (np.abs(lat) > 90).any() or (np.abs(lon) > 180).any():
            raise FenceError(
                name, "has longitude/latitude out of range (are they eastings/northings?)"
            )
        return from_lonlat(lat, lon)

    return convert


def _geometries(obj: dict, name: str):
    kind = obj.get("type")
    if kind == "FeatureCollection":
        for i, feature in enumerate(obj.get("features") or []):
            yield from _geometries(feature, f"{name}[{i}]")
    elif kind == "Feature":
        props = obj.get("properties") or {}
        label = str(props.get("name") or name)
        if not isinstance(obj.get("geometry"), dict):
            raise FenceError(label, "feature has no geometry")
        yield label, obj["geometry"]
    elif kind == "GeometryCollection":
        for i, geometry in enumerate(obj.get("geometries") or []):
            yield f"{name}[{i}]", geometry
    else:
        yield name, obj
