"""Running a trial: every shift decided as the live service decides, then a manifest.

For each shift of the plan: simulate the devices, keep the truth in the store, and
decide every message the devices send as ingest would for the shift's worksite (each
supplier on the fence it configured), keeping every fix, event and alert. By default
the messages go through ingest's pipeline in-process (trials.replay), at the speed of
the vectorised core; `via_mqtt` (or a broker given) publishes them instead over MQTT
to a live ingest service, on the replay's clock (ingest.replay_clock). Both decide
the same messages at the same arrival times with the same code, and a test holds
them to the same stored rows. Either way the run waits until the store holds every
distinct fix that was sent: a trial never scores data it silently lost.

With no broker given, the MQTT path uses an embedded broker on a free loopback port
(MQTT 3.1.1); with no database, the trial's own SQLite file.

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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import numpy as np

from devices.sim.alarms import own_alarms
from devices.sim.generate import Simulation, simulate
from devices.sim.publish import Message, ingest_readers, messages, publish, truth_records
from geofence.site import Site
from ingest.settings import IngestSettings
from store import open_store
from trackfence.sites import load_site, site_geojson, site_id_for
from trials.collect import HOPS_NOT_MEASURED, SHIFT_MARGIN_MS
from trials.definition import Trial, TrialError
from trials.replay import decide_shift, shift_end_ms
from trials.schedule import Shift, plan

MANIFEST = "manifest.json"
MANIFEST_VERSION = 2
#: How each shift's messages reached ingest: in-process (trials.replay) or over MQTT.
IN_PROCESS, VIA_MQTT = "in-process", "mqtt"
#: The live path's hops as the latency benchmark last measured them (make bench writes it):
#: a replayed run carries them, labelled, since it measures none of its own.
LIVE_LATENCY = Path(__file__).resolve().parents[1] / "benchmarks" / "live-latency.json"
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
def _broker(url: str | None, wanted: bool = True) -> Iterator[tuple[str, str]]:
    """(broker URL, MQTT protocol): the given broker (v5), or an embedded one (3.1.1);
    none at all when not `wanted` (a run decided in-process)."""
    if not wanted:
        yield "mqtt://127.0.0.1:1883", "5"  # never connected to: ingest runs in-process
        return
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


@dataclass
class Phases:
    """Where a run's time went, for the progress it prints and its manifest."""

    simulate_s: float = 0.0
    decide_s: float = 0.0
    store_s: float = 0.0
    truth_s: float = 0.0  # written on its own thread, alongside the decisions
    fixes: int = 0

    def line(self, shifts: int) -> str:
        def rate(seconds: float) -> str:
            return f"{self.fixes / seconds:,.0f} fixes/s" if seconds > 0 else "-"

        return (
            f"{shifts} shifts, {self.fixes:,} fixes: simulated in {self.simulate_s:.1f} s "
            f"({rate(self.simulate_s)}), decided in {self.decide_s:.1f} s "
            f"({rate(self.decide_s)}), stored in {self.store_s:.1f} s ({rate(self.store_s)}) "
            f"with the truth written alongside in {self.truth_s:.1f} s"
        )


