"""`trackfence geofence check`: per-fix decisions for a recorded CSV of fixes.

Input columns: `device`, a time (`time_ms` as UTC epoch milliseconds, or `time`
as ISO 8601 with a zone), `lat`, `lon`; optional `accuracy_m` and `seq`.
Rows that cannot be used are written, with their line number and the reason, to
a rejects file; every good row is still decided.
"""

from __future__ import annotations

import csv
import math
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

import numpy as np

from geofence.breach import (
    BreachConfig,
    DeviceStates,
    EventKind,
    StepResult,
    event_kind,
    replay,
    state_of,
)
from geofence.frames import DeviceDatum
from geofence.site import Evaluation, Site


class FixFileError(ValueError):
    """A fixes file that cannot be read at all (no header, missing columns)."""


@dataclass
class FixRows:
    line: np.ndarray  # input line numbers
    device: list[str]
    time_ms: np.ndarray
    seq: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    accuracy_m: np.ndarray


@dataclass
class Reject:
    line: int
    reason: str
    raw: str


def _time_ms(row: dict) -> int:
    if row.get("time_ms", "").strip():
        value = float(row["time_ms"])
        if not math.isfinite(value):
            raise ValueError("time_ms is not a finite number")
        return int(value)
    text = (row.get("time") or "").strip()
    if not text:
        raise ValueError("no time: give time_ms (UTC epoch ms) or time (ISO 8601)")
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone; fix times must be unambiguous")
    return round(stamp.timestamp() * 1000)


def read_fixes(stream: TextIO) -> tuple[FixRows, list[Reject]]:
    reader = csv.DictReader(stream)
    header = reader.fieldnames or []
    missing = {"device", "lat", "lon"} - set(header)
    if not header or missing:
        raise FixFileError(f"fixes CSV lacks column(s): {', '.join(sorted(missing)) or 'header'}")
    if "time_ms" not in header and "time" not in header:
        raise FixFileError("fixes CSV needs a time_ms or a time column")
    good: dict[str, list] = {k: [] for k in ("line", "device", "time", "seq", "lat", "lon", "acc")}
    rejects = []
    for row in reader:
        line = reader.line_num
        try:
            device = (row.get("device") or "").strip()
            if not device:
                raise ValueError("no device id")
            lat = float(row["lat"])
            lon = float(row["lon"])
            if not (math.isfinite(lat) and math.isfinite(lon)):
                raise ValueError("latitude/longitude are not finite numbers")
            if abs(lat) > 90 or abs(lon) > 180:
                raise ValueError(f"latitude {lat} / longitude {lon} out of range")
            acc_text = (row.get("accuracy_m") or "").strip()
            acc = float(acc_text) if acc_text else math.nan
            if acc_text and not (math.isfinite(acc) and acc >= 0):
                raise ValueError(f"accuracy_m {acc_text!r} must be a non-negative number")
            seq_text = (row.get("seq") or "").strip()
            seq = int(seq_text) if seq_text else -1
            time_ms = _time_ms(row)
        except (ValueError, TypeError) as exc:
            raw = ",".join("" if v is None else str(v) for v in row.values())
            rejects.append(Reject(line, str(exc), raw))
            continue
        for key, value in zip(good, (line, device, time_ms, seq, lat, lon, acc), strict=True):
            good[key].append(value)
    rows = FixRows(
        np.array(good["line"], dtype=np.int64),
        good["device"],
        np.array(good["time"], dtype=np.int64),
        np.array(good["seq"], dtype=np.int64),
        np.array(good["lat"], dtype=np.float64),
        np.array(good["lon"], dtype=np.float64),
        np.array(good["acc"], dtype=np.float64),
    )
    return rows, rejects


