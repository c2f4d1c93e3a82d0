"""Where a fix's time goes inside the worker, hop by hop, and what stalls it.

An alert's round trip is the broker's two hops plus the worker's own. To find where a
tail (p99) comes from, every batch is stamped as it goes through the worker, on the
monotonic clock in microseconds:

* `inbox_us`: from the first message's arrival (paho's `on_message`) to the decision's
  start: micro-batching, and the decider being busy with something else;
* `decide_us`: deciding the batch (`Pipeline.decide`), and `lone_us` the same for a
  batch of one message (the live path when it is quiet);
* `alert_us`: publishing its alerts and writing them to the socket;
* `loop_us`: one turn of the decider's loop after a wait (deciding, publishing,
  the clock tick, health): while it lasts, nothing new is read;
* `write_us`: one transaction of the writer (database or spool);
* `ack_us`: from a batch's first arrival to its acknowledgement (what the broker's
  in-flight window sees);
* `gc_us`: each pause of Python's garbage collector, in any thread (it stops them all).

Samples are kept for one reporting period (the health status, every few seconds) and
summarised there as p50, p99 and max; the soak benchmark reads them minute by minute.
Bounded: past `SAMPLES_MAX` a hop keeps every other sample, so memory stays flat
whatever the rate.
"""

from __future__ import annotations

import gc
import threading
import time

import numpy as np

HOPS = (
    "inbox_us", "decide_us", "lone_us", "alert_us", "loop_us", "write_us", "ack_us", "gc_us"
)  # fmt: skip
#: Samples one hop keeps in a reporting period before it starts keeping one in two.
SAMPLES_MAX = 50_000


def now_us() -> int:
    """The monotonic clock, microseconds (what every stamp here is taken on)."""
    return time.perf_counter_ns() // 1000


class HopWatch:
    """Collects hop durations from any thread and summarises them per reporting period.

    `record` is called on the decider and the writer threads, and `gc.callbacks` from
    whichever thread collects: a list append is atomic in CPython, and the summary swaps
    the lists under a lock; a sample recorded during the swap may fall out of both periods
    (a measurement, not a record).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, list[int]] = {hop: [] for hop in HOPS}
        self._stride: dict[str, int] = dict.fromkeys(HOPS, 1)
        self._seen: dict[str, int] = dict.fromkeys(HOPS, 0)
        self._gc_started_us: int | None = None

    def record(self, hop: str, duration_us: int) -> None:
        """Keep one duration of `hop` (one of HOPS), microseconds."""
        seen = self._seen[hop] = self._seen[hop] + 1
        stride = self._stride[hop]
        if seen % stride:
            return
        samples = self._samples[hop]
        samples.append(duration_us)
        if len(samples) >= SAMPLES_MAX:  # keep one in two from now on, and thin what is held
            self._stride[hop] = stride * 2
            self._samples[hop] = samples[::2]

    def summary(self) -> dict[str, dict[str, float]]:
        """p50, p99, max (µs) and count of every hop since the last summary; then start afresh."""
        with self._lock:
            taken, self._samples = self._samples, {hop: [] for hop in HOPS}
            counts, self._seen = self._seen, dict.fromkeys(HOPS, 0)
            self._stride = dict.fromkeys(HOPS, 1)
        out: dict[str, dict[str, float]] = {}
        for hop, samples in taken.items():
            if not samples:
                continue
            values = np.asarray(samples, dtype=np.float64)
            p50, p99 = np.percentile(values, [50, 99])
            out[hop] = {
                "p50": round(float(p50), 1),
                "p99": round(float(p99), 1),
                "max": float(values.max()),
                "count": counts[hop],
            }
        return out

    # ------------------------------------------------------------ garbage collection
    def watch_gc(self) -> None:
        """Time every garbage collection from now on (until `unwatch_gc`)."""
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def unwatch_gc(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started_us = now_us()
        elif self._gc_started_us is not None:
            self.record("gc_us", now_us() - self._gc_started_us)
            self._gc_started_us = None
