"""Trials end to end: each NRA24-05 failure mode, planted in a simulated supplier, is caught
and named in the report; the trial runs on the embedded broker and SQLite, and on
Mosquitto and TimescaleDB; bad trial files are refused with the field named."""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT
from trackfence.cli import main
from trials.definition import TrialError, load_trial
from trials.manifest import load_manifest

SITE = ROOT / "examples" / "sites" / "ecm1-kings-cross.toml"
MISALIGNED = ROOT / "examples" / "trials" / "fences" / "phones-kings-cross.toml"

#: A walker who steps past the worksite's limit (2m 0880y, about 1207 m along) and back,
#: three times, and a lookout who stands in the cess.
SCENARIO = f"""
[scenario]
name = "Past the limit board and back"
site = "{SITE}"
line = "Down Fast (blocked)"
duration_s = 480
seed = 11

[[worker]]
name = "walker"
device = "any/w"
along_m = 1150
lateral_m = -3.0
steps = [
  {{ do = "walk", distance_m = 90, speed_mps = 1.4 }}, {{ do = "stand", seconds = 10 }},
  {{ do = "walk", distance_m = -90, speed_mps = 1.4 }}, {{ do = "stand", seconds = 10 }},
  {{ do = "walk", distance_m = 90, speed_mps = 1.4 }}, {{ do = "stand", seconds = 10 }},
  {{ do = "walk", distance_m = -90, speed_mps = 1.4 }}, {{ do = "stand", seconds = 10 }},
  {{ do = "walk", distance_m = 90, speed_mps = 1.4 }}, {{ do = "stand", seconds = 10 }},
  {{ do = "walk", distance_m = -90, speed_mps = 1.4 }},
]

[[worker]]
name = "lookout"
device = "any/l"
along_m = 1000
lateral_m = -3.0
steps = [{{ do = "stand", seconds = 470 }}]

[supplier.any]
"""

GOOD = """fix_rate_hz = 1
fix_type = "RTK fixed"
cep50_m = 0.05
correlation_s = 20
latency_ms = 300
latency_jitter_ms = 50"""


def supplier(key: str, *, extra: str = "", simulated: str = "", devices: str = "") -> str:
    devices = devices or (
        f'[[supplier.{key}.device]]\nid = "{key}-1"\nfirmware = "1.0"\n'
        'configuration = { fix_rate_hz = 1, haptic = "long" }\n'
        f'[[supplier.{key}.device]]\nid = "{key}-2"\nfirmware = "1.0"\n'
        'configuration = { fix_rate_hz = 1, haptic = "long" }\n'
    )
    return (
        f'[supplier.{key}]\ntechnology = "GNSS RTK"\n'
        'approved_configuration = { fix_rate_hz = 1, haptic = "long" }\n'
        f'{extra}\n[supplier.{key}.simulated]\n{GOOD}\nfirmware = "1.0"\n{simulated}\n'
        f"{devices}"
    )


def trial_text(scenario: Path, *, repeats: int = 10, criteria: str = "") -> str:
    return (
        f"""
[trial]
name = "Failure modes"
objectives = ["Catch every NRA24-05 failure mode"]
start_date = 2026-03-02
weeks = 2
repeats = {repeats}

[criteria]
{criteria}

[[scenario]]
file = "{scenario}"
"""
        + supplier("good")
        # the fence it configured runs 18 m past the surveyed limit of the worksite
        + supplier("fence", extra=f'configured_sites = {{ "{SITE}" = "{MISALIGNED}" }}')
        # week 2's firmware holds every fix back 6 s before sending it
        + supplier(
            "firmware",
            simulated='firmware_versions = { "2.0" = { latency_ms = 6000 } }',
            devices=(
                '[[supplier.firmware.device]]\nid = "fw-1"\nfirmware = "1.0"\n'
                'configuration = { fix_rate_hz = 1, haptic = "long" }\n'
                'updates = [{ week = 2, firmware = "2.0" }]\n'
                '[[supplier.firmware.device]]\nid = "fw-2"\nfirmware = "1.0"\n'
                'configuration = { fix_rate_hz = 1, haptic = "long" }\n'
                'updates = [{ week = 2, firmware = "2.0" }]\n'
            ),
        )
        # one device is not set up as its acceptance certificate says
        + supplier(
            "drift",
            devices=(
                '[[supplier.drift.device]]\nid = "dr-1"\nfirmware = "1.0"\n'
                'configuration = { fix_rate_hz = 1, haptic = "long" }\n'
                '[[supplier.drift.device]]\nid = "dr-2"\nfirmware = "1.0"\n'
                'configuration = { fix_rate_hz = 0.5, haptic = "short" }\n'
            ),
        )
        # its clock runs 5 s fast, so the breach log puts the wearer where they were not
        + supplier("clock", simulated="clock_offset_ms = 5000")
    )


