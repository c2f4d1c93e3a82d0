"""The breach state machine: raise at once, clear slowly, never flap, never stay silent."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence.breach import (
    BreachConfig,
    DeviceStates,
    EventKind,
    Events,
    State,
    event_kind,
    expire,
    replay,
    state_of,
    step,
    step_fix,
)

CONFIG = BreachConfig(
    accuracy_factor=2.0,
    warning_margin_m=2.0,
    clearing_margin_m=1.0,
    clearing_dwell_s=5.0,
    lost_after_s=10.0,
)


def run(distances, accuracy=0.25, dt_ms=1000, config=CONFIG, device=0, devices=1):
    n = len(distances)
    t = np.arange(n, dtype=np.int64) * dt_ms
    fence = np.where(np.asarray(distances) >= 0, 0, -1)
    return step(
        DeviceStates.new(devices),
        np.full(n, device),
        t,
        np.arange(n),
        np.asarray(distances, float),
        fence,
        np.full(n, accuracy),
        config,
    )


def kinds(result):
    return [event_kind(k).name for k in result.events.kind]


def test_breach_is_raised_when_the_uncertainty_circle_reaches_the_edge_not_later():
    # circle radius 2 × 0.25 = 0.5 m: 0.6 m inside is WARNING, 0.4 m inside is BREACH
    result = run([5.0, 0.6, 0.4])
    assert [state_of(s) for s in result.state_after] == [State.SAFE, State.WARNING, State.BREACH]
    assert kinds(result) == ["RECOVERED", "ENTER", "WARNING", "BREACH"]
    assert result.events.time_ms[-1] == 2000  # the fix that caused it


def test_jitter_around_the_edge_gives_one_alarm_not_a_stream():
    rng = np.random.default_rng(0)
    jitter = 0.3 + rng.normal(0, 0.4, 300)  # hovering about the edge for five minutes
    result = run(list(jitter) + [6.0] * 10)
    assert kinds(result).count("BREACH") == 1
    assert kinds(result).count("CLEAR") == 1


def test_clearing_needs_the_margin_for_the_whole_dwell():
    # back inside by 1.5 m (margin 1.0 after the 0.5 m circle) for 4 s, a dip, then 6 s
    result = run([-1.0, 2.0, 2.0, 2.0, 2.0, 1.2, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    clear_at = result.events.time_ms[result.events.kind == EventKind.CLEAR.code]
    assert clear_at.tolist() == [11_000]  # 5 s after the condition resumed at 6 s


def test_duplicates_and_late_fixes_do_not_flip_state():
    states = DeviceStates.new(1)
    first = step(states, [0, 0], [0, 1000], [0, 1], [5.0, -2.0], [0, -1], [0.2, 0.2], CONFIG)
    assert first.states.state[0] == State.BREACH.code
    # a redelivered copy and an older, safe-looking fix arrive afterwards
    later = step(first.states, [0, 0], [1000, 500], [1, 5], [9.0, 9.0], [0, 0], [0.2, 0.2], CONFIG)
    assert later.accepted.tolist() == [False, False]
    assert later.states.state[0] == State.BREACH.code
    assert len(later.events) == 0


def test_a_silent_device_is_lost_and_recovers_on_its_next_fix():
    result = run([5.0, 5.0])
    states, lost = expire(result.states, 1000 + 9_999, CONFIG)
    assert len(lost) == 0
    states, lost = expire(states, 1000 + 10_000, CONFIG)
    assert [event_kind(k).name for k in lost.kind] == ["LOST"]
    assert lost.time_ms.tolist() == [11_000]
    again = step(states, [0], [30_000], [2], [5.0], [0], [0.2], CONFIG)
    assert [event_kind(k).name for k in again.events.kind] == ["RECOVERED"]
    assert again.states.state[0] == State.SAFE.code


def test_a_gap_on_the_device_clock_is_a_lapse_and_a_breach_is_raised_afresh():
    # in breach, then nothing for a day on the device's own clock (switched off between
    # shifts; the receiving clock never saw the silence): the next fix outside must
    # alert the wearer again, not carry the old breach silently over the gap
    first = run([-1.0, -1.0])
    assert first.states.state[0] == State.BREACH.code
    day_ms = 86_400_000
    again = step(first.states, [0], [day_ms], [0], [-1.0], [-1], [0.2], CONFIG)
    kinds = [event_kind(k).name for k in again.events.kind]
    assert kinds == ["LOST", "RECOVERED", "BREACH"]
    assert again.events.time_ms[0] == 1000 + 10_000  # protection lapsed 10 s after the last fix
    assert again.states.state[0] == State.BREACH.code
    # a gap shorter than lost_after_s is no lapse: the breach simply continues
    short = step(first.states, [0], [9_000], [2], [-1.0], [-1], [0.2], CONFIG)
    assert len(short.events) == 0


def test_replay_raises_lost_for_a_gap_in_a_recording():
    t = np.array([0, 1000, 2000, 30_000, 31_000])
    r = replay(
        DeviceStates.new(1),
        np.zeros(5),
        t,
        np.arange(5),
        np.full(5, 5.0),
        np.zeros(5),
        np.full(5, 0.2),
        CONFIG,
    )
    lost = r.events.time_ms[r.events.kind == EventKind.LOST.code]
    assert lost.tolist() == [12_000]


def test_unknown_accuracy_is_treated_pessimistically():
    result = run([8.0, 8.0], accuracy=np.nan)  # assumed 5 m × 2 = 10 m circle
    assert result.state_after[0] == State.BREACH.code


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="clearing_dwell_s"):
        BreachConfig(clearing_dwell_s=-1)


def _stream(fixes, seed):
    """A fix stream as it arrives: devices, distances, fix times with late and duplicate
    fixes among them, and receipt times with silences (a tunnel's buffered burst)."""
    rng = np.random.default_rng(seed)
    n = len(fixes)
    device = np.array([f[0] for f in fixes], dtype=np.int64)
    distance = np.array([f[1] for f in fixes])
    heard = np.cumsum([f[2] * 400 for f in fixes]).astype(np.int64)
    # fix times trail receipt by a device delay that sometimes grows (buffering)
    time_ms = heard - rng.choice([0, 300, 2_000, 12_000], size=n, p=[0.6, 0.2, 0.1, 0.1])
    seq = np.arange(n, dtype=np.int64)
    swap = rng.random(n) < 0.15  # a late arrival: the previous fix's time and sequence
    time_ms[1:][swap[1:]] = time_ms[:-1][swap[1:]]
    seq[1:][swap[1:]] = seq[:-1][swap[1:]]
    fence = np.where(distance >= 0, 0, -1)
    accuracy = rng.choice([0.3, np.nan, -1.0, 2.0], size=n, p=[0.7, 0.1, 0.1, 0.1])
    return device, time_ms, seq, distance, fence, accuracy, heard


FIXES = st.lists(
    st.tuples(st.integers(0, 3), st.floats(-5, 8), st.integers(0, 40)), min_size=1, max_size=80
)


def _one_at_a_time(stream, scalar=None):
    device, time_ms, seq, distance, fence, accuracy, heard = stream
    states, events, accepted, after = DeviceStates.new(4), [], [], []
    for i in range(device.size):
        one = slice(i, i + 1)
        r = step(states, device[one], time_ms[one], seq[one], distance[one], fence[one],
                 accuracy[one], CONFIG, heard_ms=heard[one], scalar=scalar)  # fmt: skip
        states = r.states
        events += r.events.records()
        accepted += r.accepted.tolist()
        after += r.state_after.tolist()
    return states, events, accepted, after


def _key(e):
    return (e["device"], e["time_ms"], e["seq"], e["event"])


@settings(max_examples=60, deadline=None)
@given(FIXES, st.integers(0, 10**6))
def test_any_cut_into_batches_and_any_ticks_decide_as_one_fix_at_a_time(fixes, seed):
    """However the live service cuts a stream into batches, and whenever its clock tick
    happens to look for silent devices, the events are those of one fix at a time: the
    decisions are a function of the fix stream alone (so a replay decides as live does)."""
    stream = _stream(fixes, seed)
    device, time_ms, seq, distance, fence, accuracy, heard = stream
    rng = np.random.default_rng(seed + 1)
    cuts = np.flatnonzero(rng.random(device.size) < 0.3)
    states, events, accepted, after = DeviceStates.new(4), [], [], []
    for part in np.split(np.arange(device.size), cuts):
        if part.size == 0:
            continue
        r = step(states, device[part], time_ms[part], seq[part], distance[part], fence[part],
                 accuracy[part], CONFIG, heard_ms=heard[part])  # fmt: skip
        states = r.states
        events += r.events.records()
        accepted += r.accepted.tolist()
        after += r.state_after.tolist()
        if rng.random() < 0.5:  # a tick on the receiving clock, after this batch
            now = int(heard[part[-1]]) + int(rng.integers(0, 400))
            states, lost = expire(states, now, CONFIG)
            events += lost.records()
    end = int(heard[-1]) + 400  # the stream over, both look for silent devices once more
    events += expire(states, end, CONFIG)[1].records()
    after_all, alone, alone_accepted, alone_after = _one_at_a_time(stream)
    alone += expire(after_all, end, CONFIG)[1].records()
    assert accepted == alone_accepted
    assert after == alone_after  # the state each fix is kept with, applied or not
    # a LOST said by a tick is the one the next fix would have revealed, with the same stamp
    assert sorted(events, key=_key) == sorted(alone, key=_key)


@settings(max_examples=60, deadline=None)
@given(FIXES, st.integers(0, 10**6))
def test_fix_by_fix_and_vectorised_decide_alike(fixes, seed):
    """The plain-Python path (a lone fix, a replay) and the vectorised one are one rule."""
    stream = _stream(fixes, seed)
    device, time_ms, seq, distance, fence, accuracy, heard = stream
    start = DeviceStates.new(4)
    args = (start, device, time_ms, seq, distance, fence, accuracy, CONFIG)
    fast = step(*args, heard_ms=heard, scalar=True)
    wide = step(*args, heard_ms=heard, scalar=False)
    for field in DeviceStates.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(fast.states, field), getattr(wide.states, field))
    assert fast.events.records() == wide.events.records()
    assert fast.accepted.tolist() == wide.accepted.tolist()
    assert fast.state_after.tolist() == wide.state_after.tolist()
    assert start.state.tolist() == [State.LOST.code] * 4  # the states given are never changed
    one = _one_at_a_time(stream, scalar=True)
    assert sorted(one[1], key=_key) == sorted(fast.events.records(), key=_key)


