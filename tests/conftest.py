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
