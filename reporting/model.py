"""The trial report as data: one document, from which HTML, PDF and Markdown are drawn.

The JSON file *is* this document, so every figure a person reads in the HTML is
in the JSON for a machine, under the same name. The sections follow the standard
trial report structure (DESIGN.md): 1 executive summary … 12 recommendations,
then the provenance appendix.

Schema: `trackfence-trial-report`, version REPORT_SCHEMA_VERSION. A figure that
was not measured is null (and printed "not measured"), never 0.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import asdict
from typing import Any

from reporting.narrative import PRIORITY_WORDS, findings, summary
from trials.definition import CRITERIA
from trials.design import Design
from trials.figures import Figures
from trials.manifest import Manifest, ShiftRecord
from trials.score import TrialResult
from trials.verdict import METHOD

REPORT_SCHEMA = "trackfence-trial-report"
REPORT_SCHEMA_VERSION = 2  # 2: verdicts on bounds, fresh-alert detection, true_crossings

SECTIONS = (
    ("executive_summary", "1 Executive summary"),
    ("overview", "2 Trial overview and objectives"),
    ("solutions", "3 Solutions under trial"),
    ("methodology", "4 Methodology"),
    ("accuracy", "5 Results: accuracy"),
    ("alerting", "6 Results: alerting and functionality"),
    ("by_scenario", "7 Results by scenario"),
    ("availability", "8 Availability and reliability"),
    ("feedback", "9 User feedback"),
    ("issues", "10 Issues found"),
    ("readiness", "11 Readiness (TRL) for product acceptance"),
    ("recommendations", "12 Recommendations and next steps"),
)

_TRUTH_USE = (
    "Every fix is compared with the truth at the time the fix claims, so a late clock is "
    "charged. True excursions out of the safe zone are labelled on the truth by the "
    "surveyed fence; their depth is measured exactly, however far the wearer went."
)


def _ground_truth(shifts: tuple[ShiftRecord, ...]) -> str:
    """Where the truth came from: the simulation, or each wearer's reference receiver."""
    accuracy = sorted({r.accuracy_m for s in shifts for r in (s.references or {}).values()})
    if not accuracy:
        return "Each worker's true path is simulated at 10 Hz. " + _TRUTH_USE
    stated = f"{accuracy[0]:g} m"
    if len(accuracy) > 1:
        stated = f"{accuracy[0]:g} to {accuracy[-1]:g} m"
    return (
        "Each wearer carried a reference receiver (an RTK pole or survey-grade receiver) "
        f"with the devices; its track, of stated accuracy {stated}, was resampled at 10 Hz "
        "as the truth. " + _TRUTH_USE
    )


def _scenarios(trial, shifts: tuple[ShiftRecord, ...]) -> list[dict]:
    """The scenarios worked: as the simulation defines them, or as the shift log names them."""
    if trial.scenarios:
        return [
            {
                "key": sc.key,
                "name": sc.scenario.name,
                "repeats": sc.repeats,
                "night": sc.scenario.night,
                "duration_s": sc.scenario.duration_s,
                "workers": len(sc.scenario.workers),
                "structures": [st.kind for st in sc.scenario.structures],
            }
            for sc in trial.scenarios
        ]
    out: dict[str, dict] = {}
    for s in shifts:
        row = out.setdefault(
            s.scenario,
            {"key": s.scenario, "name": s.scenario_name, "repeats": 0, "night": False,
             "duration_s": 0.0, "workers": 0, "structures": []},
        )  # fmt: skip
        row["repeats"] += 1
        row["night"] = row["night"] or s.night
        row["duration_s"] = max(row["duration_s"], s.duration_s)
        row["workers"] = max(row["workers"], len({d.wearer for d in s.devices}))
    return list(out.values())


