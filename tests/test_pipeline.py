"""The ingest pipeline without a broker: decisions, events and alerts per message, and
one message's fate never touching another's (issue 14)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence.breach import BreachConfig
from ingest.deployment import Deployment
from ingest.pipeline import STALE_AFTER_RANGE_S, Decided, Inbound, Pipeline
from ingest.settings import SettingsError, load_settings
from tests.devices import native, site_latlon

DAY_MS = 86_400_000
T0 = 1_780_000_000_000


def test_a_device_back_after_a_day_in_breach_is_alerted_again(example_site):
    # a device left in breach at the end of one shift and switched on outside the safe
    # zone the next day: the wearer gets a new tap on the shoulder, and the breach log
    # shows the lapse (LOST at lost_after_s after the last fix) and the recovery
    pipeline = Pipeline(Deployment({example_site.name: example_site}, [("*", example_site.name)]),
                        BreachConfig())  # fmt: skip
    lat, lon = site_latlon(example_site, 1250.0, -3.0)  # 40 m past the worksite's limit
    topic = "trackside/v1/acme/ac-0101/fix"
    first = pipeline.decide([Inbound(topic, native("ac-0101", 1, T0, lat, lon), T0)], lambda: T0)
    assert [a.kind for a in first.alerts] == ["breach"]
    later = T0 + DAY_MS
    again = pipeline.decide(
        [Inbound(topic, native("ac-0101", 2, later, lat, lon), later)], lambda: later
    )
    kinds = [e.kind for e in again.batch.events]
    assert kinds[:3] == ["lost", "recovered", "breach"], kinds
    assert again.batch.events[0].event_ms == T0 + 10_000
    assert [a.kind for a in again.alerts if a.kind == "breach"] == ["breach"]


# ------------------------------------------------------------ one message, one fate (issue 14)

NOW = 1_795_000_000_000
YEAR_MS = 365 * DAY_MS


def _pipeline(site, **kwargs) -> Pipeline:
    return Pipeline(Deployment({site.name: site}, [("*", site.name)]), BreachConfig(), **kwargs)


def _walk(site, device: str, n: int, crossing: int, t0: int = NOW) -> list[Inbound]:
    """A device's fixes, 100 ms apart, inside the safe zone until `crossing`, then out."""
    inside, outside = site_latlon(site, 500.0, -3.0), site_latlon(site, 500.0, -8.0)
    return [
        Inbound(
            f"trackside/v1/acme/{device}/fix",
            native(device, k, t0 + k * 100, *(outside if k >= crossing else inside)),
            t0 + k * 100 + 40,
        )
        for k in range(n)
    ]


def _poison(t: int) -> list[Inbound]:
    """The issue's hostile payloads (every one of them failed a whole batch before)."""
    body = '{"seq":%s,"time_ms":%d,"lat":51.5627,"lon":-0.1068%s}'
    return [
        Inbound("trackside/v1/probe/evil/fix", (body % (10**30, t, "")).encode(), t),
        Inbound("trackside/v1/probe/evil/fix", (body % (1, t, ',"satellites":1e30')).encode(), t),
        Inbound(
            "trackside/v1/probe/evil/fix", (body % (2, t, ',"satellites":4294967295')).encode(), t
        ),
        Inbound(
            "trackside/v1/probe/evil/fix",
            (body % (3, t, ',"firmware":"a\\u0000\\ud800"')).encode(),
            t,
        ),
        Inbound("trackside/v1/probe/evil/fix", (body % ("9" * 5000, t, "")).encode(), t),
        Inbound("trackside/v1/probe/evil/fix", (body % (4, t, ',"lat":' + "1" * 400)).encode(), t),
    ]


def _summary(decided: Decided, device: str) -> tuple:
    return (
        [(f.seq, f.state, f.accepted) for f in decided.batch.fixes if f.device_id == device],
        [(e.kind, e.seq) for e in decided.batch.events if e.device_id == device],
        [(a.kind, a.seq) for a in decided.alerts if a.device_id == device],
    )


