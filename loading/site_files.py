"""Loading a site from disk: the I/O edge in front of geofence.site."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import shapely

from geofence.errors import SiteError
from geofence.site import Site, site_from_mapping, site_from_toml
from loading.waymarks import bundled_waymarks

#: Compiled sites by file and content: a trial reads the same few site files for every
#: shift, and compiling one (its fence index) costs tens of milliseconds to seconds.
_COMPILED: dict[tuple[str, str], tuple[Site, dict[str, str]]] = {}
_COMPILED_MAX = 64


def load_site(path: str | Path) -> Site:
    """A site from a TOML site file, or from a GeoJSON file whose polygons are worksites.

    In a GeoJSON site each feature is a worksite unless its properties say
    `"kind": "exclusion"`; it has no rail lines, so no derived danger zones.

    A file already compiled with the same content (and the same content in every file
    it reads beside it) is not compiled again: sites are immutable, so the one
    compiled before is returned.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SiteError(str(path), f"cannot read the site file ({exc.strerror})") from None
    key = (str(path.resolve()), text)
    cached = _COMPILED.get(key)
    if cached is not None and all(
        _read_or_none(path.parent / name) == seen for name, seen in cached[1].items()
    ):
        return cached[0]
    beside: dict[str, str] = {}
    if path.suffix.lower() in (".geojson", ".json"):
        site = _geojson_site(path, text)
    else:

        def read_beside(name: str) -> str:
            beside[name] = (path.parent / name).read_text(encoding="utf-8")
            return beside[name]

        site = site_from_toml(text, waymarks=bundled_waymarks(), read_text=read_beside)
    if len(_COMPILED) >= _COMPILED_MAX:
        _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[key] = (site, beside)
    return site


def _read_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def site_id_for(path: str | Path) -> str:
    """The console's id for a site file: its name without suffix, in the id alphabet
    (lower-case letters, digits, `-` and `_`, at most 64)."""
    stem = re.sub(r"[^a-z0-9_-]+", "-", Path(path).stem.lower()).strip("-_")
    return (stem or "site")[:64]


def site_geojson(site: Site) -> dict:
    """A compiled site as a GeoJSON document the console keeps and draws.

    The safe zones are its worksites (named as the fences ingest decides on), the danger
    zones of open lines and the drawn exclusions are exclusions (danger zones marked
    `danger_zone`), and the tracks are drawn only (`open` false: their danger zones are
    already there, as computed with the site's own rules). Coordinates are ETRS89
    longitude, latitude. Two members of its own: the site's `name` (the one ingest
    stores with every fix) and the `centre` of its local frame, so that read back with
    `site_from_geojson` it has the same frame, and the same safe zones to a tenth of a
    millimetre: stored positions in site metres fall where they were decided.
    """

    def lonlat(x: np.ndarray, y: np.ndarray) -> list[list[float]]:
        lat, lon = site.frame.to_etrs89(x, y)
        return [[round(float(a), 9), round(float(b), 9)] for a, b in zip(lon, lat, strict=True)]

    def polygon(p: shapely.Polygon) -> list[list[list[float]]]:
        rings = [p.exterior, *p.interiors]
        return [lonlat(*np.asarray(r.coords).T) for r in rings]

    def area(fence, properties: dict) -> dict:
        parts = [fence.geometry] if isinstance(fence.geometry, shapely.Polygon) else list(
            fence.geometry.geoms)  # fmt: skip
        geometry = (
            {"type": "Polygon", "coordinates": polygon(parts[0])}
            if len(parts) == 1
            else {"type": "MultiPolygon", "coordinates": [polygon(p) for p in parts]}
        )
        return {"type": "Feature", "properties": {"name": fence.name, **properties},
                "geometry": geometry}  # fmt: skip

    features = [area(f, {}) for f in site.safe_zones]
    features += [area(f, {"kind": "exclusion", "danger_zone": True}) for f in site.danger_zones]
    features += [area(f, {"kind": "exclusion"}) for f in site.exclusions]
    features += [
        {"type": "Feature",
         "properties": {"name": line.name, "kind": "track", "open": False,
                        "line_speed_mph": float(line.line_speed_mph)},
         "geometry": {"type": "LineString",
                      "coordinates": lonlat(line.centreline_m[:, 0], line.centreline_m[:, 1])}}
        for line in site.lines
    ]  # fmt: skip
    frame = {"lat": site.frame.lat0_deg, "lon": site.frame.lon0_deg}
    return {"type": "FeatureCollection", "name": site.name, "centre": frame, "features": features}


def _geojson_site(path: Path, text: str) -> Site:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SiteError(str(path), f"is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return site_from_geojson(path.stem, document)


def site_from_geojson(name: str, document: object) -> Site:
    """A site from a GeoJSON document.

    Every feature is a worksite, unless its properties say `"kind": "exclusion"` (an
    area taken out) or `"kind": "track"`: a LineString centreline with `"open"` and
    `"line_speed_mph"`, whose danger zone (if open) is cut out of the safe zone. A
    `centre` member ({"lat", "lon"}, ETRS89) fixes the site's local frame.
    """
    if not isinstance(document, dict):
        raise SiteError(name, "a site is a GeoJSON object (a FeatureCollection)")
    features = document.get("features")
    if document.get("type") != "FeatureCollection" or not isinstance(features, list):
        features = [{"type": "Feature", "properties": {}, "geometry": document}]
    crs = document.get("crs")
    worksites, exclusions, lines = [], [], []
    for i, feature in enumerate(features):
        props = (feature.get("properties") or {}) if isinstance(feature, dict) else {}
        label = str(props.get("name") or f"feature {i}")
        if props.get("kind") == "track":
            geometry = feature.get("geometry") or {}
            line = {"name": label, "lonlat": geometry.get("coordinates"),
                    "open": bool(props.get("open", False))}  # fmt: skip
            if geometry.get("type") != "LineString":
                line["lonlat"] = None  # the site builder names the problem
            if "line_speed_mph" in props:
                line["line_speed_mph"] = props["line_speed_mph"]
            lines.append(line)
            continue
        collection = {"type": "FeatureCollection", "features": [feature]}
        if crs is not None:
            collection["crs"] = crs
        item = {"name": label, "geojson": collection}
        (exclusions if props.get("kind") == "exclusion" else worksites).append(item)
    site = {"name": name}
    if "centre" in document:  # the frame it was drawn in: its metres are the decisions'
        site["centre"] = document["centre"]
    data = {"site": site, "worksite": worksites, "exclusion": exclusions, "line": lines}
    return site_from_mapping(data, waymarks=bundled_waymarks())
