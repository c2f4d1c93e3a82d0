"""The simulator: its error models produce what they claim, and its truth is honest."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from devices.sim.generate import simulate
from devices.sim.noise import gauss_markov, sigma_for_cep50
from devices.sim.profiles import SupplierProfile
from devices.sim.scenario import ScenarioError, load_scenario, scenario_from_mapping
from loading.site_files import load_site
from tests.conftest import ROOT

SCENARIO = ROOT / "examples" / "scenarios" / "adjacent-open-line.toml"


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(SCENARIO)


@pytest.fixture(scope="module")
def site(scenario):
    return load_site(scenario.site_file)


@pytest.fixture(scope="module")
def run(scenario, site):
    return simulate(scenario, site)


def test_a_profile_of_half_a_metre_cep50_gives_that_median_over_a_long_run(scenario, site):
    long = replace(
        scenario,
        duration_s=6 * 3600,
        suppliers={
            **scenario.suppliers,
            "gnssco": replace(scenario.suppliers["gnssco"], cep50_m=0.5),
        },
    )
    sim = simulate(long, site)
    f = sim.fixes
    mine = f.worker == 1
    truth_x = np.interp(f.true_ms[mine], sim.truth.t_ms, sim.truth.x_m[1])
    truth_y = np.interp(f.true_ms[mine], sim.truth.t_ms, sim.truth.y_m[1])
    error = np.hypot(f.x_m[mine] - truth_x, f.y_m[mine] - truth_y)
    assert np.median(error) == pytest.approx(0.5, rel=0.10)


def test_the_error_is_correlated_in_time_not_white():
    rng = np.random.default_rng(5)
    a = np.exp(-1 / 20)  # 1 Hz, 20 s correlation time
    x = gauss_markov(rng, (4, 50_000), sigma_for_cep50(1.0), a)
    lag1 = np.mean([np.corrcoef(row[:-1], row[1:])[0, 1] for row in x])
    assert lag1 == pytest.approx(a, abs=0.01)
    assert np.median(np.hypot(x[0], x[1])) == pytest.approx(1.0, rel=0.1)


def test_excursion_labels_match_the_truth_geometry(run):
    ex = run.excursions
    # the scenario scripts 7 steps off the cess for the cess walker and 8 drifts into the
    # six-foot for the absorbed worker: each is one excursion, none split or merged
    assert list(ex.worker) == [0] * 7 + [1] * 8
    t = run.truth.t_ms
    for w, start, end, depth in zip(ex.worker, ex.start_ms, ex.end_ms, ex.depth_m, strict=True):
        before, first = np.searchsorted(t, start) - 1, np.searchsorted(t, start)
        assert run.truth.inside[w, before] and not run.truth.inside[w, first]
        last = np.searchsorted(t, end) - 1
        assert not run.truth.inside[w, last] and run.truth.inside[w, last + 1]
        assert depth == pytest.approx(-run.truth.distance_m[w, first : last + 1].min())
        # long and deep enough for a 1 Hz device to alert while the wearer is outside
        assert 8_000 <= end - start <= 25_000 and 0.4 < depth < 3.2
    # the first drift, to 2.51 m left of the blocked line, reaches into the Up Fast danger
    # zone (its edge is 3.4 - 2.79 = 0.61 m left of the blocked line): ~1.9 m deep
    assert 1.7 < ex.depth_m[ex.worker == 1][0] < 2.1


def test_the_same_seed_gives_the_same_fixes_and_another_seed_does_not(scenario, site, run):
    again = simulate(scenario, site)
    for name in ("seq", "send_ms", "x_m", "y_m", "accuracy_m"):
        np.testing.assert_array_equal(getattr(run.fixes, name), getattr(again.fixes, name))
    other = simulate(replace(scenario, seed=scenario.seed + 1), site)
    assert not np.array_equal(run.fixes.x_m, other.fixes.x_m)


def test_devices_drop_duplicate_reorder_and_claim_what_their_profile_says(scenario, site):
    # latency jitter reorders fixes too (as networks do); switch it off to see reorder_rate
    steady = replace(scenario.suppliers["gnssco"], latency_jitter_ms=0.0)
    long = replace(
        scenario, duration_s=3 * 3600, suppliers={**scenario.suppliers, "gnssco": steady}
    )
    f = simulate(long, site).fixes
    acme = f.worker == 0
    expected = 3 * 3600  # 1 Hz
    unique = np.unique(f.seq[acme]).size
    assert 1 - unique / expected == pytest.approx(0.01, abs=0.004)  # dropped
    assert f.seq[acme].size / unique - 1 == pytest.approx(0.005, abs=0.003)  # duplicated
    gn = f.worker == 1
    out_of_order = np.count_nonzero(np.diff(f.seq[gn]) < 0)
    assert out_of_order / gn.sum() == pytest.approx(0.01, abs=0.004)
    # gnssco claims 0.6 of its true 68 % radius
    sigma = 0.8 / np.sqrt(2 * np.log(2))
    assert np.unique(f.accuracy_m[gn]) == pytest.approx(sigma * np.sqrt(-2 * np.log(0.32)) * 0.6)
    assert (f.send_ms >= f.true_ms).all()  # nothing is published before it is measured


def base_mapping() -> dict:
    return {
        "scenario": {
            "name": "t",
            "site": str(ROOT / "examples/sites/ecm1-kings-cross.toml"),
            "duration_s": 60,
        },
        "supplier": {"acme": {"fix_rate_hz": 1}},
        "worker": [
            {
                "name": "w",
                "device": "acme/a1",
                "along_m": 430,
                "lateral_m": -3.0,
                "steps": [{"do": "walk", "distance_m": 20, "speed_mps": 1.4}],
            }
        ],
    }


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        (
            lambda d: d["worker"][0]["steps"][0].update(speed_mps=9.0),
            "worker 'w'.steps[0].speed_mps",
            "faster than a person can walk",
        ),
        (
            lambda d: d["worker"][0].update(device="nobody/a1"),
            "worker 'w'.device",
            "unknown supplier",
        ),
        (
            lambda d: d["worker"][0]["steps"][0].update({"do": "fly"}),
            "worker 'w'.steps[0].do",
            "unknown step",
        ),
        (
            lambda d: d["supplier"]["acme"].update(fix_rate_hz=-1),
            "[supplier.acme].fix_rate_hz",
            "non-negative",
        ),
        (lambda d: d["supplier"]["acme"].update(colour="red"), "[supplier.acme].colour", "unknown"),
        (lambda d: d["scenario"].pop("duration_s"), "[scenario].duration_s", "required"),
    ],
)
def test_bad_scenarios_name_the_worker_and_field(change, where, words):
    data = base_mapping()
    change(data)
    with pytest.raises(ScenarioError) as err:
        scenario_from_mapping(data)
    assert err.value.where == where and words in str(err.value)


def test_walking_off_the_line_or_naming_an_unknown_line_is_an_error(site):
    data = base_mapping()
    data["worker"][0]["steps"][0]["distance_m"] = 50_000
    with pytest.raises(ScenarioError, match="walks off the end of the line"):
        simulate(scenario_from_mapping(data), site)
    data = base_mapping()
    data["scenario"]["line"] = "Down Slow"
    with pytest.raises(ScenarioError, match="no line 'Down Slow'"):
        simulate(scenario_from_mapping(data), site)


def test_profiles_default_sensibly():
    assert SupplierProfile().fix_type == "RTK fixed"


def test_a_scenario_published_through_the_broker_reaches_ingest_end_to_end(
    tmp_path, mosquitto, timescaledb, scenario, site
):
    import json
    import time

    from devices.sim.publish import publish
    from ingest.service import IngestService
    from ingest.settings import load_settings
    from store.timescale import TimescaleStore
    from tests.devices import Listener, wait_until

    db = timescaledb.fresh_database()
    name = db.rsplit("/", 1)[1]
    config = tmp_path / "ingest.toml"
    config.write_text(
        f'[ingest]\nbroker = "{mosquitto.url}"\ndb = "{db}"\nclient_id = "sim-e2e-{name}"\n'
        f'spool = "{tmp_path / "spool"}"\n[[site]]\nfile = "{scenario.site_file}"\n'
        'devices = ["*"]\n[decisions]\nlost_after_s = 60\n'
    )
    svc = IngestService(load_settings(config))
    svc.start()
    assert svc.connected.wait(10)
    time.sleep(0.3)
    alerts = Listener(mosquitto.port, "trackside/v1/gnssco/gn-0207/alert")
    sim = simulate(scenario, site)
    start_ms = time.time_ns() // 1_000_000 - round(scenario.duration_s * 1000)
    try:
        done = publish(sim, mosquitto.url, start_ms)
        unique = len(
            {(int(w), int(s)) for w, s in zip(sim.fixes.worker, sim.fixes.seq, strict=True)}
        )
        store = TimescaleStore(db)
        assert wait_until(lambda: store.counts()["fixes"] == unique, 60)
        assert done.messages == len(sim.fixes) > unique  # duplicates were sent, stored once
        # the true excursion was alerted on the worker's own device
        breach = [json.loads(p) for _, p, _ in alerts.messages if json.loads(p)["kind"] == "breach"]
        assert breach, "the absorbed worker's excursion raised no alert"
        true_start = start_ms + int(sim.excursions.start_ms[sim.excursions.worker == 1][0])
        # safety first: the alarm may come before the true crossing (the uncertainty circle
        # reaches the danger zone first; this worker drifts at ~0.4 m/s), never long after
        assert -20_000 < breach[0]["event_ms"] - true_start < 5_000
        store.close()
    finally:
        alerts.close()
        svc.stop()


LIBRARY = sorted((ROOT / "examples" / "scenarios").glob("*.toml"))


def test_the_standard_scenario_library_is_complete_and_runs():
    names = {p.stem for p in LIBRARY}
    assert {
        "plain-line",
        "cutting-and-embankment",
        "under-overbridge",
        "tunnel-approach",
        "station-platform-end",
        "switches-and-crossings",
        "adjacent-open-line",
        "night-working",
    } <= names
    for path in LIBRARY:
        scenario = load_scenario(path)
        sim = simulate(scenario, load_site(scenario.site_file))
        assert len(sim.fixes) > 0, path.name


def test_a_tunnel_has_no_fixes_inside_and_a_bridge_makes_errors_larger():
    tunnel = load_scenario(ROOT / "examples/scenarios/tunnel-approach.toml")
    sim = simulate(tunnel, load_site(tunnel.site_file))
    f, t = sim.fixes, sim.truth
    span = next(s for s in tunnel.structures if s.kind == "tunnel")
    along = np.interp(f.true_ms[f.worker == 0], t.t_ms, t.along_m[0])
    assert not ((along > span.from_along_m + 0.5) & (along < span.to_along_m - 0.5)).any()
    assert (along > span.from_along_m - 50).any()  # it did report up to the portal
    bridge = load_scenario(ROOT / "examples/scenarios/under-overbridge.toml")
    sim = simulate(replace(bridge, duration_s=900), load_site(bridge.site_file))
    f, t = sim.fixes, sim.truth
    mine = f.worker == 0
    tx = np.interp(f.true_ms[mine], t.t_ms, t.x_m[0])
    ty = np.interp(f.true_ms[mine], t.t_ms, t.y_m[0])
    along = np.interp(f.true_ms[mine], t.t_ms, t.along_m[0])
    span = bridge.structures[0]
    under = (along >= span.from_along_m) & (along <= span.to_along_m)
    error = np.hypot(f.x_m[mine] - tx, f.y_m[mine] - ty)
    assert under.any() and (~under).any()
    assert np.median(error[under]) > 2 * np.median(error[~under])
    assert set(f.fix_type[mine][under]) <= {"RTK float", "DGPS", "SBAS", "3D"}
    assert f.battery_pct[mine][-1] < f.battery_pct[mine][0]  # the battery drains


def test_a_firmware_version_that_behaves_differently_is_simulated_as_such(site):
    data = base_mapping()
    data["scenario"]["duration_s"] = 3600
    data["supplier"]["acme"].update(
        cep50_m=0.2, firmware="2.4.1", firmware_versions={"2.5.0": {"cep50_m": 0.6}}
    )
    data["worker"].append(
        {
            "name": "v",
            "device": "acme/a2",
            "along_m": 500,
            "lateral_m": -3.0,
            "firmware": "2.5.0",
            "steps": [{"do": "stand", "seconds": 3600}],
        }
    )
    scenario = scenario_from_mapping(data)
    assert scenario.profile(scenario.workers[1]).firmware == "2.5.0"
    sim = simulate(scenario, site)
    f, t = sim.fixes, sim.truth
    medians = []
    for w in (0, 1):
        mine = f.worker == w
        tx = np.interp(f.true_ms[mine], t.t_ms, t.x_m[w])
        ty = np.interp(f.true_ms[mine], t.t_ms, t.y_m[w])
        medians.append(np.median(np.hypot(f.x_m[mine] - tx, f.y_m[mine] - ty)))
    assert medians[1] > 2 * medians[0]
    data["worker"][1]["firmware"] = "9.9.9"
    with pytest.raises(ScenarioError, match=r"no firmware version '9\.9\.9'"):
        scenario_from_mapping(data)


def test_rfid_tags_are_read_only_in_range_at_their_reader_less_misses(site):
    data = base_mapping()
    data["scenario"]["duration_s"] = 1800
    data["supplier"] = {"tagco": {"technology": "RFID", "fix_rate_hz": 2, "latency_ms": 50}}
    data["rfid_reader"] = [
        {"id": "gate-1", "along_m": 450, "lateral_m": -3.0, "range_m": 2.0, "miss_rate": 0.1},
        {"id": "gate-2", "along_m": 600, "lateral_m": -3.0, "range_m": 2.0, "miss_rate": 0.1},
    ]
    data["worker"] = [
        {
            "name": "tag",
            "device": "tagco/t1",
            "along_m": 430,
            "lateral_m": -3.0,
            "steps": [{"do": "walk", "distance_m": 200, "speed_mps": 0.2}],
        }
    ]
    scenario = scenario_from_mapping(data)
    sim = simulate(scenario, site)
    f, t = sim.fixes, sim.truth
    assert set(f.reader) == {"gate-1", "gate-2"} and set(f.fix_type) == {"RFID"}
    true_x = np.interp(f.true_ms, t.t_ms, t.x_m[0])
    true_y = np.interp(f.true_ms, t.t_ms, t.y_m[0])
    # every read was of a tag within the reader's range, and places it at the reader
    assert (np.hypot(true_x - f.x_m, true_y - f.y_m) <= 2.0 + 1e-9).all()
    assert (f.accuracy_m == 2.0).all()
    # ~4 m of range at 0.2 m/s = ~20 s in range per reader, at 2 Hz, less 10 % missed
    expected = 2 * 20 * 2 * 0.9
    assert len(f) == pytest.approx(expected, rel=0.25)
    from devices.sim.publish import ingest_readers

    readers = {r.reader_id: r for r in ingest_readers(sim, site)}
    x, y = site.locate(np.array([readers["gate-1"].lat]), np.array([readers["gate-1"].lon]))
    assert x[0] == pytest.approx(t.reader_x_m[0], abs=1e-6)
    assert y[0] == pytest.approx(t.reader_y_m[0], abs=1e-6)


def _write_gpx(path, t_ms, lat, lon):
    import datetime as dt

    points = "".join(
        f'<trkpt lat="{a:.9f}" lon="{o:.9f}"><time>'
        f"{dt.datetime.fromtimestamp(t / 1000, dt.UTC).isoformat(timespec='milliseconds')}"
        f"</time></trkpt>"
        for t, a, o in zip(t_ms, lat, lon, strict=True)
    )
    path.write_text(
        '<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">'
        f"<trk><trkseg>{points}</trkseg></trk></gpx>"
    )


@pytest.mark.parametrize("log_format", ["gpx", "nmea", "csv"])
def test_a_recording_imports_as_a_run_with_the_same_truth(tmp_path, run, site, log_format):
    from devices.sim.publish import payload
    from devices.sim.recordings import import_recording

    start = 1_795_000_000_000  # a recorded shift, November 2026
    truth = run.truth
    every_second = np.arange(0, truth.t_ms.size, 10)
    ref_lat, ref_lon = site.frame.to_etrs89(truth.x_m[1, every_second], truth.y_m[1, every_second])
    reference = tmp_path / "reference.gpx"
    _write_gpx(reference, start + truth.t_ms[every_second], ref_lat, ref_lon)
    f = run.fixes
    mine = np.flatnonzero(f.worker == 1)
    mine = mine[np.unique(f.seq[mine], return_index=True)[1]]  # one of each, in seq order
    log = tmp_path / f"device.{log_format}"
    if log_format == "gpx":
        _write_gpx(log, start + f.fix_ms[mine], f.lat[mine], f.lon[mine])
    elif log_format == "nmea":
        log.write_bytes(
            b"".join(
                payload(
                    "nmea",
                    "gn",
                    int(f.seq[i]),
                    start + int(f.fix_ms[i]),
                    float(f.lat[i]),
                    float(f.lon[i]),
                    float(f.accuracy_m[i]),
                    "DGPS",
                    "1",
                )
                for i in mine
            )
        )
    else:
        log.write_text(
            "time_ms,lat,lon,accuracy_m,seq\n"
            + "".join(
                f"{start + f.fix_ms[i]},{f.lat[i]:.9f},{f.lon[i]:.9f},"
                f"{f.accuracy_m[i]:.3f},{f.seq[i]}\n"
                for i in mine
            )
        )
    rec = import_recording(log, reference, site, "gnssco/gn-0207")
    assert len(rec.fixes) == mine.size
    tolerance = 0.05 if log_format == "nmea" else 1e-3  # NMEA keeps 1e-5 minutes (~2 cm)
    np.testing.assert_allclose(rec.fixes.x_m, f.x_m[mine], atol=tolerance)
    sim_ex, rec_ex = run.excursions, rec.excursions
    theirs = sim_ex.worker == 1  # the recorded device's wearer: the absorbed worker
    assert len(rec_ex.worker) == np.count_nonzero(theirs) == 8
    assert (np.abs(rec_ex.start_ms - sim_ex.start_ms[theirs]) <= 1000).all()  # 1 Hz reference
    np.testing.assert_allclose(rec_ex.depth_m, sim_ex.depth_m[theirs], atol=0.15)


def test_a_bad_recording_is_refused_with_its_line(tmp_path, site):
    from devices.sim.recordings import RecordingError, import_recording

    bad = tmp_path / "device.csv"
    bad.write_text("time_ms,lat,lon\n1795000000000,51.5,-0.1\nsoon,51.5,-0.1\n")
    ref = tmp_path / "ref.csv"
    ref.write_text("time_ms,lat,lon\n1795000000000,51.5,-0.1\n1795000001000,51.5,-0.1\n")
    with pytest.raises(RecordingError, match="line 3"):
        import_recording(bad, ref, site, "acme/a1")


def test_the_sim_commands_run_and_refuse_bad_input(tmp_path):
    import subprocess
    import sys

    def trackfence(*args):
        return subprocess.run(
            [sys.executable, "-m", "trackfence.cli", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )

    db = tmp_path / "trial.sqlite"
    done = trackfence(
        "sim",
        "run",
        str(SCENARIO),
        "--out",
        str(tmp_path / "run"),
        "--db",
        f"sqlite:///{db}",
        "--run-id",
        "r1",
    )
    assert done.returncode == 0, done.stderr
    assert "15 true excursion(s)" in done.stdout
    from store.sqlite import SqliteStore

    kept = SqliteStore(db)
    scenario = load_scenario(SCENARIO)
    assert kept.truth_count("r1") == len(scenario.workers) * scenario.duration_s * 10
    devices = [e.device_id for e in kept.true_excursions("r1")]
    assert sorted(devices) == ["acme/ac-0101"] * 7 + ["gnssco/gn-0207"] * 8
    kept.close()
    lines = (tmp_path / "run" / "excursions.csv").read_text().splitlines()
    assert lines[0] == "worker,device,start_ms,end_ms,depth_m" and len(lines) == 1 + 15
    ref = tmp_path / "ref.csv"
    ref.write_text(
        "time_ms,lat,lon\n1795000000000,51.5577,-0.1088\n1795000010000,51.5578,-0.1088\n"
    )
    log = tmp_path / "log.csv"
    log.write_text(
        "time_ms,lat,lon,accuracy_m\n1795000001000,51.5577,-0.1088,0.5\n"
        "1795000002000,51.5577,-0.1088,0.5\n"
    )
    site = str(ROOT / "examples/sites/ecm1-kings-cross.toml")
    done = trackfence(
        "sim",
        "import",
        str(log),
        "--reference",
        str(ref),
        "--site",
        site,
        "--device",
        "acme/a1",
        "--out",
        str(tmp_path / "rec"),
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "rec" / "truth.csv").exists()
    done = trackfence(
        "sim",
        "import",
        str(log),
        "--reference",
        str(tmp_path / "none.gpx"),
        "--site",
        site,
        "--device",
        "acme/a1",
    )
    assert done.returncode == 2 and "cannot read" in done.stderr
    bad = tmp_path / "bad.toml"
    # (the speed is refused while reading, before the site is looked for)
    bad.write_text(SCENARIO.read_text().replace("speed_mps = 1.4", "speed_mps = 12.0"))
    done = trackfence("sim", "run", str(bad))
    assert done.returncode == 2 and "faster than a person can walk" in done.stderr


def test_track_coordinates_go_back_the_way_they_came():
    from devices.sim.track import TrackFrame

    frame = TrackFrame.from_vertices(np.array([[0.0, 0.0], [100.0, 0.0], [100.0, 50.0]]))
    along = np.array([10.0, 99.0, 120.0, 140.0])
    lateral = np.array([-3.0, -2.0, 1.5, -2.5])  # (near a corner, the inside is ambiguous)
    x, y = frame.to_xy(along, lateral)
    back_along, back_lateral = frame.from_xy(x, y)
    np.testing.assert_allclose(back_along, along, atol=1e-9)
    np.testing.assert_allclose(back_lateral, lateral, atol=1e-9)
    # left of the line is positive: (50, 4) is 4 m to the left of the first leg, heading east
    assert frame.from_xy(np.array([50.0]), np.array([4.0]))[1][0] == pytest.approx(4.0)
