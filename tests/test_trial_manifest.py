"""The run's manifest, typed: the file on disk reads into records and writes back unchanged.

A simulated run's (version 2), a real trial's (kind "live") and a version-1 run's
manifest each go from JSON to `Manifest` and back to the same document, key order
included; what a version-1 manifest lacks reads as None, and its hops are judged by
how fast it was published.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from trials.definition import TrialError
from trials.manifest import HOPS_NOT_MEASURED, Manifest, Phases, load_manifest

DEVICE = {
    "device_id": "acme/ac-0101",
    "supplier": "acme",
    "wearer": "cess walker",
    "firmware": "2.4.1",
    "configuration": {"fix_rate_hz": 1, "haptic": "long"},
    "configuration_hash": "sha256:013182c86e296fc9",
}
SHIFT = {
    "run_id": "2026-06-01-plain-line-r1",
    "index": 0,
    "scenario": "plain-line",
    "scenario_name": "Plain line in the open",
    "site_file": "/sites/x.toml",
    "repeat": 0,
    "date": "2026-06-01",
    "week": 1,
    "night": False,
    "start_ms": 1_780_304_400_000,
    "end_ms": 1_780_305_360_000,
    "seed": 497,
    "devices": [DEVICE],
}
SIMULATED = {
    "manifest_version": 2,
    "trial": "T",
    "trial_file": "/t.toml",
    "inputs": {"/t.toml": "sha256:00"},
    "software": "trackfence 0.1.0",
    "command": "trackfence trial run t.toml",
    "path": "in-process",
    "broker": None,
    "db": "sqlite:////out/trial.sqlite",
    "decisions": {"clearing_margin_m": 0.5, "lost_after_s": 10.0},
    "seconds": 9.5,
    "phases": {"simulate_s": 3.13, "decide_s": 7.56, "store_s": 2.27, "truth_s": 4.67,
               "fixes": 158135, "workers": 2},
    "live_hops": None,
    "shifts": [
        {**SHIFT, "messages_published": 6762, "fixes_stored": 6688, "dead_letters": 0,
         "path": "in-process", "hops": HOPS_NOT_MEASURED, "ingest_alarms": [],
         "publish_seconds": 0.16},
    ],
}
LIVE = {
    "manifest_version": 2,
    "kind": "live",
    "trial": "T",
    "trial_file": "/t.toml",
    "inputs": {"/t.toml": "sha256:00"},
    "software": "trackfence 0.1.0",
    "command": "trackfence trial score t.toml --db sqlite:///live.sqlite",
    "broker": "live devices (the store ingest kept during the shifts)",
    "db": "sqlite:///live.sqlite",
    "decisions": {"clearing_margin_m": 0.5},
    "seconds": 0.0,
    "scored_at": "2026-06-02T08:00:00+00:00",
    "shifts": [
        {**SHIFT, "seed": None, "live": True,
         "references": {"cess walker": {"file": "/refs/w.gpx", "accuracy_m": 0.02}},
         "messages_published": None, "fixes_stored": 812, "dead_letters": None,
         "publish_seconds": None},
    ],
}
#: Version 1: no deciding path, phases, hops or live hops; the first ones no decisions.
VERSION_1 = {
    "manifest_version": 1,
    "trial": "T",
    "trial_file": "/t.toml",
    "inputs": {},
    "software": "trackfence 0.1.0",
    "command": "trackfence trial run t.toml",
    "broker": "embedded (amqtt, MQTT 3.1.1)",
    "db": "sqlite:////out/trial.sqlite",
    "seconds": 960.0,
    "shifts": [
        {**SHIFT, "messages_published": 6762, "fixes_stored": 6688, "dead_letters": 0,
         "publish_seconds": 960.0},
    ],
}


@pytest.mark.parametrize("data", [SIMULATED, LIVE, VERSION_1], ids=["simulated", "live", "v1"])
def test_a_manifest_reads_and_writes_back_unchanged(data):
    manifest = Manifest.from_json(json.loads(json.dumps(data)))
    again = manifest.to_json()
    assert again == data
    assert json.dumps(again, indent=2) == json.dumps(data, indent=2)  # key order too
    assert Manifest.from_json(again) == manifest


def test_the_records_say_what_the_keys_said():
    simulated, live, old = (Manifest.from_json(d) for d in (SIMULATED, LIVE, VERSION_1))
    assert simulated.phases == Phases(3.13, 7.56, 2.27, 4.67, 158135, 2)
    assert simulated.shifts[0].devices[0].configuration == {"fix_rate_hz": 1, "haptic": "long"}
    assert simulated.configurations == {"sha256:013182c86e296fc9": DEVICE["configuration"]}
    assert simulated.site_files == ["/sites/x.toml"]
    assert not simulated.is_live and not simulated.shifts[0].hops_measured
    assert live.is_live and live.shifts[0].hops_measured
    assert live.shifts[0].references["cess walker"].accuracy_m == 0.02
    # version 1 says nothing of hops: a shift published at its real pace measured them
    assert old.path is None and old.phases is None and old.decisions is None
    assert old.shifts[0].hops is None and old.shifts[0].hops_measured
    fast = replace(old.shifts[0], publish_seconds=1.0)
    assert fast.replay_speedup == pytest.approx(960.0) and not fast.hops_measured


def test_a_manifest_written_is_loaded_back(tmp_path):
    manifest = Manifest.from_json(SIMULATED)
    manifest.write(tmp_path)
    assert load_manifest(tmp_path) == manifest
    assert json.loads((tmp_path / "manifest.json").read_text()) == SIMULATED


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (None, "no trial run here"),
        ("{", "not a trial manifest"),
        ("[]", "not a trial manifest"),
        (json.dumps({**SIMULATED, "manifest_version": 3}), "manifest version 3 unknown"),
        (json.dumps({k: v for k, v in SIMULATED.items() if k != "shifts"}), "'shifts'"),
    ],
)
def test_what_is_not_a_manifest_this_reads_is_refused_by_name(tmp_path, text, words):
    if text is not None:
        (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(TrialError) as caught:
        load_manifest(tmp_path)
    assert words in str(caught.value)
