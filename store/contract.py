"""The storage contract both backends keep, and the URL that picks one.

Times in and out are UTC epoch milliseconds (int) and half-open ranges [since, until);
event kinds and device states are the core's words (geofence.vocabulary), kept as text.
Both backends pass the same tests (tests/test_store_contract.py).

>>> from store import Batch, Event
>>> store = open_store("sqlite://:memory:")
>>> store.migrate()
[1, 2, 3, 4, 5, 6]
>>> store.write(Batch(events=[Event("acme/a1", "breach", 1_795_000_000_000, 7, "ECM1",
...                                "possession", -0.4)]))
>>> [(e.kind, e.event_ms) for e in store.events("acme/a1")]
[('breach', 1795000000000)]
"""

from __future__ import annotations

from typing import Protocol

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
)


class StoreError(RuntimeError):
    """The store refused a request (bad input or a broken schema)."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached now; the caller should spool and retry."""


class Store(Protocol):
    """What ingest, trials and reporting need of storage.

    `write` is atomic and idempotent: writing the same batch twice (a broker
    redelivery after a crash) leaves the store as if it were written once. It
    returns only once the batch is durable. Every read takes and gives times as UTC
    epoch ms; a read with a device and a range keeps that device's rows with a time in
    [since_ms, until_ms), either bound left out for "unbounded".
    """

    def migrate(self) -> list[int]:
        """Bring the schema to the newest version; returns the versions applied now.

        Each migration is applied once, in its own transaction, in order; a second
        call applies nothing. StoreError if one fails (nothing of it is kept).

        >>> store = open_store("sqlite://:memory:")
        >>> store.migrate()[-1], store.migrate(), store.schema_version()
        (6, [], 6)
        """
        ...

    def schema_version(self) -> int:
        """The newest migration applied (0 for an empty store)."""
        ...

    def write(self, batch: Batch) -> None:
        """Keep a batch (fixes, events, alerts, dead letters, device alarms) in one
        transaction, each record once by its natural key.

        Returns once the batch is durable. StoreError if the store refuses it (a value
        it cannot keep): nothing of the batch is kept. StoreUnavailableError if the
        store cannot be reached: nothing is kept, and the caller retries later.

        >>> from store import Batch, Event
        >>> store = open_store("sqlite://:memory:")
        >>> _ = store.migrate()
        >>> batch = Batch(events=[Event("acme/a1", "clear", 1000, 3, None, None, 2.0)])
        >>> store.write(batch); store.write(batch)  # a redelivery
        >>> store.counts()["events"]
        1
        """
        ...

    def fixes(
        self, device_id: str | None = None, since_ms: int | None = None, until_ms: int | None = None
    ) -> list[Fix]:
        """Fixes (every field as written), by device, fix time and seq.

        Parameters: `device_id` ("supplier/device"; None: every device), and a fix
        time range [since_ms, until_ms) in UTC ms (None: unbounded).
        """
        ...

    def events(
        self, device_id: str | None = None, since_ms: int | None = None, until_ms: int | None = None
    ) -> list[Event]:
        """Breach-log events, by device, event time and seq (filters as `fixes`)."""
        ...

    def alerts(
        self, device_id: str | None = None, since_ms: int | None = None, until_ms: int | None = None
    ) -> list[Alert]:
        """Alerts published, by device and the time of the event that raised them (filters
        as `fixes`, on that event time)."""
        ...

    def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter, oldest receipt first, its payload's bytes exactly as received."""
        ...

    def device_alarms(
        self, device_id: str | None = None, since_ms: int | None = None, until_ms: int | None = None
    ) -> list[DeviceAlarm]:
        """The devices' own alarms (by their alarm time), ordered by device and time."""
        ...

    def write_truth(self, truth: TruthSamples, excursions: list[TrueExcursion]) -> None:
        """Keep a run's ground truth (idempotent, like every write)."""
        ...

    def true_excursions(self, run_id: str) -> list[TrueExcursion]:
        """A run's true excursions out of the safe zone, by device and start time."""
        ...

    def truth(self, run_id: str) -> TruthSamples:
        """A run's truth samples, ordered by device and time."""
        ...

    def truth_count(self, run_id: str) -> int:
        """How many truth samples a run has kept."""
        ...

    def latest_device_states(self) -> list[DeviceState]:
        """Each device's last accepted fix (by fix time, then seq) and its state.

        What a restarted ingest worker resumes from, by device.

        >>> from store import Batch
        >>> from store.records import Fix
        >>> store = open_store("sqlite://:memory:")
        >>> _ = store.migrate()
        >>> def fix(seq, t, state, accepted=True):
        ...     return Fix("acme/a1", "acme", seq, t, t + 40, t + 41, None, 51.56, -0.11, 0.3,
        ...                None, None, None, None, None, "native", "ECM1", 1.0, 2.0, None, -0.2,
        ...                state, accepted)
        >>> store.write(Batch(fixes=[fix(1, 1000, "SAFE"), fix(2, 2000, "BREACH"),
        ...                          fix(3, 1500, "SAFE", accepted=False)]))
        >>> [(s.seq, s.fix_ms, s.state) for s in store.latest_device_states()]
        [(2, 2000, 'BREACH')]
        """
        ...

    def refresh_minutes(self) -> None:
        """Bring the per-minute statistics up to date."""
        ...

    def minute_stats(self, device_id: str) -> list[tuple[int, int, float | None]]:
        """(minute start ms, fixes, mean accuracy m) for one device, oldest first."""
        ...

    def breach_log(self, q: EventQuery, *, newest_first: bool = False) -> list[Event]:
        """One page of at most q.limit events in (time, device, kind, seq) order, oldest
        first, or that order reversed when `newest_first`; q.after (a page's last key) keeps
        only the events strictly beyond it in the order asked, so paging either way sees
        every event once.

        >>> from store import Batch, Event, EventQuery
        >>> store = open_store("sqlite://:memory:")
        >>> _ = store.migrate()
        >>> store.write(Batch(events=[Event("acme/a1", kind, 1000 * n, n, "ECM1", None, 0.0)
        ...                           for n, kind in enumerate(["breach", "clear", "breach"])]))
        >>> page = store.breach_log(EventQuery(kinds=("breach",), limit=1), newest_first=True)
        >>> [(e.kind, e.event_ms) for e in page]
        [('breach', 2000)]
        >>> last = page[-1]
        >>> after = (last.event_ms, last.device_id, last.kind, last.seq)
        >>> [e.event_ms for e in store.breach_log(EventQuery(kinds=("breach",), after=after),
        ...                                       newest_first=True)]
        [0]
        """
        ...

    def device_overview(self, supplier: str | None = None) -> list[DeviceOverview]:
        """Every device's last accepted fix and the state it left (one supplier's, if given)."""
        ...

    def recent_decisions(self, since_ms: int) -> tuple[int, float | None, float | None]:
        """Fixes since then, and the median and 95th percentile of receive-to-decision, ms."""
        ...

    def dead_letter_counts(self) -> dict[str, int]:
        """Dead letters kept, by reason."""
        ...

    def save_site_version(
        self, site_id: str, document: str, author: str, note: str, retired: bool = False
    ) -> SiteVersion:
        """Keep a new version of a site (versions count up from 1; none is overwritten).

        `document` is the site as GeoJSON text; the version is stamped with the time it
        was made (`created_ms`, UTC ms) and returned.
        """
        ...

    def site_versions(self, site_id: str | None = None) -> list[SiteVersion]:
        """Every version of a site (or of every site), by site and version."""
        ...

    def save_token(self, token: ApiToken) -> None:
        """Keep an API token's digest; StoreError if that digest is already kept."""
        ...

    def token(self, token_sha256: str) -> ApiToken | None:
        """The token with this SHA-256 digest (hex), or None."""
        ...

    def counts(self) -> dict[str, int]:
        """Rows per table: fixes, events, alerts, dead_letters."""
        ...

    def fix_count(self, device_ids: list[str], since_ms: int, until_ms: int) -> int:
        """Fixes of these devices with a fix time in [since, until): has a run fully arrived?"""
        ...

    def ping(self) -> bool:
        """True if the store answers now (for health checks); never raises."""
        ...

    def close(self) -> None:
        """Let go of the store's connection; the object is not used again."""
        ...


