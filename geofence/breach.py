"""Per-device breach state, vectorised across devices: SAFE, WARNING, BREACH, LOST.

The decision is asymmetric on purpose. Raising is immediate and pessimistic:
the fix's uncertainty circle (reported accuracy × a factor) reaching the edge of
the safe zone is enough. Clearing is slow and demanding: the circle must be
back inside by a clearing margin, continuously, for a dwell time. GNSS jitter
near a boundary therefore produces one alarm, not a flapping stream, and it
never delays the first alarm. A device that stops reporting is LOST: protection
lost is itself an alarm, never silence.

This module is a pure function of (states, fixes, config): no clock, no I/O.
Time comes in with the fixes, and `expire` is told what time it is. Its arrays hold
the states and event kinds as integer codes; geofence.vocabulary says what each is
(`state_of`, `event_kind`), and what is stored and sent is said in those words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cache
from typing import NamedTuple

import numpy as np

from geofence.vocabulary import (
    EVENT_KINDS,
    STATES,
    EventKind,
    State,
    event_kind,
    state_of,
)

__all__ = [
    "EVENT_KINDS",
    "NO_SEQ",
    "NO_TIME",
    "STATES",
    "BreachConfig",
    "DeviceRow",
    "DeviceStates",
    "EventKind",
    "EventRow",
    "Events",
    "FixStep",
    "State",
    "StepResult",
    "event_kind",
    "expire",
    "replay",
    "state_of",
    "step",
    "step_fix",
]

NO_TIME = np.iinfo(np.int64).min
NO_SEQ = -1

# Plain integers for the hot path (enum attribute access is slow in a tight loop).
_SAFE, _WARNING, _BREACH, _LOST = (
    State.SAFE.code, State.WARNING.code, State.BREACH.code, State.LOST.code
)  # fmt: skip
_LAPSED = EventKind.LOST.code
#: The kinds one accepted fix can cause, in the order they are reported (a LOST that the
#: fix revealed, stamped when protection lapsed, comes before them all).
_FIX_KINDS = tuple(
    k.code
    for k in (
        EventKind.RECOVERED,
        EventKind.ENTER,
        EventKind.EXIT,
        EventKind.BREACH,
        EventKind.CLEAR,
        EventKind.WARNING,
        EventKind.SAFE,
    )
)
_EVENT_ORDER = np.array(_FIX_KINDS, dtype=np.int8)


@dataclass(frozen=True)
class BreachConfig:
    """How decisions are made; every number is a site setting (metres, seconds, factors).

    ValueError for a negative or non-finite number, or a lost_after_s that is not positive.

    >>> BreachConfig(lost_after_s=30.0).clearing_margin_m
    1.0
    """

    #: Reported horizontal accuracy is usually a 68 % radius; ×2 makes it about 95 %.
    accuracy_factor: float = 2.0
    #: Radius assumed when a fix reports no accuracy (pessimistic on purpose).
    assumed_accuracy_m: float = 5.0
    #: WARNING when the uncertainty circle is within this of the edge.
    warning_margin_m: float = 2.0
    #: WARNING ends only once the circle is this much further in than it started.
    warning_hysteresis_m: float = 0.5
    #: BREACH clears only when the circle is back inside by this much...
    clearing_margin_m: float = 1.0
    #: ...continuously for this long.
    clearing_dwell_s: float = 5.0
    #: A device with no accepted fix for this long is LOST.
    lost_after_s: float = 10.0

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(
                    f"BreachConfig.{name} must be a non-negative number, got {value!r}"
                )
        if self.lost_after_s <= 0:
            raise ValueError("BreachConfig.lost_after_s must be positive")


class DeviceRow(NamedTuple):
    """One device's state as plain Python numbers: a row of `DeviceStates`."""

    state: int
    last_fix_ms: int
    last_heard_ms: int
    last_seq: int
    clearing_since_ms: int
    fence: int
    distance_m: float


#: An event as a row of plain numbers: (device, kind code, time_ms, seq, fence, distance_m).
EventRow = tuple[int, int, int, int, int, float]


class FixStep(NamedTuple):
    """What `step_fix` made of one fix."""

    row: DeviceRow  # the device's state after it (unchanged if it was not applied)
    accepted: bool  # False for a duplicate or an out-of-order fix
    state_after: int  # state code the fix is kept with (as `StepResult.state_after`)


