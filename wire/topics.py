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


#: What a share group name may hold (MQTT forbids "/", "+" and "#" in one).
_SHARE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def device_filters(pattern: str) -> list[str]:
    """The topic filters (one per kind) of a `supplier/device` pattern MQTT can express.

    `*` is every device, `acme/*` a supplier's devices, `*/ac-1` a device name of any
    supplier, `acme/ac-1` one device. A glob a topic filter cannot say (`acme/ac-01*`,
    `a?me/*`) raises ValueError: a sharded worker subscribes only to its own devices.
    """
    parts = ["*", "*"] if pattern == "*" else pattern.split("/")
    if len(parts) != 2 or not all(p == "*" or valid_name(p) for p in parts):
        raise ValueError(
            f"device pattern {pattern!r} cannot be an MQTT topic filter: use *, SUPPLIER/*, "
            "*/DEVICE or SUPPLIER/DEVICE (names of letters, digits, '.', '-' and '_')"
        )
    supplier, device = ("+" if p == "*" else p for p in parts)
    return [f"{PREFIX}/{supplier}/{device}/{kind}" for kind in KINDS]


def patterns_overlap(a: str, b: str) -> bool:
    """Whether two expressible `supplier/device` patterns can match the same device."""
    pa = ["*", "*"] if a == "*" else a.split("/")
    pb = ["*", "*"] if b == "*" else b.split("/")
    return all(x == "*" or y == "*" or x == y for x, y in zip(pa, pb, strict=True))


def share_name(group: str | None, site_id: str) -> str:
    """The shared-subscription group that shares one site's work: `site-ID`, or, within a
    named fleet, `GROUP-site-ID` (every worker of a fleet must name the same one)."""
    name = f"{group}-site-{site_id}" if group else f"site-{site_id}"
    if not _SHARE_NAME.fullmatch(name):
        raise ValueError(f"share group {name!r}: letters, digits, '.', '-' and '_' only")
    return name


def shared(group: str, filters: list[str]) -> list[str]:
    """`filters` as an MQTT v5 shared subscription of `group`."""
    return [f"$share/{group}/{f}" for f in filters]
