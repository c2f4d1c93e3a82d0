from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def example_site():
    from trackfence.sites import load_site

    return load_site(ROOT / "examples" / "sites" / "ecm1-kings-cross.toml")


@pytest.fixture(scope="session")
def timescaledb():
    """A real TimescaleDB for the session (see tests/servers.py)."""
    from tests.servers import TimescaleDB

    server = TimescaleDB().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def mosquitto():
    """A real Mosquitto broker with the shipped config, for the session."""
    from tests.servers import Mosquitto

    broker = Mosquitto().start()
    yield broker
    broker.close()


@pytest.fixture(params=["timescaledb", "timescaledb-copy", "sqlite"])
def store(request, tmp_path):
    """A fresh store of each kind the contract holds: TimescaleDB written both ways (small
    batches pipelined, large ones by COPY), and SQLite."""
    from store.sqlite import SqliteStore
    from store.timescale import PIPELINED_RECORDS, TimescaleStore

    if request.param.startswith("timescaledb"):
        server = request.getfixturevalue("timescaledb")
        pipelined = 0 if request.param == "timescaledb-copy" else PIPELINED_RECORDS
        s = TimescaleStore(server.fresh_database(), pipelined_records=pipelined)
    else:
        s = SqliteStore(tmp_path / "trial.sqlite")
    s.migrate()
    yield s
    s.close()
