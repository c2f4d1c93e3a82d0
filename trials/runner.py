"""Running a trial: every shift through the real pipeline, then a manifest of what ran.

For each shift of the plan: simulate the devices, keep the truth in the store,
start ingest for the shift's worksite (each supplier on the fence it configured),
publish every fix over MQTT as the devices would, and wait until the store holds
every distinct fix that was sent. A shift whose fixes do not all arrive stops
the trial with the count missing: a trial never scores data it silently lost.

With no broker given, an embedded broker runs on a free loopback port (MQTT
3.1.1); with no database, the trial's own SQLite file. The code path is the
same for Mosquitto and TimescaleDB.

This is the trial's I/O edge; planning (trials.schedule) and scoring
(trials.score) are pure.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import numpy as np

from devices.sim.alarms import own_alarms
from devices.sim.generate import Simulation, simulate
from devices.sim.publish import ingest_readers, publish, truth_records
from geofence.site import Site
from ingest.settings import IngestSettings
from store import open_store
from trackfence.sites import load_site
from trials.collect import SHIFT_MARGIN_MS
from trials.definition import Trial, TrialError
from trials.schedule import Shift, plan

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
#: How long to wait for the last fixes of a shift to be stored, beyond a second per 2,000.
SETTLE_S = 30.0

Progress = Callable[[str, int, int], None]


class TrialRunError(RuntimeError):
    """The trial could not be run as defined (nothing is scored from a partial shift)."""


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


def redact(url: str) -> str:
    """A URL without its password, fit for a report."""
    parsed = urlparse(url)
    if parsed.password:
        netloc = f"{parsed.username}:***@{parsed.hostname}" + (
            f":{parsed.port}" if parsed.port else ""
        )
        return urlunparse(parsed._replace(netloc=netloc))
    return url


@contextmanager
def _broker(url: str | None) -> Iterator[tuple[str, str]]:
    """(broker URL, MQTT protocol): the given broker (v5), or an embedded one (3.1.1)."""
    if url is not None:
        yield url, "5"
        return
    from ingest.embedded_broker import EMBEDDED_PROTOCOL, EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker.url, EMBEDDED_PROTOCOL


def _sites_for(trial: Trial, shift: Shift) -> list[tuple[str, list[str]]]:
    """The shift's worksite as ingest sees it: each supplier on the fence it configured."""
    reference = shift.scenario.site_file
    sites = [
        (str(s.configured_sites[reference]), [f"{s.key}/*"])
        for s in trial.suppliers
        if reference in s.configured_sites
    ]
    return [*sites, (str(reference), ["*"])]


def _distinct_fixes(sim: Simulation) -> int:
    """Fixes the store should hold: each (device, seq, fix time) once, duplicates or not."""
    f = sim.fixes
    keys = np.stack([f.worker.astype(np.int64), f.seq.astype(np.int64), f.fix_ms], axis=1)
    return int(np.unique(keys, axis=0).shape[0])


def save_sent(sim: Simulation, shift: Shift, folder: Path) -> Path:
    """What the devices sent (for uplink latency and loss accounting), beside the store."""
    f = sim.fixes
    path = folder / f"{shift.run_id}.npz"
    np.savez_compressed(
        path,
        device=np.array([w.device for w in shift.scenario.workers])[f.worker],
        seq=f.seq,
        true_ms=f.true_ms + shift.start_ms,
        fix_ms=f.fix_ms + shift.start_ms,
        send_ms=f.send_ms + shift.start_ms,
    )
    return path


