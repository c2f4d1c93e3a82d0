"""What a trial run records: its manifest, as typed records.

A run's manifest (`DIR/manifest.json`) says what ran and how: every shift, the
devices worn on it with their firmware and configuration, how its messages were
decided, counts of what was published and stored, the time each phase took, and
the provenance (every input file's SHA-256, the software and the command). The
harness writes it (trials.harness.runner for a simulated run, trials.harness.live
for a real trial); the store reader, the scoring and the report read it back.

It is read here, once, into frozen records, so the rest of the trial reads
attributes, never keys: a field renamed or dropped fails here, not in a report.
The file on disk is what it always was: `Manifest.from_json` then `to_json` gives
back the same document, key order included. Version 1 (written before a run
recorded how it decided, its phases and its hops) still reads; what it lacks is
None.

A real trial's manifest (`kind` "live") fits the same records: its shifts are
`live`, name each wearer's reference track, and say nothing of publishing.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

from trials.definition import Trial, TrialError

MANIFEST = "manifest.json"
MANIFEST_VERSION = 2
#: The versions `load_manifest` reads: 1 lacks the deciding path, the phases and the hops.
READABLE_VERSIONS = (1, 2)

#: What a run's manifest says of a shift's platform hops (receive -> decision -> alert).
HOPS_MEASURED = "measured"
HOPS_NOT_MEASURED = "not measured: replayed faster than real time"
#: A shift published faster than this many times real time is a replay: its measured
#: hops reflect the replay's queues, not a live deployment, and stay out of time to alert.
LIVE_PACE_LIMIT = 1.5


@dataclass(frozen=True)
class WornDevice:
    """One device on one person for one shift, as planned and as the manifest keeps it."""

    device_id: str  # supplier/device, as in topics and the store
    supplier: str
    wearer: str
    firmware: str
    configuration: dict[str, Any]
    configuration_hash: str


@dataclass(frozen=True)
class ReferenceRecord:
    """A real shift's reference track for one wearer: the file, and its stated accuracy."""

    file: str
    accuracy_m: float


@dataclass(frozen=True)
class ShiftRecord:
    """One shift as the manifest keeps it.

    Every shift says when and where it was worked and by which devices, and what
    reached the store. A simulated shift also says how its messages were decided
    (`path`), whether its hops were measured, and what ingest raised about it;
    those are None in a version-1 manifest and in a real trial's. A real shift
    (`live`) names each wearer's reference track instead, and its publishing
    counts are None: nothing of the devices' sending was recorded.
    """

    run_id: str
    index: int
    scenario: str
    scenario_name: str
    site_file: str
    repeat: int  # 0-based
    date: str  # ISO date
    week: int  # 1-based
    night: bool
    start_ms: int
    end_ms: int
    seed: int | None  # None for a real shift
    devices: tuple[WornDevice, ...]
    messages_published: int | None
    fixes_stored: int
    dead_letters: int | None
    publish_seconds: float | None
    live: bool = False
    references: dict[str, ReferenceRecord] | None = None  # a real shift's, by wearer
    path: str | None = None  # how a simulated shift was decided: in-process or mqtt
    hops: str | None = None  # HOPS_MEASURED or HOPS_NOT_MEASURED
    ingest_alarms: tuple[str, ...] | None = None  # what ingest raised during the shift

    @property
    def duration_s(self) -> float:
        return (self.end_ms - self.start_ms) / 1000

    @property
    def replay_speedup(self) -> float:
        """How many times faster than real time the shift's fixes were published."""
        seconds = float(self.publish_seconds or 0.0)
        return self.duration_s / seconds if seconds > 0 else math.inf

    @property
    def hops_measured(self) -> bool:
        """Whether the shift's platform hops were measured at the pace of a live shift.

        A run says so of each shift (`hops`); a run from before it did is judged by how
        much faster than real time it was published.
        """
        if self.live:
            return True
        if self.hops is not None:
            return self.hops == HOPS_MEASURED
        return self.replay_speedup <= LIVE_PACE_LIMIT

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ShiftRecord:
        references = data.get("references")
        alarms = data.get("ingest_alarms")
        return cls(
            run_id=data["run_id"],
            index=data["index"],
            scenario=data["scenario"],
            scenario_name=data["scenario_name"],
            site_file=data["site_file"],
            repeat=data["repeat"],
            date=data["date"],
            week=data["week"],
            night=data["night"],
            start_ms=data["start_ms"],
            end_ms=data["end_ms"],
            seed=data["seed"],
            devices=tuple(WornDevice(**d) for d in data["devices"]),
            messages_published=data["messages_published"],
            fixes_stored=data["fixes_stored"],
            dead_letters=data["dead_letters"],
            publish_seconds=data["publish_seconds"],
            live=bool(data.get("live", False)),
            references=(
                None
                if references is None
                else {name: ReferenceRecord(**r) for name, r in references.items()}
            ),
            path=data.get("path"),
            hops=data.get("hops"),
            ingest_alarms=None if alarms is None else tuple(alarms),
        )

    def to_json(self) -> dict[str, Any]:
        """The shift as the manifest file holds it (a key None here is left out only
        where the file never had it)."""
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "index": self.index,
            "scenario": self.scenario,
            "scenario_name": self.scenario_name,
            "site_file": self.site_file,
            "repeat": self.repeat,
            "date": self.date,
            "week": self.week,
            "night": self.night,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "seed": self.seed,
            "devices": [asdict(d) for d in self.devices],
        }
        if self.live:
            out["live"] = True
            out["references"] = {
                name: asdict(r) for name, r in (self.references or {}).items()
            }
        out |= {
            "messages_published": self.messages_published,
            "fixes_stored": self.fixes_stored,
            "dead_letters": self.dead_letters,
        }
        if self.path is not None:
            out["path"] = self.path
        if self.hops is not None:
            out["hops"] = self.hops
        if self.ingest_alarms is not None:
            out["ingest_alarms"] = list(self.ingest_alarms)
        out["publish_seconds"] = self.publish_seconds
        return out


