"""Deciding a simulated shift in-process, exactly as the live service would.

A shift's decisions are a function of its messages and when each arrived: the
ingest pipeline holds no clock of its own, its batches decide as the same
messages one at a time would, and a device's lapse in protection is judged on the
fix stream (geofence.breach.step), not on when a clock tick happened to look. So a
simulated trial need not squeeze its shifts through a broker to be decided as the
live service decides them. Here each message goes, in the order its device sent
it and stamped with the time it arrived on the replay's clock, through the same
`Pipeline` (the same decoding, time sanity, geofence and state machine), and the
same records are written with the same `Store.write`, at the speed of the
vectorised core. The MQTT path (`trackfence trial run --via-mqtt`) is kept and
tested to give the same decisions, events and rows.

What a replay cannot give is the platform's own hops: nothing here waits on a
socket. A fix is stamped decided when it arrived and its alert published at once
(hops of zero), and the trial's manifest says the hops were not measured, so a
report never passes these zeros off as a measurement (trials.collect).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from devices.sim.generate import Simulation
from devices.sim.publish import Message
from ingest.pipeline import Decided, Inbound, Pipeline
from ingest.service import TICK_MS
from ingest.settings import IngestSettings
from store import Batch, Store

#: Messages decided together. Batching changes no decision (the pipeline's promise);
#: larger batches amortise its per-batch cost. The live service closes a batch at
#: `batch_max_fixes` (500) too.
BATCH_MESSAGES = 500
#: Records gathered before one write: fewer, larger transactions, as the live writer does.
WRITE_RECORDS = 20_000


@dataclass
class Replayed:
    """What deciding one shift in-process did, and how long each part took."""

    messages: int = 0
    fixes: int = 0
    events: int = 0
    alerts: int = 0
    dead_letters: int = 0
    decide_s: float = 0.0
    store_s: float = 0.0


def decide_shift(
    settings: IngestSettings,
    store: Store,
    messages: list[Message],
    progress: Callable[[int, int], None] | None = None,
    *,
    devices: Collection[str] | None = None,
    end_ms: int | None = None,
) -> Replayed:
    """Decide `messages` (in send order) as ingest configured by `settings` would, and keep
    every fix, event, alert, dead letter and device alarm in `store`.

    Like a live worker starting for the shift, it resumes each device from the store's
    last accepted fix. Silent devices are checked on the service's tick (`expire`),
    on the replay's clock, and once more when the shift is over (`end_ms`, by default
    just after the last message; see `shift_end_ms`).

    `devices`: decide only these devices' messages (the others are another process's);
    only they are resumed, so none of the others is found silent here. A device's
    decisions depend on nothing but its own messages and its own last stored fix, so
    shares of a shift decided apart store what the whole shift decided at once would.
    """
    pipeline = Pipeline(settings.deployment(), settings.decisions,
                        stale_after_s=settings.stale_after_s)  # fmt: skip
    saved = store.latest_device_states()
    pipeline.restore(saved if devices is None else [s for s in saved if s.device_id in devices])
    done = Replayed(messages=len(messages))
    pending = Batch()
    next_tick = (messages[0].send_ms if messages else 0) + TICK_MS
    for start in range(0, len(messages), BATCH_MESSAGES):
        began = time.perf_counter()
        chunk = messages[start : start + BATCH_MESSAGES]
        decided = pipeline.decide([Inbound(m.topic, m.payload, m.send_ms) for m in chunk], None)
        _publish(decided, now_ms=chunk[-1].send_ms)
        now = chunk[-1].send_ms
        if now >= next_tick:  # the service's loop: a tick after the batch that reached it
            next_tick = now + TICK_MS
            expired = pipeline.expire(now)
            _publish(expired, now_ms=now)
            decided.merge(expired)
        _count(done, decided)
        pending.extend(decided.batch)
        done.decide_s += time.perf_counter() - began
        if len(pending) >= WRITE_RECORDS:
            done.store_s += _write(store, pending)
            pending = Batch()
        if progress is not None:
            progress(min(start + BATCH_MESSAGES, len(messages)), len(messages))
    if messages or end_ms is not None:  # the devices leave: each is found silent in time
        began = time.perf_counter()
        lapse_ms = round(settings.decisions.lost_after_s * 1000)
        last = max((m.send_ms for m in messages), default=0)
        end = last + lapse_ms + TICK_MS if end_ms is None else end_ms
        expired = pipeline.expire(end)
        _publish(expired, now_ms=end)
        _count(done, expired)
        pending.extend(expired.batch)
        done.decide_s += time.perf_counter() - began
    done.store_s += _write(store, pending)
    return done


def shift_end_ms(sim: Simulation, start_ms: int, settings: IngestSettings) -> int:
    """When a replayed shift is over: after its last message, lost_after_s and a tick.

    By then a live service would have found every device that went quiet silent, so
    every path takes its last look for silent devices then and stores the same LOSTs.
    Worked out from the whole simulation (its last send, and the longest a device's own
    alarm follows its fix), so a process deciding a share of the devices agrees on it.
    """
    f = sim.fixes
    last = int(f.send_ms.max()) if len(f) else 0
    delay = max((round(sim.scenario.profile(w).own_alarm_delay_ms)
                 for w in sim.scenario.workers), default=0)  # fmt: skip
    lapse_ms = round(settings.decisions.lost_after_s * 1000)
    return start_ms + last + max(delay, 0) + lapse_ms + TICK_MS


def _publish(decided: Decided, now_ms: int) -> None:
    """Each alert as published the moment the fix that raised it arrived (no hop measured)."""
    if not decided.alerts:
        return
    arrived = {(f.device_id, f.seq, f.fix_ms): f.received_ms for f in decided.batch.fixes}
    decided.record_alerts(
        [arrived.get((a.device_id, a.seq, a.event_ms), now_ms) for a in decided.alerts]
    )


def _count(done: Replayed, decided: Decided) -> None:
    done.fixes += len(decided.batch.fixes)
    done.events += len(decided.batch.events)
    done.alerts += len(decided.batch.alerts)
    done.dead_letters += len(decided.batch.dead_letters)


def _write(store: Store, batch: Batch) -> float:
    began = time.perf_counter()
    if len(batch):
        store.write(batch)
    return time.perf_counter() - began
