"""Publishing a simulation over MQTT, as the devices would.

Each simulated device is its own MQTT client with its own last will
(`…/status {"online": false}`), so a device that vanishes looks to ingest exactly
as a real one does. Fixes go out in the order the devices sent them, either
time-warped (as fast as the broker takes them: trials) or in real time (a live
demonstration).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices.sim.alarms import OwnAlarms
from devices.sim.generate import Simulation
from wire import nmea
from wire.formats import FORMATS
from wire.topics import PREFIX

#: What a device says on its status topic as it connects (its last will says the opposite).
ONLINE = json.dumps({"online": True}).encode()


@dataclass(frozen=True)
class Published:
    messages: int
    seconds: float


def payload(
    fmt: str,
    device: str,
    seq: int,
    fix_ms: int,
    lat: float,
    lon: float,
    accuracy_m: float,
    fix_type: str,
    firmware: str,
    battery_pct: float = 100.0,
) -> bytes:
    """One fix in a device format (the same fields ingest's codecs read)."""
    if fmt == "native":
        # SBAS is a differential correction: the native protocol calls it DGPS
        native_type = "DGPS" if fix_type == "SBAS" else fix_type
        body = {
            "device": device,
            "seq": seq,
            "time_ms": fix_ms,
            "lat": round(lat, 9),
            "lon": round(lon, 9),
            "accuracy_m": round(accuracy_m, 3),
            "fix_type": native_type,
            "battery_pct": round(battery_pct, 1),
            "firmware": firmware,
        }
        return json.dumps(body).encode()
    if fmt == "owntracks":
        return json.dumps(
            {
                "_type": "location",
                "tst": fix_ms // 1000,
                "lat": round(lat, 9),
                "lon": round(lon, 9),
                "acc": round(accuracy_m, 1),
            }
        ).encode()
    if fmt == "nmea":
        t = time.gmtime(fix_ms // 1000)
        hhmmss = time.strftime("%H%M%S", t) + f".{(fix_ms % 1000) // 10:02d}"
        ddmmyy = time.strftime("%d%m%y", t)

        def dm(value: float, width: int) -> str:
            deg = int(abs(value))
            return f"{deg:0{width}d}{(abs(value) - deg) * 60:08.5f}"

        ns, ew = ("N" if lat >= 0 else "S"), ("E" if lon >= 0 else "W")
        quality = {"RTK fixed": 4, "RTK float": 5, "DGPS": 2, "SBAS": 2}.get(fix_type, 1)
        gga = nmea.sentence(
            f"GNGGA,{hhmmss},{dm(lat, 2)},{ns},{dm(lon, 3)},{ew},{quality},18,0.7,20.0,M,45.0,M,,"
        )
        rmc = nmea.sentence(
            f"GNRMC,{hhmmss},A,{dm(lat, 2)},{ns},{dm(lon, 3)},{ew},0.0,,{ddmmyy},,,A"
        )
        gst = nmea.sentence(
            f"GNGST,{hhmmss},1.0,{accuracy_m:.3f},{accuracy_m:.3f},0.0,"
            f"{accuracy_m:.3f},{accuracy_m:.3f},1.0"
        )
        return f"{gga}\r\n{rmc}\r\n{gst}\r\n".encode()
    raise ValueError(f"unknown device format {fmt!r} (one of {', '.join(FORMATS)})")


def alarm_payload(seq: int, alarm_ms: int, kind: str, lat: float, lon: float) -> bytes:
    """A device's own alarm as it reports it on `…/{device}/alarm` (native JSON)."""
    return json.dumps(
        {"seq": seq, "time_ms": alarm_ms, "kind": kind, "lat": round(lat, 9),
         "lon": round(lon, 9)}
    ).encode()  # fmt: skip


@dataclass(frozen=True)
class Message:
    """One MQTT message a simulated device sends, and when (UTC ms on the replay's clock)."""

    worker: int  # the sending device: index into the scenario's workers
    topic: str
    payload: bytes
    send_ms: int


def messages(
    sim: Simulation,
    start_ms: int,
    alarms: OwnAlarms | None = None,
    workers: Collection[int] | None = None,
) -> list[Message]:
    """Every message of `sim` in the order its devices send them, times offset to `start_ms`.

    The one source of what a simulated shift puts on the wire: publishing it over MQTT
    and deciding it in-process (trials) read the same bytes. Each device first says it
    is online; its own alarms go out among its fixes, each at its own send time.
    `workers`: only the messages of these workers' devices (by index), in the same order.
    """
    scenario = sim.scenario
    f = sim.fixes
    chosen = range(len(scenario.workers)) if workers is None else sorted(set(workers))
    first_send = int(f.send_ms[0]) if len(f) else 0
    out = [
        Message(w, f"{PREFIX}/{scenario.workers[w].device}/status", ONLINE, start_ms + first_send)
        for w in chosen
    ]
    alarm_at = np.zeros(0, np.int64) if alarms is None else alarms.send_ms
    due = np.searchsorted(f.send_ms, alarm_at, side="right")
    own = np.zeros(len(scenario.workers), dtype=bool)
    own[list(chosen)] = True
    raised = 0
    numbers = [0] * len(scenario.workers)  # each device numbers its own alarms
    names = [w.device.split("/", 1) for w in scenario.workers]
    profiles = [scenario.profile(w) for w in scenario.workers]
    for i in range(len(f)):
        while raised < due.size and due[raised] <= i:
            if own[int(alarms.worker[raised])]:
                out.append(_alarm_message(sim, alarms, raised, start_ms, numbers))
            raised += 1
        w = int(f.worker[i])
        if not own[w]:
            continue
        supplier, name = names[w]
        profile = profiles[w]
        fix_ms = start_ms + int(f.fix_ms[i])
        if profile.is_rfid:
            kind = "rfid"
            body = json.dumps(
                {"reader_id": str(f.reader[i]), "tag_id": name, "seq": int(f.seq[i]),
                 "time_ms": fix_ms, "battery_pct": round(float(f.battery_pct[i]), 1)}
            ).encode()  # fmt: skip
        else:
            kind = "fix"
            body = payload(
                profile.format, name, int(f.seq[i]), fix_ms, float(f.lat[i]), float(f.lon[i]),
                float(f.accuracy_m[i]), str(f.fix_type[i]), profile.firmware,
                float(f.battery_pct[i]),
            )  # fmt: skip
        out.append(Message(w, f"{PREFIX}/{supplier}/{name}/{kind}", body,
                           start_ms + int(f.send_ms[i])))  # fmt: skip
    while raised < due.size:
        if own[int(alarms.worker[raised])]:
            out.append(_alarm_message(sim, alarms, raised, start_ms, numbers))
        raised += 1
    return out


def _alarm_message(
    sim: Simulation, own: OwnAlarms, k: int, start_ms: int, numbers: list[int]
) -> Message:
    """Own alarm `k` as its device reports it, numbered in the device's own sequence."""
    w = int(own.worker[k])
    supplier, name = sim.scenario.workers[w].device.split("/", 1)
    seq, numbers[w] = numbers[w], numbers[w] + 1
    body = alarm_payload(
        seq, start_ms + int(own.alarm_ms[k]), str(own.kind[k]), float(own.lat[k]),
        float(own.lon[k]),
    )  # fmt: skip
    return Message(w, f"{PREFIX}/{supplier}/{name}/alarm", body, start_ms + int(own.send_ms[k]))


def publish(
    sim: Simulation,
    broker_url: str,
    start_ms: int,
    *,
    alarms: OwnAlarms | None = None,
    realtime: bool = False,
    progress: Callable[[int, int], None] | None = None,
    username: str | None = None,
    password: str | None = None,
    mqtt_protocol: str = "5",
    sent: list[Message] | None = None,
) -> Published:
    """Publish every message of `sim` (times offset to `start_ms`), QoS 1, in send order.

    `sent`: the shift's messages when the caller has them already (`messages()`).
    """
    parsed = urlparse(broker_url)
    if parsed.scheme not in ("mqtt", "tcp") or not parsed.hostname:
        raise ValueError(f"broker {broker_url!r} must look like mqtt://HOST:PORT")
    wire = sent if sent is not None else messages(sim, start_ms, alarms)
    clients = []
    for worker in sim.scenario.workers:
        supplier, name = worker.device.split("/", 1)
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"sim-{supplier}-{name}",
            protocol=mqtt.MQTTv5 if mqtt_protocol == "5" else mqtt.MQTTv311,
        )
        c.max_inflight_messages_set(1000)
        if username:
            c.username_pw_set(username, password)
        c.will_set(f"{PREFIX}/{supplier}/{name}/status", json.dumps({"online": False}), qos=1)
        c.connect(parsed.hostname, parsed.port or 1883)
        c.loop_start()
        clients.append(c)
    began = time.monotonic()
    first_ms = wire[0].send_ms if wire else 0
    pending = []
    try:
        for i, m in enumerate(wire):
            if realtime:
                ahead = (m.send_ms - first_ms) / 1000 - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
            pending.append(clients[m.worker].publish(m.topic, m.payload, qos=1))
            if len(pending) >= 5000:
                for info in pending:
                    info.wait_for_publish(60)
                pending.clear()
            if progress is not None and i % 1000 == 0:
                progress(i, len(wire))
        for info in pending:
            info.wait_for_publish(60)
        if progress is not None:
            progress(len(wire), len(wire))
    finally:
        for c in clients:
            c.disconnect()  # a clean goodbye: the last will is not sent
            c.loop_stop()
    return Published(len(sim.fixes), time.monotonic() - began)


def ingest_readers(sim: Simulation, site) -> list:
    """The scenario's RFID readers as ingest knows them (surveyed ETRS89 positions)."""
    from wire.codecs import RfidReader

    lat, lon = site.frame.to_etrs89(sim.truth.reader_x_m, sim.truth.reader_y_m)
    return [
        RfidReader(r.reader_id, float(a), float(o), r.range_m)
        for r, a, o in zip(sim.scenario.rfid_readers, lat, lon, strict=True)
    ]


def truth_records(
    sim: Simulation, run_id: str, start_ms: int, workers: Collection[int] | None = None
):
    """The run's truth and excursions as store records (store.TruthSamples, TrueExcursion);
    `workers`: only these workers' (by index)."""
    from store import TrueExcursion, TruthSamples

    t = sim.truth
    devices = [w.device for w in sim.scenario.workers]
    rows = np.arange(t.x_m.shape[0]) if workers is None else np.array(sorted(set(workers)), int)
    count = t.t_ms.size
    samples = TruthSamples(
        run_id,
        [devices[w] for w in rows for _ in range(count)],
        np.tile(start_ms + t.t_ms, rows.size).tolist(),
        t.x_m[rows].ravel().tolist(),
        t.y_m[rows].ravel().tolist(),
        t.inside[rows].ravel().tolist(),
        t.distance_m[rows].ravel().tolist(),
    )
    ex = sim.excursions
    chosen = set(rows.tolist())
    excursions = [
        TrueExcursion(run_id, devices[w], start_ms + int(s), start_ms + int(e), float(d))
        for w, s, e, d in zip(ex.worker, ex.start_ms, ex.end_ms, ex.depth_m, strict=True)
        if int(w) in chosen
    ]
    return samples, excursions


def text_progress(done: int, total: int) -> None:
    """A one-line progress bar on stderr."""
    width = 40
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} fixes")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def write_truth(sim: Simulation, folder, start_ms: int) -> list:
    """truth.csv (10 Hz), excursions.csv and fixes.csv beside the run."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = [w.name for w in sim.scenario.workers]
    devices = [w.device for w in sim.scenario.workers]
    t = sim.truth
    w_idx, s_idx = np.indices(t.x_m.shape)
    truth_rows = np.column_stack(
        [
            w_idx.ravel(),
            (start_ms + t.t_ms[s_idx.ravel()]),
            t.x_m.ravel(),
            t.y_m.ravel(),
            t.inside.ravel().astype(int),
            t.distance_m.ravel(),
        ]
    )
    written = []
    path = folder / "truth.csv"
    with path.open("w") as out:
        out.write("worker,device,time_ms,x_m,y_m,inside,distance_m\n")
        for row in truth_rows:
            w = int(row[0])
            out.write(
                f"{names[w]},{devices[w]},{int(row[1])},{row[2]:.3f},{row[3]:.3f},"
                f"{int(row[4])},{row[5]:.3f}\n"
            )
    written.append(path)
    path = folder / "excursions.csv"
    ex = sim.excursions
    with path.open("w") as out:
        out.write("worker,device,start_ms,end_ms,depth_m\n")
        for w, s, e, d in zip(ex.worker, ex.start_ms, ex.end_ms, ex.depth_m, strict=True):
            out.write(f"{names[w]},{devices[w]},{start_ms + int(s)},{start_ms + int(e)},{d:.3f}\n")
    written.append(path)
    return written
