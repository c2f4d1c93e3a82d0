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


def pct(value: object) -> str:
    if value is None:
        return NOT_MEASURED
    return f"{100 * float(value):.2f} %".replace(".00 %", " %")  # type: ignore[arg-type]


def ci(interval: object) -> str:
    if not interval or any(v is None for v in interval):  # type: ignore[union-attr]
        return ""
    low, high = interval  # type: ignore[misc]
    return f"[{fig(low)}, {fig(high)}]"


def ci_pct(interval: object) -> str:
    if not interval or any(v is None for v in interval):  # type: ignore[union-attr]
        return ""
    low, high = interval  # type: ignore[misc]
    return f"[{pct(low)}, {pct(high)}]"


def status_class(status: str) -> str:
    return {"pass": "pass", "fail": "fail", "found": "found"}.get(status, "na")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,  # a missing figure is a bug, not a blank cell
    )
    env.filters.update(fig=fig, pct=pct, ci=ci, ci_pct=ci_pct, status_class=status_class)
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


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows), ""]


def render_markdown(doc: dict, plot_base: str = "") -> str:
    """The same report as Markdown (for review in a merge request or a wiki)."""
    s = doc["sections"]
    t = doc["trial"]
    out = [
        f"# {doc['title']}",
        "",
        f"{t['sponsor']} · {t['start_date']} to {t['end_date']} ({t['weeks']} weeks) · "
        f"{t['shifts']} shifts · {t['fixes_scored']:,} fixes scored · "
        f"{t['true_excursions']} true excursions · {t['device_hours']:.1f} device-hours",
        "",
    ]
    titles = dict(SECTIONS)
    out += [f"## {titles['executive_summary']}", ""]
    out += _table(
        ["Supplier", "Verdict", "Criteria met", "Rank", "TRL", "Failed"],
        [
            [
                e["supplier"],
                f"**{e['overall']}**",
                f"{e['criteria_passed']} of {e['criteria_judged']}",
                ("=" if e["rank_tied"] else "") + str(e["rank"]),
                str(e["trl"]),
                ", ".join(e["criteria_failed"] + e["checks_failed"]) or "-",
            ]
            for e in s["executive_summary"]["suppliers"]
        ],
    )
    for sup, vs in s["executive_summary"]["verdicts"].items():
        out += [f"### {sup} against the acceptance criteria", ""]
        out += _table(
            ["Criterion", "Limit", "Measured", "95 % interval", "Result"],
            [
                [
                    v["what"],
                    f"{'at most' if v['direction'] == 'max' else 'at least'} {fig(v['limit'])}",
                    fig(v["value"]),
                    ci(v["interval"]),
                    v["status"] + (" (marginal)" if v["marginal"] else ""),
                ]
                for v in vs
            ],
        )
    out += [f"## {titles['overview']}", "", t["description"], ""]
    out += [f"{i + 1}. {o}" for i, o in enumerate(s["overview"]["objectives"])] + [""]
    out += _table(
        ["Date", "Week", "Scenario", "Repeat", "Shift", "Fixes stored", "Dead letters"],
        [
            [
                r["date"],
                str(r["week"]),
                r["scenario"],
                str(r["repeat"]),
                "night" if r["night"] else "day",
                f"{r['fixes_stored']:,}",
                str(r["dead_letters"]),
            ]
            for r in s["overview"]["schedule"]
        ],
    )
    out += [f"## {titles['solutions']}", ""]
    for sol in s["solutions"]:
        out += [
            f"### {sol['supplier']}: {sol['organisation']}",
            "",
            f"{sol['technology']} · {sol['hardware']} · reports as {sol['output_format']} · "
            f"approved configuration `{sol['approved_hash']}`",
            "",
        ]
        out += _table(
            ["Device", "Firmware", "Configuration hash(es)", "Shifts"],
            [
                [
                    d["device"],
                    ", ".join(d["firmware"]),
                    ", ".join(f"`{h}`" for h in d["configuration_hashes"]),
                    str(d["shifts_worn"]),
                ]
                for d in sol["devices"]
            ],
        )
    m = s["methodology"]
    d = m["decisions"]
    out += [f"## {titles['methodology']}", "", m["pipeline"], ""]
    out += [
        f"Decisions: breach when the uncertainty circle (accuracy × {fig(d['accuracy_factor'])}) "
        f"reaches the edge; clear when back inside by {fig(d['clearing_margin_m'])} m for "
        f"{fig(d['clearing_dwell_s'])} s; lost after {fig(d['lost_after_s'])} s of silence.",
        "",
        m["ground_truth"],
        "",
    ]
    out += [m["metrics"], ""]
    out += _table(
        ["Criterion", "Bound", "Key"],
        [
            [c["what"], f"{c['direction']} {fig(c['limit'])} ({c['unit']})", c["criterion"]]
            for c in m["criteria"]
        ],
    )
    out += [f"## {titles['accuracy']}", ""]
    out += _table(
        ["Supplier", "Fixes", "CEP50 (m)", "R95 (m)", "Max (m)", "2DRMS (m)", "Bias E/N (m)"],
        [
            [
                sup,
                f"{f['fixes']:,}",
                f"{fig(f['cep50_m'])} {ci(f['cep50_ci_m'])}",
                f"{fig(f['r95_m'])} {ci(f['r95_ci_m'])}",
                fig(f["max_error_m"]),
                fig(f["drms2_m"]),
                f"{fig(f['bias_east_m'])} / {fig(f['bias_north_m'])}",
            ]
            for sup, f in s["accuracy"].items()
        ],
    )
    out += _plot(doc, "error_cdf", "Horizontal error CDF", plot_base)
    out += _plot(doc, "site_map", "Site map of the busiest shift", plot_base)
    out += [f"## {titles['alerting']}", ""]
    out += _table(
        ["Supplier", "Detected", "Rate", "Time to alert p50/p95 (s)", "False alerts", "In breach"],
        [
            [
                sup,
                f"{f['detected']} of {f['excursions']}",
                f"{pct(f['detection_rate'])} {ci_pct(f['detection_ci'])}",
                f"{fig(f['time_to_alert_p50_s'])} / {fig(f['time_to_alert_p95_s'])}",
                f"{f['false_alerts']} ({fig(f['false_alerts_per_device_hour'])}/device-hour)",
                f"{pct(f['breach_share'])} ({pct(f['false_alarm_share'])} truly safe)",
            ]
            for sup, f in s["alerting"]["figures"].items()
        ],
    )
    out += _plot(doc, "time_to_alert", "Time to alert", plot_base)
    out += _plot(doc, "breach_timeline", "Breach timeline", plot_base)
    out += [f"## {titles['by_scenario']}", ""]
    out += _table(
        ["Supplier", "Scenario", "R95 (m)", "Detected", "Time to alert p95 (s)", "Availability"],
        [
            [
                r["supplier"],
                r["scenario"],
                fig(r["r95_m"]),
                f"{r['detected']} of {r['excursions']}",
                fig(r["time_to_alert_p95_s"]),
                pct(r["availability"]),
            ]
            for r in s["by_scenario"]
        ],
    )
    out += [f"## {titles['availability']}", ""]
    out += _table(
        ["Supplier", "Availability", "Gaps", "Without protection"],
        [
            [
                sup,
                f"{pct(f['availability'])} {ci_pct(f['availability_ci'])}",
                str(f["gaps"]),
                f"{fig(f['unprotected_s'])} s",
            ]
            for sup, f in s["availability"]["figures"].items()
        ],
    )
    out += _plot(doc, "availability", "Availability by week", plot_base)
    out += [f"## {titles['feedback']}", ""]
    fb = s["feedback"]
    if fb["given"]:
        rows = [
            [sup, q["question"], str(q["responses"]), f"{q['mean_score']:.1f}"]
            for sup, qs in fb["by_supplier"].items()
            for q in qs
        ]
        out += _table(["Supplier", "Question", "Responses", "Mean (1-5)"], rows)
    else:
        out += ["No track-worker survey was given.", ""]
    out += [f"## {titles['issues']}", ""]
    out += _table(
        ["Check", "Supplier", "Result", "Finding"],
        [
            [c["title"], r["supplier"], r["status"], r["finding"]]
            for c in s["issues"]["checks"]
            for r in c["results"]
        ],
    )
    if s["issues"]["missing_data"]:
        out += ["Missing data:", ""] + [f"- {m}" for m in s["issues"]["missing_data"]] + [""]
    out += [f"## {titles['readiness']}", ""]
    out += _table(
        ["Supplier", "TRL", "Why"],
        [[sup, str(r["trl"]), r["rationale"]] for sup, r in s["readiness"].items()],
    )
    out += [f"## {titles['recommendations']}", ""]
    out += [
        f"{i + 1}. " + (f"**{r['supplier']}**: " if r["supplier"] else "") + r["text"]
        for i, r in enumerate(s["recommendations"])
    ] + [""]
    p = doc["appendix"]["provenance"]
    out += [
        "## Appendix: provenance",
        "",
        f"Software: {p['software']}. Broker: {p['broker']}. Store: `{p['db']}`.",
        "",
        f"Reproduce: `{p['run_command']}`",
        "",
    ]
    out += _table(["Input", "SHA-256"], [[f"`{k}`", f"`{v}`"] for k, v in p["inputs"].items()])
    return "\n".join(out)


def _plot(doc: dict, key: str, title: str, plot_base: str) -> list[str]:
    name = doc["plots"].get(key)
    return [f"![{title}]({plot_base}{name})", ""] if name else []