def live_hops_text(live: dict | None) -> str:
    """The latency benchmark's figures for the live path, said with where they come from."""
    if not live:
        return "No measurement of the live path's hops is on record (`make bench` makes one)."
    return (
        f"The live path, as the latency benchmark measured it ({live.get('benchmark', '?')}, "
        f"{live.get('measured', '?')}): device to ingest to alert back at the device, "
        f"p50 {live.get('alert_round_trip_p50_ms', float('nan')):.1f} ms and p99 "
        f"{live.get('alert_round_trip_p99_ms', float('nan')):.1f} ms at "
        f"{live.get('fixes_per_s', float('nan')):,.0f} fixes/s from {live.get('devices', '?')} "
        f"devices, on a real Mosquitto (a bare two-hop echo: p50 "
        f"{live.get('bare_echo_p50_ms', float('nan')):.1f} ms)."
    )


def metrics_text(trial, replayed: bool, live: dict | None = None) -> list[str]:
    """The definitions, in the words the report's reader needs to trust its figures."""
    sc = trial.scoring
    hops = (
        "The shifts were replayed faster than real time, so the platform's own hops "
        "(receive to decision, decision to alert published) were not measured in this run, "
        "and none is counted in time to alert: it runs from the true crossing to the moment "
        "the device sent the fix that raised the alert (the simulated uplink included). A "
        "live deployment adds its hops. " + live_hops_text(live)
        if replayed
        else "Time to alert runs from the true crossing to the alert's publication: the "
        "device's uplink plus the platform's measured hops."
    )
    return [
        "Horizontal error: CEP50 (median), R95 (95th percentile), maximum, 2DRMS, bias "
        "(mean east/north error, ISO 5725 trueness) and precision (spread about the bias); "
        "empirical percentiles.",
        f"Detection by a fresh alert: a true crossing is detected only by a breach alert that "
        f"starts between {sc.alert_lead_s:g} s before the crossing and the wearer's return "
        f"to the safe zone. The {sc.alert_lead_s:g} s allow for the uncertainty circle, which "
        "rightly reaches the edge a moment before the wearer does; an alarm that began "
        "earlier was raised for something else. An alarm already on as that window opens "
        "cannot tell the wearer of this crossing: the crossing is saturated, not detected. "
        "Time to alert is the detecting alert's start minus the true crossing, never "
        "floored; its limit judges the late side, and alerts before the crossing are "
        "counted separately as early. Overshoot (how far outside the wearer truly was at "
        "the alert) and depth are measured on the truth.",
        hops,
        f"False alarms are counted by number and by time: alert starts while the wearer "
        f"was truly safe (outside every detection window), per device-hour; and time in "
        f"breach while truly safe, outside each crossing's window and the "
        f"{sc.clear_allowance_s:g} s a true alarm may take to clear after the wearer is "
        "back (the clearing dwell and margin). An alarm that runs into a crossing but "
        "began before its window is false until the window opens.",
        "Availability: distinct fixes received against those the approved configuration "
        "(the acceptance certificate) promises, not the rate a device was really set to; "
        "silences beyond the lost-protection time count as time without protection.",
        f"Every criterion is judged on its confidence bounds: each end of an interval is a "
        f"one-sided {sc.confidence:.0%} bound. A criterion passes when the unfavourable "
        "bound meets the limit, fails when even the favourable bound misses it, and is not "
        "demonstrated otherwise. The method for each criterion is in the table below.",
    ]


