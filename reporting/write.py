"""Writing a trial's reports: the comparative summary and one per supplier, in four forms.

DIR/report/summary.html  .pdf  .json  .md
DIR/report/<supplier>.html  .pdf  .json  .md
DIR/report/plots/*.png
"""

from __future__ import annotations

import json
from pathlib import Path

from reporting.model import build_document
from reporting.plots import draw_all
from reporting.render import render_html, render_markdown, render_pdf
from trials.collect import Worn
from trials.score import TrialResult

FORMATS = ("html", "pdf", "json", "md")


def write_reports(
    result: TrialResult,
    worn: list[Worn],
    out: Path,
    *,
    formats: tuple[str, ...] = FORMATS,
) -> list[Path]:
    """Every report of a scored trial; returns the files written."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown report format(s) {', '.join(sorted(unknown))}")
    folder = out / "report"
    plots = folder / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    everyone = [s.key for s in result.trial.suppliers]
    reports = [("summary", None, everyone)] + [(s, s, [s]) for s in everyone]
    for name, supplier, keys in reports:
        drawn = draw_all(result, worn, plots, keys, prefix=f"{name}-")
        doc = build_document(result, supplier=supplier, plots=drawn)
        if "json" in formats:
            path = folder / f"{name}.json"
            path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
            written.append(path)
        html = render_html(doc, plot_base="plots/")
        if "html" in formats:
            path = folder / f"{name}.html"
            path.write_text(html)
            written.append(path)
        if "pdf" in formats:
            written.append(render_pdf(html, folder, folder / f"{name}.pdf"))
        if "md" in formats:
            path = folder / f"{name}.md"
            path.write_text(render_markdown(doc, plot_base="plots/"))
            written.append(path)
    return written
