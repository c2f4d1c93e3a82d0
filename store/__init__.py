"""Storage: one contract (store.contract.Store), two backends.

* `store.timescale.TimescaleStore`: TimescaleDB through psycopg 3, for a trial or
  a live deployment: hypertables, batched COPY, a per-minute continuous aggregate.
* `store.sqlite.SqliteStore`: the embedded default for a one-machine trial.

Both are idempotent on the natural keys of what they keep, so a message the
broker redelivers never doubles a fix, an event or an alert. `open_store(url)`
picks the backend from the URL. This package imports nothing else of ours.
"""

from store.contract import Store, StoreError, StoreUnavailableError, open_store
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

__all__ = [
    "Alert",
    "ApiToken",
    "Batch",
    "DeadLetter",
    "DeviceAlarm",
    "DeviceOverview",
    "DeviceState",
    "Event",
    "EventQuery",
    "Fix",
    "SiteVersion",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "TrueExcursion",
    "TruthSamples",
    "open_store",
]
