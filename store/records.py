"""What is kept: fixes with their four hop times, breach events, alerts and dead letters.

Times are UTC epoch milliseconds throughout (int), as devices send them. Both backends
keep each record in a table whose columns are its fields, under the same names; a
time is kept under the name of what it is (`stored_column`: `fix_ms` is `fix_time`,
`received_ms` is `received_at`, …), as a timestamptz in TimescaleDB and as INTEGER
UTC ms in SQLite.

Event kinds and device states are the core's vocabulary (geofence.vocabulary): a
record's `kind` is an EventKind and its `state` a State, kept as their text values
("breach", "SAFE"); read back, they are that text, which equals the member.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass(frozen=True, slots=True)
class Fix:
    """One position fix and the decision made on it.

    The four times are the hops a fix travels: the device's fix time, when ingest
    received it, when the geofence decided, and when an alert (if any) left.
    """

    device_id: str  # "supplier/device", unique across suppliers
    supplier: str
    seq: int  # the device's sequence number (-1 when the format has none)
    fix_ms: int  # device fix time
    received_ms: int  # ingest receive time
    decided_ms: int  # decision time
    alert_ms: int | None  # alert publish time, if this fix raised one
    lat: float
    lon: float
    accuracy_m: float | None
    fix_type: str | None  # none, 2D, 3D, DGPS, RTK float, RTK fixed, RFID
    satellites: int | None
    hdop: float | None
    battery_pct: float | None
    firmware: str | None
    source_format: str  # native, owntracks, nmea, rfid
    site: str | None
    x_m: float | None
    y_m: float | None
    fence: str | None  # safe-zone fence covering the fix, if any
    distance_m: float | None  # signed distance to the safe-zone edge (+ inside)
    state: str  # a State after this fix: SAFE, WARNING, BREACH, LOST (UNASSIGNED: no site)
    accepted: bool  # False: a duplicate or out-of-order fix that did not change state


@dataclass(frozen=True, slots=True)
class Event:
    device_id: str
    kind: str  # an EventKind: enter, exit, warning, safe, breach, clear, lost, recovered
    event_ms: int  # the fix time that caused it (for lost: when protection lapsed)
    seq: int
    site: str | None
    fence: str | None
    distance_m: float | None


@dataclass(frozen=True, slots=True)
class Alert:
    """A message published back to the wearer's device (the tap on the shoulder)."""

    device_id: str
    kind: str  # the EventKind of the event that caused it (breach, clear, warning, lost)
    event_ms: int
    seq: int
    published_ms: int
    topic: str
    payload: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A payload that could not be decoded or validated, kept with the reason."""

    received_ms: int
    topic: str
    reason: str  # short machine-readable reason, e.g. "json", "missing:lat", "range:lat"
    detail: str  # human-readable explanation
    payload: bytes


@dataclass(frozen=True, slots=True)
class DeviceState:
    """A device's last accepted fix and the state it left: what a restarted worker resumes."""

    device_id: str
    fix_ms: int
    seq: int
    state: str
    fence: str | None
    distance_m: float | None
    received_ms: int


@dataclass(frozen=True, slots=True)
class TrueExcursion:
    """One true excursion out of the safe zone during a run."""

    run_id: str
    device_id: str
    start_ms: int
    end_ms: int
    depth_m: float


@dataclass(frozen=True)
class TruthSamples:
    """A run's ground truth, columnar (millions of rows: kept as arrays, not records)."""

    run_id: str
    device_id: list[str]
    time_ms: list[int]
    x_m: list[float]
    y_m: list[float]
    inside: list[bool]
    distance_m: list[float | None]

    @classmethod
    def from_rows(cls, run_id: str, rows: list[tuple]) -> TruthSamples:
        """From (device_id, time_ms, x_m, y_m, inside, distance_m) rows, as a backend reads them."""
        columns = list(zip(*rows, strict=True)) if rows else [()] * 6
        device, time_ms, x_m, y_m, inside, distance_m = (list(c) for c in columns)
        return cls(run_id, device, time_ms, x_m, y_m, [bool(i) for i in inside], distance_m)

    def rows(self):
        return zip(
            self.device_id,
            self.time_ms,
            self.x_m,
            self.y_m,
            self.inside,
            self.distance_m,
            strict=True,
        )


