"""The embedded store: SQLite, for a one-machine trial with no server.

WAL journal with synchronous=FULL: a write has returned only once it would
survive a power cut, which is what "acknowledge after a durable write" needs.
"""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
import threading
import time
from collections.abc import Iterable
from operator import attrgetter
from pathlib import Path

from store.contract import StoreError, StoreUnavailableError
from store.migrations import migrations
from store.query import event_filter, event_order, range_filter
from store.records import (
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
    stored_columns,
)

_FIX_COLUMNS = columns(Fix)
_EVENT_COLUMNS = columns(Event)
_ALERT_COLUMNS = columns(Alert)
_ALARM_COLUMNS = columns(DeviceAlarm)


def _select_list(record_type: type) -> str:
    """The columns a record is read back from, in its fields' order."""
    return ", ".join(stored_columns(record_type))

#: Errors that mean a batch holds a value SQLite will not keep (an integer beyond 64 bits,
#: text that is not UTF-8, a broken constraint): a refusal, not an unreachable database.
_REFUSED = (
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
    OverflowError,
    UnicodeError,
    ValueError,
    TypeError,
)


def _time_filter(
    column: str, device_id: str | None, since_ms: int | None, until_ms: int | None
) -> tuple[str, list]:
    return range_filter(device_id, since_ms, until_ms, column, "?")


