"""The trial definition: what is trialled, where, when, and what counts as a pass.

    [trial]
    name = "Track worker geofence trial"
    objectives = ["…", "…"]
    start_date = 2026-06-01          # the Monday of week 1
    weeks = 10                       # the shifts are spread over these weeks
    repeats = 3                      # every scenario is worked this many times
    feedback = "feedback.csv"        # optional track-worker survey

    [criteria]                       # every key says its unit; see CRITERIA
    r95_m = 1.0
    detection_rate = 0.99

    [decisions]                      # how trackfence decides (geofence.breach.BreachConfig)
    clearing_margin_m = 0.5

    [scoring]                        # how the trial is scored (see Scoring)
    alert_lead_s = 5.0
    clear_allowance_s = 10.0
    confidence = 0.95

    [[scenario]]
    file = "../scenarios/plain-line.toml"
    repeats = 2                      # optional: overrides [trial].repeats

    [supplier.acme]
    organisation = "Acme Rail Safety"
    technology = "GNSS RTK"
    hardware = "AC-100 wearable"
    approved_configuration = { fix_rate_hz = 1, haptic = "long" }   # acceptance certificate
    configured_sites = { "../sites/a.toml" = "fences/acme-a.toml" } # the fence it was set up with
    simulated = { fix_rate_hz = 1, cep50_m = 0.05 }                 # devices.sim profile

    [[supplier.acme.device]]
    id = "ac-0101"
    firmware = "2.4.1"
    configuration = { fix_rate_hz = 1, haptic = "long" }
    updates = [{ week = 6, firmware = "2.5.0" }]                     # changed mid-trial

In a trial every worker of a scenario wears one device of each supplier, so the
suppliers are compared on the same movements. A device's configuration keys
that are simulator settings (`fix_rate_hz`, …) change how it behaves; the rest
are recorded and hashed. Errors name the table and the field, and say what a
value's unit must be: a criterion in the wrong unit is refused, never guessed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from devices.sim.profiles import SupplierProfile
from devices.sim.scenario import Scenario, ScenarioError, load_scenario
from geofence.breach import BreachConfig
from loading.tomlfile import TomlFileError, read_toml
from trials.shiftlog import RealShift, ShiftLogError, check_references, read_shift_log


class TrialError(ValueError):
    """A trial definition that cannot be run; the message names the field."""


#: Acceptance criteria: name -> (what it bounds, direction, unit text, lower, upper limit).
#: "max": a supplier passes at or below it; "min": at or above it.
CRITERIA: dict[str, tuple[str, str, str, float, float]] = {
    "r95_m": ("R95 horizontal error", "max", "metres", 0.0, 100.0),
    "cep50_m": ("CEP50 horizontal error", "max", "metres", 0.0, 100.0),
    "detection_rate": (
        "share of true crossings detected by a fresh alert",
        "min",
        "a share 0-1",
        0.0,
        1.0,
    ),
    "time_to_alert_p95_s": ("time to alert, 95th percentile", "max", "seconds", 0.0, 600.0),
    "false_alerts_per_device_hour": ("false alerts per device-hour", "max", "per hour", 0.0, 1e3),
    "availability": ("share of expected fixes received", "min", "a share 0-1", 0.0, 1.0),
    "false_alarm_share": (
        "share of device time in breach while the wearer was truly safe",
        "max",
        "a share 0-1",
        0.0,
        1.0,
    ),
    "unprotected_share": ("share of the shift without protection", "max", "a share 0-1", 0, 1),
    "fence_alignment_m": ("worst fence offset from the survey", "max", "metres", 0.0, 100.0),
    "breach_log_offset_p95_m": (
        "breach log position against the truth (at the alert, and at its logged time), p95",
        "max",
        "metres",
        0.0,
        100.0,
    ),
    "alert_timing_spread_s": (
        "spread of time to alert (p95 - p5) over like movements",
        "max",
        "seconds",
        0.0,
        600.0,
    ),
    "supplier_agreement": (
        "share of excursions on which this supplier agrees with the others",
        "min",
        "a share 0-1",
        0.0,
        1.0,
    ),
}

DEFAULT_CRITERIA = {
    "r95_m": 1.0,
    "detection_rate": 0.99,
    "time_to_alert_p95_s": 2.0,
    "false_alerts_per_device_hour": 0.5,
    "availability": 0.995,
    "false_alarm_share": 0.02,
    "fence_alignment_m": 0.1,
    "breach_log_offset_p95_m": 2.0,
    "alert_timing_spread_s": 3.0,
}

#: Units a criterion name might wrongly carry, and the unit the criterion wants.
_WRONG_UNITS = {"_cm": "_m", "_mm": "_m", "_ft": "_m", "_ms": "_s", "_min": "_s", "_pct": ""}


@dataclass(frozen=True)
class Scoring:
    """How a trial is scored: part of the method, printed in the report's methodology.

    alert_lead_s: a fresh alert that starts up to this long *before* the true
        crossing still detects it. The decision is accuracy-aware (a fix's
        uncertainty circle reaches the edge before the wearer does), so a good
        device rightly alerts a moment early; an alarm that began earlier than
        this was raised for something else, and one still on when the window
        opens cannot tell the wearer about this crossing (saturated).
    clear_allowance_s: after the wearer is truly back inside, the alarm may take
        this long to stop before the rest counts as false-alarm time: the
        clearing dwell (5 s by default) plus stepping back by the clearing margin
        and the uplink.
    confidence: each end of every interval is a one-sided bound at this level; a
        criterion passes when the unfavourable bound meets its limit.
    """

    alert_lead_s: float = 5.0
    clear_allowance_s: float = 10.0
    confidence: float = 0.95

    LIMITS = {  # noqa: RUF012 - a class constant: the range each setting may take
        "alert_lead_s": (0.0, 60.0),
        "clear_allowance_s": (0.0, 600.0),
        "confidence": (0.5, 0.999),
    }


def config_hash(configuration: Mapping[str, Any]) -> str:
    """A short, stable hash of a configuration (key order and whitespace do not matter)."""
    text = json.dumps(configuration, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DeviceUpdate:
    week: int
    firmware: str | None
    configuration: dict[str, Any] | None


@dataclass(frozen=True)
class TrialDevice:
    id: str  # the device's name within its supplier ("ac-0101")
    firmware: str
    configuration: dict[str, Any]
    updates: tuple[DeviceUpdate, ...] = ()

    def on_week(self, week: int) -> tuple[str, dict[str, Any]]:
        """The firmware and configuration the device carried in a week (1-based)."""
        firmware, configuration = self.firmware, self.configuration
        for update in sorted(self.updates, key=lambda u: u.week):
            if update.week <= week:
                firmware = update.firmware or firmware
                configuration = update.configuration or configuration
        return firmware, configuration


@dataclass(frozen=True)
class TrialSupplier:
    key: str  # as in topics and device ids ("acme")
    organisation: str
    technology: str
    hardware: str
    approved_configuration: dict[str, Any]
    simulated: SupplierProfile
    firmware_profiles: dict[str, SupplierProfile]  # firmware version -> how it behaves
    devices: tuple[TrialDevice, ...]
    configured_sites: dict[Path, Path]  # reference site file -> the copy it was configured with

    @property
    def approved_hash(self) -> str:
        return config_hash(self.approved_configuration)

    def profile(self, firmware: str, configuration: Mapping[str, Any]) -> SupplierProfile:
        """How a device of this supplier behaves with this firmware and configuration."""
        from dataclasses import asdict

        base = self.firmware_profiles.get(firmware, self.simulated)
        known = {f.name for f in fields(SupplierProfile)}
        settings = {k: v for k, v in configuration.items() if k in known}
        where = f"[supplier.{self.key}] firmware {firmware} with its configuration"
        return SupplierProfile.from_mapping(
            {**asdict(base), **settings, "firmware": firmware}, where
        )


@dataclass(frozen=True)
class TrialScenario:
    file: Path
    scenario: Scenario
    repeats: int

    @property
    def key(self) -> str:
        return self.file.stem


@dataclass(frozen=True)
class Trial:
    name: str
    objectives: tuple[str, ...]
    start_date: dt.date
    weeks: int
    scenarios: tuple[TrialScenario, ...]
    suppliers: tuple[TrialSupplier, ...]
    criteria: dict[str, float]
    feedback: Path | None
    file: Path
    description: str = ""
    day_shift_start: dt.time = dt.time(9, 0)
    night_shift_start: dt.time = dt.time(23, 0)
    sponsor: str = ""
    #: how trackfence decides during the trial (geofence.breach.BreachConfig): part of
    #: the method, recorded in the manifest and the report
    decisions: BreachConfig = field(default_factory=BreachConfig)
    scoring: Scoring = field(default_factory=Scoring)
    #: a real trial's shift log (trials.shiftlog); empty for a simulated trial
    shifts: tuple[RealShift, ...] = ()
    shift_log: Path | None = None  # the CSV it was read from, if any

    @property
    def is_real(self) -> bool:
        """Worn on track and scored from the live store, not simulated."""
        return bool(self.shifts)

    @property
    def scenario_keys(self) -> list[str]:
        """The scenarios a result is sliced by: the simulated ones, or the shift log's."""
        if self.shifts:
            return list(dict.fromkeys(sh.scenario for sh in self.shifts))
        return [sc.key for sc in self.scenarios]

    @property
    def end_date(self) -> dt.date:
        return self.start_date + dt.timedelta(weeks=self.weeks) - dt.timedelta(days=1)

    def supplier(self, key: str) -> TrialSupplier:
        for s in self.suppliers:
            if s.key == key:
                return s
        known = ", ".join(s.key for s in self.suppliers)
        raise TrialError(f"unknown supplier {key!r} (the trial has {known})")