def test_a_poison_payload_never_touches_the_other_messages_of_its_batch(example_site):
    good = _walk(example_site, "good", 40, crossing=30)
    alone = _pipeline(example_site).decide(good, lambda: NOW + 5000)
    mixed = good[:10] + _poison(NOW + 1000) + good[10:31] + _poison(NOW + 3000) + good[31:]
    decided = _pipeline(example_site).decide(mixed, lambda: NOW + 5000)
    # every other message is decided exactly as if the poison had not been there
    assert _summary(decided, "acme/good") == _summary(alone, "acme/good")
    assert ("breach", 30) in _summary(decided, "acme/good")[2]
    assert len(decided.batch.fixes) == 40
    assert [d.reason for d in decided.batch.dead_letters] == 2 * [
        "range:seq",
        "range:satellites",
        "range:satellites",
        "range:firmware",
        "range:seq",
        "range:lat",
    ]


def test_a_year_old_fix_is_stale_and_moves_nothing_in_one_batch_or_one_by_one(example_site):
    inside, outside = site_latlon(example_site, 500.0, -3.0), site_latlon(example_site, 500.0, -8.0)
    topic = "trackside/v1/acme/j/fix"
    fixes = [(1, NOW, inside), (2, NOW + 1000, inside), (3, NOW - YEAR_MS + 2000, outside),
             (4, NOW + 3000, inside), (5, NOW + 4000, inside)]  # fmt: skip
    messages = [Inbound(topic, native("j", q, t, *at), NOW + q * 1000 + 40) for q, t, at in fixes]
    together = _pipeline(example_site).decide(messages, lambda: NOW + 6000)
    one_by_one = _pipeline(example_site)
    singly = Decided()
    for m in messages:
        singly.merge(one_by_one.decide([m], lambda: NOW + 6000))
    for decided in (together, singly):
        assert [f.seq for f in decided.batch.fixes] == [1, 2, 4, 5]
        assert [d.reason for d in decided.batch.dead_letters] == ["time:stale"]
        kinds = [e.kind for e in decided.batch.events]
        assert "breach" not in kinds and "lost" not in kinds and kinds.count("recovered") == 1
        assert [a.kind for a in decided.alerts if a.kind in ("breach", "lost")] == []
    assert _summary(together, "acme/j") == _summary(singly, "acme/j")


def test_a_replay_a_tunnel_burst_and_a_small_clock_correction_are_not_stale(example_site):
    pipeline = _pipeline(example_site)
    june = NOW - 160 * DAY_MS  # a replayed June shift, received in November
    replay = _walk(example_site, "replayed", 20, crossing=15, t0=june)
    replay = [Inbound(m.topic, m.payload, NOW + k) for k, m in enumerate(replay)]
    tunnel = _walk(example_site, "tunnel", 50, crossing=40, t0=NOW - 30 * 60_000)
    decided = pipeline.decide(replay + tunnel, lambda: NOW + 100)
    assert not decided.batch.dead_letters and len(decided.batch.fixes) == 70
    assert {(a.device_id, a.seq) for a in decided.alerts if a.kind == "breach"} == {
        ("acme/replayed", 15),
        ("acme/tunnel", 40),
    }
    # a device clock put back a minute, its sequence counting on: followed, as before
    inside = site_latlon(example_site, 500.0, -3.0)
    back = pipeline.decide(
        [Inbound("trackside/v1/acme/tunnel/fix", native("tunnel", 50, NOW - 60_000, *inside), NOW)],
        lambda: NOW,
    )
    assert not back.batch.dead_letters and back.batch.fixes[0].accepted


