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
time to alert only when they were measured at the pace of a live shift
(`ShiftRecord.hops_measured`, trials.manifest). A simulated shift is replayed
many times faster than real time, and its queues would add hundreds of
milliseconds no live wearer waits for; there the hops are reported on their own
(`decide_ms`, `publish_ms`) and left out of the alert's time.
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

from geofence.site import Site
from loading.site_files import load_site
from store import Store
from trials.definition import Trial
from trials.manifest import Manifest, ShiftRecord, WornDevice
from wire.formats import TIME_RESOLUTION_MS

#: Fixes stamped up to this long either side of a shift belong to it (clocks out of step);
#: shifts of one trial are always further apart than this.
SHIFT_MARGIN_MS = 3_600_000


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
    manifest: Manifest,
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
    shifts = manifest.shifts
    # a supplier whose devices report their own alarms anywhere in the trial reports them
    # on every shift: one with none on a shift raised none (not "did not report")
    reporting = {
        a.device_id.split("/", 1)[0]
        for a in store.device_alarms(
            since_ms=min((s.start_ms for s in shifts), default=0) - SHIFT_MARGIN_MS,
            until_ms=max((s.end_ms for s in shifts), default=0) + SHIFT_MARGIN_MS,
        )
    }
    jobs = list(enumerate(shifts))
    workers = min(len(jobs), os.cpu_count() or 1) if workers is None else workers
    global _SHARED
    if reopen is not None and workers > 1 and "fork" in mp.get_all_start_methods():
        for shift in shifts:  # compiled once here, shared by every forked reader
            load_site(shift.site_file)
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


def _collect_shared(job: tuple[int, ShiftRecord]) -> Collected:
    assert _SHARED is not None and _READER is not None
    trial, reporting, out, _ = _SHARED
    return _collect_shift(trial, job[0], job[1], _READER, out, reporting)


def _collect_shift(trial: Trial, number: int, shift: ShiftRecord, store: Store, out: Path,
                   reporting: set[str]) -> Collected:  # fmt: skip
    """One shift's device-shifts, or why it cannot be scored."""
    result = Collected()
    run_id = shift.run_id
    site = load_site(shift.site_file)
    truth = store.truth(run_id)
    if not truth.time_ms:
        result.missing.append(f"{run_id}: no ground truth in the store; shift not scored")
        return result
    sent = None
    if not shift.live:  # a real shift has no simulator's record of sends
        sent_path = out / "sent" / f"{run_id}.npz"
        if not sent_path.is_file():
            result.missing.append(f"{run_id}: {sent_path.name} is missing; shift not scored")
            return result
        sent = dict(np.load(sent_path, allow_pickle=False))
    stored = _StoredShift.read(store, shift)
    truth_device = np.array(truth.device_id, dtype=object)
    columns = {  # once per shift, not per device
        "time_ms": np.asarray(truth.time_ms, dtype=np.int64),
        "x_m": np.asarray(truth.x_m, dtype=np.float64),
        "y_m": np.asarray(truth.y_m, dtype=np.float64),
        "distance_m": np.asarray(truth.distance_m, dtype=np.float64),
    }
    excursions = store.true_excursions(run_id)
    for d in shift.devices:
        mine = stored.fixes.get(d.device_id, [])
        if not mine and sent is not None and bool((sent["device"] == d.device_id).any()):
            result.missing.append(f"{run_id}: no fixes stored for {d.device_id}; not scored")
            continue
        if not mine and sent is None:  # worn, by the log, and silent: scored as silent
            result.missing.append(
                f"{run_id}: {d.device_id}, worn by {d.wearer}, published nothing; scored "
                "as a silent device"
            )
        supplier = trial.supplier(d.supplier)
        profile = supplier.profile(d.firmware, d.configuration)
        worn = _worn(number, shift, d, profile, site, mine, stored.breaches[d.device_id],
                     columns, truth_device == d.device_id,
                     [x for x in excursions if x.device_id == d.device_id],
                     sent, _approved_rate(supplier, profile))  # fmt: skip
        if d.supplier in reporting:
            worn = replace(
                worn, own_reported=True,
                **_own_alarms(stored.own_alarms[d.device_id], site, shift.end_ms),
            )  # fmt: skip
        result.worn.append(worn)
    return result