def run_trial(
    trial: Trial,
    out: Path,
    *,
    broker: str | None = None,
    db: str | None = None,
    via_mqtt: bool = False,
    progress: Progress | None = None,
    command: list[str] | None = None,
    replace: bool = False,
) -> dict:
    """Run every shift of `trial` end to end; returns (and writes) the run's manifest.

    In-process unless `via_mqtt` or a `broker` is given. A folder that already holds a
    run is refused unless `replace`: then its embedded store, sent fixes and reports
    are removed first (an external store keeps its rows; its idempotent keys make the
    same fixes land once).
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
    path = VIA_MQTT if (via_mqtt or broker is not None) else IN_PROCESS
    shifts = plan(trial)
    began = time.monotonic()
    phases = Phases()
    admin = open_store(db)  # sites and checks; ingest (live or in-process) writes the rest
    writer_store = None
    try:
        admin.migrate()
        writer_store = open_store(db)  # the truth, from its own thread
        records = []
        with (
            _broker(broker if path == VIA_MQTT else None, path == VIA_MQTT) as (url, protocol),
            ThreadPoolExecutor(1, thread_name_prefix="truth-writer") as writer,
        ):
            for shift in shifts:
                label = f"shift {shift.index + 1}/{len(shifts)} {shift.run_id}"
                shown = (lambda i, n, label=label: progress(label, i, n)) if progress else None
                records.append(
                    _run_shift(trial, shift, path, url, protocol, db, admin, writer,
                               writer_store, out, phases, shown)
                )  # fmt: skip
    finally:
        if writer_store is not None:
            writer_store.close()
        admin.close()
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "trial": trial.name,
        "trial_file": str(trial.file),
        "inputs": {str(p): sha256_file(p) for p in input_files(trial)},
        "software": software_version(),
        "command": shlex.join(command or sys.argv),
        "path": path,
        "broker": (
            None
            if path == IN_PROCESS
            else "embedded (amqtt, MQTT 3.1.1)"
            if broker is None
            else redact(broker)
        ),
        "db": redact(db),
        "decisions": asdict(trial.decisions),
        "seconds": round(time.monotonic() - began, 1),
        "phases": {k: round(v, 2) for k, v in asdict(phases).items()},
        "live_hops": live_hops(),
        "shifts": records,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _settings(trial: Trial, shift: Shift, sim: Simulation, site: Site, broker_url: str,
              protocol: str, db: str, out: Path) -> IngestSettings:  # fmt: skip
    """Ingest as configured for the shift: its sites, the trial's decisions, its readers."""
    return IngestSettings(
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


def _run_shift(
    trial: Trial,
    shift: Shift,
    path: str,
    broker_url: str,
    protocol: str,
    db: str,
    admin,
    writer: ThreadPoolExecutor,
    writer_store,
    out: Path,
    phases: Phases,
    progress: Callable[[int, int], None] | None,
) -> dict:
    began = time.perf_counter()
    site = load_site(shift.scenario.site_file)
    sim = simulate(shift.scenario, site)
    # the devices that decide for themselves do so on the fence their supplier configured
    fences = {
        s.key: load_site(s.configured_sites[shift.scenario.site_file])
        for s in trial.suppliers
        if shift.scenario.site_file in s.configured_sites
    }
    alarms = own_alarms(sim, site, fences)
    wire = messages(sim, shift.start_ms, alarms)
    settings = _settings(trial, shift, sim, site, broker_url, protocol, db, out)
    phases.simulate_s += time.perf_counter() - began
    began = time.perf_counter()
    truth = truth_records(sim, shift.run_id, shift.start_ms)
    # the truth (10 Hz for every wearer) is written on its own connection while the
    # shift is decided: its database time overlaps the decisions' Python time
    truth_written = writer.submit(_timed, writer_store.write_truth, *truth)
    save_sent(sim, shift, out / "sent")
    save_sites(admin, settings, trial.name)
    phases.store_s += time.perf_counter() - began
    expected = _distinct_fixes(sim)
    devices = [w.device for w in shift.scenario.workers]
    window = (shift.start_ms - SHIFT_MARGIN_MS, shift.end_ms + SHIFT_MARGIN_MS)
    began = time.perf_counter()
    service_alarms: list[str] = []
    if path == IN_PROCESS:
        done = decide_shift(settings, admin, wire, progress)
        phases.decide_s += done.decide_s
        phases.store_s += done.store_s
        seconds = done.decide_s + done.store_s
        dead_letters = done.dead_letters
    else:
        dead_before = admin.counts()["dead_letters"]
        seconds = _via_mqtt(settings, sim, shift, wire, admin, devices, window, expected,
                            len(alarms), progress, service_alarms)  # fmt: skip
        phases.decide_s += time.perf_counter() - began
        dead_letters = admin.counts()["dead_letters"] - dead_before
    phases.truth_s += truth_written.result()
    phases.fixes += len(sim.fixes)
    stored = admin.fix_count(devices, *window)
    raised = len(admin.device_alarms(since_ms=window[0], until_ms=window[1]))
    if raised < len(alarms):
        raise TrialRunError(
            f"shift {shift.run_id}: {len(alarms) - raised} of {len(alarms)} of the devices' "
            "own alarms never reached the store"
        )
    if stored < expected:
        raise TrialRunError(
            f"shift {shift.run_id}: {expected - stored:,} of {expected:,} distinct fixes "
            "never reached the store"
        )
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
        "messages_published": len(wire),
        "fixes_stored": stored,
        "dead_letters": dead_letters,
        "path": path,
        "hops": HOPS_NOT_MEASURED,
        "ingest_alarms": service_alarms,
        "publish_seconds": round(seconds, 2),
    }