@dataclass(frozen=True, slots=True)
class DeviceAlarm:
    """An alarm a device raised by its own decision (its supplier's), as it reported it."""

    device_id: str
    seq: int
    alarm_ms: int  # on the device's clock
    kind: str  # breach, clear, warning, lost
    lat: float | None  # where the device said the wearer was
    lon: float | None
    received_ms: int


@dataclass
class Batch:
    """Everything one micro-batch produced; written in one transaction."""

    fixes: list[Fix] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    device_alarms: list[DeviceAlarm] = field(default_factory=list)

    def __len__(self) -> int:
        return (
            len(self.fixes)
            + len(self.events)
            + len(self.alerts)
            + len(self.dead_letters)
            + len(self.device_alarms)
        )

    def __setstate__(self, state: dict) -> None:
        """A batch spooled before a kind of record was added reads back with none of it."""
        self.__dict__.update({"device_alarms": [], **state})

    def extend(self, other: Batch) -> None:
        self.fixes.extend(other.fixes)
        self.events.extend(other.events)
        self.alerts.extend(other.alerts)
        self.dead_letters.extend(other.dead_letters)
        self.device_alarms.extend(other.device_alarms)


def columns(record_type: type) -> list[str]:
    """A record type's field names, in order (its table's columns, as `stored_column`s)."""
    return [f.name for f in fields(record_type)]


#: Fields whose column is named otherwise: every time is stored under the name of what it
#: is, the same in both backends (a timestamptz in TimescaleDB, INTEGER UTC ms in SQLite).
_STORED_NAMES = {
    "fix_ms": "fix_time",
    "received_ms": "received_at",
    "decided_ms": "decided_at",
    "alert_ms": "alert_at",
    "event_ms": "event_time",
    "published_ms": "published_at",
    "alarm_ms": "alarm_time",
    "created_ms": "created_at",
    "start_ms": "start_time",
    "end_ms": "end_time",
    "time_ms": "time",  # a truth sample's time
    "minute_ms": "minute",  # fix_minutes: the minute's start
}
#: The record fields that are times (UTC epoch ms in a record).
TIME_FIELDS = frozenset(_STORED_NAMES)


def stored_column(field_name: str) -> str:
    """The column a record field is kept in, in either backend.

    >>> stored_column("fix_ms"), stored_column("accuracy_m")
    ('fix_time', 'accuracy_m')
    """
    return _STORED_NAMES.get(field_name, field_name)


def stored_columns(record_type: type) -> list[str]:
    """A record type's columns, in its fields' order.

    >>> stored_columns(Alert)
    ['device_id', 'kind', 'event_time', 'seq', 'published_at', 'topic', 'payload']
    """
    return [stored_column(name) for name in columns(record_type)]


@dataclass(frozen=True)
class EventQuery:
    """A page of the breach log: filters, then a keyset cursor (the last row seen)."""

    since_ms: int | None = None
    until_ms: int | None = None  # exclusive
    site: str | None = None
    supplier: str | None = None
    device_id: str | None = None
    kinds: tuple[str, ...] = ()
    after: tuple[int, str, str, int] | None = None  # (event_ms, device_id, kind, seq)
    limit: int = 100


@dataclass(frozen=True, slots=True)
class DeviceOverview:
    """A device as the console shows it: its last accepted fix and the state it left."""

    device_id: str
    supplier: str
    firmware: str | None
    fix_ms: int
    received_ms: int
    lat: float
    lon: float
    accuracy_m: float | None
    site: str | None
    state: str


@dataclass(frozen=True, slots=True)
class SiteVersion:
    site_id: str
    version: int
    created_ms: int
    author: str
    note: str
    retired: bool
    document: str  # the site as GeoJSON text


@dataclass(frozen=True, slots=True)
class ApiToken:
    token_sha256: str
    name: str
    role: str
    supplier: str | None
    created_ms: int
