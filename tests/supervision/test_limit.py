"""Adaptive limits: configuration, each algorithm's update rule step by step, probes, and the
limit against a simulated dependency whose latency grows past a capacity it does not announce."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervision import (
    AdaptiveLimit,
    FakeClock,
    LimitAlgorithm,
    Limiter,
)
from supervision.limit import (
    MOVED,
    QUICK_PROBE,
    WINDOW,
    AimdLimiter,
    GradientLimiter,
    VegasLimiter,
    log10_step,
)
from supervision.limit_sim import Phase, SimulatedDependency, simulate

BASE = 0.010  # the baseline (no-load) latency of the step-by-step examples, in seconds


class LowJitter(random.Random):
    """Draws the lowest jitter every time: probes come after exactly half their interval."""

    def uniform(self, a: float, b: float) -> float:
        return a


def warmed(config: AdaptiveLimit, rtt: float = BASE) -> Limiter:
    """A gradient or vegas limiter with baseline ``rtt``, past its first two probes and with
    its limit untouched: the start's probe, then (it moved the baseline, from none) the quick
    one ``QUICK_PROBE`` windows later. In between, one call at a time: app-limited windows
    leave the limit alone."""
    limiter = config.limiter(rng=LowJitter())
    assert isinstance(limiter, GradientLimiter | VegasLimiter)
    for _ in range(max(limiter.level, WINDOW)):
        limiter.sample(rtt, 1, False)
    for _ in range((QUICK_PROBE + 1) * max(limiter.limit, WINDOW)):  # and the probe's tail
        if limiter.probing:
            break
        limiter.sample(rtt, 1, False)
    assert limiter.probing
    for _ in range(max(limiter.level, WINDOW)):
        limiter.sample(rtt, 1, False)
    assert not limiter.probing
    assert limiter.limit == config.start
    assert limiter.baseline == pytest.approx(rtt)
    return limiter


def window(limiter: Limiter, rtt: float, inflight: int | None = None) -> int:
    """Feed one whole window (``max(limit, WINDOW)`` samples); return the limit after it.
    ``inflight`` defaults to the limit: the limit is in use, no sample is stale."""
    size = max(limiter.limit, WINDOW)
    used = limiter.limit if inflight is None else inflight
    for _ in range(size):
        limiter.sample(rtt, used, False)
    return limiter.limit


# --- configuration ---------------------------------------------------------------------------


def test_the_defaults_are_gradient_from_1_to_200_starting_at_hystrix_s_10() -> None:
    config = AdaptiveLimit()

    assert config.algorithm is LimitAlgorithm.GRADIENT
    assert (config.min, config.max, config.initial) == (1, 200, 10)
    assert (config.rtt_tolerance, config.queue_size, config.smoothing) == (1.5, 4, None)
    assert (config.alpha, config.beta, config.probe_multiplier) == (3, 6, 30)
    assert (config.backoff_ratio, config.timeout) == (0.9, None)
    assert config.limiter().limit == 10


@pytest.mark.parametrize("name", ["gradient", "vegas", "aimd"])
def test_the_algorithm_is_given_by_position_and_a_string_becomes_the_enum(name: str) -> None:
    config = AdaptiveLimit(name)  # type: ignore[arg-type]

    assert config.algorithm is LimitAlgorithm(name)
    assert config.limiter().algorithm is LimitAlgorithm(name)


def test_other_fields_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        AdaptiveLimit("aimd", 1, 20)  # type: ignore[misc]


def test_an_unknown_algorithm_lists_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"algorithm must be one of 'gradient', 'vegas', 'aimd'"):
        AdaptiveLimit("cubic")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"min": 0}, r"min must be an integer between 1 and 10000, got 0"),
        ({"min": 2.0}, r"min must be an integer between 1 and 10000, got 2.0"),
        ({"max": 10_001}, r"max must be an integer between 1 and 10000, got 10001"),
        ({"min": 20, "max": 10}, r"max must be an integer between 20 and 10000, got 10"),
        ({"initial": 0}, r"initial must be an integer between 1 and 10000, got 0"),
        ({"smoothing": 0.0}, r"smoothing must be a finite number > 0 and <= 1, got 0.0"),
        ({"smoothing": 1.5}, r"smoothing must be a finite number > 0 and <= 1, got 1.5"),
        ({"rtt_tolerance": 0.9}, r"rtt_tolerance must be a finite number >= 1 and <= 100"),
        ({"queue_size": 0}, r"queue_size must be an integer between 1 and 10000, got 0"),
        ({"algorithm": "vegas", "alpha": 0}, r"alpha must be an integer between 1 and 1000"),
        ({"algorithm": "vegas", "beta": 2}, r"beta must be an integer between 3 and 1000, got 2"),
        ({"probe_multiplier": 0}, r"probe_multiplier must be an integer between 1 and 1000000"),
        ({"algorithm": "aimd", "backoff_ratio": 1.0}, r"backoff_ratio must be a number >= 0.5"),
        ({"algorithm": "aimd", "backoff_ratio": 0.4}, r"and < 1, got 0.4"),
        ({"algorithm": "aimd", "backoff_ratio": True}, r"and < 1, got True"),
        ({"algorithm": "aimd", "timeout": 0.0}, r"timeout must be a finite number of seconds > 0"),
        ({"algorithm": "aimd", "timeout": math.nan}, r"timeout must be a finite number"),
    ],
)
def test_an_invalid_value_names_the_field_the_range_and_the_value(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptiveLimit(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("algorithm", "changes", "message"),
    [
        ("aimd", {"rtt_tolerance": 2.0}, r"rtt_tolerance is read by gradient only, not 'aimd'"),
        ("gradient", {"alpha": 4}, r"alpha is read by vegas only, not 'gradient': got alpha=4"),
        ("vegas", {"backoff_ratio": 0.5}, r"backoff_ratio is read by aimd only, not 'vegas'"),
        ("aimd", {"smoothing": 0.5}, r"smoothing is read by gradient and vegas only, not 'aimd'"),
        ("gradient", {"timeout": 1.0}, r"timeout is read by aimd only, not 'gradient'"),
    ],
)
def test_a_knob_of_another_algorithm_is_refused_rather_than_ignored(
    algorithm: str, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptiveLimit(algorithm, **changes)  # type: ignore[arg-type]


def test_a_knob_of_another_algorithm_left_at_its_default_is_accepted() -> None:
    assert AdaptiveLimit("aimd", rtt_tolerance=1.5, alpha=3).algorithm is LimitAlgorithm.AIMD


def test_the_configuration_is_frozen_and_replace_validates() -> None:
    config = AdaptiveLimit("vegas", max=50)

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max = 60  # type: ignore[misc]
    assert config.replace(max=60).max == 60
    with pytest.raises(ValueError, match="max must be an integer between 1 and 10000"):
        config.replace(max=0)


@pytest.mark.parametrize(
    ("changes", "start"),
    [({"min": 20}, 20), ({"max": 5}, 5), ({"initial": 7}, 7), ({"min": 3, "initial": 1}, 3)],
)
def test_the_first_limit_is_initial_clamped_into_min_and_max(
    changes: dict[str, int], start: int
) -> None:
    config = AdaptiveLimit(**changes)  # type: ignore[arg-type]

    assert config.start == start
    assert config.limiter().limit == start
    assert config.initial == changes.get("initial", 10)  # stored as given


def test_each_limiter_is_fresh_state_of_the_algorithm_s_class() -> None:
    config = AdaptiveLimit("aimd")
    one, two = config.limiter(), config.limiter()

    one.sample(BASE, 10, False)

    assert isinstance(one, AimdLimiter)
    assert (one.limit, two.limit) == (11, 10)
    assert repr(one) == "AimdLimiter(limit=11)"
    assert isinstance(AdaptiveLimit("vegas").limiter(), VegasLimiter)
    assert isinstance(AdaptiveLimit().limiter(), GradientLimiter)


@pytest.mark.parametrize("name", ["gradient", "vegas", "aimd"])
@pytest.mark.parametrize(
    ("rtt", "inflight", "message"),
    [
        (-0.001, 1, r"rtt must be a finite number of seconds >= 0, got -0.001"),
        (math.nan, 1, r"rtt must be a finite number of seconds >= 0, got nan"),
        (math.inf, 1, r"rtt must be a finite number of seconds >= 0, got inf"),
        (BASE, -1, r"inflight must be an integer >= 0, got -1"),
    ],
)
def test_a_nonsense_sample_is_refused(name: str, rtt: float, inflight: int, message: str) -> None:
    limiter = AdaptiveLimit(name).limiter()  # type: ignore[arg-type]

    with pytest.raises(ValueError, match=message):
        limiter.sample(rtt, inflight, False)
    assert limiter.limit == 10


# --- AIMD: concurrency-limits' AIMDLimit, per sample -------------------------------------------


def test_aimd_grows_by_one_per_sample_while_at_least_half_the_limit_is_in_use() -> None:
    limiter = AdaptiveLimit("aimd").limiter()

    # inflight * 2 >= limit: 5*2 >= 10, 6*2 >= 11, 6*2 >= 12
    assert [limiter.sample(BASE, n, False) for n in (5, 6, 6)] == [11, 12, 13]


def test_aimd_leaves_an_app_limited_limit_alone() -> None:
    limiter = AdaptiveLimit("aimd").limiter()

    assert [limiter.sample(BASE, n, False) for n in (4, 1, 0)] == [10, 10, 10]


def test_aimd_multiplies_by_the_backoff_ratio_on_each_drop_down_to_min() -> None:
    limiter = AdaptiveLimit("aimd").limiter()

    limits = [limiter.sample(BASE, 1, True) for _ in range(10)]

    # int(10*0.9)=9, int(8.1)=8, int(7.2)=7, 6, 5, int(4.5)=4, int(3.6)=3, int(2.7)=2, 1, then min
    assert limits == [9, 8, 7, 6, 5, 4, 3, 2, 1, 1]


def test_aimd_uses_the_configured_backoff_ratio_and_min() -> None:
    halving = AdaptiveLimit("aimd", backoff_ratio=0.5, initial=40, min=4).limiter()

    assert [halving.sample(BASE, 1, True) for _ in range(5)] == [20, 10, 5, 4, 4]


def test_aimd_stops_growing_at_max() -> None:
    limiter = AdaptiveLimit("aimd", max=12).limiter()

    assert [limiter.sample(BASE, 12, False) for _ in range(4)] == [11, 12, 12, 12]


def test_aimd_counts_an_rtt_above_its_timeout_as_a_drop() -> None:
    limiter = AdaptiveLimit("aimd", timeout=0.5).limiter()

    assert limiter.sample(0.5, 10, False) == 11  # at the timeout: not a drop
    assert limiter.sample(0.501, 10, False) == 9  # int(11 * 0.9)


def test_aimd_does_not_cut_again_for_a_drop_admitted_under_a_higher_limit() -> None:
    limiter = AdaptiveLimit("aimd", initial=20).limiter()
    limiter.sample(BASE, 20, True)  # 18

    # the rest of the round admitted at 19 and 20 in flight: already acted on; then fresh
    # drops (admitted under 18, then under 16) cut once each, and a stale one does not
    assert [limiter.sample(BASE, n, True) for n in (20, 19, 18, 18, 16)] == [18, 18, 16, 16, 14]


# --- Vegas: concurrency-limits' VegasLimit, once per window ------------------------------------


def test_vegas_log10_step_is_at_least_one() -> None:
    assert [log10_step(n) for n in (0.5, 1, 9, 10, 99, 100, 999, 1000, 10_000)] == [
        1,
        1,
        1,
        1,
        1,
        2,
        2,
        3,
        4,
    ]


def test_vegas_moves_through_its_bands_as_computed_by_hand() -> None:
    limiter = warmed(AdaptiveLimit("vegas", probe_multiplier=1000))
    # below 100, log10 step L = 1: threshold 1, alpha 3, beta 6

    # queue = ceil(10 * (1 - 10/10.1)) = ceil(0.099) = 1 <= 1: no queueing, + beta * L
    assert window(limiter, 0.0101) == 16
    # queue = ceil(16 * (1 - 10/11)) = ceil(1.45) = 2 < alpha: + L
    assert window(limiter, 0.011) == 17
    # queue = ceil(17 * (1 - 10/14)) = ceil(4.86) = 5, between alpha and beta: unchanged
    assert window(limiter, 0.014) == 17
    # queue = ceil(17 * (1 - 10/20)) = ceil(8.5) = 9 > beta: - L
    assert window(limiter, 0.020) == 16
    # a drop closes the window at once: - L
    assert limiter.sample(0.010, 16, True) == 15


def test_vegas_bands_scale_with_log10_of_the_limit() -> None:
    limiter = warmed(AdaptiveLimit("vegas", initial=100, max=1000, probe_multiplier=1000))
    # at 100 and above, L = 2: threshold 2, alpha 6, beta 12

    # queue = ceil(100 * (1 - 1/1.01)) = ceil(0.99) = 1 <= 2: + beta * L = + 6 * 2
    assert window(limiter, 0.0101) == 112
    # queue = ceil(112 * (1 - 1/1.05)) = ceil(5.33) = 6: not < alpha (6), not > beta: unchanged
    assert window(limiter, 0.0105) == 112
    # queue = ceil(112 * (1 - 1/1.04)) = ceil(4.31) = 5 < alpha: + L
    assert window(limiter, 0.0104) == 114
    # queue = ceil(114 * (1 - 1/1.25)) = ceil(22.8) = 23 > beta: - L
    assert window(limiter, 0.0125) == 112


def test_vegas_smoothing_moves_part_of_the_way() -> None:
    limiter = warmed(AdaptiveLimit("vegas", smoothing=0.5, probe_multiplier=1000))

    assert window(limiter, 0.0101) == 13  # 10 + 0.5 * (16 - 10)


def test_vegas_leaves_an_app_limited_limit_alone() -> None:
    limiter = warmed(AdaptiveLimit("vegas", initial=16, probe_multiplier=1000))

    assert window(limiter, 0.0101, inflight=7) == 16  # 7 * 2 < 16
    assert window(limiter, 0.0101, inflight=8) == 22  # 8 * 2 >= 16: + beta * L


def test_vegas_takes_a_faster_window_as_its_new_baseline_and_keeps_the_limit() -> None:
    limiter = warmed(AdaptiveLimit("vegas", probe_multiplier=1000))
    assert isinstance(limiter, VegasLimiter)

    assert window(limiter, 0.008) == 10
    assert limiter.baseline == pytest.approx(0.008)
    # queue = ceil(10 * (1 - 8/10.1)) = ceil(2.08) = 3: not < alpha, not > beta: unchanged
    assert window(limiter, 0.0101) == 10
    # queue = ceil(10 * (1 - 8/9.9)) = ceil(1.92) = 2 < alpha: + L
    assert window(limiter, 0.0099) == 11


# --- Gradient: concurrency-limits' Gradient2Limit, once per window -----------------------------


def test_gradient_steps_as_computed_by_hand() -> None:
    limiter = warmed(AdaptiveLimit("gradient", initial=20, probe_multiplier=1000))
    # gradient = clamp(1.5 * baseline / rtt, 0.5, 1); new = limit * gradient (+ 4 if 1);
    # limit += 0.2 * (new - limit)

    # latency at the baseline: gradient 1, 20 + 0.2 * 4 = 20.8
    assert window(limiter, 0.010) == 20
    # three times the baseline: gradient 0.5, 20.8 + 0.2 * (10.4 - 20.8) = 18.72
    assert window(limiter, 0.030) == 18
    # twice: gradient 0.75, 18.72 + 0.2 * (14.04 - 18.72) = 17.784
    assert window(limiter, 0.020) == 17
    # within the tolerance (1.5 times) it is not queueing: 17.784 + 0.8 = 18.584
    assert window(limiter, 0.0149) == 18
    # above: gradient 0.9375, 18.584 - 0.2 * 0.0625 * 18.584 = 18.35170
    assert window(limiter, 0.016) == 18
    # a drop: gradient 0.5, at once: 18.35170 - 0.2 * 0.5 * 18.35170 = 16.51653
    assert limiter.sample(0.010, 18, True) == 16


def test_gradient_shrinks_while_latency_stays_above_tolerance_and_grows_back_after() -> None:
    limiter = warmed(AdaptiveLimit("gradient", initial=40, probe_multiplier=1000))

    shrinking = [window(limiter, 0.025) for _ in range(5)]
    growing = [window(limiter, 0.010) for _ in range(5)]

    assert shrinking == sorted(shrinking, reverse=True)
    assert shrinking[-1] < 40 * 0.9**4  # gradient 0.6: -8 % a window
    assert growing == sorted(growing)
    assert growing[-1] - shrinking[-1] == 4  # + 0.8 a window


def test_gradient_leaves_an_app_limited_limit_alone_even_when_latency_rises() -> None:
    limiter = warmed(AdaptiveLimit("gradient", initial=20, probe_multiplier=1000))
    window(limiter, 0.010)  # 20.8, and the probe's tail is over

    assert window(limiter, 0.050, inflight=10) == 20  # 10 < 20.8 / 2
    assert window(limiter, 0.010, inflight=10) == 20


def test_gradient_adds_its_queue_only_while_latency_is_within_tolerance() -> None:
    limiter = warmed(AdaptiveLimit("gradient", initial=100, probe_multiplier=1000))

    # gradient 1.5/1.6 = 0.9375: 100 + 0.2 * (93.75 - 100) = 98.75 (Gradient2 would add 4)
    assert window(limiter, 0.016) == 98


def test_gradient_uses_its_rtt_tolerance_queue_size_and_smoothing() -> None:
    config = AdaptiveLimit("gradient", initial=20, rtt_tolerance=2.0, queue_size=10, smoothing=0.5)
    limiter = warmed(config.replace(probe_multiplier=1000))

    assert window(limiter, 0.0199) == 25  # gradient 1 within twice the baseline: 20 + 0.5 * 10
    assert window(limiter, 0.040) == 18  # gradient 0.5: 25 + 0.5 * (12.5 - 25) = 18.75


def test_a_sample_admitted_under_a_higher_limit_is_left_out_of_the_window() -> None:
    limiter = warmed(AdaptiveLimit("gradient", initial=20, probe_multiplier=1000))
    window(limiter, 0.030)  # 18.4: the round admitted at 20 is stale now

    for _ in range(100):
        limiter.sample(0.030, 20, False)

    assert limiter.limit == 18


# --- probes: the baseline measured at low concurrency -----------------------------------------


@pytest.mark.parametrize("name", ["gradient", "vegas"])
def test_the_first_probe_takes_the_mean_of_the_first_calls_without_lowering_the_limit(
    name: str,
) -> None:
    limiter = AdaptiveLimit(name).limiter()  # type: ignore[arg-type]
    assert isinstance(limiter, GradientLimiter | VegasLimiter)
    assert (limiter.probing, limiter.baseline, limiter.level) == (True, None, 5)

    for i in range(WINDOW):
        limiter.sample(0.010 if i % 2 else 0.020, 1 + i % 5, False)

    assert not limiter.probing
    assert limiter.baseline == pytest.approx(0.015)
    assert limiter.limit == 10


def test_the_first_probe_lowers_the_limit_once_a_call_ran_with_more_in_flight() -> None:
    limiter = AdaptiveLimit().limiter()
    assert isinstance(limiter, GradientLimiter)

    limiter.sample(0.030, 10, False)
    assert (limiter.limit, limiter.probing) == (5, True)

    for _ in range(WINDOW):
        limiter.sample(0.010, 5, False)
    assert (limiter.limit, limiter.probing) == (10, False)
    assert limiter.baseline == pytest.approx(0.010)


def test_the_calls_a_probe_admitted_are_counted_when_they_answer_after_it_ended() -> None:
    limiter = AdaptiveLimit(initial=40).limiter()
    assert isinstance(limiter, GradientLimiter)
    for _ in range(20):  # level 20: the probe ends after 20 calls, the fast ones
        limiter.sample(0.010, 20, False)
    assert limiter.baseline == pytest.approx(0.010)

    for _ in range(20):  # the slow ones answer late, still at the probe's concurrency
        limiter.sample(0.020, 20, False)

    assert limiter.baseline == pytest.approx(0.015)
    assert limiter.limit == 40


def test_probes_come_every_probe_multiplier_windows_and_restore_the_limit() -> None:
    limiter = warmed(AdaptiveLimit("gradient", initial=20, probe_multiplier=4))
    assert isinstance(limiter, GradientLimiter)
    # the baseline did not move: the next probe after probe_multiplier * 0.5 (LowJitter) = 2
    # windows
    window(limiter, 0.010)  # 20.8
    assert not limiter.probing
    window(limiter, 0.010)  # 21.6
    assert (limiter.probing, limiter.level, limiter.limit) == (True, 10, 10)

    for _ in range(WINDOW):
        limiter.sample(0.010, 10, False)

    assert (limiter.probing, limiter.limit) == (False, 21)
    assert limiter.baseline == pytest.approx(0.010)
    window(limiter, 0.010)
    assert not limiter.probing
    window(limiter, 0.010)
    assert limiter.probing


def test_a_probe_that_moves_the_baseline_is_followed_by_another_soon() -> None:
    limiter = warmed(AdaptiveLimit("gradient", initial=20, probe_multiplier=2))
    assert isinstance(limiter, GradientLimiter)
    window(limiter, 0.010)
    assert limiter.probing  # after probe_multiplier * 0.5 = 1 window
    level = limiter.level
    slower = 0.010 * MOVED * 1.1  # the dependency got slower for everyone

    for _ in range(max(level, WINDOW)):
        limiter.sample(slower, level, False)

    assert limiter.baseline == pytest.approx(slower)
    for _ in range(QUICK_PROBE - 1):
        window(limiter, slower)
        assert not limiter.probing
    window(limiter, slower)
    assert limiter.probing


def test_a_probe_comes_at_once_when_the_limit_halves_or_latency_halves() -> None:
    halving = warmed(AdaptiveLimit("gradient", initial=40, probe_multiplier=1000))
    faster = warmed(AdaptiveLimit("gradient", initial=40, probe_multiplier=1000))

    limits = []
    for _ in range(20):
        limits.append(window(halving, 0.050))  # far above tolerance: -10 % a window
        if halving.probing:
            break
    window(faster, 0.004)  # the dependency got much faster than the baseline says

    # at 19 (<= 40 / 2 after the last probe), a probe at once, at half: 9
    assert limits == [36, 32, 29, 26, 23, 21, 9]
    assert halving.level == 9
    assert faster.probing


@pytest.mark.parametrize(("name", "after"), [("gradient", 9), ("vegas", 9)])
def test_a_drop_cuts_the_limit_at_once_even_during_the_first_probe(name: str, after: int) -> None:
    limiter = AdaptiveLimit(name).limiter()  # type: ignore[arg-type]
    assert isinstance(limiter, GradientLimiter | VegasLimiter)
    assert limiter.probing

    # gradient: 10 + 0.2 * (5 - 10) = 9; vegas: 10 - log10 step 1 = 9
    assert limiter.sample(1.0, 1, True) == after
    assert limiter.probing  # and the drop's rtt is one of the probe's samples
    for _ in range(WINDOW - 1):
        limiter.sample(BASE, 1, False)
    assert (limiter.probing, limiter.limit) == (False, after)
    assert limiter.baseline == pytest.approx((1.0 + 9 * BASE) / 10)


def test_the_first_probe_never_raises_a_limit_that_drops_cut_below_its_level() -> None:
    limiter = AdaptiveLimit(initial=10).limiter()
    for _ in range(8):  # 10 * 0.9**8 = 4.3: below the probe's level, 5
        limiter.sample(1.0, 1, True)
    assert limiter.limit == 4

    limiter.sample(BASE, 7, False)  # a call with more in flight than the level

    assert limiter.limit == 4


def test_a_drop_during_a_probe_lowers_the_limit_it_restores() -> None:
    limiter = warmed(AdaptiveLimit("gradient", initial=20, probe_multiplier=2))
    window(limiter, 0.010)  # 20.8, and a probe at 10
    assert (limiter.probing, limiter.limit) == (True, 10)

    limiter.sample(0.5, 20, True)  # admitted before the probe, at 20 (<= 20.8): not stale
    limiter.sample(0.5, 21, True)  # at 21: stale
    for _ in range(WINDOW):
        limiter.sample(0.010, 10, False)

    assert (limiter.probing, limiter.limit) == (False, 18)  # 20.8 - 0.2 * 10.4 = 18.72


# --- against a simulated dependency ----------------------------------------------------------

#: AIMD sees only drops: told that twice... its timeout is 1.5 times the normal latency.
ALGORITHMS = {
    "gradient": AdaptiveLimit("gradient"),
    "vegas": AdaptiveLimit("vegas"),
    "aimd": AdaptiveLimit("aimd", timeout=1.5 * BASE),
}


def run(
    config: AdaptiveLimit | int, capacities: list[int], seconds: float = 8.0, seed: int = 1
) -> tuple[list[tuple[float, float]], object]:
    """Each capacity for ``seconds``; per phase, its second half: (mean limit, goodput)."""
    phases = [
        Phase(seconds, SimulatedDependency(capacity=c, latency=BASE, jitter=0.2))
        for c in capacities
    ]
    limit = config if isinstance(config, int) else config.limiter(rng=random.Random(seed))
    result = simulate(limit, phases, callers=100, seed=seed)
    halves = [(seconds * (i + 0.5), seconds * (i + 1)) for i in range(len(capacities))]
    return [(result.mean_limit(s, e), result.goodput(s, e)) for s, e in halves], result


@pytest.mark.parametrize("name", list(ALGORITHMS))
@pytest.mark.parametrize("capacities", [[10, 5], [40, 20]])
def test_the_limit_converges_near_capacity_and_follows_it_when_it_halves(
    name: str, capacities: list[int]
) -> None:
    phases, _ = run(ALGORITHMS[name], capacities)

    for (mean_limit, goodput), capacity in zip(phases, capacities, strict=True):
        # gradient settles near 1.5x (rtt_tolerance), vegas 3 to 6 calls above, aimd where
        # latency reaches its timeout (1.5x, with spikes above)
        assert capacity * 0.9 <= mean_limit <= capacity * 2.5, (capacity, mean_limit)
        assert goodput >= 0.9 * capacity / BASE, (capacity, goodput)
    assert 0.4 <= phases[1][0] / phases[0][0] <= 0.75


@pytest.mark.parametrize("capacity", [5, 40])
def test_gradient_serves_nearly_what_a_fixed_limit_at_capacity_serves_at_most_twice_its_p99(
    capacity: int,
) -> None:
    _, adaptive = run(ALGORITHMS["gradient"], [capacity], seconds=10.0)
    _, fixed = run(capacity, [capacity], seconds=10.0)
    assert isinstance(adaptive, type(fixed))

    assert adaptive.goodput(2.0) >= 0.9 * fixed.goodput(2.0)  # type: ignore[attr-defined]
    assert adaptive.p99(2.0) <= 2.0 * fixed.p99(2.0)  # type: ignore[attr-defined]


def test_gradient_settles_within_a_second_after_capacity_halves() -> None:
    _, result = run(ALGORITHMS["gradient"], [40, 20])

    settled = result.settled_at(0.5 * 20, 2.0 * 20, start=8.0)  # type: ignore[attr-defined]

    assert settled is not None
    assert settled - 8.0 < 1.0  # about 100 latencies


def test_gradient_shrinks_when_the_dependency_slows_and_grows_back() -> None:
    phases, _ = run(ALGORITHMS["gradient"], [20, 5, 20])

    assert phases[1][0] < phases[0][0] * 0.5
    assert phases[2][0] == pytest.approx(phases[0][0], rel=0.15)


def test_gradient_measures_a_new_baseline_when_the_dependency_slows_for_everyone() -> None:
    limiter = ALGORITHMS["gradient"].limiter(rng=random.Random(1))
    phases = [
        Phase(8.0, SimulatedDependency(capacity=20, latency=latency, jitter=0.2))
        for latency in (BASE, 3 * BASE, BASE)
    ]

    result = simulate(limiter, phases, callers=100, seed=1)

    # three times slower at any concurrency is not queueing: the limit must not collapse
    for start, latency in ((4.0, BASE), (12.0, 3 * BASE), (20.0, BASE)):
        assert 0.9 * 20 <= result.mean_limit(start, start + 4.0) <= 2.5 * 20
        assert result.goodput(start, start + 4.0) >= 0.9 * 20 / latency


def test_gradient_app_limited_by_its_callers_keeps_the_limit() -> None:
    limiter = ALGORITHMS["gradient"].limiter(rng=random.Random(1))
    phases = [Phase(5.0, SimulatedDependency(capacity=10, latency=BASE))]

    result = simulate(limiter, phases, callers=4)

    # 4 calls in flight never use half of 10: the limit stays (but for probes, at 5)
    assert {limit for _, limit in result.limits} == {10, 5}
    assert result.mean_limit() > 9
    assert result.rejected == 0


# --- any samples keep the limit an int within [min, max] --------------------------------------

configs = st.builds(
    lambda algorithm, low, span, initial, timeout: AdaptiveLimit(
        algorithm,
        min=low,
        max=low + span,
        initial=initial,
        **({"timeout": timeout} if algorithm is LimitAlgorithm.AIMD else {"probe_multiplier": 3}),
    ),
    st.sampled_from(LimitAlgorithm),
    st.integers(1, 30),
    st.integers(0, 200),
    st.integers(1, 300),
    st.none() | st.floats(0.001, 2.0),
)
samples = st.lists(
    st.tuples(
        st.floats(0.0, 5.0) | st.sampled_from([0.0, 1e-9, 0.01]),
        st.integers(0, 400),
        st.booleans(),
    ),
    max_size=400,
)


@settings(max_examples=200, deadline=None)
@given(configs, samples, st.integers(0, 2**32))
def test_any_samples_keep_the_limit_an_int_within_min_and_max(
    config: AdaptiveLimit, sequence: list[tuple[float, int, bool]], seed: int
) -> None:
    limiter = config.limiter(rng=random.Random(seed))
    assert config.min <= limiter.limit <= config.max

    for rtt, inflight, dropped in sequence:
        returned = limiter.sample(rtt, inflight, dropped)
        assert returned == limiter.limit
        assert type(limiter.limit) is int
        assert config.min <= limiter.limit <= config.max


# --- the simulated dependency itself ----------------------------------------------------------


def test_a_fixed_limit_at_capacity_serves_capacity_per_latency_at_the_bare_latency() -> None:
    dependency = SimulatedDependency(capacity=10, latency=0.010)

    result = simulate(10, [Phase(2.0, dependency)], callers=30)

    assert result.goodput() == pytest.approx(1000, rel=0.01)
    assert result.p99() == pytest.approx(0.010)
    assert result.limit_range() == (10, 10)
    assert result.rejected > 0


def test_more_concurrency_than_capacity_buys_only_latency() -> None:
    dependency = SimulatedDependency(capacity=10, latency=0.010)

    result = simulate(20, [Phase(2.0, dependency)], callers=30)

    assert result.goodput() == pytest.approx(1000, rel=0.01)
    assert result.p99() == pytest.approx(0.020)


def test_a_call_past_the_timeout_is_a_drop_that_still_holds_its_slot() -> None:
    dependency = SimulatedDependency(capacity=10, latency=0.010)
    limiter = AdaptiveLimit("aimd", initial=30, min=30, max=30).limiter()

    result = simulate(limiter, [Phase(1.0, dependency)], callers=30, timeout=0.025)

    # at 30 in flight a call takes 30 ms: answered at 25 ms, its caller calls again while
    # the dependency still works on the first call, so 30 callers meet a limit of 30
    assert result.timeouts() > 0.9 * len(result.calls)
    assert result.p99() == 0.025
    assert result.goodput() < 0.1 * 1000
    assert result.rejected > 0


def test_a_run_is_repeatable_for_a_seed_and_advances_the_clock_to_its_end() -> None:
    clock = FakeClock(0.0)
    phases = [Phase(2.0, SimulatedDependency(capacity=10, latency=0.010, jitter=0.5))]

    def run_with(seed: int, clock: FakeClock | None = None) -> object:
        limiter = AdaptiveLimit().limiter(rng=random.Random(3))
        return simulate(limiter, phases, seed=seed, clock=clock)

    one, two, other = run_with(3), run_with(3, clock), run_with(4)

    assert one == two
    assert one != other
    assert clock() == 2.0


def test_the_result_reads_the_limit_over_time() -> None:
    dependency = SimulatedDependency(capacity=10, latency=0.010)
    result = simulate(AdaptiveLimit().limiter(rng=random.Random(1)), [Phase(3.0, dependency)])
    (first_time, first), (change, after) = result.limits[0], result.limits[1]

    assert (first_time, first) == (0.0, 10)
    assert result.limit_at(change) == after
    assert result.limit_at(change - 1e-9) == first
    low, high = result.limit_range()
    assert low <= result.mean_limit() <= high
    assert result.settled_at(0, 1000) == 0.0
    assert result.settled_at(1000, 2000) is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SimulatedDependency(capacity=0), r"capacity must be an integer between 1"),
        (lambda: SimulatedDependency(capacity=1, latency=0), r"latency must be a finite number"),
        (lambda: SimulatedDependency(capacity=1, jitter=1.0), r"jitter must be a finite number"),
        (lambda: Phase(0.0, SimulatedDependency(capacity=1)), r"seconds must be a finite number"),
        (lambda: Phase(1.0, 5), r"dependency must be a SimulatedDependency, got 5"),
        (lambda: simulate(10, []), r"phases must be a non-empty sequence of Phase"),
        (lambda: simulate(0, [Phase(1.0, SimulatedDependency(capacity=1))]), r"limit must be"),
        (
            lambda: simulate(1, [Phase(1.0, SimulatedDependency(capacity=1))], callers=0),
            r"callers must be an integer between 1",
        ),
        (
            lambda: simulate(1, [Phase(1.0, SimulatedDependency(capacity=1))], timeout=0),
            r"timeout must be a finite number of seconds > 0",
        ),
    ],
)
def test_the_simulation_refuses_nonsense(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]
