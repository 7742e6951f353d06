"""Throttle: one event through per interval, and a count of the ones held back."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervision import FakeClock, Throttle


def test_the_first_event_is_allowed_with_nothing_held_back(clock: FakeClock) -> None:
    assert Throttle(1.0, clock).allow() == 0


def test_events_within_the_interval_are_held_back(clock: FakeClock) -> None:
    throttle = Throttle(1.0, clock)
    throttle.allow()

    held = [throttle.allow() for _ in range(3)]
    clock.advance(0.999)
    held.append(throttle.allow())

    assert held == [None, None, None, None]


def test_the_next_allowed_event_reports_how_many_were_held_back(clock: FakeClock) -> None:
    throttle = Throttle(1.0, clock)
    throttle.allow()
    for _ in range(5):
        throttle.allow()

    clock.advance(1.0)

    assert throttle.allow() == 5


def test_the_count_starts_again_after_each_allowed_event(clock: FakeClock) -> None:
    throttle = Throttle(1.0, clock)
    throttle.allow()
    throttle.allow()
    throttle.allow()
    clock.advance(1.0)
    assert throttle.allow() == 2

    throttle.allow()
    clock.advance(1.0)
    assert throttle.allow() == 1

    clock.advance(1.0)
    assert throttle.allow() == 0


def test_the_interval_runs_from_the_last_allowed_event_not_the_last_held_back_one(
    clock: FakeClock,
) -> None:
    throttle = Throttle(1.0, clock)
    throttle.allow()  # t=0
    clock.advance(0.9)
    assert throttle.allow() is None  # t=0.9

    clock.advance(0.1)  # t=1.0: one interval after the allowed one

    assert throttle.allow() == 1


def test_a_long_quiet_spell_allows_one_event_then_holds_back_again(clock: FakeClock) -> None:
    throttle = Throttle(2.0, clock)
    throttle.allow()
    clock.advance(3_600.0)

    assert throttle.allow() == 0
    assert throttle.allow() is None


def test_an_interval_of_zero_allows_every_event(clock: FakeClock) -> None:
    throttle = Throttle(0.0, clock)

    assert [throttle.allow() for _ in range(5)] == [0, 0, 0, 0, 0]


@pytest.mark.parametrize("interval", [-1.0, -0.001, -math.inf, math.nan])
def test_a_negative_or_nan_interval_raises_a_value_error_naming_it(interval: float) -> None:
    with pytest.raises(ValueError) as raised:
        Throttle(interval, FakeClock())

    assert "interval" in str(raised.value)
    assert repr(interval) in str(raised.value)


@settings(max_examples=150, deadline=None)
@given(
    interval=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    gaps=st.lists(st.integers(0, 8).map(lambda quarters: quarters / 4), max_size=40),
)
def test_every_event_is_either_allowed_or_counted_on_the_next_allowed_one(
    interval: float, gaps: list[float]
) -> None:
    clock = FakeClock(0.0)
    throttle = Throttle(interval, clock)
    last_allowed: float | None = None
    held = 0

    for gap in gaps:
        clock.advance(gap)
        answer = throttle.allow()
        should_allow = last_allowed is None or clock() >= last_allowed + interval
        if should_allow:
            assert answer == held
            last_allowed, held = clock(), 0
        else:
            assert answer is None
            held += 1