@dataclass(frozen=True)
class DeviceStates:
    """State of every device, by device number (arrays of equal length).

    >>> states = DeviceStates.new(2)
    >>> [state_of(s).value for s in states.state], states.grown(3).state.size
    (['LOST', 'LOST'], 3)
    """

    state: np.ndarray  # int8 State
    last_fix_ms: np.ndarray  # int64 time of the last accepted fix (NO_TIME if none)
    last_heard_ms: np.ndarray  # int64 when that fix was received (liveness is about hearing)
    last_seq: np.ndarray  # int64 sequence number of the last accepted fix (NO_SEQ if none)
    clearing_since_ms: np.ndarray  # int64 when the clearing condition began (NO_TIME if not)
    fence: np.ndarray  # int32 fence number of the last accepted fix (-1 outside)
    distance_m: np.ndarray  # float64 signed distance of the last accepted fix

    @classmethod
    def new(cls, device_count: int) -> DeviceStates:
        """Devices start LOST: none is protecting anyone until its first fix arrives."""
        return cls(
            state=np.full(device_count, _LOST, dtype=np.int8),
            last_fix_ms=np.full(device_count, NO_TIME, dtype=np.int64),
            last_heard_ms=np.full(device_count, NO_TIME, dtype=np.int64),
            last_seq=np.full(device_count, NO_SEQ, dtype=np.int64),
            clearing_since_ms=np.full(device_count, NO_TIME, dtype=np.int64),
            fence=np.full(device_count, -1, dtype=np.int32),
            distance_m=np.full(device_count, np.nan),
        )

    def grown(self, device_count: int) -> DeviceStates:
        """The same states with room for more devices (new ones start LOST)."""
        extra = device_count - self.state.size
        if extra <= 0:
            return self
        fresh = DeviceStates.new(extra)
        return DeviceStates(
            *(
                np.concatenate([getattr(self, f), getattr(fresh, f)])
                for f in self.__dataclass_fields__
            )
        )

    def copy(self) -> DeviceStates:
        """An independent copy (the arrays copied)."""
        return DeviceStates(*(getattr(self, f).copy() for f in self.__dataclass_fields__))

    def row(self, device: int) -> DeviceRow:
        """Device `device`'s state as plain Python numbers (for `step_fix`).

        >>> DeviceStates.new(1).row(0).state == State.LOST.code
        True
        """
        return DeviceRow(
            self.state.item(device), self.last_fix_ms.item(device),
            self.last_heard_ms.item(device), self.last_seq.item(device),
            self.clearing_since_ms.item(device), self.fence.item(device),
            self.distance_m.item(device),
        )  # fmt: skip

    def put(self, device: int, row: DeviceRow) -> None:
        """Write `row` as device `device`'s state, in place (the one mutation offered:
        for the owner of these states, once a batch decided on rows is done)."""
        self.state[device] = row.state
        self.last_fix_ms[device] = row.last_fix_ms
        self.last_heard_ms[device] = row.last_heard_ms
        self.last_seq[device] = row.last_seq
        self.clearing_since_ms[device] = row.clearing_since_ms
        self.fence[device] = row.fence
        self.distance_m[device] = row.distance_m


@dataclass(frozen=True)
class Events:
    """Events, in the order they happened (device, then time).

    `kind` holds integer codes; `event_kind(code)` says which EventKind each is, and
    `EventKind.X.code` is the code to compare against (`events.kind == EventKind.BREACH.code`).
    """

    device: np.ndarray  # int64
    kind: np.ndarray  # int8 EventKind code (see geofence.vocabulary)
    time_ms: np.ndarray  # int64: the fix time that caused it (for LOST: when protection lapsed)
    seq: np.ndarray  # int64 sequence number of the causing fix (NO_SEQ for LOST)
    fence: np.ndarray  # int32
    distance_m: np.ndarray  # float64 signed distance of the causing fix

    def __len__(self) -> int:
        return int(self.device.size)

    @classmethod
    def empty(cls) -> Events:
        return cls(
            np.zeros(0, np.int64),
            np.zeros(0, np.int8),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, np.int32),
            np.zeros(0),
        )

    @classmethod
    def concat(cls, parts: list[Events]) -> Events:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__)
        )

    def rows(self) -> list[EventRow]:
        """The events as rows of plain Python numbers (as `step_fix` appends them)."""
        return list(
            zip(*(getattr(self, f).tolist() for f in self.__dataclass_fields__), strict=True)
        )

    def records(self) -> list[dict]:
        """The events as plain records, one dict each, `event` the kind's stored text.

        >>> result = step(DeviceStates.new(1), [0], [1000], [1], [-0.5], [-1], [0.2],
        ...               BreachConfig())
        >>> [r["event"] for r in result.events.records()]
        ['recovered', 'breach']
        """
        return [
            {
                "device": int(d),
                "event": event_kind(k).value,
                "time_ms": int(t),
                "seq": int(s),
                "fence": int(f),
                "distance_m": float(x),
            }
            for d, k, t, s, f, x in zip(
                self.device,
                self.kind,
                self.time_ms,
                self.seq,
                self.fence,
                self.distance_m,
                strict=True,
            )
        ]


