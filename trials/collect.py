"""Reading a trial run back: the store's fixes, breach events and truth, per device and shift.

The unit of a trial is one device worn on one shift (`Worn`). Everything it is
scored on comes from the store (what ingest kept and decided, and the truth
written beside it) plus what the simulated devices sent (`sent/*.npz`: the
uplink time of each fix, which a time-warped run cannot measure). Positions are
put into the *reference* site's frame (the surveyed one), whatever fence the
supplier configured.

Missing data is listed, never scored as zero: a shift with no truth, or a device
that sent fixes of which none was stored, is named in `Collected.missing` and
left out. A device that sent nothing at all is not missing data: it is a silent
device, and is scored as one (no availability, every crossing missed).

The platform's own hops (receive -> decision -> alert published) are part of
time to alert only when they were measured at the pace of a live shift. A
simulated shift is replayed many times faster than real time, and its queues
would add hundreds of milliseconds no live wearer waits for; there the hops
are reported on their own (`decide_ms`, `publish_ms`) and left out of the
alert's time.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from devices.sim.publish import TIME_RESOLUTION_MS
from geofence.site import Site
from loading.site_files import load_site
from store import Store
from trials.definition import Trial

#: Fixes stamped up to this long either side of a shift belong to it (clocks out of step);
#: shifts of one trial are always further apart than this.
SHIFT_MARGIN_MS = 3_600_000
#: A shift published faster than this many times real time is a replay: its measured
#: hops reflect the replay's queues, not a live deployment, and stay out of time to alert.
LIVE_PACE_LIMIT = 1.5


#: What a run's manifest says of a shift's platform hops (receive -> decision -> alert).
HOPS_MEASURED = "measured"
HOPS_NOT_MEASURED = "not measured: replayed faster than real time"


def replay_speedup(shift: dict) -> float:
    """How many times faster than real time a shift's fixes were published."""
    duration_s = (shift["end_ms"] - shift["start_ms"]) / 1000
    seconds = float(shift.get("publish_seconds") or 0.0)
    return duration_s / seconds if seconds > 0 else float("inf")


def hops_measured(shift: dict) -> bool:
    """Whether a shift's platform hops were measured at the pace of a live shift.

    A run says so of each shift (`hops`); a run from before it did is judged by how
    much faster than real time it was published.
    """
    if shift.get("live"):
        return True
    if "hops" in shift:
        return shift["hops"] == HOPS_MEASURED
    return replay_speedup(shift) <= LIVE_PACE_LIMIT


@dataclass(frozen=True)
class Worn:
    """One device worn on one shift, with everything it is scored on (times UTC ms)."""

    shift: int
    run_id: str
    scenario: str
    week: int
    date: str
    night: bool
    device_id: str
    supplier: str
    wearer: str
    firmware: str
    configuration: dict
    configuration_hash: str
    rate_hz: float  # the fix rate the device was configured for
    approved_rate_hz: float  # the fix rate on the supplier's acceptance certificate
    start_ms: int
    end_ms: int
    fix_ms: np.ndarray  # stored fixes (located ones: RFID reads are not positions)
    x_m: np.ndarray  # reported position in the reference site's frame
    y_m: np.ndarray
    decide_ms: np.ndarray  # decision time minus receive time, per located fix (measured)
    truth_ms: np.ndarray
    truth_x_m: np.ndarray
    truth_y_m: np.ndarray
    truth_distance_m: np.ndarray  # signed distance to the safe-zone edge (+ inside)
    excursion_start_ms: np.ndarray
    excursion_end_ms: np.ndarray
    excursion_depth_m: np.ndarray
    alert_ms: np.ndarray  # breach alerts on the shift's timeline (sent + measured hops)
    alert_end_ms: np.ndarray  # when each breach cleared (or the shift ended)
    alert_logged_ms: np.ndarray  # the time the breach log gives each alert (the device's fix time)
    alert_x_m: np.ndarray  # the position the breach log shows for each alert
    alert_y_m: np.ndarray
    publish_ms: np.ndarray  # alert publish time minus decision time, per alert (measured)
    uplink_ms: np.ndarray  # device send time minus the time the fix was true (simulated)
    sent_fix_ms: np.ndarray  # fix times of every distinct fix sent (for loss accounting)
    #: the device's own alarms, as it reported them on its alarm topic (its own decision,
    #: which is what vibrates on the wearer): times on its own clock, and where it said
    #: the wearer was. A device that reports none leaves own_reported False.
    own_reported: bool = False
    own_alarm_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    own_alarm_end_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    own_alarm_x_m: np.ndarray = field(default_factory=lambda: np.zeros(0))
    own_alarm_y_m: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass
