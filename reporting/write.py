"""Writing a trial's reports: the comparative summary and one per supplier, in four forms.

DIR/report/summary.html  .pdf  .json  .md
DIR/report/<supplier>.html  .pdf  .json  .md
DIR/report/plots/*.png
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
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
    workers: int | None = None,
) -> list[Path]:
    """Every report of a scored trial; returns the files written.

    The reports are independent (each draws its own plots), so they are written side
    by side in `workers` processes (default: one per core, at most one per report).
    The processes are forked, so the scored trial is shared rather than copied.
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown report format(s) {', '.join(sorted(unknown))}")
    folder = out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    everyone = [s.key for s in result.trial.suppliers]
    reports = [("summary", None, everyone)] + [(s, s, [s]) for s in everyone]
    workers = min(len(reports), os.cpu_count() or 1) if workers is None else workers
    global _SHARED
    _SHARED = (result, worn, folder, formats)
    try:
        if workers > 1 and "fork" in mp.get_all_start_methods():
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
                parts = list(pool.map(_write_one, reports))
        else:
            parts = [_write_one(r) for r in reports]
    finally:
        _SHARED = None
    return [path for part in parts for path in part]


#: What the forked report writers share: (result, worn, folder, formats).
_SHARED: tuple | None = None


def _write_one(report: tuple[str, str | None, list[str]]) -> list[Path]:
    """One report (the summary or a supplier's) in every format asked for."""
    assert _SHARED is not None
    result, worn, folder, formats = _SHARED
    name, supplier, keys = report
    written: list[Path] = []
    drawn = draw_all(result, worn, folder / "plots", keys, prefix=f"{name}-")
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
