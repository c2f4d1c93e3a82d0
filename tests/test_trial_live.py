"""A real trial: devices worn live through a real Mosquitto into the store, references from
the wearers' reference receivers, the shift log, and the same report as a simulated trial.

The shift is simulated only to have something to wear: its fixes are published at their
real pace (wall-clock times, as on track), decided and kept by ingest, and only then
scored through the shift log and the reference tracks. The same store, scored through the
simulated path (the simulator's own record of what it sent and its exact truth), gives the
same figures: one path, every definition identical."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT
from trackfence.cli import main
from trials.manifest import load_manifest

SITE = ROOT / "examples" / "sites" / "ecm1-kings-cross.toml"
MISALIGNED = ROOT / "examples" / "trials" / "fences" / "phones-kings-cross.toml"

#: 75 s on track: a walker crosses the worksite's limit twice, a colleague stands in the cess.
SCENARIO = f"""
[scenario]
name = "Past the limit board (live)"
site = "{SITE}"
line = "Down Fast (blocked)"
duration_s = 75
seed = 23

[[worker]]
name = "walker"
device = "any/w"
along_m = 1200
lateral_m = -3.0
steps = [
  {{ do = "stand", seconds = 5 }},
  {{ do = "walk", distance_m = 15, speed_mps = 1.5 }}, {{ do = "stand", seconds = 6 }},
  {{ do = "walk", distance_m = -15, speed_mps = 1.5 }}, {{ do = "stand", seconds = 12 }},
  {{ do = "walk", distance_m = 15, speed_mps = 1.5 }}, {{ do = "stand", seconds = 6 }},
  {{ do = "walk", distance_m = -15, speed_mps = 1.5 }},
]

[[worker]]
name = "lookout"
device = "any/l"
along_m = 1000
lateral_m = -3.0
steps = [{{ do = "stand", seconds = 74 }}]

[supplier.any]
"""

SUPPLIERS = """
[supplier.good]
technology = "GNSS RTK"
approved_configuration = { fix_rate_hz = 2 }
[supplier.good.simulated]
fix_rate_hz = 2
fix_type = "RTK fixed"
cep50_m = 0.05
latency_ms = 200
latency_jitter_ms = 30
own_alarm = "on"
own_alarm_delay_ms = 4000
[[supplier.good.device]]
id = "g-1"
firmware = "1.0"
configuration = { fix_rate_hz = 2 }
[[supplier.good.device]]
id = "g-2"
firmware = "1.0"
configuration = { fix_rate_hz = 2 }

