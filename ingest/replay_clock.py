"""The receiving clock of a replay through the live service.

A simulated shift published as fast as the broker takes it arrives in seconds,
months after the times its fixes carry. Stamped on the wall clock, every fix would
look months late (a false `falling-behind`), a device silent in a tunnel for a
minute would never be silent for long enough to be LOST, and the decisions would
depend on how the broker happened to pace the replay. In a replay the service
therefore receives each message when the simulation says it arrived, and its clock
(silence, lateness, alert times) is the replay's time.

That time is a low-water mark: the latest arrival before which every message of the
replay has been received. Each simulated device publishes on its own connection,
so the broker may hand over one device's messages ahead of another's; a clock that
read the newest arrival would then run ahead of messages still on their way, and
find a device silent that the replay says was heard. With the low-water mark, every
message not yet received arrived later than the clock says it is now, as on a live
wall clock, and the service decides exactly as the same shift decided in-process
(trials.harness.replay), message for message.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable


class ReplayClock:
    """Receipt times of a replay's messages, by their exact bytes, and the replay's now."""

    def __init__(self, arrivals: Iterable[tuple[str, bytes, int]], start_ms: int) -> None:
        """`arrivals`: (topic, payload, arrival ms) of every message the replay will send,
        in the order they are sent. The same bytes sent twice (a device's retransmission)
        are received in the order sent, each with its own arrival time."""
        listed = list(arrivals)
        order = sorted(range(len(listed)), key=lambda i: listed[i][2])
        place = [0] * len(listed)
        for position, i in enumerate(order):
            place[i] = position
        self._times = [listed[i][2] for i in order]  # every arrival, earliest first
        self._due: dict[tuple[str, bytes], deque[int]] = {}
        for i, (topic, payload, _) in enumerate(listed):
            self._due.setdefault((topic, payload), deque()).append(place[i])
        self._received = bytearray(len(listed))
        self._low = 0  # every arrival before this position has been received
        self._now = start_ms
        self._lock = threading.Lock()
        #: messages received that the replay did not send (another client's, a last will)
        self.unknown = 0

    def receive(self, topic: str, payload: bytes) -> int:
        """When this message arrived on the replay's clock (one not sent by it: now)."""
        with self._lock:
            due = self._due.get((topic, payload))
            if not due:
                self.unknown += 1
                return self._now
            position = due.popleft()
            self._received[position] = 1
            while self._low < len(self._times) and self._received[self._low]:
                self._now = max(self._now, self._times[self._low])
                self._low += 1
            return self._times[position]

    @property
    def complete(self) -> bool:
        """Whether every message of the replay has been received."""
        return self._low == len(self._times)

    def finish(self, end_ms: int) -> None:
        """The replay is over: its clock moves on to `end_ms` (every message received)."""
        with self._lock:
            self._now = max(self._now, end_ms)

    def __call__(self) -> int:
        """The replay's now: the latest arrival before which everything has been received."""
        return self._now