@dataclass
class _StoredShift:
    """What the store holds of one shift, by device: fixes, breach events, own alarms."""

    fixes: dict[str, list]
    breaches: dict[str, list]
    own_alarms: dict[str, list]

    @classmethod
    def read(cls, store: Store, shift: ShiftRecord) -> _StoredShift:
        """Everything stamped within the shift's margin (device clocks out of step)."""
        window = {"since_ms": shift.start_ms - SHIFT_MARGIN_MS,
                  "until_ms": shift.end_ms + SHIFT_MARGIN_MS}  # fmt: skip
        stored = cls(defaultdict(list), defaultdict(list), defaultdict(list))
        for f in store.fixes(**window):
            stored.fixes[f.device_id].append(f)
        for e in store.events(**window):
            if e.kind in ("breach", "clear"):
                stored.breaches[e.device_id].append(e)
        for a in store.device_alarms(**window):
            stored.own_alarms[a.device_id].append(a)
        return stored


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


def _worn(number: int, shift: ShiftRecord, d: WornDevice, profile, site: Site, fixes: list,
          breaches: list, truth: dict[str, np.ndarray], t_rows: np.ndarray, excursions: list,
          sent: dict | None, approved_rate_hz: float) -> Worn:  # fmt: skip
    """One device worn on one shift, with everything it is scored on.

    Its located fixes in the reference frame, its truth, its true excursions, and
    its breach alerts as the breach log and the timeline of the shift give them.
    """
    located = _located(fixes, site)
    sends = _Sends.of(fixes, sent, d.device_id)
    alerts = _alerts(fixes, breaches, sends, site, TIME_RESOLUTION_MS[profile.format],
                     shift.end_ms, shift.hops_measured)  # fmt: skip
    distinct = (
        np.unique(np.stack([sends.seq, sends.fix_ms], axis=1), axis=0)
        if sends.seq.size
        else sends.seq
    )
    return Worn(
        shift=number,
        run_id=shift.run_id,
        scenario=shift.scenario,
        week=int(shift.week),
        date=shift.date,
        night=bool(shift.night),
        device_id=d.device_id,
        supplier=d.supplier,
        wearer=d.wearer,
        firmware=d.firmware,
        configuration=d.configuration,
        configuration_hash=d.configuration_hash,
        rate_hz=float(profile.fix_rate_hz),
        approved_rate_hz=approved_rate_hz,
        start_ms=int(shift.start_ms),
        end_ms=int(shift.end_ms),
        **located,
        truth_ms=truth["time_ms"][t_rows],
        truth_x_m=truth["x_m"][t_rows],
        truth_y_m=truth["y_m"][t_rows],
        truth_distance_m=truth["distance_m"][t_rows],
        excursion_start_ms=np.array([e.start_ms for e in excursions], dtype=np.int64),
        excursion_end_ms=np.array([e.end_ms for e in excursions], dtype=np.int64),
        excursion_depth_m=np.array([e.depth_m for e in excursions], dtype=np.float64),
        **alerts,
        uplink_ms=(sends.send_ms - sends.true_ms).astype(np.float64),
        sent_fix_ms=distinct[:, 1] if sends.seq.size else sends.fix_ms,
    )


def _located(fixes: list, site: Site) -> dict[str, np.ndarray]:
    """The device's located fixes (an RFID read is not a position) in the reference site's
    frame, and each one's measured decision time."""
    located = [f for f in fixes if f.fix_type != "RFID"]
    fix_ms = np.array([f.fix_ms for f in located], dtype=np.int64)
    lat = np.array([f.lat for f in located], dtype=np.float64)
    lon = np.array([f.lon for f in located], dtype=np.float64)
    x, y = site.locate(lat, lon, "ETRS89", fix_ms) if fix_ms.size else (lat, lon)
    return {
        "fix_ms": fix_ms,
        "x_m": np.asarray(x),
        "y_m": np.asarray(y),
        "decide_ms": np.array([f.decided_ms - f.received_ms for f in located], dtype=np.float64),
    }


