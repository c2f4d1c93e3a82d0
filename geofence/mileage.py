"""Railway mileages: miles and yards, or miles and chains, as one number of yards.

GB railway locations are an ELR plus a mileage. Mileages are written several
ways and each is easy to misread by a factor of 22 (a chain is 22 yards):

* waymark style ``"12.0440"``: miles, a point, then *four digits of yards*
  (so ``12.0440`` is 12 miles 440 yards, not 12.044 miles); a few ELRs have
  posts before their zero, written ``"-0.0044"`` (44 yards before zero);
* ``"12m 440y"`` or ``"12 miles 440 yards"``;
* ``"12m 20ch"`` or ``"12 miles 20 chains"`` (80 chains to the mile);
* a table ``{miles = 12, yards = 440}`` or ``{miles = 12, chains = 20}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

YARDS_PER_MILE = 1760
YARDS_PER_CHAIN = 22
CHAINS_PER_MILE = 80
METRES_PER_YARD = 0.9144

_WAYMARK = re.compile(r"^\s*(-?)(\d+)\.(\d{4})\s*$")
_WORDS = re.compile(
    r"^\s*(?P<miles>\d+)\s*(?:m|mi|mile|miles)\b\s*"
    r"(?:(?P<count>\d+(?:\.\d+)?)\s*(?P<unit>y|yd|yds|yard|yards|ch|chain|chains)\b)?\s*$",
    re.IGNORECASE,
)


class MileageError(ValueError):
    """A mileage that cannot be read unambiguously."""


def parse_mileage_yd(value: object) -> float:
    """Read a mileage in any of the accepted forms; returns yards from the ELR's zero.

    Parameters
    ----------
    value : str or mapping
        "12.0440" (miles, a point, four digits of yards), "12m 440y", "12 miles 20
        chains", or a table {miles, yards} / {miles, chains}. A bare number is refused:
        it is ambiguous (12.044 miles, or 12 miles 44 yards?).

    Returns
    -------
    float
        Yards from the ELR's zero (negative for a post before it).

    Raises MileageError (a ValueError) for anything it cannot read unambiguously.

    >>> parse_mileage_yd("12.0440"), parse_mileage_yd("12m 20ch"), parse_mileage_yd("-0.0044")
    (21560.0, 21560.0, -44.0)
    >>> parse_mileage_yd({"miles": 1, "chains": 60}) == 1760 + 60 * 22
    True
    """
    if isinstance(value, Mapping):
        return _from_table(value)
    if isinstance(value, bool) or not isinstance(value, str):
        raise MileageError(
            f"mileage {value!r} must be text such as '12.0440', '12m 440y' or '12m 20ch', "
            "or a table {miles, yards} / {miles, chains}; a bare number is ambiguous"
        )
    match = _WAYMARK.match(value)
    if match:
        sign = -1.0 if match.group(1) else 1.0
        miles, yards = int(match.group(2)), int(match.group(3))
        return sign * _checked(miles, yards, 0, value)
    match = _WORDS.match(value)
    if match:
        miles = int(match.group("miles"))
        count = float(match.group("count") or 0)
        unit = (match.group("unit") or "y").lower()
        if unit.startswith("c"):
            return _checked(miles, 0, count, value)
        return _checked(miles, count, 0, value)
    raise MileageError(
        f"cannot read mileage {value!r}: use '12.0440' (miles.yards), '12m 440y' or '12m 20ch'"
    )


def _from_table(table: Mapping) -> float:
    unknown = set(table) - {"miles", "yards", "chains"}
    if unknown:
        raise MileageError(f"mileage table has unknown key(s) {sorted(unknown)}")
    if "yards" in table and "chains" in table:
        raise MileageError("mileage table gives both yards and chains; give one")
    miles = table.get("miles", 0)
    yards = table.get("yards", 0)
    chains = table.get("chains", 0)
    for name, number in (("miles", miles), ("yards", yards), ("chains", chains)):
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise MileageError(f"mileage {name} must be a number, got {number!r}")
    return _checked(miles, yards, chains, dict(table))


def _checked(miles: float, yards: float, chains: float, shown: object) -> float:
    if miles < 0 or yards < 0 or chains < 0:
        raise MileageError(f"mileage {shown!r} is negative")
    if yards >= YARDS_PER_MILE:
        raise MileageError(f"mileage {shown!r} has {yards} yards; a mile is 1760 yards")
    if chains >= CHAINS_PER_MILE:
        raise MileageError(f"mileage {shown!r} has {chains} chains; a mile is 80 chains")
    return miles * YARDS_PER_MILE + yards + chains * YARDS_PER_CHAIN


def format_mileage(yards: float) -> str:
    """Yards from zero as the railway writes it: ``12m 0440y``.

    >>> format_mileage(21560.0), format_mileage(-44)
    ('12m 0440y', '-0m 0044y')
    """
    sign = "-" if yards < 0 else ""
    miles, rest = divmod(round(abs(yards)), YARDS_PER_MILE)
    return f"{sign}{miles}m {rest:04d}y"