def run_trial(
    trial: Trial,
    out: Path,
    *,
    broker: str | None = None,
    db: str | None = None,
    progress: Progress | None = None,
    command: list[str] | None = None,
    replace: bool = False,
) -> dict:
    """Run every shift of `trial` end to end; returns (and writes) the run's manifest.

    A folder that already holds a run is refused unless `replace`: then its embedded
    store, sent fixes and reports are removed first (an external store keeps its
    rows; its idempotent keys make the same fixes land once).
    """
    if trial.is_real:
        raise TrialError(
            "a real trial is worn on track, not run here: run ingest during its shifts, "
            "then score what it stored with `trackfence trial score TRIAL --db URL --out DIR`"
        )
    if (out / MANIFEST).exists() or (out / "trial.sqlite").exists():
        if not replace:
            raise TrialError(
                f"{out} already holds a trial run: rescore it with `trackfence trial score`, "
                "or run again with --replace"
            )
        _clear(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sent").mkdir(exist_ok=True)
    db = db or f"sqlite:///{(out / 'trial.sqlite').resolve()}"
    shifts = plan(trial)
    began = time.monotonic()
    admin = open_store(db)  # truth, and watching fixes arrive; ingest has its own connection
    try:
        admin.migrate()
        records = []
        with _broker(broker) as (broker_url, protocol):
            for shift in shifts:
                site = load_site(shift.scenario.site_file)
                sim = simulate(shift.scenario, site)
                label = f"shift {shift.index + 1}/{len(shifts)} {shift.run_id}"
                shown = (lambda i, n, label=label: progress(label, i, n)) if progress else None
                records.append(
                    _run_shift(trial, shift, sim, site, broker_url, protocol, db, admin, out, shown)
                )
    finally:
        admin.close()
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "trial": trial.name,
        "trial_file": str(trial.file),
        "inputs": {str(p): sha256_file(p) for p in input_files(trial)},
        "software": software_version(),
        "command": shlex.join(command or sys.argv),
        "broker": "embedded (amqtt, MQTT 3.1.1)" if broker is None else redact(broker),
        "db": redact(db),
        "decisions": asdict(trial.decisions),
        "seconds": round(time.monotonic() - began, 1),
        "shifts": records,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _run_shift(
    trial: Trial,
    shift: Shift,
    sim: Simulation,
    site: Site,
    broker_url: str,
    protocol: str,
    db: str,
    admin,
    out: Path,
    progress: Callable[[int, int], None] | None,
) -> dict:
    from ingest.service import IngestService

    admin.write_truth(*truth_records(sim, shift.run_id, shift.start_ms))
    save_sent(sim, shift, out / "sent")
    expected = _distinct_fixes(sim)
    devices = [w.device for w in shift.scenario.workers]
    window = (shift.start_ms - SHIFT_MARGIN_MS, shift.end_ms + SHIFT_MARGIN_MS)
    dead_before = admin.counts()["dead_letters"]
    settings = IngestSettings(
        broker=broker_url,
        db=db,
        # a session per shift: the shift is complete (every fix stored) before its ingest
        # stops, so nothing needs to wait in the broker for the next shift's worker
        client_id=f"trackfence-trial-{shift.run_id}",
        mqtt_protocol=protocol,
        spool=str(out / "spool"),
        sites=_sites_for(trial, shift),
        decisions=trial.decisions,
        rfid_readers=ingest_readers(sim, site),  # the scenario's surveyed readers
    )
    service = IngestService(settings)
    service.start()
    try:
        if not service.subscribed.wait(15):
            raise TrialRunError(
                f"ingest could not subscribe at the broker {broker_url} "
                f"(alarms: {', '.join(sorted(service.alarms)) or 'none'})"
            )
        # the devices that decide for themselves do so on the fence their supplier configured
        fences = {
            s.key: load_site(s.configured_sites[shift.scenario.site_file])
            for s in trial.suppliers
            if shift.scenario.site_file in s.configured_sites
        }
        alarms = own_alarms(sim, site, fences)
        done = publish(
            sim,
            broker_url,
            shift.start_ms,
            alarms=alarms,
            mqtt_protocol=protocol,
            progress=progress,
        )
        deadline = time.monotonic() + SETTLE_S + expected / 2000

        def arrived() -> tuple[int, int]:
            return admin.fix_count(devices, *window), len(admin.device_alarms(
                since_ms=window[0], until_ms=window[1]))  # fmt: skip

        stored, raised = arrived()
        while (stored < expected or raised < len(alarms)) and time.monotonic() < deadline:
            time.sleep(0.1)
            stored, raised = arrived()
        if raised < len(alarms):
            raise TrialRunError(
                f"shift {shift.run_id}: {len(alarms) - raised} of {len(alarms)} of the devices' "
                "own alarms never reached the store"
            )
        if stored < expected:
            raise TrialRunError(
                f"shift {shift.run_id}: {expected - stored:,} of {expected:,} distinct fixes "
                f"never reached the store (alarms: {', '.join(sorted(service.alarms)) or 'none'})"
            )
        dead = admin.counts()["dead_letters"] - dead_before
    finally:
        service.stop()
    return {
        "run_id": shift.run_id,
        "index": shift.index,
        "scenario": shift.scenario_key,
        "scenario_name": shift.scenario_name,
        "site_file": str(shift.scenario.site_file),
        "repeat": shift.repeat,
        "date": shift.date.isoformat(),
        "week": shift.week,
        "night": shift.night,
        "start_ms": shift.start_ms,
        "end_ms": shift.end_ms,
        "seed": shift.seed,
        "devices": [asdict(d) for d in shift.devices],
        "messages_published": done.messages,
        "fixes_stored": stored,
        "dead_letters": dead,
        "publish_seconds": round(done.seconds, 2),
    }


def _clear(out: Path) -> None:
    import shutil

    for name in ("trial.sqlite", "trial.sqlite-wal", "trial.sqlite-shm", MANIFEST):
        (out / name).unlink(missing_ok=True)
    for name in ("sent", "report", "spool"):
        shutil.rmtree(out / name, ignore_errors=True)


def software_version() -> str:
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


def load_manifest(out: Path) -> dict:
    path = out / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except OSError:
        raise TrialError(f"{path}: no trial run here (run `trackfence trial run` first)") from None
    except json.JSONDecodeError as exc:
        raise TrialError(f"{path}: not a trial manifest ({exc})") from None
    if manifest.get("manifest_version") != MANIFEST_VERSION:
        raise TrialError(f"{path}: manifest version {manifest.get('manifest_version')!r} unknown")
    return manifest
