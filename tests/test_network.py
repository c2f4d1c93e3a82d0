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