def check_fixes(
    site: Site,
    fixes_path: Path,
    out_path: Path,
    rejects_path: Path,
    datum: DeviceDatum,
    config: BreachConfig,
    report: TextIO = sys.stdout,
) -> int:
    """Decide every good fix, write decisions and rejects; returns the number of rejects."""
    with fixes_path.open(newline="", encoding="utf-8") as stream:
        rows, rejects = read_fixes(stream)
    names, device_number = np.unique(np.array(rows.device, dtype=object), return_inverse=True)
    evaluation = site.evaluate_latlon(rows.lat, rows.lon, datum, rows.time_ms)
    unusable = np.flatnonzero(~evaluation.valid)
    for i in unusable:
        rejects.append(
            Reject(int(rows.line[i]), "position could not be placed in the site frame", "")
        )
    ok = evaluation.valid
    result = replay(
        DeviceStates.new(names.size),
        device_number[ok],
        rows.time_ms[ok],
        rows.seq[ok],
        evaluation.distance_m[ok],
        evaluation.fence[ok],
        rows.accuracy_m[ok],
        config,
    )
    _write_decisions(out_path, site, rows, names, device_number, evaluation, ok, result)
    rejects.sort(key=lambda r: r.line)
    _write_rejects(rejects_path, rejects)
    events = result.events
    breaches = events.kind == EventKind.BREACH.code
    print(
        f"{site.name}: {ok.sum()} fixes decided from {names.size} device(s), "
        f"{len(rejects)} rejected; {int(breaches.sum())} breach alert(s), "
        f"{int((events.kind == EventKind.LOST.code).sum())} lost-protection alarm(s)",
        file=report,
    )
    for d in np.unique(events.device[breaches]):
        mine = breaches & (events.device == d)
        times = ", ".join(str(int(t)) for t in events.time_ms[mine])
        print(f"  {names[d]}: breach alert at fix time_ms {times}", file=report)
    print(f"decisions: {out_path}", file=report)
    if rejects:
        print(f"rejected rows (with reasons): {rejects_path}", file=report)
    return len(rejects)


def _write_decisions(
    out_path: Path,
    site: Site,
    rows: FixRows,
    names: np.ndarray,
    device_number: np.ndarray,
    evaluation: Evaluation,
    ok: np.ndarray,
    result: StepResult,
) -> None:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fence_names = site.fence_names
    danger_names = [f.name for f in site.danger_zones]
    idx = np.flatnonzero(ok)
    events_by_fix: dict[tuple[int, int, int], list[str]] = {}
    ev = result.events
    for d, k, t, s in zip(ev.device, ev.kind, ev.time_ms, ev.seq, strict=True):
        events_by_fix.setdefault((int(d), int(t), int(s)), []).append(event_kind(k).value)
    with out_path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "line",
                "device",
                "time_ms",
                "seq",
                "lat",
                "lon",
                "accuracy_m",
                "x_m",
                "y_m",
                "inside",
                "fence",
                "distance_m",
                "danger_zone",
                "accepted",
                "state",
                "events",
            ]
        )
        for j, i in enumerate(idx):
            fence = int(evaluation.fence[i])
            danger = int(evaluation.danger_zone[i])
            key = (int(device_number[i]), int(rows.time_ms[i]), int(rows.seq[i]))
            accepted = bool(result.accepted[j])
            fired = events_by_fix.pop(key, []) if accepted else []
            w.writerow(
                [
                    int(rows.line[i]),
                    names[device_number[i]],
                    int(rows.time_ms[i]),
                    int(rows.seq[i]) if rows.seq[i] >= 0 else "",
                    f"{rows.lat[i]:.9f}",
                    f"{rows.lon[i]:.9f}",
                    "" if math.isnan(rows.accuracy_m[i]) else f"{rows.accuracy_m[i]:g}",
                    f"{evaluation.x_m[i]:.3f}",
                    f"{evaluation.y_m[i]:.3f}",
                    "yes" if fence >= 0 else "no",
                    fence_names[fence] if fence >= 0 else "",
                    f"{evaluation.distance_m[i]:.3f}",
                    danger_names[danger] if danger >= 0 else "",
                    "yes" if accepted else "no (duplicate or out of order)",
                    state_of(result.state_after[j]).value,
                    ";".join(fired),
                ]
            )


def _write_rejects(path: Path, rejects: list[Reject]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["line", "reason", "raw"])
        for r in rejects:
            w.writerow([r.line, r.reason, r.raw])