@pytest.fixture(scope="module")
def trial_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("trial")
    scenario = folder / "past-the-limit.toml"
    scenario.write_text(SCENARIO)
    path = folder / "failure-modes.toml"
    path.write_text(trial_text(scenario))
    return path


@pytest.fixture(scope="module")
def embedded_run(trial_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert main(["trial", "run", str(trial_file), "--out", str(out)]) == 0
    return out


def _report(out: Path, name: str = "summary") -> dict:
    return json.loads((out / "report" / f"{name}.json").read_text())


def _statuses(doc: dict) -> dict[str, dict[str, str]]:
    return {
        c["title"]: {r["supplier"]: r["status"] for r in c["results"]}
        for c in doc["sections"]["issues"]["checks"]
    }


def _finding(doc: dict, title: str, supplier: str) -> str:
    check = next(c for c in doc["sections"]["issues"]["checks"] if c["title"] == title)
    return next(r["finding"] for r in check["results"] if r["supplier"] == supplier)


def test_every_failure_mode_planted_is_caught_and_named(embedded_run):
    doc = _report(embedded_run)
    statuses = _statuses(doc)
    # fence alignment: about 18 m, named with the site
    assert statuses["Fence alignment"]["fence"] == "fail"
    assert statuses["Fence alignment"]["good"] == "pass"
    offset = float(_finding(doc, "Fence alignment", "fence").split(": ")[-1].split(" m")[0])
    assert 17.0 < offset < 19.0
    # firmware: 2.0 alerts later than 1.0, beyond chance
    assert statuses["Firmware version differences"]["firmware"] == "found"
    assert "2.0" in _finding(doc, "Firmware version differences", "firmware")
    assert statuses["Firmware version differences"]["good"] == "not assessed"  # one version
    # alarm timing: mixing 0.3 s and 6 s of latency is not consistent
    assert statuses["Alarm timing consistency"]["firmware"] == "fail"
    # 30 alerts cannot show a p95 - p5 spread within 3 s (a p95 needs 59): not a pass
    assert statuses["Alarm timing consistency"]["good"] == "not demonstrated"
    assert "too few" in _finding(doc, "Alarm timing consistency", "good")
    # configuration drift: the device, the keys, and the fix rate it really delivered
    assert statuses["Configuration drift"]["drift"] == "fail"
    drift = _finding(doc, "Configuration drift", "drift")
    assert "drift/dr-2" in drift and "haptic" in drift and "fix_rate_hz" in drift
    assert "drift/dr-1" not in drift
    assert statuses["Configuration drift"]["good"] == "pass"
    # breach log position: 5 s of clock error at walking pace is metres
    assert statuses["Breach log position"]["clock"] == "fail"
    assert "clock error" in _finding(doc, "Breach log position", "clock")
    # the good device's log is right, but 30 alerts cannot bound a p95 (59 needed)
    assert statuses["Breach log position"]["good"] == "not demonstrated"
    # suppliers alarming differently: the long fence alerts late on the same movement
    assert statuses["Suppliers alarming differently"]["fence"] in ("found", "fail")
    details = next(
        c for c in doc["sections"]["issues"]["checks"] if c["title"].startswith("Suppliers")
    )["details"]

    def time_of(detail: str, who: str) -> float:
        found = re.search(rf"{who} ([+-][0-9.]+) s", detail)
        return float(found.group(1)) if found else float("inf")  # missed: never alerted

    # the walker's crossing, with the long fence alerting well after the surveyed one
    assert any("walker" in d and time_of(d, "fence") - time_of(d, "good") > 3.0 for d in details), (
        details
    )
    # and the supplier with nothing planted passes everything it is judged on
    good = next(
        e for e in doc["sections"]["executive_summary"]["suppliers"] if e["supplier"] == "good"
    )
    assert good["checks_failed"] == []
    assert good["criteria_failed"] == []
    # ...yet a trial this small demonstrates nothing of detection: 30 of 30 is no proof of 99 %
    assert good["overall"] == "NOT DEMONSTRATED"
    assert "share of true crossings detected by a fresh alert" in good["criteria_not_demonstrated"]


def test_the_good_supplier_is_scored_against_hand_checkable_truth(embedded_run):
    doc = _report(embedded_run)
    good = doc["sections"]["accuracy"]["good"]
    # a 5 cm CEP50 receiver measured as such (the truth is known to the millimetre)
    assert 0.03 < good["cep50_m"] < 0.08
    alerting = doc["sections"]["alerting"]["figures"]["good"]
    # 3 true excursions a shift for the walker, 10 shifts: every one alerted by a fresh alert
    assert alerting["excursions"] == 30 and alerting["detected"] == 30
    assert alerting["saturated"] == 0 and alerting["missed"] == 0
    # at walking pace with 0.3 s of uplink the alert is within a couple of seconds
    assert -1.0 < alerting["time_to_alert_p50_s"] < 2.0
    assert alerting["false_alerts"] == 0


def test_the_reports_exist_in_every_form_and_agree(embedded_run):
    folder = embedded_run / "report"
    for name in ("summary", "good", "fence", "firmware", "drift", "clock"):
        for ext in ("html", "pdf", "json", "md"):
            assert (folder / f"{name}.{ext}").stat().st_size > 1000, f"{name}.{ext}"
    doc = _report(embedded_run)
    assert doc["schema"] == "trackfence-trial-report" and doc["schema_version"] == 2
    html = (folder / "summary.html").read_text()
    markdown = (folder / "summary.md").read_text()
    from reporting.render import fig

    for supplier, figures in doc["sections"]["accuracy"].items():
        assert fig(figures["r95_m"]) in html and fig(figures["r95_m"]) in markdown, supplier
    for _, title in __import__("reporting.model", fromlist=["SECTIONS"]).SECTIONS:
        assert title in html
    # a supplier's own report holds only that supplier: no other's devices, times or shares
    suppliers = ("good", "fence", "firmware", "drift", "clock")
    for name in suppliers:
        own = _report(embedded_run, name)
        assert list(own["sections"]["accuracy"]) == [name]
        assert [e["supplier"] for e in own["sections"]["executive_summary"]["suppliers"]] == [name]
        forms = [(folder / f"{name}.{ext}").read_text() for ext in ("md", "html")]
        text = "\n".join([json.dumps(own), *forms])
        for other in suppliers:
            if other != name:  # (as whole words: "trackfence" is no supplier "fence")
                said = rf"\b{other}(/|\s[+-][0-9]|\smissed|\ssaturated|\s30\b)"
                assert not re.search(said, text), (name, re.search(said, text))
    # while the comparative report names each supplier's time on a crossing they disagreed on
    cases = next(c for c in doc["sections"]["issues"]["checks"] if c["code"].endswith("agreement"))
    assert any("fence +" in d and "good " in d for d in cases["details"])
    # every plot the report names exists
    for name in doc["plots"].values():
        assert (folder / "plots" / name).stat().st_size > 5000


def test_the_pdf_pages_carry_the_report_not_blank_paper(embedded_run):
    pdfium = pytest.importorskip("pypdfium2")
    pdf = pdfium.PdfDocument(str(embedded_run / "report" / "summary.pdf"))
    assert len(pdf) >= 8
    for i in range(len(pdf)):
        pixels = np.asarray(pdf[i].render(scale=0.5).to_pil().convert("L"))
        text = pdf[i].get_textpage().get_text_range()
        footer = f"Failure modes - page {i + 1} of {len(pdf)}"
        assert footer in text, (i, text[-200:])
        words = len(text.replace(footer, "").split())
        # every page has a plot on it, or text beyond its running footer (a table's last
        # row carried over is a few words, and it is the report, not blank paper)
        assert (pixels < 128).mean() > 0.01 or words >= 4, (i, words, text)
    text = pdf[0].get_textpage().get_text_range()
    assert "Executive summary" in text and "Failure modes" in text


def test_rescoring_uses_new_criteria_without_rerunning(embedded_run, trial_file, tmp_path):
    strict = tmp_path / "strict.toml"
    scenario = trial_file.parent / "past-the-limit.toml"
    strict.write_text(trial_text(scenario, criteria="r95_m = 0.01"))
    before = (embedded_run / "manifest.json").read_text()
    assert (
        main(["trial", "score", str(strict), "--out", str(embedded_run), "--formats", "json"]) == 0
    )
    verdicts = _report(embedded_run)["sections"]["executive_summary"]["verdicts"]["good"]
    r95 = next(v for v in verdicts if v["criterion"] == "r95_m")
    assert r95["limit"] == 0.01 and r95["status"] == "fail"
    assert (embedded_run / "manifest.json").read_text() == before  # nothing was rerun
    # a folder holding a run is not overwritten by accident
    assert main(["trial", "run", str(trial_file), "--out", str(embedded_run)]) == 2
    main(["trial", "score", str(trial_file), "--out", str(embedded_run), "--formats", "json"])


def test_missing_stored_data_is_reported_not_scored_as_zero(embedded_run, trial_file, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(embedded_run, copy)
    manifest = load_manifest(copy)
    first = manifest.shifts[0]
    db = sqlite3.connect(copy / "trial.sqlite")
    db.execute(
        "DELETE FROM fixes WHERE device_id LIKE 'clock/%' AND fix_time BETWEEN ? AND ?",
        (first.start_ms - 3_600_000, first.end_ms + 3_600_000),
    )
    db.commit()
    db.close()
    replace(manifest, db=f"sqlite:///{copy / 'trial.sqlite'}").write(copy)
    assert (
        main(["trial", "score", str(trial_file), "--out", str(copy), "--formats", "json,md"]) == 0
    )
    doc = _report(copy)
    missing = doc["sections"]["issues"]["missing_data"]
    assert any(first.run_id in m and "clock/" in m for m in missing), missing
    assert "clock/" in (copy / "report" / "summary.md").read_text().split("Missing data:")[1]
    # the other shifts of that supplier are still scored
    assert doc["sections"]["accuracy"]["clock"]["fixes"] > 0


def test_the_trial_runs_on_mosquitto_and_timescaledb(trial_file, mosquitto, timescaledb, tmp_path):
    scenario = trial_file.parent / "past-the-limit.toml"
    small = tmp_path / "small.toml"
    small.write_text(trial_text(scenario, repeats=2))
    out = tmp_path / "run"
    code = main(
        ["trial", "run", str(small), "--out", str(out), "--broker", mosquitto.url,
         "--db", timescaledb.url, "--formats", "json"]
    )  # fmt: skip
    assert code == 0
    manifest = load_manifest(out)
    assert manifest.db.startswith("postgresql://") and "embedded" not in manifest.broker
    for shift in manifest.shifts:
        assert shift.dead_letters == 0 and shift.fixes_stored > 0
    doc = _report(out)
    assert _statuses(doc)["Fence alignment"]["fence"] == "fail"
    assert doc["sections"]["alerting"]["figures"]["good"]["detected"] == 6


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (("../scenarios/plain-line.toml", "nowhere.toml"), "unknown scenario"),
        (("r95_m = 1.0", "r95_cm = 100"), "give it as r95_m (metres)"),
        (("detection_rate = 0.99", "detection_rate = 99"), "looks like a percentage"),
        (("weeks = 10", "weeks = 0"), "[trial].weeks"),
        (("[[supplier.acme.device]]\nid = \"ac-0101\"", "[[supplier.acme.device]]\nid = \"\""),
         "device[0].id"),
        (("cep50_m = 0.05", "cep50_m = -1"), "[supplier.acme].simulated.cep50_m"),
        (("clearing_margin_m = 0.5", "clearing_margin_m = -1"), "[decisions]"),
        (("clearing_margin_m = 0.5", "clearing_margin = 0.5"), "[decisions].clearing_margin"),
    ],
)  # fmt: skip
def test_a_bad_trial_file_is_refused_with_the_field_named(tmp_path, change, words):
    examples = ROOT / "examples"
    text = (examples / "trials" / "three-suppliers.toml").read_text()
    old, new = change
    assert old in text
    text = text.replace(old, new, 1)
    # the copy lives elsewhere: its relative file names are made absolute
    text = text.replace('"../', f'"{examples}/').replace('"fences/', f'"{examples}/trials/fences/')
    text = text.replace('"feedback.csv"', f'"{examples}/trials/feedback.csv"')
    path = tmp_path / "trial.toml"
    path.write_text(text)
    with pytest.raises(TrialError) as caught:
        load_trial(path)
    assert words in str(caught.value)
    assert main(["trial", "run", str(tmp_path / "absent.toml"), "--out", str(tmp_path)]) == 2


