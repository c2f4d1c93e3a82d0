"""The storage contract both backends keep, and the URL that picks one."""

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
    returns only once the batch is durable.
    """

    def migrate(self) -> list[int]:
        """Bring the schema to the newest version; returns the versions applied now."""
        ...

    def schema_version(self) -> int: ...

    def write(self, batch: Batch) -> None: ...

    def fixes(
        self, device_id: str | None = None, since_ms: int | None = None, until_ms: int | None = None
    ) -> list[Fix]: ...

    def events(
        self, device_id: str | None = None, since_ms: int | None = None, until_ms: int | None = None
    ) -> list[Event]: ...

    def alerts(
        self, device_id: str | None = None, since_ms: int | None = None, until_ms: int | None = None
    ) -> list[Alert]: ...

    def dead_letters(self) -> list[DeadLetter]: ...

    def device_alarms(
        self, device_id: str | None = None, since_ms: int | None = None, until_ms: int | None = None
    ) -> list[DeviceAlarm]:
        """The devices' own alarms (by their alarm time), ordered by device and time."""
        ...

    def write_truth(self, truth: TruthSamples, excursions: list[TrueExcursion]) -> None:
        """Keep a run's ground truth (idempotent, like every write)."""
        ...

    def true_excursions(self, run_id: str) -> list[TrueExcursion]: ...

    def truth(self, run_id: str) -> TruthSamples:
        """A run's truth samples, ordered by device and time."""
        ...

    def truth_count(self, run_id: str) -> int: ...

    def latest_device_states(self) -> list[DeviceState]:
        """Each device's last accepted fix (by fix time, then seq) and its state."""
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
        every event once."""
        ...

    def device_overview(self, supplier: str | None = None) -> list[DeviceOverview]:
        """Every device's last accepted fix and the state it left."""
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
        """Keep a new version of a site (versions count up from 1; none is overwritten)."""
        ...

    def site_versions(self, site_id: str | None = None) -> list[SiteVersion]: ...

    def save_token(self, token: ApiToken) -> None: ...

    def token(self, token_sha256: str) -> ApiToken | None: ...

    def counts(self) -> dict[str, int]:
        """Rows per table: fixes, events, alerts, dead_letters."""
        ...

    def fix_count(self, device_ids: list[str], since_ms: int, until_ms: int) -> int:
        """Fixes of these devices with a fix time in [since, until): has a run fully arrived?"""
        ...

    def ping(self) -> bool:
        """True if the store answers now (for health checks); never raises."""
        ...

    def close(self) -> None: ...


def open_store(url: str) -> Store:
    """A store from a URL: postgresql://… (TimescaleDB) or sqlite:///path (or sqlite://:memory:)."""
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
