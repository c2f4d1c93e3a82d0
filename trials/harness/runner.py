"""Running a trial: every shift decided as the live service decides, then a manifest.

For each shift of the plan: simulate the devices, keep the truth in the store, and
decide every message the devices send as ingest would for the shift's worksite (each
supplier on the fence it configured), keeping every fix, event and alert. By default
the messages go through ingest's pipeline in-process (trials.harness.replay), at the speed of
the vectorised core; `via_mqtt` (or a broker given) publishes them instead over MQTT
to a live ingest service, on the replay's clock (ingest.replay_clock). Both decide
the same messages at the same arrival times with the same code, and a test holds
them to the same stored rows. Either way the run waits until the store holds every
distinct fix that was sent: a trial never scores data it silently lost.

With no broker given, the MQTT path uses an embedded broker on a free loopback port
(MQTT 3.1.1); with no database, the trial's own SQLite file.

This is the trial's I/O edge, and writes the run's manifest (trials.manifest);
planning (trials.schedule) and scoring (trials.score) are pure.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shlex
import sys
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from devices.sim.alarms import own_alarms
from devices.sim.generate import Simulation, simulate
from devices.sim.publish import Message, ingest_readers, messages, publish, truth_records
from geofence.site import Site
from ingest.settings import IngestSettings
from loading.site_files import load_site, site_geojson, site_id_for
from store import open_store
from trials.collect import SHIFT_MARGIN_MS
from trials.definition import Trial, TrialError
from trials.harness.replay import decide_shift, shift_end_ms
from trials.manifest import (
    HOPS_NOT_MEASURED,
    MANIFEST,
    MANIFEST_VERSION,
    Manifest,
    Phases,
    ShiftRecord,
    input_hashes,
    redact,
    software_version,
)
from trials.schedule import Shift, plan

#: How each shift's messages reached ingest: in-process (trials.harness.replay) or over MQTT.
IN_PROCESS, VIA_MQTT = "in-process", "mqtt"
#: The live path's hops as the latency benchmark last measured them (make bench writes it):
#: a replayed run carries them, labelled, since it measures none of its own.
LIVE_LATENCY = Path(__file__).resolve().parents[2] / "benchmarks" / "live-latency.json"
#: How long to wait for the last fixes of a shift to be stored, beyond a second per 2,000.
SETTLE_S = 30.0
#: The broker a shift decided in-process is configured with, and never connects to.
NO_BROKER = "mqtt://127.0.0.1:1883"

Progress = Callable[[str, int, int], None]


class TrialRunError(RuntimeError):
    """The trial could not be run as defined (nothing is scored from a partial shift)."""


@contextmanager
def _broker(url: str | None) -> Iterator[tuple[str, str]]:
    """(broker URL, MQTT protocol): the given broker (v5), or an embedded one (3.1.1)."""
    if url is not None:
        yield url, "5"
        return
    from ingest.embedded_broker import EMBEDDED_PROTOCOL, EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker.url, EMBEDDED_PROTOCOL


def sites_for(trial: Trial, shift: Shift) -> list[tuple[str, list[str]]]:
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
    via_mqtt: bool = False,
    workers: int | None = None,
    progress: Progress | None = None,
    command: list[str] | None = None,
    replace: bool = False,
) -> Manifest:
    """Run every shift of `trial` end to end; returns (and writes) the run's manifest.

    In-process unless `via_mqtt` or a `broker` is given; in-process, the devices are
    shared out among `workers` processes (default: one per core). A folder that
    already holds a run is refused unless `replace`: then its embedded store, sent
    fixes and reports are removed first (an external store keeps its rows; its
    idempotent keys make the same fixes land once).
    """
    _make_room(trial, out, replace)
    db = db or f"sqlite:///{(out / 'trial.sqlite').resolve()}"
    path = VIA_MQTT if (via_mqtt or broker is not None) else IN_PROCESS
    shifts = plan(trial)
    began = time.monotonic()
    admin = open_store(db)
    try:
        admin.migrate()
    finally:
        admin.close()  # (no connection is open while the deciding processes are forked)
    if path == IN_PROCESS:
        records, phases = _run_in_process(trial, shifts, db, out, workers, progress)
    else:
        records, phases = _run_via_mqtt(trial, shifts, broker, db, out, progress)
    manifest = Manifest(
        manifest_version=MANIFEST_VERSION,
        trial=trial.name,
        trial_file=str(trial.file),
        inputs=input_hashes(trial),
        software=software_version(),
        command=shlex.join(command or sys.argv),
        path=path,
        broker=_broker_name(path, broker),
        db=redact(db),
        decisions=asdict(trial.decisions),
        seconds=round(time.monotonic() - began, 1),
        phases=phases.rounded(),
        live_hops=live_hops(),
        shifts=tuple(records),
    )
    manifest.write(out)
    return manifest


def _broker_name(path: str, broker: str | None) -> str | None:
    """The broker as the manifest names it: none in-process, else the embedded one or the
    given one (its password redacted)."""
    if path == IN_PROCESS:
        return None
    return "embedded (amqtt, MQTT 3.1.1)" if broker is None else redact(broker)


def _make_room(trial: Trial, out: Path, replace: bool) -> None:
    """Refuse what cannot be run here (a real trial, a folder holding a run unless
    `replace`), then make the run's folders, clearing the previous run's."""
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


@dataclass
class Prepared:
    """A shift made ready to decide: its simulation, what its devices send, ingest's setup."""

    sim: Simulation
    site: Site
    wire: list[Message]
    alarms: int  # the devices' own alarms among the messages
    settings: IngestSettings


