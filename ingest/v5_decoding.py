"""Reading MQTT 5 PUBLISH and PUBACK packets without rebuilding paho's tables for each.

paho builds a `Properties` object for every MQTT 5 PUBLISH it reads, and a `ReasonCode`
and a `Properties` for every PUBACK, even when the packet carries none (the usual case:
Mosquitto's PUBACK for a delivered message is two bytes). Each `Properties()` rebuilds
paho's whole table of property names and types (28 entries, a list index per entry)
and each `ReasonCode()` copies its table of ~45 codes. Measured on this machine (paho
2.2, Python 3.11): `Properties()` 6.8 µs, `ReasonCode()` 2.7 µs; decoding a PUBLISH
13.3 µs under MQTT 5 against 2.0 µs under 3.1.1, a PUBACK 11.2 µs. The worker reads
one PUBLISH (the fix) and one PUBACK (for its alert) per fix: about 24 µs of its
CPU per fix went on tables, about half of what deciding the fix costs.

`LeanV5Decoding` reads those two packets, when they carry no properties, into the
same objects paho would hand over (an `MQTTMessage` whose `properties` is an empty
`Properties` of the packet's type; the PUBACK's `ReasonCode`), with their tables shared
rather than rebuilt. Everything else (a packet with properties, MQTT 3.1.1, QoS 2 or
the malformed 3, PUBCOMP) is left to paho's own code. paho never changes either table
once built, so sharing them changes no answer; `tests/test_v5_decoding.py` holds the
objects equal to paho's, packet by packet, and a differential fuzz against paho found
no difference left.

This reaches into paho's packet handlers (`_handle_publish`, `_handle_pubackcomp`), as
`ReadAheadClient` reaches into its socket calls; it is written against paho 2.x, and a
paho without those handlers falls back to its own decoding unchanged.
"""

from __future__ import annotations

import struct

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

_MID = struct.Struct("!H")
_TEMPLATE = Properties(PacketTypes.PUBLISH)  # paho's tables, built once
#: the reason codes a PUBACK may carry
_PUBACK_REASONS = frozenset(
    code for code, names in ReasonCode.names.items()
    if any(PacketTypes.PUBACK in packets for packets in names.values())
)  # fmt: skip


class _SharedTableProperties(Properties):
    """paho's `Properties`, with its (never changed) tables shared, not rebuilt."""

    def __init__(self, packet_type: int) -> None:
        object.__setattr__(self, "packetType", packet_type)
        object.__setattr__(self, "types", _TEMPLATE.types)
        object.__setattr__(self, "names", _TEMPLATE.names)
        object.__setattr__(self, "properties", _TEMPLATE.properties)


class _SharedTableReasonCode(ReasonCode):
    """paho's `ReasonCode` of a packet type, its table of names shared."""

    def __init__(self, packet_type: int, value: int = 0) -> None:
        self.names = ReasonCode.names  # a read-only mapping: nothing can change it
        self.packetType = packet_type
        self.value = value

    def __reduce__(self):
        """Pickled and copied as paho's own (a read-only mapping cannot be pickled)."""
        return ReasonCode, (self.packetType, "Success", self.value)


class LeanV5Decoding(mqtt.Client):
    """A paho client that reads plain MQTT 5 PUBLISH and PUBACK packets without
    rebuilding paho's tables (see the module docstring); mix it in before `Client`."""

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        header = self._in_packet["command"]
        packet = self._in_packet["packet"]
        qos = (header & 0x06) >> 1
        if self._protocol != mqtt.MQTTv5 or qos >= 2 or len(packet) < 2:  # (3: malformed)
            return super()._handle_publish()
        topic_end = 2 + _MID.unpack_from(packet)[0]
        mid_end = topic_end + (2 if qos else 0)
        # the property length is one byte 0 when there are none; else paho reads them
        if len(packet) <= mid_end or packet[mid_end] != 0:
            return super()._handle_publish()
        message = mqtt.MQTTMessage(
            mid=_MID.unpack_from(packet, topic_end)[0] if qos else 0,
            topic=bytes(packet[2:topic_end]),
        )
        message.dup = bool(header & 0x08)
        message.qos = qos
        message.retain = bool(header & 0x01)
        message.properties = _SharedTableProperties(PacketTypes.PUBLISH)
        message.payload = bytes(packet[mid_end + 1 :])
        if self._logger is not None or self.on_log is not None:
            try:
                print_topic = message._topic.decode("utf-8")
            except UnicodeDecodeError:  # as paho logs it
                print_topic = f"TOPIC WITH INVALID UTF-8: {message._topic!r}"
            self._easy_log(
                mqtt.MQTT_LOG_DEBUG,
                "Received PUBLISH (d%d, q%d, r%d, m%d), '%s', properties=%s, ...  (%d bytes)",
                message.dup, message.qos, message.retain, message.mid, print_topic,
                message.properties, len(message.payload),
            )  # fmt: skip
        message.timestamp = mqtt.time_func()
        self._handle_on_message(message)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(message.mid)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_pubackcomp(self, cmd) -> mqtt.MQTTErrorCode:
        packet = self._in_packet["packet"]
        # two bytes: success; three: a reason code (0x10, no matching subscribers, is
        # usual for an alert to a device not listening); more: properties, for paho
        if self._protocol != mqtt.MQTTv5 or cmd != "PUBACK" or len(packet) not in (2, 3):
            return super()._handle_pubackcomp(cmd)
        value = packet[2] if len(packet) == 3 else 0
        if value not in _PUBACK_REASONS:
            return super()._handle_pubackcomp(cmd)  # paho says what is wrong with it
        mid = _MID.unpack_from(packet)[0]
        if self._logger is not None or self.on_log is not None:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received PUBACK (Mid: %d)", mid)
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(
                    mid,
                    _SharedTableReasonCode(PacketTypes.PUBACK, value),
                    _SharedTableProperties(PacketTypes.PUBACK),
                )
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
