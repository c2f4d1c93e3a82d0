"""The words every part says a decision in: event kinds and device states, said one way.

Each is a string enum whose values are exactly what is stored and sent: an event's
`kind` in the store, in an alert's JSON and in the console ("breach", "clear", …),
and a fix's `state` ("SAFE", "BREACH", …). The state machine's hot path keeps small
integer codes in its numpy arrays instead; the one mapping between the two is here,
beside the enums: a member's `code` is its position in `EVENT_KINDS` (or `STATES`),
and `event_kind(code)` (or `state_of(code)`) goes back.

>>> EventKind.BREACH == "breach", EventKind.BREACH.code, event_kind(4)
(True, 4, <EventKind.BREACH: 'breach'>)
>>> State.LOST.code, state_of(3), f"{State.LOST}"
(3, <State.LOST: 'LOST'>, 'LOST')
"""

from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    """What a breach-log event records (its value is what is stored and sent)."""

    ENTER = "enter"  # position moved into a safe-zone fence
    EXIT = "exit"  # position moved out of the safe zone
    WARNING = "warning"  # uncertainty circle came within the approach margin
    SAFE = "safe"  # back out of the approach margin (WARNING -> SAFE)
    BREACH = "breach"  # uncertainty circle reached the edge: tap on the shoulder
    CLEAR = "clear"  # back inside by the clearing margin for the dwell time
    LOST = "lost"  # no fix for lost_after_s
    RECOVERED = "recovered"  # first accepted fix after LOST

    @property
    def code(self) -> int:
        """The kind's integer code in the state machine's arrays (`Events.kind`, int8)."""
        return _EVENT_CODES[self]


class State(StrEnum):
    """A device's state after a fix (its value is what a stored fix's `state` says).

    The state machine is only ever in the first four. UNASSIGNED is said of a fix
    ingest could not decide on, because its device works at no site.
    """

    SAFE = "SAFE"
    WARNING = "WARNING"
    BREACH = "BREACH"
    LOST = "LOST"  # no accepted fix for lost_after_s (or none yet): not protecting
    UNASSIGNED = "UNASSIGNED"  # the device works at no site: nothing was decided

    @property
    def code(self) -> int:
        """The state's integer code in the state machine's arrays (`DeviceStates.state`)."""
        return _STATE_CODES[self]


#: Every event kind, in code order: EVENT_KINDS[k.code] is k. The order is the codes'
#: definition, never to be reordered (the codes are only ever in memory, but every part
#: of one process must agree on them).
EVENT_KINDS: tuple[EventKind, ...] = tuple(EventKind)
#: Every state, in code order: STATES[s.code] is s.
STATES: tuple[State, ...] = tuple(State)
#: The states the state machine can be in (UNASSIGNED is not one of them).
MACHINE_STATES: frozenset[State] = frozenset((State.SAFE, State.WARNING, State.BREACH, State.LOST))

_EVENT_CODES = {kind: code for code, kind in enumerate(EVENT_KINDS)}
_STATE_CODES = {state: code for code, state in enumerate(STATES)}


def event_kind(code: int) -> EventKind:
    """The event kind an integer code stands for (an `Events.kind` element).

    >>> event_kind(EventKind.CLEAR.code)
    <EventKind.CLEAR: 'clear'>
    """
    code = int(code)
    if not 0 <= code < len(EVENT_KINDS):
        raise ValueError(f"{code} is not an event kind's code (0 to {len(EVENT_KINDS) - 1})")
    return EVENT_KINDS[code]


def state_of(code: int) -> State:
    """The state an integer code stands for (a `DeviceStates.state` or `state_after` element).

    >>> state_of(State.BREACH.code)
    <State.BREACH: 'BREACH'>
    """
    code = int(code)
    if not 0 <= code < len(STATES):
        raise ValueError(f"{code} is not a state's code (0 to {len(STATES) - 1})")
    return STATES[code]
