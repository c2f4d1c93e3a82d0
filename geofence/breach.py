"""Per-device breach state, vectorised across devices: SAFE, WARNING, BREACH, LOST.

The decision is asymmetric on purpose. Raising is immediate and pessimistic:
the fix's uncertainty circle (reported accuracy × a factor) reaching the edge of
the safe zone is enough. Clearing is slow and demanding: the circle must be
back inside by a clearing margin, continuously, for a dwell time. GNSS jitter
near a boundary therefore produces one alarm, not a flapping stream, and it
never delays the first alarm. A device that stops reporting is LOST: protection
lost is itself an alarm, never silence.

This module is a pure function of (states, fixes, config): no clock, no I/O.
Time comes in with the fixes, and `expire` is told what time it is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum

import numpy as np

NO_TIME = np.iinfo(np.int64).min
NO_SEQ = -1


class State(IntEnum):
    SAFE = 0
    WARNING = 1
    BREACH = 2
    LOST = 3  # no accepted fix for lost_after_s (or none yet): the device is not protecting


class EventKind(IntEnum):
    ENTER = 0  # position moved into a safe-zone fence
    EXIT = 1  # position moved out of the safe zone
    WARNING = 2  # uncertainty circle came within the approach margin
    SAFE = 3  # back out of the approach margin (WARNING -> SAFE)
    BREACH = 4  # uncertainty circle reached the edge: tap on the shoulder
    CLEAR = 5  # back inside by the clearing margin for the dwell time
    LOST = 6  # no fix for lost_after_s
    RECOVERED = 7  # first accepted fix after LOST


# Plain integers for the hot path (enum attribute access is slow in a tight loop).
_SAFE, _WARNING, _BREACH, _LOST = (
    int(x) for x in (State.SAFE, State.WARNING, State.BREACH, State.LOST)
)
_EVENT_ORDER = np.array(
    [
        EventKind.RECOVERED,
        EventKind.ENTER,
        EventKind.EXIT,
        EventKind.BREACH,
        EventKind.CLEAR,
        EventKind.WARNING,
        EventKind.SAFE,
    ],
    dtype=np.int8,
)


@dataclass(frozen=True)
class BreachConfig:
    """How decisions are made; every number is a site setting."""

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


@dataclass(frozen=True)
class DeviceStates:
    """State of every device, by device number (arrays of equal length)."""

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
            state=np.full(device_count, State.LOST, dtype=np.int8),
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
        return DeviceStates(*(getattr(self, f).copy() for f in self.__dataclass_fields__))


@dataclass(frozen=True)
class Events:
    """Events, in the order they happened (device, then time)."""

    device: np.ndarray  # int64
    kind: np.ndarray  # int8 EventKind
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

    def records(self) -> list[dict]:
        return [
            {
                "device": int(d),
                "event": EventKind(k).name.lower(),
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
    #: int8 per input fix: the device's state once this fix was applied (for a fix not
    #: applied, its state when the fix arrived: LOST if silent for lost_after_s by then)
    state_after: np.ndarray


#: Below this many devices per round the batch is decided fix by fix in plain Python
#: (`_apply_one`): numpy's per-call cost on short arrays is then larger than the work.
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

    `heard_ms` is when each fix was received (default: its fix time, as in a replay):
    a device is alive while it is heard from, whatever its own clock says.

    Each device's fixes are applied in the order given, which is the order they
    arrived: a fix not newer than the device's last accepted fix (a duplicate, or
    one that arrived after a newer one) is not applied and cannot flip state. So a
    batch decides exactly as the same fixes one at a time would, however a stream
    is cut into batches. Vectorised across devices (round k applies each device's
    k-th fix of the batch), or fix by fix when there are few devices per round;
    `scalar` forces one or the other (the two are held identical by the tests).
    """
    device = np.asarray(device, dtype=np.int64)
    n = device.size
    time_ms = np.asarray(time_ms, dtype=np.int64)
    seq = np.broadcast_to(np.asarray(seq, dtype=np.int64), (n,))
    distance_m = np.asarray(distance_m, dtype=np.float64)
    fence = np.asarray(fence, dtype=np.int32)
    accuracy = np.asarray(accuracy_m, dtype=np.float64)
    heard = time_ms if heard_ms is None else np.asarray(heard_ms, dtype=np.int64)
    if device.size and (device.min() < 0 or device.max() >= states.state.size):
        raise IndexError("device number outside the device states (grow the states first)")
    accuracy = np.where(
        np.isfinite(accuracy) & (accuracy >= 0), accuracy, config.assumed_accuracy_m
    )
    # circle margin: how far inside the edge the whole uncertainty circle is
    margin = distance_m - config.accuracy_factor * accuracy
    margin = np.where(np.isfinite(margin), margin, -np.inf)  # unusable distance: assume the worst

    out = states.copy()
    accepted = np.zeros(n, dtype=bool)
    state_after = np.zeros(n, dtype=np.int8)
    order = np.argsort(device, kind="stable")  # by device, each in arrival order
    sorted_device = device[order]
    repeats = n > 1 and bool((sorted_device[1:] == sorted_device[:-1]).any())
    if repeats:
        group_start = np.r_[0, np.flatnonzero(np.diff(sorted_device)) + 1]
        rank = np.arange(n) - np.repeat(group_start, np.diff(np.r_[group_start, n]))
        round_count = int(rank.max()) + 1
    else:  # no device twice: one round (the common live case)
        rank, round_count = None, (1 if n else 0)
    if scalar is None:
        scalar = n < SCALAR_BELOW_DEVICES_PER_ROUND * round_count
    if scalar:
        events = _apply_each(out, order, device, time_ms, heard, seq, distance_m, fence, margin,
                             config, accepted, state_after)  # fmt: skip
        return StepResult(out, events, accepted, state_after)
    rounds = [order[rank == k] for k in range(round_count)] if repeats else [order] * round_count
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
    """`_apply`, one fix at a time in plain Python: the same rules, line for line.

    Fixes go in `order` (by device, each in arrival order), so the events come out
    grouped by device in the order they happened, as `step` returns them.
    """
    rows: list[tuple[int, int, int, int, int, float]] = []
    lapse_ms = round(config.lost_after_s * 1000)
    dwell_ms = config.clearing_dwell_s * 1000.0
    clearing_margin = config.clearing_margin_m
    warn_plain = config.warning_margin_m
    warn_held = config.warning_margin_m + config.warning_hysteresis_m
    state, last_fix, last_heard = s.state, s.last_fix_ms, s.last_heard_ms
    last_seq, clearing, fences, distances = s.last_seq, s.clearing_since_ms, s.fence, s.distance_m
    for i in order.tolist():
        d = int(device[i])
        t, q = int(time_ms[i]), int(seq[i])
        last, last_q = int(last_fix[d]), int(last_seq[d])
        newer = t > last or (t == last and q > last_q)
        if not newer:  # a device's clock that jumps back, its sequence counting on
            newer = q >= 0 and last_q != NO_SEQ and q > last_q and t < _wrapped(last - lapse_ms)
        if not newer:  # not applied; a device silent for lost_after_s by now is LOST
            heard_before = int(last_heard[d])
            silent = heard_before != NO_TIME and int(heard_ms[i]) - heard_before >= lapse_ms
            state_after[i] = _LOST if silent else state[d]
            continue
        accepted[i] = True
        m, f, dist, h = float(margin[i]), int(fence[i]), float(distance_m[i]), int(heard_ms[i])
        prev, prev_fence, prev_distance = int(state[d]), int(fences[d]), float(distances[d])
        heard_before = int(last_heard[d])
        silent = heard_before != NO_TIME and h - heard_before >= lapse_ms
        lapsed = prev != _LOST and last != NO_TIME and (t - last > lapse_ms or silent)
        recovered = prev == _LOST or lapsed
        base = _SAFE if recovered else prev
        in_breach = base == _BREACH
        clearing_ok = m >= clearing_margin
        since = int(clearing[d])
        since = (t if since == NO_TIME else since) if in_breach and clearing_ok else NO_TIME
        cleared = in_breach and clearing_ok and (t - since) >= dwell_ms
        was_warning = base == _WARNING
        calm = _WARNING if m < (warn_held if was_warning else warn_plain) else _SAFE
        new = (calm if cleared else _BREACH) if in_breach else (_BREACH if m < 0 else calm)
        inside, was_inside = f >= 0, prev_fence >= 0
        if lapsed:
            rows.append((d, EventKind.LOST, last + lapse_ms, NO_SEQ, prev_fence, prev_distance))
        for kind, happened in (
            (EventKind.RECOVERED, recovered),
            (EventKind.ENTER, inside and (not was_inside or f != prev_fence)),
            (EventKind.EXIT, was_inside and not inside),
            (EventKind.BREACH, not in_breach and new == _BREACH),
            (EventKind.CLEAR, cleared),
            (EventKind.WARNING, new == _WARNING and not was_warning),
            (EventKind.SAFE, new == _SAFE and was_warning),
        ):
            if happened:
                rows.append((d, kind, t, q, f, dist))
        state[d] = new
        last_fix[d] = t
        last_heard[d] = h
        last_seq[d] = q
        clearing[d] = since if new == _BREACH else NO_TIME
        fences[d] = f
        distances[d] = dist
        state_after[i] = new
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
    d = device[pick]
    t = time_ms[pick]
    q = seq[pick]
    lapse_ms = round(config.lost_after_s * 1000)
    newer = (t > s.last_fix_ms[d]) | ((t == s.last_fix_ms[d]) & (q > s.last_seq[d]))
    # A device clock that jumps back (a GNSS receiver re-acquiring time, a phone's clock
    # corrected) would otherwise be ignored until it caught up with its own past, with
    # the wearer unprotected meanwhile. Its sequence numbers still count on, which a late
    # or redelivered old fix's do not: such a fix is taken as new, and the device's time
    # starts again from it.
    clock_back = (
        (q >= 0)
        & (s.last_seq[d] != NO_SEQ)
        & (q > s.last_seq[d])
        & (t < s.last_fix_ms[d] - lapse_ms)
    )
    newer |= clock_back
    # a fix that is not applied leaves the state as it is, except that a device silent
    # for lost_after_s by this fix's receipt is LOST, whether or not a tick said so yet
    old = ~newer
    heard_then = s.last_heard_ms[d[old]]
    silent_then = (heard_then != NO_TIME) & (heard_ms[pick[old]] - heard_then >= lapse_ms)
    state_after[pick[old]] = np.where(silent_then, _LOST, s.state[d[old]])
    pick, d, t, q = pick[newer], d[newer], t[newer], q[newer]
    accepted[pick] = True
    m = margin[pick]
    f = fence[pick]
    dist = distance_m[pick]
    prev = s.state[d].copy()
    prev_fence = s.fence[d].copy()
    prev_distance = s.distance_m[d].copy()

    # A gap on the device's own clock longer than lost_after_s is a lapse in protection
    # too (a replay, a time-warped trial, a device switched off between shifts): the
    # device was LOST in between and starts afresh, so a breach is raised (and the
    # wearer alerted) again rather than carried silently over the gap. So is a silence
    # on the receiving clock as long as `expire` judges (fixes buffered in a tunnel and
    # delivered in a burst): whether a clock tick happened to run `expire` before the
    # fix that ends the silence arrived then changes when LOST is said, never whether
    # or with what stamp, so the decisions are a function of the fix stream alone.
    last = s.last_fix_ms[d]
    heard_before = s.last_heard_ms[d]
    silent = (heard_before != NO_TIME) & (heard_ms[pick] - heard_before >= lapse_ms)
    lapsed = (prev != _LOST) & (last != NO_TIME) & ((t - last > lapse_ms) | silent)
    recovered = (prev == _LOST) | lapsed
    base = np.where(recovered, _SAFE, prev)
    raise_now = m < 0
    in_breach = base == _BREACH
    # clearing: inside by the clearing margin, held for the dwell time
    clearing_ok = m >= config.clearing_margin_m
    since = s.clearing_since_ms[d]
    since = np.where(in_breach & clearing_ok, np.where(since == NO_TIME, t, since), NO_TIME)
    cleared = in_breach & clearing_ok & ((t - since) >= config.clearing_dwell_s * 1000.0)
    was_warning = base == _WARNING
    warn_level = np.where(
        was_warning, config.warning_margin_m + config.warning_hysteresis_m, config.warning_margin_m
    )
    calm = np.where(m < warn_level, _WARNING, _SAFE)
    new = np.where(in_breach, np.where(cleared, calm, _BREACH), np.where(raise_now, _BREACH, calm))
    inside, was_inside = f >= 0, prev_fence >= 0

    # one row per event kind, in the order events of one fix are reported
    happened = np.stack(
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

    s.state[d] = new
    s.last_fix_ms[d] = t
    s.last_heard_ms[d] = heard_ms[pick]
    s.last_seq[d] = q
    s.clearing_since_ms[d] = np.where(new == _BREACH, since, NO_TIME)
    s.fence[d] = f
    s.distance_m[d] = dist
    state_after[pick] = new
    row, at = np.nonzero(happened)
    events = Events(d[at], _EVENT_ORDER[row], t[at], q[at], f[at], dist[at])
    if not lapsed.any():
        return events
    lost = Events(
        d[lapsed],
        np.full(int(lapsed.sum()), EventKind.LOST, np.int8),
        last[lapsed] + lapse_ms,
        np.full(int(lapsed.sum()), NO_SEQ, np.int64),
        prev_fence[lapsed],
        prev_distance[lapsed],
    )
    return Events.concat([lost, events])


def expire(states: DeviceStates, now_ms: int, config: BreachConfig) -> tuple[DeviceStates, Events]:
    """Mark LOST every device not heard from (an accepted fix) for lost_after_s at `now_ms`.

    Silence is measured on the receiving clock, so a device whose own clock is wrong
    is not lost while it keeps reporting. The LOST event is stamped on the device's
    clock (last fix time + lost_after_s), which every worker of a group agrees on.
    Devices that have never reported are already LOST and raise no new event.
    """
    lapse_ms = round(config.lost_after_s * 1000)
    stale = (states.state != State.LOST) & (states.last_heard_ms <= now_ms - lapse_ms)
    at = np.flatnonzero(stale)
    if at.size == 0:
        return states, Events.empty()
    out = replace(
        states, state=states.state.copy(), clearing_since_ms=states.clearing_since_ms.copy()
    )
    out.state[at] = State.LOST
    out.clearing_since_ms[at] = NO_TIME
    events = Events(
        at.astype(np.int64),
        np.full(at.size, EventKind.LOST, np.int8),
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

    The fixes are taken to arrive in the order of their fix times (a recording's
    rows need not be), each received when it was stamped. A gap in the recording
    raises LOST as the live service's tick would have, stamped when protection
    lapsed: `step` judges silence on the fix stream itself, so one pass decides the
    whole recording, and a last look for silent devices is taken at its end.
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
