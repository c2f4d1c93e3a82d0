"""Real recordings as a run: a device's log and a reference trajectory, like a simulation.

A trial on the track records each device's output and, separately, where the
wearer truly was (an RTK survey pole, a total station). Imported here, they take
the shape of a simulated run, with the reference as the 10 Hz truth and its
excursions labelled by the same geofence, so they go through the same scoring.

Device logs: CSV (`time_ms` or ISO `time`, `lat`, `lon`, optional `accuracy_m`,
`seq`), NMEA 0183 (GGA+RMC per epoch, GST for accuracy) or GPX track points.
References: CSV or GPX. Positions are ETRS89 (as RTK surveys in GB are).
"""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import numpy as np

from devices.sim.generate import (
    TRUTH_HZ,
    Excursions,
    Fixes,
    Simulation,
    Truth,
    label_excursions,
)
from devices.sim.profiles import SupplierProfile
from devices.sim.scenario import Scenario, ScenarioError, Worker
from geofence.site import Site
from wire import nmea


class RecordingError(ScenarioError):
    pass


def _iso_ms(text: str, where: str) -> int:
    try:
        stamp = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise RecordingError(where, f"time {text!r} is not ISO 8601") from None
    if stamp.tzinfo is None:
        raise RecordingError(where, f"time {text!r} has no time zone")
    return round(stamp.timestamp() * 1000)


def read_track(path: Path) -> dict[str, np.ndarray]:
    """time_ms, lat, lon (and accuracy_m, seq where the format has them), in time order."""
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecordingError(str(path), f"cannot read ({exc.strerror})") from None
    if suffix == ".gpx":
        rows = _gpx(text, str(path))
    elif suffix in (".nmea", ".txt", ".log"):
        rows = _nmea(text, str(path))
    elif suffix == ".csv":
        rows = _csv(text, str(path))
    else:
        raise RecordingError(str(path), "use .csv, .gpx or .nmea")
    if len(rows["time_ms"]) < 2:
        raise RecordingError(str(path), "needs at least two positions")
    order = np.argsort(rows["time_ms"], kind="stable")
    return {k: v[order] for k, v in rows.items()}


def _gpx(text: str, where: str) -> dict[str, np.ndarray]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise RecordingError(where, f"not valid GPX ({exc})") from None
    t, lat, lon = [], [], []
    for point in root.iter():
        if point.tag.rsplit("}", 1)[-1] != "trkpt":
            continue
        when = next((c.text for c in point if c.tag.rsplit("}", 1)[-1] == "time"), None)
        if when is None:
            raise RecordingError(where, "a track point has no <time>")
        t.append(_iso_ms(when, where))
        lat.append(float(point.get("lat")))
        lon.append(float(point.get("lon")))
    return {"time_ms": np.array(t, dtype=np.int64), "lat": np.array(lat), "lon": np.array(lon)}


def _nmea(text: str, where: str) -> dict[str, np.ndarray]:
    epochs: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("$") and len(line) > 7:
            key = line.split(",")[1] if "," in line else ""  # hhmmss.ss: 5 Hz has 5 a second
            epochs.setdefault(key, []).append(line)
    t, lat, lon, acc = [], [], [], []
    for key, lines in epochs.items():
        try:
            position = nmea.parse_position("\n".join(lines))
        except nmea.NmeaError as exc:
            raise RecordingError(where, f"epoch {key}: {exc}") from None
        if position.fix_type is None:
            continue  # no fix in this epoch
        t.append(position.fix_ms)
        lat.append(position.lat)
        lon.append(position.lon)
        acc.append(np.nan if position.accuracy_m is None else position.accuracy_m)
    return {
        "time_ms": np.array(t, dtype=np.int64),
        "lat": np.array(lat),
        "lon": np.array(lon),
        "accuracy_m": np.array(acc),
    }


def _csv(text: str, where: str) -> dict[str, np.ndarray]:
    reader = csv.DictReader(io.StringIO(text))
    header = set(reader.fieldnames or ())
    if not {"lat", "lon"} <= header or not header & {"time_ms", "time"}:
        raise RecordingError(where, "CSV needs lat, lon and time_ms (or ISO time) columns")
    t, lat, lon, acc, seq = [], [], [], [], []
    for row in reader:
        line = f"{where} line {reader.line_num}"
        try:
            t.append(int(row["time_ms"]) if row.get("time_ms") else _iso_ms(row["time"], line))
            lat.append(float(row["lat"]))
            lon.append(float(row["lon"]))
            acc.append(float(row["accuracy_m"]) if row.get("accuracy_m") else np.nan)
            seq.append(int(row["seq"]) if row.get("seq") else len(seq))
        except (TypeError, ValueError) as exc:
            raise RecordingError(line, str(exc)) from None
    return {
        "time_ms": np.array(t, dtype=np.int64),
        "lat": np.array(lat),
        "lon": np.array(lon),
        "accuracy_m": np.array(acc),
        "seq": np.array(seq, dtype=np.int64),
    }


def import_recording(device_log: Path, reference: Path, site: Site, device: str) -> Simulation:
    """A recorded run: the device's fixes, and the reference as truth (times from its start)."""
    if device.count("/") != 1:
        raise RecordingError("device", "give the device as supplier/device")
    log, ref = read_track(Path(device_log)), read_track(Path(reference))
    start = int(ref["time_ms"][0])
    duration_s = (int(ref["time_ms"][-1]) - start) / 1000
    t_ms = np.arange(0, round(duration_s * 1000) + 1, round(1000 / TRUTH_HZ), dtype=np.int64)
    lat = np.interp(t_ms + start, ref["time_ms"], ref["lat"])
    lon = np.interp(t_ms + start, ref["time_ms"], ref["lon"])
    x, y = site.locate(lat, lon)
    ev = site.evaluate(x, y)
    truth = Truth(
        t_ms,
        np.full((1, t_ms.size), np.nan),
        x[None],
        y[None],
        ev.inside[None],
        ev.distance_m[None],
        np.zeros(0),
        np.zeros(0),
    )
    excursions: Excursions = label_excursions(truth)
    fx, fy = site.locate(log["lat"], log["lon"])
    n = log["time_ms"].size
    rel = log["time_ms"] - start
    fixes = Fixes(
        worker=np.zeros(n, dtype=np.int64),
        seq=log.get("seq", np.arange(n, dtype=np.int64)),
        true_ms=rel,
        fix_ms=rel,
        send_ms=rel,
        x_m=fx,
        y_m=fy,
        accuracy_m=log.get("accuracy_m", np.full(n, np.nan)),
        fix_type=np.full(n, "recorded", dtype=object),
        reader=np.full(n, "", dtype=object),
        battery_pct=np.full(n, np.nan),
        lat=log["lat"],
        lon=log["lon"],
    )
    supplier = device.split("/")[0]
    scenario = Scenario(
        name=f"recording {Path(device_log).name}",
        site_file=Path(site.name),
        line=None,
        duration_s=duration_s,
        night=False,
        seed=0,
        workers=(Worker("recorded", device, 0.0, 0.0, ()),),
        suppliers={supplier: SupplierProfile(technology="recorded")},
    )
    return Simulation(scenario, truth, excursions, fixes)