def test_the_example_trial_plans_ten_weeks_of_shifts_with_every_device_worn():
    from trials.schedule import plan

    trial = load_trial(ROOT / "examples" / "trials" / "three-suppliers.toml")
    shifts = plan(trial)
    assert len(shifts) == 8 * 3
    assert shifts[0].date.isoformat() == "2026-06-01" and shifts[-1].week == 10
    worn = {d.device_id for s in shifts for d in s.devices}
    assert worn == {f"{s.key}/{d.id}" for s in trial.suppliers for d in s.devices}
    # every person wears one device of each supplier, all sharing the person's true path
    first = shifts[0]
    assert {d.supplier for d in first.devices if d.wearer == "cess walker"} == {
        "acme",
        "gnssco",
        "phones",
    }
    # the firmware update in week 6 is carried by the devices from then on
    firmware = {
        (s.week >= 6, d.firmware)
        for s in shifts
        for d in s.devices
        if d.device_id == "acme/ac-0101"
    }
    assert firmware == {(False, "2.4.1"), (True, "2.5.0")}


def test_an_rfid_supplier_is_read_at_the_scenario_readers(trial_file, tmp_path):
    # readers at the limit board: every pass of the walker is read there, and ingest
    # (told of the scenario's readers) stores the reads; none is dead-lettered
    scenario = tmp_path / "gated.toml"
    scenario.write_text(
        (trial_file.parent / "past-the-limit.toml").read_text()
        + '\n[[rfid_reader]]\nid = "limit-board"\nalong_m = 1205\nlateral_m = -3.0\n'
        "range_m = 3.0\nmiss_rate = 0.0\n"
    )
    text = (
        f'[trial]\nname = "RFID"\nstart_date = 2026-03-02\nweeks = 1\n'
        f'[[scenario]]\nfile = "{scenario}"\n'
        + supplier("good")
        + supplier("tags", simulated='technology = "RFID tag"')
    )
    path = tmp_path / "rfid.toml"
    path.write_text(text)
    out = tmp_path / "run"
    assert main(["trial", "run", str(path), "--out", str(out), "--formats", "json"]) == 0
    assert load_manifest(out).shifts[0].dead_letters == 0
    reads = (
        sqlite3.connect(out / "trial.sqlite")
        .execute("SELECT count(*), count(DISTINCT site) FROM fixes WHERE fix_type = 'RFID'")
        .fetchone()
    )
    assert reads[0] >= 3 and reads[1] == 1  # three passes, each read, each located at the site