def open_store(url: str) -> Store:
    """A store from a URL: postgresql://… (TimescaleDB) or sqlite:///path (or sqlite://:memory:).

    Parameters
    ----------
    url : str
        postgresql://user:password@host:port/db (or postgres://…) for TimescaleDB;
        sqlite:///absolute/path (the file /absolute/path), sqlite://relative/path, or
        sqlite://:memory: for SQLite (its file's folder is made if missing).

    Returns
    -------
    Store
        Not yet migrated: call `migrate()` before the first write.

    Raises StoreError for any other URL.

    >>> type(open_store("sqlite://:memory:")).__name__
    'SqliteStore'
    >>> open_store("mysql://db")
    Traceback (most recent call last):
    store.contract.StoreError: unknown store URL 'mysql://db': use postgresql://… or sqlite:///path
    """
    if url.startswith(("postgresql://", "postgres://")):
        from store.timescale import TimescaleStore

        return TimescaleStore(url)
    if url.startswith("sqlite://"):
        from store.sqlite import SqliteStore

        path = url.removeprefix("sqlite://")
        return SqliteStore(
            path.removeprefix("/") if path.startswith("/:memory:") else path or ":memory:"
        )
    raise StoreError(f"unknown store URL {url!r}: use postgresql://… or sqlite:///path")
