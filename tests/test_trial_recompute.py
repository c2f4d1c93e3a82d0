"""The trial report's headline figures, recomputed from the store by an independent path.

A trial is run through the real pipeline (embedded broker, ingest, SQLite), then every
headline figure of `report/summary.json` is worked out again from what the run left
behind, read directly: `trial.sqlite` with sqlite3, `manifest.json` with json,
`sent/*.npz` with numpy, the trial file with tomllib, and positions put into metres
with pyproj (azimuthal equidistant on ETRS89/GRS80, centred where the site's frame
is). Nothing here calls the scoring code (`trials.*`, `store`); each figure is
plain code written from its definition (README, trials/metrics.py), so a report
that says the wrong thing disagrees with it.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from pyproj import Geod, Transformer

from tests.test_trial import SCENARIO, trial_text
from trackfence.cli import main
from trials.definition import load_trial

#: Fixes and events stamped up to an hour either side of a shift belong to it.
MARGIN_MS = 3_600_000
#: How finely each wire format carries a fix time (the stored time is cut down to it).
RESOLUTION_MS = {"native": 1, "json": 1, "owntracks": 1000, "nmea": 10}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("trial")
    scenario = folder / "past-the-limit.toml"
    scenario.write_text(SCENARIO)
    path = folder / "failure-modes.toml"
    path.write_text(trial_text(scenario, repeats=3))
    out = tmp_path_factory.mktemp("run")
    assert main(["trial", "run", str(path), "--out", str(out), "--formats", "json"]) == 0
    return path, out


def _doctor(run: tuple[Path, Path], copy: Path) -> Path:
    """A copy of the run whose store plants what the real run never shows, re-scored.

    The walker's device (good-1) on the first shift loses the fresh breach of its second
    crossing and gains one 40 s before that crossing's window opens, still on when it
    opens (a saturated crossing, a false alert and false-alarm time); the lookout's device
    (good-2), truly safe all shift, gains a breach that lasts to the end of the shift.
    """
    trial_path, out = run
    shutil.copytree(out, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    first = manifest["shifts"][0]
    db = sqlite3.connect(copy / "trial.sqlite")

    def plant(device: str, near_ms: int) -> None:
        # a breach raised by a fix the device really sent and ingest really stored
        seq, fix_ms, site, distance = db.execute(
            "SELECT seq, fix_time, site, distance_m FROM fixes WHERE device_id = ? "
            "AND fix_time >= ? ORDER BY fix_time LIMIT 1",
            (device, near_ms),
        ).fetchone()
        db.execute(
            "INSERT INTO events (device_id, kind, event_time, seq, site, fence, distance_m) "
            "VALUES (?, 'breach', ?, ?, ?, NULL, ?)",
            (device, fix_ms, seq, site, distance),
        )

    walker = "good/good-1"
    second = db.execute(
        "SELECT start_time, end_time FROM true_excursions WHERE run_id = ? AND device_id = ? "
        "ORDER BY start_time LIMIT 1 OFFSET 1",
        (first["run_id"], walker),
    ).fetchone()
    deleted = db.execute(
        "DELETE FROM events WHERE device_id = ? AND kind = 'breach' "
        "AND event_time BETWEEN ? AND ?",
        (walker, second[0] - 5000, second[1]),
    ).rowcount
    assert deleted == 1
    plant(walker, second[0] - 45_000)
    plant("good/good-2", first["start_ms"] + 300_000)
    db.commit()
    db.close()
    manifest["db"] = f"sqlite:///{copy / 'trial.sqlite'}"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert main(["trial", "score", str(trial_path), "--out", str(copy), "--formats", "json"]) == 0
    return copy


@pytest.fixture(scope="module")
def doctored(run, tmp_path_factory) -> tuple[Path, Path]:
    return run[0], _doctor(run, tmp_path_factory.mktemp("doctored") / "run")


@pytest.fixture(scope="module", params=["as run", "doctored"])
def case(request) -> tuple[Path, Path]:
    return request.getfixturevalue("run" if request.param == "as run" else "doctored")


@pytest.fixture(scope="module")
def report(case) -> dict:
    return json.loads((case[1] / "report" / "summary.json").read_text())


def _site_frame(site_file: str):
    """The site's own frame (the project's loader is used for its centre, and nothing else)."""
    from loading.site_files import load_site

    return load_site(site_file).frame


def _aeqd(lat0: float, lon0: float) -> Transformer:
    """ETRS89 lon/lat to metres east/north of (lat0, lon0), azimuthal equidistant on GRS80."""
    return Transformer.from_crs(
        "+proj=longlat +ellps=GRS80 +no_defs",
        f"+proj=aeqd +lat_0={lat0!r} +lon_0={lon0!r} +ellps=GRS80 +units=m +no_defs",
        always_xy=True,
    )


@dataclass
class Crossing:
    start_ms: int
    end_ms: int
    first_alert_ms: int | None = None  # the earliest fresh breach in its window
    saturated: bool = False


@dataclass
class Supplier:
    errors: list[float] = field(default_factory=list)
    crossings: list[Crossing] = field(default_factory=list)
    breaches: int = 0
    false_alerts: int = 0
    device_ms: int = 0  # total device-shift time
    breach_ms: int = 0
    false_alarm_ms: int = 0
    received: int = 0
    expected: int = 0


@dataclass
class Recomputed:
    suppliers: dict[str, Supplier]
    lead_ms: int
    checked_points: int  # fixes whose local metres were checked against the site's frame
    unmatched: list[str]  # breaches with no stored or sent fix behind them


@pytest.fixture(scope="module")
def recomputed(case) -> Recomputed:
    return _recompute(*case)


def _recompute(trial_path: Path, out: Path) -> Recomputed:
    manifest = json.loads((out / "manifest.json").read_text())
    scoring = load_trial(trial_path).scoring
    lead_ms = round(scoring.alert_lead_s * 1000)
    allowance_ms = round(scoring.clear_allowance_s * 1000)
    approved = {
        key: float(s["approved_configuration"]["fix_rate_hz"])
        for key, s in tomllib.loads(trial_path.read_text())["supplier"].items()
    }
    db = sqlite3.connect(out / "trial.sqlite")
    suppliers: dict[str, Supplier] = defaultdict(Supplier)
    unmatched: list[str] = []
    checked = 0
    frames: dict[str, tuple[Transformer, object]] = {}
    for shift in manifest["shifts"]:
        run_id, start, end = shift["run_id"], int(shift["start_ms"]), int(shift["end_ms"])
        site_file = shift["site_file"]
        if site_file not in frames:
            frame = _site_frame(site_file)
            frames[site_file] = (_aeqd(frame.lat0_deg, frame.lon0_deg), frame)
        to_metres, site_frame = frames[site_file]
        sent = np.load(out / "sent" / f"{run_id}.npz")
        sent_device, sent_fix, sent_send = sent["device"], sent["fix_ms"], sent["send_ms"]
        for d in shift["devices"]:
            device, mine = d["device_id"], suppliers[d["supplier"]]
            mine.device_ms += end - start

            # 1. accuracy: every located fix against the truth at its own fix time
            fixes = db.execute(
                "SELECT fix_time, lat, lon, fix_type, source_format FROM fixes "
                "WHERE device_id = ? AND fix_time BETWEEN ? AND ?",
                (device, start - MARGIN_MS, end + MARGIN_MS),
            ).fetchall()
            truth = np.array(
                db.execute(
                    "SELECT time, x_m, y_m FROM truth WHERE run_id = ? AND device_id = ? "
                    "ORDER BY time",
                    (run_id, device),
                ).fetchall(),
                dtype=np.float64,
            )
            assert truth.shape[0] > 1, (run_id, device)
            located = [f for f in fixes if f[3] != "RFID"]
            t = np.array([f[0] for f in located], dtype=np.float64)
            lat = np.array([f[1] for f in located], dtype=np.float64)
            lon = np.array([f[2] for f in located], dtype=np.float64)
            x, y = to_metres.transform(lon, lat)
            if checked < 200 and t.size:  # my metres are the site's metres
                fx, fy = site_frame.from_etrs89(lat[:20], lon[:20])
                assert np.max(np.hypot(np.asarray(x)[:20] - fx, np.asarray(y)[:20] - fy)) < 1e-6
                checked += min(20, t.size)
            for ti, xi, yi in zip(t, x, y, strict=True):
                if truth[0, 0] <= ti <= truth[-1, 0]:
                    tx = np.interp(ti, truth[:, 0], truth[:, 1])
                    ty = np.interp(ti, truth[:, 0], truth[:, 2])
                    mine.errors.append(math.hypot(xi - tx, yi - ty))

            # 7. availability, owed at the certificate's fix rate
            times = {f[0] for f in fixes if start <= f[0] <= end}
            expected = max(1, round((end - start) / 1000 * approved[d["supplier"]]))
            mine.expected += expected
            mine.received += min(len(times), expected)

            # 3. breaches on the shift's timeline: the first send of the fix that raised each
            formats = {f[0]: f[4] for f in fixes}
            events = db.execute(
                "SELECT kind, event_time FROM events WHERE device_id = ? "
                "AND event_time BETWEEN ? AND ? AND kind IN ('breach', 'clear') "
                "ORDER BY event_time, seq",
                (device, start - MARGIN_MS, end + MARGIN_MS),
            ).fetchall()
            here = sent_device == device
            s_fix, s_send = sent_fix[here], sent_send[here]
            breaches = []  # (time on the shift timeline, end: the next clear/breach event)
            for i, (kind, event_ms) in enumerate(events):
                if kind != "breach":
                    continue
                if event_ms not in formats:
                    unmatched.append(f"{run_id} {device} breach at {event_ms}: no stored fix")
                    continue
                # the stored time is the sent one cut to the format's resolution
                match = (s_fix >= event_ms) & (s_fix < event_ms + RESOLUTION_MS[formats[event_ms]])
                if not match.any():
                    unmatched.append(f"{run_id} {device} breach at {event_ms}: never sent")
                    continue
                fix = s_fix[match].min()
                alert = int(s_send[match & (s_fix == fix)].min())
                later = [e for _, e in events[i + 1 :] if e > event_ms]
                breaches.append((alert, later[0] if later else end))
            mine.breaches += len(breaches)

            # 2-4. true crossings, each detected by a fresh alert, or saturated, or missed
            crossings = [
                Crossing(int(s), int(e))
                for s, e in db.execute(
                    "SELECT start_time, end_time FROM true_excursions WHERE run_id = ? "
                    "AND device_id = ? ORDER BY start_time",
                    (run_id, device),
                ).fetchall()
            ]
            for c in crossings:
                opens = c.start_ms - lead_ms
                fresh = [a for a, _ in breaches if opens <= a <= c.end_ms]
                if fresh:
                    c.first_alert_ms = min(fresh)
                else:
                    c.saturated = any(a < opens and until > opens for a, until in breaches)
            mine.crossings += crossings

            # 5. false alerts: breaches in no crossing's window
            mine.false_alerts += sum(
                1
                for a, _ in breaches
                if not any(c.start_ms - lead_ms <= a <= c.end_ms for c in crossings)
            )

            # 6. time in breach, and in breach outside every window and its clearing allowance,
            # one flag per millisecond of the shift
            in_breach = np.zeros(end - start, dtype=bool)
            for a, until in breaches:
                lo, hi = min(max(a, start), end), min(max(until, start), end)
                in_breach[lo - start : hi - start] = True
            justified = np.zeros(end - start, dtype=bool)
            for c in crossings:
                lo = min(max(c.start_ms - lead_ms, start), end)
                hi = min(max(c.end_ms + allowance_ms, start), end)
                justified[lo - start : hi - start] = True
            mine.breach_ms += int(in_breach.sum())
            mine.false_alarm_ms += int((in_breach & ~justified).sum())
    db.close()
    assert checked > 0
    return Recomputed(dict(suppliers), lead_ms, checked, unmatched)


def _mismatches(recomputed: Recomputed, compare) -> list[str]:
    wrong = []
    for key, mine in recomputed.suppliers.items():
        for name, theirs, ours, tolerance in compare(key, mine):
            ok = (
                theirs == ours
                if tolerance is None
                else theirs is not None and abs(theirs - ours) <= tolerance
            )
            if not ok:
                wrong.append(f"{key} {name}: report {theirs!r}, recomputed {ours!r}")
    return wrong


def _alerting(report: dict, supplier: str) -> dict:
    return report["sections"]["alerting"]["figures"][supplier]


def test_local_metres_are_the_site_frames_and_a_metre_is_a_metre(run):
    manifest = json.loads((run[1] / "manifest.json").read_text())
    frame = _site_frame(manifest["shifts"][0]["site_file"])
    lat0, lon0 = frame.lat0_deg, frame.lon0_deg
    mine = _aeqd(lat0, lon0)
    geod = Geod(ellps="GRS80")
    lat = lat0 + np.array([0.0, 0.003, -0.004, 0.0021, 0.01])
    lon = lon0 + np.array([0.0, 0.002, -0.005, -0.0033, 0.0])
    x, y = mine.transform(lon, lat)
    fx, fy = frame.from_etrs89(lat, lon)
    assert np.max(np.hypot(x - fx, y - fy)) < 1e-6
    # azimuthal equidistant: the distance from the centre is the geodesic one
    _, _, geodesic = geod.inv(np.full(lon.size, lon0), np.full(lat.size, lat0), lon, lat)
    np.testing.assert_allclose(np.hypot(x, y), geodesic, atol=1e-6)


def test_every_breach_is_traced_to_a_stored_and_a_sent_fix(recomputed):
    assert recomputed.unmatched == []
    assert recomputed.checked_points > 0
    assert all(s.breaches > 0 for s in recomputed.suppliers.values())


def test_accuracy_agrees(report, recomputed):
    def compare(key, mine):
        accuracy = report["sections"]["accuracy"][key]
        errors = np.array(mine.errors)
        yield "fixes", accuracy["fixes"], errors.size, None
        yield "cep50_m", accuracy["cep50_m"], float(np.percentile(errors, 50)), 1e-6
        yield "r95_m", accuracy["r95_m"], float(np.percentile(errors, 95)), 1e-6

    assert _mismatches(recomputed, compare) == []
    scored = sum(len(s.errors) for s in recomputed.suppliers.values())
    assert report["trial"]["fixes_scored"] == scored
    # the truth and the fixes are in one frame: a 5 cm receiver measures as one
    assert np.percentile(recomputed.suppliers["good"].errors, 50) < 0.1


def test_true_crossings_agree(report, recomputed):
    def compare(key, mine):
        yield "excursions", _alerting(report, key)["excursions"], len(mine.crossings), None
        yield "true_crossings", report["trial"]["true_crossings"][key], len(mine.crossings), None

    assert _mismatches(recomputed, compare) == []


def test_detection_and_time_to_alert_agree(report, recomputed):
    def compare(key, mine):
        hit = [c for c in mine.crossings if c.first_alert_ms is not None]
        yield "detected", _alerting(report, key)["detected"], len(hit), None
        if hit:
            p50 = float(np.percentile([(c.first_alert_ms - c.start_ms) / 1000 for c in hit], 50))
            yield "time_to_alert_p50_s", _alerting(report, key)["time_to_alert_p50_s"], p50, 1e-6

    assert _mismatches(recomputed, compare) == []


def test_saturated_and_missed_agree(report, recomputed):
    def compare(key, mine):
        saturated = sum(c.saturated for c in mine.crossings)
        missed = sum(c.first_alert_ms is None and not c.saturated for c in mine.crossings)
        yield "saturated", _alerting(report, key)["saturated"], saturated, None
        yield "missed", _alerting(report, key)["missed"], missed, None

    assert _mismatches(recomputed, compare) == []


def test_false_alerts_agree(report, recomputed):
    def compare(key, mine):
        figures = _alerting(report, key)
        hours = mine.device_ms / 3_600_000
        yield "false_alerts", figures["false_alerts"], mine.false_alerts, None
        yield "device_hours", figures["device_hours"], hours, 1e-12
        yield (
            "false_alerts_per_device_hour",
            figures["false_alerts_per_device_hour"],
            mine.false_alerts / hours,
            1e-12,
        )

    assert _mismatches(recomputed, compare) == []


def test_false_alarm_time_agrees(report, recomputed):
    def compare(key, mine):
        figures = _alerting(report, key)
        yield "breach_share", figures["breach_share"], mine.breach_ms / mine.device_ms, 1e-9
        share = mine.false_alarm_ms / mine.device_ms
        yield "false_alarm_share", figures["false_alarm_share"], share, 1e-9

    assert _mismatches(recomputed, compare) == []


def test_availability_agrees(report, recomputed):
    def compare(key, mine):
        figures = report["sections"]["availability"]["figures"][key]
        yield "expected_fixes", figures["expected_fixes"], mine.expected, None
        yield "received_fixes", figures["received_fixes"], mine.received, None
        yield "availability", figures["availability"], mine.received / mine.expected, 1e-12

    assert _mismatches(recomputed, compare) == []


def test_no_crossing_is_credited_to_an_alarm_already_on(report, recomputed):
    for key, mine in recomputed.suppliers.items():
        for c in mine.crossings:
            if c.first_alert_ms is not None:
                # the detecting alert started in the window, not before it opened
                assert c.start_ms - recomputed.lead_ms <= c.first_alert_ms <= c.end_ms, (key, c)
                assert not c.saturated
        # and the report credits no more detections than fresh alerts give
        fresh = sum(c.first_alert_ms is not None for c in mine.crossings)
        assert _alerting(report, key)["detected"] == fresh, key


def test_the_doctored_store_gives_the_figures_something_to_disagree_on(doctored):
    # the run itself has no saturated crossing and no false alert: the copy has both, so
    # the agreement above is not merely zero against zero
    doc = json.loads((doctored[1] / "report" / "summary.json").read_text())
    good = _alerting(doc, "good")
    assert (good["excursions"], good["detected"], good["saturated"]) == (9, 8, 1)
    assert good["false_alerts"] == 2
    # about 35 s before the walker's window opened and 180 s of the lookout's shift
    assert 200 < good["false_alarm_share"] * good["device_hours"] * 3600 < 230
    # the other suppliers are untouched
    assert _alerting(doc, "fence")["false_alerts"] == 0