@dataclass(frozen=True)
class Phases:
    """Where a run's time went (CPU seconds), for the line it prints and its manifest."""

    simulate_s: float = 0.0
    decide_s: float = 0.0
    store_s: float = 0.0
    truth_s: float = 0.0
    fixes: int = 0
    workers: int = 1  # processes the in-process path decided with, side by side

    def __add__(self, other: Phases) -> Phases:
        """Both runs' time and fixes together, on this one's number of processes."""
        return replace(
            self,
            **{
                f.name: getattr(self, f.name) + getattr(other, f.name)
                for f in fields(self)
                if f.name != "workers"
            },
        )

    def rounded(self) -> Phases:
        """As the manifest keeps it: to the hundredth of a second."""
        return Phases(**{f.name: round(getattr(self, f.name), 2) for f in fields(self)})

    def line(self, shifts: int) -> str:
        def rate(seconds: float) -> str:
            return f"{self.fixes / seconds:,.0f} fixes/s" if seconds > 0 else "-"

        side = f" (CPU seconds over {self.workers} processes)" if self.workers > 1 else ""
        return (
            f"{shifts} shifts, {self.fixes:,} fixes{side}: simulated in {self.simulate_s:.1f} s "
            f"({rate(self.simulate_s)}), decided in {self.decide_s:.1f} s "
            f"({rate(self.decide_s)}), stored in {self.store_s:.1f} s ({rate(self.store_s)}) "
            f"and the truth in {self.truth_s:.1f} s"
        )