class Collected:
    worn: list[Worn] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def collect(
    trial: Trial,
    manifest: dict,
    store: Store,
    out: Path,
    *,
    reopen: Callable[[], Store] | None = None,
    workers: int | None = None,
) -> Collected:
    """Every device-shift of a run, from the store and the run's `sent` folder.

    Shifts are read independently of each other, so given `reopen` (a new connection
    to the same store) they are read by `workers` forked processes side by side
    (default: one per core); the result is the same, in the same order.
    """
    shifts = manifest["shifts"]
    # a supplier whose devices report their own alarms anywhere in the trial reports them
    # on every shift: one with none on a shift raised none (not "did not report")
    reporting = {
        a.device_id.split("/", 1)[0]
        for a in store.device_alarms(
            since_ms=min((s["start_ms"] for s in shifts), default=0) - SHIFT_MARGIN_MS,
            until_ms=max((s["end_ms"] for s in shifts), default=0) + SHIFT_MARGIN_MS,
        )
    }
    jobs = list(enumerate(shifts))
    workers = min(len(jobs), os.cpu_count() or 1) if workers is None else workers
    global _SHARED
    if reopen is not None and workers > 1 and "fork" in mp.get_all_start_methods():
        _SHARED = (trial, reporting, out, reopen)
        try:
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"),
                                     initializer=_open_shared) as pool:  # fmt: skip
                parts = list(pool.map(_collect_shared, jobs, chunksize=2))
        finally:
            _SHARED = None
    else:
        parts = [_collect_shift(trial, number, shift, store, out, reporting)
                 for number, shift in jobs]  # fmt: skip
    result = Collected()
    for part in parts:
        result.worn += part.worn
        result.missing += part.missing
    return result


#: What the forked readers share: (trial, reporting suppliers, run folder, reopen); each
#: reader process then holds its own connection in _READER.
_SHARED: tuple | None = None
_READER: Store | None = None


def _open_shared() -> None:
    global _READER
    assert _SHARED is not None
    _READER = _SHARED[3]()


def _collect_shared(job: tuple[int, dict]) -> Collected:
    assert _SHARED is not None and _READER is not None
    trial, reporting, out, _ = _SHARED
    return _collect_shift(trial, job[0], job[1], _READER, out, reporting)


def _collect_shift(trial: Trial, number: int, shift: dict, store: Store, out: Path,
                   reporting: set[str]) -> Collected:  # fmt: skip
    """One shift's device-shifts, or why it cannot be scored."""
    result = Collected()
    run_id = shift["run_id"]
    site = load_site(shift["site_file"])
    truth = store.truth(run_id)
    if not truth.time_ms:
        result.missing.append(f"{run_id}: no ground truth in the store; shift not scored")
        return result
    sent = None
    if not shift.get("live"):  # a real shift has no simulator's record of sends
        sent_path = out / "sent" / f"{run_id}.npz"
        if not sent_path.is_file():
            result.missing.append(f"{run_id}: {sent_path.name} is missing; shift not scored")
            return result
        sent = dict(np.load(sent_path, allow_pickle=False))
    window = {"since_ms": shift["start_ms"] - SHIFT_MARGIN_MS,
              "until_ms": shift["end_ms"] + SHIFT_MARGIN_MS}  # fmt: skip
    by_device = defaultdict(list)
    for f in store.fixes(**window):
        by_device[f.device_id].append(f)
    breaches = defaultdict(list)
    for e in store.events(**window):
        if e.kind in ("breach", "clear"):
            breaches[e.device_id].append(e)
    own_by_device = defaultdict(list)
    for a in store.device_alarms(**window):
        own_by_device[a.device_id].append(a)
    truth_device = np.array(truth.device_id, dtype=object)
    columns = {  # once per shift, not per device
        "time_ms": np.asarray(truth.time_ms, dtype=np.int64),
        "x_m": np.asarray(truth.x_m, dtype=np.float64),
        "y_m": np.asarray(truth.y_m, dtype=np.float64),
        "distance_m": np.asarray(truth.distance_m, dtype=np.float64),
    }
    excursions = store.true_excursions(run_id)
    for d in shift["devices"]:
        device_id = d["device_id"]
        mine = by_device.get(device_id, [])
        if not mine and sent is not None and bool((sent["device"] == device_id).any()):
            result.missing.append(f"{run_id}: no fixes stored for {device_id}; not scored")
            continue
        if not mine and sent is None:  # worn, by the log, and silent: scored as silent
            result.missing.append(
                f"{run_id}: {device_id}, worn by {d['wearer']}, published nothing; scored "
                "as a silent device"
            )
        supplier = trial.supplier(d["supplier"])
        profile = supplier.profile(d["firmware"], d["configuration"])
        worn = _worn(number, shift, d, profile, site, mine, breaches[device_id],
                     columns, truth_device == device_id,
                     [x for x in excursions if x.device_id == device_id],
                     sent, _approved_rate(supplier, profile), hops_measured(shift))  # fmt: skip
        if d["supplier"] in reporting:
            worn = replace(
                worn, own_reported=True,
                **_own_alarms(own_by_device[device_id], site, int(shift["end_ms"])),
            )  # fmt: skip
        result.worn.append(worn)
    return result


