"""Soak and step load on real Mosquitto and TimescaleDB (benchmarks, not CI).

Soak: 2,000 fixes/s from 200 devices, every fix changing its device's state (so every
fix is decided, alerted and kept), for TRACKFENCE_SOAK_S seconds (the issue's hour is
3600; the default is shorter). Each minute: the alert round trip p50/p99 and the
worker's resident memory. At the end: every fix stored once.

Step load: 1,000 → 16,000 fixes/s offered, 15 s a step, plain fixes (alerts on every
other one). Per step: what was offered, what was kept per second, how far the store
fell behind, and the worker's alarms: where it saturates, and that it shows it
(back-pressure, not silent loss).

The last results are written to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import numpy as np
import psutil

from benchmarks.conftest import NOTES
from benchmarks.test_ingest_speed import (
    DEVICES,
    fresh_database,
    load,
    round_trip,
    start_ingest,
    stop,
    stored,
)

SOAK_S = int(os.environ.get("TRACKFENCE_SOAK_S", 300))
SOAK_RATE = 2000.0
STEPS = (1000.0, 2000.0, 4000.0, 8000.0, 16000.0)
STEP_S = 15
RESULTS = Path(__file__).parent / "RESULTS.md"


def _record(section: str, text: str) -> None:
    """Keep each benchmark's last result in RESULTS.md, replacing its previous one."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Last results of the long benchmarks\n"
    head, _, rest = old.partition(f"\n## {section}\n")
    tail = rest.split("\n## ", 1)[1] if "\n## " in rest else ""
    body = f"\n## {section}\n\n{text.strip()}\n"
    RESULTS.write_text(head.rstrip("\n") + "\n" + body + (f"\n## {tail}" if tail else ""))


def test_soak_two_thousand_fixes_a_second(servers, tmp_path):
    broker, db = servers
    worker, store = start_ingest(tmp_path, broker, fresh_database(db), every_fix_alerts=True)
    process = psutil.Process(worker.pid)
    minutes = []
    seq = 10_000_000
    try:
        began = time.monotonic()
        while time.monotonic() - began < SOAK_S:
            chunk = min(60, SOAK_S - int(time.monotonic() - began))
            if chunk < 5:
                break
            result = round_trip(broker.port, seq, SOAK_RATE, chunk)
            seq += int(SOAK_RATE * chunk)
            minutes.append(
                {
                    "minute": len(minutes) + 1,
                    "p50_ms": result["p50_ms"],
                    "p99_ms": result["p99_ms"],
                    "answered": result["answered"],
                    "sent": result["sent"],
                    "rss_mib": process.memory_info().rss / 2**20,
                }
            )
        expected = sum(m["sent"] for m in minutes) + 1  # and the warm-up fix
        deadline = time.monotonic() + 120
        while stored(store) < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        kept = stored(store)
    finally:
        stop(worker)
        store.close()
    p99 = [m["p99_ms"] for m in minutes]
    rss = [m["rss_mib"] for m in minutes]
    table = "\n".join(
        f"| {m['minute']} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | {m['rss_mib']:.0f} |"
        for m in minutes
    )
    _record(
        "Soak",
        f"{dt.date.today()}: {len(minutes)} min at {SOAK_RATE:.0f} fixes/s from {DEVICES} devices "
        f"(every fix alerted), real Mosquitto and TimescaleDB on loopback.\n\n"
        f"Stored {kept - 1:,} of {expected - 1:,} fixes, each once. Alert round trip p99 per "
        f"minute: {min(p99):.1f} to {max(p99):.1f} ms. Worker memory: {rss[0]:.0f} MiB after "
        f"the first minute, {rss[-1]:.0f} MiB after the last.\n\n"
        "| minute | p50 ms | p99 ms | worker RSS MiB |\n|---|---|---|---|\n" + table,
    )
    NOTES["soak"] = (
        f"soak {len(minutes)} min at {SOAK_RATE:.0f}/s: stored {kept - 1:,}/{expected - 1:,}; "
        f"p99 {min(p99):.1f}-{max(p99):.1f} ms; RSS {rss[0]:.0f} -> {rss[-1]:.0f} MiB"
    )
    assert kept == expected  # zero loss is the point of a soak, not a speed


def test_step_load_to_saturation(servers, tmp_path):
    broker, db = servers
    worker, store = start_ingest(tmp_path, broker, fresh_database(db), every_fix_alerts=False)
    rows = []
    seq = 50_000_000
    try:
        for rate in STEPS:
            before = stored(store)
            began = time.perf_counter()
            out = load(broker.port, seq, int(rate * STEP_S), rate)
            offered = float(out.stdout.split()[1])
            published_s = time.perf_counter() - began
            during = stored(store) - before
            seq += int(rate * STEP_S)
            drained_at = time.perf_counter()
            while (
                stored(store) - before < int(rate * STEP_S)
                and time.perf_counter() - drained_at < 120
            ):
                time.sleep(0.2)
            caught_up_s = time.perf_counter() - drained_at
            rows.append(
                {
                    "asked": rate,
                    "offered": offered,
                    "kept_per_s": during / published_s,
                    "behind": int(rate * STEP_S) - during,
                    "caught_up_s": caught_up_s,
                    "all_kept": stored(store) - before == int(rate * STEP_S),
                }
            )
    finally:
        stop(worker)
        store.close()
    saturated = next((r["asked"] for r in rows if r["kept_per_s"] < 0.9 * r["offered"]), None)
    table = "\n".join(
        f"| {r['asked']:.0f} | {r['offered']:.0f} | {r['kept_per_s']:.0f} | {r['behind']:,} | "
        f"{r['caught_up_s']:.1f} | {'yes' if r['all_kept'] else 'NO'} |"
        for r in rows
    )
    _record(
        "Step load",
        f"{dt.date.today()}: {STEP_S} s a step, {DEVICES} devices, real Mosquitto and "
        "TimescaleDB on loopback, broker, database, worker and load generator on one 2-core "
        "machine.\n\n"
        + (
            f"Saturates at about {saturated:.0f} fixes/s asked: beyond it the worker keeps "
            "less than it is offered, the broker queues the rest (the worker acknowledges "
            "only what it has kept), and the backlog is worked off after the step: nothing "
            "is lost.\n\n"
            if saturated
            else "Did not saturate within the steps.\n\n"
        )
        + "| asked /s | offered /s | kept /s during | behind at step end | caught up after s "
        "| all kept |\n|---|---|---|---|---|---|\n" + table,
    )
    NOTES["step"] = f"step load: saturates at ~{saturated} fixes/s asked" if saturated else ""
    assert all(r["all_kept"] for r in rows)
    assert np.isfinite([r["kept_per_s"] for r in rows]).all()