def _via_mqtt(
    settings: IngestSettings,
    sim: Simulation,
    shift: Shift,
    wire: list[Message],
    admin,
    devices: list[str],
    window: tuple[int, int],
    expected: int,
    alarms: int,
    progress: Callable[[int, int], None] | None,
    raised: list[str],
) -> float:
    """Publish the shift over MQTT to a live ingest service on the replay's clock; returns
    the seconds publishing took, once the store holds everything (or the wait ran out).
    The service's alarms still on at the end are added to `raised`."""
    from ingest.replay_clock import ReplayClock
    from ingest.service import IngestService

    clock = ReplayClock(((m.topic, m.payload, m.send_ms) for m in wire), shift.start_ms)
    service = IngestService(settings, clock_ms=clock, receipt=clock.receive)
    service.start()
    try:
        if not service.subscribed.wait(15):
            raise TrialRunError(
                f"ingest could not subscribe at the broker {settings.broker} "
                f"(alarms: {', '.join(sorted(service.alarms)) or 'none'})"
            )
        done = publish(sim, settings.broker, shift.start_ms, mqtt_protocol=settings.mqtt_protocol,
                       progress=progress, sent=wire)  # fmt: skip
        deadline = time.monotonic() + SETTLE_S + len(wire) / 2000
        while not (clock.complete and service.waiting == 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        # every message received and taken to be decided: the shift is over, and the
        # service takes its last look for silent devices at its end, after them
        end = shift_end_ms(wire, settings)
        clock.finish(end)
        while (service.ticked_ms or 0) < end and time.monotonic() < deadline:
            time.sleep(0.05)
        raised.extend(sorted(service.alarms))
    finally:
        service.stop()
    return done.seconds


def _timed(work: Callable[..., object], *args: object) -> float:
    """Run `work(*args)`; the seconds it took."""
    began = time.perf_counter()
    work(*args)
    return time.perf_counter() - began


def live_hops() -> dict | None:
    """The latency benchmark's last figures for the live alert path, or None if none."""
    try:
        figures = json.loads(LIVE_LATENCY.read_text())
    except (OSError, ValueError):
        return None
    return figures if isinstance(figures, dict) else None


def save_sites(store, settings: IngestSettings, trial_name: str) -> None:
    """Keep the shift's sites in the store, so the console draws what was decided on.

    Each site (the surveyed worksite and every supplier's configured fence) is kept
    under its file's name, as a new version only when its fences changed.
    """
    for file, _ in settings.sites:
        path = Path(file)
        site = load_site(path)
        document = json.dumps(site_geojson(site), separators=(",", ":"))
        site_id = site_id_for(path)
        versions = store.site_versions(site_id)
        if versions and versions[-1].document == document:
            continue
        store.save_site_version(site_id, document, "trackfence trial run",
                                f"{trial_name}: {site.name}")  # fmt: skip


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
