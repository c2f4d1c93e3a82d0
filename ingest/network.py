"""One thread owns the MQTT socket: it reads the fixes, decides them and sends the alerts.

paho's `loop_start()` runs the socket on a thread of its own. Every fix then crosses
two thread hand-overs on its way to an alert (network thread → decider → network
thread), and in CPython each hand-over waits for the interpreter lock, which the
decider and the storage writer hold in turn. Measured on this machine at 1,000
fixes/s, those two waits were most of the alert round trip: about 2 ms each at p50,
against 0.3–0.9 ms to decide.

So the decider drives the socket itself, through paho's interface for an external
event loop: it selects, reads (paho calls `on_message` on this same thread), decides,
publishes and writes the alerts out at once, with no hand-over. Other threads (the
storage writer acknowledging what it has kept) still call `publish()`/`ack()`; with a
`on_socket_register_write` callback set, paho only queues their packets and wakes the
select, so this thread alone ever touches the socket.

This thread also reconnects, with a growing delay, and keeps paho's keepalive going.

Writing: paho leaves Nagle's algorithm on, so a small packet (an alert) is held in the
kernel while an earlier one (an acknowledgement) awaits the broker's TCP acknowledgement,
which the broker's kernel may delay by tens of milliseconds. `ReadAheadClient` sets
TCP_NODELAY on its socket; the broker's side is `set_tcp_nodelay` in
deploy/mosquitto/mosquitto.conf (README "Speed").

Reading: paho reads each packet with several small `recv()` calls (the command byte, the
length bytes one at a time, then the body). Each is a system call that gives up the
interpreter lock and must win it back, in the thread that decides. `ReadAheadClient`
reads up to 64 KiB at once and hands paho its small reads from memory, and the loop
drains every packet already in memory before it selects again.

Writing, the same the other way: paho sends each queued packet with a `send()` of its
own, so a turn of the loop that publishes an alert and acknowledges a stored batch made
one system call (and one interpreter-lock hand-over, and one TCP segment for the broker
to wake for) per packet. `ReadAheadClient` keeps what paho writes in memory and sends it
in one call when paho's write is done (`loop_write`), so a turn's packets leave together,
in the order paho wrote them. What the kernel will not take yet stays for the next
write; past WRITE_BEHIND_MAX_BYTES paho is told the socket would block and keeps its
packets queued, as it would with a full socket.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from ingest.v5_decoding import LeanV5Decoding

log = logging.getLogger("trackfence.ingest")

READ_AHEAD_BYTES = 65_536
#: Bytes written by paho and not yet taken by the kernel, past which paho is held back.
WRITE_BEHIND_MAX_BYTES = 4 * 1024 * 1024


class ReadAheadClient(LeanV5Decoding, mqtt.Client):
    """A paho client whose socket reads and writes are buffered (see the module docstring),
    and which reads plain MQTT 5 packets without rebuilding paho's tables (v5_decoding).

    Drive it from one thread (`NetworkLoop`): only `loop_write` sends what was written.
    """

    def __init__(self, *args, **kwargs) -> None:
        self._read_ahead = bytearray()
        self._write_behind = bytearray()
        super().__init__(*args, **kwargs)

    def read_ahead_bytes(self) -> int:
        """Bytes read from the socket that paho has not yet taken."""
        return len(self._read_ahead)

    def write_behind_bytes(self) -> int:
        """Bytes paho has written that the kernel has not yet taken."""
        return len(self._write_behind)

    def reconnect(self) -> mqtt.MQTTErrorCode:
        # nothing of an old connection may reach the new one, either way
        self._read_ahead.clear()
        self._write_behind.clear()
        return super().reconnect()

    def want_write(self) -> bool:
        return bool(self._write_behind) or super().want_write()

    def loop_write(self) -> mqtt.MQTTErrorCode:
        """paho writes its queued packets into memory, then they are sent in one call."""
        rc = super().loop_write()
        if rc != mqtt.MQTT_ERR_SUCCESS or self._sock is None:
            return rc
        return self._send_behind()

    def _sock_send(self, buf: bytes | bytearray) -> int:
        if len(self._write_behind) >= WRITE_BEHIND_MAX_BYTES:
            raise BlockingIOError  # paho keeps the packet queued, as on a full socket
        self._write_behind += buf
        return len(buf)

    def _send_behind(self) -> mqtt.MQTTErrorCode:
        """Send what paho has written, as far as the kernel takes it now."""
        while self._write_behind:
            try:
                sent = self._sock.send(self._write_behind)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return mqtt.MQTT_ERR_SUCCESS  # the rest when the socket can take it
            except OSError as exc:
                log.warning("cannot write to the broker: %s", exc)
                return mqtt.MQTT_ERR_CONN_LOST
            del self._write_behind[:sent]
        return mqtt.MQTT_ERR_SUCCESS

    def _sock_close(self) -> None:
        """Send what is written (a DISCONNECT paho has just written closes at once), then close."""
        if self._sock is not None and self._write_behind:
            try:
                self._sock.settimeout(1.0)
                self._sock.sendall(self._write_behind)
            except OSError:
                pass  # the connection is going anyway; what was not acknowledged comes again
        self._write_behind.clear()
        super()._sock_close()

    def _create_socket_connection(self) -> socket.socket:
        sock = super()._create_socket_connection()
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # see the module docstring
        return sock

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._read_ahead:
            data = super()._sock_recv(READ_AHEAD_BYTES)  # BlockingIOError when none waits
            if not data:
                return data  # the broker closed the connection
            self._read_ahead += data
        taken = bytes(self._read_ahead[:bufsize])
        del self._read_ahead[:bufsize]
        return taken


class NetworkLoop:
    """Drives a paho client from the calling thread only (never call `loop_start()` with it)."""

    def __init__(self, client: mqtt.Client, min_delay_s: float = 1.0, max_delay_s: float = 5.0):
        self.client = client
        self.min_delay_s = min_delay_s
        self.max_delay_s = max_delay_s
        self._delay_s = 0.0  # the first attempt is at once
        self._next_attempt = 0.0
        self._up = False  # a socket is open (the CONNACK may still be on its way)
        # Packets queued from other threads are only queued (and the select woken): with
        # no such callback paho would write them out on the calling thread, racing this one.
        client.on_socket_register_write = lambda c, u, s: None

    def poll(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for traffic and handle it; reconnect when it is time."""
        if not self._up:
            self._reconnect(timeout_s)
            return
        rc = self.client.loop(timeout=max(0.0, timeout_s))
        # every packet already read ahead, before selecting again (select cannot see them)
        read_ahead = getattr(self.client, "read_ahead_bytes", lambda: 0)
        while rc == mqtt.MQTT_ERR_SUCCESS and read_ahead():
            rc = self.client.loop_read()
        if rc != mqtt.MQTT_ERR_SUCCESS or self.client.socket() is None:
            self._lost(f"network loop ended: {mqtt.error_string(rc)}")

    def flush(self) -> None:
        """Write out whatever is queued now (the alerts just published), without waiting."""
        if self._up and self.client.want_write():
            rc = self.client.loop_write()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self._lost(f"write failed: {mqtt.error_string(rc)}")

    def _reconnect(self, timeout_s: float) -> None:
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, max(timeout_s, 0.0)))
            return
        try:
            self.client.reconnect()
        except OSError as exc:
            self._lost(f"cannot reach the broker: {exc}")
            return
        self._up = True
        self._delay_s = 0.0

    def _lost(self, why: str) -> None:
        if self._up:
            log.warning("%s; reconnecting", why)
        self._up = False
        self._delay_s = min(self.max_delay_s, max(self.min_delay_s, 2 * self._delay_s))
        self._next_attempt = time.monotonic() + self._delay_s

    def drain(self, until: Callable[[], bool], timeout_s: float) -> bool:
        """Keep the socket going until `until()` holds or the time is up; whether it held."""
        deadline = time.monotonic() + timeout_s
        while not until():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._up:
                return until()
            self.poll(min(remaining, 0.05))
        return True
