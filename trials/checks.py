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
reader's attention, with no criterion to break), "not demonstrated" (a check
judged on a criterion whose bounds reach across its limit), "not assessed" (no
data: said so, never scored as a pass).

A check is known by its code (FENCE, TIMING, …: "NRA24-05/fence", the key the
report's JSON carries), never by where it stands in a list: `find_check` finds
one, and `Check.for_supplier` one supplier's finding in it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import shapely
from scipy import stats

from geofence.site import Site
from trials.definition import Trial
from trials.figures import Figures, OwnAlarmFigures, figures
from trials.intervals import clopper_pearson
from trials.rows import Rows
from trials.verdict import NOT_DEMONSTRATED, outcome

PASS, FAIL, FOUND, NOT_ASSESSED = "pass", "fail", "found", "not assessed"

#: Each check's code: how the report, its JSON and every reader of a check name it.
FENCE = "NRA24-05/fence"
TIMING = "NRA24-05/timing"
FIRMWARE = "NRA24-05/firmware"
CONFIGURATION = "NRA24-05/configuration"
BREACH_LOG = "NRA24-05/breach-log"
AGREEMENT = "NRA24-05/agreement"
OWN_ALARM = "NRA24-05/own-alarm"

#: A check that judges what a criterion judges: a failure of both is one finding, said
#: under the criterion (when the trial has that criterion).
CRITERION_OF_CHECK = {
    FENCE: "fence_alignment_m",
    TIMING: "alert_timing_spread_s",
    BREACH_LOG: "breach_log_offset_p95_m",
    AGREEMENT: "supplier_agreement",
}


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
    #: the individual cases behind the findings: {"crossing": words, "outcomes": {supplier:
    #: words}, "in_time": {supplier: bool}}; a report shows each reader only what is theirs
    details: tuple[dict, ...] = ()

    @property
    def status(self) -> str:
        statuses = {r.status for r in self.results}
        for s in (FAIL, FOUND, NOT_DEMONSTRATED, PASS):
            if s in statuses:
                return s
        return NOT_ASSESSED

    def for_supplier(self, supplier: str) -> SupplierFinding:
        """This check's finding for one supplier (every check has one for each)."""
        return next(r for r in self.results if r.supplier == supplier)


def find_check(checks: Iterable[Check], code: str) -> Check:
    """The check with this code (FENCE, AGREEMENT, …); KeyError if the trial ran none."""
    for check in checks:
        if check.code == code:
            return check
    raise KeyError(f"no check {code!r}")


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
            # an offset that cannot be measured (an empty fence) is never read as aligned
            worst = offset if not math.isfinite(offset) else max(worst, offset)
            if not math.isfinite(offset):
                break
        if not where:
            finding = "decided on the surveyed fences (no supplier-configured copy)"
        else:
            finding = "configured fence against the survey, worst offset " + "; ".join(where)
        status = NOT_ASSESSED if not math.isfinite(worst) else PASS if worst <= limit else FAIL
        results.append(
            SupplierFinding(
                s.key,
                status,
                finding + (f" (limit {limit:g} m)" if status == FAIL else ""),
                {"worst_offset_m": worst, "limit_m": limit},
            )
        )
    return Check(
        FENCE,
        "Fence alignment",
        "Does the fence each supplier configured match the surveyed safe-zone boundary?",
        tuple(results),
    )


def _path(value: object):
    from pathlib import Path

    return Path(str(value)).resolve()


def alarm_timing(trial: Trial, rows: Rows, overall: dict[str, Figures]) -> Check:
    """Time to alert should be about as long for one crossing as for another like it.

    Judged on the bounds of the spread (p95 - p5) of time to alert, as the criterion
    is: a spread from a handful of alerts cannot be shown small, and is not.
    """
    limit = trial.criteria["alert_timing_spread_s"]
    confidence = trial.scoring.confidence
    ex = rows.excursions
    results = []
    for s in trial.suppliers:
        f = overall[s.key]
        mine = ex.where(supplier=s.key) & ex.detected.astype(bool)
        tta = ex.time_to_alert_s[mine].astype(np.float64)
        speed = ex.speed_mps[mine].astype(np.float64)
        if tta.size < 2:
            results.append(
                SupplierFinding(
                    s.key, NOT_ASSESSED, f"{tta.size} crossing(s) detected by a fresh alert"
                )
            )
            continue
        ok = np.isfinite(speed) & (speed > 0)
        varied = ok.sum() > 2 and np.ptp(speed[ok]) > 0 and np.ptp(tta[ok]) > 0
        corr = float(np.corrcoef(speed[ok], tta[ok])[0, 1]) if varied else math.nan
        status = outcome(f.alert_timing_spread_s, f.alert_timing_spread_ci_s, limit, "max")
        text = (
            f"time to alert from {_pct(tta, 5):.1f} s to {_pct(tta, 95):.1f} s "
            f"(5th to 95th percentile) over {tta.size} fresh alerts: a spread of "
            f"{f.alert_timing_spread_s:.1f} s, {_bounds(f.alert_timing_spread_ci_s, 's')} "
            f"at {confidence:.0%}"
        )
        if np.isfinite(corr):
            text += f"; correlation with crossing speed {corr:+.2f}"
        text += {
            PASS: f": consistent (limit {limit:g} s)",
            FAIL: f": inconsistent (limit {limit:g} s)",
        }.get(status, f": too few alerts to show it within {limit:g} s")
        results.append(
            SupplierFinding(
                s.key,
                status,
                text,
                {
                    "spread_s": f.alert_timing_spread_s,
                    "spread_ci_s": f.alert_timing_spread_ci_s,
                    "speed_correlation": corr,
                    "alerts": int(tta.size),
                },
            )
        )
    return Check(
        TIMING,
        "Alarm timing consistency",
        "Is the time to alert consistent for like movements across the trial?",
        tuple(results),
    )


def _pct(values: np.ndarray, q: float) -> float:
    values = values[np.isfinite(values)]
    return float(np.percentile(values, q)) if values.size else math.nan


def _bounds(interval: tuple[float, float], unit: str) -> str:
    low, high = interval
    if not (math.isfinite(low) or math.isfinite(high)):
        return "not bounded"
    lo = f"{low:.2f}" if math.isfinite(low) else "unbounded"
    hi = f"{high:.2f}" if math.isfinite(high) else "unbounded"
    return f"bounds {lo} to {hi} {unit}"


def _shift_r95(rows: Rows, mask: np.ndarray) -> np.ndarray:
    """The R95 of each chosen device-shift: the unit a firmware comparison resamples."""
    ends = np.cumsum(rows.fixes_per_worn)
    starts = ends - rows.fixes_per_worn
    errors = rows.fixes.error_m
    return np.array(
        [np.percentile(errors[starts[i] : ends[i]], 95) for i in np.flatnonzero(mask)
         if ends[i] > starts[i]]
    )  # fmt: skip


def firmware_differences(trial: Trial, rows: Rows) -> Check:
    """Compare each firmware version of a supplier with each other, by tests of difference.

    Overlapping intervals are a weak test (two 95 % intervals can overlap while the
    difference is clear), so each pair is tested directly at the trial's confidence:
    time to alert by the Mann-Whitney U test over crossings, detection by Fisher's
    exact test, accuracy by the Mann-Whitney U test over device-shifts' R95 (the fixes
    of one shift are not independent; the shifts are); each at a third of the error
    rate, so a pair of versions is called different at the trial's confidence.
    """
    # three tests a pair of versions: each at a third of the error rate (Bonferroni), so
    # that a pair found different is different at the trial's confidence
    alpha = (1 - trial.scoring.confidence) / 3
    ds, ex = rows.device_shifts, rows.excursions
    results = []
    for s in trial.suppliers:
        versions = sorted(set(ds.firmware[ds.where(supplier=s.key)]))
        if len(versions) < 2:
            results.append(
                SupplierFinding(
                    s.key, NOT_ASSESSED, f"one firmware version ({', '.join(versions)})"
                )
            )
            continue
        by = {v: figures(rows, supplier=s.key, firmware=v, intervals=False) for v in versions}
        differences = []
        for i, a in enumerate(versions):
            for b in versions[i + 1 :]:
                fa, fb = by[a], by[b]
                ea = ex.where(supplier=s.key, firmware=a)
                eb = ex.where(supplier=s.key, firmware=b)
                ta = ex.time_to_alert_s[ea & ex.detected.astype(bool)].astype(np.float64)
                tb = ex.time_to_alert_s[eb & ex.detected.astype(bool)].astype(np.float64)
                if ta.size and tb.size and stats.mannwhitneyu(ta, tb).pvalue < alpha:
                    differences.append(
                        f"time to alert p95 {fa.time_to_alert_p95_s:.1f} s on {a} "
                        f"vs {fb.time_to_alert_p95_s:.1f} s on {b} "
                        f"(median {np.median(ta):.1f} s vs {np.median(tb):.1f} s)"
                    )
                table = [[fa.detected, fa.excursions - fa.detected],
                         [fb.detected, fb.excursions - fb.detected]]  # fmt: skip
                if fa.excursions and fb.excursions and stats.fisher_exact(table)[1] < alpha:
                    differences.append(
                        f"detection {fa.detection_rate:.1%} on {a} "
                        f"vs {fb.detection_rate:.1%} on {b}"
                    )
                ra = _shift_r95(rows, ds.where(supplier=s.key, firmware=a))
                rb = _shift_r95(rows, ds.where(supplier=s.key, firmware=b))
                if ra.size and rb.size and stats.mannwhitneyu(ra, rb).pvalue < alpha:
                    differences.append(f"R95 {fa.r95_m:.2f} m on {a} vs {fb.r95_m:.2f} m on {b}")
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
        FIRMWARE,
        "Firmware version differences",
        "Does any firmware version behave differently from another (a test of difference "
        f"at {trial.scoring.confidence:.0%})?",
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
                    owed = int(ds.expected[rows_d].sum())
                    got = int(ds.received[rows_d].sum())
                    own = int(ds.expected_configured[rows_d].sum())
                    findings.append(
                        f"{device} delivered {observed:.2f} fixes/s against the approved "
                        f"{rate:g}: availability {got / owed:.1%} against its certificate "
                        f"({min(got, own) / own:.1%} against the rate it was set to)"
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
        CONFIGURATION,
        "Configuration drift",
        "Does every device carry the configuration on its acceptance certificate?",
        tuple(results),
    )


def _weeks(weeks: list[int]) -> str:
    if weeks == list(range(weeks[0], weeks[-1] + 1)) and len(weeks) > 2:
        return f"{weeks[0]}-{weeks[-1]}"
    return ", ".join(str(w) for w in weeks)


def breach_log_position(trial: Trial, rows: Rows, overall: dict[str, Figures]) -> Check:
    """Does the breach log tell the truth? Two readings of each logged alert are checked.

    At the alert: where the log places the wearer against where they truly were when
    the device alerted (a late alert logs a stale position). At the logged time: the
    log's own (time, position) pair against the truth at that time (a device clock
    that is wrong makes the log place the wearer where they were not at that time).
    Judged, as the criterion is, on the bounds of the worse reading's p95.
    """
    limit = trial.criteria["breach_log_offset_p95_m"]
    al = rows.alerts
    results = []
    for s in trial.suppliers:
        f = overall[s.key]
        mine = al.where(supplier=s.key)
        at_alert = al.log_offset_m[mine].astype(np.float64)
        at_time = al.log_offset_at_logged_time_m[mine].astype(np.float64)
        if at_alert.size == 0:
            results.append(SupplierFinding(s.key, NOT_ASSESSED, "no breach alerts in the log"))
            continue
        p95_alert = _pct(at_alert, 95)
        p95_time = _pct(at_time, 95)
        status = outcome(f.breach_log_offset_p95_m, f.breach_log_offset_p95_ci_m, limit, "max")
        text = (
            f"over {at_alert.size} alerts, the breach log places the wearer {p95_alert:.2f} m "
            f"(95th percentile) from where they were at the alert, and {p95_time:.2f} m from "
            f"where they were at the time it logs ({_bounds(f.breach_log_offset_p95_ci_m, 'm')})"
        )
        if status != PASS:
            if p95_time > 1.5 * p95_alert:
                which = "wrong at the logged time (a clock error)"
            elif p95_alert > 1.5 * p95_time:
                which = "wrong at the alert (a stale position)"
            else:
                which = "the logged positions themselves are that far off"
            if status == FAIL:
                text += f": {which}, limit {limit:g} m"
            else:
                text += f": not shown within {limit:g} m; if it is off, {which}"
        results.append(
            SupplierFinding(
                s.key,
                status,
                text,
                {
                    "at_alert_p50_m": _pct(at_alert, 50),
                    "at_alert_p95_m": p95_alert,
                    "at_logged_time_p95_m": p95_time,
                    "worst_p95_m": f.breach_log_offset_p95_m,
                    "worst_p95_ci_m": f.breach_log_offset_p95_ci_m,
                },
            )
        )
    return Check(
        BREACH_LOG,
        "Breach log position",
        "Does the breach log show where the wearer truly was, at the alert and at the time "
        "it gives?",
        tuple(results),
    )


def supplier_agreement(trial: Trial, rows: Rows) -> Check:
    """The same crossing (one person, one excursion) as each supplier's device saw it.

    Judged against the truth and pairwise, never against the suppliers' median
    (with three suppliers the median is one of them, and the one right supplier
    would be called the odd one out). On each crossing every supplier saw, a device
    *alarmed in time* when a fresh alert came no later than the time-to-alert
    limit after the true crossing. Two suppliers disagree on a crossing when one
    alarmed in time and the other did not, or both alarmed and their alerts are
    further apart than the timing-spread limit. A supplier is at fault on a
    crossing when another alarmed in time and it did not: that, not being unlike
    the others, is what would leave a worker unwarned.
    """
    suppliers = [s.key for s in trial.suppliers]
    tally = _tally_agreement(trial, rows, suppliers)
    return Check(
        AGREEMENT,
        "Suppliers alarming differently",
        "On the same crossing by the same person, does any supplier's device fail to alarm "
        "in time where another's did?",
        tuple(_agreement_finding(trial, tally, s) for s in suppliers),
        tuple(tally.disagreements),
    )


@dataclass
class _Agreement:
    """The crossings every supplier saw, tallied: each pair alike, each supplier at fault,
    and each crossing they alarmed differently on (in words)."""

    shared: int
    alike: dict[tuple[str, str], int]
    at_fault: dict[str, int]
    disagreements: list[dict]


def _tally_agreement(trial: Trial, rows: Rows, suppliers: list[str]) -> _Agreement:
    """Go through every crossing all the suppliers saw: which pairs alarmed alike on it,
    and which suppliers failed to alarm in time where another did."""
    ex = rows.excursions
    in_time_limit = trial.criteria["time_to_alert_p95_s"]
    spread_limit = trial.criteria["alert_timing_spread_s"]
    crossings: dict[tuple, dict[str, int]] = {}
    for i, key in enumerate(zip(ex.shift, ex.wearer, ex.start_ms, strict=True)):
        crossings.setdefault(key, {})[ex.supplier[i]] = i
    shared = [m for m in crossings.values() if len(m) == len(suppliers)]
    tta = ex.time_to_alert_s.astype(np.float64)
    in_time = ex.detected.astype(bool) & (np.nan_to_num(tta, nan=np.inf) <= in_time_limit)
    tally = _Agreement(
        len(shared),
        {(a, b): 0 for i, a in enumerate(suppliers) for b in suppliers[i + 1 :]},
        dict.fromkeys(suppliers, 0),
        [],
    )
    for m in shared:
        for a, b in tally.alike:
            ia, ib = m[a], m[b]
            both = ex.detected[ia] and ex.detected[ib]
            same = in_time[ia] == in_time[ib] and (
                not both or abs(tta[ia] - tta[ib]) <= spread_limit
            )
            tally.alike[(a, b)] += bool(same)
        anyone = any(in_time[i] for i in m.values())
        late = [s for s, i in m.items() if anyone and not in_time[i]]
        for s in late:
            tally.at_fault[s] += 1
        if late:
            i0 = next(iter(m.values()))
            tally.disagreements.append(
                {
                    "crossing": f"{ex.repeat_key[i0].rsplit('/', 1)[0]} on {_date(ex, i0)}",
                    "outcomes": {s: _said(ex, tta, i) for s, i in sorted(m.items())},
                    "in_time": {s: bool(in_time[i]) for s, i in m.items()},
                }
            )
    return tally


def _agreement_finding(trial: Trial, tally: _Agreement, s: str) -> SupplierFinding:
    """One supplier's agreement with the others: judged on its share of the shared
    crossings not at fault (on its bound, when the trial has the criterion)."""
    n = tally.shared
    if not n:
        return SupplierFinding(s, NOT_ASSESSED, "no crossing seen by every supplier")
    limit = trial.criteria.get("supplier_agreement")
    in_time_limit = trial.criteria["time_to_alert_p95_s"]
    spread_limit = trial.criteria["alert_timing_spread_s"]
    pairwise = {(a, b): k / n for (a, b), k in tally.alike.items()}
    good = n - tally.at_fault[s]
    share = good / n
    interval = clopper_pearson(good, n, trial.scoring.confidence)
    status = FOUND if tally.at_fault[s] else PASS
    if limit is not None:
        status = outcome(share, interval, limit, "min")
    # named in the figures (the comparative report), not in the words: a supplier's own
    # report carries the others only as anonymous shares
    pairs = ", ".join(f"{k / n:.0%}" for (a, b), k in tally.alike.items() if s in (a, b))
    return SupplierFinding(
        s,
        status,
        f"of {n} crossings every supplier saw, it failed to alarm within "
        f"{in_time_limit:g} s while another supplier did on {tally.at_fault[s]}; it alarmed "
        f"alike with each other supplier (both in time or both not, alerts within "
        f"{spread_limit:g} s) on {pairs} of them",
        {
            "agreement": share,
            "agreement_ci": interval,
            "at_fault": tally.at_fault[s],
            "shared_crossings": n,
            "pairwise": {b if a == s else a: v for (a, b), v in pairwise.items() if s in (a, b)},
        },
    )


def _said(ex, tta: np.ndarray, i: int) -> str:
    """One crossing as one device saw it, in words."""
    if ex.detected[i]:
        return f"{tta[i]:+.1f} s"
    return "saturated" if ex.saturated[i] else "missed"


def _date(ex, i: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(int(ex.start_ms[i]) / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


def own_alarms(trial: Trial, rows: Rows, own: dict[str, OwnAlarmFigures]) -> Check:
    """The suppliers' own alarms against the truth, and beside trackfence's decision.

    What vibrates on the wearer is the device's own alarm, decided by the supplier's
    device or cloud. Where a device reports its alarms, they are held to the same
    detection limit (on its bound), and every crossing on which the device and
    trackfence's decision on the same fixes disagree is counted: a device whose own
    alarm misses what its fixes showed has a decision problem, not a positioning one.
    """
    limit = trial.criteria.get("detection_rate", 0.99)
    results = []
    for s in trial.suppliers:
        f = own[s.key]
        if not f.device_shifts:
            results.append(
                SupplierFinding(s.key, NOT_ASSESSED, "its devices reported no alarms of their own")
            )
            continue
        status = outcome(f.detection_rate, f.detection_ci, limit, "min")
        differs = f.detected_by_platform_only + f.detected_by_device_only + f.later_than_platform
        text = (
            f"its own alarms gave a fresh alert for {f.detected} of {f.excursions} crossings "
            f"({f.saturated} while already on), {f.false_alerts_per_device_hour:.2f} false "
            f"alerts an hour; against trackfence's decision on the same fixes: "
            f"{f.detected_by_platform_only} caught only by trackfence, "
            f"{f.detected_by_device_only} only by the device, {f.later_than_platform} "
            f"alerted later by the device"
        )
        if status == FAIL:
            text += f": its own alarms miss the detection limit ({limit:.0%})"
        results.append(
            SupplierFinding(
                s.key,
                FAIL if status == FAIL else FOUND if differs else status,
                text,
                {
                    "detection_rate": f.detection_rate,
                    "detection_ci": f.detection_ci,
                    "platform_only": f.detected_by_platform_only,
                    "device_only": f.detected_by_device_only,
                    "later": f.later_than_platform,
                },
            )
        )
    return Check(
        OWN_ALARM,
        "Devices' own alarms",
        "Do the alarms each device decides for itself trigger on every crossing, as "
        "trackfence's decision on the same fixes does?",
        tuple(results),
    )
