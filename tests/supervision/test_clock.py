"""Clocks: the fake one moves only when told to, and never backwards."""

from __future__ import annotations

import pytest

from supervision import FakeClock, monotonic


def test_a_fake_clock_stands_still_until_advanced(clock: FakeClock) -> None:
    start = clock()

    assert clock() == start
    clock.advance(2.5)
    assert clock() == start + 2.5


def test_a_fake_clock_starts_where_it_is_told() -> None:
    assert FakeClock(7.0)() == 7.0


def test_a_fake_clock_may_advance_by_zero(clock: FakeClock) -> None:
    start = clock()

    clock.advance(0.0)

    assert clock() == start


def test_a_fake_clock_cannot_go_back(clock: FakeClock) -> None:
    start = clock()

    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-0.1)
    assert clock() == start


def test_the_real_clock_is_monotonic() -> None:
    first = monotonic()

    assert monotonic() >= first
