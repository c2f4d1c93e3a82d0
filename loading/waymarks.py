"""The bundled waymark subset (OGL v3, see loading/data/README.md), loaded once."""

from __future__ import annotations

from functools import cache
from importlib import resources

from geofence.elr import Waymarks


@cache
def bundled_waymarks() -> Waymarks:
    """Mileposts of the ELRs around London shipped with trackfence."""
    text = resources.files("loading").joinpath("data/waymarks-london.csv").read_text("utf-8")
    return Waymarks.from_csv_text(text)