def test_the_plan_says_what_each_criterion_needs_before_anything_is_run(trial_file, capsys):
    # the example trial is designed to demonstrate its criteria: 299+ crossings a supplier,
    # every scenario with crossings
    assert main(["trial", "plan", str(ROOT / "examples" / "trials" / "three-suppliers.toml")]) == 0
    shown = capsys.readouterr().out
    assert "needs 299 crossings with none missed" in shown
    assert "gives acme 360 · gnssco 360 · phones 360 crossings" in shown
    assert "under-overbridge 45" in shown and "SHORT" not in shown
    # the failure-mode trial is far too small, and says so, criterion by criterion
    assert main(["trial", "plan", str(trial_file)]) == 1
    shown = capsys.readouterr().out
    assert "cannot be demonstrated: share of true crossings detected by a fresh alert: " in shown
    assert "needs 299 crossings" in shown and "good 30" in shown
    assert "time to alert, 95th percentile: needs 59 crossings alerted" in shown


def test_a_replayed_run_says_its_hops_were_not_measured_and_quotes_the_live_path(embedded_run):
    """A simulated run decides in-process: it measures no platform hop, counts none in time
    to alert, and says so, quoting the latency benchmark's figures with their source."""
    manifest = json.loads((embedded_run / "manifest.json").read_text())
    hops = {s["hops"] for s in manifest["shifts"]}
    assert hops == {"not measured: replayed faster than real time"}
    methodology = _report(embedded_run)["sections"]["methodology"]
    assert methodology["replayed"] is True
    note = methodology["live_hops_note"]
    live = manifest.get("live_hops")
    if live:  # the benchmark's record, with where it comes from
        assert live["benchmark"] in note and f"{live['alert_round_trip_p50_ms']:.1f} ms" in note
    else:
        assert "No measurement of the live path" in note
    html = (embedded_run / "report" / "summary.html").read_text()
    assert "not measured (replay)" in html and "were not measured in this run" in html
