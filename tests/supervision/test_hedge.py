"""Hedged requests: the policy's validation, when to hedge (fixed delay or a percentile of the
key's recent run latencies), the budget of extra runs on a fake clock, and the latency window's
``count`` and ``percentile`` that hedging reads."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervision import FakeClock, HedgePolicy
from supervision.hedge import HedgeBudget, hedge_delay
from supervision.metrics import RollingLatency
from supervision.retry import BUCKETS
from supervision.snapshot import PERCENTILES

# -- HedgePolicy -----------------------------------------------------------------------------


def test_the_policy_defaults() -> None:
    policy = HedgePolicy()

    assert policy.percentile == 95.0
    assert policy.delay is None
    assert policy.max_extra == 1
    assert policy.budget == 0.05
    assert policy.window == 10.0
    assert policy.min_samples == 20
    assert policy.min_delay == 0.001


def test_the_issues_two_forms_are_accepted() -> None:
    assert HedgePolicy(percentile=95.0, max_extra=1, budget=0.05).delay is None
    assert HedgePolicy(delay=0.05, max_extra=2).delay == 0.05


def test_a_policy_is_frozen_and_takes_keywords_only() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        HedgePolicy().budget = 0.1  # type: ignore[misc]
    with pytest.raises(TypeError):
        HedgePolicy(95.0)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("percentile", 0, "> 0 and < 100"),
        ("percentile", 100, "> 0 and < 100"),
        ("percentile", 100.5, "> 0 and < 100"),
        ("percentile", -5, "> 0 and < 100"),
        ("percentile", math.nan, "> 0 and < 100"),
        ("percentile", "95", "> 0 and < 100"),
        ("percentile", True, "> 0 and < 100"),
        ("delay", 0, "> 0 and <= 86400"),
        ("delay", -0.05, "> 0 and <= 86400"),
        ("delay", 86_401, "> 0 and <= 86400"),
        ("delay", "0.05", "> 0 and <= 86400"),
        ("max_extra", 0, "between 1 and 10"),
        ("max_extra", 11, "between 1 and 10"),
        ("max_extra", 1.0, "between 1 and 10"),
        ("budget", 0, "> 0 and <= 1"),
        ("budget", 1.01, "> 0 and <= 1"),
        ("budget", math.inf, "> 0 and <= 1"),
        ("window", 0, "> 0 and <= 86400"),
        ("window", 1e9, "> 0 and <= 86400"),
        ("min_samples", 0, "between 1 and 1000000"),
        ("min_samples", True, "between 1 and 1000000"),
        ("min_delay", -0.001, ">= 0 and <= 86400"),
        ("min_delay", None, ">= 0 and <= 86400"),
    ],
)
def test_an_invalid_policy_names_the_field_the_range_and_the_value(
    field: str, value: Any, allowed: str
) -> None:
    with pytest.raises(ValueError) as raised:
        HedgePolicy(**{field: value})

    message = str(raised.value)
    assert message.startswith(f"{field} must be")
    assert allowed in message
    assert message.endswith(f"got {value!r}")


def test_a_policy_accepts_its_bounds() -> None:
    HedgePolicy(percentile=0.001, max_extra=10, budget=1, window=86_400, min_samples=1)
    HedgePolicy(percentile=99.999, delay=86_400, min_delay=0)


# -- hedge_delay -----------------------------------------------------------------------------


def timed(clock: FakeClock, *seconds: float) -> RollingLatency:
    latency = RollingLatency(clock)
    for s in seconds:
        latency.record(s)
    return latency


def test_a_fixed_delay_wins_even_with_no_latencies(clock: FakeClock) -> None:
    policy = HedgePolicy(delay=0.05, percentile=50.0)

    assert hedge_delay(policy, timed(clock)) == 0.05
    assert hedge_delay(policy, timed(clock, *[0.2] * 100)) == 0.05


def test_a_percentile_delay_needs_min_samples_latencies(clock: FakeClock) -> None:
    policy = HedgePolicy(percentile=95.0, min_samples=20)
    latency = timed(clock, *[0.01] * 19)

    assert hedge_delay(policy, latency) is None
    latency.record(0.01)
    assert hedge_delay(policy, latency) == pytest.approx(0.01, rel=0.032)


def test_a_percentile_delay_is_that_percentile_of_the_recent_runs(clock: FakeClock) -> None:
    # 96 % at 5 ms, 4 % at 200 ms: the 95th percentile is 5 ms, the 97th 200 ms
    latency = timed(clock, *([0.005] * 96 + [0.2] * 4))

    assert hedge_delay(HedgePolicy(percentile=95.0), latency) == pytest.approx(0.005, rel=0.032)
    assert hedge_delay(HedgePolicy(percentile=97.0), latency) == pytest.approx(0.2, rel=0.032)


def test_a_percentile_delay_is_never_below_min_delay(clock: FakeClock) -> None:
    latency = timed(clock, *[0.00001] * 50)

    assert hedge_delay(HedgePolicy(), latency) == 0.001
    assert hedge_delay(HedgePolicy(min_delay=0.0), latency) == 0.00001
    assert hedge_delay(HedgePolicy(min_delay=0.5), timed(clock, *[0.2] * 50)) == 0.5


def test_a_percentile_delay_stops_when_the_latencies_leave_their_window(
    clock: FakeClock,
) -> None:
    latency = timed(clock, *[0.01] * 30)
    assert hedge_delay(HedgePolicy(), latency) is not None

    clock.advance(60.0)  # the latency window: 60 s in 6 buckets

    assert hedge_delay(HedgePolicy(), latency) is None


class Window:
    """A latency window that says what it is told."""

    def __init__(self, count: int, seconds: float | None) -> None:
        self._count, self._seconds = count, seconds
        self.asked: list[float] = []

    def count(self) -> int:
        return self._count

    def percentile(self, p: float) -> float | None:
        self.asked.append(p)
        return self._seconds


def test_hedge_delay_reads_any_latency_window_at_the_policys_percentile() -> None:
    window = Window(100, 0.25)

    assert hedge_delay(HedgePolicy(percentile=90.0), window) == 0.25
    assert window.asked == [90.0]
    assert hedge_delay(HedgePolicy(min_samples=101), Window(100, 0.25)) is None
    assert hedge_delay(HedgePolicy(min_samples=1), Window(5, None)) is None


# -- HedgeBudget -----------------------------------------------------------------------------


def hedges(budget: HedgeBudget, asked: int) -> int:
    return sum(budget.try_hedge() for _ in range(asked))


def call(budget: HedgeBudget, n: int) -> None:
    for _ in range(n):
        budget.called()


def test_the_budget_grants_its_share_of_the_calls(clock: FakeClock) -> None:
    budget = HedgeBudget(HedgePolicy(budget=0.05), clock)

    assert hedges(budget, 1) == 0  # no floor: no calls, no hedge
    call(budget, 19)
    assert hedges(budget, 1) == 0  # 0.95 of a hedge
    call(budget, 1)
    assert hedges(budget, 5) == 1
    call(budget, 80)
    assert hedges(budget, 10) == 4  # 5 in all for 100 calls


def test_the_share_is_exact_decimal_not_float(clock: FakeClock) -> None:
    budget = HedgeBudget(HedgePolicy(budget=0.1), clock)
    call(budget, 10)  # 0.1 ten times in floats is 0.9999999999999999

    assert hedges(budget, 3) == 1


def test_the_share_is_of_the_calls_over_the_whole_window() -> None:
    clock = FakeClock(1000.0)
    budget = HedgeBudget(HedgePolicy(budget=0.05, window=10.0), clock)
    for second in range(10):  # 10 calls a second, 100 over the window
        clock.now = 1000.0 + second
        call(budget, 10)
        assert budget.balance() == pytest.approx(0.5 * (second + 1))

    assert hedges(budget, 10) == 5


def test_calls_and_hedges_leave_the_window_with_their_bucket() -> None:
    clock = FakeClock(1000.0)  # buckets of 1 s
    budget = HedgeBudget(HedgePolicy(budget=0.5, window=10.0), clock)
    call(budget, 4)
    assert hedges(budget, 5) == 2

    clock.now = 1005.0
    call(budget, 4)  # 8 calls in the window: 4 hedges, 2 spent
    assert hedges(budget, 5) == 2

    clock.now = 1010.0  # the first bucket left: 4 calls, 2 hedges
    assert budget.balance() == 0.0
    call(budget, 2)
    assert hedges(budget, 5) == 1

    clock.now = 1015.0  # only the last bucket's 2 calls and 1 hedge are left
    assert budget.balance() == 0.0
    clock.now = 1020.0
    assert budget.balance() == 0.0
    call(budget, 2)
    assert hedges(budget, 5) == 1


def test_the_balance_is_the_hedges_still_allowed_now(clock: FakeClock) -> None:
    budget = HedgeBudget(HedgePolicy(budget=0.05), clock)
    assert budget.balance() == 0.0

    call(budget, 50)
    assert budget.balance() == 2.5
    assert budget.try_hedge()
    assert budget.balance() == 1.5


def test_reconfigure_keeps_the_counts_and_applies_the_new_share_at_once(
    clock: FakeClock,
) -> None:
    budget = HedgeBudget(HedgePolicy(budget=0.05), clock)
    call(budget, 100)
    assert hedges(budget, 3) == 3

    budget.reconfigure(HedgePolicy(budget=0.1))
    assert budget.policy.budget == 0.1
    assert hedges(budget, 10) == 7

    budget.reconfigure(HedgePolicy(budget=0.01))
    assert hedges(budget, 1) == 0


def test_reconfigure_to_another_window_moves_the_counts_into_its_buckets() -> None:
    clock = FakeClock(1000.0)
    budget = HedgeBudget(HedgePolicy(budget=0.5, window=10.0), clock)
    call(budget, 10)
    assert hedges(budget, 2) == 2

    budget.reconfigure(HedgePolicy(budget=0.5, window=20.0))
    clock.now = 1015.0  # gone from a 10 s window, still in a 20 s one
    assert hedges(budget, 5) == 3

    clock.now = 1016.0
    budget.reconfigure(HedgePolicy(budget=0.5, window=2.0))  # older than 2 s: dropped
    assert budget.balance() == 0.0


Step = tuple[float, str]
steps = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.0, 0.0, 0.001, 0.05, 0.3, 1.0, 2.5, 7.0]),
        st.sampled_from(["call", "call", "call", "hedge"]),
    ),
    max_size=300,
)
policies = st.builds(
    HedgePolicy,
    budget=st.sampled_from([0.01, 0.05, 0.1, 0.3, 1.0]),
    window=st.sampled_from([1.0, 3.0, 10.0]),
)


@settings(max_examples=300, deadline=None)
@given(policy=policies, script=steps)
def test_a_hedge_is_granted_exactly_when_the_window_holds_room_for_it(
    policy: HedgePolicy, script: list[Step]
) -> None:
    clock = FakeClock(1000.0)
    budget = HedgeBudget(policy, clock)
    share = Fraction(repr(policy.budget))
    width = policy.window / BUCKETS
    calls: dict[int, int] = {}
    extra: dict[int, int] = {}
    for pause, what in script:
        clock.advance(pause)
        bucket = int(clock() // width)
        window = range(bucket - BUCKETS + 1, bucket + 1)
        if what == "call":
            budget.called()
            calls[bucket] = calls.get(bucket, 0) + 1
            continue
        granted = budget.try_hedge()
        window_calls = sum(calls.get(b, 0) for b in window)
        window_extra = sum(extra.get(b, 0) for b in window)
        assert granted == (window_extra + 1 <= share * window_calls)
        if granted:
            extra[bucket] = extra.get(bucket, 0) + 1
            assert window_extra + 1 <= share * window_calls


# -- RollingLatency.count and .percentile ----------------------------------------------------


def test_an_empty_window_has_no_percentile(clock: FakeClock) -> None:
    latency = RollingLatency(clock)

    assert latency.count() == 0
    assert latency.percentile(50.0) is None


def test_count_is_the_latencies_in_the_window(clock: FakeClock) -> None:
    latency = RollingLatency(clock)  # 60 s in 6 buckets of 10 s
    for _ in range(5):
        latency.record(0.01)
    clock.advance(30.0)
    for _ in range(3):
        latency.record(0.01)
    assert latency.count() == 8

    clock.advance(30.0)  # the first five left
    assert latency.count() == 3
    clock.advance(30.0)
    assert latency.count() == 0
    assert latency.percentile(99.0) is None


@pytest.mark.parametrize("p", [0, -1, 100.5, math.nan])
def test_a_percentile_outside_zero_to_one_hundred_is_refused(clock: FakeClock, p: float) -> None:
    with pytest.raises(ValueError, match=r"p must be a number > 0 and <= 100, got"):
        RollingLatency(clock).percentile(p)


def test_a_percentile_is_the_nearest_rank(clock: FakeClock) -> None:
    latency = timed(clock, *(i / 1e6 for i in range(1, 51)))  # 1 to 50 µs: exact bins

    assert latency.percentile(50.0) == 25e-6
    assert latency.percentile(51.0) == 26e-6
    assert latency.percentile(0.1) == 1e-6
    assert latency.percentile(100.0) == 50e-6
    assert latency.percentile(99.9) == 50e-6


@settings(max_examples=100, deadline=None)
@given(
    seconds=st.lists(st.floats(0, 5), min_size=1, max_size=200),
    pauses=st.lists(st.sampled_from([0.0, 0.5, 7.0, 25.0]), max_size=200),
    later=st.sampled_from([0.0, 9.0, 35.0]),
)
def test_a_first_percentile_answers_as_a_snapshot_does(
    seconds: list[float], pauses: list[float], later: float
) -> None:
    clock = FakeClock(1000.0)
    latency = RollingLatency(clock)
    for s, pause in zip(seconds, pauses + [0.0] * len(seconds), strict=False):
        clock.advance(pause)
        latency.record(s)
    clock.advance(later)

    snapshot = latency.snapshot()
    assert latency.count() == snapshot.count
    for name in PERCENTILES:
        if name != "0":
            expected = snapshot.percentiles[name] if snapshot.count else None
            assert latency.percentile(float(name)) == expected, name


def test_a_percentile_is_ranked_again_when_a_64th_more_latencies_came_in(
    clock: FakeClock,
) -> None:
    latency = timed(clock, *[0.001] * 640)
    first = latency.percentile(100.0)
    assert first == pytest.approx(0.001, rel=0.032)

    for _ in range(10):  # 640 / 64: the ranking still holds, leaving these out
        latency.record(1.0)
    assert latency.percentile(100.0) == first
    assert latency.count() == 650  # counted at once all the same

    latency.record(1.0)  # one more: ranked again
    assert latency.percentile(100.0) == pytest.approx(1.0, rel=0.032)


def test_a_percentile_is_ranked_again_when_the_window_moves_on(clock: FakeClock) -> None:
    latency = timed(clock, *[0.001] * 640)
    assert latency.percentile(100.0) == pytest.approx(0.001, rel=0.032)

    clock.advance(10.0)  # the next bucket of the latency window
    latency.record(1.0)

    assert latency.percentile(100.0) == pytest.approx(1.0, rel=0.032)