@dataclass(frozen=True)
class StepResult:
    states: DeviceStates
    events: Events
    accepted: np.ndarray  # bool per input fix: False for duplicates and out-of-order fixes
    #: int8 per input fix: the device's state code once this fix was applied (for a fix not
    #: applied, its state when the fix arrived: LOST if silent for lost_after_s by then)
    state_after: np.ndarray


#: Below this many devices per round the batch is decided fix by fix in plain Python
#: (`_apply_each`): numpy's per-call cost on short arrays is then larger than the work.
#: A lone fix (the live path when it is quiet) and one device's long recording (a
#: replay) go this way; a busy batch across many devices goes through `_apply`.
SCALAR_BELOW_DEVICES_PER_ROUND = 16


def step(
    states: DeviceStates,
    device: np.ndarray,
    time_ms: np.ndarray,
    seq: np.ndarray,
    distance_m: np.ndarray,
    fence: np.ndarray,
    accuracy_m: np.ndarray,
    config: BreachConfig,
    heard_ms: np.ndarray | None = None,
    *,
    scalar: bool | None = None,
) -> StepResult:
    """Apply a batch of evaluated fixes (several per device) to the device states.

    Parameters (arrays of one element per fix, or broadcastable to them):
      states: the device states before the batch (not changed: a copy is returned).
      device: device numbers, indexes into `states` (grow the states first).
      time_ms: fix times, UTC epoch ms on the device's clock.
      seq: the devices' sequence numbers (-1 when a format has none).
      distance_m: signed distance to the safe-zone edge, metres, + inside
        (`Site.evaluate`); NaN when unusable (taken as the worst case).
      fence: the covering safe-zone fence number, or -1 outside.
      accuracy_m: reported horizontal accuracy, metres (NaN: `assumed_accuracy_m`).
      heard_ms: when each fix was received, UTC ms (default: its fix time, as in a
        replay): a device is alive while it is heard from, whatever its own clock says.
      scalar: force fix-by-fix (True) or vectorised (False) deciding; held identical.

    Returns a StepResult: the new states, the events (grouped by device, each device's
    in the order they happened), and per fix whether it was applied and the state code
    after it.

    Each device's fixes are applied in the order given, which is the order they
    arrived: a fix not newer than the device's last accepted fix (a duplicate, or
    one that arrived after a newer one) is not applied and cannot flip state. So a
    batch decides exactly as the same fixes one at a time would, however a stream
    is cut into batches. Vectorised across devices (round k applies each device's
    k-th fix of the batch), or fix by fix when there are few devices per round.

    >>> config = BreachConfig()  # circle = 2 × accuracy; warn within 2 m of the edge
    >>> r = step(DeviceStates.new(1), [0, 0, 0], [0, 1000, 2000], [1, 2, 3],
    ...          [5.0, 2.0, 0.4], [0, 0, 0], [0.25, 0.25, 0.25], config)
    >>> [event_kind(k).value for k in r.events.kind]
    ['recovered', 'enter', 'warning', 'breach']
    >>> [state_of(s).value for s in r.state_after]
    ['SAFE', 'WARNING', 'BREACH']
    """
    device = np.asarray(device, dtype=np.int64)
    n = device.size
    time_ms = np.asarray(time_ms, dtype=np.int64)
    seq = np.broadcast_to(np.asarray(seq, dtype=np.int64), (n,))
    distance_m = np.asarray(distance_m, dtype=np.float64)
    fence = np.asarray(fence, dtype=np.int32)
    heard = time_ms if heard_ms is None else np.asarray(heard_ms, dtype=np.int64)
    if device.size and (device.min() < 0 or device.max() >= states.state.size):
        raise IndexError("device number outside the device states (grow the states first)")
    margin = _circle_margin(distance_m, accuracy_m, config)
    out = states.copy()
    accepted = np.zeros(n, dtype=bool)
    state_after = np.zeros(n, dtype=np.int8)
    order, rounds = _rounds(device)
    if scalar is None:
        scalar = n < SCALAR_BELOW_DEVICES_PER_ROUND * len(rounds)
    if scalar:
        events = _apply_each(out, order, device, time_ms, heard, seq, distance_m, fence, margin,
                             config, accepted, state_after)  # fmt: skip
        return StepResult(out, events, accepted, state_after)
    parts: list[Events] = []
    for pick in rounds:  # at most one fix per device in each round
        applied = _apply(out, pick, device, time_ms, heard, seq, distance_m, fence, margin,
                         config, accepted, state_after)  # fmt: skip
        parts.append(applied)
    all_events = Events.concat(parts)
    if len(all_events):  # by device, each device's events in the order they happened
        by = np.argsort(all_events.device, kind="stable")
        all_events = Events(*(getattr(all_events, f)[by] for f in Events.__dataclass_fields__))
    return StepResult(out, all_events, accepted, state_after)


