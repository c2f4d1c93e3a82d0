"""The MQTT topic layout, in one place.

trackside/v1/{supplier}/{device}/fix      position fixes (native JSON, OwnTracks, NMEA)
trackside/v1/{supplier}/{device}/rfid     RFID reads (reader id + tag id)
trackside/v1/{supplier}/{device}/status   battery, firmware, online/offline (last will)
trackside/v1/{supplier}/{device}/alarm    the device's own alarm (its supplier's decision)
trackside/v1/{supplier}/{device}/alert    alerts back to the device (QoS 1)
trackside/v1/_deadletter                  every payload that could not be used, with why
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "trackside/v1"
DEAD_LETTER_TOPIC = f"{PREFIX}/_deadletter"
KINDS = ("fix", "rfid", "status", "alarm")
#: Supplier and device names: letters, digits, dot, dash and underscore (no MQTT wildcards).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class DeviceTopic:
    supplier: str
    device: str
    kind: str  # fix, rfid, status, alarm

    @property
    def device_id(self) -> str:
        return f"{self.supplier}/{self.device}"


def valid_name(name: object) -> bool:
    """Whether `name` may be a supplier or device name (as a topic carries it)."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def parse(topic: str) -> DeviceTopic | None:
    """The supplier, device and kind of an inbound topic, or None if it is not one of ours."""
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != PREFIX or parts[4] not in KINDS:
        return None
    if not (valid_name(parts[2]) and valid_name(parts[3])):  # (fullmatch: no trailing newline)
        return None
    return DeviceTopic(parts[2], parts[3], parts[4])


def alert_topic(supplier: str, device: str) -> str:
    return f"{PREFIX}/{supplier}/{device}/alert"


def subscriptions(shared_group: str | None = None) -> list[str]:
    """What an ingest worker subscribes to; with a group, as an MQTT v5 shared subscription."""
    filters = [f"{PREFIX}/+/+/{kind}" for kind in KINDS]
    if shared_group:
        return [f"$share/{shared_group}/{f}" for f in filters]
    return filters