def clean(value: Any) -> Any:
    """JSON-ready: NaN and infinities to None, tuples to lists, numpy scalars to Python."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _figures(f: Figures) -> dict:
    return clean(f.as_dict())


def build_document(
    result: TrialResult, *, supplier: str | None = None, plots: dict[str, str] | None = None
) -> dict:
    """The comparative report (supplier=None) or one supplier's report.

    Each section is built by its own step below, in the order the report reads; a
    supplier's own report carries its own figures and, of the others, at most
    anonymous aggregates.
    """
    trial = result.trial
    everyone = [s.key for s in trial.suppliers]
    keys = everyone if supplier is None else [supplier]
    doc = {
        "schema": REPORT_SCHEMA,
        "schema_version": REPORT_SCHEMA_VERSION,
        "kind": "comparative" if supplier is None else "supplier",
        "supplier": supplier,
        "title": trial.name if supplier is None else f"{trial.name}: {supplier}",
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "trial": _trial(result, keys),
        "sections": {
            "executive_summary": _executive_summary(result, keys),
            "overview": _overview(result),
            "solutions": [_solution(result, s) for s in keys],
            "methodology": _methodology(result, keys),
            "accuracy": {s: _figures(result.overall[s]) for s in keys},
            "alerting": _alerting(result, keys),
            **_slices(result, keys),
            "availability": {
                "figures": {s: _figures(result.overall[s]) for s in keys},
                "weekly": {s: clean(result.weekly[s]) for s in keys},
            },
            "feedback": _feedback(result, keys),
            "issues": _issues(result, supplier, keys),
            "readiness": {
                s: {"trl": result.readiness[s].trl, "rationale": result.readiness[s].rationale}
                for s in keys
            },
            "recommendations": _recommendations(result, keys),
        },
        "plots": plots or {},
        "appendix": {"provenance": _provenance(result.manifest)},
    }
    return clean(doc)


def _trial(result: TrialResult, keys: list[str]) -> dict:
    """The trial at a glance: its dates, and what was worn and scored for these suppliers."""
    trial = result.trial
    ds = result.rows.device_shifts
    return {
        "name": trial.name,
        "sponsor": trial.sponsor,
        "description": trial.description.strip(),
        "start_date": trial.start_date.isoformat(),
        "end_date": trial.end_date.isoformat(),
        "weeks": trial.weeks,
        "shifts": len(result.manifest.shifts),
        "device_shifts": int(sum(ds.where(supplier=s).sum() for s in keys)),
        "device_hours": float(sum(result.overall[s].device_hours for s in keys)),
        "fixes_scored": int(sum(result.overall[s].fixes for s in keys)),
        # per supplier: every person wears one device of each supplier, so the same
        # crossing is seen once by each supplier and is not added up across them
        "true_crossings": {s: result.overall[s].excursions for s in keys},
    }


def _executive_summary(result: TrialResult, keys: list[str]) -> dict:
    """Section 1: each supplier's verdict, rank and readiness, and the summary in words."""
    rank = {r.supplier: r for r in result.ranking}
    executive = []
    for s in keys:
        vs = result.verdicts[s]
        executive.append(
            {
                "supplier": s,
                "organisation": result.trial.supplier(s).organisation,
                "technology": result.trial.supplier(s).technology,
                "overall": result.overall_verdict(s),
                "criteria_passed": rank[s].passed,
                "criteria_judged": rank[s].judged,
                "criteria_failed": [v.what for v in vs if v.status == "fail"],
                "criteria_not_demonstrated": [v.what for v in vs if v.status == "not demonstrated"],
                "criteria_not_measured": [v.what for v in vs if v.status == "not measured"],
                "checks_failed": [
                    c.title for c in result.checks if c.for_supplier(s).status == "fail"
                ],
                "rank": rank[s].position,
                "rank_tied": rank[s].tied,
                "trl": result.readiness[s].trl,
                "crossings": result.overall[s].excursions,
                "narrative": summary(result, s),
            }
        )
    return {
        "suppliers": executive,
        "ranking": [clean(asdict(r)) for r in result.ranking if r.supplier in keys],
        "verdicts": {
            s: [clean(asdict(v)) | {"unit": CRITERIA[v.criterion][2]} for v in result.verdicts[s]]
            for s in keys
        },
    }


def _overview(result: TrialResult) -> dict:
    """Section 2: the objectives, and the schedule as it was worked, shift by shift."""
    return {
        "objectives": list(result.trial.objectives),
        "schedule": [
            {
                "date": s.date,
                "week": s.week,
                "scenario": s.scenario,
                "repeat": s.repeat + 1,
                "night": s.night,
                "devices": len(s.devices),
                "fixes_stored": s.fixes_stored,
                "dead_letters": s.dead_letters,
            }
            for s in result.manifest.shifts
        ],
    }


