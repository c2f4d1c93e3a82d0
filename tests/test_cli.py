"""`trackfence geofence check` on the example site, with good and bad rows."""

from __future__ import annotations

import csv
import subprocess
import sys

from tests.conftest import ROOT

SITE = ROOT / "examples" / "sites" / "ecm1-kings-cross.toml"
WALK = ROOT / "examples" / "fixes" / "ecm1-walk.csv"


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def trackfence(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trackfence.cli", *args], capture_output=True, text=True, cwd=ROOT
    )


def test_example_walk_gives_one_breach_for_the_worker_who_drifts(tmp_path):
    out = tmp_path / "decisions.csv"
    done = trackfence("geofence", "check", str(SITE), str(WALK), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "1 breach alert(s)" in done.stdout and "B-0207" in done.stdout
    rows = read_csv(out)
    assert len(rows) == 800
    b = [r for r in rows if r["device"] == "B-0207"]
    breach = next(r for r in b if "breach" in r["events"])
    exit_ = next(r for r in b if "exit" in r["events"])
    # the alarm comes before the wearer crosses the edge (uncertainty circle first)
    assert int(breach["time_ms"]) < int(exit_["time_ms"])
    assert float(breach["distance_m"]) > 0
    assert exit_["danger_zone"] == "danger zone of Up Fast"


def test_bad_rows_are_rejected_with_reasons_and_good_rows_still_decided(tmp_path):
    fixes = tmp_path / "fixes.csv"
    lines = WALK.read_text().splitlines()
    bad = [
        "C-1,1795000000000,1,nan,-0.1,0.3",
        "C-1,not-a-time,2,51.5,-0.1,0.3",
        "C-1,1795000001000,3,95,-0.1,0.3",
        ",1795000001000,4,51.5,-0.1,0.3",
        "C-1,1795000002000,5,51.5,-0.1,-2",
    ]
    fixes.write_text("\n".join(lines[:11] + bad + lines[11:]) + "\n")
    out = tmp_path / "d.csv"
    done = trackfence("geofence", "check", str(SITE), str(fixes), "--out", str(out))
    assert done.returncode == 1
    assert "5 rejected" in done.stdout
    rejects = read_csv(out.with_suffix(".rejects.csv"))
    assert [int(r["line"]) for r in rejects] == [12, 13, 14, 15, 16]
    reasons = " | ".join(r["reason"] for r in rejects)
    for words in ("not finite", "not-a-time", "out of range", "no device id", "accuracy_m"):
        assert words in reasons
    assert len(read_csv(out)) == 800


def test_unusable_inputs_are_refused_with_a_clear_message(tmp_path):
    bad_site = tmp_path / "site.toml"
    bad_site.write_text(
        '[site]\nname = "x"\n[[worksite]]\nname = "w"\nelr = "ZZZ9"\n'
        'from = "1m 0y"\nto = "2m 0y"\nleft_m = 1\nright_m = 1\n'
    )
    done = trackfence(
        "geofence", "check", str(bad_site), str(WALK), "--out", str(tmp_path / "o.csv")
    )
    assert done.returncode == 2 and "unknown ELR 'ZZZ9'" in done.stderr
    headless = tmp_path / "f.csv"
    headless.write_text("who,when\n1,2\n")
    done = trackfence(
        "geofence", "check", str(SITE), str(headless), "--out", str(tmp_path / "o.csv")
    )
    assert done.returncode == 2 and "lacks column(s): device, lat, lon" in done.stderr
    done = trackfence("geofence", "check", str(SITE), str(tmp_path / "missing.csv"))
    assert done.returncode == 2 and "cannot read" in done.stderr