@settings(max_examples=80, deadline=None)
@given(FIXES, st.integers(0, 10**6))
def test_a_lone_fix_on_its_row_decides_as_step(fixes, seed):
    """`step_fix` (the live path's lone fix: one device's row, plain numbers, nothing
    copied) gives the events, accepted flags, states kept and final states of `step`."""
    device, time_ms, seq, distance, fence, accuracy, heard = _stream(fixes, seed)
    unusable = np.random.default_rng(seed + 2).random(device.size) < 0.05
    distance[unusable] = np.nan  # a position that could not be measured: the worst case
    states, rows, accepted, after = DeviceStates.new(4), [], [], []
    for i in range(device.size):
        d = int(device[i])
        done = step_fix(states.row(d), d, int(time_ms[i]), int(seq[i]), float(distance[i]),
                        int(fence[i]), float(accuracy[i]), CONFIG, int(heard[i]), rows)  # fmt: skip
        if done.accepted:
            states.put(d, done.row)
        accepted.append(done.accepted)
        after.append(done.state_after)
    wide = step(DeviceStates.new(4), device, time_ms, seq, distance, fence, accuracy, CONFIG,
                heard_ms=heard, scalar=False)  # fmt: skip
    for field in DeviceStates.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(states, field), getattr(wide.states, field))
    assert accepted == wide.accepted.tolist()
    assert after == wide.state_after.tolist()
    by_device = sorted(rows, key=lambda r: r[0])  # step groups events by device, in order
    columns = list(zip(*by_device, strict=True)) if by_device else [()] * 6
    for got, field in zip(columns, Events.__dataclass_fields__, strict=True):
        np.testing.assert_array_equal(np.array(got, dtype=float),
                                      getattr(wide.events, field).astype(float))  # fmt: skip


