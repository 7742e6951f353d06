"""Retries under a budget: the policy (validation, jittered backoff, what is retried) and the
budget's arithmetic on a fake clock (floor, ratio, expiry, every window it counts in)."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervision import (
    BadRequest,
    CircuitOpenError,
    CommandError,
    CommandTimeoutError,
    FakeClock,
    FallbackFailedError,
    MaxConcurrencyError,
    RetryBudget,
    RetryPolicy,
    UnknownCommandError,
)
from supervision.retry import BUCKETS, RetryTokens

# -- RetryBudget -----------------------------------------------------------------------------


def test_the_budget_defaults_are_finagles() -> None:
    budget = RetryBudget()

    assert (budget.ratio, budget.min_per_second, budget.window) == (0.2, 10.0, 10.0)
    assert budget.floor == 100.0


def test_a_budget_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RetryBudget().ratio = 0.5  # type: ignore[misc]


def test_a_budget_takes_keywords_only() -> None:
    with pytest.raises(TypeError):
        RetryBudget(0.2)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("ratio", -0.1, ">= 0 and <= 1000"),
        ("ratio", 1000.5, ">= 0 and <= 1000"),
        ("ratio", math.nan, ">= 0 and <= 1000"),
        ("ratio", "0.2", ">= 0 and <= 1000"),
        ("ratio", True, ">= 0 and <= 1000"),
        ("min_per_second", -1, ">= 0 and <= 1e+06"),
        ("min_per_second", 2e6, ">= 0 and <= 1e+06"),
        ("min_per_second", math.inf, ">= 0 and <= 1e+06"),
        ("window", 0, "> 0 and <= 86400"),
        ("window", -1.0, "> 0 and <= 86400"),
        ("window", 86_400.5, "> 0 and <= 86400"),
        ("window", None, "> 0 and <= 86400"),
    ],
)
def test_an_invalid_budget_names_the_field_the_range_and_the_value(
    field: str, value: Any, allowed: str
) -> None:
    with pytest.raises(ValueError) as raised:
        RetryBudget(**{field: value})

    message = str(raised.value)
    assert message.startswith(f"{field} must be")
    assert allowed in message
    assert message.endswith(f"got {value!r}")


def test_a_budget_accepts_its_bounds() -> None:
    RetryBudget(ratio=0, min_per_second=0, window=86_400)
    RetryBudget(ratio=1000, min_per_second=1e6, window=0.001)


# -- RetryPolicy: validation -----------------------------------------------------------------


def test_the_policy_defaults() -> None:
    policy = RetryPolicy()

    assert policy.attempts == 3
    assert policy.backoff == 0.025
    assert policy.max_backoff == 1.0
    assert policy.multiplier == 2.0
    assert policy.jitter == 1.0
    assert policy.retry_on == (ConnectionError, TimeoutError)
    assert policy.budget == RetryBudget()


@pytest.mark.parametrize(
    ("given_", "stored"),
    [
        ([OSError], (OSError,)),
        (KeyError, (KeyError,)),
        ({ValueError}, (ValueError,)),
        ((), ()),
        ((ConnectionError, KeyboardInterrupt), (ConnectionError, KeyboardInterrupt)),
    ],
)
def test_retry_on_is_stored_as_a_tuple(given_: Any, stored: tuple[type, ...]) -> None:
    assert RetryPolicy(retry_on=given_).retry_on == stored


def test_a_policy_without_a_budget_is_allowed() -> None:
    assert RetryPolicy(budget=None).budget is None


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("attempts", 0, "between 1 and 100"),
        ("attempts", 101, "between 1 and 100"),
        ("attempts", 2.0, "between 1 and 100"),
        ("attempts", True, "between 1 and 100"),
        ("backoff", -0.001, ">= 0 and <= 86400"),
        ("backoff", math.nan, ">= 0 and <= 86400"),
        ("max_backoff", 86_401, ">= 0 and <= 86400"),
        ("multiplier", 0.5, ">= 1 and <= 100"),
        ("multiplier", 101, ">= 1 and <= 100"),
        ("jitter", -0.1, ">= 0 and <= 1"),
        ("jitter", 1.5, ">= 0 and <= 1"),
        ("retry_on", "ConnectionError", "a tuple of exception classes"),
        ("retry_on", (ConnectionError, 3), "a tuple of exception classes"),
        ("retry_on", int, "a tuple of exception classes"),
        ("budget", 0.2, "a RetryBudget or None"),
    ],
)
def test_an_invalid_policy_names_the_field_the_range_and_the_value(
    field: str, value: Any, allowed: str
) -> None:
    with pytest.raises(ValueError) as raised:
        RetryPolicy(**{field: value})

    message = str(raised.value)
    assert message.startswith(f"{field} must be")
    assert allowed in message
    assert message.endswith(f"got {value!r}")


def test_max_backoff_below_backoff_is_refused() -> None:
    with pytest.raises(ValueError, match=r"max_backoff must be >= backoff \(2\.0\).*got 1\.0"):
        RetryPolicy(backoff=2.0, max_backoff=1.0)


# -- RetryPolicy.delay -----------------------------------------------------------------------


def test_without_jitter_the_delay_grows_by_the_multiplier_up_to_the_cap() -> None:
    policy = RetryPolicy(backoff=0.025, multiplier=2.0, max_backoff=0.15, jitter=0)

    delays = [policy.delay(retry, 0.5) for retry in range(1, 6)]

    assert delays == [0.025, 0.05, 0.1, 0.15, 0.15]


def test_full_jitter_draws_the_delay_anywhere_below_the_grown_one() -> None:
    policy = RetryPolicy(backoff=0.1, multiplier=3.0, max_backoff=10.0, jitter=1.0)

    assert policy.delay(2, 0.0) == pytest.approx(0.3)
    assert policy.delay(2, 0.25) == pytest.approx(0.225)
    assert policy.delay(2, 0.999) == pytest.approx(0.0003)


def test_partial_jitter_takes_its_share_of_the_delay_at_random() -> None:
    policy = RetryPolicy(backoff=1.0, multiplier=1.0, max_backoff=1.0, jitter=0.2)

    assert policy.delay(1, 0.0) == 1.0
    assert policy.delay(1, 0.5) == pytest.approx(0.9)
    assert policy.delay(7, 0.99) == pytest.approx(0.802)


def test_a_huge_retry_number_is_capped_not_an_overflow() -> None:
    policy = RetryPolicy(backoff=1.0, multiplier=100.0, max_backoff=60.0, jitter=0)

    assert policy.delay(10_000, 0.0) == 60.0


def test_a_zero_backoff_never_waits() -> None:
    policy = RetryPolicy(backoff=0.0, max_backoff=0.0)

    assert policy.delay(1, 0.3) == 0.0
    assert policy.delay(50, 0.0) == 0.0
    growing = RetryPolicy(backoff=0.0, max_backoff=5.0, multiplier=100.0)
    assert growing.delay(10_000, 0.0) == 0.0


@pytest.mark.parametrize("retry", [0, -1, 1.0, True, None])
def test_a_retry_number_below_one_is_refused(retry: Any) -> None:
    with pytest.raises(ValueError, match=r"retry must be an integer >= 1, got"):
        RetryPolicy().delay(retry, 0.0)


@pytest.mark.parametrize("u", [-0.1, 1.5, math.nan, "0.5"])
def test_a_draw_outside_zero_to_one_is_refused(u: Any) -> None:
    with pytest.raises(ValueError, match=r"u must be a number in \[0, 1\), got"):
        RetryPolicy().delay(1, u)


@settings(max_examples=200, deadline=None)
@given(
    backoff=st.floats(0, 10),
    extra=st.floats(0, 100),
    multiplier=st.floats(1, 100),
    jitter=st.floats(0, 1),
    retry=st.integers(1, 200),
    u=st.floats(0, 1, exclude_max=True),
)
def test_a_delay_is_never_negative_nor_above_the_cap(
    backoff: float, extra: float, multiplier: float, jitter: float, retry: int, u: float
) -> None:
    policy = RetryPolicy(
        backoff=backoff, max_backoff=backoff + extra, multiplier=multiplier, jitter=jitter
    )

    delay = policy.delay(retry, u)

    assert 0.0 <= delay <= policy.max_backoff
    assert delay >= min(policy.max_backoff, backoff) * (1 - jitter)


# -- RetryPolicy.retries ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [ConnectionError(), ConnectionRefusedError(), TimeoutError(), BrokenPipeError()]
)
def test_the_default_policy_retries_connection_errors_and_timeouts(error: Exception) -> None:
    assert RetryPolicy().retries(error)


@pytest.mark.parametrize("error", [ValueError(), KeyError(), OSError(), RuntimeError()])
def test_the_default_policy_does_not_retry_other_errors(error: Exception) -> None:
    assert not RetryPolicy().retries(error)


class OurTimeoutThatIsAlsoATimeoutError(CommandTimeoutError, TimeoutError):
    pass


@pytest.mark.parametrize(
    "error",
    [
        BadRequest("bad payload"),
        CircuitOpenError(),
        MaxConcurrencyError(),
        CommandTimeoutError(),
        FallbackFailedError(),
        UnknownCommandError(),
        CommandError(),
        OurTimeoutThatIsAlsoATimeoutError(),
    ],
)
def test_a_command_error_is_never_retried_whatever_retry_on_says(error: Exception) -> None:
    assert not RetryPolicy(retry_on=(BaseException,)).retries(error)


def test_an_empty_retry_on_retries_nothing() -> None:
    assert not RetryPolicy(retry_on=()).retries(ConnectionError())


# -- RetryTokens: the budget's arithmetic ----------------------------------------------------


def grant(tokens: RetryTokens, asked: int) -> int:
    """Ask for ``asked`` retries at once; how many were granted."""
    return sum(tokens.try_retry() for _ in range(asked))


def call(tokens: RetryTokens, n: int) -> None:
    for _ in range(n):
        tokens.called()


def test_the_floor_alone_grants_min_per_second_times_window_retries(clock: FakeClock) -> None:
    tokens = RetryTokens(RetryBudget(ratio=0, min_per_second=10, window=10), clock)

    assert grant(tokens, 150) == 100
    call(tokens, 1_000)  # a ratio of 0: calls add nothing
    assert grant(tokens, 1) == 0


def test_the_ratio_alone_grants_its_share_of_the_calls(clock: FakeClock) -> None:
    tokens = RetryTokens(RetryBudget(ratio=0.2, min_per_second=0, window=10), clock)

    assert grant(tokens, 1) == 0  # no calls yet
    call(tokens, 100)
    assert grant(tokens, 50) == 20
    call(tokens, 4)
    assert grant(tokens, 1) == 0  # 104 calls allow 20.8
    call(tokens, 1)
    assert grant(tokens, 5) == 1  # 105 allow 21


def test_the_default_budget_grants_a_fifth_of_the_calls_plus_one_hundred(
    clock: FakeClock,
) -> None:
    tokens = RetryTokens(RetryBudget(), clock)
    call(tokens, 100)

    assert grant(tokens, 1_000) == 120


def test_the_arithmetic_is_exact_decimal_not_float(clock: FakeClock) -> None:
    # ten deposits of 0.1 in floats add up to 0.9999999999999999: not a retry
    tokens = RetryTokens(RetryBudget(ratio=0.1, min_per_second=0, window=10), clock)
    call(tokens, 10)
    assert grant(tokens, 2) == 1
    # 0.3 as a float is below 3/10: 10 calls must still allow 3
    tokens = RetryTokens(RetryBudget(ratio=0.3, min_per_second=0, window=10), clock)
    call(tokens, 10)
    assert grant(tokens, 5) == 3
    # a floor of 0.7 per second over 10 s is 7 retries, not 6.999...
    tokens = RetryTokens(RetryBudget(ratio=0, min_per_second=0.7, window=10), clock)
    assert grant(tokens, 10) == 7


def test_a_floor_below_one_retry_per_window_grants_none(clock: FakeClock) -> None:
    tokens = RetryTokens(RetryBudget(ratio=0, min_per_second=0.05, window=10), clock)

    assert tokens.balance() == 0.5
    assert grant(tokens, 1) == 0


def test_no_ratio_and_no_floor_grants_nothing(clock: FakeClock) -> None:
    tokens = RetryTokens(RetryBudget(ratio=0, min_per_second=0, window=10), clock)
    call(tokens, 10_000)

    assert grant(tokens, 1) == 0
    assert tokens.balance() == 0.0


def test_granted_retries_leave_the_window_with_their_bucket() -> None:
    clock = FakeClock(1000.0)  # bucket 100 of 1 s (window 10 s in 10 buckets)
    tokens = RetryTokens(RetryBudget(ratio=0, min_per_second=1, window=10), clock)
    assert grant(tokens, 20) == 10

    clock.now = 1009.999  # bucket 1009: bucket 1000 is still in the window
    assert grant(tokens, 1) == 0

    clock.now = 1010.0  # bucket 1000 has left: the floor is whole again
    assert tokens.balance() == 10.0
    assert grant(tokens, 20) == 10


def test_calls_leave_the_window_with_their_bucket() -> None:
    clock = FakeClock(1000.5)
    tokens = RetryTokens(RetryBudget(ratio=0.5, min_per_second=0, window=10), clock)
    call(tokens, 10)
    assert tokens.balance() == 5.0

    clock.now = 1010.0  # the calls' bucket has left
    assert tokens.balance() == 0.0
    assert grant(tokens, 1) == 0


def test_calls_made_earlier_do_not_fund_a_burst_of_retries_later() -> None:
    # Finagle would grant 20 here: the window still holds the 100 calls. Those 20 retries would
    # then count in windows (1001 to 1010) that hold no call at all, over the ratio.
    clock = FakeClock(1000.0)
    tokens = RetryTokens(RetryBudget(ratio=0.2, min_per_second=0, window=10), clock)
    call(tokens, 100)

    clock.now = 1001.0
    assert tokens.balance() == 0.0
    assert grant(tokens, 1) == 0

    call(tokens, 10)  # calls in the retries' own bucket fund them
    assert grant(tokens, 5) == 2


def test_retries_funded_by_calls_in_the_same_bucket_are_allowed_anywhere_in_it() -> None:
    clock = FakeClock(1000.0)
    tokens = RetryTokens(RetryBudget(ratio=0.2, min_per_second=0, window=10), clock)
    call(tokens, 100)

    clock.now = 1000.999
    assert grant(tokens, 30) == 20


def test_a_burst_of_failures_exhausts_the_budget_which_refills_as_time_passes() -> None:
    clock = FakeClock(1000.0)
    tokens = RetryTokens(RetryBudget(ratio=0.2, min_per_second=1, window=10), clock)
    # a burst: 50 calls fail, each asks for a retry; 0.2 x 50 + 10 are granted
    granted = 0
    for _ in range(50):
        tokens.called()
        granted += tokens.try_retry()
    assert granted == 20
    assert tokens.balance() == 0.0

    # the dependency keeps failing without new calls: nothing until the burst's bucket leaves
    for second in range(1, 10):
        clock.now = 1000.0 + second
        assert grant(tokens, 1) == 0, second

    clock.now = 1010.0
    assert grant(tokens, 100) == 10  # the floor again
    clock.now = 1011.0
    assert grant(tokens, 1) == 0  # those ten stay for a window


def test_steady_failing_calls_are_retried_at_the_ratio_plus_the_floor_once() -> None:
    clock = FakeClock(1000.0)
    budget = RetryBudget(ratio=0.2, min_per_second=10, window=10)
    tokens = RetryTokens(budget, clock)
    granted_per_second = []
    for second in range(30):
        granted = 0
        for step in range(100):  # 100 failing calls a second, each asking for a retry
            clock.now = 1000.0 + second + step / 100
            tokens.called()
            granted += tokens.try_retry()
        granted_per_second.append(granted)

    # the first second spends the floor; the second one the fifth of the first's calls left
    # over and a fifth of its own; the others a fifth of theirs; the floor comes back when the
    # first second leaves the window. Every ten seconds: 0.2 x 1,000 calls + 100, no more.
    assert granted_per_second[:10] == [100, 40] + [20] * 8
    assert granted_per_second[10:20] == granted_per_second[:10]
    for first in range(21):
        assert sum(granted_per_second[first : first + 10]) <= 0.2 * 1_000 + 100


def test_the_balance_is_the_retries_still_allowed_now(clock: FakeClock) -> None:
    tokens = RetryTokens(RetryBudget(), clock)
    assert tokens.balance() == 100.0

    call(tokens, 10)
    assert tokens.balance() == 102.0
    assert tokens.try_retry()
    assert tokens.balance() == 101.0

    tokens = RetryTokens(RetryBudget(ratio=0.2, min_per_second=0), clock)
    call(tokens, 3)
    assert tokens.balance() == pytest.approx(0.6)
    assert not tokens.try_retry()


def test_reconfigure_with_the_same_window_keeps_the_counts(clock: FakeClock) -> None:
    tokens = RetryTokens(RetryBudget(ratio=0.2, min_per_second=0, window=10), clock)
    call(tokens, 100)
    assert grant(tokens, 10) == 10

    tokens.reconfigure(RetryBudget(ratio=0.5, min_per_second=0, window=10))

    assert tokens.budget.ratio == 0.5
    assert grant(tokens, 100) == 40  # 0.5 x 100 calls, 10 of them spent


def test_reconfigure_to_a_lower_ratio_applies_at_once(clock: FakeClock) -> None:
    tokens = RetryTokens(RetryBudget(ratio=0.5, min_per_second=0), clock)
    call(tokens, 100)
    assert grant(tokens, 30) == 30

    tokens.reconfigure(RetryBudget(ratio=0.2, min_per_second=0))

    assert grant(tokens, 1) == 0
    assert tokens.balance() == 0.0


def test_reconfigure_to_a_longer_window_keeps_the_counts_longer() -> None:
    clock = FakeClock(1000.0)
    tokens = RetryTokens(RetryBudget(ratio=0, min_per_second=1, window=10), clock)
    assert grant(tokens, 10) == 10

    tokens.reconfigure(RetryBudget(ratio=0, min_per_second=1, window=20))  # a floor of 20
    assert grant(tokens, 20) == 10

    clock.now = 1010.0  # the first ten would have left a 10 s window
    assert grant(tokens, 1) == 0
    clock.now = 1020.0
    assert grant(tokens, 30) == 20


def test_counts_that_left_the_window_do_not_come_back_in_a_longer_one() -> None:
    clock = FakeClock(1003.0)
    tokens = RetryTokens(RetryBudget(ratio=0, min_per_second=1, window=10), clock)
    assert grant(tokens, 10) == 10

    clock.now = 1015.0  # bucket 1003 left the 10 s window (its slot is not reused yet)
    tokens.reconfigure(RetryBudget(ratio=0, min_per_second=1, window=20))

    assert grant(tokens, 30) == 20


def test_reconfigure_to_a_shorter_window_drops_what_is_older_than_it() -> None:
    clock = FakeClock(1000.0)
    tokens = RetryTokens(RetryBudget(ratio=0, min_per_second=1, window=10), clock)
    assert grant(tokens, 10) == 10

    clock.now = 1003.0
    tokens.reconfigure(RetryBudget(ratio=0, min_per_second=1, window=2))  # a floor of 2

    assert grant(tokens, 5) == 2


def test_reconfigure_to_a_shorter_window_keeps_what_is_recent() -> None:
    clock = FakeClock(1000.0)
    tokens = RetryTokens(RetryBudget(ratio=0, min_per_second=1, window=10), clock)
    assert grant(tokens, 3) == 3

    clock.now = 1000.5
    tokens.reconfigure(RetryBudget(ratio=0, min_per_second=2, window=2))  # a floor of 4

    assert grant(tokens, 5) == 1


def test_reconfigure_to_a_shorter_window_keeps_the_newest_counts_over_older_ones() -> None:
    # buckets 1008 and 1010 of 1 s land on one slot of the 0.2 s buckets: the older is dropped
    clock = FakeClock(1008.0)
    tokens = RetryTokens(RetryBudget(ratio=0, min_per_second=1, window=10), clock)
    assert grant(tokens, 2) == 2
    clock.now = 1010.0
    assert grant(tokens, 3) == 3

    tokens.reconfigure(RetryBudget(ratio=0, min_per_second=2, window=2))  # a floor of 4

    assert grant(tokens, 5) == 1


# -- every window a retry counts in ----------------------------------------------------------

Step = tuple[float, str]
steps = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.0, 0.0, 0.001, 0.05, 0.3, 1.0, 2.5, 7.0]),
        st.sampled_from(["call", "call", "retry"]),
    ),
    max_size=300,
)
budgets = st.builds(
    RetryBudget,
    ratio=st.sampled_from([0, 0.1, 0.2, 0.25, 0.3, 1.0, 2.5]),
    min_per_second=st.sampled_from([0, 0.1, 0.3, 1.0, 2.0]),
    window=st.sampled_from([1.0, 3.0, 10.0]),
)


def play(budget: RetryBudget, script: list[Step]) -> tuple[float, list[tuple[float, str, bool]]]:
    """Run ``script`` (pauses, then a call or a retry asked for) on a budget; every step as
    (time, what, granted) and the bucket width."""
    clock = FakeClock(1000.0)
    tokens = RetryTokens(budget, clock)
    played = []
    for pause, what in script:
        clock.advance(pause)
        if what == "call":
            tokens.called()
            played.append((clock(), what, True))
        else:
            played.append((clock(), what, tokens.try_retry()))
    return budget.window / BUCKETS, played


def dec(value: float) -> Fraction:
    return Fraction(repr(float(value)))


@settings(max_examples=300, deadline=None)
@given(budget=budgets, script=steps)
def test_retries_in_any_run_of_buckets_never_exceed_ratio_times_calls_plus_floor(
    budget: RetryBudget, script: list[Step]
) -> None:
    width, played = play(budget, script)
    ratio, floor = dec(budget.ratio), dec(budget.min_per_second) * dec(budget.window)
    calls: dict[int, int] = {}
    retries: dict[int, int] = {}
    for now, what, granted in played:
        if granted:
            into = calls if what == "call" else retries
            bucket = int(now // width)
            into[bucket] = into.get(bucket, 0) + 1
    buckets = sorted(calls.keys() | retries.keys())
    for first in buckets:
        for length in range(1, BUCKETS + 1):  # every window (and shorter run) from ``first``
            run = range(first, first + length)
            run_calls = sum(calls.get(b, 0) for b in run)
            run_retries = sum(retries.get(b, 0) for b in run)
            assert run_retries <= ratio * run_calls + floor, (first, length)


@settings(max_examples=300, deadline=None)
@given(budget=budgets, script=steps)
def test_a_retry_is_granted_exactly_when_it_fits_every_window_it_will_count_in(
    budget: RetryBudget, script: list[Step]
) -> None:
    width, played = play(budget, script)
    ratio, floor = dec(budget.ratio), dec(budget.min_per_second) * dec(budget.window)
    calls: dict[int, int] = {}
    retries: dict[int, int] = {}
    for now, what, granted in played:
        bucket = int(now // width)
        if what == "call":
            calls[bucket] = calls.get(bucket, 0) + 1
            continue
        # the windows this retry will count in hold, as far as is known now, the buckets from
        # their first one up to this one
        fits = all(
            sum(retries.get(b, 0) for b in range(first, bucket + 1)) + 1
            <= ratio * sum(calls.get(b, 0) for b in range(first, bucket + 1)) + floor
            for first in range(bucket - BUCKETS + 1, bucket + 1)
        )
        assert granted == fits, (now, what)
        if granted:
            retries[bucket] = retries.get(bucket, 0) + 1
