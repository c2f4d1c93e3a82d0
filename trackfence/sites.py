"""Loading a site from disk: the I/O edge in front of geofence.site."""

from __future__ import annotations

import json
from pathlib import Path

from geofence.errors import SiteError
from geofence.site import Site, site_from_mapping, site_from_toml
from trackfence.waymarks import bundled_waymarks


def load_site(path: str | Path) -> Site:
    """A site from a TOML site file, or from a GeoJSON file whose polygons are worksites.

    In a GeoJSON site each feature is a worksite unless its properties say
    `"kind": "exclusion"`; it has no rail lines, so no derived danger zones.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SiteError(str(path), f"cannot read the site file ({exc.strerror})") from None
    if path.suffix.lower() in (".geojson", ".json"):
        return _geojson_site(path, text)

    def read_beside(name: str) -> str:
        return (path.parent / name).read_text(encoding="utf-8")

    return site_from_toml(text, waymarks=bundled_waymarks(), read_text=read_beside)


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
    `"line_speed_mph"`, whose danger zone (if open) is cut out of the safe zone.
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
    data = {"site": site, "worksite": worksites, "exclusion": exclusions, "line": lines}
    return site_from_mapping(data, waymarks=bundled_waymarks())