def load_trial(path: str | Path) -> Trial:
    path = Path(path)
    try:
        data = read_toml(path)
    except TomlFileError as exc:
        raise TrialError(f"{path}: {exc}") from None
    return trial_from_mapping(data, path.resolve())


def _text(table: Mapping, key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise TrialError(f"{where}.{key}: text is required")
    return value


def _whole(table: Mapping, key: str, where: str, default: int, lo: int, hi: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise TrialError(f"{where}.{key}: a whole number from {lo} to {hi}, got {value!r}")
    return value


def _table(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TrialError(f"{where}: must be a table, e.g. {{ fix_rate_hz = 1 }}")
    return dict(value)


def trial_from_mapping(data: Mapping, file: Path) -> Trial:
    base = file.parent
    unknown = set(data) - {
        "trial",
        "criteria",
        "scenario",
        "supplier",
        "decisions",
        "scoring",
        "shift",
    }
    if unknown:
        raise TrialError(f"unknown table(s) {', '.join(sorted(unknown))}")
    head = data.get("trial")
    if not isinstance(head, Mapping):
        raise TrialError("[trial]: a trial file needs a [trial] table")
    name = _text(head, "name", "[trial]")
    objectives = head.get("objectives", [])
    if not isinstance(objectives, list) or not all(isinstance(o, str) for o in objectives):
        raise TrialError("[trial].objectives: a list of sentences")
    start = head.get("start_date")
    if not isinstance(start, dt.date) or isinstance(start, dt.datetime):
        raise TrialError(f"[trial].start_date: a date such as 2026-06-01, got {start!r}")
    weeks = _whole(head, "weeks", "[trial]", 10, 1, 104)
    repeats = _whole(head, "repeats", "[trial]", 1, 1, 100)
    day, night = (
        _clock(head, "day_shift_start", dt.time(9, 0)),
        _clock(head, "night_shift_start", dt.time(23, 0)),
    )
    feedback = head.get("feedback")
    if feedback is not None:
        if not isinstance(feedback, str):
            raise TrialError("[trial].feedback: the survey CSV's file name")
        feedback = (base / feedback).resolve()
        if not feedback.is_file():
            raise TrialError(f"[trial].feedback: no such file {feedback}")
    criteria = _criteria(data.get("criteria"))
    decisions = _decisions(data.get("decisions"))
    scoring = _scoring(data.get("scoring"))
    suppliers = _suppliers(data.get("supplier"), base)
    shifts = _shifts(data.get("shift"), head.get("shift_log"), base, suppliers, start)
    scenarios = (
        _scenarios(data.get("scenario"), base, repeats)
        if not shifts or data.get("scenario") is not None
        else ()
    )
    sites = {sc.scenario.site_file for sc in scenarios} | {sh.site_file for sh in shifts}
    for s in suppliers:
        for ref in s.configured_sites:
            if ref not in sites:
                raise TrialError(
                    f"[supplier.{s.key}].configured_sites: {ref} is not the site of any "
                    "scenario or shift"
                )
    known = {"name", "objectives", "start_date", "weeks", "repeats", "feedback", "sponsor"}
    known |= {"description", "day_shift_start", "night_shift_start", "shift_log"}
    stray = set(head) - known
    if stray:
        raise TrialError(f"[trial]: unknown setting(s) {', '.join(sorted(stray))}")
    return Trial(
        name=name,
        objectives=tuple(objectives),
        start_date=start,
        weeks=weeks,
        scenarios=scenarios,
        suppliers=suppliers,
        criteria=criteria,
        feedback=feedback,
        file=file,
        description=str(head.get("description", "")),
        day_shift_start=day,
        night_shift_start=night,
        sponsor=str(head.get("sponsor", "")),
        decisions=decisions,
        scoring=scoring,
        shifts=shifts,
        shift_log=(base / head["shift_log"]).resolve() if head.get("shift_log") else None,
    )


def _shifts(
    tables: object, log: object, base: Path, suppliers: tuple, start: dt.date
) -> tuple[RealShift, ...]:
    """A real trial's shift log, from [[shift]] tables and/or [trial].shift_log (a CSV)."""
    csv_file = None
    if log is not None:
        if not isinstance(log, str):
            raise TrialError("[trial].shift_log: the shift log CSV's file name")
        csv_file = (base / log).resolve()
        if not csv_file.is_file():
            raise TrialError(f"[trial].shift_log: no such file {csv_file}")
    if tables is None and csv_file is None:
        return ()
    known = {f"{s.key}/{d.id}" for s in suppliers for d in s.devices}
    try:
        shifts = read_shift_log(tables, csv_file, base, known, start)
    except ShiftLogError as exc:
        raise TrialError("the shift log: " + "; ".join(exc.problems)) from None
    problems = check_references(shifts)
    if problems:
        raise TrialError("the shift log: " + "; ".join(problems))
    return shifts


def _decisions(table: object) -> BreachConfig:
    given = _table(table, "[decisions]")
    known = set(BreachConfig.__dataclass_fields__)
    for key, value in given.items():
        if key not in known:
            raise TrialError(f"[decisions].{key}: unknown setting (known: {', '.join(known)})")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TrialError(f"[decisions].{key}: a number, got {value!r}")
    try:
        return BreachConfig(**{k: float(v) for k, v in given.items()})
    except ValueError as exc:
        raise TrialError(f"[decisions]: {exc}") from None


def _scoring(table: object) -> Scoring:
    given = _table(table, "[scoring]")
    values = {}
    for key, value in given.items():
        if key not in Scoring.LIMITS:
            raise TrialError(
                f"[scoring].{key}: unknown setting (known: {', '.join(Scoring.LIMITS)})"
            )
        lo, hi = Scoring.LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise TrialError(f"[scoring].{key}: a number from {lo:g} to {hi:g}, got {value!r}")
        values[key] = float(value)
    return Scoring(**values)


def _clock(head: Mapping, key: str, default: dt.time) -> dt.time:
    value = head.get(key, default)
    if isinstance(value, dt.time):
        return value
    raise TrialError(f"[trial].{key}: a time of day such as 09:00:00, got {value!r}")


def _criteria(table: object) -> dict[str, float]:
    given = _table(table, "[criteria]")
    criteria = dict(DEFAULT_CRITERIA)
    for key, value in given.items():
        if key not in CRITERIA:
            hint = ""
            for wrong, right in _WRONG_UNITS.items():
                if key.endswith(wrong):
                    meant = key[: -len(wrong)] + right
                    if meant in CRITERIA:
                        hint = f": give it as {meant} ({CRITERIA[meant][2]})"
            if not hint:
                hint = f" (known: {', '.join(CRITERIA)})"
            raise TrialError(f"[criteria].{key}: unknown criterion{hint}")
        what, _, unit, lo, hi = CRITERIA[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TrialError(f"[criteria].{key}: a number in {unit}, got {value!r}")
        if not lo <= value <= hi:
            hint = ""
            if unit.startswith("a share") and 1 < value <= 100:
                hint = f"; {value} looks like a percentage: write {value / 100:g}"
            raise TrialError(
                f"[criteria].{key}: {what} in {unit} must be from {lo:g} to {hi:g}, "
                f"got {value}{hint}"
            )
        criteria[key] = float(value)
    return criteria


def _scenarios(items: object, base: Path, repeats: int) -> tuple[TrialScenario, ...]:
    if not isinstance(items, list) or not items:
        raise TrialError("[[scenario]]: a trial needs at least one scenario")
    out = []
    for i, item in enumerate(items):
        where = f"scenario[{i}]"
        if not isinstance(item, Mapping):
            raise TrialError(f"{where}: a table with file = …")
        file = (base / _text(item, "file", where)).resolve()
        if not file.is_file():
            raise TrialError(f"{where}.file: unknown scenario, no such file {file}")
        try:
            scenario = load_scenario(file)
        except ScenarioError as exc:
            raise TrialError(f"{where} ({file.name}): {exc}") from None
        out.append(TrialScenario(file, scenario, _whole(item, "repeats", where, repeats, 1, 100)))
    keys = [s.key for s in out]
    if len(set(keys)) != len(keys):
        raise TrialError("[[scenario]]: a scenario file is listed twice")
    return tuple(out)


def _suppliers(table: object, base: Path) -> tuple[TrialSupplier, ...]:
    tables = _table(table, "[supplier]")
    if not tables:
        raise TrialError("[supplier]: a trial needs at least one supplier")
    out = []
    for key, t in tables.items():
        where = f"[supplier.{key}]"
        if "/" in key or "+" in key or "#" in key:
            raise TrialError(f"{where}: a supplier key cannot contain / + or #")
        t = _table(t, where)
        simulated = _table(t.get("simulated"), f"{where}.simulated")
        versions = _table(simulated.pop("firmware_versions", None), f"{where}.simulated")
        try:
            profile = SupplierProfile.from_mapping(simulated, f"{where}.simulated")
            firmware_profiles = {
                v: SupplierProfile.from_mapping(
                    {**simulated, **_table(c, v), "firmware": v},
                    f"{where}.simulated.firmware_versions.{v}",
                )
                for v, c in versions.items()
            }
        except ScenarioError as exc:
            raise TrialError(str(exc)) from None
        devices = []
        for i, d in enumerate(t.get("device") or []):
            dwhere = f"{where}.device[{i}]"
            updates = []
            for k, u in enumerate(d.get("updates") or []):
                uwhere = f"{dwhere}.updates[{k}]"
                updates.append(
                    DeviceUpdate(
                        _whole(u, "week", uwhere, 0, 1, 104),
                        u.get("firmware"),
                        _table(u.get("configuration"), f"{uwhere}.configuration") or None,
                    )
                )
            devices.append(
                TrialDevice(
                    _text(d, "id", dwhere),
                    _text(d, "firmware", dwhere, profile.firmware),
                    _table(d.get("configuration"), f"{dwhere}.configuration"),
                    tuple(updates),
                )
            )
        if not devices:
            raise TrialError(f"{where}: list its devices as [[supplier.{key}.device]]")
        ids = [d.id for d in devices]
        if len(set(ids)) != len(ids):
            raise TrialError(f"{where}: device ids must be unique")
        sites = {}
        for ref, mine in _table(t.get("configured_sites"), f"{where}.configured_sites").items():
            sites[(base / ref).resolve()] = (base / str(mine)).resolve()
            if not sites[(base / ref).resolve()].is_file():
                raise TrialError(f"{where}.configured_sites: no such site file {mine}")
        supplier = TrialSupplier(
            key=key,
            organisation=str(t.get("organisation", key)),
            technology=_text(t, "technology", where, profile.technology),
            hardware=str(t.get("hardware", "")),
            approved_configuration=_table(
                t.get("approved_configuration"), f"{where}.approved_configuration"
            ),
            simulated=profile,
            firmware_profiles=firmware_profiles,
            devices=tuple(devices),
            configured_sites=sites,
        )
        for d in devices:  # every configuration a device carries must make a valid profile
            for week in [1, *(u.week for u in d.updates)]:
                fw, cfg = d.on_week(week)
                try:
                    supplier.profile(fw, cfg)
                except (TypeError, ValueError) as exc:
                    raise TrialError(f"{where}.device {d.id!r} in week {week}: {exc}") from None
        out.append(supplier)
    return tuple(out)
