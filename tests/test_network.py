"""The decider's own network loop, against a real Mosquitto (no paho thread behind it)."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.network import NetworkLoop, ReadAheadClient
from tests.devices import Publisher


@pytest.fixture
def own_broker(tmp_path):
    """A broker of this test's own: it is restarted."""
    from tests.servers import Mosquitto

    broker = Mosquitto().start()
    yield broker
    broker.close()


def driven_client(port: int, received: list[bytes]):
    client = ReadAheadClient(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: received.append(m.payload)
    client.on_connect = lambda c, u, f, r, p: c.subscribe("burst/#", qos=1)
    client.connect_async("127.0.0.1", port)
    return client, NetworkLoop(client, min_delay_s=0.2, max_delay_s=0.5)


def run_until(network: NetworkLoop, condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        network.poll(0.05)
    return condition()


def test_a_burst_arrives_whole_and_in_order_when_read_ahead(mosquitto):
    """Thousands of packets land in the read-ahead buffer at once; none waits for more traffic."""
    received: list[bytes] = []
    client, network = driven_client(mosquitto.port, received)
    assert run_until(network, lambda: client.is_connected(), 5)
    run_until(network, lambda: False, 0.3)  # the SUBACK
    publisher = Publisher(mosquitto.port)
    infos = [publisher.send("burst/a", str(k).encode()) for k in range(3000)]
    for info in infos:
        info.wait_for_publish(10)
    publisher.close()
    assert run_until(network, lambda: len(received) == 3000, 10)
    assert [int(p) for p in received] == list(range(3000))
    assert client.read_ahead_bytes() == 0
    client.disconnect()
    network.flush()


def test_other_threads_publish_through_the_loop_and_it_reconnects_after_a_broker_restart(
    own_broker,
):
    received: list[bytes] = []
    client, network = driven_client(own_broker.port, received)
    assert run_until(network, lambda: client.is_connected(), 5)
    run_until(network, lambda: False, 0.3)
    # a thread other than the loop's publishes: the loop alone writes it out
    threading.Thread(target=lambda: client.publish("burst/b", b"from-a-thread", qos=1)).start()
    assert run_until(network, lambda: b"from-a-thread" in received, 5)
    own_broker.restart()
    assert run_until(network, lambda: not client.is_connected(), 5)
    assert run_until(network, lambda: client.is_connected(), 10)  # by itself
    run_until(network, lambda: False, 0.3)
    client.publish("burst/c", b"after-restart", qos=1)
    assert run_until(network, lambda: b"after-restart" in received, 5)
    client.disconnect()
    network.flush()


class _CountingSocket:
    """The client's socket, counting its send() calls (everything else passes through)."""

    def __init__(self, sock) -> None:
        self._sock = sock
        self.sends = 0

    def send(self, data) -> int:
        self.sends += 1
        return self._sock.send(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def test_a_turns_packets_leave_in_one_write_whole_and_in_order(mosquitto, monkeypatch):
    """3,000 publishes queued in one turn go out in a few send() calls, not one each; with
    the write-behind bound far below them, paho is held back and still nothing is lost."""
    received: list[bytes] = []
    client, network = driven_client(mosquitto.port, received)
    assert run_until(network, lambda: client.is_connected(), 5)
    run_until(network, lambda: False, 0.3)
    counting = _CountingSocket(client._sock)
    client._sock = counting
    for k in range(3000):
        client.publish("burst/own", str(k).encode(), qos=1)
    network.flush()
    assert 1 <= counting.sends <= 10, f"{counting.sends} send() calls for 3,000 packets"
    assert run_until(network, lambda: len(received) == 3000, 10)
    monkeypatch.setattr("ingest.network.WRITE_BEHIND_MAX_BYTES", 64)
    for k in range(3000, 6000):
        client.publish("burst/own", str(k).encode(), qos=1)
    network.flush()
    assert client.write_behind_bytes() <= 64 + 64  # paho held back, not the buffer grown
    assert run_until(network, lambda: len(received) == 6000, 10)
    assert [int(p) for p in received] == list(range(6000))
    assert client.write_behind_bytes() == 0
    client._sock = counting._sock
    client.disconnect()
    network.flush()


def test_a_clean_goodbye_written_behind_still_reaches_the_broker(mosquitto):
    """paho closes the socket as soon as it has written a DISCONNECT: what is written behind
    must be sent first, or the broker sees a dropped connection and sends the last will."""
    wills: list[bytes] = []
    watcher, watching = driven_client(mosquitto.port, wills)
    assert run_until(watching, lambda: watcher.is_connected(), 5)
    run_until(watching, lambda: False, 0.3)
    leaving, network = driven_client(mosquitto.port, [])
    leaving.will_set("burst/will", b"gone-without-goodbye", qos=1)
    assert run_until(network, lambda: leaving.is_connected(), 5)
    run_until(network, lambda: False, 0.3)
    info = leaving.publish("burst/last", b"last-words", qos=1)
    # as the service leaves: its last PUBACK in first (one arriving after the close would
    # be answered with a reset, and the broker may then send the will whoever wrote)
    assert network.drain(info.is_published, 5)
    leaving.disconnect()
    network.flush()
    assert run_until(watching, lambda: b"last-words" in wills, 5)
    run_until(watching, lambda: False, 1.0)
    assert b"gone-without-goodbye" not in wills
    watcher.disconnect()
    watching.flush()