def test_an_owntracks_last_will_raises_lost_at_once(example_site):
    pipeline = _pipeline(example_site)
    lat, lon = site_latlon(example_site, 500.0, -2.0)
    topic = "trackside/v1/phones/jb/fix"
    location = {"_type": "location", "tst": NOW // 1000, "lat": lat, "lon": lon, "acc": 1}
    pipeline.decide([Inbound(topic, json.dumps(location).encode(), NOW)], lambda: NOW)
    will = json.dumps({"_type": "lwt", "tst": NOW // 1000}).encode()
    gone = pipeline.decide([Inbound(topic, will, NOW + 500)], lambda: NOW + 500)
    assert [(a.kind, a.event_ms) for a in gone.alerts] == [("lost", NOW + 500)]
    assert not gone.batch.dead_letters


def test_two_nmea_epochs_in_one_message_are_both_decided(example_site):
    from wire import nmea

    lat, lon = site_latlon(example_site, 500.0, -2.0)
    t = NOW - NOW % 1000

    def epoch(ms: int) -> str:
        import time

        hhmmss = time.strftime("%H%M%S", time.gmtime(ms // 1000)) + ".00"
        ddmmyy = time.strftime("%d%m%y", time.gmtime(ms // 1000))
        la = f"{int(lat):02d}{(lat - int(lat)) * 60:08.5f}"
        lo = f"{int(-lon):03d}{(-lon - int(-lon)) * 60:08.5f}"
        gga = nmea.sentence(f"GNGGA,{hhmmss},{la},N,{lo},W,4,20,0.6,20.0,M,45.0,M,,")
        rmc = nmea.sentence(f"GNRMC,{hhmmss},A,{la},N,{lo},W,0.0,,{ddmmyy},,,R")
        return f"{gga}\r\n{rmc}\r\n"

    body = (epoch(t) + epoch(t + 1000)).encode()
    decided = _pipeline(example_site).decide(
        [Inbound("trackside/v1/gnss/g1/fix", body, t + 1500)], lambda: t + 1500
    )
    assert [f.fix_ms for f in decided.batch.fixes] == [t, t + 1000]
    assert all(f.accepted for f in decided.batch.fixes)


def test_a_fault_of_ours_on_one_message_does_not_take_its_batch_with_it(example_site, monkeypatch):
    pipeline = _pipeline(example_site)
    good = _walk(example_site, "good", 20, crossing=15)
    buggy = _walk(example_site, "buggy", 3, crossing=99)

    def failing(real):
        def decide(self, states, fixes, clock, fragments):
            if any(f.device == "buggy" for f, _, _ in fixes):
                raise RuntimeError("a bug")
            return real(self, states, fixes, clock, fragments)

        return decide

    # the bug is in the decision, whichever path a batch takes (vectorised, or one at a time)
    monkeypatch.setattr(Pipeline, "_decide_fixes", failing(Pipeline._decide_fixes))
    monkeypatch.setattr(Pipeline, "_decide_each", failing(Pipeline._decide_each))
    decided = pipeline.decide(good[:10] + buggy + good[10:], lambda: NOW + 3000)
    assert [d.reason for d in decided.batch.dead_letters] == ["internal"] * 3
    assert pipeline.isolated_failures == 3
    # the batch's failure left the states untouched, so each good fix was decided once
    assert [(f.seq, f.accepted) for f in decided.batch.fixes] == [(k, True) for k in range(20)]
    assert [a.seq for a in decided.alerts if a.kind == "breach"] == [15]


def test_stale_after_s_is_a_bounded_setting(example_site, tmp_path):
    lo, hi = STALE_AFTER_RANGE_S
    assert _pipeline(example_site, stale_after_s=lo).stale_after_ms == lo * 1000
    for bad in (lo / 2, hi * 2, float("nan"), "300", True):
        with pytest.raises(ValueError, match="stale_after_s"):
            _pipeline(example_site, stale_after_s=bad)
    config = tmp_path / "ingest.toml"
    config.write_text("[ingest]\nstale_after_s = 1e9\n")
    with pytest.raises(SettingsError, match="stale_after_s"):
        load_settings(config, env={})
    config.write_text("[ingest]\nstale_after_s = 120\n")
    assert load_settings(config, env={}).stale_after_s == 120.0


@pytest.mark.parametrize(
    "line",
    ["batch_max_fixes = 0", "batch_max_fixes = 1e9", 'batch_max_fixes = "500"',
     "batch_max_fixes = true", "batch_max_wait_ms = -1", "batch_max_wait_ms = nan",
     "batch_max_wait_ms = 86400000", 'batch_max_wait_ms = "1"'],
)  # fmt: skip
def test_micro_batch_settings_are_bounded(tmp_path, line):
    """A worker refuses to start on a batch size or wait it could not run with, naming it."""
    config = tmp_path / "ingest.toml"
    config.write_text(f"[ingest]\n{line}\n")
    with pytest.raises(SettingsError, match=line.split(" =")[0]):
        load_settings(config, env={})
    config.write_text("[ingest]\nbatch_max_fixes = 200\nbatch_max_wait_ms = 2.5\n")
    loaded = load_settings(config, env={})
    assert (loaded.batch_max_fixes, loaded.batch_max_wait_ms) == (200, 2.5)


def test_the_words_kept_and_sent_are_the_cores_vocabulary(example_site):
    """Events, alerts and fixes carry the core's EventKind and State, and are kept and sent
    as the same text as ever ("breach", "BREACH", and UNASSIGNED for a device at no site);
    a worker restarted from the store resumes a device kept UNASSIGNED as LOST."""
    from geofence.vocabulary import EventKind, State, state_of
    from store import DeviceState

    def pipeline() -> Pipeline:
        return Pipeline(Deployment({example_site.name: example_site},
                                   [("acme/*", example_site.name)]), BreachConfig())  # fmt: skip

    lat, lon = site_latlon(example_site, 500.0, -3.0)
    nowhere = Inbound("trackside/v1/other/u1/fix", native("u1", 1, NOW, lat, lon), NOW + 40)
    decided = pipeline().decide([*_walk(example_site, "w1", 20, crossing=15), nowhere],
                                lambda: NOW + 3000)  # fmt: skip
    kinds = [e.kind for e in decided.batch.events]
    assert all(type(k) is EventKind for k in kinds) and kinds.count("breach") == 1
    alert = next(a for a in decided.alerts if a.kind == EventKind.BREACH)
    assert json.loads(alert.payload)["kind"] == "breach" and '"kind":"breach"' in alert.payload
    states = {(f.device_id, f.state) for f in decided.batch.fixes}
    assert {("other/u1", "UNASSIGNED"), ("acme/w1", "BREACH")} <= states
    assert all(type(f.state) is State for f in decided.batch.fixes)
    again = pipeline()
    again.restore([DeviceState("other/u1", NOW, 1, "UNASSIGNED", None, None, NOW + 40),
                   DeviceState("acme/w1", NOW, 19, "BREACH", None, -1.0, NOW + 40)])  # fmt: skip
    assert [state_of(s) for s in again.states.state] == [State.LOST, State.BREACH]


# ------------------------------------------------------------ a lone fix, on plain numbers

_DEVICES = ("acme/a1", "acme/a2", "bolt/b1", "elsewhere/e1")  # bolt reports WGS84; e1 no site


def _stream(site, steps) -> list[Inbound]:
    """Messages from random walks about the safe zone's edge: late, repeated and silent
    fixes, a device at no site, a WGS84 supplier, a missing accuracy, a last will."""
    messages, seq, clock = [], dict.fromkeys(_DEVICES, 0), NOW
    for who, lateral_m, accuracy_m, gap_ms, kind in steps:
        device = _DEVICES[who]
        supplier, name = device.split("/")
        clock += gap_ms
        seq[device] += 1
        lat, lon = site_latlon(site, 410.0 + 0.01 * seq[device], lateral_m)
        if kind == "will":
            body = json.dumps({"_type": "lwt", "tst": clock // 1000}).encode()
            messages.append(Inbound(f"trackside/v1/{supplier}/{name}/fix", body, clock))
            continue
        fix_ms, number = clock - 50, seq[device]
        if kind == "late" and number > 2:
            fix_ms, number = fix_ms - 1500, number - 2  # an earlier fix, delivered late
        body = json.loads(native(name, number, fix_ms, lat, lon, accuracy_m))
        if kind == "no-accuracy":
            del body["accuracy_m"]
        topic = f"trackside/v1/{supplier}/{name}/fix"
        messages.append(Inbound(topic, json.dumps(body).encode(), clock))
        if kind == "again":
            messages.append(Inbound(topic, json.dumps(body).encode(), clock + 5))
    return messages


def _decided(site, messages, cuts, one_at_a_time_max, ticks=True) -> list[Decided]:
    import ingest.pipeline as pipeline_module

    deployment = Deployment({site.name: site}, [("acme/*", site.name), ("bolt/*", site.name)],
                            supplier_datum={"bolt": "WGS84"})  # fmt: skip
    # quick to clear and to warn, so that a short stream goes through every state
    config = BreachConfig(lost_after_s=3.0, clearing_margin_m=0.2, clearing_dwell_s=0.5,
                          warning_margin_m=0.5, warning_hysteresis_m=0.1)  # fmt: skip
    pipeline = Pipeline(deployment, config)
    out, at = [], 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline_module, "ONE_AT_A_TIME_MAX", one_at_a_time_max)
        for end in [*(c for c in cuts if c < len(messages)), len(messages)]:
            if end > at:
                out.append(pipeline.decide(messages[at:end], lambda: 7))
                if ticks:  # the clock's look for silent devices, after each batch
                    out.append(pipeline.expire(messages[end - 1].received_ms + 100))
                at = end
        out.append(pipeline.expire(messages[-1].received_ms + 100))
    return out


def _kept(decided: list[Decided]) -> tuple:
    batch = Decided()
    for d in decided:
        batch.merge(d)
    b = batch.batch
    return b.fixes, b.events, [(a.topic, a.payload) for a in batch.alerts], b.dead_letters


STEPS = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.floats(-6.0, 1.5),  # metres left of the line: the safe zone is from -4.5 to 0.6
        st.sampled_from([0.02, 0.1, 0.3]),
        st.sampled_from([0, 20, 200, 1000, 1000, 4000]),
        st.sampled_from(["fix"] * 6 + ["late", "again", "no-accuracy", "will"]),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(STEPS, st.lists(st.integers(0, 60), max_size=6))
def test_a_lone_fix_on_plain_numbers_decides_as_the_vectorised_batch(example_site, steps, cuts):
    """A few fixes are decided one at a time on plain Python numbers (the live path when
    quiet), a busier batch on arrays: every fix, event, alert and dead letter kept is the
    same either way, and however the stream is cut into batches."""
    messages = _stream(example_site, steps)
    each = [k + 1 for k in range(len(messages))]
    scalar = _kept(_decided(example_site, messages, each, 8))
    vectorised = _kept(_decided(example_site, messages, each, 0))
    assert scalar == vectorised
    assert len(scalar[0]) == sum(b'"lwt"' not in m.payload for m in messages)
    assert not scalar[3]  # no dead letters: every message was decided
    # cut otherwise, a LOST that a fix revealed is kept in that fix's batch rather than
    # the clock tick's: the same event, kept in another order. (Without ticks between:
    # a last will says LOST when it arrives, so a tick that looked first stamps it sooner.)
    cut = sorted(set(cuts))
    alone = _kept(_decided(example_site, messages, each, 8, ticks=False))
    for one_at_a_time_max in (8, 0):
        batched = _kept(_decided(example_site, messages, cut, one_at_a_time_max, ticks=False))
        assert batched[0] == alone[0]
        assert sorted(batched[1], key=repr) == sorted(alone[1], key=repr)
        assert sorted(batched[2]) == sorted(alone[2])
        assert batched[3] == alone[3] == []