def _prepare(trial: Trial, shift: Shift, db: str, out: Path, broker_url: str = NO_BROKER,
             protocol: str = "5", devices: Collection[str] | None = None) -> Prepared:  # fmt: skip
    """Simulate a shift and build the messages its devices send (only `devices`' if given),
    and ingest's settings."""
    site = load_site(shift.scenario.site_file)
    sim = simulate(shift.scenario, site)
    # the devices that decide for themselves do so on the fence their supplier configured
    fences = {
        s.key: load_site(s.configured_sites[shift.scenario.site_file])
        for s in trial.suppliers
        if shift.scenario.site_file in s.configured_sites
    }
    workers = None
    if devices is not None:
        workers = [w for w, worker in enumerate(shift.scenario.workers) if worker.device in devices]
    alarms = own_alarms(sim, site, fences, workers)
    wire = messages(sim, shift.start_ms, alarms, workers)
    settings = IngestSettings(
        broker=broker_url,
        db=db,
        # a session per shift: the shift is complete (every fix stored) before its ingest
        # stops, so nothing needs to wait in the broker for the next shift's worker
        client_id=f"trackfence-trial-{shift.run_id}",
        mqtt_protocol=protocol,
        spool=str(out / "spool"),
        sites=sites_for(trial, shift),
        decisions=trial.decisions,
        rfid_readers=ingest_readers(sim, site),  # the scenario's surveyed readers
    )
    return Prepared(sim, site, wire, len(alarms), settings)


def _record(shift: Shift, path: str, messages_sent: int, stored: int, dead_letters: int,
            seconds: float, ingest_alarms: list[str]) -> ShiftRecord:  # fmt: skip
    """A shift as the manifest keeps it."""
    return ShiftRecord(
        run_id=shift.run_id,
        index=shift.index,
        scenario=shift.scenario_key,
        scenario_name=shift.scenario_name,
        site_file=str(shift.scenario.site_file),
        repeat=shift.repeat,
        date=shift.date.isoformat(),
        week=shift.week,
        night=shift.night,
        start_ms=shift.start_ms,
        end_ms=shift.end_ms,
        seed=shift.seed,
        devices=tuple(shift.devices),
        messages_published=messages_sent,
        fixes_stored=stored,
        dead_letters=dead_letters,
        path=path,
        hops=HOPS_NOT_MEASURED,
        ingest_alarms=tuple(ingest_alarms),
        publish_seconds=round(seconds, 2),
    )


def _check_stored(store, shift: Shift, expected: int, alarms: int) -> int:
    """The shift's fixes stored; TrialRunError if any distinct fix or own alarm is missing."""
    devices = [w.device for w in shift.scenario.workers]
    since, until = shift.start_ms - SHIFT_MARGIN_MS, shift.end_ms + SHIFT_MARGIN_MS
    stored = store.fix_count(devices, since, until)
    raised = len(store.device_alarms(since_ms=since, until_ms=until))
    if raised < alarms:
        raise TrialRunError(
            f"shift {shift.run_id}: {alarms - raised} of {alarms} of the devices' own alarms "
            "never reached the store"
        )
    if stored < expected:
        raise TrialRunError(
            f"shift {shift.run_id}: {expected - stored:,} of {expected:,} distinct fixes never "
            "reached the store"
        )
    return stored