def _methodology(result: TrialResult, keys: list[str]) -> dict:
    """Section 4: the sites, scenarios and settings; the truth, the definitions and the
    criteria; whether the trial could show them; and the path each fix took."""
    trial, manifest = result.trial, result.manifest
    replayed = any(not s.hops_measured for s in manifest.shifts)
    return {
        "sites": manifest.site_files,
        "scenarios": _scenarios(trial, manifest.shifts),
        "decisions": asdict(trial.decisions),
        "scoring": asdict(trial.scoring),
        "ground_truth": _ground_truth(manifest.shifts),
        "metrics": metrics_text(trial, replayed, manifest.live_hops),
        "replayed": replayed,
        "live_hops": manifest.live_hops if replayed else None,
        "live_hops_note": live_hops_text(manifest.live_hops),
        "criteria": [
            {
                "criterion": k,
                "what": CRITERIA[k][0],
                "direction": "at most" if CRITERIA[k][1] == "max" else "at least",
                "limit": v,
                "unit": CRITERIA[k][2],
                "method": METHOD[k],
            }
            for k, v in trial.criteria.items()
        ],
        "design": _design(result.design, keys),
        "pipeline": _pipeline(manifest),
    }


def _pipeline(manifest: Manifest) -> str:
    """The path every fix took to be decided: live on track, over MQTT on the replay's
    clock, or through ingest's pipeline in-process."""
    if manifest.is_live:
        return (
            "The devices were worn on track; every fix went device -> MQTT -> ingest "
            "(decode, geofence, breach state machine, alert) -> store "
            f"({manifest.db}), live, during the shifts."
        )
    if manifest.broker:
        return (
            f"Every fix went device -> MQTT ({manifest.broker}) -> ingest "
            "(decode, geofence, breach state machine, alert) -> store "
            f"({manifest.db}), on the replay's clock."
        )
    return (
        "Every message the simulated devices sent went, in the order sent and "
        "at the time it arrived on the replay's clock, through ingest's pipeline "
        "in-process (decode, time sanity, geofence, breach state machine, alerts) "
        f"-> store ({manifest.db}): the live service's code, without the "
        "broker between (`--via-mqtt` runs the same shifts through one, with the "
        "same decisions)."
    )


def _alerting(result: TrialResult, keys: list[str]) -> dict:
    """Section 6: the alerting figures, how alike repeats alarmed, and the devices' own
    alarms beside trackfence's decision (where they report them)."""
    return {
        "figures": {s: _figures(result.overall[s]) for s in keys},
        "repeat_consistency": {s: clean(result.repeat_consistency[s]) for s in keys},
        "own_alarms": {s: clean(result.own_alarms[s].as_dict()) for s in keys},
    }


def _slices(result: TrialResult, keys: list[str]) -> dict:
    """Section 7: the figures by scenario, by firmware, and by both."""
    return {
        "by_scenario": [
            {"supplier": s, "scenario": sc, **_figures(f)}
            for (s, sc), f in result.by_scenario.items()
            if s in keys
        ],
        "by_firmware": [
            {"supplier": s, "firmware": fw, **_figures(f)}
            for (s, fw), f in result.by_firmware.items()
            if s in keys
        ],
        "by_scenario_firmware": [
            {"supplier": s, "scenario": sc, "firmware": fw, **_figures(f)}
            for (s, sc, fw), f in result.by_scenario_firmware.items()
            if s in keys
        ],
    }


def _issues(result: TrialResult, supplier: str | None, keys: list[str]) -> dict:
    """Section 10: each NRA24-05 check (a supplier's report sees only its own findings and
    cases), and the missing data."""
    everyone = [s.key for s in result.trial.suppliers]
    return {
        "checks": [
            {
                "code": c.code,
                "title": c.title,
                "question": c.question,
                "status": c.status if supplier is None else c.for_supplier(supplier).status,
                "results": [_finding(r, supplier) for r in c.results if r.supplier in keys],
                "details": [
                    _case(d, supplier)
                    for d in c.details
                    if supplier is None or supplier in d["outcomes"]
                ],
            }
            for c in result.checks
        ],
        "missing_data": _own(result.missing, supplier, everyone),
    }


def _recommendations(result: TrialResult, keys: list[str]) -> list[dict]:
    """Section 12: what to do, most dangerous first; with no finding, proceed."""
    return [
        {
            "supplier": f.supplier,
            "priority": f.priority,
            "impact": PRIORITY_WORDS[f.priority],
            "subject": f.subject,
            "text": f.text,
        }
        for f in findings(result, keys, result.design)
    ] or [{"supplier": None, "priority": 3, "impact": PRIORITY_WORDS[3],
           "subject": "all criteria", "text": "No findings: proceed to acceptance."}]  # fmt: skip