@dataclass(frozen=True)
class Manifest:
    """A run's manifest: what ran, how it was decided, and where everything came from.

    `path`, `phases` and `live_hops` are a simulated run's own record (version 2 on):
    how its shifts were decided, where its time went, and the live path's hops as the
    latency benchmark last measured them (None when none is on record). A real
    trial's manifest (`kind` "live") has none of them, and says when it was scored.
    """

    manifest_version: int
    trial: str
    trial_file: str
    inputs: dict[str, str]  # file -> "sha256:…"
    software: str
    command: str
    broker: str | None  # None: decided in-process, no broker between
    db: str  # the store, its password redacted
    seconds: float
    shifts: tuple[ShiftRecord, ...]
    decisions: dict[str, float] | None = None  # geofence.breach.BreachConfig's fields
    kind: str | None = None  # "live" for a real trial's
    path: str | None = None
    phases: Phases | None = None
    live_hops: dict[str, Any] | None = None
    scored_at: str | None = None  # a real trial's: when it was scored (UTC, ISO)

    @property
    def is_live(self) -> bool:
        """A real trial's manifest: its shifts were worn on track, not simulated."""
        return self.kind == "live"

    @property
    def site_files(self) -> list[str]:
        """Every site a shift was worked on, each once, sorted."""
        return sorted({s.site_file for s in self.shifts})

    @property
    def configurations(self) -> dict[str, dict[str, Any]]:
        """Each configuration worn in the run, by its hash."""
        return {d.configuration_hash: d.configuration for s in self.shifts for d in s.devices}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        phases = data.get("phases")
        return cls(
            manifest_version=data["manifest_version"],
            trial=data["trial"],
            trial_file=data["trial_file"],
            inputs=dict(data["inputs"]),
            software=data["software"],
            command=data["command"],
            broker=data["broker"],
            db=data["db"],
            seconds=data["seconds"],
            shifts=tuple(ShiftRecord.from_json(s) for s in data["shifts"]),
            decisions=data.get("decisions"),
            kind=data.get("kind"),
            path=data.get("path"),
            phases=None if phases is None else Phases(**phases),
            live_hops=data.get("live_hops"),
            scored_at=data.get("scored_at"),
        )

    def to_json(self) -> dict[str, Any]:
        """The manifest as its file holds it."""
        out: dict[str, Any] = {"manifest_version": self.manifest_version}
        if self.kind is not None:
            out["kind"] = self.kind
        out |= {
            "trial": self.trial,
            "trial_file": self.trial_file,
            "inputs": dict(self.inputs),
            "software": self.software,
            "command": self.command,
        }
        if self.path is not None:
            out["path"] = self.path
        out |= {"broker": self.broker, "db": self.db}
        if self.decisions is not None:
            out["decisions"] = dict(self.decisions)
        out["seconds"] = self.seconds
        if self.scored_at is not None:
            out["scored_at"] = self.scored_at
        if self.path is not None:  # a simulated run's own record, written together
            out["phases"] = None if self.phases is None else asdict(self.phases)
            out["live_hops"] = self.live_hops
        out["shifts"] = [s.to_json() for s in self.shifts]
        return out

    def write(self, folder: Path) -> Path:
        """Write the manifest into `folder` (as `manifest.json`); returns its path."""
        path = folder / MANIFEST
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path


def load_manifest(out: Path) -> Manifest:
    """The manifest of the run in `out`; TrialError if there is none, or none this reads."""
    path = out / MANIFEST
    try:
        data = json.loads(path.read_text())
    except OSError:
        raise TrialError(f"{path}: no trial run here (run `trackfence trial run` first)") from None
    except json.JSONDecodeError as exc:
        raise TrialError(f"{path}: not a trial manifest ({exc})") from None
    if not isinstance(data, dict):
        raise TrialError(f"{path}: not a trial manifest (not a JSON object)")
    if data.get("manifest_version") not in READABLE_VERSIONS:
        raise TrialError(f"{path}: manifest version {data.get('manifest_version')!r} unknown")
    try:
        return Manifest.from_json(data)
    except (KeyError, TypeError, AttributeError) as exc:
        raise TrialError(f"{path}: not a trial manifest (no {exc})") from None


# ------------------------------------------------------------------ provenance


def sha256_file(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def input_files(trial: Trial) -> list[Path]:
    """Every file the trial's result depends on: the trial, scenarios, sites, fences, survey."""
    files = [trial.file]
    for sc in trial.scenarios:
        files += [sc.file, sc.scenario.site_file]
    if trial.shift_log is not None:
        files.append(trial.shift_log)
    for shift in trial.shifts:  # a real trial's sites and reference tracks
        files.append(shift.site_file)
        files += [w.reference for w in shift.wearers]
    for s in trial.suppliers:
        files += list(s.configured_sites.values())
    if trial.feedback is not None:
        files.append(trial.feedback)
    return list(dict.fromkeys(files))


def input_hashes(trial: Trial) -> dict[str, str]:
    """Each input file's SHA-256, by its path: what the manifest keeps as `inputs`."""
    return {str(p): sha256_file(p) for p in input_files(trial)}


def changed_inputs(trial: Trial, manifest: Manifest) -> list[str]:
    """The input files that differ from what the run recorded (files it never saw are new,
    not changed)."""
    return [
        str(p)
        for p in input_files(trial)
        if manifest.inputs.get(str(p)) not in (None, sha256_file(p))
    ]


def redact(url: str) -> str:
    """A URL without its password, fit for a report."""
    parsed = urlparse(url)
    if parsed.password:
        netloc = f"{parsed.username}:***@{parsed.hostname}" + (
            f":{parsed.port}" if parsed.port else ""
        )
        return urlunparse(parsed._replace(netloc=netloc))
    return url


def software_version() -> str:
    """This software's version, and the commit it runs from when that is known."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = f"trackfence {version('trackfence')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        text = "trackfence (source tree)"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{text}, commit {commit}" if commit else text
