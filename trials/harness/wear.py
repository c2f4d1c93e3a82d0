"""Wearing a simulated shift live: its fixes sent at their real pace to a live ingest.

A real trial's data is what ingest stored while devices were worn on track, in the
receiving clock of that day. To exercise that path end to end (the example real
trial, its test) a simulated shift is worn "now": its times are wall-clock times,
its fixes are published through MQTT as they fall due, ingest decides and stores
them live, and the wearers' truth is exported as the reference tracks and the shift
log a trial manager would hand over. Then `trackfence trial score` takes it from
there exactly as it would a real one.

This is an edge (a broker, a store, the clock): the scoring stays pure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from devices.sim.alarms import own_alarms
from devices.sim.generate import Simulation, simulate
from devices.sim.publish import publish
from devices.sim.references import (
    reference_track,
    shift_log_rows,
    write_reference,
    write_shift_log,
)
from ingest.service import IngestService
from ingest.settings import IngestSettings
from loading.site_files import load_site
from store import open_store
from trials.definition import Trial
from trials.harness.runner import sites_for
from trials.schedule import Shift


@dataclass(frozen=True)
class Worn:
    shift: Shift  # as worn: its start is the wall-clock time it began
    sim: Simulation
    shift_log: Path
    references: dict[str, Path]


def wear_live(
    trial: Trial,
    shift: Shift,
    folder: Path,
    broker_url: str,
    db: str,
    *,
    client_id: str = "trackfence-ingest-live",
    accuracy_m: float = 0.02,
    settle_s: float = 30.0,
    site_label: str | None = None,
    mqtt_protocol: str = "5",
) -> Worn:
    """Wear `shift` now: publish it at its real pace to a live ingest on `db`, then write
    each wearer's reference (GPX) and the shift log (CSV) into `folder`; the log names
    the site as `site_label` (default its absolute path)."""
    site = load_site(shift.scenario.site_file)
    start_ms = (int(time.time()) + 5) * 1000  # the shift starts now: wall clock is its clock
    shift = replace(shift, start_ms=start_ms)
    sim = simulate(shift.scenario, site)
    fences = {
        s.key: load_site(s.configured_sites[shift.scenario.site_file])
        for s in trial.suppliers
        if shift.scenario.site_file in s.configured_sites
    }
    alarms = own_alarms(sim, site, fences)
    store = open_store(db)
    store.migrate()
    service = IngestService(
        IngestSettings(
            broker=broker_url,
            db=db,
            client_id=client_id,
            spool=str(folder / "spool"),
            sites=sites_for(trial, shift),
            decisions=trial.decisions,
            mqtt_protocol=mqtt_protocol,
        )
    )
    service.start()
    try:
        if not service.subscribed.wait(15):
            raise RuntimeError(f"ingest could not subscribe at {broker_url}")
        # publish() paces from its first send: begin at that send's planned wall-clock time
        first_send_ms = start_ms + int(sim.fixes.send_ms[0])
        time.sleep(max(0.0, first_send_ms / 1000 - time.time()))
        publish(
            sim, broker_url, start_ms, alarms=alarms, realtime=True, mqtt_protocol=mqtt_protocol
        )
        devices = [w.device for w in sim.scenario.workers]
        pairs = zip(sim.fixes.worker, sim.fixes.seq, strict=True)
        expected = len({(int(w), int(q)) for w, q in pairs})
        window = (start_ms - 60_000, shift.end_ms + 60_000)
        deadline = time.monotonic() + settle_s
        while store.fix_count(devices, *window) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError("the live fixes never all reached the store")
            time.sleep(0.2)
    finally:
        service.stop()
        store.close()
    references = {}
    for person in dict.fromkeys(w.person for w in sim.scenario.workers):
        path = folder / "references" / f"{person.replace(' ', '-')}.gpx"
        write_reference(path, *reference_track(sim, person, site, start_ms, rate_hz=10))
        references[person] = path
    rows = shift_log_rows(
        sim,
        site_label or str(shift.scenario.site_file),
        shift.scenario_key,
        start_ms,
        {p: str(path.relative_to(folder)) for p, path in references.items()},
        accuracy_m,
    )
    return Worn(shift, sim, write_shift_log(folder / "shifts.csv", rows), references)
