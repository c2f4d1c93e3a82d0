"""What only TimescaleDB has: hypertables, chunks, editions, and surviving an outage."""

from __future__ import annotations

import psycopg
import pytest

from store import Batch, StoreError, StoreUnavailableError
from store.timescale import TimescaleStore
from tests.test_store_contract import T0, fix


@pytest.fixture
def ts(timescaledb):
    s = TimescaleStore(timescaledb.url)
    s.migrate()
    yield s
    s.close()


def test_every_table_is_a_hypertable(ts, timescaledb):
    with psycopg.connect(timescaledb.url) as conn:
        names = {
            r[0]
            for r in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")
        }
    assert {"fixes", "events", "alerts", "dead_letters"} <= names


def test_fixes_land_in_daily_chunks_and_old_chunks_can_be_dropped(ts, timescaledb):
    day = 86_400_000
    device = "acme/retention"
    old = [fix(device, i, T0 - 400 * day + i) for i in range(3)]
    new = [fix(device, 10 + i, T0 + i) for i in range(3)]
    ts.write(Batch(fixes=old + new))
    with psycopg.connect(timescaledb.url) as conn:
        chunks = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'fixes'"
        ).fetchone()[0]
    assert chunks >= 2
    assert ts.drop_older_than("fixes", 365) >= 1
    assert ts.fixes(device) == new


def test_the_edition_is_known_and_licensed_features_fail_clearly(ts):
    edition = ts.edition()
    assert edition in ("apache", "timescale")
    assert ts.minute_is_continuous() == (edition == "timescale")
    if edition == "apache":
        with pytest.raises(StoreError, match="Timescale License edition"):
            ts.set_compression("fixes", 7)
        with pytest.raises(StoreError, match="Timescale License edition"):
            ts.set_retention("fixes", 30)
    with pytest.raises(StoreError, match="unknown table"):
        ts.drop_older_than("pg_class; DROP TABLE fixes", 1)


def test_an_outage_is_reported_as_unavailable_and_the_store_reconnects(ts, timescaledb):
    device = "acme/outage"
    ts.write(Batch(fixes=[fix(device, 1, T0)]))
    timescaledb.stop("immediate")
    try:
        with pytest.raises(StoreUnavailableError):
            ts.write(Batch(fixes=[fix(device, 2, T0 + 100)]))
        assert ts.ping() is False
    finally:
        timescaledb.restart()
    ts.write(Batch(fixes=[fix(device, 2, T0 + 100)]))
    assert [f.seq for f in ts.fixes(device)] == [1, 2]


def test_unreachable_server_is_unavailable_not_a_crash():
    s = TimescaleStore("postgresql://postgres@127.0.0.1:9/none", connect_timeout_s=1)
    with pytest.raises(StoreUnavailableError, match="unreachable"):
        s.write(Batch(fixes=[fix("a/b", 1, T0)]))
    assert s.ping() is False