def test_a_device_with_a_slow_clock_is_not_lost_while_it_keeps_reporting():
    states = DeviceStates.new(1)
    slow_ms = 60_000  # the device's clock runs a minute behind the receiver's
    for k in range(5):
        heard = 1_000_000 + k * 1000
        r = step(states, [0], [heard - slow_ms], [k], [5.0], [0], [0.2], CONFIG, heard_ms=[heard])
        states = r.states
        states, lost = expire(states, heard + 500, CONFIG)
        assert len(lost) == 0 and states.state[0] == State.SAFE.code
    states, lost = expire(states, 1_004_000 + 10_000, CONFIG)  # now it really falls silent
    assert [event_kind(k).name for k in lost.kind] == ["LOST"]
    assert lost.time_ms.tolist() == [1_004_000 - slow_ms + 10_000]  # stamped on its own clock


def test_a_device_clock_that_jumps_back_is_followed_not_ignored():
    # seq counts on while the fix time falls back an hour: the device is still reporting,
    # so its fixes are decided (and a breach alerted), not dropped as late arrivals
    hour = 3_600_000
    first = step(DeviceStates.new(1), [0, 0], [5 * hour, 5 * hour + 1000], [10, 11],
                 [2.0, 2.0], [0, 0], [0.2, 0.2], CONFIG)  # fmt: skip
    back = step(first.states, [0], [4 * hour], [12], [-1.0], [-1], [0.2], CONFIG)
    assert back.accepted.tolist() == [True]
    assert "BREACH" in [event_kind(k).name for k in back.events.kind]
    # a late copy of an old fix (its sequence number is behind) is still not applied
    late = step(back.states, [0], [3 * hour], [5], [2.0], [0], [0.2], CONFIG)
    assert late.accepted.tolist() == [False] and len(late.events) == 0


