"""Scoring a real trial: what ingest stored during the shifts, against the reference tracks.

A real trial is not run by trackfence: the devices were worn on track, ingest
decided and stored their fixes live, and the wearers' reference tracks were
exported afterwards. This edge turns the shift log (trials.shiftlog) into the
same manifest a simulated run writes (trials.manifest), after putting each
reference into the store as the shift's truth, resampled at the truth rate and
with its excursions labelled by the surveyed fence exactly as a simulated truth
is. From there the scoring is the simulated trial's own (trials.collect,
trials.score): one path, every definition identical.

Idempotent: the truth is keyed by run, device and time, so re-scoring writes
nothing twice.
"""

from __future__ import annotations

import datetime as dt
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from devices.sim.generate import TRUTH_HZ, Truth, label_excursions
from devices.sim.recordings import read_track
from geofence.site import Site
from loading.site_files import load_site
from store import Store, TrueExcursion, TruthSamples
from trials.definition import Trial, config_hash
from trials.manifest import (
    MANIFEST_VERSION,
    Manifest,
    ReferenceRecord,
    ShiftRecord,
    WornDevice,
    input_hashes,
    redact,
    software_version,
)
from trials.shiftlog import RealShift


def reference_truth(
    reference: Path, site: Site, start_ms: int, end_ms: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Truth]:
    """A wearer's reference track over a shift, at the truth rate, in the site's frame.

    Returns epoch times, x, y, the exact signed distance to the safe-zone edge, and
    the Truth (times from the shift's start) the excursions are labelled on.
    """
    track = read_track(reference)
    step_ms = round(1000 / TRUTH_HZ)
    t_ms = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
    lat = np.interp(t_ms, track["time_ms"], track["lat"])
    lon = np.interp(t_ms, track["time_ms"], track["lon"])
    x, y = site.locate(lat, lon)
    distance = site.exact_distance_m(x, y)
    truth = Truth(
        t_ms - start_ms,
        np.full((1, t_ms.size), np.nan),
        x[None],
        y[None],
        (distance > 0)[None],
        distance[None],
        np.zeros(0),
        np.zeros(0),
    )
    return t_ms, x, y, distance, truth


def _worn(trial: Trial, shift: RealShift, week: int) -> list[WornDevice]:
    out = []
    for wearer in shift.wearers:
        for device_id in wearer.devices:
            supplier_key, name = device_id.split("/", 1)
            supplier = trial.supplier(supplier_key)
            device = next(d for d in supplier.devices if d.id == name)
            firmware, configuration = device.on_week(week)
            out.append(
                WornDevice(
                    device_id,
                    supplier_key,
                    wearer.name,
                    firmware,
                    configuration,
                    config_hash(configuration),
                )
            )
    return out


def import_truth(trial: Trial, shift: RealShift, site: Site, store: Store) -> None:
    """Each wearer's reference as the truth of every device they wore on the shift."""
    for wearer in shift.wearers:
        t_ms, x, y, distance, truth = reference_truth(
            wearer.reference, site, shift.start_ms, shift.end_ms
        )
        excursions = label_excursions(truth)
        for device_id in wearer.devices:
            samples = TruthSamples(
                shift.run_id,
                [device_id] * t_ms.size,
                t_ms.tolist(),
                x.tolist(),
                y.tolist(),
                (distance > 0).tolist(),
                distance.tolist(),
            )
            found = [
                TrueExcursion(
                    shift.run_id,
                    device_id,
                    shift.start_ms + int(s),
                    shift.start_ms + int(e),
                    float(d),
                )
                for s, e, d in zip(
                    excursions.start_ms, excursions.end_ms, excursions.depth_m, strict=True
                )
            ]
            store.write_truth(samples, found)


def live_manifest(
    trial: Trial, store: Store, db: str, command: list[str] | None = None
) -> Manifest:
    """The manifest of a real trial, with every shift's truth imported into the store."""
    sites: dict[Path, Site] = {}
    records = []
    repeats: dict[str, int] = {}
    for shift in trial.shifts:
        if shift.site_file not in sites:
            sites[shift.site_file] = load_site(shift.site_file)
        import_truth(trial, shift, sites[shift.site_file], store)
        repeat = repeats.get(shift.scenario, 0)
        repeats[shift.scenario] = repeat + 1
        records.append(_record(trial, shift, repeat, store))
    return Manifest(
        manifest_version=MANIFEST_VERSION,
        kind="live",
        trial=trial.name,
        trial_file=str(trial.file),
        inputs=input_hashes(trial),
        software=software_version(),
        command=shlex.join(command or sys.argv),
        broker="live devices (the store ingest kept during the shifts)",
        db=redact(db),
        decisions=asdict(trial.decisions),
        seconds=0.0,
        scored_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        shifts=tuple(records),
    )


def _record(trial: Trial, shift: RealShift, repeat: int, store: Store) -> ShiftRecord:
    """A real shift as the manifest keeps it: its wearers' references, and what the store
    holds of its devices (nothing of their sending was recorded)."""
    week = (shift.date - trial.start_date).days // 7 + 1
    devices = _worn(trial, shift, week)
    stored = store.fix_count([d.device_id for d in devices], shift.start_ms, shift.end_ms)
    return ShiftRecord(
        run_id=shift.run_id,
        index=shift.index,
        scenario=shift.scenario,
        scenario_name=shift.scenario,
        site_file=str(shift.site_file),
        repeat=repeat,
        date=shift.date.isoformat(),
        week=week,
        night=shift.night,
        start_ms=shift.start_ms,
        end_ms=shift.end_ms,
        seed=None,
        devices=tuple(devices),
        live=True,
        references={
            w.name: ReferenceRecord(str(w.reference), w.reference_accuracy_m)
            for w in shift.wearers
        },
        messages_published=None,
        fixes_stored=stored,
        dead_letters=None,
        publish_seconds=None,
    )
