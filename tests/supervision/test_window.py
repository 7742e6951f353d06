"""RollingCounts: event counts over the last window, bucket by bucket, on a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervision import FakeClock, RollingCounts
from supervision.events import EventType

S = EventType.SUCCESS
F = EventType.FAILURE


def test_it_counts_events_added_within_the_window(clock: FakeClock) -> None:
    window = RollingCounts(10.0, 10, clock)

    window.add(S)
    window.add(S)
    window.add(F, 3)

    assert window.count(S) == 2
    assert window.count(F) == 3
    assert window.count(EventType.TIMEOUT) == 0
    assert window.total([S, F]) == 5
    assert window.total([S, F, EventType.TIMEOUT]) == 5
    assert window.total([]) == 0


def test_it_adds_up_events_from_several_buckets(clock: FakeClock) -> None:
    window = RollingCounts(10.0, 10, clock)

    for _ in range(9):
        window.add(S)
        clock.advance(1.0)

    assert window.count(S) == 9


def test_an_event_drops_out_when_its_bucket_leaves_the_window() -> None:
    clock = FakeClock(1000.5)  # bucket 1000 of width 1.0, half-way through
    window = RollingCounts(10.0, 10, clock)
    window.add(F)

    clock.now = 1009.999  # bucket 1009: bucket 1000 is still the oldest of the ten
    assert window.count(F) == 1

    clock.now = 1010.0  # bucket 1010: bucket 1000 has left, only 9.5 s after the event
    assert window.count(F) == 0


def test_buckets_expire_one_at_a_time_as_the_clock_advances() -> None:
    clock = FakeClock(0.0)
    window = RollingCounts(10.0, 10, clock)
    for _ in range(10):  # one event in each of buckets 0..9
        window.add(S)
        clock.advance(1.0)
    clock.now = 9.5
    assert window.count(S) == 10

    remaining = []
    for now in (10.0, 11.0, 12.5, 15.0, 18.999, 19.0):
        clock.now = now
        remaining.append(window.count(S))

    assert remaining == [9, 8, 7, 4, 1, 0]


def test_a_jump_far_past_the_window_empties_it(clock: FakeClock) -> None:
    window = RollingCounts(10.0, 10, clock)
    window.add(S, 4)
    window.add(F, 2)

    clock.advance(1_000.0)

    assert window.total([S, F]) == 0
    window.add(F)
    assert window.count(F) == 1
    assert window.count(S) == 0


def test_a_slot_reused_after_a_full_turn_starts_from_zero() -> None:
    clock = FakeClock(3.2)  # bucket 3, slot 3
    window = RollingCounts(10.0, 10, clock)
    window.add(F, 5)

    clock.now = 13.2  # bucket 13 uses slot 3 again
    window.add(F)

    assert window.count(F) == 1


def test_bucket_width_is_window_divided_by_buckets() -> None:
    clock = FakeClock(0.0)
    window = RollingCounts(1.0, 4, clock)  # buckets of 0.25 s
    window.add(S)  # bucket 0

    clock.now = 0.999
    assert window.count(S) == 1
    clock.now = 1.0
    assert window.count(S) == 0


def test_a_single_bucket_window_forgets_everything_at_its_boundary() -> None:
    clock = FakeClock(5.0)
    window = RollingCounts(5.0, 1, clock)
    window.add(S, 7)

    clock.now = 9.999
    assert window.count(S) == 7
    clock.now = 10.0
    assert window.count(S) == 0


def test_reset_forgets_every_count(clock: FakeClock) -> None:
    window = RollingCounts(10.0, 10, clock)
    window.add(S, 3)
    clock.advance(2.0)
    window.add(F, 2)

    window.reset()

    assert window.total(list(EventType)) == 0
    window.add(F)
    assert window.count(F) == 1
    assert window.count(S) == 0


def test_a_snapshot_holds_every_event_type_with_zeros_included(clock: FakeClock) -> None:
    window = RollingCounts(10.0, 10, clock)
    window.add(EventType.TIMEOUT, 2)
    window.add(EventType.COLLAPSED)

    snapshot = window.snapshot()

    assert set(snapshot) == set(EventType)
    assert snapshot[EventType.TIMEOUT] == 2
    assert snapshot[EventType.COLLAPSED] == 1
    assert sum(snapshot.values()) == 3


def test_a_snapshot_is_a_copy_that_does_not_move_with_the_window(clock: FakeClock) -> None:
    window = RollingCounts(10.0, 10, clock)
    window.add(S)
    snapshot = window.snapshot()

    window.add(S)
    clock.advance(100.0)

    assert snapshot[S] == 1


@pytest.mark.parametrize(("window", "buckets"), [(0.0, 10), (-1.0, 10), (10.0, 0), (10.0, -1)])
def test_a_window_without_width_or_buckets_is_refused(window: float, buckets: int) -> None:
    with pytest.raises(ValueError):
        RollingCounts(window, buckets, FakeClock())


# -- resizing --------------------------------------------------------------------------------


def two_events_six_seconds_apart() -> tuple[FakeClock, RollingCounts]:
    clock = FakeClock(1000.0)
    window = RollingCounts(10.0, 10, clock)
    window.add(F)  # bucket 1000
    clock.advance(6.0)
    window.add(S)  # bucket 1006
    return clock, window


def test_resizing_to_the_same_length_in_other_buckets_keeps_every_count() -> None:
    _, window = two_events_six_seconds_apart()

    resized = window.resized(10.0, 5)

    assert (resized.count(F), resized.count(S)) == (1, 1)


def test_a_shorter_window_drops_the_counts_older_than_it() -> None:
    _, window = two_events_six_seconds_apart()

    resized = window.resized(5.0, 5)

    assert (resized.count(F), resized.count(S)) == (0, 1)


def test_a_longer_window_keeps_old_counts_until_they_leave_it() -> None:
    clock, window = two_events_six_seconds_apart()

    resized = window.resized(20.0, 4)  # buckets of 5 s: the failure sits in [1000, 1005)

    assert (resized.count(F), resized.count(S)) == (1, 1)
    clock.now = 1019.999
    assert resized.count(F) == 1
    clock.now = 1020.0
    assert (resized.count(F), resized.count(S)) == (0, 1)


def test_resizing_leaves_the_original_window_alone() -> None:
    _, window = two_events_six_seconds_apart()

    resized = window.resized(5.0, 5)
    resized.add(F, 10)

    assert (window.count(F), window.count(S)) == (1, 1)


def test_a_resized_window_keeps_counting() -> None:
    _, window = two_events_six_seconds_apart()

    resized = window.resized(20.0, 20)
    resized.add(F)

    assert resized.count(F) == 2


def test_resizing_does_not_bring_back_counts_that_had_left_the_window() -> None:
    clock = FakeClock(1000.0)
    window = RollingCounts(10.0, 10, clock)
    window.add(F)
    clock.advance(15.0)  # the failure left the 10 s window 5 s ago; nothing has read it since

    resized = window.resized(20.0, 10)

    assert resized.count(F) == 0


def test_resizing_after_a_read_does_not_bring_back_counts_that_had_left_the_window() -> None:
    clock = FakeClock(1000.0)
    window = RollingCounts(10.0, 10, clock)
    window.add(F)
    clock.advance(15.0)
    assert window.count(F) == 0

    resized = window.resized(20.0, 10)

    assert resized.count(F) == 0


# A window against the plainest model: every event with its bucket id, kept while the id is
# within the last `buckets` ids.

EVENTS = [S, F, EventType.TIMEOUT, EventType.BAD_REQUEST, EventType.THREAD_POOL_REJECTED]

step = st.tuples(
    st.sampled_from([0.0, 0.05, 0.3, 0.5, 1.0, 2.0, 2.5, 5.0, 9.99, 10.0, 25.0]),
    st.sampled_from(EVENTS),
    st.integers(min_value=1, max_value=3),
)


@settings(max_examples=200, deadline=None)
@given(
    shape=st.sampled_from([(10.0, 10), (10.0, 3), (1.0, 4), (5.0, 1), (2.0, 20)]),
    steps=st.lists(step, max_size=60),
)
def test_counts_equal_a_plain_list_of_bucketed_events(
    shape: tuple[float, int], steps: list[tuple[float, EventType, int]]
) -> None:
    length, buckets = shape
    clock = FakeClock(1000.0)
    window = RollingCounts(length, buckets, clock)
    width = length / buckets
    seen: list[tuple[int, EventType, int]] = []

    for advance, event, n in steps:
        clock.advance(advance)
        window.add(event, n)
        current = int(clock() // width)
        seen.append((current, event, n))

        kept = [(e, k) for bucket, e, k in seen if bucket > current - buckets]
        for kind in EVENTS:
            assert window.count(kind) == sum(k for e, k in kept if e is kind)
