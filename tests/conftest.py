from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def example_site():
    from loading.site_files import load_site

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


#: Fixtures that start a real server: a test that uses one (even indirectly) needs services.
SERVICE_FIXTURES = {"timescaledb", "mosquitto"}
#: Modules whose tests start their own broker, database, service processes or browser.
SERVICE_MODULES = {
    "test_broker",
    "test_broker_credentials",
    "test_broker_identities",
    "test_console_page",
    "test_deployment",
    "test_faults",
    "test_ingest_e2e",
    "test_ingest_hostile",
    "test_network",
    "test_tls",
    "test_trial_paths",
}


#: Modules whose pure tests take seconds each: trials run end to end, fuzzers, the oracle.
SLOW_MODULES = {
    "test_trial",
    "test_trial_recompute",
    "test_trial_live",
    "test_index_oracle",
    "test_console_schema",
    "test_hostile_input",
}


def pytest_collection_modifyitems(config, items):
    """Mark `services` every test that needs a real broker, database or browser, and `slow`
    the long pure ones, so that `pytest -m "not services and not slow"` runs the quick
    pure part alone (README: "The tests")."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        module = item.module.__name__.rsplit(".", 1)[-1]
        if (
            SERVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
            or any(str(v).startswith("timescaledb") for v in params.values())
            or module in SERVICE_MODULES
        ):
            item.add_marker(pytest.mark.services)
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
