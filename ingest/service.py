"""`trackfence ingest`: the live service (MQTT in, alerts out, every fix kept).

The order of work for each micro-batch is the no-loss promise:

1. decide (geofence + state machine), 2. publish alerts at QoS 1 (safety first:
   alerts do not wait for storage), 3. write the batch durably (TimescaleDB, or
   the local spool when it is unreachable), 4. only then acknowledge the batch's
   messages to the broker (paho 2 manual acknowledgement).

A crash anywhere before 4 leaves the messages unacknowledged in the broker's
persistent session, and they come again on reconnect; the store's idempotent
keys make the second pass a no-op. How many messages may be in flight
unacknowledged is bounded by MQTT v5's Receive Maximum, which is also what
bounds memory when both the database and the spool are unavailable.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import pickle
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from geofence.breach import NO_TIME
from ingest.hops import HopWatch, now_us
from ingest.lag import FALLING_BEHIND, LagWatch
from ingest.network import NetworkLoop, ReadAheadClient
from ingest.pipeline import Decided, Inbound, Pipeline
from ingest.settings import IngestSettings
from ingest.spool import Spool, SpoolFullError
from store import (
    Batch,
    DeviceState,
    Fix,
    Store,
    StoreError,
    StoreUnavailableError,
    open_store,
)
from wire.codecs import DecodeError, decode
from wire.topics import parse, subscriptions

log = logging.getLogger("trackfence.ingest")

#: Unacknowledged messages the broker may send us at once: what keeps deliveries flowing
#: while a batch is written (acks wait for the write), and the bound on memory held.
RECEIVE_MAXIMUM = 10_000
TICK_MS = 250  # how often silent devices are checked and the spool replayed
SWITCH_INTERVAL_S = 0.0005
RATE_WINDOW_S = 0.1
#: The writer sleeps this long between transactions, then takes whatever batches wait.
#: It is not woken for each batch: every wake-up and every transaction is interpreter time
#: taken from the decider (and a commit's work taken from the machine), so fewer, larger
#: writes put alerts out sooner. Measured at 1,000 fixes/s (ingest/hops.py): woken per
#: batch and gathering 1 ms, the alert round trip p50 was 1.14 ms; sleeping 20 ms,
#: 0.54-0.67 ms. Acknowledgements wait for the write, so a fix stays unacknowledged for
#: about this plus a commit; with Nagle's algorithm off (ingest/network.py) that no longer
#: delays the broker's next deliveries.
WRITE_EVERY_S = 0.02
WRITE_GATHER_RECORDS = 2000  # at most this many records a transaction; more wait a turn
#: Each worker publishes its health here (retained) for the console's /metrics: it still
#: arrives when the database is down, which is when the spool depth matters.
HEALTH_TOPIC = "trackfence/v1/ingest/{client_id}/status"
HEALTH_EVERY_MS = 5_000
LAG_SAMPLE = 32  # fixes a batch lends the falling-behind watch, at most
#: Records of one batch the database may refuse one by one before the fault is taken to be
#: the database's (see IngestService._write)
REFUSED_RECORDS_MAX = 64
STATE_FEED = 1  # subscription identifier: every message, for the device states
EFFECTS_FEED = 2  # subscription identifier: this worker's share, to store and alert on
#: (Sharded) the topic filters this worker's persistent session holds, kept in its spool
#: folder: a filter no longer wanted (a site moved away) is unsubscribed at the next connect
SUBSCRIBED_FILE = "subscriptions.json"
SUBSCRIBE_CHUNK = 500  # topic filters per SUBSCRIBE packet


def _identifier(number: int) -> Properties:
    props = Properties(PacketTypes.SUBSCRIBE)
    props.SubscriptionIdentifier = number
    return props


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class IngestService:
    def __init__(
        self,
        settings: IngestSettings,
        store: Store | None = None,
        clock_ms: Callable[[], int] = wall_ms,
        receipt: Callable[[str, bytes], int] | None = None,
    ) -> None:
        """`clock_ms` and `receipt`: the service's clock and when each message was received
        (default: the wall clock at its arrival). A replay gives its own, so that its
        decisions and its lateness are on the replay's time (ingest.replay_clock)."""
        self.settings = settings
        self.clock_ms = clock_ms
        self.receipt = receipt
        self.group = settings.group or None
        #: (sharded) each site's topic filters and share group (README "Scaling out")
        self.shares = settings.site_shares() if settings.sharded else None
        self.pipeline = Pipeline(
            settings.deployment(),
            settings.decisions,
            replicated=bool(self.group or self.shares),
            stale_after_s=settings.stale_after_s,
        )
        #: (replicated) where each device stood when restored at start, until its first
        #: message resumes it (_resume)
        self._restored: dict[str, DeviceState] = {}
        self._resuming = self.pipeline.replicated
        self._unsubscribing: tuple[int, set[str]] | None = None  # (sharded) mid, what stays
        self.store = store if store is not None else open_store(settings.db)
        self.spool = Spool(settings.spool, max_bytes=int(settings.spool_max_mb * 2**20))
        self.counters: Counter = Counter()
        self.alarms: set[str] = set()
        self.lag = LagWatch()
        self.hops = HopWatch()  # where time goes inside the worker (ingest/hops.py)
        self._health_due = False  # an alarm changed: publish the status without waiting
        #: the clock's time at the last look for silent devices (set by the decider)
        self.ticked_ms: int | None = None
        #: filled by on_message and emptied by the decider: the same thread (see network.py);
        #: (message, its packet id, QoS, when it arrived in µs on the monotonic clock)
        self._inbox: deque[tuple[Inbound, int, int, int]] = deque()
        self._held: list[tuple[Batch, list[tuple[int, int]]]] = []  # written nowhere yet
        #: (batch, acks, first arrival µs) from the decider to the writer; None: stop
        self._writes: deque[tuple[Batch, list[tuple[int, int]], int | None] | None] = deque()
        self._writer: threading.Thread | None = None
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._schema_ready = False
        self.connected = threading.Event()
        #: set once the broker has granted every subscription: from then on nothing
        #: published is missed (connected alone is not enough; a SUBACK can lag)
        self.subscribed = threading.Event()
        self._pending_subscriptions: set[int] = set()
        self.client = ReadAheadClient(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=settings.paho_protocol,
            clean_session=None if settings.paho_protocol == mqtt.MQTTv5 else False,
            manual_ack=True,
        )
        if settings.username:
            self.client.username_pw_set(settings.username, settings.password)
        if settings.uses_tls:  # the broker's certificate is checked against tls_ca
            self.client.tls_set(ca_certs=settings.tls_ca)
        self.network = NetworkLoop(self.client, min_delay_s=1, max_delay_s=5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_unsubscribe = self._on_unsubscribe
        self.health_topic = HEALTH_TOPIC.format(client_id=settings.client_id)
        # a worker that dies without a goodbye is marked offline by the broker
        self.client.will_set(
            self.health_topic, json.dumps({"client_id": settings.client_id, "online": False}),
            qos=1, retain=True,
        )  # fmt: skip

    # ------------------------------------------------------------------ MQTT callbacks
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        self.subscribed.clear()
        self._pending_subscriptions.clear()
        if self.shares is not None:
            requests = self._shard_requests(client)
        elif self.group:
            # every message once for the device states (identifier 1), and this worker's
            # share of them again, for their effects (identifier 2)
            requests = [
                ([(t, 1) for t in subscriptions()], _identifier(STATE_FEED)),
                ([(t, 1) for t in subscriptions(self.group)], _identifier(EFFECTS_FEED)),
            ]
        else:
            requests = [([(t, 1) for t in subscriptions()], None)]
        for topics, properties in requests:
            _, mid = client.subscribe(topics, properties=properties)
            self._pending_subscriptions.add(mid)
        self.connected.set()
        log.info("connected to the broker (session present: %s)", flags.session_present)

    def _shard_requests(self, client) -> list:
        """(Sharded) subscribe to the devices of this worker's sites, twice, as a group does:
        every message for the device states, and, in each site's share group, this worker's
        share for their effects. What the session held and is no longer wanted (a site
        moved to another shard, the whole fleet of an unsharded past) is unsubscribed."""
        assert self.shares is not None
        plain = [f for share in self.shares for f in share.filters]
        shared = [f for share in self.shares for f in share.shared_filters]
        wanted = set(plain) | set(shared)
        held = self._held_filters()
        stale = (held | set(subscriptions()) | set(subscriptions(self.group))) - wanted
        self._hold_filters(held | wanted)  # what the session may hold, until the UNSUBACK
        if stale:
            _, mid = client.unsubscribe(sorted(stale))
            self._unsubscribing = (mid, wanted)
        return [
            ([(t, 1) for t in feed[i : i + SUBSCRIBE_CHUNK]], _identifier(number))
            for feed, number in ((plain, STATE_FEED), (shared, EFFECTS_FEED))
            for i in range(0, len(feed), SUBSCRIBE_CHUNK)
        ]

    def _held_filters(self) -> set[str]:
        try:
            return set(json.loads((Path(self.settings.spool) / SUBSCRIBED_FILE).read_text()))
        except (OSError, ValueError):
            return set()

    def _hold_filters(self, filters: set[str]) -> None:
        path = Path(self.settings.spool) / SUBSCRIBED_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".new").write_text(json.dumps(sorted(filters)))
        os.replace(path.with_suffix(".new"), path)

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if self._unsubscribing is not None and self._unsubscribing[0] == mid:
            self._hold_filters(self._unsubscribing[1])
            self._unsubscribing = None

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [c for c in reason_codes if c.is_failure]
        if refused:
            self._alarm("subscription-refused", f"the broker refused a subscription: {refused}")
            return
        self._pending_subscriptions.discard(mid)
        if not self._pending_subscriptions:
            self.subscribed.set()
            self._health_due = True  # say so at once: from now on nothing is missed

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self._stop.is_set():
            log.warning("lost the broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        effects = True
        if self.pipeline.replicated:
            ids = getattr(message.properties, "SubscriptionIdentifier", None) or []
            effects = EFFECTS_FEED in ids
        if self.shares is not None and self._elsewhere(message, effects):
            return
        payload = bytes(message.payload)
        received = self.clock_ms() if self.receipt is None else self.receipt(message.topic, payload)
        inbound = Inbound(message.topic, payload, received, effects)
        self._inbox.append((inbound, message.mid, message.qos, now_us()))

    def _elsewhere(self, message: mqtt.MQTTMessage, effects: bool) -> bool:
        """(Sharded) whether the message is of a device at none of this worker's sites.

        Only a subscription this worker no longer wants delivers one: its session kept
        messages for a site that has moved to another shard. The copy for the device
        states is acknowledged and dropped. The effects copy was this worker's share, and
        nobody else's: it is published again, so that one of the site's workers (the
        broker picks one) stores and alerts it, deciding it from the copy it already
        applied to its states; then it is acknowledged (after the republish, in order).
        """
        topic = parse(message.topic)
        if topic is None or self.pipeline.deployment.site_of(topic.device_id) is not None:
            return False
        if effects:
            self.client.publish(message.topic, bytes(message.payload), qos=1)
            self.counters["redispatched"] += 1
        self.counters["elsewhere"] += 1
        self._writes.append((Batch(), [(message.mid, message.qos)], None))
        return True

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        # The decider (which also drives the socket) and the writer share one interpreter
        # lock; by default a thread may hold it 5 ms, which would sit between a fix and
        # its alert. Hand it over more often (a small cost in throughput).
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._prepare_store(restore=True)
        # What was made to start (sites, fence indexes, restored states, imported code) is
        # kept for good: the collector no longer walks it at every full collection, which
        # otherwise stalls every thread for milliseconds at a time (ingest/hops.py, gc_us).
        gc.collect()
        gc.freeze()
        self.hops.watch_gc()
        host, port = self.settings.broker_host_port
        if self.client.protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.settings.session_expiry_s
            props.ReceiveMaximum = RECEIVE_MAXIMUM
            self.client.connect_async(host, port, keepalive=15, clean_start=False, properties=props)
        else:  # 3.1.1: the persistent session is clean_session=False, set on the client
            self.client.connect_async(host, port, keepalive=15)
        self._worker = threading.Thread(target=self._run, name="ingest-decider", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        self._worker.start()
        self._writer.start()

    def _prepare_store(self, restore: bool) -> None:
        """Migrate the schema; at start-up also resume each device's state from the store.

        Only at start-up: later (a database that was down at start coming back) the
        states in memory are newer than anything stored, and the decider owns them.
        """
        try:
            self.store.migrate()
            if restore:
                saved = self.store.latest_device_states()
                if self.shares is not None:  # only this shard's devices: others go silent here
                    saved = [s for s in saved if self.pipeline.deployment.site_of(s.device_id)]
                self._restored = {s.device_id: s for s in saved}
                self.pipeline.restore(saved)
            self._schema_ready = True
        except StoreUnavailableError as exc:
            self._alarm("database-unreachable", str(exc))

    def request_stop(self) -> None:
        """Ask the worker to finish (safe from a signal handler)."""
        self._stop.set()

    def stop(self) -> None:
        """Finish the batch in hand, then leave the broker cleanly (unacknowledged stays queued)."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=30)
        if self._writer is not None:
            self._writer.join(timeout=60)
        # the decider has stopped driving the socket: this thread sends what is left
        # (the writer's last acknowledgements), then a clean goodbye, for which the
        # broker does not send the will
        if self.connected.is_set():
            gone = {"client_id": self.settings.client_id, "online": False}
            info = self.client.publish(self.health_topic, json.dumps(gone), qos=1, retain=True)
            self.network.drain(info.is_published, 2)
        self.client.disconnect()
        self.network.flush()
        self.store.close()
        self.hops.unwatch_gc()

    @property
    def waiting(self) -> int:
        """Messages received and not yet taken into a batch to decide."""
        return len(self._inbox)

    def wait(self) -> None:
        while not self._stop.wait(0.5):
            pass

    # ------------------------------------------------------------------ deciding
    def _run(self) -> None:
        """The decider: micro-batch, decide, alert; storage happens on the writer thread.

        A batch is whatever is waiting: a lone fix goes at once, and under load whatever
        arrived while the last batch was decided goes together. It may also wait for
        more, up to batch_max_wait_ms (default 0: never), and only while that wait would
        at least double it. A lone fix is decided in tens of microseconds
        (`Pipeline._decide_each`), so waiting only adds latency until the rate nears
        what one core can decide; set it for a worker that must trade latency for
        throughput.
        """
        next_tick = self.clock_ms() + TICK_MS
        next_health = self.clock_ms()
        max_wait_s = self.settings.batch_max_wait_ms / 1000
        rate = 0.0  # messages a second, over windows of RATE_WINDOW_S (smoothed)
        window_start, window_count = time.monotonic(), 0
        inbox = self._inbox
        while not self._stop.is_set():
            try:
                self.network.poll(0 if inbox else 0.05)
                if inbox and max_wait_s > 0:
                    started = time.monotonic()
                    while len(inbox) < self.settings.batch_max_fixes:
                        remaining = started + max_wait_s - time.monotonic()
                        # wait only if the wait would at least double the batch
                        if remaining <= 0 or 2 * len(inbox) > rate * max_wait_s:
                            break
                        self.network.poll(remaining)
            except Exception:  # a callback's failure must not end the worker
                log.exception("the network loop failed; carrying on")
                self.counters["network_failures"] += 1
                time.sleep(0.05)
            turn_us = now_us()
            taken = [inbox.popleft() for _ in range(min(len(inbox), self.settings.batch_max_fixes))]
            # the rate is measured over a window, not between two batches: two fixes
            # read back to back are not a rate of thousands a second
            window_count += len(taken)
            now_s = time.monotonic()
            if now_s - window_start >= RATE_WINDOW_S:
                rate = 0.5 * rate + 0.5 * window_count / (now_s - window_start)
                window_start, window_count = now_s, 0
            try:
                if taken:
                    self._decide(taken, turn_us)
                now = self.clock_ms()
                if now >= next_tick:
                    next_tick = now + TICK_MS
                    self._finish(self.pipeline.expire(self._heard_up_to(now)), [])
                    self.ticked_ms = now
                    self._watch_lag([])
                if now >= next_health or self._health_due:
                    self._health_due = False  # (set by either thread; published by this one)
                    next_health = now + HEALTH_EVERY_MS
                    self._publish_health(now)
                self.network.flush()
            except Exception:  # the service must not die on one bad batch
                log.exception(
                    "a batch failed; its messages stay unacknowledged and will come again"
                )
                self.counters["batch_failures"] += 1
            if taken:
                self.hops.record("loop_us", now_us() - turn_us)
        self._writes.append(None)  # let the writer finish what it has, then stop

    def _decide(self, taken: list[tuple[Inbound, int, int, int]], started_us: int) -> None:
        """Decide a batch taken from the inbox, publish its alerts, hand it to the writer."""
        self.counters["batches"] += 1
        arrived_us = taken[0][3]
        self.hops.record("inbox_us", started_us - arrived_us)
        # a replay measures no hop: each fix is decided when it was received
        clock = self.clock_ms if self.receipt is None else None
        messages = [t[0] for t in taken]
        if self._resuming:
            self._resume(messages)
        decided = self.pipeline.decide(messages, clock)
        took_us = now_us() - started_us
        self.hops.record("decide_us", took_us)
        if len(taken) == 1:
            self.hops.record("lone_us", took_us)
        self._finish(decided, [(mid, qos) for _, mid, qos, _ in taken], arrived_us)
        self._watch_lag(decided.batch.fixes)

    def _resume(self, messages: list[Inbound]) -> None:
        """(Replicated) resume each device, at the first message this worker gets for it,
        from its last stored fix up to that message.

        Its peers went on deciding while this worker was away, so the store's newest fix
        may be newer than what its session kept for it (Mosquitto queues a member's share
        of a shared subscription while it is away, and its unacknowledged messages): those
        must be decided from where the device stood before them, or an excursion among
        them would raise nothing. A message already stored (kept, not yet acknowledged)
        resumes from itself, so it is not alerted again. A site newly added to the worker
        resumes the same way, from the fixes its previous shard stored.

        Only devices the store held at start are looked up, each once (a flood of new
        device names costs no reads). Without the database the states held carry on.
        """
        if not self._restored or not self._schema_ready or "database-unreachable" in self.alarms:
            self._resuming = False
            return
        found: list[DeviceState] = []
        readers = self.pipeline.deployment.rfid_readers
        for m in messages:
            parts = m.topic.split("/")
            device_id = f"{parts[2]}/{parts[3]}" if len(parts) == 5 else ""
            if device_id not in self._restored or (topic := parse(m.topic)) is None:
                continue
            try:
                fixes = decode(topic, m.payload, m.received_ms, readers).fixes
            except DecodeError:
                fixes = ()
            if not fixes:  # not a fix: the device resumes at its first fix
                continue
            restored = self._restored.pop(device_id)
            try:
                state = self._stored_before(restored, fixes[0])
            except StoreError as exc:  # not now: carry on from the states held
                log.warning("cannot resume devices from the store (%s); carrying on", exc)
                self._resuming = False
                break
            if state is not None:
                found.append(state)
        if found:
            self.pipeline.restore(found)

    def _stored_before(self, restored: DeviceState, first) -> DeviceState | None:
        """The device's last stored fix up to `first`; None: nothing to change."""
        device_id = restored.device_id
        since = first.fix_ms - round(self.settings.stale_after_s * 1000)
        earlier = [
            f
            for f in self.store.fixes(device_id, since, first.fix_ms + 1)
            if f.accepted and (f.fix_ms, f.seq) <= (first.fix_ms, first.seq)
        ]
        if earlier:
            f = max(earlier, key=lambda f: (f.fix_ms, f.seq))
            return DeviceState(device_id, f.fix_ms, f.seq, f.state, f.fence, f.distance_m,
                               f.received_ms)  # fmt: skip
        if (restored.fix_ms, restored.seq) > (first.fix_ms, first.seq):
            # restored ahead of its first message, with nothing stored shortly before it:
            # it comes back from a long silence, as a device not heard of
            return DeviceState(device_id, NO_TIME, -1, "LOST", None, None, NO_TIME)
        return None

    def _heard_up_to(self, now_ms: int) -> int:
        """The time up to which silence can be judged: now, or just before the oldest
        message still waiting to be decided. A message from a device may be waiting in
        our own backlog; the device is not silent for that, and is not said LOST."""
        waiting = [inbound.received_ms for inbound, _, _, _ in self._inbox]
        return min(now_ms, min(waiting) - 1) if waiting else now_ms

    def _finish(
        self, decided: Decided, acks: list[tuple[int, int]], arrived_us: int | None = None
    ) -> None:
        """Publish the alerts now (safety does not wait for storage), then hand on to the writer.

        `arrived_us`: when the batch's first message arrived (monotonic µs), for `ack_us`.
        """
        batch = decided.batch
        if decided.reasons:
            self.counters.update({f"dead_letter:{r}": n for r, n in decided.reasons.items()})
        self.counters["fixes"] += len(batch.fixes)
        if decided.alerts:
            started_us = now_us()
            published = []
            for pending in decided.alerts:
                self.client.publish(pending.topic, pending.payload, qos=1)
                published.append(self.clock_ms())
            self.network.flush()  # out of the socket now, before anything else is done
            self.hops.record("alert_us", now_us() - started_us)
            decided.record_alerts(published)
            self.counters["alerts"] += len(decided.alerts)
        for message in decided.dead_letter_messages:
            self.client.publish(decided.dead_letter_topic, message, qos=1)
        if len(batch) or acks:
            self._writes.append((batch, acks, arrived_us))

    def _watch_lag(self, fixes: list[Fix]) -> None:
        """Feed the falling-behind watch a bounded sample of the batch: its cost stays flat."""
        sample = fixes[:: max(1, -(-len(fixes) // LAG_SAMPLE))]
        change = self.lag.observe(
            self.clock_ms(),
            [f.device_id for f in sample],
            [f.received_ms - f.fix_ms for f in sample],
        )
        if change is True:
            self._alarm(FALLING_BEHIND, self.lag.detail())
        elif change is False:
            self._clear(FALLING_BEHIND)

    def health(self, now_ms: int | None = None) -> dict:
        """What this worker says of itself: alarms, spool depth and its counters."""
        return {
            "client_id": self.settings.client_id,
            "shard": self.settings.shard,
            "online": True,
            "time_ms": self.clock_ms() if now_ms is None else now_ms,
            "alarms": sorted(self.alarms),
            "spool_depth": self.spool.depth,
            "fix_age_median_ms": self.lag.last_median_ms,
            "counters": dict(self.counters),
        }

    def _publish_health(self, now_ms: int) -> None:
        if self.connected.is_set():
            status = self.health(now_ms)
            # µs per hop since the last status: p50, p99, max, count (ingest/hops.py)
            status["hops"] = self.hops.summary()
            self.client.publish(self.health_topic, json.dumps(status), qos=1, retain=True)


    # ------------------------------------------------------------------ keeping
    def _write_loop(self) -> None:
        """The writer: every WRITE_EVERY_S, make the batches waiting durable in one
        transaction, then acknowledge them; when none wait, retry the spool now and then."""
        last_catch_up = time.monotonic()
        full = False  # the last transaction was as large as one may be, and more waited
        while True:
            if not full:
                time.sleep(WRITE_EVERY_S)
            merged, acks, arrived, stopping = Batch(), [], [], False
            while self._writes and len(merged) < WRITE_GATHER_RECORDS:
                item = self._writes.popleft()
                if item is None:
                    stopping = True
                    break
                merged.extend(item[0])
                acks.extend(item[1])
                if item[2] is not None:
                    arrived.append(item[2])
            full = len(merged) >= WRITE_GATHER_RECORDS and bool(self._writes)
            if len(merged) or acks:
                first_us = min(arrived) if arrived else None
                self._guard(lambda: self._store_and_ack(merged, acks, first_us))  # noqa: B023
            elif time.monotonic() - last_catch_up >= TICK_MS / 1000:
                last_catch_up = time.monotonic()
                self._guard(self._catch_up)
            if stopping:
                return

    def _guard(self, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception:
            log.exception("storage step failed; unacknowledged messages will come again")
            self.counters["batch_failures"] += 1

    def _store_and_ack(
        self, batch: Batch, acks: list[tuple[int, int]], arrived_us: int | None = None
    ) -> None:
        started_us = now_us()
        if self._held or not self._keep(batch):
            self._held.append((batch, acks))
            self._catch_up()
            return
        done_us = now_us()
        self.hops.record("write_us", done_us - started_us)
        self._ack(acks)
        if arrived_us is not None:
            self.hops.record("ack_us", done_us - arrived_us)
        self.counters["writes"] += 1

    def _keep(self, batch: Batch) -> bool:
        """Make the batch durable somewhere; False if nowhere can take it now."""
        if not len(batch):
            return True
        if self._schema_ready and self.spool.depth == 0:
            try:
                self._write(batch)
                self._clear("database-unreachable")
                self._clear("spool-full")  # written straight through: the spool has drained
                return True
            except StoreUnavailableError as exc:
                self._alarm("database-unreachable", str(exc))
        try:
            self.spool.put(batch)
            self._clear("spool-full")
            self.counters["spooled_batches"] += 1
            return True
        except SpoolFullError as exc:
            self._alarm("spool-full", str(exc))
            return False

    def _catch_up(self) -> None:
        """Replay the spool into the database (oldest first), then retry held batches.

        In that order: batches are held only when the spool is full, and they can be
        kept only once the spool has drained (or has room again). Retrying them first
        would wait forever on a full spool that only this replay can empty.
        """
        self._replay_spool()
        while self._held:
            batch, acks = self._held[0]
            if not self._keep(batch):
                return
            self._held.pop(0)
            self._ack(acks)

    def _replay_spool(self) -> None:
        if not self._schema_ready:
            self._prepare_store(restore=False)
            if not self._schema_ready:
                return
        while (entry := self.spool.oldest()) is not None:
            path, batch = entry
            try:
                self._write(batch)
            except StoreUnavailableError as exc:
                self._alarm("database-unreachable", str(exc))
                return
            self.spool.done(path)
            self.counters["replayed_batches"] += 1
        self._clear("database-unreachable")

    def _write(self, batch: Batch) -> None:
        """Write a batch durably; StoreUnavailableError if the database cannot be reached.

        Records are bounded at the edge to what both stores' columns hold, so the
        database has no reason to refuse one. Should it refuse a batch all the same (a
        constraint added to the schema, a fault of ours), the batch is written in halves,
        and halves of those, until only the records it refuses are left: those are set
        aside (`batch-refused`), and every other record of the batch is kept. A redelivery
        or a replay of the same batch does the same, so no record can hold others back.
        (Past REFUSED_RECORDS_MAX refusals in one batch the fault is the database's, not
        a record's: the rest is set aside whole rather than split further.)
        """
        refused: list[tuple[str, object]] = []
        errors: list[StoreError] = []

        def write(records: list[tuple[str, object]]) -> None:
            try:
                self.store.write(_batch_of(records))
            except StoreUnavailableError:
                raise
            except StoreError as exc:
                errors.append(exc)
                if len(records) == 1 or len(refused) >= REFUSED_RECORDS_MAX:
                    refused.extend(records)
                    return
                middle = len(records) // 2
                write(records[:middle])
                write(records[middle:])

        write(_records(batch))
        if refused:
            self._refuse(_batch_of(refused), errors[-1])

    def _refuse(self, batch: Batch, exc: Exception) -> None:
        """Records the database rejects (not unreachable): keep them aside for an operator."""
        folder = Path(self.settings.spool) / "refused"
        folder.mkdir(parents=True, exist_ok=True)
        self.counters["refused_batches"] += 1
        self.counters["refused_records"] += len(batch)
        name = f"{self.clock_ms()}-{self.counters['refused_batches']}.batch"
        (folder / name).write_bytes(pickle.dumps(batch))
        self._alarm("batch-refused", f"{len(batch)} record(s) set aside in {folder}: {exc}")

    def _ack(self, acks: list[tuple[int, int]]) -> None:
        for mid, qos in acks:
            if qos > 0:
                self.client.ack(mid, qos)

    def _alarm(self, name: str, detail: str) -> None:
        if name not in self.alarms:
            log.error("ALARM %s: %s", name, detail)
            self.alarms.add(name)
            # a status at once, not at the next periodic one: an alarm that starts and
            # ends between two of them would otherwise never reach an operator
            self._health_due = True

    def _clear(self, name: str) -> None:
        if name in self.alarms:
            log.warning("alarm cleared: %s", name)
            self.alarms.discard(name)
            self._health_due = True


def _records(batch: Batch) -> list[tuple[str, object]]:
    """A batch as (kind, record) pairs, to be split."""
    return [
        (kind, record)
        for kind in ("fixes", "events", "alerts", "dead_letters", "device_alarms")
        for record in getattr(batch, kind)
    ]


def _batch_of(records: list[tuple[str, object]]) -> Batch:
    batch = Batch()
    for kind, record in records:
        getattr(batch, kind).append(record)
    return batch
