"""One micro-batch of raw messages in; decisions, alerts to send and a batch to keep out.

No sockets and no clock of its own (the caller passes `clock`), so the same code
decides live, in replays and in tests. A batch goes through three stages:

1. **The edge, per message.** Each message is decoded and validated on its own
   (`wire.codecs`) into bounded fixes, a last will, or a dead letter with its
   reason. Nothing a payload carries gets past this stage unbounded: every integer
   fits the store's columns, every float is finite and in range, every string short
   and printable.
2. **Time sanity, per message, in arrival order.** A fix more than `stale_after_s`
   older than its device's newest fix and than its own receipt is dead-lettered
   (`time:stale`): it never reaches the state machine.
3. **The decision:** up to ONE_AT_A_TIME_MAX fixes one at a time on plain Python
   numbers (the live path when it is quiet); a busier batch vectorised, one frame
   conversion and one geofence evaluation per site, one state-machine step for all
   devices. The two are one rule, held identical by property tests. A last will is
   applied where it came in the batch. Its inputs are bounded, so no one row can
   fail it; the device states are
   replaced only once the whole batch has been decided.

So one message's fate never touches another's: a payload that cannot be decided
or stored is a dead letter on its own, and every other message of its batch is
decided, alerted and kept as if it had not been there, on first delivery and on
every redelivery.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import NamedTuple

import numpy as np

from geofence.breach import (
    NO_TIME,
    BreachConfig,
    DeviceRow,
    DeviceStates,
    EventRow,
    Events,
    expire,
    step,
    step_fix,
)
from geofence.vocabulary import MACHINE_STATES, EventKind, State, event_kind, state_of
from ingest.deployment import Deployment
from store import Alert, Batch, DeadLetter, DeviceAlarm, DeviceState, Event, Fix
from wire.codecs import MAX_PAYLOAD_BYTES, DecodedFix, DecodeError, decode
from wire.topics import DEAD_LETTER_TOPIC, alert_topic, parse

log = logging.getLogger("trackfence.ingest")

#: Events that are sent to the wearer's device as an alert.
ALERTING = {EventKind.BREACH, EventKind.CLEAR, EventKind.WARNING, EventKind.LOST}
#: The alert's JSON encoder, built once: json.dumps with separators builds one per call,
#: which cost more than the encoding (on the alert's path).
_ALERT_JSON = json.JSONEncoder(separators=(",", ":"))
_MESSAGES = {
    EventKind.BREACH: "Stop: you are leaving the safe zone",
    EventKind.CLEAR: "Back in the safe zone",
    EventKind.WARNING: "Careful: near the edge of the safe zone",
    EventKind.LOST: "Geofence protection lost: no position",
}


@dataclass(frozen=True)
class Inbound:
    topic: str
    payload: bytes
    received_ms: int
    #: Whether this copy's effects (storing it, alerting, dead-lettering) are this worker's.
    #: In a group of workers every worker applies every message to its device states, but
    #: only the worker the shared subscription chose performs its effects.
    effects: bool = True


@dataclass(frozen=True)
class PendingAlert:
    """An alert decided but not yet published; the service stamps the publish time."""

    device_id: str
    kind: EventKind
    event_ms: int
    seq: int
    topic: str
    payload: str


@dataclass
class Decided:
    batch: Batch = field(default_factory=Batch)
    alerts: list[PendingAlert] = field(default_factory=list)
    dead_letter_messages: list[bytes] = field(default_factory=list)  # for DEAD_LETTER_TOPIC
    reasons: Counter = field(default_factory=Counter)  # dead-letter reasons
    dead_letter_topic: str = DEAD_LETTER_TOPIC

    def merge(self, other: Decided) -> None:
        self.batch.extend(other.batch)
        self.alerts.extend(other.alerts)
        self.dead_letter_messages.extend(other.dead_letter_messages)
        self.reasons.update(other.reasons)

    def record_alerts(self, published_ms: list[int]) -> None:
        """Keep each alert as published at `published_ms` (one time per alert, in order).

        Each becomes an `Alert` record, and the fix that raised it carries the time its
        alert went out. The live service passes the times it published them at; a
        replay decided in-process, which publishes nothing, passes the times it stands
        for. Either way the batch kept is built here, the same way.
        """
        if len(published_ms) != len(self.alerts):
            raise ValueError(f"{len(published_ms)} publish times for {len(self.alerts)} alerts")
        if not self.alerts:
            return
        first: dict[tuple[str, int, int], int] = {}  # (device, seq, fix time) -> published
        for pending, published in zip(self.alerts, published_ms, strict=True):
            self.batch.alerts.append(
                Alert(pending.device_id, pending.kind, pending.event_ms, pending.seq,
                      published, pending.topic, pending.payload)
            )  # fmt: skip
            first.setdefault((pending.device_id, pending.seq, pending.event_ms), published)
        self.batch.fixes = [
            _alerted(f, first[key]) if (key := (f.device_id, f.seq, f.fix_ms)) in first else f
            for f in self.batch.fixes
        ]


_FIX_FIELDS = [f.name for f in fields(Fix)]
_FIX_VALUES = attrgetter(*_FIX_FIELDS)
_ALERT_MS_AT = _FIX_FIELDS.index("alert_ms")


def _alerted(fix: Fix, alert_ms: int) -> Fix:
    """`fix` carrying its alert's publish time: `dataclasses.replace` without its per-call
    checks, which cost more than the rest of a lone fix's keeping (on the alert's path)."""
    values = list(_FIX_VALUES(fix))
    values[_ALERT_MS_AT] = alert_ms
    return Fix(*values)


#: How many messages a replicated worker remembers while waiting for their other copy.
REMEMBERED_MESSAGES = 50_000
#: Devices one worker keeps state for. A trial has tens, a railway tens of thousands; a
#: flood of invented device names beyond this is dead-lettered, not held in memory.
MAX_DEVICES = 200_000
#: A fix more than this older than both its device's newest fix and its own receipt is
#: stale (`time:stale`): too old to say where the wearer is now, so it is dead-lettered
#: and never decided (README "Hostile input and time"). A device clock put back by less
#: than this, its sequence counting on, is still followed (geofence.breach.step).
STALE_AFTER_S = 300.0
#: The range `stale_after_s` may be set in: not so short that a device's clock jitter
#: or a buffered burst reads as staleness, never so long that a fix from another day
#: could move a device's state.
STALE_AFTER_RANGE_S = (10.0, 86_400.0)
#: What a dead letter keeps of what it was given (payloads up to MAX_PAYLOAD_BYTES whole).
DETAIL_MAX = 300
TOPIC_MAX = 256
_EMITTED = object()  # marker: this message's effects have been emitted
#: A batch of up to this many fixes is decided one fix at a time on plain Python numbers
#: (`Pipeline._decide_each`): below it, numpy's per-call cost on short arrays is more than
#: the work (a lone fix: about 25 µs so, 270 µs through arrays of one). A busier batch is
#: decided vectorised (`_decide_fixes`). The two are one rule, held identical by tests.
ONE_AT_A_TIME_MAX = 8
#: What stamps a decision: the service's clock, or None in a replay (stamped at receipt).
Clock = Callable[[], int] | None


def check_stale_after_s(value: object) -> float:
    """`stale_after_s` as a number of seconds within STALE_AFTER_RANGE_S, or ValueError."""
    lo, hi = STALE_AFTER_RANGE_S
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ValueError(
            f"stale_after_s must be a number of seconds in [{lo:g}, {hi:g}]: {value!r}"
        )
    return float(value)


class _Placed(NamedTuple):
    """Fixes placed in their sites, aligned with the batch's fixes."""

    site_names: np.ndarray  # object: the device's site, "" for a device at no site
    x_m: np.ndarray  # in the site's frame, m (NaN if unplaced)
    y_m: np.ndarray
    distance_m: np.ndarray  # signed distance to the safe-zone edge, m (NaN if unplaced)
    fence: np.ndarray  # int32 safe-zone fence number, -1 outside or unplaced