# ------------------------------------------------------------------ the vocabulary


def test_one_vocabulary_says_what_is_stored_and_what_the_arrays_hold():
    """Each kind and state is said one way: its value is the text the store, the alerts
    and the console carry, and its code the number the state machine's arrays hold (the
    numbers the kinds and states have always had)."""
    from geofence.vocabulary import EVENT_KINDS, MACHINE_STATES, STATES

    assert [k.value for k in EVENT_KINDS] == [
        "enter", "exit", "warning", "safe", "breach", "clear", "lost", "recovered",
    ]  # fmt: skip
    assert [k.code for k in EVENT_KINDS] == list(range(8))
    assert [s.value for s in STATES] == ["SAFE", "WARNING", "BREACH", "LOST", "UNASSIGNED"]
    assert [s.code for s in STATES] == list(range(5))
    assert all(event_kind(k.code) is k for k in EventKind)
    assert all(state_of(np.int8(s.code)) is s for s in State)
    assert set(STATES[:4]) == MACHINE_STATES
    assert EventKind.BREACH == "breach" and f"{State.LOST}" == "LOST"
    for bad in (-1, 8):
        with pytest.raises(ValueError, match="not an event kind"):
            event_kind(bad)
    with pytest.raises(ValueError, match="not a state"):
        state_of(5)
    # the states a new device starts in, and a lapse, are said in codes
    assert DeviceStates.new(2).state.tolist() == [State.LOST.code] * 2


def test_the_cores_documented_examples_run():
    """The examples in the core's and the store's docs are run, so they stay true."""
    import doctest
    import importlib
    import pkgutil

    import geofence
    import store

    names = [m.name for pkg in (geofence, store) for m in pkgutil.iter_modules(pkg.__path__,
             pkg.__name__ + ".")]  # fmt: skip
    failed = {}
    for name in names:
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
        if result.failed:
            failed[name] = result.failed
    assert failed == {}