# ---------------------------------------------------------------------- in-process
def _run_in_process(trial: Trial, shifts: list[Shift], db: str, out: Path, workers: int | None,
                    progress: Progress | None) -> tuple[list[ShiftRecord], Phases]:  # fmt: skip
    """Every shift decided in-process, the devices shared out among worker processes.

    A device's decisions depend on its own messages and on its own last stored fix
    only (trials.harness.replay), so each process takes a share of the devices through every
    shift in date order, and the store ends up holding what one process would have
    written. The processes are forked; each opens its own connection to the store.
    """
    parts = _device_parts(shifts, workers or os.cpu_count() or 1)
    forking = len(parts) > 1 and "fork" in mp.get_all_start_methods()
    if not forking:
        parts = [frozenset().union(*parts)]
    total = len(parts) * len(shifts)
    if forking:
        for shift in shifts:  # compiled once here, shared by every forked process
            for file, _ in sites_for(trial, shift):
                load_site(file)
        context = mp.get_context("fork")
        done = context.Value("q", 0)
        with ProcessPoolExecutor(len(parts), mp_context=context,
                                 initializer=_share_counter, initargs=(done,)) as pool:  # fmt: skip
            futures = [
                pool.submit(_decide_part, trial, shifts, db, out, part, k == 0)
                for k, part in enumerate(parts)
            ]
            while not all(f.done() for f in futures):
                if progress:
                    progress("deciding the shifts (device-shifts done)", done.value, total)
                time.sleep(0.2)
            partials = [f.result() for f in futures]
    else:
        partials = [_decide_part(trial, shifts, db, out, parts[0], True, progress)]
    if progress:
        progress("deciding the shifts (device-shifts done)", total, total)
    phases = Phases(workers=len(parts))
    records = []
    store = open_store(db)
    try:
        for k, shift in enumerate(shifts):
            mine = [p[k] for p in partials]
            for p in mine:
                phases += p["phases"]
            alarms = sum(p["alarms"] for p in mine)
            stored = _check_stored(store, shift, mine[0]["expected"], alarms)
            records.append(_record(
                shift, IN_PROCESS, sum(p["messages"] for p in mine), stored,
                sum(p["dead_letters"] for p in mine), max(p["seconds"] for p in mine), [],
            ))  # fmt: skip
    finally:
        store.close()
    return records, phases


def _device_parts(shifts: list[Shift], workers: int) -> list[frozenset[str]]:
    """The trial's devices dealt out in turn (suppliers' formats cost differently)."""
    devices = sorted({d.device_id for s in shifts for d in s.devices})
    count = max(1, min(workers, len(devices)))
    return [frozenset(devices[k::count]) for k in range(count)]


_DONE = None  # the forked deciders' shared count of device-shifts done


def _share_counter(counter) -> None:
    global _DONE
    _DONE = counter


def _decide_part(trial: Trial, shifts: list[Shift], db: str, out: Path, devices: frozenset[str],
                 keeper: bool, progress: Progress | None = None) -> list[dict]:  # fmt: skip
    """Decide `devices`' share of every shift, in date order; `keeper` also keeps what the
    whole shift shares (the sent record and the sites)."""
    store = open_store(db)
    results = []
    try:
        for shift in shifts:
            began = time.perf_counter()
            ready = _prepare(trial, shift, db, out, devices=devices)
            wire = ready.wire
            simulate_s = time.perf_counter() - began
            began = time.perf_counter()
            mine = [w for w, x in enumerate(shift.scenario.workers) if x.device in devices]
            store.write_truth(*truth_records(ready.sim, shift.run_id, shift.start_ms, mine))
            truth_s = time.perf_counter() - began
            began = time.perf_counter()
            if keeper:
                save_sent(ready.sim, shift, out / "sent")
                save_sites(store, ready.settings, trial.name)
            store_s = time.perf_counter() - began
            label = f"shift {shift.index + 1}/{len(shifts)} {shift.run_id}"
            shown = (lambda i, n, label=label: progress(label, i, n)) if progress else None
            end = shift_end_ms(ready.sim, shift.start_ms, ready.settings)
            done = decide_shift(ready.settings, store, wire, shown, devices=devices, end_ms=end)
            phases = Phases(
                simulate_s=simulate_s,
                decide_s=done.decide_s,
                store_s=store_s + done.store_s,
                truth_s=truth_s,
                fixes=sum(1 for m in wire if m.topic.endswith(("/fix", "/rfid"))),
            )
            results.append({
                "phases": phases, "messages": len(wire), "fixes": len(ready.sim.fixes),
                "expected": _distinct_fixes(ready.sim), "dead_letters": done.dead_letters,
                "alarms": sum(1 for m in wire if m.topic.endswith("/alarm")),
                "seconds": done.decide_s + done.store_s,
            })  # fmt: skip
            if _DONE is not None:
                with _DONE.get_lock():
                    _DONE.value += 1
    finally:
        store.close()
    return results


