"""The lean MQTT 5 reading hands over what paho's own reading would, packet by packet."""

from __future__ import annotations

import copy
import pickle
import struct

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.network import NetworkLoop, ReadAheadClient
from ingest.v5_decoding import LeanV5Decoding
from tests.devices import Publisher
from tests.test_network import run_until


class Lean(LeanV5Decoding, mqtt.Client):
    pass


def _publish_body(topic: bytes, payload: bytes, qos: int, mid: int, props: bytes) -> bytes:
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    return body + props + payload


def _properties(**values) -> bytes:
    props = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(props, name, value)
    return props.pack()


def _read(client_class, protocol, header: int, body: bytes, manual_ack: bool):
    """What the client hands its callbacks for one received packet, and what it queues."""
    client = client_class(
        CallbackAPIVersion.VERSION2, client_id="t", protocol=protocol, manual_ack=manual_ack
    )
    seen: list = []
    client.on_message = lambda c, u, m: seen.append(m)
    client.on_publish = lambda c, u, mid, reason, props: seen.append((mid, reason, props))
    client.publish("out/alert", b"x", qos=1)  # not connected: kept as mid 1, awaiting PUBACK
    queued_before = len(client._out_packet)
    client._in_packet = {"command": header, "packet": body}
    try:
        rc = client._packet_handle()
    except Exception as exc:  # paho raises on a malformed packet: the connection ends
        rc = type(exc)
    return rc, seen, len(client._out_packet) - queued_before


def _same_message(a: mqtt.MQTTMessage, b: mqtt.MQTTMessage) -> None:
    for name in ("mid", "dup", "qos", "retain", "payload", "_topic"):
        assert getattr(a, name) == getattr(b, name), name
    assert type(a.payload) is type(b.payload)
    assert a.properties.packetType == b.properties.packetType
    assert a.properties.json() == b.properties.json()
    assert str(a.properties) == str(b.properties)
    assert a.properties.isEmpty() == b.properties.isEmpty()


PUBLISHES = [
    # (header, body): QoS 0 and 1, retained and duplicate, empty and large payloads
    (0x30, _publish_body(b"trackside/v1/a/d1/fix", b'{"seq":1}', 0, 0, b"\x00")),
    (0x32, _publish_body(b"trackside/v1/a/d1/fix", b'{"seq":2}', 1, 7, b"\x00")),
    (0x3B, _publish_body(b"t", b"", 1, 65535, b"\x00")),
    (0x32, _publish_body(b"t/\xc3\xa9", b"\x00" * 70_000, 1, 1, b"\x00")),
    (0x32, _publish_body(b"t/\xff", b"p", 1, 2, b"\x00")),  # a topic that is not UTF-8
    # with properties: left to paho's own reading
    (0x32, _publish_body(b"t", b"p", 1, 3, _properties(SubscriptionIdentifier=5))),
    (0x32, _publish_body(b"t", b"p", 1, 4, _properties(UserProperty=[("k", "v")]))),
    (0x30, _publish_body(b"t", b"p", 0, 0, _properties(MessageExpiryInterval=30))),
]


@pytest.mark.parametrize("header,body", PUBLISHES)
@pytest.mark.parametrize("manual_ack", [True, False])
def test_a_publish_is_handed_over_as_paho_would(header, body, manual_ack):
    ours = _read(Lean, mqtt.MQTTv5, header, body, manual_ack)
    paho = _read(mqtt.Client, mqtt.MQTTv5, header, body, manual_ack)
    assert ours[0] == paho[0]
    assert ours[2] == paho[2]  # a PUBACK queued exactly when paho queues one
    assert len(ours[1]) == len(paho[1]) == 1
    _same_message(ours[1][0], paho[1][0])


@pytest.mark.parametrize("header,body", PUBLISHES)
def test_a_publish_is_logged_as_paho_logs_it(header, body):
    logged: dict[type, list[str]] = {Lean: [], mqtt.Client: []}
    for client_class, logs in logged.items():
        client = client_class(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5,
                              manual_ack=True)  # fmt: skip
        client.on_log = lambda c, u, level, text, logs=logs: logs.append(text)
        client._in_packet = {"command": header, "packet": body}
        client._packet_handle()
    assert logged[Lean] == logged[mqtt.Client] != []


def test_a_reason_code_handed_over_pickles_and_copies_as_paho_s():
    _, seen, _ = _read(Lean, mqtt.MQTTv5, 0x40, b"\x00\x01\x10", True)
    reason = seen[0][1]
    for copied in (pickle.loads(pickle.dumps(reason)), copy.deepcopy(reason), copy.copy(reason)):
        assert copied == reason and copied.getName() == "No matching subscribers"
        assert copied.packetType == PacketTypes.PUBACK


