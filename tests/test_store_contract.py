"""One contract, two backends: the same tests against real TimescaleDB and embedded SQLite."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from store import Alert, Batch, DeadLetter, Event, Fix, StoreError, open_store
from store.sqlite import SqliteStore

T0 = 1_795_000_000_000  # November 2026, UTC ms


def fix(device: str, seq: int, t_ms: int, **changes) -> Fix:
    base = Fix(
        device_id=device,
        supplier=device.split("/")[0],
        seq=seq,
        fix_ms=t_ms,
        received_ms=t_ms + 40,
        decided_ms=t_ms + 41,
        alert_ms=None,
        lat=51.5577,
        lon=-0.1088,
        accuracy_m=0.4,
        fix_type="RTK fixed",
        satellites=21,
        hdop=0.7,
        battery_pct=88.0,
        firmware="2.4.1",
        source_format="native",
        site="ECM1 test",
        x_m=12.5,
        y_m=-387.25,
        fence="Down Fast possession",
        distance_m=2.5,
        state="SAFE",
        accepted=True,
    )
    return replace(base, **changes)


def test_migrations_are_versioned_and_run_once(store):
    assert store.schema_version() == 6
    assert store.migrate() == []


def test_fixes_round_trip_every_field_and_hop_time(store):
    device = f"acme/{uuid.uuid4().hex[:6]}"
    written = [
        fix(device, 1, T0),
        fix(device, 2, T0 + 100, alert_ms=T0 + 145, state="BREACH", distance_m=-0.3, fence=None),
        fix(
            device,
            3,
            T0 + 200,
            accuracy_m=None,
            fix_type=None,
            satellites=None,
            hdop=None,
            battery_pct=None,
            firmware=None,
            site=None,
            x_m=None,
            y_m=None,
            distance_m=None,
            accepted=False,
        ),
    ]
    store.write(Batch(fixes=written))
    assert store.fixes(device) == written
    assert store.fixes(device, since_ms=T0 + 100, until_ms=T0 + 200) == written[1:2]


def test_a_redelivered_batch_changes_nothing(store):
    device = f"acme/{uuid.uuid4().hex[:6]}"
    batch = Batch(
        fixes=[fix(device, i, T0 + i * 100) for i in range(50)],
        events=[Event(device, "breach", T0 + 300, 3, "s", None, -0.2)],
        alerts=[
            Alert(device, "breach", T0 + 300, 3, T0 + 345, f"trackside/v1/{device}/alert", "{}")
        ],
        dead_letters=[DeadLetter(T0, "trackside/v1/acme/x/fix", "json", "not JSON", b"\xff\x00{")],
    )
    store.write(batch)
    before = store.counts()
    store.write(batch)  # the broker redelivers after a crash
    doubled = Batch(fixes=batch.fixes + batch.fixes)  # and duplicates inside one batch
    store.write(doubled)
    assert store.counts() == before
    assert before["fixes"] >= 50 and len(store.fixes(device)) == 50
    assert store.dead_letters()[-1].payload == b"\xff\x00{"  # raw bytes kept exactly


def test_distinct_fixes_are_all_kept(store):
    device = f"acme/{uuid.uuid4().hex[:6]}"
    same_time = [fix(device, 1, T0), fix(device, 2, T0)]  # two sequence numbers, one time
    store.write(Batch(fixes=same_time))
    assert len(store.fixes(device)) == 2


def test_a_batch_is_all_or_nothing(store):
    device = f"acme/{uuid.uuid4().hex[:6]}"
    good = fix(device, 1, T0)
    bad = fix(device, 2, T0 + 100, state=None)  # violates NOT NULL
    with pytest.raises(StoreError):
        store.write(Batch(fixes=[good, bad]))
    assert store.fixes(device) == []
    store.write(Batch(fixes=[good]))  # and the store still works
    assert store.fixes(device) == [good]


def test_events_alerts_and_dead_letters_are_kept(store):
    device = f"acme/{uuid.uuid4().hex[:6]}"
    events = [
        Event(device, "breach", T0 + 1000, 10, "ECM1", "Down Fast possession", 0.4),
        Event(device, "clear", T0 + 9000, 90, "ECM1", "Down Fast possession", 2.1),
    ]
    alert = Alert(
        device,
        "breach",
        T0 + 1000,
        10,
        T0 + 1003,
        f"trackside/v1/{device}/alert",
        '{"kind": "breach"}',
    )
    store.write(Batch(events=events, alerts=[alert]))
    assert store.events(device) == events
    assert store.events(device, since_ms=T0 + 2000) == events[1:]
    assert store.alerts(device) == [alert]
    assert store.alerts(device, alert.event_ms, alert.event_ms + 1) == [alert]
    assert store.alerts(device, alert.event_ms + 1) == []


def test_per_minute_statistics(store):
    device = f"acme/{uuid.uuid4().hex[:6]}"
    minute = 60_000
    start = (T0 // minute) * minute
    fixes = [fix(device, i, start + i * 15_000, accuracy_m=0.2 * (i + 1)) for i in range(6)]
    store.write(Batch(fixes=fixes))
    store.refresh_minutes()
    stats = store.minute_stats(device)
    assert [(m - start, n) for m, n, _ in stats] == [(0, 4), (minute, 2)]
    assert stats[0][2] == pytest.approx((0.2 + 0.4 + 0.6 + 0.8) / 4)


def test_latest_device_states_for_a_restarted_worker(store):
    a, b = f"acme/{uuid.uuid4().hex[:6]}", f"acme/{uuid.uuid4().hex[:6]}"
    store.write(
        Batch(
            fixes=[
                fix(a, 1, T0, state="SAFE"),
                fix(a, 2, T0 + 1000, state="BREACH", distance_m=-0.4),
                fix(a, 3, T0 + 500, state="SAFE", accepted=False),  # late: did not change state
                fix(b, 9, T0 + 200, state="WARNING"),
            ]
        )
    )
    latest = {s.device_id: s for s in store.latest_device_states()}
    assert (latest[a].seq, latest[a].state, latest[a].fix_ms) == (2, "BREACH", T0 + 1000)
    # how a run knows it has fully arrived: fixes of given devices in a time range
    assert store.fix_count([a], T0, T0 + 1001) == 3
    assert store.fix_count([a], T0, T0 + 1000) == 2  # the range is half-open
    assert store.fix_count([a, b], T0, T0 + 2000) == 4
    assert store.fix_count(["nobody/x"], T0, T0 + 2000) == 0
    assert store.fix_count([], T0, T0 + 2000) == 0
    assert latest[b].state == "WARNING"


def test_a_runs_truth_is_kept_once(store):
    from store import TrueExcursion, TruthSamples

    run = f"run-{uuid.uuid4().hex[:6]}"
    n = 2000
    truth = TruthSamples(
        run,
        ["acme/a1"] * n,
        [T0 + 100 * i for i in range(n)],
        [0.5 * i for i in range(n)],
        [-3.0] * n,
        [i % 300 < 280 for i in range(n)],
        [1.5 - (i % 300 >= 280) * 2.0 for i in range(n)],
    )
    excursions = [TrueExcursion(run, "acme/a1", T0 + 28_000, T0 + 30_000, 0.5)]
    store.write_truth(truth, excursions)
    store.write_truth(truth, excursions)  # written again: kept once
    assert store.truth_count(run) == n
    assert store.true_excursions(run) == excursions
    assert store.true_excursions("another run") == []
    back = store.truth(run)  # read back whole, for rescoring a trial
    assert back.time_ms == truth.time_ms and back.x_m == truth.x_m
    assert back.inside == truth.inside and back.distance_m == truth.distance_m
    assert store.truth("another run").time_ms == []


def test_store_urls():
    assert isinstance(open_store("sqlite://:memory:"), SqliteStore)
    with pytest.raises(StoreError, match="unknown store URL"):
        open_store("mysql://x")


def test_the_breach_log_filters_and_pages_every_event_once_in_order(store):
    from store import EventQuery

    kinds = ["breach", "clear", "warning"]
    events = [
        Event(
            f"{supplier}/d{i % 3}",
            kinds[i % 3],
            T0 + 1000 * (i // 2),  # pairs of events share a time: the cursor must split ties
            i,
            "site A" if i % 4 else "site B",
            "fence",
            -0.5,
        )
        for i in range(40)
        for supplier in ("acme", "a_me")  # "_" is a LIKE wildcard: must not match "acme"
    ]
    store.write(Batch(events=events))
    pages, after = [], None
    while True:
        page = store.breach_log(EventQuery(after=after, limit=7))
        pages.append(page)
        if len(page) < 7:
            break
        last = page[-1]
        after = (last.event_ms, last.device_id, last.kind, last.seq)
    seen = [e for page in pages for e in page]
    assert len(seen) == len(events) and len(set(seen)) == len(events)
    assert seen == sorted(seen, key=lambda e: (e.event_ms, e.device_id, e.kind, e.seq))
    only = store.breach_log(EventQuery(supplier="a_me", limit=500))
    assert len(only) == 40 and all(e.device_id.startswith("a_me/") for e in only)
    breaches_b = store.breach_log(EventQuery(site="site B", kinds=("breach",), limit=500))
    assert breaches_b and all(e.site == "site B" and e.kind == "breach" for e in breaches_b)
    window = store.breach_log(EventQuery(since_ms=T0 + 5000, until_ms=T0 + 7000, limit=500))
    assert {e.event_ms for e in window} == {T0 + 5000, T0 + 6000}
    one = store.breach_log(EventQuery(device_id="acme/d1", limit=500))
    assert one and {e.device_id for e in one} == {"acme/d1"}


def test_device_overview_is_each_devices_last_accepted_fix(store):
    a, b = "acme/o1", "gnssco/o2"
    store.write(
        Batch(
            fixes=[
                fix(a, 1, T0, state="SAFE"),
                fix(a, 2, T0 + 1000, state="BREACH", lat=51.6),
                fix(a, 3, T0 + 500, state="SAFE", accepted=False),
                fix(b, 1, T0, state="WARNING", firmware="1.9.0"),
            ]
        )
    )
    seen = {d.device_id: d for d in store.device_overview()}
    assert (seen[a].state, seen[a].fix_ms, seen[a].lat) == ("BREACH", T0 + 1000, 51.6)
    assert (seen[b].state, seen[b].firmware, seen[b].supplier) == ("WARNING", "1.9.0", "gnssco")
    assert [d.device_id for d in store.device_overview(supplier="gnssco")] == [b]


def test_site_versions_count_up_and_are_never_overwritten(store):
    first = store.save_site_version("ecm1", '{"v": 1}', "op@example", "created")
    second = store.save_site_version("ecm1", '{"v": 2}', "op2@example", "limit moved")
    retired = store.save_site_version("ecm1", '{"v": 2}', "op@example", "retired", retired=True)
    store.save_site_version("other", "{}", "op@example", "created")
    assert (first.version, second.version, retired.version) == (1, 2, 3)
    history = store.site_versions("ecm1")
    assert [(v.version, v.author, v.retired, v.document) for v in history] == [
        (1, "op@example", False, '{"v": 1}'),
        (2, "op2@example", False, '{"v": 2}'),
        (3, "op@example", True, '{"v": 2}'),
    ]
    assert {v.site_id for v in store.site_versions()} == {"ecm1", "other"}


def test_api_tokens_are_kept_by_digest_and_once(store):
    from store import ApiToken

    token = ApiToken("ab" * 32, "task force laptop", "viewer", None, T0)
    store.save_token(token)
    assert store.token("ab" * 32) == token
    assert store.token("cd" * 32) is None
    with pytest.raises(StoreError):
        store.save_token(token)


def test_one_store_serves_many_threads_at_once(store):
    # the console API reads from a thread pool while other requests write: one store
    # object must keep every transaction whole
    import threading

    from store import EventQuery

    failures = []

    def work(n: int) -> None:
        try:
            for i in range(15):
                store.write(
                    Batch(events=[Event(f"acme/t{n}", "breach", T0 + i, i, "s", "f", -1.0)])
                )
                store.breach_log(EventQuery(device_id=f"acme/t{n}", limit=50))
                store.device_overview()
        except Exception as exc:
            failures.append(repr(exc))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    assert all(len(store.breach_log(EventQuery(device_id=f"acme/t{n}"))) == 15 for n in range(6))


def test_recent_decisions_and_dead_letters_by_reason(store):
    store.write(
        Batch(
            fixes=[
                fix("acme/r1", i, T0 + i * 100, decided_ms=T0 + i * 100 + 40 + i) for i in range(11)
            ],
            dead_letters=[
                DeadLetter(T0, "t", "json", "bad", b"{"),
                DeadLetter(T0 + 1, "t", "json", "bad", b"{{"),
                DeadLetter(T0, "t", "range:lat", "bad", b"x"),
            ],
        )
    )
    # receive is fix + 40 ms; decision fix + 40 + i ms, i = 0..10: latencies 0..10 ms
    count, p50, p95 = store.recent_decisions(T0)
    assert (count, p50, p95) == (11, 5.0, pytest.approx(9.5))
    assert store.recent_decisions(T0 + 10_000) == (0, None, None)
    assert store.dead_letter_counts() == {"json": 2, "range:lat": 1}


def test_the_devices_own_alarms_round_trip_once(store):
    from store import Batch, DeviceAlarm

    t = 1_795_000_000_000
    alarms = [
        DeviceAlarm("acme/a1", 1, t, "breach", 51.5577, -0.1088, t + 300),
        DeviceAlarm("acme/a1", 2, t + 9_000, "clear", None, None, t + 9_250),
        DeviceAlarm("gnssco/g1", 1, t + 4_000, "breach", 51.5578, -0.1089, t + 6_600),
    ]
    store.write(Batch(device_alarms=alarms))
    store.write(Batch(device_alarms=alarms[:1]))  # a redelivery changes nothing
    assert store.device_alarms() == sorted(alarms, key=lambda a: (a.device_id, a.alarm_ms))
    assert store.device_alarms("acme/a1", since_ms=t + 5_000) == [alarms[1]]


# ------------------------------------------------------------ SQLite's schema 5 to 6


def test_a_sqlite_store_at_schema_5_keeps_every_row_under_the_new_column_names(
    tmp_path, monkeypatch
):
    """Schema 6 renames SQLite's columns to TimescaleDB's (fix_ms is fix_time, …). A store
    made by schema 5, with rows written under the old names, migrates and reads back every
    row whole through the store, and goes on keeping new ones once each."""
    import sqlite3
    from operator import attrgetter

    from store import ApiToken, DeviceAlarm, EventQuery, TrueExcursion
    from store.migrations import migrations
    from store.records import columns

    path = tmp_path / "schema5.sqlite"
    monkeypatch.setattr("store.sqlite.migrations", lambda backend: migrations(backend)[:5])
    old = SqliteStore(path)
    assert old.migrate() == [1, 2, 3, 4, 5]
    old.close()
    monkeypatch.undo()

    device = "acme/m5"
    fixes = [fix(device, 1, T0), fix(device, 2, T0 + 1000, alert_ms=T0 + 1100, state="BREACH",
                                      distance_m=-0.3, fence=None)]  # fmt: skip
    event = Event(device, "breach", T0 + 1000, 2, "ECM1 test", None, -0.3)
    alert = Alert(device, "breach", T0 + 1000, 2, T0 + 1100, "trackside/v1/acme/m5/alert", "{}")
    dead = DeadLetter(T0, "trackside/v1/acme/m5/fix", "json", "not JSON", b"\xff{")
    alarm = DeviceAlarm(device, 7, T0 + 1200, "breach", 51.5577, -0.1088, T0 + 1500)
    excursion = TrueExcursion("run-5", device, T0 + 900, T0 + 4000, 0.5)
    token = ApiToken("ef" * 32, "laptop", "viewer", None, T0 - 5)
    db = sqlite3.connect(path)  # schema 5's own column names: the records' field names
    for table, rows in (("fixes", fixes), ("events", [event]), ("alerts", [alert]),
                        ("device_alarms", [alarm]), ("true_excursions", [excursion]),
                        ("api_tokens", [token])):  # fmt: skip
        names = columns(type(rows[0]))
        db.executemany(
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [attrgetter(*names)(r) for r in rows],
        )
    db.execute(
        "INSERT INTO dead_letters (received_ms, topic, reason, detail, payload, payload_sha256)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (dead.received_ms, dead.topic, dead.reason, dead.detail, dead.payload, b"digest"),
    )
    db.execute(
        "INSERT INTO truth (run_id, device_id, time_ms, x_m, y_m, inside, distance_m) "
        "VALUES ('run-5', ?, ?, 1.0, 2.0, 1, 0.5)",
        (device, T0),
    )
    db.execute(
        "INSERT INTO site_versions (site_id, version, created_ms, author, note, retired, "
        "document) VALUES ('ecm1', 1, ?, 'op', 'created', 0, '{}')",
        (T0 - 10,),
    )
    db.commit()
    db.close()

    store = SqliteStore(path)
    assert store.schema_version() == 5
    assert store.migrate() == [6]
    assert store.schema_version() == 6
    assert store.fixes(device) == fixes
    assert store.fixes(device, since_ms=T0 + 1, until_ms=T0 + 1001) == fixes[1:]
    assert store.events(device) == [event]
    assert store.breach_log(EventQuery(device_id=device)) == [event]
    assert store.alerts(device) == [alert]
    assert store.dead_letters() == [dead]
    assert store.device_alarms(device) == [alarm]
    assert store.true_excursions("run-5") == [excursion]
    assert store.truth("run-5").time_ms == [T0]
    assert [(v.version, v.created_ms) for v in store.site_versions("ecm1")] == [(1, T0 - 10)]
    assert store.token("ef" * 32) == token
    latest = store.latest_device_states()
    assert [(s.fix_ms, s.state, s.received_ms) for s in latest] == [(T0 + 1000, "BREACH",
                                                                      T0 + 1040)]  # fmt: skip
    assert [(d.fix_ms, d.received_ms) for d in store.device_overview()] == [(T0 + 1000, T0 + 1040)]
    assert store.minute_stats(device) == [((T0 // 60_000) * 60_000, 2, pytest.approx(0.4))]
    assert store.recent_decisions(T0) == (2, 1.0, 1.0)
    # the unique keys and indexes were carried over to the new names
    store.write(Batch(fixes=[*fixes, fix(device, 3, T0 + 2000)], events=[event]))
    assert len(store.fixes(device)) == 3 and store.counts()["events"] == 1
    db = sqlite3.connect(path)
    assert [r[2] for r in db.execute("PRAGMA index_info(fixes_device_time)")] == [
        "device_id", "fix_time"]  # fmt: skip
    assert [r[2] for r in db.execute("PRAGMA index_info(events_time)")] == [
        "event_time", "device_id", "kind", "seq"]  # fmt: skip
    db.close()
    store.close()


def test_both_backends_name_their_columns_alike(store, tmp_path):
    """After schema 6 every table has the same columns in SQLite as in TimescaleDB (only
    their types differ: INTEGER UTC ms against timestamptz)."""
    expected = {
        "fixes": ["device_id", "supplier", "seq", "fix_time", "received_at", "decided_at",
                  "alert_at", "lat", "lon", "accuracy_m", "fix_type", "satellites", "hdop",
                  "battery_pct", "firmware", "source_format", "site", "x_m", "y_m", "fence",
                  "distance_m", "state", "accepted"],
        "events": ["device_id", "kind", "event_time", "seq", "site", "fence", "distance_m"],
        "alerts": ["device_id", "kind", "event_time", "seq", "published_at", "topic",
                   "payload"],
        "dead_letters": ["received_at", "topic", "reason", "detail", "payload",
                         "payload_sha256"],
        "truth": ["run_id", "device_id", "time", "x_m", "y_m", "inside", "distance_m"],
        "true_excursions": ["run_id", "device_id", "start_time", "end_time", "depth_m"],
        "site_versions": ["site_id", "version", "created_at", "author", "note", "retired",
                          "document"],
        "api_tokens": ["token_sha256", "name", "role", "supplier", "created_at"],
        "device_alarms": ["device_id", "seq", "alarm_time", "kind", "lat", "lon",
                          "received_at"],
        "fix_minutes": ["minute", "device_id", "fixes", "mean_accuracy_m", "max_accuracy_m",
                        "min_distance_m", "breach_fixes", "mean_receive_latency_ms",
                        "max_decision_latency_ms"],
        "schema_migrations": ["version", "name", "applied_at"],
    }  # fmt: skip
    if isinstance(store, SqliteStore):
        import sqlite3

        db = sqlite3.connect(store.path)
        found = {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in expected}
        db.close()
    else:
        import psycopg

        with psycopg.connect(store.url) as db:
            found = {
                t: [r[0] for r in db.execute(
                    "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
                    "AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (t,))]
                for t in expected
            }  # fmt: skip
    assert found == expected


def test_the_example_live_store_migrates_with_its_rows(tmp_path):
    """The real trial's store (examples/real-trial/live.sqlite, written by ingest at schema
    5) migrates to schema 6 and reads back the same rows."""
    import shutil
    import sqlite3

    from tests.conftest import ROOT

    path = tmp_path / "live.sqlite"
    shutil.copy(ROOT / "examples" / "real-trial" / "live.sqlite", path)
    db = sqlite3.connect(path)
    tables = ("fixes", "events", "alerts", "device_alarms")
    before = {t: db.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables}
    db.close()
    store = SqliteStore(path)
    version = store.schema_version()
    assert store.migrate() == list(range(version + 1, 7))
    db = sqlite3.connect(path)
    after = {t: db.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables}
    db.close()
    assert after == before and len(before["fixes"]) > 1000
    assert len(store.fixes()) == len(before["fixes"])
    assert len(store.events()) == len(before["events"])
    store.close()