@dataclass(frozen=True)
class _Sends:
    """Every fix the device sent: its sequence number, fix time, send time, and the time
    it was true."""

    seq: np.ndarray
    fix_ms: np.ndarray
    send_ms: np.ndarray
    true_ms: np.ndarray

    @classmethod
    def of(cls, fixes: list, sent: dict | None, device_id: str) -> _Sends:
        """From the simulator's record of sends; on a real shift nothing records a send, so
        the fix's arrival at the platform stands in for it, on the device's own clock (its
        clock error shows in the uplink)."""
        if sent is None:
            fix_ms = np.array([f.fix_ms for f in fixes], dtype=np.int64)
            return cls(
                np.array([f.seq for f in fixes], dtype=np.int64),
                fix_ms,
                np.array([f.received_ms for f in fixes], dtype=np.int64),
                fix_ms,
            )
        mine = sent["device"] == device_id
        return cls(sent["seq"][mine], sent["fix_ms"][mine], sent["send_ms"][mine],
                   sent["true_ms"][mine])  # fmt: skip


def _alerts(fixes: list, breaches: list, sends: _Sends, site: Site, resolution_ms: int,
            end_ms: int, live: bool) -> dict[str, np.ndarray]:  # fmt: skip
    """The device's breach alerts: when each was raised on the shift's timeline, when it
    ended, what the breach log gives (time and position), and its measured publish hop.

    A breach's alert time on the shift's timeline is when the device sent the fix that
    raised it (the simulated uplink), plus the measured hops receive -> decide ->
    publish when they were `live`; on a real shift the fix's arrival stands in for its
    send, so the alert's time is when it was really published.
    """
    # the first send of the fix that raised each breach: a format that cuts the fix time
    # (OwnTracks to the second, NMEA to the centisecond) is matched within its resolution
    order = np.lexsort((sends.send_ms, sends.fix_ms))
    times, first = np.unique(sends.fix_ms[order], return_index=True)
    first_send = sends.send_ms[order][first]
    stored = {f.fix_ms: f for f in fixes}
    # a breach lasts until the device's next clear, or its next breach (after a lapse
    # in protection a breach is raised afresh without a clear between), or the shift end
    ends = np.sort(np.array([e.event_ms for e in breaches if e.kind in ("clear", "breach")],
                            np.int64))  # fmt: skip
    matched = [stored[e.event_ms] for e in breaches
               if e.kind == "breach" and e.event_ms in stored]  # fmt: skip
    event_ms = np.array([f.fix_ms for f in matched], dtype=np.int64)
    nearest = np.searchsorted(times, event_ms, side="left")
    timed = nearest < times.size
    timed[timed] &= times[nearest[timed]] < event_ms[timed] + resolution_ms
    raised = [(f, k) for f, ok, k in zip(matched, timed, nearest, strict=True) if ok]
    alert_ms, alert_end, publish = [], [], []
    for f, k in raised:
        after = np.searchsorted(ends, f.fix_ms, side="right")
        alert_end.append(int(ends[after]) if after < ends.size else int(end_ms))
        hops = (f.alert_ms if f.alert_ms is not None else f.decided_ms) - f.received_ms
        alert_ms.append(int(first_send[k]) + (hops if live else 0))
        publish.append((f.alert_ms - f.decided_ms) if f.alert_ms is not None else np.nan)
    logged = np.array([f.fix_ms for f, _ in raised], dtype=np.int64)
    x, y = (
        site.locate(np.array([f.lat for f, _ in raised], dtype=np.float64),
                    np.array([f.lon for f, _ in raised], dtype=np.float64), "ETRS89", logged)
        if raised
        else (np.zeros(0), np.zeros(0))
    )  # fmt: skip
    return {
        "alert_ms": np.array(alert_ms, dtype=np.int64),
        "alert_end_ms": np.array(alert_end, dtype=np.int64),
        "alert_logged_ms": logged,
        "alert_x_m": np.array(x, dtype=np.float64),
        "alert_y_m": np.array(y, dtype=np.float64),
        "publish_ms": np.array(publish, dtype=np.float64),
    }
