"""Each definition a verdict stands on, on hand-built cases: what a fresh alert is, what a
degenerate device (always alarming, never alarming, silent) scores, what a few values can
and cannot show, and whose rate a drifted device is charged against."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.test_trial_metrics import _worn
from trials.figures import figures
from trials.metrics import detection
from trials.rows import build_rows
from trials.verdict import FAIL, NOT_DEMONSTRATED, PASS, judge, outcome

CROSSING = (np.array([100_000]), np.array([120_000]))  # truly outside 100-120 s


@pytest.mark.parametrize(
    ("alert_ms", "detected", "time_to_alert_s"),
    [
        (97_000, True, -3.0),  # 3 s early: the uncertainty circle rightly reached the edge first
        (90_000, False, math.nan),  # 10 s early: raised for something else
        (104_500, True, 4.5),  # late, but while the wearer is still outside
        (121_000, False, math.nan),  # after the wearer is back: no warning at all
    ],
)
def test_a_fresh_alert_counts_only_in_its_window(alert_ms, detected, time_to_alert_s):
    d = detection(*CROSSING, np.array([alert_ms]), np.array([alert_ms + 1000]), lead_s=5.0)
    assert bool(d.detected[0]) is detected
    np.testing.assert_equal(d.time_to_alert_s[0], time_to_alert_s)  # never floored
    assert d.false_alerts == (0 if detected else 1)


def test_the_window_is_a_setting():
    d = detection(*CROSSING, np.array([90_000]), np.array([91_000]), lead_s=15.0)
    assert d.detected[0] and d.time_to_alert_s[0] == -10.0


def test_a_saturated_alarm_detects_nothing_and_says_so():
    # on since 30 s before the crossing and still on: the wearer learns nothing new
    d = detection(*CROSSING, np.array([70_000]), np.array([130_000]))
    assert not d.detected[0] and d.saturated[0] and d.false_alerts == 1
    # if it clears and a fresh alert comes in the window, that one detects
    d = detection(*CROSSING, np.array([70_000, 101_000]), np.array([80_000, 130_000]))
    assert d.detected[0] and not d.saturated[0] and d.time_to_alert_s[0] == 1.0


def _shift(alerts: tuple[list[int], list[int]], **more):
    """One 10-minute device-shift with three crossings, its truth and fixes at 1 Hz."""
    t = np.arange(0, 600_000, 100)
    distance = np.ones(t.size)
    starts = np.array([100_000, 250_000, 400_000])
    ends = starts + 20_000
    for s, e in zip(starts, ends, strict=True):
        distance[(t >= s) & (t < e)] = -1.5
    fix_ms = np.arange(0, 600_000, 1000)
    base = dict(
        end_ms=600_000, truth_ms=t, truth_x_m=np.zeros(t.size), truth_y_m=np.zeros(t.size),
        truth_distance_m=distance, fix_ms=fix_ms, x_m=np.zeros(fix_ms.size),
        y_m=np.zeros(fix_ms.size), decide_ms=np.ones(fix_ms.size),
        uplink_ms=np.full(fix_ms.size, 300.0), sent_fix_ms=fix_ms,
        excursion_start_ms=starts, excursion_end_ms=ends, excursion_depth_m=np.full(3, 1.5),
        alert_ms=np.array(alerts[0], np.int64), alert_end_ms=np.array(alerts[1], np.int64),
        alert_logged_ms=np.array(alerts[0], np.int64), alert_x_m=np.zeros(len(alerts[0])),
        alert_y_m=np.zeros(len(alerts[0])), publish_ms=np.ones(len(alerts[0])),
    )  # fmt: skip
    base.update(more)
    return _worn(**base)


def _score(worn):
    f = figures(build_rows(worn), supplier="a")
    criteria = {"detection_rate": 0.99, "false_alarm_share": 0.02, "availability": 0.995}
    return f, {v.criterion: v.status for v in judge(f, criteria, {})}


def test_a_device_that_always_alarms_is_credited_with_nothing():
    # in breach from its first fix to the end of every shift, ten shifts
    worn = [_shift(([0], [600_000]), shift=k, device_id=f"a/{k % 2}") for k in range(10)]
    f, status = _score(worn)
    assert (f.excursions, f.detected, f.saturated) == (30, 0, 30)
    assert f.false_alerts == 10  # one start a shift: few by count...
    # ...but on all the time the wearer was truly safe: 600 s less 3 windows of 35 s
    assert f.false_alarm_share == pytest.approx((600 - 3 * 35) / 600)
    assert f.breach_share == pytest.approx(1.0)
    assert status["detection_rate"] == FAIL and status["false_alarm_share"] == FAIL
    assert math.isnan(f.time_to_alert_p95_s)  # not a flattering -30 s


def test_a_device_that_never_alarms_misses_every_crossing():
    worn = [_shift(([], []), shift=k) for k in range(10)]
    f, status = _score(worn)
    assert (f.detected, f.saturated, f.missed) == (0, 0, 30)
    assert f.false_alarm_share == 0.0 and f.false_alerts == 0
    assert status["detection_rate"] == FAIL


def test_a_silent_device_is_scored_as_silent_not_left_out():
    nothing = np.zeros(0)
    worn = [
        _shift(([], []), shift=k, fix_ms=nothing.astype(np.int64), x_m=nothing, y_m=nothing,
               decide_ms=nothing, uplink_ms=nothing, sent_fix_ms=nothing.astype(np.int64))
        for k in range(10)
    ]  # fmt: skip
    f, status = _score(worn)
    assert f.fixes == 0 and f.availability == 0.0 and f.excursions == 30 and f.detected == 0
    assert f.unprotected_share == pytest.approx((600 - 10) / 600)  # lost after 10 s of silence
    assert status["availability"] == FAIL and status["detection_rate"] == FAIL
    assert math.isnan(f.r95_m)  # no accuracy to speak of: not measured, never zero


def test_a_good_device_on_a_short_trial_is_not_demonstrated():
    # every crossing alerted 1 s in, nothing else: 30 of 30 is still no proof of 99 %
    alerts = ([101_000, 251_000, 401_000], [125_000, 275_000, 425_000])
    worn = [_shift(alerts, shift=k, device_id=f"a/{k % 3}") for k in range(10)]
    f, status = _score(worn)
    assert (f.excursions, f.detected) == (30, 30)
    assert f.detection_ci[0] < 0.99 and status["detection_rate"] == NOT_DEMONSTRATED
    assert f.false_alarm_share == 0.0 and status["false_alarm_share"] == PASS


def test_a_percentile_from_twelve_values_is_not_demonstrated():
    rng = np.random.default_rng(5)
    alerts = np.sort(rng.uniform(0.2, 0.9, 12))
    f = figures(
        build_rows([_shift(([100_000 + round(1000 * a)], [130_000]), shift=k)
                    for k, a in enumerate(alerts[:12])]),
        supplier="a",
    )  # fmt: skip
    # every alert well within 2 s, yet a p95 from 12 values has no upper bound (59 needed)
    assert f.time_to_alert_p95_s < 1.0 and math.isinf(f.time_to_alert_p95_ci_s[1])
    assert outcome(f.time_to_alert_p95_s, f.time_to_alert_p95_ci_s, 2.0, "max") == (
        NOT_DEMONSTRATED
    )


def test_a_drifted_device_is_charged_against_its_certificate():
    # approved at 2 Hz, set in the field to 1 Hz, and it delivered every fix it was set to
    worn = [_shift(([], []), shift=k, rate_hz=1.0, approved_rate_hz=2.0) for k in range(4)]
    f = figures(build_rows(worn), supplier="a")
    assert f.availability == pytest.approx(0.5)  # half of what the certificate promises
    assert f.availability_configured == pytest.approx(1.0)  # shown beside it
    assert f.expected_fixes == 2 * f.expected_fixes_configured


def test_depth_and_overshoot_are_measured_not_clamped():
    from loading.site_files import load_site
    from tests.conftest import ROOT

    site = load_site(ROOT / "examples" / "sites" / "ecm1-kings-cross.toml")
    box = site.safe_zones[0].geometry.bounds
    x, y = np.array([box[0] - 60.0]), np.array([(box[1] + box[3]) / 2])
    assert site.evaluate(x, y).distance_m[0] == -site.index.horizon_m  # the live clamp
    exact = site.exact_distance_m(x, y)[0]
    assert exact < -50.0  # the truth is scored on the real distance
    import shapely

    edge = shapely.union_all([z.geometry for z in site.safe_zones]).boundary
    assert -exact == pytest.approx(shapely.distance(edge, shapely.Point(x[0], y[0])))


def _judged(worn, criteria=None):
    from trials.verdict import rank

    criteria = criteria or {
        "detection_rate": 0.99,
        "time_to_alert_p95_s": 2.0,
        "false_alerts_per_device_hour": 0.5,
        "false_alarm_share": 0.02,
        "availability": 0.995,
        "r95_m": 1.0,
    }
    f = {name: figures(build_rows(w), supplier="a") for name, w in worn.items()}
    verdicts = {name: judge(f[name], criteria, {}) for name in worn}
    return f, verdicts, {r.supplier: r for r in rank(verdicts, f)}


def _many(alerts, k: int = 12, **more):
    return [_shift(alerts, shift=i, device_id=f"a/{i % 3}", **more) for i in range(k)]


def test_a_device_beeping_on_a_timer_is_not_credited_and_ranks_below_a_useful_one():
    from trials.score import readiness

    timer = ([t for t in range(0, 600_000, 3000)], [t + 50 for t in range(0, 600_000, 3000)])
    useful = ([101_000, 251_000, 401_000], [125_000, 275_000, 425_000])
    mute = ([], [])
    f, verdicts, ranks = _judged({"timer": _many(timer), "useful": _many(useful),
                                  "mute": _many(mute)})  # fmt: skip
    status = {n: {v.criterion: v.status for v in vs} for n, vs in verdicts.items()}
    # every crossing has a beep in its window, by chance; that is no detection
    assert f["timer"].detected == f["timer"].excursions
    assert status["timer"]["detection_rate"] == NOT_DEMONSTRATED
    assert status["timer"]["false_alerts_per_device_hour"] == FAIL
    assert readiness(verdicts["timer"], [], "timer").trl == 5
    # a device that never alarms passes accuracy and false alarms, and still ranks last
    assert status["mute"]["false_alarm_share"] == PASS and status["mute"]["r95_m"] == PASS
    assert ranks["useful"].position < ranks["timer"].position
    assert ranks["useful"].position < ranks["mute"].position


def test_a_burst_then_silence_is_charged_for_the_silence():
    # ten times the promised rate for the first minute of each shift, then nothing
    burst = np.arange(0, 60_000, 100)
    worn = _many(([], []), fix_ms=burst, x_m=np.zeros(burst.size), y_m=np.zeros(burst.size),
                 decide_ms=np.ones(burst.size), sent_fix_ms=burst)  # fmt: skip
    f = figures(build_rows(worn), supplier="a")
    assert f.availability == pytest.approx(60 / 600)  # slots covered, not fixes counted
    assert outcome(f.availability, f.availability_ci, 0.995, "min") == FAIL


def test_a_re_crossing_before_the_wearer_is_safely_back_is_the_same_excursion():
    # out 100-120 s, back for 0.3 s, out again to 135 s: one alarm held throughout
    worn = _shift(([101_000], [141_000]), excursion_start_ms=np.array([100_000, 120_300]),
                  excursion_end_ms=np.array([120_000, 135_000]),
                  excursion_depth_m=np.array([0.4, 0.9]))  # fmt: skip
    rows = build_rows([worn])
    ex = rows.excursions
    assert len(ex) == 1 and ex.detected[0] and not ex.saturated[0]
    assert ex.end_ms[0] == 135_000 and ex.depth_m[0] == 0.9  # the deepest part


def test_an_alert_after_the_wearer_is_back_is_late_not_no_alarm():
    # each crossing alerted 1 s after the return
    alerts = ([121_000, 271_000, 421_000], [130_000, 280_000, 430_000])
    f = figures(build_rows(_many(alerts)), supplier="a")
    assert (f.detected, f.late, f.missed) == (0, 36, 0)


def test_clustered_misses_widen_detection_beyond_the_binomial_bound():
    from trials.intervals import clopper_pearson

    # the device misses every crossing on a third of its shifts (say, under a bridge)
    good = ([101_000, 251_000, 401_000], [125_000, 275_000, 425_000])
    worn = [_shift(good if i % 3 else ([], []), shift=i, device_id=f"a/{i % 3}")
            for i in range(30)]  # fmt: skip
    f = figures(build_rows(worn), supplier="a")
    exact = clopper_pearson(f.detected, f.excursions)
    assert f.detection_ci[0] < exact[0] and f.detection_ci[1] > exact[1]


def test_an_interval_that_is_not_one_claims_nothing():
    assert outcome(0.5, (0.6, 0.4), 1.0, "max") == NOT_DEMONSTRATED
    assert outcome(0.5, (0.6, 0.4), 0.1, "min") == NOT_DEMONSTRATED
    assert outcome(0.5, (math.nan, math.nan), 1.0, "max") == NOT_DEMONSTRATED


def test_a_device_s_own_alarms_are_scored_beside_the_platform_s_decision():
    from trials.figures import own_alarm_figures

    platform = ([101_000, 251_000, 401_000], [125_000, 275_000, 425_000])
    # its own alarm: the first crossing 1 s in, the second 8 s in, the third never
    own = dict(own_reported=True, own_alarm_ms=np.array([101_000, 258_000, 500_000]),
               own_alarm_end_ms=np.array([125_000, 275_000, 501_000]),
               own_alarm_x_m=np.array([0.0, 3.0, 0.0]), own_alarm_y_m=np.zeros(3))  # fmt: skip
    rows = build_rows([_shift(platform, shift=k, **own) for k in range(4)]
                      + [_shift(platform, shift=9, device_id="a/x")])  # fmt: skip
    o = own_alarm_figures(rows, supplier="a", spread_limit_s=3.0)
    assert o.device_shifts == 4  # the fifth reported none: left out, not scored as silent
    assert (o.excursions, o.detected, o.saturated) == (12, 8, 0)
    assert o.detected_by_platform_only == 4 and o.detected_by_device_only == 0
    assert o.later_than_platform == 4  # 8 s against 1 s
    assert o.false_alerts == 4  # the stray at 500 s, every shift
    assert o.time_to_alert_p95_s == pytest.approx(8.0)
    # where the device said the wearer was: 3 m off at one alarm in three
    assert o.alarm_position_offset_p95_m == pytest.approx(3.0)
    f = figures(rows, supplier="a")  # trackfence's own decision is untouched by them
    assert (f.excursions, f.detected) == (15, 15)
