"""TimescaleDB through psycopg 3: hypertables, batched COPY, idempotent upserts.

A batch is COPYed into per-connection staging tables (times as epoch ms, exactly
the record fields) and moved into the hypertables by one INSERT … SELECT … ON
CONFLICT DO NOTHING per table, all in one transaction: a redelivered batch
changes nothing, and a batch is either wholly durable or not at all.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from operator import attrgetter

import psycopg

from store.contract import StoreError, StoreUnavailableError
from store.migrations import migrations
from store.query import event_filter, event_order, range_filter
from store.records import (
    TIME_FIELDS,
    Alert,
    ApiToken,
    Batch,
    DeadLetter,
    DeviceAlarm,
    DeviceOverview,
    DeviceState,
    Event,
    EventQuery,
    Fix,
    SiteVersion,
    TrueExcursion,
    TruthSamples,
    columns,
    stored_column,
)

_FIX_COLUMNS = columns(Fix)
_EVENT_COLUMNS = columns(Event)
_ALERT_COLUMNS = columns(Alert)
_ALARM_COLUMNS = columns(DeviceAlarm)
#: Record fields kept as timestamptz (a record's ms, converted on the way in and out).
_MS_COLUMNS = TIME_FIELDS

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS stage_fixes (
    device_id text, supplier text, seq bigint, fix_ms bigint, received_ms bigint,
    decided_ms bigint, alert_ms bigint, lat double precision, lon double precision,
    accuracy_m double precision, fix_type text, satellites integer, hdop double precision,
    battery_pct double precision, firmware text, source_format text, site text,
    x_m double precision, y_m double precision, fence text, distance_m double precision,
    state text, accepted boolean) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_events (
    device_id text, kind text, event_ms bigint, seq bigint, site text, fence text,
    distance_m double precision) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_alerts (
    device_id text, kind text, event_ms bigint, seq bigint, published_ms bigint, topic text,
    payload text) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_dead_letters (
    received_ms bigint, topic text, reason text, detail text, payload bytea,
    payload_sha256 bytea) ON COMMIT DELETE ROWS;
"""


def _to_time(name: str) -> str:
    return f"to_timestamp({name} / 1000.0)" if name in _MS_COLUMNS else name


def _from_time(name: str) -> str:
    if name in _MS_COLUMNS:
        return f"(round(EXTRACT(EPOCH FROM {stored_column(name)}) * 1000))::bigint"
    return name


def _targets(names: list[str]) -> str:
    """The stored table's column names for record fields (times are kept as timestamps)."""
    return ", ".join(stored_column(n) for n in names)


def _dead_letter_row(d: DeadLetter) -> tuple:
    """A dead letter as the table's row, in its column order, with the payload's digest."""
    return (
        d.received_ms,
        d.topic,
        d.reason,
        d.detail,
        d.payload,
        hashlib.sha256(d.payload).digest(),
    )


def _move(table: str, names: list[str]) -> str:
    target = _targets(names)
    source = ", ".join(_to_time(n) for n in names)
    return (
        f"INSERT INTO {table} ({target}) SELECT {source} FROM stage_{table} ON CONFLICT DO NOTHING"
    )


def _insert(table: str, names: list[str]) -> str:
    """One row's INSERT, for batches small enough to send pipelined (see PIPELINED_RECORDS)."""
    target = _targets(names)
    values = ", ".join(
        "to_timestamp(%s::bigint / 1000.0)" if n in _MS_COLUMNS else "%s" for n in names
    )
    return f"INSERT INTO {table} ({target}) VALUES ({values}) ON CONFLICT DO NOTHING"


#: Batches of up to this many records are written as row INSERTs pipelined into one round
#: trip; larger ones through COPY into staging tables (less work a row, more round trips).
#: A live worker writes small batches often, and its acknowledgements to the broker wait for
#: each write: the fewer round trips, the sooner they go, and Mosquitto delivers the next
#: fixes to a subscriber sooner when fewer of its messages await acknowledgement.
PIPELINED_RECORDS = 64