class _PlacedOne(NamedTuple):
    """One fix placed in its site (as a row of `_Placed`)."""

    site: str | None  # None: the device is at no site
    x_m: float
    y_m: float
    distance_m: float
    fence: int


_UNPLACED = _PlacedOne(None, math.nan, math.nan, math.nan, -1)


class Pipeline:
    """Holds the device states between batches; everything else comes in with each call."""

    def __init__(
        self,
        deployment: Deployment,
        config: BreachConfig,
        replicated: bool = False,
        stale_after_s: float = STALE_AFTER_S,
    ) -> None:
        """`replicated`: one of a group of workers, each seeing every message once for its
        device states and, through the shared subscription, some messages a second time
        for their effects (README: "Scaling out")."""
        self.deployment = deployment
        self.config = config
        self.replicated = replicated
        self.stale_after_ms = round(check_stale_after_s(stale_after_s) * 1000)
        self._remembered: OrderedDict[tuple[str, bytes], object] = OrderedDict()
        self.late_effect_copies = 0
        #: messages that failed on a fault of ours, not of their payload, and were therefore
        #: decided again one by one (see _decide_isolated); it stays 0 unless there is a bug
        self.isolated_failures = 0
        self.device_ids: list[str] = []
        self._number: dict[str, int] = {}
        self._site_of: list[str | None] = []
        self.states = DeviceStates.new(0)
        self.max_devices = MAX_DEVICES

    # ------------------------------------------------------------------ devices
    def _device(self, device_id: str) -> int:
        number = self._number.get(device_id)
        if number is None:
            number = len(self.device_ids)
            self._number[device_id] = number
            self.device_ids.append(device_id)
            self._site_of.append(self.deployment.site_of(device_id))
        return number

    def restore(self, saved: list[DeviceState]) -> None:
        """Resume from the store's last accepted fix per device (after a restart)."""
        for s in saved:
            self._device(s.device_id)
        self.states = self.states.grown(len(self.device_ids))
        for s in saved:
            d = self._number[s.device_id]
            site = self._site_of[d]
            fences = self.deployment.sites[site].fence_names if site else []
            # a state the machine is never in (UNASSIGNED: no site then) resumes as LOST
            resumed = State(s.state) if s.state in MACHINE_STATES else State.LOST
            self.states.state[d] = resumed.code
            self.states.last_fix_ms[d] = s.fix_ms
            self.states.last_heard_ms[d] = s.received_ms
            self.states.last_seq[d] = s.seq
            self.states.fence[d] = fences.index(s.fence) if s.fence in fences else -1
            self.states.distance_m[d] = np.nan if s.distance_m is None else s.distance_m

    # ------------------------------------------------------------------ deciding
    def decide(self, messages: list[Inbound], clock: Clock) -> Decided:
        """Decide a micro-batch; `clock` stamps the decision (None: stamped at receipt).

        A replay decided in-process has no decision time worth measuring: with no
        clock each fix is stamped decided when it was received, a hop of zero that
        reports say was not measured, rather than a time warped by the replay.
        """
        if not self.replicated:
            fragments = self._decide_isolated(messages, clock)
            if len(fragments) == 1:  # a lone message: its output is the batch's
                return fragments[0]
            out = Decided()
            for fragment in fragments:
                out.merge(fragment)
            return out
        out = Decided()
        # each message is applied to the device states once, whichever copy comes first;
        # its effects are emitted when (and only when) the effects copy is here
        new: list[Inbound] = []
        position: dict[tuple[str, bytes], int] = {}
        plan: list[tuple[tuple[str, bytes], bool]] = []
        for m in messages:
            key = (m.topic, m.payload)
            if key not in position and key not in self._remembered:
                position[key] = len(new)
                new.append(m)
            plan.append((key, m.effects))
        for key, fragment in zip(position, self._decide_isolated(new, clock), strict=True):
            self._remembered[key] = fragment
        for key, effects in plan:
            entry = self._remembered.get(key)
            if effects and isinstance(entry, Decided):
                out.merge(entry)
                self._remembered[key] = _EMITTED
        while len(self._remembered) > REMEMBERED_MESSAGES:
            _, dropped = self._remembered.popitem(last=False)
            if isinstance(dropped, Decided):
                self.late_effect_copies += 1  # its effects copy never came to us: another's
        return out

    def _decide_isolated(self, messages: list[Inbound], clock: Clock) -> list[Decided]:
        """_decide_new, and should it fail on a fault of ours, each message again on its own.

        No payload can fail a batch: the edge bounds every field before anything is
        decided. This is the bulkhead for a bug in our own code, so that even then one
        message does not take the others with it. A batch that fails leaves the device
        states untouched (they are replaced only at the end of _decide_new), so each
        message can be decided again alone; one that fails alone is dead-lettered
        (`internal`) and counted in `isolated_failures`, and its bytes are kept.
        """
        try:
            return self._decide_new(messages, clock)
        except Exception as exc:
            if len(messages) == 1:
                self.isolated_failures += 1
                log.exception("a message failed to be decided; dead-lettered as internal")
                fragment = Decided()
                self._dead(
                    fragment,
                    messages[0],
                    "internal",
                    f"ingest failed on this message ({type(exc).__name__}: {exc}); "
                    "a fault of ours to report, with this payload",
                )
                return [fragment]
            log.exception("a batch of %d failed to be decided; deciding each alone", len(messages))
            return [f for m in messages for f in self._decide_isolated([m], clock)]

    def _decide_new(self, messages: list[Inbound], clock: Clock) -> list[Decided]:
        """Decide messages not seen before; one fragment of output per message."""
        fragments = [Decided() for _ in messages]
        fixes, offline = self._admit(messages, fragments)
        fixes = self._fresh(fixes, messages, fragments)
        states = self.states  # replaced only at the end: a failure leaves them untouched
        rows: dict[int, DeviceRow] = {}  # (a few fixes) each device's state after them
        # a last will is applied where it came: the batch's fixes before it are decided
        # before it, and those after it (the device back already) after it
        at = 0
        for will in [*offline, None]:
            end = at
            while end < len(fixes) and (will is None or fixes[end][2] < will[2]):
                end += 1
            part, at = fixes[at:end], end
            if part:
                states, rows = self._settled(states, rows), {}
                if len(part) <= ONE_AT_A_TIME_MAX:
                    states, rows = self._decide_each(states, part, clock, fragments)
                else:
                    states = self._decide_fixes(states, part, clock, fragments)
            if will is not None:
                states, rows = self._settled(states, rows), {}
                states = self._offline(states, [will], fragments)
        for d, row in rows.items():  # the batch is decided: nothing after this can fail
            states.put(d, row)
        self.states = states
        return fragments

    def _settled(self, states: DeviceStates, rows: dict[int, DeviceRow]) -> DeviceStates:
        """`states` with `rows` put in, never into the states held (not yet replaced)."""
        if not rows:
            return states
        if states.state is self.states.state:
            states = states.copy()
        for d, row in rows.items():
            states.put(d, row)
        return states

    def _admit(
        self, messages: list[Inbound], fragments: list[Decided]
    ) -> tuple[list[tuple[DecodedFix, int, int]], list[tuple[int, int, int]]]:
        """The edge: each message alone to bounded fixes, a last will, or a dead letter."""
        fixes: list[tuple[DecodedFix, int, int]] = []  # (fix, received_ms, message)
        offline: list[tuple[int, int, int]] = []  # (device number, received_ms, message)
        arriving: set[str] = set()  # devices first seen in this batch
        for i, m in enumerate(messages):
            topic = parse(m.topic)
            if topic is None:
                self._dead(
                    fragments[i],
                    m,
                    "topic",
                    f"topic {m.topic[:TOPIC_MAX]!r} is not trackside/v1/SUPPLIER/DEVICE/KIND",
                )
                continue
            unknown = topic.device_id not in self._number and topic.device_id not in arriving
            if unknown and len(self.device_ids) + len(arriving) >= self.max_devices:
                self._dead(
                    fragments[i],
                    m,
                    "device-limit",
                    f"this worker already keeps {self.max_devices:,} devices; "
                    f"{topic.device_id!r} is one more than it may hold",
                )
                continue
            try:
                decoded = decode(topic, m.payload, m.received_ms, self.deployment.rfid_readers)
            except DecodeError as exc:
                self._dead(fragments[i], m, exc.reason, exc.detail)
                continue
            if decoded.alarm is not None:  # kept for the trial, decided on by nobody here
                a = decoded.alarm
                fragments[i].batch.device_alarms.append(
                    DeviceAlarm(a.device_id, a.seq, a.alarm_ms, a.kind, a.lat, a.lon,
                                m.received_ms)
                )  # fmt: skip
                continue
            if unknown:
                arriving.add(topic.device_id)
            if decoded.offline:
                offline.append((self._device(topic.device_id), m.received_ms, i))
            fixes.extend((fix, m.received_ms, i) for fix in decoded.fixes)
        return fixes, offline

    def _fresh(
        self,
        fixes: list[tuple[DecodedFix, int, int]],
        messages: list[Inbound],
        fragments: list[Decided],
    ) -> list[tuple[DecodedFix, int, int]]:
        """Time sanity: drop (as `time:stale`) every message with a fix too old to decide on.

        Too old means more than stale_after_s older than the device's newest fix (on the
        device's own clock, which in a replay is the replay's) and than its own receipt
        (on the receiving clock). Judged message by message in arrival order, so a batch
        decides as the same messages one at a time would. A device's first fix has no
        newest fix to be judged against; a burst after a tunnel runs forwards from it.
        """
        bound = self.stale_after_ms
        newest: dict[str, int] = {}  # device -> newest fix time of this batch so far
        kept: list[tuple[DecodedFix, int, int]] = []
        at = 0
        while at < len(fixes):
            message = fixes[at][2]
            end = at
            while end < len(fixes) and fixes[end][2] == message:
                end += 1
            group = fixes[at:end]
            at = end
            stale = None
            for fix, received, _ in group:
                ref = self._newest(fix.device_id, newest)
                if ref != NO_TIME and fix.fix_ms < ref - bound and fix.fix_ms < received - bound:
                    stale = (fix, ref, received)
                    break
            if stale is not None:
                fix, ref, received = stale
                self._dead(
                    fragments[message],
                    messages[message],
                    "time:stale",
                    f"fix time is {(ref - fix.fix_ms) / 1000:.0f} s before the device's newest "
                    f"fix and {(received - fix.fix_ms) / 1000:.0f} s before it was received; "
                    f"stale_after_s is {bound / 1000:g}",
                )
                continue
            for fix, _, _ in group:
                newest[fix.device_id] = max(self._newest(fix.device_id, newest), fix.fix_ms)
            kept.extend(group)
        return kept

    def _newest(self, device_id: str, newest: dict[str, int]) -> int:
        if device_id in newest:
            return newest[device_id]
        d = self._number.get(device_id)
        if d is None or d >= self.states.last_fix_ms.size:
            return NO_TIME
        return int(self.states.last_fix_ms[d])

    def _dead(self, out: Decided, m: Inbound, reason: str, detail: str) -> None:
        topic, detail = _kept_text(m.topic, TOPIC_MAX), _kept_text(detail, DETAIL_MAX)
        payload = m.payload[:MAX_PAYLOAD_BYTES]  # an oversized one is kept in part (`size`)
        out.reasons[reason] += 1
        out.batch.dead_letters.append(DeadLetter(m.received_ms, topic, reason, detail, payload))
        out.dead_letter_messages.append(
            json.dumps(
                {
                    "topic": topic,
                    "reason": reason,
                    "detail": detail,
                    "received_ms": m.received_ms,
                    "payload": m.payload[:512].decode("utf-8", "replace"),
                }
            ).encode()
        )

    def _decide_fixes(
        self,
        states: DeviceStates,
        fixes: list[tuple[DecodedFix, int, int]],
        clock: Clock,
        fragments: list[Decided],
    ) -> DeviceStates:
        """Decide bounded fixes, vectorised; returns the new states (self.states untouched).

        Three steps. Each fix is placed in its device's site and measured against the
        fences (`_place`). The state machine takes every fix of a device that works at a
        site in one step; a device at no site decides nothing, and its fixes are kept
        UNASSIGNED. Then each fix and each event is kept in the output of the message
        that brought it (`_keep_fixes`, `_events`).
        """
        device = np.array([self._device(f.device_id) for f, _, _ in fixes], dtype=np.int64)
        states = states.grown(len(self.device_ids))
        time_ms = np.array([f.fix_ms for f, _, _ in fixes], dtype=np.int64)
        received = np.array([r for _, r, _ in fixes], dtype=np.int64)
        seq = np.array([f.seq for f, _, _ in fixes], dtype=np.int64)
        accuracy = np.array([np.nan if f.accuracy_m is None else f.accuracy_m for f, _, _ in fixes])
        placed = self._place(device, fixes, time_ms)
        assigned = placed.site_names != ""
        result = step(
            states,
            device[assigned],
            time_ms[assigned],
            seq[assigned],
            placed.distance_m[assigned],
            placed.fence[assigned],
            accuracy[assigned],
            self.config,
            heard_ms=received[assigned],
        )
        decided_ms = clock() if clock is not None else None
        state_after = np.full(len(fixes), State.UNASSIGNED.code, dtype=np.int8)
        accepted = np.ones(len(fixes), dtype=bool)
        state_after[assigned] = result.state_after
        accepted[assigned] = result.accepted
        caused_by = self._keep_fixes(
            fixes, device, placed, state_after, accepted, decided_ms, fragments
        )
        rows = result.events.rows()
        # each event is kept with the message of the fix that caused it; a LOST that a fix
        # revealed (a lapse, stamped when protection lapsed) with that fix, whose own events
        # follow it at once (a lapse always recovers)
        targets: list[Decided] = []
        for i in range(len(rows) - 1, -1, -1):
            d, _, t, q, _, _ = rows[i]
            if (d, t, q) in caused_by:
                targets.append(fragments[caused_by[(d, t, q)]])
            else:
                targets.append(targets[-1])
        self._events(rows, targets[::-1])
        return result.states

    def _decide_each(
        self,
        states: DeviceStates,
        fixes: list[tuple[DecodedFix, int, int]],
        clock: Clock,
        fragments: list[Decided],
    ) -> tuple[DeviceStates, dict[int, DeviceRow]]:
        """Decide a few bounded fixes one at a time, on plain Python numbers.

        The rules are `_decide_fixes`'s: each fix placed in its device's site
        (`Site.locate_one`, `Site.evaluate_one`), then the state machine on its
        device's row (`step_fix`), in arrival order. Nothing of `states` is changed:
        returns the states (grown for new devices) and each device's row after the
        fixes, which the caller puts in once the whole batch is decided.
        """
        devices = [self._device(f.device_id) for f, _, _ in fixes]
        states = states.grown(len(self.device_ids))
        rows: dict[int, DeviceRow] = {}
        decided: list[tuple[_PlacedOne, int, bool, list[EventRow]]] = []
        for (f, received, _), d in zip(fixes, devices, strict=True):
            name = self._site_of[d]
            if name is None:  # a device at no site decides nothing: kept UNASSIGNED
                decided.append((_UNPLACED, State.UNASSIGNED.code, True, []))
                continue
            site = self.deployment.sites[name]
            datum = self.deployment.datum_of(f.supplier)
            x, y = site.locate_one(f.lat, f.lon, datum, f.fix_ms)
            fence, distance = site.evaluate_one(x, y)
            events: list[EventRow] = []
            row = rows[d] if d in rows else states.row(d)
            done = step_fix(row, d, f.fix_ms, f.seq, distance, fence, f.accuracy_m,
                            self.config, received, events)  # fmt: skip
            if done.accepted:
                rows[d] = done.row
            decided.append((_PlacedOne(name, x, y, distance, fence), done.state_after,
                            done.accepted, events))  # fmt: skip
        decided_ms = clock() if clock is not None else None
        for (f, received, message), (placed, state, accepted, events) in zip(
            fixes, decided, strict=True
        ):
            out = fragments[message]
            out.batch.fixes.append(self._fix_record(f, received, decided_ms, placed, state,
                                                    accepted))  # fmt: skip
            self._events(events, [out] * len(events))
        return states, rows

    def _place(
        self, device: np.ndarray, fixes: list[tuple[DecodedFix, int, int]], time_ms: np.ndarray
    ) -> _Placed:
        """Each fix in its device's site's frame, and where it falls there.

        One frame conversion per site and datum (a supplier's devices report in its
        datum), and one evaluation per site. A device at no site is left unplaced.
        """
        n = len(fixes)
        lat = np.array([f.lat for f, _, _ in fixes])
        lon = np.array([f.lon for f, _, _ in fixes])
        x = np.full(n, np.nan)
        y = np.full(n, np.nan)
        distance = np.full(n, np.nan)
        fence = np.full(n, -1, dtype=np.int32)
        site_names = np.array([self._site_of[d] or "" for d in device], dtype=object)
        for name in set(site_names) - {""}:
            site = self.deployment.sites[name]
            at = np.flatnonzero(site_names == name)
            datums = np.array([self.deployment.datum_of(fixes[i][0].supplier) for i in at])
            for datum in set(datums):
                sub = at[datums == datum]
                x[sub], y[sub] = site.locate(lat[sub], lon[sub], datum, time_ms[sub])
            ev = site.evaluate(x[at], y[at])
            distance[at] = ev.distance_m
            fence[at] = ev.fence
        return _Placed(site_names, x, y, distance, fence)

    def _keep_fixes(
        self,
        fixes: list[tuple[DecodedFix, int, int]],
        device: np.ndarray,
        placed: _Placed,
        state_after: np.ndarray,
        accepted: np.ndarray,
        decided_ms: int | None,
        fragments: list[Decided],
    ) -> dict[tuple[int, int, int], int]:
        """A Fix record for each fix, in its message's output, with the decision on it.

        Returns which message each (device, fix time, seq) came in first: the message an
        event that fix caused belongs to. With no clock, a fix is stamped decided when
        it was received.
        """
        caused_by: dict[tuple[int, int, int], int] = {}
        for i, (f, received_ms, message) in enumerate(fixes):
            caused_by.setdefault((int(device[i]), f.fix_ms, f.seq), message)
            site = placed.site_names[i] or None
            one = _PlacedOne(site, placed.x_m[i], placed.y_m[i], placed.distance_m[i],
                             int(placed.fence[i]))  # fmt: skip
            record = self._fix_record(
                f, received_ms, decided_ms, one, int(state_after[i]), bool(accepted[i])
            )
            fragments[message].batch.fixes.append(record)
        return caused_by

    def _fix_record(
        self,
        f: DecodedFix,
        received_ms: int,
        decided_ms: int | None,
        placed: _PlacedOne,
        state: int,
        accepted: bool,
    ) -> Fix:
        """The Fix record kept of a decided fix (with no clock, decided when received)."""
        site, fence = placed.site, placed.fence
        return Fix(
            device_id=f.device_id,
            supplier=f.supplier,
            seq=f.seq,
            fix_ms=f.fix_ms,
            received_ms=received_ms,
            decided_ms=received_ms if decided_ms is None else decided_ms,
            alert_ms=None,
            lat=f.lat,
            lon=f.lon,
            accuracy_m=f.accuracy_m,
            fix_type=f.fix_type,
            satellites=f.satellites,
            hdop=f.hdop,
            battery_pct=f.battery_pct,
            firmware=f.firmware,
            source_format=f.source_format,
            site=site,
            x_m=_finite(placed.x_m),
            y_m=_finite(placed.y_m),
            fence=self._fence_name(site, fence),
            distance_m=_finite(placed.distance_m),
            state=state_of(state),
            accepted=accepted,
        )

    def _offline(
        self, states: DeviceStates, offline: list[tuple[int, int, int]], fragments: list[Decided]
    ) -> DeviceStates:
        """A last will: the device is gone now, not lost_after_s from now."""
        states = states.grown(len(self.device_ids))
        devices = np.array([d for d, _, _ in offline])
        message_of = {d: i for d, _, i in offline}
        keep = states.state[devices] != State.LOST.code
        if not keep.any():
            return states
        devices = devices[keep]
        when = np.array([t for _, t, _ in offline])[keep]
        events = Events(
            devices.astype(np.int64),
            np.full(devices.size, EventKind.LOST.code, np.int8),
            when.astype(np.int64),
            np.full(devices.size, -1, np.int64),
            states.fence[devices],
            states.distance_m[devices],
        )
        states = states.copy()
        states.state[devices] = State.LOST.code
        rows = events.rows()
        self._events(rows, [fragments[message_of[row[0]]] for row in rows])
        return states

    def expire(self, now_ms: int) -> Decided:
        """Raise LOST for devices silent for lost_after_s (call it on a clock tick)."""
        out = Decided()
        self.states, events = expire(self.states, now_ms, self.config)
        self._events(events.rows(), [out] * len(events))
        return out

    def _events(self, rows: list[EventRow], targets: list[Decided]) -> None:
        """Turn state-machine events (rows of plain numbers) into records and alerts, each
        in the output of its cause (`targets`, one per row)."""
        for (d, k, t, s, f, dist), out in zip(rows, targets, strict=True):
            device_id = self.device_ids[d]
            site_name = self._site_of[d]
            fence_name = self._fence_name(site_name, f)
            kind = event_kind(k)
            distance_m = _finite(dist)
            out.batch.events.append(
                Event(device_id, kind, t, s, site_name, fence_name, distance_m)
            )
            if kind in ALERTING:
                supplier, name = device_id.split("/", 1)
                payload = {
                    "device": name,
                    "kind": kind,
                    "event_ms": t,
                    "seq": s,
                    "site": site_name,
                    "fence": fence_name,
                    "distance_m": distance_m,
                    "message": _MESSAGES[kind],
                }
                text = _ALERT_JSON.encode(payload)
                out.alerts.append(
                    PendingAlert(device_id, kind, t, s, alert_topic(supplier, name), text)
                )

    def _fence_name(self, site_name: str | None, fence: int) -> str | None:
        """The name of a site's safe-zone fence by number (None: no site, or outside)."""
        if site_name is None or fence < 0:
            return None
        return self.deployment.sites[site_name].fence_names[fence]


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _kept_text(text: str, limit: int) -> str:
    """Text every store keeps as it is: at most `limit` characters, no NUL, no lone
    surrogate (either would make a database refuse the row)."""
    text = text[:limit].replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:limit]
