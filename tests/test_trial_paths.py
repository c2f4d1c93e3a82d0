"""A simulated trial decided in-process stores what the live service over MQTT stores.

The main job decides its shifts in-process (trials.harness.replay) for speed; the MQTT path
(`--via-mqtt`: simulated devices -> broker -> the live ingest service) is the
end-to-end proof. Both must give the same decisions, events, alerts, dead letters and
devices' own alarms for the same shifts, row for row; only the platform's hops (when
a fix was decided, when its alert was published) may differ. The shifts here have a
tunnel (a minute without a fix, then a burst), three device formats (native, NMEA,
OwnTracks), devices that report their own alarms, and a clock that is wrong.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict

import pytest

from store import open_store
from tests.conftest import ROOT
from trials.definition import trial_from_mapping
from trials.harness.runner import IN_PROCESS, VIA_MQTT, run_trial

EXAMPLE = ROOT / "examples" / "trials" / "three-suppliers.toml"
#: When an alert went out: the live service stamps its publication, a replay the arrival
#: of the fix that raised it (neither is a measured hop; trials.harness.replay).
HOPS = {"alert_ms", "published_ms"}


def _two_shifts():
    data = tomllib.loads(EXAMPLE.read_text())
    data["trial"]["repeats"] = 1
    data["trial"].pop("feedback", None)
    data["scenario"] = [
        {"file": "../scenarios/tunnel-approach.toml"},
        {"file": "../scenarios/under-overbridge.toml"},
    ]
    return trial_from_mapping(data, EXAMPLE)


def _rows(url: str) -> dict[str, list[tuple]]:
    store = open_store(url)
    try:
        everything = {"since_ms": 0, "until_ms": 2**62}
        tables = {
            "fixes": store.fixes(**everything),
            "events": store.events(**everything),
            "alerts": store.alerts(**everything),
            "dead_letters": store.dead_letters(),
            "device_alarms": store.device_alarms(**everything),
        }
    finally:
        store.close()
    return {
        name: sorted(tuple((k, v) for k, v in asdict(r).items() if k not in HOPS) for r in rows)
        for name, rows in tables.items()
    }


#: In-process with the devices shared out among processes, in one process, and over MQTT.
SHARED, ALONE = "in-process, 3 processes", "in-process, 1 process"


@pytest.fixture(scope="module")
def both_paths(tmp_path_factory):
    trial = _two_shifts()
    runs = {}
    for name, options in (
        (IN_PROCESS, {"workers": 2}),
        (SHARED, {"workers": 3}),
        (ALONE, {"workers": 1}),
        (VIA_MQTT, {"via_mqtt": True}),
    ):
        out = tmp_path_factory.mktemp("run")
        manifest = run_trial(trial, out, **options)
        runs[name] = (manifest, _rows(f"sqlite:///{out / 'trial.sqlite'}"))
    return runs


def test_sharing_the_devices_among_processes_stores_what_one_process_does(both_paths):
    """A device's decisions depend only on its own messages and last stored fix, so the
    devices can be decided side by side; the store holds the same rows however shared."""
    one = both_paths[ALONE][1]
    assert both_paths[ALONE][0].phases.workers == 1
    for name in (IN_PROCESS, SHARED):
        assert both_paths[name][0].phases.workers > 1
        rows = both_paths[name][1]
        for table in one:
            # a replay stamps each alert at the arrival of the fix that raised it, or
            # at the tick that found a device silent: the same whoever decides it
            assert rows[table] == one[table], f"{table} differ: {name} and one process"


def test_in_process_and_over_mqtt_store_the_same_rows(both_paths):
    (fast, fast_rows), (mqtt, mqtt_rows) = both_paths[IN_PROCESS], both_paths[VIA_MQTT]
    assert [s.path for s in fast.shifts] == [IN_PROCESS] * 2
    assert [s.path for s in mqtt.shifts] == [VIA_MQTT] * 2
    assert len(fast_rows["fixes"]) > 10_000
    kinds = {dict(e)["kind"] for e in fast_rows["events"]}
    # the shifts exercise what differs between a replay and a live stream
    assert {"breach", "clear", "lost", "recovered"} <= kinds
    assert fast_rows["device_alarms"] and fast_rows["alerts"]
    for table in fast_rows:
        assert fast_rows[table] == mqtt_rows[table], f"{table} differ between the two paths"


def test_a_replay_raises_no_live_service_alarm_about_itself(both_paths):
    """Fixes from June replayed in November are not late: the service judges lateness on
    the replay's clock, so `falling-behind` (or any other alarm) is never raised."""
    mqtt, _ = both_paths[VIA_MQTT]
    assert [s.ingest_alarms for s in mqtt.shifts] == [(), ()]
    assert all(s.hops.startswith("not measured") for s in mqtt.shifts)


def test_a_silence_is_lost_protection_stamped_when_it_lapsed(both_paths):
    """The tunnel: a minute with no fix is a lapse in protection, stamped when protection
    lapsed (the last accepted fix + lost_after_s), whether a tick or the next fix found it."""
    manifest, rows = both_paths[IN_PROCESS]
    lapse_ms = round(manifest.decisions["lost_after_s"] * 1000)
    accepted: dict[str, list[int]] = {}
    for fix in map(dict, rows["fixes"]):
        if fix["accepted"]:
            accepted.setdefault(fix["device_id"], []).append(fix["fix_ms"])
    lost = [dict(e) for e in rows["events"] if dict(e)["kind"] == "lost"]
    assert len(lost) >= 2
    for e in lost:
        before = [t for t in accepted[e["device_id"]] if t <= e["event_ms"] - lapse_ms]
        assert before and max(before) + lapse_ms == e["event_ms"]