class SqliteStore:
    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailableError(f"cannot open SQLite store {self.path!r}: {exc}") from exc
        self._lock = threading.Lock()
        self._db.execute(  # as schema 1 made it: migration 6 names applied_ms applied_at
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL)"
        )

    def migrate(self) -> list[int]:
        applied = []
        with self._lock:
            done = {v for (v,) in self._db.execute("SELECT version FROM schema_migrations")}
            for m in migrations("sqlite"):
                if m.version in done:
                    continue
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    for statement in _statements(m.sql):
                        self._db.execute(statement)
                    self._db.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                        (m.version, m.name, round(time.time() * 1000)),
                    )
                    self._db.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._db.execute("ROLLBACK")
                    raise StoreError(f"migration {m.version} ({m.name}) failed: {exc}") from exc
                applied.append(m.version)
        return applied

    def schema_version(self) -> int:
        with self._lock:
            (version,) = self._db.execute(
                "SELECT coalesce(max(version), 0) FROM schema_migrations"
            ).fetchone()
        return int(version)

    def write(self, batch: Batch) -> None:
        if not len(batch):
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._insert("fixes", _FIX_COLUMNS, batch.fixes)
                self._insert("events", _EVENT_COLUMNS, batch.events)
                self._insert("alerts", _ALERT_COLUMNS, batch.alerts)
                self._insert("device_alarms", _ALARM_COLUMNS, batch.device_alarms)
                self._db.executemany(
                    "INSERT INTO dead_letters VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [
                        (
                            d.received_ms,
                            d.topic,
                            d.reason,
                            d.detail,
                            d.payload,
                            hashlib.sha256(d.payload).digest(),
                        )
                        for d in batch.dead_letters
                    ],
                )
                self._db.execute("COMMIT")
            except BaseException as exc:
                # whatever failed, the transaction ends here: one left open would make every
                # later write fail ("cannot start a transaction within a transaction")
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, _REFUSED):  # the batch's content, not the database
                    raise StoreError(f"SQLite refused a batch, nothing kept: {exc}") from exc
                if isinstance(exc, sqlite3.Error):
                    raise StoreUnavailableError(
                        f"SQLite write failed, nothing kept: {exc}"
                    ) from exc
                raise

    def _insert(self, table: str, names: list[str], rows: Iterable) -> None:
        """Insert records' fields `names` into their stored columns, each row once."""
        marks = ", ".join("?" for _ in names)
        target = ", ".join(stored_column(n) for n in names)
        self._db.executemany(
            # ON CONFLICT, not OR IGNORE: only a repeated key may be skipped; a row that
            # breaks NOT NULL must fail the batch, never vanish quietly
            f"INSERT INTO {table} ({target}) VALUES ({marks}) ON CONFLICT DO NOTHING",
            [row_of(r) for r in rows] if (row_of := attrgetter(*names)) else [],
        )

    def _select(self, sql: str, params: list) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def fixes(self, device_id=None, since_ms=None, until_ms=None) -> list[Fix]:
        where, params = _time_filter("fix_time", device_id, since_ms, until_ms)
        rows = self._select(
            f"SELECT {_select_list(Fix)} FROM fixes{where} ORDER BY device_id, fix_time, seq",
            params,
        )
        return [Fix(*r[:-1], bool(r[-1])) for r in rows]

    def events(self, device_id=None, since_ms=None, until_ms=None) -> list[Event]:
        where, params = _time_filter("event_time", device_id, since_ms, until_ms)
        rows = self._select(
            f"SELECT {_select_list(Event)} FROM events{where} "
            "ORDER BY device_id, event_time, seq",
            params,
        )
        return [Event(*r) for r in rows]

    def alerts(self, device_id=None, since_ms=None, until_ms=None) -> list[Alert]:
        where, params = _time_filter("event_time", device_id, since_ms, until_ms)
        rows = self._select(
            f"SELECT {_select_list(Alert)} FROM alerts{where} ORDER BY device_id, event_time",
            params,
        )
        return [Alert(*r) for r in rows]

    def device_alarms(self, device_id=None, since_ms=None, until_ms=None) -> list[DeviceAlarm]:
        where, params = _time_filter("alarm_time", device_id, since_ms, until_ms)
        rows = self._select(
            f"SELECT {_select_list(DeviceAlarm)} FROM device_alarms{where} "
            "ORDER BY device_id, alarm_time, seq",
            params,
        )
        return [DeviceAlarm(*r) for r in rows]

    def dead_letters(self) -> list[DeadLetter]:
        rows = self._select(
            f"SELECT {_select_list(DeadLetter)} FROM dead_letters ORDER BY received_at",
            [],
        )
        return [DeadLetter(*r) for r in rows]

    def counts(self) -> dict[str, int]:
        return {
            t: self._select(f"SELECT count(*) FROM {t}", [])[0][0]
            for t in ("fixes", "events", "alerts", "dead_letters")
        }

    def fix_count(self, device_ids: list[str], since_ms: int, until_ms: int) -> int:
        if not device_ids:
            return 0
        marks = ", ".join("?" * len(device_ids))
        return int(
            self._select(
                f"SELECT count(*) FROM fixes WHERE device_id IN ({marks}) "
                "AND fix_time >= ? AND fix_time < ?",
                [*device_ids, since_ms, until_ms],
            )[0][0]
        )

    def write_truth(self, truth: TruthSamples, excursions: list[TrueExcursion]) -> None:
        columns = _truth_columns(truth)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(  # rows zipped in C: a truth is millions of rows
                    "INSERT INTO truth VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    zip(itertools.repeat(truth.run_id), *columns, strict=False),
                )
                self._db.executemany(
                    "INSERT INTO true_excursions VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [(e.run_id, e.device_id, e.start_ms, e.end_ms, e.depth_m) for e in excursions],
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"SQLite refused the truth, nothing kept: {exc}") from exc

    def true_excursions(self, run_id: str) -> list[TrueExcursion]:
        rows = self._select(
            f"SELECT {_select_list(TrueExcursion)} FROM true_excursions "
            "WHERE run_id = ? ORDER BY device_id, start_time",
            [run_id],
        )
        return [TrueExcursion(*r) for r in rows]

    def truth_count(self, run_id: str) -> int:
        return int(self._select("SELECT count(*) FROM truth WHERE run_id = ?", [run_id])[0][0])

    def truth(self, run_id: str) -> TruthSamples:
        rows = self._select(
            "SELECT device_id, time, x_m, y_m, inside, distance_m FROM truth "
            "WHERE run_id = ? ORDER BY device_id, time",
            [run_id],
        )
        return TruthSamples.from_rows(run_id, rows)

    # ---------------------------------------------------------------- the console
    def breach_log(self, q: EventQuery, *, newest_first: bool = False) -> list[Event]:
        where, params = event_filter(q, "?", newest_first=newest_first)
        rows = self._select(
            f"SELECT {_select_list(Event)} FROM events{where} "
            f"ORDER BY {event_order(newest_first)} LIMIT ?",
            [*params, q.limit],
        )
        return [Event(*r) for r in rows]

    def device_overview(self, supplier: str | None = None) -> list[DeviceOverview]:
        rows = self._select(
            f"SELECT {_select_list(DeviceOverview)} FROM (SELECT *, row_number() OVER "
            "(PARTITION BY device_id ORDER BY fix_time DESC, seq DESC) AS newest FROM fixes "
            "WHERE accepted"
            + (" AND supplier = ?" if supplier is not None else "")
            + ") WHERE newest = 1 ORDER BY device_id",
            [supplier] if supplier is not None else [],
        )
        return [DeviceOverview(*r) for r in rows]

    def recent_decisions(self, since_ms: int) -> tuple[int, float | None, float | None]:
        rows = self._select(
            "SELECT decided_at - received_at FROM fixes WHERE fix_time >= ?", [since_ms]
        )
        if not rows:
            return 0, None, None
        values = sorted(r[0] for r in rows)

        def percentile(q: float) -> float:  # linear between the nearest ranks
            at = q * (len(values) - 1)
            low = int(at)
            high = min(low + 1, len(values) - 1)
            return float(values[low] + (values[high] - values[low]) * (at - low))

        return len(values), percentile(0.5), percentile(0.95)

    def dead_letter_counts(self) -> dict[str, int]:
        rows = self._select("SELECT reason, count(*) FROM dead_letters GROUP BY reason", [])
        return {reason: int(n) for reason, n in rows}

    def save_site_version(
        self, site_id: str, document: str, author: str, note: str, retired: bool = False
    ) -> SiteVersion:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                (latest,) = self._db.execute(
                    "SELECT coalesce(max(version), 0) FROM site_versions WHERE site_id = ?",
                    [site_id],
                ).fetchone()
                version = SiteVersion(
                    site_id, latest + 1, round(time.time() * 1000), author, note, retired, document
                )
                self._db.execute(
                    "INSERT INTO site_versions VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [getattr(version, f) for f in columns(SiteVersion)],
                )
                self._db.execute("COMMIT")
                return version
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"SQLite refused the site version: {exc}") from exc

    def site_versions(self, site_id: str | None = None) -> list[SiteVersion]:
        rows = self._select(
            f"SELECT {_select_list(SiteVersion)} FROM site_versions"
            + (" WHERE site_id = ?" if site_id is not None else "")
            + " ORDER BY site_id, version",
            [site_id] if site_id is not None else [],
        )
        return [SiteVersion(*r[:5], bool(r[5]), r[6]) for r in rows]

    def save_token(self, token: ApiToken) -> None:
        with self._lock:
            try:
                with self._db:
                    self._db.execute(
                        "INSERT INTO api_tokens VALUES (?, ?, ?, ?, ?)",
                        [getattr(token, f) for f in columns(ApiToken)],
                    )
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite refused the token: {exc}") from exc

    def token(self, token_sha256: str) -> ApiToken | None:
        rows = self._select(
            f"SELECT {_select_list(ApiToken)} FROM api_tokens WHERE token_sha256 = ?",
            [token_sha256],
        )
        return ApiToken(*rows[0]) if rows else None

    def latest_device_states(self) -> list[DeviceState]:
        # each device's newest accepted fix, found through (device_id, fix_time) one device at
        # a time: a window over every fix grows with the store (0.25 s at a trial's 160,000
        # fixes, run again at every start), this stays milliseconds
        rows = self._select(
            "SELECT f.device_id, f.fix_time, f.seq, f.state, f.fence, f.distance_m, "
            "f.received_at FROM (SELECT DISTINCT device_id FROM fixes) AS d JOIN fixes AS f "
            "ON f.rowid = (SELECT rowid FROM fixes WHERE device_id = d.device_id AND accepted"
            " ORDER BY fix_time DESC, seq DESC LIMIT 1) ORDER BY f.device_id",
            [],
        )
        return [DeviceState(*r) for r in rows]

    def refresh_minutes(self) -> None:
        """Nothing to do: the embedded per-minute view is computed when read."""

    def minute_stats(self, device_id: str) -> list[tuple[int, int, float | None]]:
        rows = self._select(
            "SELECT minute, fixes, mean_accuracy_m FROM fix_minutes WHERE device_id = ? "
            "ORDER BY minute",
            [device_id],
        )
        return [(int(m), int(n), a) for m, n, a in rows]

    def ping(self) -> bool:
        try:
            self._select("SELECT 1", [])
            return True
        except sqlite3.Error:
            return False

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _truth_columns(truth: TruthSamples) -> tuple[list, ...]:
    """A truth's columns in the table's order (equal lengths, checked once, not per row)."""
    columns = (truth.device_id, truth.time_ms, truth.x_m, truth.y_m, truth.inside,
               truth.distance_m)  # fmt: skip
    if len({len(c) for c in columns}) > 1:
        raise StoreError("a truth's columns differ in length: nothing kept")
    return columns


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (our migrations have no semicolons in literals)."""
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]