def _approved_rate(supplier, profile) -> float:
    """The fix rate on the supplier's acceptance certificate (else the configured one)."""
    approved = supplier.approved_configuration.get("fix_rate_hz")
    if isinstance(approved, int | float) and not isinstance(approved, bool) and approved > 0:
        return float(approved)
    return float(profile.fix_rate_hz)


def _own_alarms(alarms: list, site: Site, end_ms: int) -> dict[str, np.ndarray]:
    """A device's own breach alarms: each from its breach to its next clear, breach or lost
    (or the shift's end), and where the device said its wearer was."""
    alarms = sorted(alarms, key=lambda a: (a.alarm_ms, a.seq))
    ends = np.array([a.alarm_ms for a in alarms if a.kind in ("clear", "breach", "lost")],
                    dtype=np.int64)  # fmt: skip
    breach = [a for a in alarms if a.kind == "breach"]
    start = np.array([a.alarm_ms for a in breach], dtype=np.int64)
    after = np.searchsorted(ends, start, side="right")
    end = np.where(after < ends.size, ends[np.minimum(after, max(ends.size - 1, 0))], end_ms)
    lat = np.array([np.nan if a.lat is None else a.lat for a in breach], dtype=np.float64)
    lon = np.array([np.nan if a.lon is None else a.lon for a in breach], dtype=np.float64)
    x, y = site.locate(lat, lon, "ETRS89", start) if start.size else (lat, lon)
    return {
        "own_alarm_ms": start,
        "own_alarm_end_ms": np.maximum(end.astype(np.int64), start),
        "own_alarm_x_m": np.asarray(x, dtype=np.float64),
        "own_alarm_y_m": np.asarray(y, dtype=np.float64),
    }


