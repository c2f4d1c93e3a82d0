"""Mileages and ELRs, on the real waymarks."""

from __future__ import annotations

import numpy as np
import pytest

from geofence.errors import LocationError
from geofence.mileage import MileageError, format_mileage, parse_mileage_yd
from geofence.rules import Clearance, Rules
from loading.waymarks import bundled_waymarks


@pytest.mark.parametrize(
    ("text", "yards"),
    [
        ("12.0440", 12 * 1760 + 440),
        ("0.0044", 44),
        ("-0.0044", -44),
        ("12m 440y", 12 * 1760 + 440),
        ("12 miles 440 yards", 12 * 1760 + 440),
        ("12m 20ch", 12 * 1760 + 440),
        ("2m 40ch", 2 * 1760 + 880),
        ({"miles": 3, "chains": 10}, 3 * 1760 + 220),
        ({"miles": 3, "yards": 5}, 3 * 1760 + 5),
    ],
)
def test_mileage_forms(text, yards):
    assert parse_mileage_yd(text) == yards


@pytest.mark.parametrize(
    "bad",
    ["12.44", "12m 1800y", "12m 80ch", 12.044, "twelve", {"miles": 1, "yards": 1, "chains": 1}],
)
def test_ambiguous_or_impossible_mileages_are_refused(bad):
    with pytest.raises(MileageError):
        parse_mileage_yd(bad)


def test_format_mileage_round_trips():
    assert format_mileage(parse_mileage_yd("12.0440")) == "12m 0440y"


def test_a_milepost_mileage_lands_on_the_post():
    posts = bundled_waymarks().elr("ECM1")
    e, n = posts.locate_bng(posts.mileage_yd[5])
    assert e[0] == pytest.approx(posts.easting_m[5]) and n[0] == pytest.approx(posts.northing_m[5])


def test_between_posts_is_in_proportion():
    waymarks = bundled_waymarks()
    e0, n0 = waymarks.locate_bng("ECM1", "2m 0000y")
    e1, n1 = waymarks.locate_bng("ECM1", "2m 0440y")
    em, nm = waymarks.locate_bng("ECM1", "2m 0220y")
    assert em == pytest.approx((e0 + e1) / 2) and nm == pytest.approx((n0 + n1) / 2)


def test_unknown_elr_and_mileage_off_the_posts_name_the_problem():
    waymarks = bundled_waymarks()
    with pytest.raises(LocationError, match="unknown ELR 'XXX9'"):
        waymarks.locate_bng("XXX9", "1m 0000y")
    with pytest.raises(LocationError, match=r"outside ELR ECM1's waymarks \(0m 0000y to"):
        waymarks.locate_bng("ECM1", "900m 0000y")


def test_route_follows_the_direction_given():
    posts = bundled_waymarks().elr("ECM1")
    up = posts.route_bng(parse_mileage_yd("2m 0000y"), parse_mileage_yd("3m 0000y"))
    down = posts.route_bng(parse_mileage_yd("3m 0000y"), parse_mileage_yd("2m 0000y"))
    np.testing.assert_allclose(up, down[::-1])
    lo, hi = parse_mileage_yd("2m 0000y"), parse_mileage_yd("3m 0000y")
    between = ((posts.mileage_yd > lo) & (posts.mileage_yd < hi)).sum()
    assert len(up) == between + 2  # both ends plus every post between (real data has gaps)


def test_rule_book_distances_from_the_centreline():
    rules = Rules()
    assert rules.danger_half_width_m(75) == pytest.approx(2.04)
    assert rules.danger_half_width_m(100) == pytest.approx(2.04)
    assert rules.danger_half_width_m(125) == pytest.approx(2.79)
    near = rules.with_overrides(clearance="near_the_line")
    assert near.clearance is Clearance.NEAR_THE_LINE
    assert near.danger_half_width_m(40) == pytest.approx(3.79)
    with pytest.raises(KeyError, match="unknown rule"):
        rules.with_overrides(position_of_saftey_m=1.0)
