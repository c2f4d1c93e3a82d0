"""Sites from TOML and GeoJSON: safe zone = worksites − danger zones − exclusions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely

from geofence.errors import SiteError
from geofence.site import site_from_toml
from loading.site_files import load_site
from loading.waymarks import bundled_waymarks

SITE = """
[site]
name = "test site"
[[line]]
name = "Up Fast"
elr = "ECM1"
from = "1m 1320y"
to = "2m 1320y"
offset_m = 3.4
line_speed_mph = 125
[[worksite]]
name = "possession"
elr = "ECM1"
from = "2m 0000y"
to = "2m 0880y"
left_m = 5.0
right_m = 4.5
"""


def build(text: str):
    return site_from_toml(text, waymarks=bundled_waymarks())


def test_the_open_line_danger_zone_is_cut_out_of_the_worksite(example_site):
    site = example_site
    assert [f.name for f in site.danger_zones] == ["danger zone of Up Fast"]
    worksite = site.worksites[0].geometry
    safe = site.safe_zones[0].geometry
    danger = site.danger_zones[0].geometry
    assert safe.area < worksite.area
    assert shapely.intersection(safe, danger).area < 1e-6
    # worksite: 804.7 m of line (2m 0000y to 2m 0880y), 9.5 m wide; the danger zone
    # (2.79 m either side of a line 3.4 m left) takes 2.79 - (3.4 - 5.0) ... of the left side
    assert worksite.area == pytest.approx(804.7 * 9.5, rel=0.01)
    expected_cut = 804.7 * (5.0 - (3.4 - 2.79))
    assert worksite.area - safe.area == pytest.approx(expected_cut, rel=0.01)


def test_a_fix_in_the_six_foot_danger_zone_is_outside_and_named(example_site):
    site = example_site
    line = shapely.LineString(site.lines[0].centreline_m)
    middle = shapely.line_interpolate_point(line, 0.5, normalized=True)
    ahead = shapely.line_interpolate_point(line, 0.5 + 1e-3, normalized=True)
    t = np.array([ahead.x - middle.x, ahead.y - middle.y])
    left = np.array([-t[1], t[0]]) / np.linalg.norm(t)
    lateral = np.array([-3.0, 0.0, 1.0, 3.4])  # cess, blocked line, six-foot (in danger), open line
    xy = np.array([middle.x, middle.y]) + lateral[:, None] * left
    ev = site.evaluate(xy[:, 0], xy[:, 1])
    assert ev.inside.tolist() == [True, True, False, False]
    assert ev.danger_zone.tolist() == [-1, -1, 0, 0]
    # 1.0 m left of the blocked line is 3.4 - 1.0 - 2.79 = -0.39 m: just inside the danger zone
    assert ev.distance_m[2] == pytest.approx(-(2.79 - 2.4), abs=0.01)


def test_latlon_fixes_with_bad_rows_are_marked_invalid_and_the_rest_decided(example_site):
    site = example_site
    lat, lon = site.frame.to_etrs89(np.array([0.0, 0.0]), np.array([0.0, 0.0]))
    ev = site.evaluate_latlon(
        np.array([lat[0], np.nan, 91.0, lat[1]]), np.array([lon[0], lon[0], lon[0], lon[1]])
    )
    assert ev.valid.tolist() == [True, False, False, True]
    assert np.isnan(ev.distance_m[1:3]).all() and np.isfinite(ev.distance_m[[0, 3]]).all()


def test_every_problem_in_a_site_file_is_listed_at_once():
    text = SITE.replace('elr = "ECM1"\nfrom = "2m 0000y"', 'elr = "NOPE"\nfrom = "2m 0000y"')
    text = text.replace('to = "2m 1320y"', 'to = "900m 0000y"')
    text += '\n[[exclusion]]\nname = "pit"\ngeojson = "{\\"type\\": \\"Polygon\\"}"\n'
    with pytest.raises(SiteError) as err:
        build(text)
    message = str(err.value)
    assert "worksite[0].elr: unknown ELR 'NOPE'" in message
    assert "line[0].elr: mileage 900m 0000y is outside ELR ECM1's waymarks" in message
    assert "3 problem(s)" in message or "2 problem(s)" in message


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (("line_speed_mph = 125", ""), "line[0].line_speed_mph: an open line needs its line speed"),
        (("left_m = 5.0", "left_m = 5.0\nwidht_m = 3"), "worksite[0].widht_m: unknown field"),
        (('from = "2m 0000y"', 'from = "2.44"'), "worksite[0].from: cannot read mileage '2.44'"),
        (("[site]", "[sight]"), "[site]: needs a table [site]"),
    ],
)
def test_bad_fields_are_named(change, complaint):
    with pytest.raises(SiteError, match=None) as err:
        build(SITE.replace(*change, 1))
    assert complaint in str(err.value)


def square(lon0, lat0, d=0.0004):
    return [[lon0, lat0], [lon0 + d, lat0], [lon0 + d, lat0 + d], [lon0, lat0 + d], [lon0, lat0]]


def test_geojson_site_with_an_exclusion(tmp_path):
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"name": "yard"},
                "geometry": {"type": "Polygon", "coordinates": [square(-0.11, 51.55)]},
            },
            {
                "type": "Feature",
                "properties": {"name": "pit", "kind": "exclusion"},
                "geometry": {"type": "Polygon", "coordinates": [square(-0.1099, 51.5501, 0.0001)]},
            },
        ],
    }
    path = tmp_path / "yard.geojson"
    path.write_text(json.dumps(doc))
    site = load_site(path)
    assert site.fence_names == ["yard"]
    lat = np.array([51.55005, 51.55015])  # beside the pit, and inside it
    lon = np.array([-0.10995, -0.10985])
    assert site.evaluate_latlon(lat, lon).inside.tolist() == [True, False]


@pytest.mark.parametrize(
    ("geometry", "crs", "complaint"),
    [
        (
            {
                "type": "Polygon",
                "coordinates": [
                    [
                        [-0.11, 51.55],
                        [-0.109, 51.551],
                        [-0.109, 51.55],
                        [-0.11, 51.551],
                        [-0.11, 51.55],
                    ]
                ],
            },
            None,
            "not a valid polygon (Self-intersection",
        ),
        (
            {"type": "Polygon", "coordinates": [square(-0.11, 51.55)]},
            {"type": "name", "properties": {"name": "EPSG:3857"}},
            "unknown CRS",
        ),
        (
            {"type": "LineString", "coordinates": [[-0.11, 51.55], [-0.1, 51.56]]},
            None,
            "is not an area",
        ),
    ],
)
def test_bad_geojson_fences_are_refused_with_the_reason(tmp_path, geometry, crs, complaint):
    doc = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {"name": "bad one"}, "geometry": geometry}],
    }
    if crs:
        doc["crs"] = crs
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps(doc))
    with pytest.raises(SiteError) as err:
        load_site(path)
    assert complaint in str(err.value) and "bad one" in str(err.value)


def test_bng_geojson_goes_through_ostn15(tmp_path):
    e, n = 531300.0, 186300.0
    ring = [[e, n], [e + 50, n], [e + 50, n + 50], [e, n + 50], [e, n]]
    doc = {
        "type": "Polygon",
        "coordinates": [ring],
        "crs": {"type": "name", "properties": {"name": "EPSG:27700"}},
    }
    text = (
        '[site]\nname = "bng"\ncentre = {lat = 51.57, lon = -0.1}\n'
        f'[[worksite]]\nname = "box"\ngeojson = {json.dumps(json.dumps(doc))}\n'
    )
    site = build(text)
    x, y = site.frame.from_bng(np.array([e + 25, e - 1]), np.array([n + 25, n + 25]))
    ev = site.evaluate(x, y)
    assert ev.inside.tolist() == [True, False]
    assert ev.distance_m[1] == pytest.approx(-1.0, abs=1e-3)