[supplier.long]
technology = "GNSS RTK"
approved_configuration = { fix_rate_hz = 2 }
configured_sites = { "SITE" = "FENCE" }
[supplier.long.simulated]
fix_rate_hz = 2
fix_type = "RTK fixed"
cep50_m = 0.05
latency_ms = 200
latency_jitter_ms = 30
[[supplier.long.device]]
id = "l-1"
firmware = "1.0"
configuration = { fix_rate_hz = 2 }
[[supplier.long.device]]
id = "l-2"
firmware = "1.0"
configuration = { fix_rate_hz = 2 }
""".replace("SITE", str(SITE)).replace("FENCE", str(MISALIGNED))


def _trial_head(start: dt.date, extra: str = "") -> str:
    return (
        f'[trial]\nname = "Live trial"\nstart_date = {start.isoformat()}\nweeks = 1\n{extra}\n'
        "[decisions]\nclearing_margin_m = 0.5\n"
    )


@pytest.fixture(scope="module")
def live_run(mosquitto, tmp_path_factory):
    """One shift worn live: published at its real pace through Mosquitto, stored by ingest."""
    from trials.definition import load_trial
    from trials.harness.wear import wear_live
    from trials.schedule import plan

    folder = tmp_path_factory.mktemp("live")
    (folder / "scenario.toml").write_text(SCENARIO)
    today = dt.datetime.now(dt.UTC).date()
    simulated = folder / "simulated.toml"
    simulated.write_text(
        _trial_head(today) + f'\n[[scenario]]\nfile = "{folder / "scenario.toml"}"\n' + SUPPLIERS
    )
    trial = load_trial(simulated)
    db = f"sqlite:///{folder / 'live.sqlite'}"
    worn = wear_live(trial, plan(trial)[0], folder, mosquitto.url, db)
    real = folder / "real.toml"
    real.write_text(_trial_head(today, 'shift_log = "shifts.csv"') + SUPPLIERS)
    return {"folder": folder, "real": real, "db": db, "sim": worn.sim, "shift": worn.shift,
            "trial": trial}  # fmt: skip


def _report(out: Path, name: str = "summary") -> dict:
    return json.loads((out / "report" / f"{name}.json").read_text())


def test_a_real_trial_is_scored_from_the_live_store_and_the_references(live_run, capsys):
    out = live_run["folder"] / "out"
    args = ["trial", "score", str(live_run["real"]), "--db", live_run["db"], "--out", str(out)]
    assert main([*args, "--formats", "json,md"]) == 0
    doc = _report(out)
    manifest = load_manifest(out)
    assert manifest.is_live and manifest.shifts[0].live
    assert manifest.shifts[0].references["walker"].accuracy_m == 0.02
    assert "reference receiver" in doc["sections"]["methodology"]["ground_truth"]
    sim = live_run["sim"]
    walker = [i for i, w in enumerate(sim.scenario.workers) if w.person == "walker"]
    crossings = int(np.isin(sim.excursions.worker, walker[:1]).sum())
    assert crossings == 2
    good = doc["sections"]["alerting"]["figures"]["good"]
    assert good["excursions"] == crossings and good["detected"] == crossings
    # alerted within a couple of seconds of the true crossing, live, hops and all
    assert -5.0 <= good["time_to_alert_p50_s"] <= 3.0
    assert 0.02 < doc["sections"]["accuracy"]["good"]["cep50_m"] < 0.1
    # its own alarms (decided on the device, 4 s after the fix) are scored beside
    own = doc["sections"]["alerting"]["own_alarms"]
    assert own["good"]["device_shifts"] == 2 and own["good"]["excursions"] == crossings
    assert own["good"]["detected"] == crossings and own["good"]["later_than_platform"] == 2
    assert own["good"]["time_to_alert_p50_s"] > good["time_to_alert_p50_s"] + 3
    assert own["long"]["device_shifts"] == 0  # it reported none: not scored as silent
    check = next(c for c in doc["sections"]["issues"]["checks"] if c["code"].endswith("own-alarm"))
    assert {r["supplier"]: r["status"] for r in check["results"]} == {
        "good": "found",
        "long": "not assessed",
    }
    # the supplier whose fence runs 18 m long does not alarm at the limit board
    long = doc["sections"]["alerting"]["figures"]["long"]
    assert long["detected"] == 0
    fence = next(c for c in doc["sections"]["issues"]["checks"] if c["title"] == "Fence alignment")
    statuses = {r["supplier"]: r["status"] for r in fence["results"]}
    assert statuses == {"good": "pass", "long": "fail"}
    # re-scoring is idempotent: the truth is not written twice, the figures do not move
    import sqlite3

    path = live_run["db"].removeprefix("sqlite:///")
    before = sqlite3.connect(path).execute("SELECT count(*) FROM truth").fetchone()[0]
    assert main([*args, "--formats", "json"]) == 0
    after = sqlite3.connect(path).execute("SELECT count(*) FROM truth").fetchone()[0]
    assert before == after > 0
    again = _report(out)
    assert again["sections"]["accuracy"] == doc["sections"]["accuracy"]
    assert again["sections"]["alerting"]["figures"] == doc["sections"]["alerting"]["figures"]


def test_the_simulated_and_real_paths_give_the_same_figures_for_the_same_fixes(live_run):
    from devices.sim.publish import truth_records
    from store import open_store
    from trials.collect import collect
    from trials.definition import load_trial
    from trials.harness.live import live_manifest
    from trials.harness.runner import save_sent
    from trials.score import score_trial

    shift, sim = live_run["shift"], live_run["sim"]
    folder = live_run["folder"]
    real = load_trial(live_run["real"])
    # the real path: the shift log, the references, the store
    store = open_store(live_run["db"])
    try:
        live = score_trial(real, m := live_manifest(real, store, live_run["db"]),
                           collect(real, m, store, folder))  # fmt: skip
        # the simulated path: the simulator's truth and record of sends, the same fixes
        end_ms = m.shifts[0].end_ms
        run_id = "simulated-" + shift.run_id
        store.write_truth(*truth_records(sim, run_id, shift.start_ms))
        (folder / "sent").mkdir(exist_ok=True)
        sent = save_sent(sim, replace(shift, run_id=run_id), folder / "sent")
        assert sent.is_file()
        record = replace(m.shifts[0], run_id=run_id, live=False, end_ms=end_ms,
                         publish_seconds=(end_ms - shift.start_ms) / 1000,  # it was real time
                         devices=shift.devices)  # fmt: skip
        simulated_manifest = replace(m, shifts=(record,))
        simulated = score_trial(
            live_run["trial"], simulated_manifest, collect(real, simulated_manifest, store, folder)
        )
    finally:
        store.close()
    for s in ("good", "long"):
        a, b = live.overall[s], simulated.overall[s]
        assert a.fixes == b.fixes > 0
        # the reference went through GPX at 1e-10 degrees: identical to about 10 µm
        assert a.cep50_m == pytest.approx(b.cep50_m, abs=1e-4)
        assert a.r95_m == pytest.approx(b.r95_m, abs=1e-4)
        assert (a.excursions, a.detected, a.saturated, a.false_alerts) == (
            b.excursions, b.detected, b.saturated, b.false_alerts
        )  # fmt: skip
        assert a.availability == pytest.approx(b.availability)
        # alert times: the real publish time against the simulator's planned send plus the
        # measured hops. On a busy machine the publisher's real sends trail its plan by a
        # few hundred ms; a clock mixed up, or a hop left out, would show as seconds or more
        if a.detected:
            assert a.time_to_alert_p50_s == pytest.approx(b.time_to_alert_p50_s, abs=0.75)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda rows: rows[1].update(devices=rows[0]["devices"]), "also worn at the same time"),
        (lambda rows: rows[0].update(devices="good/g-9"), "no device of the trial's suppliers"),
        (lambda rows: rows[0].update(end="2030-01-01T00:00:00Z"), "within 16 h"),
        (lambda rows: rows[0].update(start=rows[0]["start"].replace("Z", "")), "no time zone"),
        (lambda rows: rows[0].update(reference_accuracy_m="2"), "reference_accuracy_m"),
        (lambda rows: rows[0].update(site="nowhere.toml"), "no such site file"),
    ],
)
def test_a_bad_shift_log_is_refused_with_its_line_and_field(live_run, tmp_path, change, words):
    import csv

    from trials.definition import TrialError, load_trial

    source = live_run["folder"]
    rows = list(csv.DictReader((source / "shifts.csv").read_text().splitlines()))
    change(rows)
    (tmp_path / "references").symlink_to(source / "references")
    with (tmp_path / "shifts.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "real.toml").write_text(live_run["real"].read_text())
    with pytest.raises(TrialError) as caught:
        load_trial(tmp_path / "real.toml")
    assert words in str(caught.value) and "shifts.csv line" in str(caught.value)


def test_a_reference_that_does_not_cover_its_shift_is_refused(live_run, tmp_path):
    from devices.sim.recordings import read_track
    from devices.sim.references import write_reference
    from trials.definition import TrialError, load_trial

    source = live_run["folder"]
    (tmp_path / "references").mkdir()
    for path in (source / "references").iterdir():
        track = read_track(path)
        keep = slice(None, -50) if path.stem == "walker" else slice(None)  # 5 s short
        write_reference(tmp_path / "references" / path.name,
                        *(track[k][keep] for k in ("time_ms", "lat", "lon")))  # fmt: skip
    (tmp_path / "shifts.csv").write_text((source / "shifts.csv").read_text())
    (tmp_path / "real.toml").write_text(live_run["real"].read_text())
    with pytest.raises(TrialError) as caught:
        load_trial(tmp_path / "real.toml")
    assert "walker.gpx covers" in str(caught.value) and "not the whole shift" in str(caught.value)


def test_a_real_trial_is_not_run_but_scored(live_run, tmp_path):
    assert main(["trial", "run", str(live_run["real"]), "--out", str(tmp_path / "x")]) == 2
    # and a real trial needs the store it is scored from
    assert main(["trial", "score", str(live_run["real"]), "--out", str(tmp_path / "y")]) == 2


def test_the_example_real_trial_scores_from_its_shipped_session(tmp_path, capsys):
    import shutil

    # before scoring: its crossings are counted on the wearers' reference tracks
    assert main(["trial", "plan", str(ROOT / "examples" / "real-trial" / "trial.toml")]) == 1
    shown = capsys.readouterr().out
    assert "gives acme 6 (SHORT) · gnssco 6 (SHORT) · phones 6 (SHORT) crossings" in shown
    assert "limit-board-drill 6" in shown

    example = ROOT / "examples" / "real-trial"
    store = tmp_path / "live.sqlite"
    shutil.copy(example / "live.sqlite", store)  # scoring writes the truth into its store
    out = tmp_path / "out"
    args = ["trial", "score", str(example / "trial.toml"), "--db", f"sqlite:///{store}"]
    assert main([*args, "--out", str(out), "--formats", "json"]) == 0
    doc = _report(out)
    assert doc["trial"]["true_crossings"] == {"acme": 6, "gnssco": 6, "phones": 6}
    own = doc["sections"]["alerting"]["own_alarms"]
    # acme's wearable decides on the device; gnssco's cloud answers 2.5 s after the fix
    assert own["acme"]["device_shifts"] == 2 and own["gnssco"]["device_shifts"] == 2
    assert own["phones"]["device_shifts"] == 0  # OwnTracks reports no alarm of its own
    platform = doc["sections"]["alerting"]["figures"]
    late = own["gnssco"]["time_to_alert_p50_s"] - platform["gnssco"]["time_to_alert_p50_s"]
    assert 1.5 < late < 3.5  # its cloud's 2.5 s, beside trackfence's decision on its fixes
    early = own["acme"]["time_to_alert_p50_s"] - platform["acme"]["time_to_alert_p50_s"]
    assert abs(early) < 1.0
    # six crossings prove nothing yet, and the report says so rather than passing anyone
    assert all(e["overall"] != "PASS" for e in doc["sections"]["executive_summary"]["suppliers"])
