"""The shift log of a real trial: when and where each shift was worked, who wore what.

A simulated trial plans its own shifts (trials.schedule). A real one happened:
track workers wore the suppliers' devices on operational track while ingest
stored what the devices sent, and a reference receiver (an RTK pole, a survey
grade receiver carried with the devices) recorded where each wearer truly was.
The shift log says which is which, in the trial file or in a CSV beside it:

    [[shift]]                                   # in the trial TOML...
    start = 2026-06-01T09:00:00Z
    end = 2026-06-01T09:15:00Z
    site = "../sites/ecm1-kings-cross.toml"
    scenario = "plain-line"
    workers = [
      { wearer = "TW01", devices = ["acme/ac-0101", "gnssco/gn-0201"],
        reference = "references/2026-06-01-TW01.gpx", reference_accuracy_m = 0.02 },
    ]

    start,end,site,scenario,wearer,devices,reference,reference_accuracy_m   # ...or a CSV
    2026-06-01T09:00Z,2026-06-01T09:15Z,x.toml,plain-line,TW01,acme/a1 gnssco/g1,TW01.gpx,0.02

(one CSV row per wearer; rows with the same start, end, site and scenario are
one shift). Every entry is checked before anything is scored, and every problem
is named by table, line and field: a device worn by two people at once, a
reference that does not cover its shift, a device no supplier declared.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: A reference receiver is the truth only if it is far better than what it judges.
MAX_REFERENCE_ACCURACY_M = 1.0
#: A shift longer than this is a typing error, not a shift.
MAX_SHIFT_S = 16 * 3600
CSV_COLUMNS = ("start", "end", "site", "scenario", "wearer", "devices", "reference")


class ShiftLogError(ValueError):
    """Entries of a shift log that cannot be scored; every problem is listed."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Wearer:
    """One person on one shift: the devices they wore and their reference track."""

    name: str
    devices: tuple[str, ...]  # supplier/device
    reference: Path
    reference_accuracy_m: float
    where: str  # the table or line it came from, for messages


@dataclass(frozen=True)
class RealShift:
    index: int
    run_id: str  # names the shift's truth in the store
    start_ms: int
    end_ms: int
    site_file: Path
    scenario: str
    wearers: tuple[Wearer, ...]
    where: str

    @property
    def date(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.start_ms / 1000, dt.UTC).date()

    @property
    def night(self) -> bool:
        """Worked in the dark hours (UTC 20:00 to 06:00): a scenario of its own on track."""
        hour = dt.datetime.fromtimestamp(self.start_ms / 1000, dt.UTC).hour
        return hour >= 20 or hour < 6


