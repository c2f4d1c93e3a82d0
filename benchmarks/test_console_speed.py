"""The breach log for one site and one day, from a store of 100 million fixes and 1 million
events: p95 ≤ 50 ms through the console API, with the plan showing chunk exclusion.

Beside it, in the same run, the obvious peer: the same events in a plain PostgreSQL
table with the same index (no hypertable), queried the same way. Fixes are generated
in the database (generate_series); set TRACKFENCE_BENCH_FIXES for a smaller store
(the default, 100 M, takes a while to build and about 25 GB of disk).
"""

from __future__ import annotations

import os
import random
import re
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from benchmarks.conftest import NOTES
from reporting.console.app import create_app
from reporting.console.auth import issue_token
from store.timescale import TimescaleStore
from tests.servers import TimescaleDB

FIXES = int(os.environ.get("TRACKFENCE_BENCH_FIXES", 100_000_000))
EVENTS = 1_000_000
DAYS = 100
SITES = 20
DEVICES = 2_000
DAY0 = "2026-06-01"
QUERY = (
    "SELECT device_id, kind, event_time, seq, site, fence, distance_m FROM {table} "
    "WHERE site = %s AND event_time >= %s::timestamptz AND event_time < %s::timestamptz "
    "ORDER BY event_time, device_id, kind, seq LIMIT 100"
)


@pytest.fixture(scope="module")
def full_store():
    import psycopg

    server = TimescaleDB().start()
    url = server.fresh_database()
    store = TimescaleStore(url)
    store.migrate()
    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            f"INSERT INTO events SELECT 'sup' || (i % 3) || '/d' || (i % {DEVICES}), "
            "(ARRAY['breach','clear','warning','safe','lost','recovered'])[1 + i % 6], "
            f"'{DAY0}'::timestamptz + (i * ({DAYS} * 86400.0 / {EVENTS})) * interval '1 second', "
            f"i, 'site-' || (i % {SITES}), 'fence', -0.5 FROM generate_series(1, {EVENTS}) i"
        )
        step = 10_000_000
        for start in range(0, FIXES, step):
            n = min(step, FIXES - start)
            db.execute(
                f"INSERT INTO fixes SELECT 'sup' || (i % 3) || '/d' || (i % {DEVICES}), "
                "'sup' || (i % 3), i, "
                f"'{DAY0}'::timestamptz + (i * ({DAYS} * 86400.0 / {FIXES})) * interval '1 second',"
                " now(), now(), NULL, 51.55, -0.11, 0.5, 'RTK fixed', 20, 0.8, 90, '1.0', "
                f"'native', 'site-' || (i % {SITES}), 1, 2, 'fence', 1.5, 'SAFE', true "
                f"FROM generate_series({start + 1}, {start + n}) i"
            )
        db.execute("CREATE TABLE events_plain AS SELECT * FROM events")
        db.execute("CREATE INDEX ON events_plain (site, event_time DESC)")
        db.execute("CREATE INDEX ON events_plain (event_time, device_id, kind, seq)")
        db.execute("ANALYZE")
    NOTES["console-build"] = (
        f"breach-log store: {FIXES / 1e6:.0f} M fixes and {EVENTS / 1e6:.0f} M events built in "
        f"{time.perf_counter() - began:.0f} s"
    )
    yield store, url
    store.close()
    server.close()


def _p95_ms(timings: list[float]) -> float:
    return float(np.percentile(np.array(timings) * 1000, 95))


def test_breach_log_for_one_site_and_one_day(benchmark, full_store):
    import psycopg

    store, url = full_store
    client = TestClient(create_app(store))
    token = issue_token(store, "bench", "viewer")
    auth = {"Authorization": f"Bearer {token}"}
    rng = random.Random(7)
    asks = [(f"site-{rng.randrange(SITES)}", rng.randrange(DAYS)) for _ in range(200)]

    def day(d: int) -> tuple[str, str]:
        start = np.datetime64(DAY0) + np.timedelta64(d, "D")
        return f"{start}T00:00:00Z", f"{start + np.timedelta64(1, 'D')}T00:00:00Z"

    api_times = []
    for site, d in asks:
        since, until = day(d)
        began = time.perf_counter()
        reply = client.get("/events", params={"site": site, "since": since, "until": until},
                           headers=auth)  # fmt: skip
        api_times.append(time.perf_counter() - began)
        assert reply.status_code == 200 and reply.json()["events"]
    benchmark.pedantic(
        lambda: client.get(
            "/events", params={"site": "site-3", "since": day(42)[0], "until": day(42)[1]},
            headers=auth,
        ),
        rounds=20,
        iterations=1,
    )  # fmt: skip
    with psycopg.connect(url) as db:
        sql_times = {}
        for table in ("events", "events_plain"):
            sql_times[table] = []
            for site, d in asks:
                began = time.perf_counter()
                db.execute(QUERY.format(table=table), (site, *day(d))).fetchall()
                sql_times[table].append(time.perf_counter() - began)
        plan = "\n".join(
            r[0]
            for r in db.execute(
                "EXPLAIN (ANALYZE, COSTS OFF) " + QUERY.format(table="events"), ("site-3", *day(42))
            ).fetchall()
        )
        chunks = db.execute(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'events'"
        ).fetchone()[0]
    scanned = len(set(re.findall(r"_hyper_\d+_\d+_chunk", plan)))
    NOTES["console"] = (
        f"breach log, one site and one day ({FIXES / 1e6:.0f} M fixes, "
        f"{EVENTS / 1e6:.0f} M events): "
        f"API p95 {_p95_ms(api_times):.1f} ms (target <= 50); its SQL p95 "
        f"{_p95_ms(sql_times['events']):.2f} ms on the hypertable vs "
        f"{_p95_ms(sql_times['events_plain']):.2f} ms on a plain table (peer); the plan touches "
        f"{scanned} of {chunks} event chunks"
    )
    print(plan)
    assert 0 < scanned < chunks  # chunk exclusion: only the day's chunk is read
