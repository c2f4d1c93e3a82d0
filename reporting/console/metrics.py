"""Prometheus /metrics: the fix rate, decision latency, dead letters by reason, device
states, and each ingest worker's health (up, spool depth, alarms).

The store answers for what was kept; the workers answer for themselves over MQTT
(a retained status message each, and a last will that marks one offline), so a
worker's spool depth and its database-unreachable alarm are seen precisely when
the database cannot be asked.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Annotated
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from paho.mqtt.enums import CallbackAPIVersion

from reporting.console.auth import Principal, Role
from reporting.console.deps import allow
from reporting.console.devices import overview

router = APIRouter(tags=["operations"])

HEALTH_TOPICS = "trackfence/v1/ingest/+/status"
#: Fix rate and decision latency are over this last stretch of time.
WINDOW_MS = 60_000


class IngestHealth:
    """The latest status each ingest worker published (retained, so known at once)."""

    def __init__(
        self,
        broker_url: str,
        username: str | None = None,
        password: str | None = None,
        tls_ca: str | None = None,
    ):
        parsed = urlparse(broker_url)
        tls = parsed.scheme == "mqtts"
        self.workers: dict[str, dict] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, *_: c.subscribe(HEALTH_TOPICS, qos=1)
        self.client.on_message = self._on_message
        if tls:
            self.client.tls_set(ca_certs=tls_ca)
        self.client.connect_async(parsed.hostname, parsed.port or (8883 if tls else 1883))

    def _on_message(self, client, userdata, message) -> None:
        try:
            status = json.loads(message.payload)
            worker = str(status["client_id"])
        except (ValueError, KeyError, TypeError):
            return  # not ours to judge here; the topic is the workers' own
        with self._lock:
            self.workers[worker] = status

    def snapshot(self) -> dict[str, dict]:
        with self._lock:
            return dict(self.workers)

    def start(self) -> None:
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _label(value: object) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def _metric(lines: list[str], name: str, kind: str, help_text: str, samples) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        inner = ",".join(f"{k}={_label(v)}" for k, v in labels.items())
        lines.append(f"{name}{{{inner}}} {value}" if inner else f"{name} {value}")


Observer = Annotated[Principal, Depends(allow(Role.VIEWER, Role.OPERATOR, Role.ADMIN))]


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics (viewer, operator, admin: they span every supplier)",
)
def metrics(request: Request, who: Observer) -> str:
    store = request.app.state.store
    now_ms = time.time_ns() // 1_000_000
    count, p50, p95 = store.recent_decisions(now_ms - WINDOW_MS)
    lines: list[str] = []
    _metric(
        lines,
        "trackfence_fixes_per_second",
        "gauge",
        "Fixes stored over the last minute, per second.",
        [({}, round(count / (WINDOW_MS / 1000), 3))],
    )
    _metric(
        lines,
        "trackfence_decision_latency_ms",
        "summary",
        "Receive to decision over the last minute, milliseconds.",
        [({"quantile": q}, v) for q, v in (("0.5", p50), ("0.95", p95)) if v is not None],
    )
    _metric(
        lines,
        "trackfence_dead_letters",
        "gauge",
        "Payloads that could not be decoded or validated, kept with their reason.",
        [({"reason": r}, n) for r, n in sorted(store.dead_letter_counts().items())],
    )
    states: dict[str, int] = {}
    for d in overview(request, store, who, None):
        states[d.state] = states.get(d.state, 0) + 1
    _metric(
        lines,
        "trackfence_devices",
        "gauge",
        "Devices by state (LOST: silent too long).",
        [({"state": s}, n) for s, n in sorted(states.items())],
    )
    health = request.app.state.ingest_health
    workers = health.snapshot() if health is not None else {}
    _metric(
        lines,
        "trackfence_ingest_up",
        "gauge",
        "1 while an ingest worker is online.",
        [({"worker": w}, int(bool(s.get("online")))) for w, s in sorted(workers.items())],
    )
    _metric(
        lines,
        "trackfence_ingest_spool_depth",
        "gauge",
        "Batches an ingest worker holds on disk while the database is away.",
        [
            ({"worker": w}, s.get("spool_depth", 0))
            for w, s in sorted(workers.items())
            if s.get("online")
        ],
    )
    _metric(
        lines,
        "trackfence_ingest_fix_age_ms",
        "gauge",
        "Median across devices of how old their fixes are on reaching a worker: a backlog.",
        [
            ({"worker": w}, s["fix_age_median_ms"])
            for w, s in sorted(workers.items())
            if s.get("online") and s.get("fix_age_median_ms") is not None
        ],
    )
    _metric(
        lines,
        "trackfence_ingest_alarm",
        "gauge",
        "1 for each alarm a worker has raised.",
        [
            ({"worker": w, "alarm": a}, 1)
            for w, s in sorted(workers.items())
            for a in s.get("alarms", [])
        ],
    )
    return "\n".join(lines) + "\n"
