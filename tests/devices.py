"""Test-side device helpers: where a point on the example site is, and how devices say it."""

from __future__ import annotations

import json
import time

import numpy as np
import paho.mqtt.client as mqtt
import shapely
from paho.mqtt.enums import CallbackAPIVersion


def site_latlon(site, along_m: float, lateral_m: float) -> tuple[float, float]:
    """ETRS89 lat/lon `along_m` down the site's first line, `lateral_m` to its left."""
    line = shapely.LineString(site.lines[0].centreline_m)
    p = shapely.line_interpolate_point(line, along_m)
    q = shapely.line_interpolate_point(line, along_m + 0.5)
    t = np.array([q.x - p.x, q.y - p.y])
    t /= np.linalg.norm(t)
    x, y = p.x - t[1] * lateral_m, p.y + t[0] * lateral_m
    lat, lon = site.frame.to_etrs89(np.array([x]), np.array([y]))
    return float(lat[0]), float(lon[0])


def native(device: str, seq: int, t_ms: int, lat: float, lon: float, acc: float = 0.3) -> bytes:
    return json.dumps(
        {
            "device": device,
            "seq": seq,
            "time_ms": t_ms,
            "lat": lat,
            "lon": lon,
            "accuracy_m": acc,
            "fix_type": "RTK fixed",
            "satellites": 20,
            "hdop": 0.7,
            "battery_pct": 90,
            "firmware": "1.0",
        }
    ).encode()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Publisher:
    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes, qos: int = 1):
        return self.client.publish(topic, payload, qos=qos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Listener:
    """Collects messages on a topic filter."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes, int]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, m.payload, now_ms())
        )
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        time.sleep(0.2)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(condition, timeout_s: float = 15.0, every_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every_s)
    return bool(condition())