def _provenance(manifest: Manifest) -> dict:
    """The appendix: where the report came from (inputs' hashes, software, command, store)."""
    return {
        "inputs": manifest.inputs,
        "software": manifest.software,
        "run_command": manifest.command,
        "broker": manifest.broker,
        "db": manifest.db,
        "run_seconds": manifest.seconds,
    }


def _solution(result: TrialResult, key: str) -> dict:
    s = result.trial.supplier(key)
    ds = result.rows.device_shifts
    mine = ds.where(supplier=key)
    devices = []
    for d in s.devices:
        rows = mine & (ds.device == f"{key}/{d.id}")
        devices.append(
            {
                "device": f"{key}/{d.id}",
                "firmware": sorted(set(ds.firmware[rows])) or [d.firmware],
                "configuration_hashes": sorted(set(ds.configuration_hash[rows])),
                "shifts_worn": int(rows.sum()),
            }
        )
    return {
        "supplier": key,
        "organisation": s.organisation,
        "technology": s.technology,
        "hardware": s.hardware,
        "output_format": s.simulated.format,
        "approved_configuration": s.approved_configuration,
        "approved_hash": s.approved_hash,
        "devices": devices,
    }


def _case(case: dict, supplier: str | None) -> str:
    """One crossing the suppliers alarmed differently on, as this report's reader may see it:
    the comparative report names every supplier; a supplier's own names only itself."""
    outcomes = case["outcomes"]
    if supplier is None:
        said = ", ".join(f"{s} {t}" for s, t in sorted(outcomes.items()))
        return f"{case['crossing']}: time to alert {said}"
    others = [s for s in outcomes if s != supplier]
    in_time = sum(case["in_time"][s] for s in others)
    return (
        f"{case['crossing']}: time to alert {supplier} {outcomes[supplier]}; "
        f"{in_time} of {len(others)} other supplier(s) alarmed in time"
    )


def _own(lines: list[str], supplier: str | None, everyone: list[str]) -> list[str]:
    """The lines a supplier's report may carry: none that names another supplier."""
    if supplier is None:
        return list(lines)
    others = "|".join(re.escape(s) for s in everyone if s != supplier)
    if not others:
        return list(lines)
    pattern = re.compile(rf"\b({others})\b")
    return [line for line in lines if not pattern.search(line)]


def _finding(r, supplier: str | None) -> dict:
    """A check's finding for this report: in a supplier's own, shares with others unnamed."""
    found = clean(asdict(r))
    if supplier is not None and isinstance(found["figures"].get("pairwise"), dict):
        found["figures"]["pairwise"] = sorted(found["figures"]["pairwise"].values())
    return found


def _feedback(result: TrialResult, keys: list[str]) -> dict:
    fb = result.feedback
    if fb is None:
        return {"given": False}
    return {
        "given": True,
        "respondents": fb.respondents,
        "by_supplier": {s: [asdict(q) for q in fb.by_supplier.get(s, [])] for s in keys},
        "comments": {s: fb.comments.get(s, []) for s in keys},
        "problems": _own(
            fb.problems,
            keys[0] if len(keys) == 1 else None,
            [s.key for s in result.trial.suppliers],
        ),
    }


def _design(design: Design, keys: list[str]) -> dict:
    return {
        "confidence": design.confidence,
        "needs": [
            {
                "criterion": n.criterion,
                "what": n.what,
                "needs": n.needs,
                "unit": n.unit,
                "needed": n.needed,
                "provided": {s: n.provided[s] for s in keys},
                "demonstrable": {s: n.demonstrable[s] for s in keys},
            }
            for n in design.needs
        ],
        "crossings_by_scenario": {s: design.provisions[s].crossings_by_scenario for s in keys},
        "untested_scenarios": {s: design.untested_scenarios.get(s, []) for s in keys},
        "shortfalls": design.shortfalls(keys),
    }