def _instant(value: object, where: str, problems: list[str]) -> int | None:
    """UTC epoch ms from a TOML datetime or ISO text; a time with no zone is refused."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"{where}: {value!r} is not an ISO 8601 time")
            return None
    if not isinstance(value, dt.datetime):
        problems.append(f"{where}: a date and time with a zone, e.g. 2026-06-01T09:00:00Z")
        return None
    if value.tzinfo is None:
        problems.append(f"{where}: {value.isoformat()} has no time zone (write Z for UTC)")
        return None
    return round(value.timestamp() * 1000)


def _wearer(
    item: Mapping, where: str, base: Path, known: set[str], problems: list[str]
) -> Wearer | None:
    name = item.get("wearer")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where}.wearer: the person's name or code is required")
        return None
    devices = item.get("devices")
    if isinstance(devices, str):
        devices = devices.split()
    if not isinstance(devices, list) or not devices or not all(
        isinstance(d, str) for d in devices
    ):
        problems.append(f"{where}.devices: a list of supplier/device names")
        devices = []
    for k, device in enumerate(devices):
        if device not in known:
            problems.append(
                f"{where}.devices[{k}]: {device!r} is no device of the trial's suppliers"
            )
    if len(set(devices)) != len(devices):
        problems.append(f"{where}.devices: a device is listed twice")
    reference = item.get("reference")
    if not isinstance(reference, str) or not reference.strip():
        problems.append(f"{where}.reference: the wearer's reference track file is required")
        return None
    path = (base / reference).resolve()
    if not path.is_file():
        problems.append(f"{where}.reference: no such file {path}")
    accuracy = item.get("reference_accuracy_m", 0.02)
    if isinstance(accuracy, str):
        with contextlib.suppress(ValueError):  # left as text: refused below, with the field
            accuracy = float(accuracy) if accuracy.strip() else 0.02
    if (
        isinstance(accuracy, bool)
        or not isinstance(accuracy, int | float)
        or not 0 < accuracy <= MAX_REFERENCE_ACCURACY_M
    ):
        problems.append(
            f"{where}.reference_accuracy_m: the reference's own accuracy in metres, above 0 "
            f"and at most {MAX_REFERENCE_ACCURACY_M:g}, got {accuracy!r}"
        )
        accuracy = MAX_REFERENCE_ACCURACY_M
    return Wearer(name.strip(), tuple(devices), path, float(accuracy), where)


def _entries_from_csv(path: Path) -> tuple[list[tuple[str, dict]], list[str]]:
    problems: list[str] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return [], [f"{path}: cannot read ({exc.strerror})"]
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        return [], [f"{path.name} line 1: missing column(s) {', '.join(missing)}"]
    return [(f"{path.name} line {reader.line_num}", dict(row)) for row in reader], problems


def read_shift_log(
    tables: object, csv_file: Path | None, base: Path, known_devices: set[str], start: dt.date
) -> tuple[RealShift, ...]:
    """Every shift of a real trial, checked whole: every problem named, or none."""
    problems: list[str] = []
    flat: list[tuple[str, dict]] = []  # (where, one wearer's row with its shift's fields)
    if tables is not None:
        if not isinstance(tables, list):
            raise ShiftLogError(["[[shift]]: a list of shift tables"])
        for i, table in enumerate(tables):
            where = f"shift[{i}]"
            if not isinstance(table, Mapping):
                problems.append(f"{where}: a table with start, end, site, scenario, workers")
                continue
            workers = table.get("workers")
            if not isinstance(workers, list) or not workers:
                problems.append(f"{where}.workers: at least one wearer")
                continue
            for k, worker in enumerate(workers):
                if not isinstance(worker, Mapping):
                    problems.append(f"{where}.workers[{k}]: a table with wearer, devices, …")
                    continue
                flat.append((f"{where}.workers[{k}]", {**table, **worker, "_shift": where}))
    if csv_file is not None:
        rows, found = _entries_from_csv(csv_file)
        problems += found
        flat += [(w, {**row, "_shift": w}) for w, row in rows]
    shifts: dict[tuple, dict] = {}
    for where, row in flat:
        shift_where = row["_shift"] if row["_shift"].startswith("shift[") else where
        begin = _instant(row.get("start"), f"{shift_where}.start", problems)
        end = _instant(row.get("end"), f"{shift_where}.end", problems)
        site = row.get("site")
        scenario = row.get("scenario")
        if not isinstance(site, str) or not site.strip():
            problems.append(f"{shift_where}.site: the site file is required")
            continue
        site_file = (base / site).resolve()
        if not site_file.is_file():
            problems.append(f"{shift_where}.site: no such site file {site_file}")
        if not isinstance(scenario, str) or not scenario.strip():
            problems.append(f"{shift_where}.scenario: the scenario's name is required")
            continue
        if begin is None or end is None:
            continue
        if not 0 < end - begin <= MAX_SHIFT_S * 1000:
            problems.append(
                f"{shift_where}.end: must come after start, within {MAX_SHIFT_S // 3600} h"
            )
            continue
        wearer = _wearer(row, where, base, known_devices, problems)
        key = (begin, end, str(site_file), scenario.strip())
        entry = shifts.setdefault(key, {"where": shift_where, "wearers": []})
        if wearer is not None:
            if any(w.name == wearer.name for w in entry["wearers"]):
                problems.append(f"{where}.wearer: {wearer.name} is listed twice on this shift")
            entry["wearers"].append(wearer)
    out = []
    for i, (key, entry) in enumerate(sorted(shifts.items())):
        begin, end, site_file, scenario = key
        date = dt.datetime.fromtimestamp(begin / 1000, dt.UTC)
        run_id = f"{date:%Y-%m-%dT%H%M}-{scenario}-{Path(site_file).stem}"
        out.append(
            RealShift(i, run_id, begin, end, Path(site_file), scenario, tuple(entry["wearers"]),
                      entry["where"])
        )  # fmt: skip
    problems += _double_worn(out)
    problems += _early(out, start)
    if problems:
        raise ShiftLogError(problems)
    return tuple(out)


def _double_worn(shifts: list[RealShift]) -> list[str]:
    """A device cannot be on two people at once (nor twice on one shift's log)."""
    spans: dict[str, list[tuple[int, int, str]]] = {}
    for shift in shifts:
        for w in shift.wearers:
            for device in w.devices:
                spans.setdefault(device, []).append((shift.start_ms, shift.end_ms, w.where))
    problems = []
    for device, worn in spans.items():
        worn.sort()
        for (_, e0, w0), (s1, _, w1) in itertools.pairwise(worn):
            if s1 < e0:
                problems.append(
                    f"{w1}.devices: {device} is also worn at the same time by {w0}; a device is "
                    "on one person at a time"
                )
    return problems


def _early(shifts: list[RealShift], start: dt.date) -> list[str]:
    first = dt.datetime.combine(start, dt.time(0), tzinfo=dt.UTC).timestamp() * 1000
    return [
        f"{s.where}.start: before the trial's start_date {start.isoformat()}"
        for s in shifts
        if s.start_ms < first
    ]


def check_references(shifts: tuple[RealShift, ...]) -> list[str]:
    """Each reference must cover its whole shift: truth is never extrapolated."""
    from devices.sim.recordings import RecordingError, read_track

    problems = []
    for shift in shifts:
        for w in shift.wearers:
            try:
                track = read_track(w.reference)
            except RecordingError as exc:
                problems.append(f"{w.where}.reference: {exc}")
                continue
            first, last = int(track["time_ms"][0]), int(track["time_ms"][-1])
            if first > shift.start_ms or last < shift.end_ms:
                problems.append(
                    f"{w.where}.reference: {w.reference.name} covers "
                    f"{_clock(first)} to {_clock(last)}, not the whole shift "
                    f"{_clock(shift.start_ms)} to {_clock(shift.end_ms)}"
                )
                continue
            gaps = np.diff(track["time_ms"]) / 1000
            if gaps.size and float(gaps.max()) > 5.0:
                problems.append(
                    f"{w.where}.reference: {w.reference.name} has a gap of "
                    f"{float(gaps.max()):.0f} s; the truth cannot be guessed across it"
                )
    return problems


def _clock(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
