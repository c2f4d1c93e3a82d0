"""The bare floor the ingest benchmarks compare against: plain paho clients, same broker.

python -m benchmarks.mqtt_peers echo PORT      republish every fix to its alert topic
python -m benchmarks.mqtt_peers count PORT N   acknowledge and count N fixes, print the rate
python -m benchmarks.mqtt_peers publish PORT FIRST N DEVICES RATE
    publish N native fixes (seq FIRST…), from DEVICES devices, at RATE a second (0: flat out)
"""

from __future__ import annotations

import socket
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ingest.v5_decoding import LeanV5Decoding


class Client(mqtt.Client):
    """A plain paho client with Nagle's algorithm off, as the worker's is (ingest/network.py).

    paho leaves it on, and then a small packet can wait tens of milliseconds for a delayed
    TCP acknowledgement: the floor the worker is measured against, and the devices and
    listener that measure it, must not carry that timer either.
    """

    def _create_socket_connection(self) -> socket.socket:
        sock = super()._create_socket_connection()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


class HarnessClient(LeanV5Decoding, Client):
    """The load generator's and the listeners' client: it reads plain MQTT 5 packets
    without rebuilding paho's tables for each (ingest/v5_decoding.py), as the worker does.

    They share the machine's two cores with the broker and the worker (or the echo), so
    what they spend on paho's tables is taken from what they measure. The peers
    themselves (`echo`, `count`) stay plain paho: the floor the worker is held to.
    """


def echo(port: int) -> None:
    client = Client(CallbackAPIVersion.VERSION2, client_id="bench-echo", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)

    def on_message(c, u, m):
        c.publish(m.topic.rsplit("/", 1)[0] + "/alert", m.payload, qos=1)

    client.on_message = on_message
    client.on_connect = lambda c, u, f, r, p: c.subscribe("trackside/v1/+/+/fix", qos=1)
    client.connect("127.0.0.1", port)
    client.loop_forever()


def count(port: int, expected: int) -> None:
    seen = 0
    first = last = 0.0
    done = threading.Event()

    def on_message(c, u, m):
        nonlocal seen, first, last
        if seen == 0:
            first = time.perf_counter()
        seen += 1
        c.ack(m.mid, m.qos)
        last = time.perf_counter()
        if seen >= expected:
            done.set()

    client = Client(
        CallbackAPIVersion.VERSION2, client_id="bench-count", protocol=mqtt.MQTTv5, manual_ack=True
    )
    client.on_message = on_message
    client.on_connect = lambda c, u, f, r, p: c.subscribe("trackside/v1/+/+/fix", qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    print("ready", flush=True)
    done.wait(300)
    print(f"{seen} {seen / max(last - first, 1e-9):.0f}", flush=True)
    client.loop_stop()


#: ETRS89 positions on the ECM1 example site: in the Down-side cess (safe), and in the
#: six-foot beside the open Up Fast (inside its danger zone).
SAFE_POSITION = (51.5577058, -0.1087803)  # 1.5 m inside the safe zone
DANGER_POSITION = (51.5577196, -0.1088520)  # 1.6 m into the Up Fast danger zone


MAX_UNACKNOWLEDGED = 50_000
#: Flat out, the generator reads its PUBACKs once every this many publishes.
FLAT_OUT_READ_EVERY = 64


def publish(
    port: int, first: int, n: int, devices: int, rate: float, alternate: bool = False
) -> None:
    """A load generator: native fixes on the ECM1 example site, stamped now, QoS 1."""
    import json

    client = HarnessClient(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)  # larger windows slow paho's own bookkeeping
    # MQTT packet ids are 16-bit, so at most 65,535 messages can await their PUBACK; past
    # a smaller window the generator waits (the broker's back-pressure lowers the offered
    # rate, which is printed) instead of failing on a packet id still in use.
    acknowledged = 0

    def on_publish(c, u, mid, rc, p) -> None:
        nonlocal acknowledged
        acknowledged += 1

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    # One thread drives the socket: each fix is written out inside publish(), as it is
    # stamped, and the PUBACKs are read while waiting for the next one's time. With paho's
    # own network thread every publish would wake it and wait for the interpreter lock:
    # the generator's own delay would be counted in the round trip.
    while not client.is_connected():
        client.loop(0.1)
    start = time.perf_counter()
    sent: dict[tuple[str, int], int] = {}
    for i in range(n):
        seq = first + i
        device = f"load{seq % devices}"
        # with `alternate`, every other fix of each device is in the open line's danger zone
        lat, lon = DANGER_POSITION if alternate and (seq // devices) % 2 else SAFE_POSITION
        while i - acknowledged >= MAX_UNACKNOWLEDGED:
            client.loop(0.01)
        now_ns = time.time_ns()
        payload = json.dumps(
            {
                "device": device,
                "seq": seq,
                "time_ms": now_ns // 1_000_000 - 5,
                "lat": lat,
                "lon": lon,
                "accuracy_m": 0.1,
                "fix_type": "RTK fixed",
                "satellites": 20,
                "hdop": 0.7,
                "battery_pct": 90,
                "firmware": "1.0",
            }
        )
        client.publish(f"trackside/v1/bench/{device}/fix", payload, qos=1)
        sent[(device, seq)] = now_ns
        if rate <= 0:  # flat out: read the PUBACKs now and then, without waiting
            if i % FLAT_OUT_READ_EVERY == 0:
                client.loop(0.0)
            continue
        while True:
            ahead = (i + 1) / rate - (time.perf_counter() - start)
            client.loop(max(ahead, 0.0))  # reads what came meanwhile; 0: without waiting
            if ahead <= 0:
                break
    deadline = time.monotonic() + 300
    while acknowledged < n and time.monotonic() < deadline:
        client.loop(0.05)
    elapsed = time.perf_counter() - start
    print(f"{n} {n / elapsed:.0f}", flush=True)
    if alternate:
        print(json.dumps([[d, s, t] for (d, s), t in sent.items()]), flush=True)
    client.disconnect()
    client.loop(0.1)


if __name__ == "__main__":
    if sys.argv[1] == "echo":
        echo(int(sys.argv[2]))
    elif sys.argv[1] == "count":
        count(int(sys.argv[2]), int(sys.argv[3]))
    else:
        publish(
            *(int(a) for a in sys.argv[2:6]), float(sys.argv[6]), sys.argv[7:8] == ["alternate"]
        )