def test_properties_a_publish_carries_still_reach_the_callback():
    body = _publish_body(b"t", b"p", 1, 3, _properties(SubscriptionIdentifier=5))
    _, seen, _ = _read(Lean, mqtt.MQTTv5, 0x32, body, True)
    assert seen[0].properties.SubscriptionIdentifier == [5]


@pytest.mark.parametrize(
    "header,body",
    [
        (0x32, b"\x00"),  # shorter than a topic length
        (0x32, b"\x00\x09abc"),  # a topic longer than the packet
        (0x32, b"\x00\x01t\x00"),  # QoS 1 with no room for its properties
        (0x36, _publish_body(b"t", b"p", 1, 5, b"\x00")),  # QoS 3: a protocol error
    ],
)
def test_a_malformed_publish_fails_as_it_does_in_paho(header, body):
    ours = _read(Lean, mqtt.MQTTv5, header, body, True)
    paho = _read(mqtt.Client, mqtt.MQTTv5, header, body, True)
    assert ours[0] == paho[0] != mqtt.MQTT_ERR_SUCCESS
    assert ours[1] == paho[1] == []


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x01",  # success, no reason code: Mosquitto's usual PUBACK
        b"\x00\x01\x10",  # "No matching subscribers"
        b"\x00\x01\x87",  # "Not authorized"
        b"\x00\x01\x9b",  # "Quota exceeded"
        b"\x00\x01\x02",  # not a PUBACK's reason code: paho says so
        b"\x00\x01\x00\x00",  # a reason code and empty properties
        b"\x00\x02",  # a mid that is not awaited: no callback
    ],
)
def test_a_puback_is_handed_over_as_paho_would(body):
    ours = _read(Lean, mqtt.MQTTv5, 0x40, body, True)
    paho = _read(mqtt.Client, mqtt.MQTTv5, 0x40, body, True)
    assert ours[0] == paho[0]
    assert len(ours[1]) == len(paho[1])
    for (mid, reason, props), (mid_p, reason_p, props_p) in zip(ours[1], paho[1], strict=True):
        assert mid == mid_p
        assert reason == reason_p and reason.value == reason_p.value
        assert reason.getName() == reason_p.getName() and str(reason) == str(reason_p)
        assert reason.packetType == reason_p.packetType
        assert reason.is_failure == reason_p.is_failure
        assert props.packetType == props_p.packetType and props.json() == props_p.json()


def test_mqtt_311_is_left_to_paho():
    body = _publish_body(b"t", b"p", 1, 9, b"")
    ours = _read(Lean, mqtt.MQTTv311, 0x32, body, True)
    paho = _read(mqtt.Client, mqtt.MQTTv311, 0x32, body, True)
    assert ours[1][0].properties is paho[1][0].properties is None
    assert ours[1][0].payload == paho[1][0].payload == b"p"


def test_an_empty_properties_handed_over_is_its_own():
    """Each message's properties are a fresh object: setting one changes no other, nor
    the tables paho builds its next Properties from."""
    _, first, _ = _read(Lean, mqtt.MQTTv5, *PUBLISHES[1], True)
    _, second, _ = _read(Lean, mqtt.MQTTv5, *PUBLISHES[1], True)
    first[0].properties.UserProperty = ("k", "v")
    assert second[0].properties.isEmpty()
    assert Properties(PacketTypes.PUBLISH).isEmpty()


def test_through_a_real_broker_plain_and_propertied_messages_arrive_alike(mosquitto):
    received: list[mqtt.MQTTMessage] = []
    client = ReadAheadClient(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: received.append(m)
    client.on_connect = lambda c, u, f, r, p: c.subscribe("lean/#", qos=1)
    client.connect_async("127.0.0.1", mosquitto.port)
    network = NetworkLoop(client, min_delay_s=0.2, max_delay_s=0.5)
    assert run_until(network, lambda: client.is_connected(), 5)
    run_until(network, lambda: False, 0.3)  # the SUBACK
    publisher = Publisher(mosquitto.port)
    plain = publisher.send("lean/a", b"plain")
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = ("supplier", "a")
    propertied = publisher.client.publish("lean/b", b"propertied", qos=1, properties=props)
    plain.wait_for_publish(5)
    propertied.wait_for_publish(5)
    publisher.close()
    assert run_until(network, lambda: len(received) == 2, 5)
    by_topic = {m.topic: m for m in received}
    assert by_topic["lean/a"].payload == b"plain" and by_topic["lean/a"].properties.isEmpty()
    assert by_topic["lean/b"].properties.UserProperty == [("supplier", "a")]
    client.disconnect()
    network.flush()