_DEAD_LETTER_INSERT = (
    "INSERT INTO dead_letters (received_at, topic, reason, detail, payload, payload_sha256) "
    "VALUES (to_timestamp(%s::bigint / 1000.0), %s, %s, %s, %s, %s) "
    "ON CONFLICT DO NOTHING"
)


def _serialised(method):
    """Run a method holding the store's lock: its one connection is not shared mid-transaction."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


class TimescaleStore:
    def __init__(
        self, url: str, connect_timeout_s: float = 5.0, pipelined_records: int = PIPELINED_RECORDS
    ) -> None:
        self.url = url
        self.pipelined_records = pipelined_records
        self._timeout = connect_timeout_s
        self._conn: psycopg.Connection | None = None
        # one connection, used by one thread at a time (the API serves from a thread pool)
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- connection
    def _connect(self) -> psycopg.Connection:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        try:
            self._conn = psycopg.connect(self.url, connect_timeout=max(1, round(self._timeout)))
        except psycopg.OperationalError as exc:
            self._conn = None
            raise StoreUnavailableError(f"TimescaleDB unreachable: {exc}".strip()) from exc
        return self._conn

    @_serialised
    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    @_serialised
    def migrate(self) -> list[int]:
        conn = self._connect()
        applied = []
        try:
            with conn.transaction():
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                    "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                conn.execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
                done = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
                for m in migrations("timescaledb"):
                    if m.version in done:
                        continue
                    conn.execute(m.sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (m.version, m.name),
                    )
                    applied.append(m.version)
        except psycopg.OperationalError as exc:
            self._drop()
            raise StoreUnavailableError(f"TimescaleDB migration interrupted: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"TimescaleDB migration failed: {exc}") from exc
        return applied

    def schema_version(self) -> int:
        row = self._query("SELECT coalesce(max(version), 0) FROM schema_migrations", ())
        return int(row[0][0])

    # ---------------------------------------------------------------- writing
    @_serialised
    def write(self, batch: Batch) -> None:
        if not len(batch):
            return
        conn = self._connect()
        try:
            if len(batch) <= self.pipelined_records:
                self._write_pipelined(conn, batch)
                return
            with conn.transaction():
                conn.execute(_STAGING)
                with conn.cursor() as cur:
                    self._copy(cur, "stage_fixes", _FIX_COLUMNS, batch.fixes)
                    self._copy(cur, "stage_events", _EVENT_COLUMNS, batch.events)
                    self._copy(cur, "stage_alerts", _ALERT_COLUMNS, batch.alerts)
                    if batch.dead_letters:
                        with cur.copy("COPY stage_dead_letters FROM STDIN") as copy:
                            for d in batch.dead_letters:
                                copy.write_row(_dead_letter_row(d))
                    if batch.fixes:
                        cur.execute(_move("fixes", _FIX_COLUMNS))
                    if batch.events:
                        cur.execute(_move("events", _EVENT_COLUMNS))
                    if batch.alerts:
                        cur.execute(_move("alerts", _ALERT_COLUMNS))
                    if batch.device_alarms:  # a few a shift: row inserts suffice
                        row_of = attrgetter(*_ALARM_COLUMNS)
                        cur.executemany(
                            _insert("device_alarms", _ALARM_COLUMNS),
                            [row_of(a) for a in batch.device_alarms],
                        )
                    if batch.dead_letters:
                        cur.execute(
                            "INSERT INTO dead_letters SELECT to_timestamp(received_ms / 1000.0), "
                            "topic, reason, detail, payload, payload_sha256 "
                            "FROM stage_dead_letters ON CONFLICT DO NOTHING"
                        )
        except psycopg.OperationalError as exc:
            self._drop()
            raise StoreUnavailableError(f"TimescaleDB write failed, nothing kept: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"TimescaleDB refused a batch: {exc}") from exc
        except (OverflowError, UnicodeError, ValueError, TypeError) as exc:
            # a value psycopg could not send (the transaction was rolled back); start the
            # next write on a fresh connection rather than trust this one's state
            self._drop()
            raise StoreError(f"TimescaleDB refused a batch, nothing kept: {exc}") from exc

    @staticmethod
    def _write_pipelined(conn: psycopg.Connection, batch: Batch) -> None:
        """The whole transaction in one round trip: statements are sent without waiting."""
        with conn.pipeline(), conn.transaction(), conn.cursor() as cur:
            for table, names, rows in (
                ("fixes", _FIX_COLUMNS, batch.fixes),
                ("events", _EVENT_COLUMNS, batch.events),
                ("alerts", _ALERT_COLUMNS, batch.alerts),
                ("device_alarms", _ALARM_COLUMNS, batch.device_alarms),
            ):
                if rows:
                    row_of = attrgetter(*names)
                    cur.executemany(_insert(table, names), [row_of(r) for r in rows])
            if batch.dead_letters:
                cur.executemany(
                    _DEAD_LETTER_INSERT, [_dead_letter_row(d) for d in batch.dead_letters]
                )

    @staticmethod
    def _copy(cur: psycopg.Cursor, table: str, names: list[str], rows: list) -> None:
        if not rows:
            return
        row_of = attrgetter(*names)  # one C call per record
        with cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row(row_of(r))

    # ---------------------------------------------------------------- reading
    @_serialised
    def _query(self, sql: str, params: tuple | list) -> list[tuple]:
        """Run a read; a connection the server dropped since last use is renewed once."""
        for attempt in (1, 2):
            conn = self._connect()
            try:
                with conn.transaction():
                    return conn.execute(sql, params).fetchall()
            except psycopg.OperationalError as exc:
                self._drop()
                if attempt == 2:
                    raise StoreUnavailableError(f"TimescaleDB query failed: {exc}") from exc
            except psycopg.Error as exc:
                raise StoreError(f"TimescaleDB refused a query: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _select(self, table, names, time_name, device_id, since_ms, until_ms, order) -> list[tuple]:
        where, params = range_filter(
            device_id, since_ms, until_ms, time_name, "%s", "to_timestamp({} / 1000.0)"
        )
        select = ", ".join(_from_time(n) for n in names)
        return self._query(f"SELECT {select} FROM {table}{where} ORDER BY {order}", params)

    def fixes(self, device_id=None, since_ms=None, until_ms=None) -> list[Fix]:
        rows = self._select(
            "fixes",
            _FIX_COLUMNS,
            "fix_time",
            device_id,
            since_ms,
            until_ms,
            "device_id, fix_time, seq",
        )
        return [Fix(*r) for r in rows]

    def events(self, device_id=None, since_ms=None, until_ms=None) -> list[Event]:
        rows = self._select(
            "events",
            _EVENT_COLUMNS,
            "event_time",
            device_id,
            since_ms,
            until_ms,
            "device_id, event_time, seq",
        )
        return [Event(*r) for r in rows]

    def alerts(self, device_id=None, since_ms=None, until_ms=None) -> list[Alert]:
        rows = self._select(
            "alerts",
            _ALERT_COLUMNS,
            "event_time",
            device_id,
            since_ms,
            until_ms,
            "device_id, event_time",
        )
        return [Alert(*r) for r in rows]

    def device_alarms(self, device_id=None, since_ms=None, until_ms=None) -> list[DeviceAlarm]:
        rows = self._select(
            "device_alarms",
            _ALARM_COLUMNS,
            "alarm_time",
            device_id,
            since_ms,
            until_ms,
            "device_id, alarm_time, seq",
        )
        return [DeviceAlarm(*r) for r in rows]

    def dead_letters(self) -> list[DeadLetter]:
        rows = self._query(
            "SELECT (round(EXTRACT(EPOCH FROM received_at) * 1000))::bigint, topic, reason, detail,"
            " payload FROM dead_letters ORDER BY received_at",
            (),
        )
        return [DeadLetter(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    @_serialised
    def write_truth(self, truth: TruthSamples, excursions: list[TrueExcursion]) -> None:
        conn = self._connect()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS stage_truth (device_id text, time_ms bigint, "
                    "x_m double precision, y_m double precision, inside boolean, "
                    "distance_m double precision) ON COMMIT DELETE ROWS"
                )
                with cur.copy("COPY stage_truth FROM STDIN") as copy:
                    for row in truth.rows():
                        copy.write_row(row)
                cur.execute(
                    "INSERT INTO truth SELECT %s, device_id, to_timestamp(time_ms / 1000.0), x_m, "
                    "y_m, inside, distance_m FROM stage_truth ON CONFLICT DO NOTHING",
                    (truth.run_id,),
                )
                cur.executemany(
                    "INSERT INTO true_excursions VALUES (%s, %s, to_timestamp(%s / 1000.0), "
                    "to_timestamp(%s / 1000.0), %s) ON CONFLICT DO NOTHING",
                    [(e.run_id, e.device_id, e.start_ms, e.end_ms, e.depth_m) for e in excursions],
                )
        except psycopg.OperationalError as exc:
            self._drop()
            raise StoreUnavailableError(f"TimescaleDB write failed, nothing kept: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"TimescaleDB refused the truth: {exc}") from exc

    def true_excursions(self, run_id: str) -> list[TrueExcursion]:
        rows = self._query(
            "SELECT run_id, device_id, (round(EXTRACT(EPOCH FROM start_time) * 1000))::bigint, "
            "(round(EXTRACT(EPOCH FROM end_time) * 1000))::bigint, depth_m FROM true_excursions "
            "WHERE run_id = %s ORDER BY device_id, start_time",
            (run_id,),
        )
        return [TrueExcursion(*r) for r in rows]

    def truth_count(self, run_id: str) -> int:
        return int(self._query("SELECT count(*) FROM truth WHERE run_id = %s", (run_id,))[0][0])

    def truth(self, run_id: str) -> TruthSamples:
        rows = self._query(
            "SELECT device_id, (round(EXTRACT(EPOCH FROM time) * 1000))::bigint, x_m, y_m, "
            "inside, distance_m FROM truth WHERE run_id = %s ORDER BY device_id, time",
            (run_id,),
        )
        return TruthSamples.from_rows(run_id, rows)

    # ---------------------------------------------------------------- the console
    def breach_log(self, q: EventQuery, *, newest_first: bool = False) -> list[Event]:
        where, params = event_filter(
            q, "%s", "to_timestamp({} / 1000.0)", newest_first=newest_first
        )
        rows = self._query(
            f"SELECT {', '.join(_from_time(n) for n in _EVENT_COLUMNS)} FROM events{where} "
            f"ORDER BY {event_order(newest_first)} LIMIT %s",
            [*params, q.limit],
        )
        return [Event(*r) for r in rows]

    def device_overview(self, supplier: str | None = None) -> list[DeviceOverview]:
        rows = self._query(
            "SELECT DISTINCT ON (device_id) device_id, supplier, firmware, "
            f"{_from_time('fix_ms')}, {_from_time('received_ms')}, lat, lon, accuracy_m, site, "
            "state FROM fixes WHERE accepted"
            + (" AND supplier = %s" if supplier is not None else "")
            + " ORDER BY device_id, fix_time DESC, seq DESC",
            [supplier] if supplier is not None else [],
        )
        return [DeviceOverview(*r) for r in rows]

    def recent_decisions(self, since_ms: int) -> tuple[int, float | None, float | None]:
        ((count, p50, p95),) = self._query(
            "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY d), "
            "percentile_cont(0.95) WITHIN GROUP (ORDER BY d) FROM (SELECT "
            "EXTRACT(EPOCH FROM decided_at - received_at) * 1000 AS d FROM fixes "
            "WHERE fix_time >= to_timestamp(%s / 1000.0)) recent",
            (since_ms,),
        )
        return int(count), p50, p95

    def dead_letter_counts(self) -> dict[str, int]:
        rows = self._query("SELECT reason, count(*) FROM dead_letters GROUP BY reason", ())
        return {reason: int(n) for reason, n in rows}

    @_serialised
    def save_site_version(
        self, site_id: str, document: str, author: str, note: str, retired: bool = False
    ) -> SiteVersion:
        conn = self._connect()
        try:
            with conn.transaction():
                row = conn.execute(
                    "INSERT INTO site_versions SELECT %s, coalesce(max(version), 0) + 1, now(), "
                    "%s, %s, %s, %s FROM site_versions WHERE site_id = %s "
                    "RETURNING version, (round(EXTRACT(EPOCH FROM created_at) * 1000))::bigint",
                    (site_id, author, note, retired, document, site_id),
                ).fetchone()
        except psycopg.OperationalError as exc:
            self._drop()
            raise StoreUnavailableError(f"TimescaleDB unreachable: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"TimescaleDB refused the site version: {exc}") from exc
        return SiteVersion(site_id, row[0], row[1], author, note, retired, document)

    def site_versions(self, site_id: str | None = None) -> list[SiteVersion]:
        rows = self._query(
            "SELECT site_id, version, (round(EXTRACT(EPOCH FROM created_at) * 1000))::bigint, "
            "author, note, retired, document FROM site_versions"
            + (" WHERE site_id = %s" if site_id is not None else "")
            + " ORDER BY site_id, version",
            [site_id] if site_id is not None else [],
        )
        return [SiteVersion(*r) for r in rows]

    @_serialised
    def save_token(self, token: ApiToken) -> None:
        conn = self._connect()
        try:
            with conn.transaction():
                conn.execute(
                    "INSERT INTO api_tokens VALUES (%s, %s, %s, %s, to_timestamp(%s / 1000.0))",
                    (token.token_sha256, token.name, token.role, token.supplier, token.created_ms),
                )
        except psycopg.OperationalError as exc:
            self._drop()
            raise StoreUnavailableError(f"TimescaleDB unreachable: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"TimescaleDB refused the token: {exc}") from exc

    def token(self, token_sha256: str) -> ApiToken | None:
        rows = self._query(
            "SELECT token_sha256, name, role, supplier, "
            "(round(EXTRACT(EPOCH FROM created_at) * 1000))::bigint FROM api_tokens "
            "WHERE token_sha256 = %s",
            (token_sha256,),
        )
        return ApiToken(*rows[0]) if rows else None

    def latest_device_states(self) -> list[DeviceState]:
        rows = self._query(
            "SELECT DISTINCT ON (device_id) device_id, "
            "(round(EXTRACT(EPOCH FROM fix_time) * 1000))::bigint, seq, state, fence, distance_m, "
            "(round(EXTRACT(EPOCH FROM received_at) * 1000))::bigint "
            "FROM fixes WHERE accepted ORDER BY device_id, fix_time DESC, seq DESC",
            (),
        )
        return [DeviceState(*r) for r in rows]

    def counts(self) -> dict[str, int]:
        return {
            t: int(self._query(f"SELECT count(*) FROM {t}", ())[0][0])
            for t in ("fixes", "events", "alerts", "dead_letters")
        }

    def fix_count(self, device_ids: list[str], since_ms: int, until_ms: int) -> int:
        return int(
            self._query(
                "SELECT count(*) FROM fixes WHERE device_id = ANY(%s) "
                "AND fix_time >= to_timestamp(%s / 1000.0) "
                "AND fix_time < to_timestamp(%s / 1000.0)",
                (list(device_ids), since_ms, until_ms),
            )[0][0]
        )

    def ping(self) -> bool:
        try:
            self._query("SELECT 1", ())
            return True
        except StoreError:
            return False

    # ---------------------------------------------------------------- operations
    def edition(self) -> str:
        """ "timescale" (Timescale License: continuous aggregates, policies, compression) or
        "apache" (Debian's package: hypertables and chunk management only)."""
        return str(self._query("SELECT current_setting('timescaledb.license', true)", ())[0][0])

    def minute_is_continuous(self) -> bool:
        rows = self._query(
            "SELECT 1 FROM timescaledb_information.continuous_aggregates "
            "WHERE view_name = 'fix_minutes'",
            (),
        )
        return bool(rows)

    def refresh_minutes(self) -> None:
        """Bring the per-minute statistics up to date now."""
        continuous = self.minute_is_continuous()
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:  # CALL refuses transactions
                if continuous:
                    conn.execute("CALL refresh_continuous_aggregate('fix_minutes', NULL, NULL)")
                else:
                    conn.execute("REFRESH MATERIALIZED VIEW fix_minutes")
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(f"TimescaleDB unreachable: {exc}") from exc

    def minute_stats(self, device_id: str) -> list[tuple[int, int, float | None]]:
        """(minute start ms, fixes, mean accuracy m) for a device, from the aggregate."""
        rows = self._query(
            "SELECT (EXTRACT(EPOCH FROM minute) * 1000)::bigint, fixes, mean_accuracy_m "
            "FROM fix_minutes WHERE device_id = %s ORDER BY minute",
            (device_id,),
        )
        return [(int(m), int(n), a) for m, n, a in rows]

    def drop_older_than(self, table: str, keep_days: int) -> int:
        """Retention: drop whole chunks of `table` older than `keep_days`; returns chunks dropped.

        Works on both editions (drop_chunks); run it from a schedule. With the Timescale
        License edition `set_retention` hands the schedule to TimescaleDB instead.
        """
        self._check_days(table, keep_days)
        rows = self._query(
            "SELECT drop_chunks(%s::regclass, older_than => make_interval(days => %s))",
            (table, keep_days),
        )
        return len(rows)

    def set_retention(self, table: str, keep_days: int) -> None:
        """A TimescaleDB retention policy (Timescale License edition only)."""
        self._needs_license("a retention policy")
        self._check_days(table, keep_days)
        self._query(
            "SELECT add_retention_policy(%s, make_interval(days => %s), if_not_exists => true)",
            (table, keep_days),
        )

    def set_compression(self, table: str, after_days: int) -> None:
        """Compress chunks older than `after_days`, segmented by device (Timescale License only)."""
        self._needs_license("compression")
        if table not in ("fixes", "events", "alerts"):
            raise StoreError(f"compression is offered for fixes, events and alerts, not {table!r}")
        self._check_days(table, after_days)
        self._query(
            f"ALTER TABLE {table} SET (timescaledb.compress, "
            "timescaledb.compress_segmentby = 'device_id')",
            (),
        )
        self._query(
            "SELECT add_compression_policy(%s, make_interval(days => %s), if_not_exists => true)",
            (table, after_days),
        )

    def _needs_license(self, what: str) -> None:
        if self.edition() != "timescale":
            raise StoreError(
                f"{what} needs TimescaleDB's Timescale License edition; this server runs the "
                "Apache edition (use drop_older_than for retention)"
            )

    @staticmethod
    def _check_days(table: str, days: int) -> None:
        if table not in ("fixes", "events", "alerts", "dead_letters"):
            raise StoreError(f"unknown table {table!r}")
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise StoreError(f"days must be a whole number of days ≥ 1, got {days!r}")

    @_serialised
    def close(self) -> None:
        self._drop()
