"""Shared workload and a closing table of ratios (ours against the peers, same run)."""

from __future__ import annotations

import pytest

RESULTS: dict[str, float] = {}  # name -> fixes per second (median)
NOTES: dict[str, str] = {}


@pytest.fixture(scope="module")
def servers():
    """A real Mosquitto and TimescaleDB on loopback, for the ingest and load benchmarks."""
    from tests.servers import Mosquitto, TimescaleDB

    broker, db = Mosquitto().start(), TimescaleDB().start()
    yield broker, db
    broker.close()
    db.close()


@pytest.fixture(scope="session")
def workload():
    from benchmarks.workload import reference_workload

    return reference_workload()


def record(name: str, benchmark, fixes: int) -> None:
    RESULTS[name] = fixes / benchmark.stats.stats.median


def pytest_terminal_summary(terminalreporter):
    if not RESULTS and not NOTES:
        return
    write = terminalreporter.write_line
    write("")
    write("trackfence benchmarks (ours beside the peer, same run)")
    for name, rate in RESULTS.items():
        write(f"  {name:48s} {rate / 1e6:8.2f} M fixes/s")
    prepared = RESULTS.get("peer: shapely contains_xy, prepared union")
    loop = RESULTS.get("peer: per-fix Python loop (prepared)")
    for ours in ("ours: classify", "ours: evaluate (class + signed distance)"):
        if ours in RESULTS and prepared:
            write(f"  {ours} / prepared shapely = {RESULTS[ours] / prepared:.1f}x")
        if ours in RESULTS and loop:
            write(f"  {ours} / per-fix loop     = {RESULTS[ours] / loop:.0f}x")
    for note in NOTES.values():
        write(f"  {note}")
