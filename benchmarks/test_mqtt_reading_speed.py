"""Reading the worker's two packets per fix: ours (ingest/v5_decoding.py) beside paho's.

Per fix the worker reads one MQTT 5 PUBLISH (the fix, QoS 1, no properties) and one
PUBACK (the broker's acknowledgement of its alert, two bytes). Each is handed to the
client as it came off the socket, from paho's packet dispatch (`_packet_handle`) to
the callback, once through `LeanV5Decoding` and once through paho's own reading (the
peer), in the same run. Target: ours at least 2× faster on each, which is what takes
the tables' cost off every fix.
"""

from __future__ import annotations

import json
import struct

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.conftest import NOTES
from ingest.v5_decoding import LeanV5Decoding

TOPIC = b"trackside/v1/bench/load17/fix"
PAYLOAD = json.dumps(
    {"device": "load17", "seq": 170, "time_ms": 1_780_000_000_000, "lat": 51.5577058,
     "lon": -0.1087803, "accuracy_m": 0.1, "fix_type": "RTK fixed", "satellites": 20,
     "hdop": 0.7, "battery_pct": 90, "firmware": "1.0"}
).encode()  # fmt: skip
PUBLISH = struct.pack("!H", len(TOPIC)) + TOPIC + struct.pack("!H", 7) + b"\x00" + PAYLOAD
PUBACK = b"\x00\x01"
PACKETS = 20_000
TIMES: dict[tuple[str, str], float] = {}


class _Lean(LeanV5Decoding, mqtt.Client):
    pass


def _client(lean: bool) -> mqtt.Client:
    client = (_Lean if lean else mqtt.Client)(
        CallbackAPIVersion.VERSION2, client_id="bench", protocol=mqtt.MQTTv5, manual_ack=True
    )
    client.on_message = lambda c, u, m: None
    client.on_publish = lambda c, u, mid, reason, properties: None
    return client


def _read_publishes(client: mqtt.Client) -> None:
    for _ in range(PACKETS):
        client._in_packet = {"command": 0x32, "packet": PUBLISH}
        client._packet_handle()


def _read_pubacks(client: mqtt.Client, awaiting) -> None:
    messages = client._out_messages
    for _ in range(PACKETS):
        messages[1] = awaiting  # the alert the PUBACK acknowledges, awaiting it again
        awaiting.info._published = False
        client._in_packet = {"command": 0x40, "packet": PUBACK}
        client._packet_handle()


@pytest.mark.parametrize("packet", ["PUBLISH", "PUBACK"])
@pytest.mark.parametrize("reader", ["ours", "paho"])
def test_reading_a_packet(benchmark, packet, reader):
    client = _client(lean=reader == "ours")
    if packet == "PUBLISH":
        benchmark.pedantic(_read_publishes, args=(client,), rounds=5, iterations=1)
    else:
        client.publish("trackside/v1/bench/load17/alert", b"{}", qos=1)  # mid 1, not connected
        awaiting = client._out_messages[1]
        benchmark.pedantic(_read_pubacks, args=(client, awaiting), rounds=5, iterations=1)
    TIMES[(packet, reader)] = benchmark.stats.stats.median / PACKETS * 1e6
    if (packet, "ours") in TIMES and (packet, "paho") in TIMES:
        ours, paho = TIMES[(packet, "ours")], TIMES[(packet, "paho")]
        NOTES[f"mqtt_read_{packet}"] = (
            f"an MQTT 5 {packet} read, dispatch to callback: ours {ours:.1f} µs, "
            f"paho's own {paho:.1f} µs: {paho / ours:.1f}x"
        )
        assert paho / ours >= 2, NOTES[f"mqtt_read_{packet}"]
