"""Rule Book distances for GB mainline track, as named, documented, overridable numbers.

The Rule Book (GERT8000-HB1) measures a position of safety from the *nearest
rail*; fences are drawn from the *track centreline*. Confusing the two puts
the fence about 0.8 m in the wrong place, which is the size of the accuracy the
trial asks for. So every distance here is stated from the rail, and converted to
the centreline in exactly one place (`danger_half_width_m`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

#: Standard gauge, 1435 mm between the running edges (gauge faces) of the rails.
STANDARD_GAUGE_M = 1.435
#: Gauge face to track centreline: half the gauge.
GAUGE_FACE_FROM_CENTRELINE_M = STANDARD_GAUGE_M / 2  # 0.7175 m
#: Outer edge of the rail head from the centreline (gauge face + ~72.5 mm head width).
RAIL_OUTER_EDGE_FROM_CENTRELINE_M = 0.79
#: Position of safety where the permissible line speed is up to 100 mph (GERT8000-HB1).
POSITION_OF_SAFETY_UP_TO_100_MPH_M = 1.25
#: Position of safety where the permissible line speed is over 100 mph.
POSITION_OF_SAFETY_OVER_100_MPH_M = 2.0
#: "On or near the line": on a line or within 3 m of one (NRA24-05 kept geofence
#: devices more than 3 m from an open line until their behaviour was proven).
NEAR_THE_LINE_M = 3.0
#: Line speed above which the larger position of safety applies.
HIGH_SPEED_THRESHOLD_MPH = 100.0
#: Typical plain-line track centres (for drawing sites; real sites state their own).
TYPICAL_TRACK_CENTRES_M = 3.4


class Clearance(StrEnum):
    """Which Rule Book distance makes an open line's danger zone."""

    POSITION_OF_SAFETY = "position_of_safety"  # 1.25 m or 2 m from the rail, by line speed
    NEAR_THE_LINE = "near_the_line"  # 3 m from the rail


@dataclass(frozen=True, slots=True)
class Rules:
    """The distances a site uses. Defaults are the Rule Book's; a site may override any.

    Every distance is metres and measured from the nearest rail, except the rail's own
    `rail_outer_edge_from_centreline_m`; line speeds are mph.

    >>> Rules().danger_half_width_m(125), Rules().danger_half_width_m(75)
    (2.79, 2.04)
    """

    rail_outer_edge_from_centreline_m: float = RAIL_OUTER_EDGE_FROM_CENTRELINE_M
    position_of_safety_up_to_100_mph_m: float = POSITION_OF_SAFETY_UP_TO_100_MPH_M
    position_of_safety_over_100_mph_m: float = POSITION_OF_SAFETY_OVER_100_MPH_M
    near_the_line_m: float = NEAR_THE_LINE_M
    high_speed_threshold_mph: float = HIGH_SPEED_THRESHOLD_MPH
    clearance: Clearance = Clearance.POSITION_OF_SAFETY

    def clearance_from_rail_m(self, line_speed_mph: float) -> float:
        """Metres from the nearest rail that an open line's danger zone extends to.

        >>> near = Rules(clearance=Clearance.NEAR_THE_LINE)
        >>> Rules().clearance_from_rail_m(125), near.clearance_from_rail_m(50)
        (2.0, 3.0)
        """
        if self.clearance is Clearance.NEAR_THE_LINE:
            return self.near_the_line_m
        if line_speed_mph > self.high_speed_threshold_mph:
            return self.position_of_safety_over_100_mph_m
        return self.position_of_safety_up_to_100_mph_m

    def danger_half_width_m(self, line_speed_mph: float) -> float:
        """Half-width of an open line's danger zone, measured from the track centreline.

        1.25 m from the rail is about 2.04 m from the centreline; 2 m is about 2.79 m;
        3 m is about 3.79 m.
        """
        return self.rail_outer_edge_from_centreline_m + self.clearance_from_rail_m(line_speed_mph)

    def with_overrides(self, **overrides: object) -> Rules:
        """A copy with some distances replaced (a site's own survey or standard).

        KeyError names an unknown rule; `clearance` is read as a Clearance.

        >>> rules = Rules().with_overrides(near_the_line_m=3.5, clearance="near_the_line")
        >>> rules.danger_half_width_m(90)
        4.29
        """
        unknown = set(overrides) - set(self.__dataclass_fields__)
        if unknown:
            raise KeyError(f"unknown rule(s): {', '.join(sorted(unknown))}")
        if "clearance" in overrides:
            overrides["clearance"] = Clearance(overrides["clearance"])
        return replace(self, **overrides)  # type: ignore[arg-type]