def _worn(
    number, shift, d, profile, site, fixes, breaches, truth, t_rows, excursions, sent,
    approved_rate_hz: float, live: bool,
) -> Worn:
    rate_hz = profile.fix_rate_hz
    resolution_ms = TIME_RESOLUTION_MS[profile.format]
    located = [f for f in fixes if f.fix_type != "RFID"]
    fix_ms = np.array([f.fix_ms for f in located], dtype=np.int64)
    lat = np.array([f.lat for f in located], dtype=np.float64)
    lon = np.array([f.lon for f in located], dtype=np.float64)
    x, y = site.locate(lat, lon, "ETRS89", fix_ms) if fix_ms.size else (lat, lon)
    decide = np.array([f.decided_ms - f.received_ms for f in located], dtype=np.float64)
    # a breach's alert time on the shift's timeline: when the device sent the fix that
    # raised it (simulated uplink), plus the measured hops receive -> decide -> publish.
    # On a real shift nothing records the send: the fix's arrival at the platform stands
    # in for it, so the alert's time is when it was really published
    if sent is None:
        s_seq = np.array([f.seq for f in fixes], dtype=np.int64)
        s_fix = np.array([f.fix_ms for f in fixes], dtype=np.int64)
        s_send = np.array([f.received_ms for f in fixes], dtype=np.int64)
        s_true = s_fix  # the device's own time: its clock error shows in the uplink
    else:
        sent_mine = sent["device"] == d["device_id"]
        s_seq, s_fix = sent["seq"][sent_mine], sent["fix_ms"][sent_mine]
        s_send = sent["send_ms"][sent_mine]
        s_true = sent["true_ms"][sent_mine]
    # the first send of the fix that raised each breach: a format that cuts the fix time
    # (OwnTracks to the second, NMEA to the centisecond) is matched within its resolution
    order = np.lexsort((s_send, s_fix))
    times, first = np.unique(s_fix[order], return_index=True)
    first_send = s_send[order][first]
    stored = {f.fix_ms: f for f in fixes}
    # a breach lasts until the device's next clear, or its next breach (after a lapse
    # in protection a breach is raised afresh without a clear between), or the shift end
    ends = np.sort(np.array([e.event_ms for e in breaches if e.kind in ("clear", "breach")],
                            np.int64))  # fmt: skip
    breaches = [e for e in breaches if e.kind == "breach"]
    matched = [(e, stored[e.event_ms]) for e in breaches if e.event_ms in stored]
    event_ms = np.array([e.event_ms for e, _ in matched], dtype=np.int64)
    nearest = np.searchsorted(times, event_ms, side="left")
    timed = nearest < times.size
    timed[timed] &= times[nearest[timed]] < event_ms[timed] + resolution_ms
    alert_ms, alert_end, publish, lat_a, lon_a, t_a = [], [], [], [], [], []
    for (_, f), ok, k in zip(matched, timed, nearest, strict=True):
        if not ok:
            continue
        after = np.searchsorted(ends, f.fix_ms, side="right")
        alert_end.append(int(ends[after]) if after < ends.size else int(shift["end_ms"]))
        hops = (f.alert_ms if f.alert_ms is not None else f.decided_ms) - f.received_ms
        alert_ms.append(int(first_send[k]) + (hops if live else 0))
        publish.append((f.alert_ms - f.decided_ms) if f.alert_ms is not None else np.nan)
        lat_a.append(f.lat)
        lon_a.append(f.lon)
        t_a.append(f.fix_ms)
    alert_x, alert_y = (
        site.locate(
            np.array(lat_a, dtype=np.float64),
            np.array(lon_a, dtype=np.float64),
            "ETRS89",
            np.array(t_a, dtype=np.int64),
        )
        if t_a
        else (np.zeros(0), np.zeros(0))
    )
    distinct = np.unique(np.stack([s_seq, s_fix], axis=1), axis=0) if s_seq.size else s_seq
    return Worn(
        shift=number,
        run_id=shift["run_id"],
        scenario=shift["scenario"],
        week=int(shift["week"]),
        date=shift["date"],
        night=bool(shift["night"]),
        device_id=d["device_id"],
        supplier=d["supplier"],
        wearer=d["wearer"],
        firmware=d["firmware"],
        configuration=d["configuration"],
        configuration_hash=d["configuration_hash"],
        rate_hz=float(rate_hz),
        approved_rate_hz=approved_rate_hz,
        start_ms=int(shift["start_ms"]),
        end_ms=int(shift["end_ms"]),
        fix_ms=fix_ms,
        x_m=np.asarray(x),
        y_m=np.asarray(y),
        decide_ms=decide,
        truth_ms=truth["time_ms"][t_rows],
        truth_x_m=truth["x_m"][t_rows],
        truth_y_m=truth["y_m"][t_rows],
        truth_distance_m=truth["distance_m"][t_rows],
        excursion_start_ms=np.array([e.start_ms for e in excursions], dtype=np.int64),
        excursion_end_ms=np.array([e.end_ms for e in excursions], dtype=np.int64),
        excursion_depth_m=np.array([e.depth_m for e in excursions], dtype=np.float64),
        alert_ms=np.array(alert_ms, dtype=np.int64),
        alert_end_ms=np.array(alert_end, dtype=np.int64),
        alert_logged_ms=np.array(t_a, dtype=np.int64),
        alert_x_m=np.array(alert_x, dtype=np.float64),
        alert_y_m=np.array(alert_y, dtype=np.float64),
        publish_ms=np.array(publish, dtype=np.float64),
        uplink_ms=(s_send - s_true).astype(np.float64),
        sent_fix_ms=distinct[:, 1] if s_seq.size else s_fix,
    )
