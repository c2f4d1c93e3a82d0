"""The shipped Mosquitto config keeps the no-loss promise the ingest service relies on."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class Subscriber:
    """A persistent MQTT v5 session that records what it receives."""

    def __init__(self, port: int, client_id: str, topic: str, manual_ack: bool = False) -> None:
        self.port, self.client_id, self.topic = port, client_id, topic
        self.received: list[bytes] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
        self.client.on_message = lambda c, u, m: self.received.append(m.payload)
        self.client.on_subscribe = lambda *a: self.subscribed.set()

    def connect(self, subscribe: bool = True) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", self.port, clean_start=False, properties=props)
        self.client.loop_start()
        if subscribe:
            self.client.subscribe(self.topic, qos=1)
            assert self.subscribed.wait(5)

    def drop(self) -> None:
        """Vanish without a clean goodbye, like a killed process."""
        self.client.loop_stop()
        self.client.socket().close()

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish(port: int, topic: str, payloads: list[bytes]) -> None:
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    infos = [pub.publish(topic, p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()


def wait_until(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_queued_fixes_survive_a_broker_restart(mosquitto):
    topic = "trackside/v1/acme/dev1/fix"
    sub = Subscriber(mosquitto.port, "ingest-restart-test", topic)
    sub.connect()
    sub.disconnect()  # the ingest worker is down...
    payloads = [f'{{"seq": {i}}}'.encode() for i in range(500)]
    publish(mosquitto.port, topic, payloads)  # ...while devices keep publishing
    mosquitto.restart()  # and the broker restarts too
    sub = Subscriber(mosquitto.port, "ingest-restart-test", topic)
    sub.connect(subscribe=False)
    assert wait_until(lambda: len(sub.received) >= 500)
    assert sub.received == payloads
    sub.disconnect()


def test_an_unacknowledged_message_is_redelivered_after_a_crash(mosquitto):
    topic = "trackside/v1/acme/dev2/fix"
    sub = Subscriber(mosquitto.port, "ingest-ack-test", topic, manual_ack=True)
    sub.connect()
    publish(mosquitto.port, topic, [b"written-then-crashed"])
    assert wait_until(lambda: sub.received == [b"written-then-crashed"])
    sub.drop()  # crashed before the durable write, so never acknowledged
    again = Subscriber(mosquitto.port, "ingest-ack-test", topic, manual_ack=True)
    again.client.on_message = lambda c, u, m: (
        again.received.append(m.payload),
        c.ack(m.mid, m.qos),
    )
    again.connect(subscribe=False)
    assert wait_until(lambda: again.received == [b"written-then-crashed"])
    again.disconnect()