# ---------------------------------------------------------------------- over MQTT
def _run_via_mqtt(trial: Trial, shifts: list[Shift], broker: str | None, db: str, out: Path,
                  progress: Progress | None) -> tuple[list[ShiftRecord], Phases]:  # fmt: skip
    """Every shift published over MQTT to a live ingest service, one shift at a time."""
    phases = Phases()
    records = []
    store = open_store(db)
    try:
        with _broker(broker) as (url, protocol):
            for shift in shifts:
                label = f"shift {shift.index + 1}/{len(shifts)} {shift.run_id}"
                shown = (lambda i, n, label=label: progress(label, i, n)) if progress else None
                began = time.perf_counter()
                ready = _prepare(trial, shift, db, out, url, protocol)
                simulate_s = time.perf_counter() - began
                began = time.perf_counter()
                store.write_truth(*truth_records(ready.sim, shift.run_id, shift.start_ms))
                truth_s = time.perf_counter() - began
                began = time.perf_counter()
                save_sent(ready.sim, shift, out / "sent")
                save_sites(store, ready.settings, trial.name)
                store_s = time.perf_counter() - began
                dead_before = store.counts()["dead_letters"]
                raised: list[str] = []
                began = time.perf_counter()
                seconds = _via_mqtt(ready, shift, shown, raised)
                decide_s = time.perf_counter() - began
                phases += Phases(simulate_s, decide_s, store_s, truth_s, len(ready.sim.fixes))
                stored = _check_stored(store, shift, _distinct_fixes(ready.sim), ready.alarms)
                dead = store.counts()["dead_letters"] - dead_before
                records.append(_record(shift, VIA_MQTT, len(ready.wire), stored, dead, seconds,
                                       raised))  # fmt: skip
    finally:
        store.close()
    return records, phases


def _via_mqtt(ready: Prepared, shift: Shift, progress: Callable[[int, int], None] | None,
              raised: list[str]) -> float:  # fmt: skip
    """Publish the shift over MQTT to a live ingest service on the replay's clock; returns
    the seconds publishing took, once the service has taken every message. The service's
    alarms still on at the end are added to `raised`."""
    from ingest.replay_clock import ReplayClock
    from ingest.service import IngestService

    wire, settings = ready.wire, ready.settings
    clock = ReplayClock(((m.topic, m.payload, m.send_ms) for m in wire), shift.start_ms)
    service = IngestService(settings, clock_ms=clock, receipt=clock.receive)
    service.start()
    try:
        if not service.subscribed.wait(15):
            raise TrialRunError(
                f"ingest could not subscribe at the broker {settings.broker} "
                f"(alarms: {', '.join(sorted(service.alarms)) or 'none'})"
            )
        done = publish(ready.sim, settings.broker, shift.start_ms,
                       mqtt_protocol=settings.mqtt_protocol, progress=progress,
                       sent=wire)  # fmt: skip
        deadline = time.monotonic() + SETTLE_S + len(wire) / 2000
        while not (clock.complete and service.waiting == 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        # every message received and taken to be decided: the shift is over, and the
        # service takes its last look for silent devices at its end, after them
        end = shift_end_ms(ready.sim, shift.start_ms, settings)
        clock.finish(end)
        while (service.ticked_ms or 0) < end and time.monotonic() < deadline:
            time.sleep(0.05)
        raised.extend(sorted(service.alarms))
    finally:
        service.stop()  # the writer finishes what it holds first
    return done.seconds


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


