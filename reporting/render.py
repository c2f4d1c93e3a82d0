"""Rendering the report document: HTML (Jinja2), PDF (WeasyPrint from that HTML), Markdown.

All three read the same document (reporting.model), so they cannot disagree.
"""

from __future__ import annotations

import math
from pathlib import Path

import jinja2

from reporting.model import SECTIONS

TEMPLATES = Path(__file__).parent / "templates"
NOT_MEASURED = "not measured"


def fig(value: object, digits: int = 3) -> str:
    """A figure to `digits` significant digits; None -> "not measured"."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NOT_MEASURED
    if isinstance(value, int):
        return f"{value:,}"
    v = float(value)  # type: ignore[arg-type]
    if v == 0:
        return "0"
    if abs(v) >= 10**digits:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


#: Between a number and its unit: never broken across lines (a PDF cell once wrapped "%").
NBSP = "\u00a0"


def pct(value: object, digits: int = 2) -> str:
    """A share as a percentage: the one way the report prints shares."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NOT_MEASURED
    text = f"{100 * float(value):.{digits}f}"  # type: ignore[arg-type]
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text}{NBSP}%"


def _end(value: object, form) -> str:
    if value is None:
        return "unbounded"
    v = float(value)  # type: ignore[arg-type]
    if math.isinf(v):
        return "unbounded"
    return form(v)


def ci(interval: object) -> str:
    if not interval or all(v is None for v in interval):  # type: ignore[union-attr]
        return ""
    low, high = interval  # type: ignore[misc]
    return f"[{_end(low, fig)}, {_end(high, fig)}]"


def ci_pct(interval: object) -> str:
    if not interval or all(v is None for v in interval):  # type: ignore[union-attr]
        return ""
    low, high = interval  # type: ignore[misc]
    return f"[{_end(low, pct)}, {_end(high, pct)}]"


#: How a criterion's unit (trials.definition.CRITERIA) is printed after a number.
UNIT_SUFFIX = {"metres": " m", "seconds": " s", "per hour": " per device-hour"}


def measure(value: object, unit: str) -> str:
    """A criterion's figure in its unit: shares as percentages, others with their unit."""
    if unit.startswith("a share"):
        return pct(value)
    text = fig(value)
    if text == NOT_MEASURED:
        return text
    return text + UNIT_SUFFIX.get(unit, "").replace(" ", NBSP, 1)


def bounds(interval: object, unit: str) -> str:
    """A criterion's interval in its unit."""
    if not interval or all(v is None for v in interval):  # type: ignore[union-attr]
        return "none"
    if unit.startswith("a share"):
        return ci_pct(interval)
    text = ci(interval)
    return text + UNIT_SUFFIX.get(unit, "").replace(" ", NBSP, 1)


def status_class(status: str) -> str:
    return {
        "pass": "pass",
        "PASS": "pass",
        "fail": "fail",
        "FAIL": "fail",
        "found": "found",
        "not demonstrated": "found",
        "NOT DEMONSTRATED": "found",
    }.get(status, "na")


def _environment(*, autoescape: bool = True) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]) if autoescape else False,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,  # a missing figure is a bug, not a blank cell
    )
    env.filters.update(
        fig=fig,
        pct=pct,
        ci=ci,
        ci_pct=ci_pct,
        measure=measure,
        bounds=bounds,
        status_class=status_class,
    )
    return env


def render_html(doc: dict, plot_base: str = "") -> str:
    return _environment().get_template("report.html.j2").render(doc=doc, plot_base=plot_base)


def render_pdf(html: str, base_url: Path, path: Path) -> Path:
    """The HTML as an A4 PDF; plots are found relative to `base_url`."""
    import logging

    from weasyprint import HTML

    logging.getLogger("fontTools").setLevel(logging.WARNING)  # subsetting chatter
    HTML(string=html, base_url=str(base_url)).write_pdf(path)
    return path


def render_markdown(doc: dict, plot_base: str = "") -> str:
    """The same report as Markdown (for review in a merge request or a wiki), from its own
    template on the same engine and the same filters as the HTML."""
    env = _environment(autoescape=False)
    template = env.get_template("report.md.j2")
    return template.render(doc=doc, plot_base=plot_base, titles=dict(SECTIONS))
