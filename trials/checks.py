"""The NRA24-05 checks: the ways a geofence trial has been seen to go wrong.

Each check looks at the whole trial and gives, per supplier, a status and a
finding in plain words, with the figures behind it:

- fence alignment: the fence a supplier configured against the surveyed boundary;
- alarm timing: is the time to alert consistent for like movements;
- firmware: does a firmware version behave differently from another;
- configuration drift: devices whose configuration is not the approved one;
- breach log position: where the log says the wearer was at the alert, against truth;
- supplier agreement: suppliers alarming differently for the same movement.

Statuses: "pass", "fail" (a criterion is broken), "found" (a difference worth a
reader's attention, with no criterion to break), "not assessed" (no data: said
so, never scored as a pass).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import shapely

from geofence.site import Site
from trials.definition import Trial
from trials.figures import figures
from trials.rows import Rows

PASS, FAIL, FOUND, NOT_ASSESSED = "pass", "fail", "found", "not assessed"


@dataclass(frozen=True)
class SupplierFinding:
    supplier: str
    status: str
    finding: str
    figures: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    code: str
    title: str
    question: str
    results: tuple[SupplierFinding, ...]
    details: tuple[str, ...] = ()  # the individual cases behind the findings

    @property
    def status(self) -> str:
        statuses = {r.status for r in self.results}
        for s in (FAIL, FOUND, PASS):
            if s in statuses:
                return s
        return NOT_ASSESSED


def in_frame(geometry: shapely.Geometry, source: Site, target: Site) -> shapely.Geometry:
    """A geometry from one site's frame into another's, through ETRS89."""

    def move(xy: np.ndarray) -> np.ndarray:
        lat, lon = source.frame.to_etrs89(xy[:, 0], xy[:, 1])
        x, y = target.frame.from_etrs89(lat, lon)
        return np.column_stack([x, y])

    return shapely.transform(geometry, move)


def fence_offset_m(configured: Site, reference: Site) -> float:
    """Worst distance between the configured and surveyed safe-zone boundaries (Hausdorff)."""
    mine = shapely.union_all([z.geometry for z in configured.safe_zones])
    theirs = shapely.union_all([z.geometry for z in reference.safe_zones])
    mine = in_frame(mine, configured, reference)
    return float(shapely.hausdorff_distance(mine.boundary, theirs.boundary, densify=0.05))


def fence_alignment(trial: Trial, load: Callable[[object], Site], sites_used: list[str]) -> Check:
    limit = trial.criteria["fence_alignment_m"]
    results = []
    for s in trial.suppliers:
        worst, where = 0.0, []
        for ref_file in sites_used:
            configured = s.configured_sites.get(_path(ref_file))
            if configured is None:
                continue  # decided on the surveyed fence itself: offset 0 by construction
            offset = fence_offset_m(load(configured), load(ref_file))
            where.append(f"{load(ref_file).name}: {offset:.2f} m")
            worst = max(worst, offset)
        if not where:
            finding = "decided on the surveyed fences (no supplier-configured copy)"
        else:
            finding = "configured fence against the survey, worst offset " + "; ".join(where)
        results.append(
            SupplierFinding(
                s.key,
                PASS if worst <= limit else FAIL,
                finding + ("" if worst <= limit else f" (limit {limit:g} m)"),
                {"worst_offset_m": worst, "limit_m": limit},
            )
        )
    return Check(
        "NRA24-05/fence",
        "Fence alignment",
        "Does the fence each supplier configured match the surveyed safe-zone boundary?",
        tuple(results),
    )


def _path(value: object):
    from pathlib import Path

    return Path(str(value)).resolve()


def alarm_timing(trial: Trial, rows: Rows) -> Check:
    """Time to alert should be about as long for one crossing as for another like it."""
    limit = trial.criteria["alert_timing_spread_s"]
    ex = rows.excursions
    results = []
    for s in trial.suppliers:
        mine = ex.where(supplier=s.key) & ex.detected.astype(bool)
        tta = ex.time_to_alert_s[mine].astype(np.float64)
        speed = ex.speed_mps[mine].astype(np.float64)
        if tta.size < 3:
            results.append(SupplierFinding(s.key, NOT_ASSESSED, "fewer than 3 alerted excursions"))
            continue
        spread = float(np.percentile(tta, 95) - np.percentile(tta, 5))
        ok = np.isfinite(speed) & (speed > 0)
        varied = ok.sum() > 2 and np.ptp(speed[ok]) > 0 and np.ptp(tta[ok]) > 0
        corr = float(np.corrcoef(speed[ok], tta[ok])[0, 1]) if varied else math.nan
        text = (
            f"time to alert from {np.percentile(tta, 5):.1f} s to {np.percentile(tta, 95):.1f} s "
            f"(5th-95th percentile, spread {spread:.1f} s over {tta.size} alerts)"
        )
        if np.isfinite(corr):
            text += f"; correlation with crossing speed {corr:+.2f}"
        results.append(
            SupplierFinding(
                s.key,
                PASS if spread <= limit else FAIL,
                text + ("" if spread <= limit else f": inconsistent (limit {limit:g} s)"),
                {"spread_s": spread, "speed_correlation": corr, "alerts": int(tta.size)},
            )
        )
    return Check(
        "NRA24-05/timing",
        "Alarm timing consistency",
        "Is the time to alert consistent for like movements across the trial?",
        tuple(results),
    )


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    if not all(np.isfinite([*a, *b])):
        return True  # not measured: no evidence of a difference
    return a[0] <= b[1] and b[0] <= a[1]


def firmware_differences(trial: Trial, rows: Rows) -> Check:
    """Compare each firmware version of a supplier with its others; intervals must overlap."""
    results = []
    for s in trial.suppliers:
        versions = sorted(
            set(rows.device_shifts.firmware[rows.device_shifts.where(supplier=s.key)])
        )
        if len(versions) < 2:
            results.append(
                SupplierFinding(
                    s.key, NOT_ASSESSED, f"one firmware version ({', '.join(versions)})"
                )
            )
            continue
        by = {v: figures(rows, supplier=s.key, firmware=v) for v in versions}
        differences = []
        for i, a in enumerate(versions):
            for b in versions[i + 1 :]:
                fa, fb = by[a], by[b]
                if not _overlap(fa.r95_ci_m, fb.r95_ci_m):
                    differences.append(f"R95 {fa.r95_m:.2f} m on {a} vs {fb.r95_m:.2f} m on {b}")
                if not _overlap(fa.detection_ci, fb.detection_ci):
                    differences.append(
                        f"detection {fa.detection_rate:.1%} on {a} "
                        f"vs {fb.detection_rate:.1%} on {b}"
                    )
                if not _overlap(fa.time_to_alert_p95_ci_s, fb.time_to_alert_p95_ci_s):
                    differences.append(
                        f"time to alert p95 {fa.time_to_alert_p95_s:.1f} s on {a} "
                        f"vs {fb.time_to_alert_p95_s:.1f} s on {b}"
                    )
        figs = {
            v: {
                "r95_m": f.r95_m,
                "detection_rate": f.detection_rate,
                "time_to_alert_p95_s": f.time_to_alert_p95_s,
                "fixes": f.fixes,
                "excursions": f.excursions,
            }
            for v, f in by.items()
        }
        results.append(
            SupplierFinding(
                s.key,
                FOUND if differences else PASS,
                ("behaves differently between firmware versions: " + "; ".join(differences))
                if differences
                else f"no difference beyond chance between {', '.join(versions)}",
                {"versions": figs, "differences": differences},
            )
        )
    return Check(
        "NRA24-05/firmware",
        "Firmware version differences",
        "Does any firmware version behave differently from the others (95 % intervals apart)?",
        tuple(results),
    )


def configuration_drift(trial: Trial, rows: Rows, configurations: dict[str, dict]) -> Check:
    """Devices carrying a configuration other than the approved one, and when.

    `configurations` maps a configuration hash to the configuration itself.
    """
    ds = rows.device_shifts
    results = []
    for s in trial.suppliers:
        approved = s.approved_configuration
        if not approved:
            results.append(
                SupplierFinding(s.key, NOT_ASSESSED, "no approved configuration on file")
            )
            continue
        mine = ds.where(supplier=s.key)
        drifted = mine & (ds.configuration_hash != s.approved_hash)
        findings = []
        for device in sorted(set(ds.device[drifted])):
            rows_d = drifted & (ds.device == device)
            weeks = sorted({int(w) for w in ds.week[rows_d]})
            config = configurations[ds.configuration_hash[rows_d][0]]
            keys = sorted(
                k for k in set(config) | set(approved) if config.get(k) != approved.get(k)
            )
            changes = ", ".join(
                f"{k} {config.get(k)!r} (approved {approved.get(k)!r})" for k in keys
            )
            findings.append(f"{device} in weeks {_weeks(weeks)}: {changes}")
        rate = approved.get("fix_rate_hz")
        if isinstance(rate, int | float) and rate > 0:
            for device in sorted(set(ds.device[mine])):
                rows_d = mine & (ds.device == device)
                observed = float(np.median(ds.observed_rate_hz[rows_d].astype(np.float64)))
                if observed < 0.8 * rate:
                    findings.append(
                        f"{device} delivered {observed:.2f} fixes/s against the approved {rate:g}"
                    )
        results.append(
            SupplierFinding(
                s.key,
                FAIL if findings else PASS,
                "; ".join(findings) if findings else f"every device on {s.approved_hash}",
                {"approved_hash": s.approved_hash, "drift": findings},
            )
        )
    return Check(
        "NRA24-05/configuration",
        "Configuration drift",
        "Does every device carry the configuration on its acceptance certificate?",
        tuple(results),
    )


def _weeks(weeks: list[int]) -> str:
    if weeks == list(range(weeks[0], weeks[-1] + 1)) and len(weeks) > 2:
        return f"{weeks[0]}-{weeks[-1]}"
    return ", ".join(str(w) for w in weeks)


def breach_log_position(trial: Trial, rows: Rows) -> Check:
    """Does the breach log tell the truth? Two readings of each logged alert are checked.

    At the alert: where the log places the wearer against where they truly were when
    the device alerted (a late alert logs a stale position). At the logged time: the
    log's own (time, position) pair against the truth at that time (a device clock
    that is wrong makes the log place the wearer where they were not at that time).
    """
    limit = trial.criteria["breach_log_offset_p95_m"]
    al = rows.alerts
    results = []
    for s in trial.suppliers:
        mine = al.where(supplier=s.key)
        at_alert = al.log_offset_m[mine].astype(np.float64)
        at_time = al.log_time_offset_m[mine].astype(np.float64)
        if at_alert.size == 0:
            results.append(SupplierFinding(s.key, NOT_ASSESSED, "no breach alerts in the log"))
            continue
        p95_alert = float(np.percentile(at_alert, 95))
        p95_time = float(np.percentile(at_time, 95))
        worst = max(p95_alert, p95_time)
        text = (
            f"over {at_alert.size} alerts, the breach log places the wearer {p95_alert:.2f} m "
            f"(95th percentile) from where they were at the alert, and {p95_time:.2f} m from "
            "where they were at the time it logs"
        )
        if worst > limit:
            if p95_time > 1.5 * p95_alert:
                which = "wrong at the logged time (a clock error)"
            elif p95_alert > 1.5 * p95_time:
                which = "wrong at the alert (a stale position)"
            else:
                which = "the logged positions themselves are that far off"
            text += f": {which}, limit {limit:g} m"
        results.append(
            SupplierFinding(
                s.key,
                PASS if worst <= limit else FAIL,
                text,
                {
                    "at_alert_p50_m": float(np.percentile(at_alert, 50)),
                    "at_alert_p95_m": p95_alert,
                    "at_logged_time_p95_m": p95_time,
                    "worst_p95_m": worst,
                },
            )
        )
    return Check(
        "NRA24-05/breach-log",
        "Breach log position",
        "Does the breach log show where the wearer truly was, at the alert and at the time "
        "it gives?",
        tuple(results),
    )


def supplier_agreement(trial: Trial, rows: Rows) -> Check:
    """The same excursion (one person, one crossing) seen by every supplier's device."""
    ex = rows.excursions
    spread_limit = trial.criteria["alert_timing_spread_s"]
    limit = trial.criteria.get("supplier_agreement")
    keys = np.array(
        [f"{s}|{w}|{t}" for s, w, t in zip(ex.shift, ex.wearer, ex.start_ms, strict=True)]
    )
    suppliers = [s.key for s in trial.suppliers]
    movements = {}
    for i, k in enumerate(keys):
        movements.setdefault(k, {})[ex.supplier[i]] = i
    shared = [m for m in movements.values() if len(m) == len(suppliers)]
    agree = dict.fromkeys(suppliers, 0)
    examples = dict.fromkeys(suppliers, 0)
    disagreements = []
    for m in shared:
        hits = {s: bool(ex.detected[i]) for s, i in m.items()}
        majority = sum(hits.values()) * 2 >= len(hits)
        times = {s: float(ex.time_to_alert_s[i]) for s, i in m.items() if hits[s]}
        # no supplier is the reference: each is compared with the middle of them all
        middle = float(np.median(list(times.values()))) if times else math.nan
        for s in m:
            alike = s not in times or abs(times[s] - middle) <= spread_limit
            agree[s] += hits[s] == majority and alike
            examples[s] += 1
        spread = max(times.values()) - min(times.values()) if times else 0.0
        if len(set(hits.values())) > 1 or spread > spread_limit:
            i0 = next(iter(m.values()))
            said = ", ".join(
                f"{s} {times[s]:+.1f} s" if s in times else f"{s} missed" for s in sorted(m)
            )
            disagreements.append(
                f"{ex.repeat_key[i0].rsplit('/', 1)[0]} on {_date(ex, i0)}: time to alert {said}"
            )
    results = []
    for s in suppliers:
        if not examples[s]:
            results.append(SupplierFinding(s, NOT_ASSESSED, "no excursion seen by every supplier"))
            continue
        share = agree[s] / examples[s]
        status = FOUND if share < 1 else PASS
        if limit is not None:
            status = PASS if share >= limit else FAIL
        results.append(
            SupplierFinding(
                s,
                status,
                f"alarms like the others (detected as the majority did, within "
                f"{spread_limit:g} s of their middle time) on {agree[s]} of {examples[s]} "
                f"excursions every supplier saw ({share:.0%})",
                {"agreement": share, "shared_excursions": examples[s]},
            )
        )
    return Check(
        "NRA24-05/agreement",
        "Suppliers alarming differently",
        "Do the suppliers' devices alarm alike for the same movement of the same person?",
        tuple(results),
        tuple(disagreements),
    )


def _date(ex, i: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(int(ex.start_ms[i]) / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")