def _circle_margin(distance_m: np.ndarray, accuracy_m, config: BreachConfig) -> np.ndarray:
    """How far inside the edge each fix's whole uncertainty circle is (m; -inf if unknown).

    A missing or nonsense accuracy is taken as `assumed_accuracy_m`, and an unusable
    distance as the worst case: pessimism is what makes an alarm prompt.
    """
    accuracy = np.asarray(accuracy_m, dtype=np.float64)
    accuracy = np.where(
        np.isfinite(accuracy) & (accuracy >= 0), accuracy, config.assumed_accuracy_m
    )
    margin = distance_m - config.accuracy_factor * accuracy
    return np.where(np.isfinite(margin), margin, -np.inf)


def _rounds(device: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The batch by device (each in arrival order), and the rounds it is applied in.

    Round k holds each device's k-th fix of the batch, so a round has at most one fix
    per device and the vectorised rules never see two fixes of one device at once.
    """
    n = device.size
    order = np.argsort(device, kind="stable")
    sorted_device = device[order]
    if not (n > 1 and bool((sorted_device[1:] == sorted_device[:-1]).any())):
        return order, [order] if n else []  # no device twice: one round (the common live case)
    group_start = np.r_[0, np.flatnonzero(np.diff(sorted_device)) + 1]
    rank = np.arange(n) - np.repeat(group_start, np.diff(np.r_[group_start, n]))
    return order, [order[rank == k] for k in range(int(rank.max()) + 1)]


# ------------------------------------------------------------ one fix at a time
# `_apply_each` and its `_*_one` steps say, on plain Python numbers, exactly the rules
# `_apply` and its steps say on arrays; tests/test_breach.py holds the two identical.


def _apply_each(
    s: DeviceStates,
    order: np.ndarray,
    device: np.ndarray,
    time_ms: np.ndarray,
    heard_ms: np.ndarray,
    seq: np.ndarray,
    distance_m: np.ndarray,
    fence: np.ndarray,
    margin: np.ndarray,
    config: BreachConfig,
    accepted: np.ndarray,
    state_after: np.ndarray,
) -> Events:
    """`_apply`, one fix at a time in plain Python: the same rules, step for step.

    Fixes go in `order` (by device, each in arrival order), so the events come out
    grouped by device in the order they happened, as `step` returns them. Each fix is
    `_apply_one` on its device's row, which `step_fix` also uses for a lone fix.
    """
    rows: list[EventRow] = []
    rules = _rules(config)
    devices, times, heard, seqs = device.tolist(), time_ms.tolist(), heard_ms.tolist(), seq.tolist()
    fences, distances, margins = fence.tolist(), distance_m.tolist(), margin.tolist()
    for i in order.tolist():
        d = devices[i]
        done = _apply_one(s.row(d), d, times[i], seqs[i], heard[i], fences[i], distances[i],
                          margins[i], rules, rows)  # fmt: skip
        accepted[i] = done.accepted
        state_after[i] = done.state_after
        if done.accepted:
            s.put(d, done.row)
    return _events_of_rows(rows)


class _Rules(NamedTuple):
    """A config's numbers as the fix-by-fix rules use them (worked out once per config)."""

    lapse_ms: int
    clearing_margin_m: float
    dwell_ms: float
    warn_plain_m: float
    warn_held_m: float
    accuracy_factor: float
    assumed_accuracy_m: float


@cache
def _rules(config: BreachConfig) -> _Rules:
    warn = config.warning_margin_m
    return _Rules(round(config.lost_after_s * 1000), config.clearing_margin_m,
                  config.clearing_dwell_s * 1000.0, warn, warn + config.warning_hysteresis_m,
                  config.accuracy_factor, config.assumed_accuracy_m)  # fmt: skip


def _apply_one(
    row: DeviceRow, d: int, t: int, q: int, h: int, f: int, dist: float, m: float,
    rules: _Rules, events: list[EventRow],
) -> FixStep:  # fmt: skip
    """One fix on its device's row: `_apply`'s rules on plain Python numbers.

    Appends the events it causes to `events` and returns the row after it (the row
    given, unchanged, when the fix is not applied).
    """
    lapse_ms = rules.lapse_ms
    state, last, heard_before = row.state, row.last_fix_ms, row.last_heard_ms
    if not _newer_one(t, q, last, row.last_seq, lapse_ms):  # not applied; LOST if silent by now
        return FixStep(row, False, _LOST if _silent_one(h, heard_before, lapse_ms) else state)
    lapsed, recovered = _lapse_one(state, last, heard_before, t, h, lapse_ms)
    base = _SAFE if recovered else state
    new, since, cleared = _next_state_one(base, m, row.clearing_since_ms, t, rules)
    if lapsed:
        events.append((d, _LAPSED, last + lapse_ms, NO_SEQ, row.fence, row.distance_m))
    _happened_one(events, d, t, q, f, dist, recovered, base, new, cleared, row.fence)
    after = DeviceRow(new, t, h, q, since if new == _BREACH else NO_TIME, f, dist)
    return FixStep(after, True, new)


def step_fix(
    row: DeviceRow,
    device: int,
    time_ms: int,
    seq: int,
    distance_m: float,
    fence: int,
    accuracy_m: float | None,
    config: BreachConfig,
    heard_ms: int,
    events: list[EventRow],
) -> FixStep:
    """`step` for one evaluated fix of one device, on plain Python numbers.

    A lone fix is the live path when it is quiet, and numpy's per-call cost on arrays
    of one is then most of the time taken; here the rules run on the device's row
    alone, with nothing copied. They are `step`'s, the same functions its fix-by-fix
    path runs (tests/test_breach.py holds the two identical).

    Parameters
    ----------
    row : DeviceRow
        The device's state before the fix (`DeviceStates.row`).
    device : int
        Its device number: what the events name.
    time_ms, seq, distance_m, fence, accuracy_m, heard_ms
        As `step` takes them, for this one fix (accuracy None or NaN: not reported).
    config : BreachConfig
    events : list
        The events the fix causes are appended here, as rows (device, kind code,
        time_ms, seq, fence, distance_m) in the order they happened.

    Returns
    -------
    FixStep
        The device's row after the fix (put it back with `DeviceStates.put` once the
        fix's whole batch is decided), whether it was applied, and its state code.

    >>> events = []
    >>> done = step_fix(DeviceStates.new(1).row(0), 0, 1000, 1, -0.5, -1, 0.2,
    ...                 BreachConfig(), 1000, events)
    >>> state_of(done.state_after).value, [event_kind(e[1]).value for e in events]
    ('BREACH', ['recovered', 'breach'])
    """
    rules = _rules(config)
    margin = _circle_margin_one(distance_m, accuracy_m, rules)
    return _apply_one(row, device, time_ms, seq, heard_ms, fence, distance_m, margin, rules,
                      events)  # fmt: skip


def _circle_margin_one(distance_m: float, accuracy_m: float | None, rules: _Rules) -> float:
    """`_circle_margin` for one fix."""
    accuracy = accuracy_m
    if accuracy is None or not (math.isfinite(accuracy) and accuracy >= 0):
        accuracy = rules.assumed_accuracy_m
    margin = distance_m - rules.accuracy_factor * accuracy
    return margin if math.isfinite(margin) else -math.inf


def _newer_one(t: int, q: int, last: int, last_q: int, lapse_ms: int) -> bool:
    """`_newer` for one fix."""
    if t > last or (t == last and q > last_q):
        return True
    # a device's clock that jumps back, its sequence counting on
    return q >= 0 and last_q != NO_SEQ and q > last_q and t < _wrapped(last - lapse_ms)


def _silent_one(heard: int, heard_before: int, lapse_ms: int) -> bool:
    """Whether a device last heard at `heard_before` was silent for lost_after_s by `heard`."""
    return heard_before != NO_TIME and heard - heard_before >= lapse_ms


def _lapse_one(
    prev: int, last: int, heard_before: int, t: int, heard: int, lapse_ms: int
) -> tuple[bool, bool]:
    """`_lapse` for one fix: (protection lapsed before it, it recovers the device)."""
    silent = _silent_one(heard, heard_before, lapse_ms)
    lapsed = prev != _LOST and last != NO_TIME and (t - last > lapse_ms or silent)
    return lapsed, prev == _LOST or lapsed


def _next_state_one(
    base: int, m: float, since: int, t: int, rules: _Rules
) -> tuple[int, int, bool]:
    """`_next_state` for one fix: (new state, clearing since, cleared)."""
    clearing_margin, dwell_ms = rules.clearing_margin_m, rules.dwell_ms
    warn_plain, warn_held = rules.warn_plain_m, rules.warn_held_m
    in_breach = base == _BREACH
    clearing_ok = m >= clearing_margin
    since = (t if since == NO_TIME else since) if in_breach and clearing_ok else NO_TIME
    cleared = in_breach and clearing_ok and (t - since) >= dwell_ms
    calm = _WARNING if m < (warn_held if base == _WARNING else warn_plain) else _SAFE
    new = (calm if cleared else _BREACH) if in_breach else (_BREACH if m < 0 else calm)
    return new, since, cleared


def _happened_one(
    rows: list[EventRow], d: int, t: int, q: int, f: int, dist: float,
    recovered: bool, base: int, new: int, cleared: bool, prev_fence: int,
) -> None:  # fmt: skip
    """`_happened` for one fix: append a row for each event it caused, in report order."""
    in_breach, was_warning = base == _BREACH, base == _WARNING
    inside, was_inside = f >= 0, prev_fence >= 0
    for kind, happened in zip(
        _FIX_KINDS,
        (
            recovered,
            inside and (not was_inside or f != prev_fence),  # ENTER
            was_inside and not inside,  # EXIT
            not in_breach and new == _BREACH,  # BREACH
            cleared,  # CLEAR
            new == _WARNING and not was_warning,  # WARNING
            new == _SAFE and was_warning,  # SAFE
        ),
        strict=True,
    ):
        if happened:
            rows.append((d, kind, t, q, f, dist))


def _events_of_rows(rows: list[EventRow]) -> Events:
    """Event rows (as `step_fix` appends them) as `Events` arrays."""
    if not rows:
        return Events.empty()
    d, k, t, q, f, x = zip(*rows, strict=True)
    return Events(
        np.array(d, np.int64), np.array(k, np.int8), np.array(t, np.int64),
        np.array(q, np.int64), np.array(f, np.int32), np.array(x, np.float64),
    )  # fmt: skip


def _wrapped(value: int) -> int:
    """`value` as int64 arithmetic leaves it (as `_apply` computes it, wrapping around)."""
    return (value + 2**63) % 2**64 - 2**63


# ------------------------------------------------------------ every device at once


class _Before(NamedTuple):
    """What the state machine knew of each device before this round's fix (copies)."""

    state: np.ndarray
    fence: np.ndarray
    distance_m: np.ndarray
    last_fix_ms: np.ndarray
    last_heard_ms: np.ndarray
    clearing_since_ms: np.ndarray


def _apply(
    s: DeviceStates,
    pick: np.ndarray,
    device: np.ndarray,
    time_ms: np.ndarray,
    heard_ms: np.ndarray,
    seq: np.ndarray,
    distance_m: np.ndarray,
    fence: np.ndarray,
    margin: np.ndarray,
    config: BreachConfig,
    accepted: np.ndarray,
    state_after: np.ndarray,
) -> Events:
    """One round of `step`: at most one fix per device, every device at once.

    The steps are the ones a fix goes through: is it newer than what its device last
    had (`_newer`; a fix that is not changes nothing), did protection lapse before it
    (`_lapse`), what is the device's state now (`_next_state`), which events did that
    make (`_happened`), and keep the new state. `_apply_each` says the same per fix.
    """
    d, t, q = device[pick], time_ms[pick], seq[pick]
    lapse_ms = round(config.lost_after_s * 1000)
    newer = _newer(s, d, t, q, lapse_ms)
    # a fix that is not applied leaves the state as it is, except that a device silent
    # for lost_after_s by this fix's receipt is LOST, whether or not a tick said so yet
    old = ~newer
    heard_then = s.last_heard_ms[d[old]]
    silent_then = (heard_then != NO_TIME) & (heard_ms[pick[old]] - heard_then >= lapse_ms)
    state_after[pick[old]] = np.where(silent_then, _LOST, s.state[d[old]])
    pick, d, t, q = pick[newer], d[newer], t[newer], q[newer]
    accepted[pick] = True
    m, f, dist, h = margin[pick], fence[pick], distance_m[pick], heard_ms[pick]
    before = _Before(s.state[d].copy(), s.fence[d].copy(), s.distance_m[d].copy(),
                     s.last_fix_ms[d], s.last_heard_ms[d], s.clearing_since_ms[d])  # fmt: skip
    lapsed, recovered = _lapse(before, t, h, lapse_ms)
    base = np.where(recovered, _SAFE, before.state)
    new, since, cleared = _next_state(base, m, before.clearing_since_ms, t, config)
    happened = _happened(recovered, base, new, cleared, f, before.fence)
    s.state[d] = new
    s.last_fix_ms[d] = t
    s.last_heard_ms[d] = h
    s.last_seq[d] = q
    s.clearing_since_ms[d] = np.where(new == _BREACH, since, NO_TIME)
    s.fence[d] = f
    s.distance_m[d] = dist
    state_after[pick] = new
    row, at = np.nonzero(happened)
    events = Events(d[at], _EVENT_ORDER[row], t[at], q[at], f[at], dist[at])
    return _with_lapses(events, lapsed, d, before, lapse_ms)


def _newer(s: DeviceStates, d: np.ndarray, t: np.ndarray, q: np.ndarray, lapse_ms: int):
    """Which fixes are newer than their device's last accepted fix, and so are applied.

    Newer is later on the device's clock, or as late with a higher sequence number. A
    device clock that jumps back (a GNSS receiver re-acquiring time, a phone's clock
    corrected) would otherwise be ignored until it caught up with its own past, with
    the wearer unprotected meanwhile. Its sequence numbers still count on, which a late
    or redelivered old fix's do not: such a fix is taken as new, and the device's time
    starts again from it.
    """
    newer = (t > s.last_fix_ms[d]) | ((t == s.last_fix_ms[d]) & (q > s.last_seq[d]))
    clock_back = (
        (q >= 0)
        & (s.last_seq[d] != NO_SEQ)
        & (q > s.last_seq[d])
        & (t < s.last_fix_ms[d] - lapse_ms)
    )
    return newer | clock_back


def _lapse(
    before: _Before, t: np.ndarray, heard: np.ndarray, lapse_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    """(protection lapsed before this fix, this fix recovers the device from LOST).

    A gap on the device's own clock longer than lost_after_s is a lapse in protection
    (a replay, a time-warped trial, a device switched off between shifts): the device
    was LOST in between and starts afresh, so a breach is raised (and the wearer
    alerted) again rather than carried silently over the gap. So is a silence on the
    receiving clock as long as `expire` judges (fixes buffered in a tunnel and
    delivered in a burst): whether a clock tick happened to run `expire` before the
    fix that ends the silence arrived then changes when LOST is said, never whether or
    with what stamp, so the decisions are a function of the fix stream alone.
    """
    last, heard_before = before.last_fix_ms, before.last_heard_ms
    silent = (heard_before != NO_TIME) & (heard - heard_before >= lapse_ms)
    lapsed = (before.state != _LOST) & (last != NO_TIME) & ((t - last > lapse_ms) | silent)
    return lapsed, (before.state == _LOST) | lapsed


def _next_state(
    base: np.ndarray, m: np.ndarray, since: np.ndarray, t: np.ndarray, config: BreachConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(new state, clearing since, cleared) from the state a fix finds (`base`).

    Raising is immediate: the uncertainty circle reaching the edge (margin < 0) is
    BREACH. Clearing is slow: inside by the clearing margin, held for the dwell time.
    WARNING, within the approach margin, ends only past it by the hysteresis.
    """
    in_breach = base == _BREACH
    clearing_ok = m >= config.clearing_margin_m
    since = np.where(in_breach & clearing_ok, np.where(since == NO_TIME, t, since), NO_TIME)
    cleared = in_breach & clearing_ok & ((t - since) >= config.clearing_dwell_s * 1000.0)
    was_warning = base == _WARNING
    warn_level = np.where(
        was_warning, config.warning_margin_m + config.warning_hysteresis_m, config.warning_margin_m
    )
    calm = np.where(m < warn_level, _WARNING, _SAFE)
    new = np.where(in_breach, np.where(cleared, calm, _BREACH), np.where(m < 0, _BREACH, calm))
    return new, since, cleared


def _happened(
    recovered: np.ndarray,
    base: np.ndarray,
    new: np.ndarray,
    cleared: np.ndarray,
    f: np.ndarray,
    prev_fence: np.ndarray,
) -> np.ndarray:
    """One row per kind a fix can cause (`_FIX_KINDS` order), one column per fix."""
    in_breach, was_warning = base == _BREACH, base == _WARNING
    inside, was_inside = f >= 0, prev_fence >= 0
    return np.stack(
        [
            recovered,
            inside & (~was_inside | (f != prev_fence)),  # ENTER
            was_inside & ~inside,  # EXIT
            ~in_breach & (new == _BREACH),  # BREACH
            cleared,  # CLEAR
            (new == _WARNING) & ~was_warning,  # WARNING
            (new == _SAFE) & was_warning,  # SAFE
        ]
    )


def _with_lapses(
    events: Events, lapsed: np.ndarray, d: np.ndarray, before: _Before, lapse_ms: int
) -> Events:
    """A round's events, led by a LOST for each lapse its fixes revealed, stamped when
    protection lapsed (lost_after_s after the device's last fix before the gap)."""
    if not lapsed.any():
        return events
    count = int(lapsed.sum())
    lost = Events(
        d[lapsed],
        np.full(count, _LAPSED, np.int8),
        before.last_fix_ms[lapsed] + lapse_ms,
        np.full(count, NO_SEQ, np.int64),
        before.fence[lapsed],
        before.distance_m[lapsed],
    )
    return Events.concat([lost, events])


# ------------------------------------------------------------ the clock, and recordings


def expire(states: DeviceStates, now_ms: int, config: BreachConfig) -> tuple[DeviceStates, Events]:
    """Mark LOST every device not heard from (an accepted fix) for lost_after_s at `now_ms`.

    Parameters: the device states (not changed), `now_ms` the receiving clock's time
    now (UTC epoch ms), and the config (its `lost_after_s`). Returns the new states and
    a LOST event per device that lapsed now.

    Silence is measured on the receiving clock, so a device whose own clock is wrong
    is not lost while it keeps reporting. The LOST event is stamped on the device's
    clock (last fix time + lost_after_s), which every worker of a group agrees on.
    Devices that have never reported are already LOST and raise no new event.

    >>> config = BreachConfig(lost_after_s=10.0)
    >>> r = step(DeviceStates.new(1), [0], [1000], [1], [5.0], [0], [0.2], config)
    >>> states, lost = expire(r.states, 1000 + 10_000, config)
    >>> [event_kind(k).value for k in lost.kind], lost.time_ms.tolist()
    (['lost'], [11000])
    """
    lapse_ms = round(config.lost_after_s * 1000)
    stale = (states.state != _LOST) & (states.last_heard_ms <= now_ms - lapse_ms)
    at = np.flatnonzero(stale)
    if at.size == 0:
        return states, Events.empty()
    out = replace(
        states, state=states.state.copy(), clearing_since_ms=states.clearing_since_ms.copy()
    )
    out.state[at] = _LOST
    out.clearing_since_ms[at] = NO_TIME
    events = Events(
        at.astype(np.int64),
        np.full(at.size, _LAPSED, np.int8),
        states.last_fix_ms[at] + lapse_ms,
        np.full(at.size, NO_SEQ, np.int64),
        states.fence[at],
        states.distance_m[at],
    )
    return out, events


def replay(
    states: DeviceStates,
    device: np.ndarray,
    time_ms: np.ndarray,
    seq: np.ndarray,
    distance_m: np.ndarray,
    fence: np.ndarray,
    accuracy_m: np.ndarray,
    config: BreachConfig,
) -> StepResult:
    """Run a recording through the state machine as the live service would have.

    Parameters are `step`'s, for every fix of the recording in any order. Returns
    `step`'s StepResult, aligned with the input rows, with the events of the last
    look for silent devices (at the recording's last fix time) at the end.

    The fixes are taken to arrive in the order of their fix times (a recording's
    rows need not be), each received when it was stamped. A gap in the recording
    raises LOST as the live service's tick would have, stamped when protection
    lapsed: `step` judges silence on the fix stream itself, so one pass decides the
    whole recording, and a last look for silent devices is taken at its end.

    >>> r = replay(DeviceStates.new(1), [0, 0, 0], [30_000, 0, 1000], [3, 1, 2],
    ...            [5.0, 5.0, 5.0], [0, 0, 0], [0.2, 0.2, 0.2], BreachConfig())
    >>> [event_kind(k).value for k in r.events.kind]
    ['recovered', 'enter', 'lost', 'recovered']
    """
    time_ms = np.asarray(time_ms, dtype=np.int64)
    n = time_ms.size
    if n == 0:
        return StepResult(states, Events.empty(), np.zeros(0, bool), np.zeros(0, np.int8))
    order = np.argsort(time_ms, kind="stable")
    seq = np.broadcast_to(np.asarray(seq, dtype=np.int64), (n,))
    result = step(
        states,
        np.asarray(device, dtype=np.int64)[order],
        time_ms[order],
        seq[order],
        np.asarray(distance_m, dtype=np.float64)[order],
        np.asarray(fence)[order],
        np.asarray(accuracy_m, dtype=np.float64)[order],
        config,
    )
    accepted = np.zeros(n, dtype=bool)
    state_after = np.zeros(n, dtype=np.int8)
    accepted[order] = result.accepted
    state_after[order] = result.state_after
    states, lost = expire(result.states, int(time_ms.max()), config)
    return StepResult(states, Events.concat([result.events, lost]), accepted, state_after)
