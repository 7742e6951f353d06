"""The bulkhead: max_concurrent running plus queue_size waiting, the rest rejected."""

from __future__ import annotations

import pytest

from supervision import Bulkhead


@pytest.mark.parametrize(("max_concurrent", "queue_size"), [(1, 0), (3, 0), (2, 3), (10, 0)])
def test_capacity_is_max_concurrent_plus_queue_size(max_concurrent: int, queue_size: int) -> None:
    bulkhead = Bulkhead(max_concurrent, queue_size)

    admitted = [bulkhead.try_acquire() for _ in range(max_concurrent + queue_size + 2)]

    capacity = max_concurrent + queue_size
    assert admitted == [True] * capacity + [False, False]
    assert bulkhead.in_flight == capacity


def test_the_queue_size_defaults_to_zero() -> None:
    bulkhead = Bulkhead(2)

    assert [bulkhead.try_acquire() for _ in range(3)] == [True, True, False]


def test_a_release_frees_a_slot_for_the_next_call() -> None:
    bulkhead = Bulkhead(1)
    assert bulkhead.try_acquire()
    assert not bulkhead.try_acquire()

    bulkhead.release()

    assert bulkhead.in_flight == 0
    assert bulkhead.try_acquire()


def test_a_rejected_call_takes_no_slot() -> None:
    bulkhead = Bulkhead(1)
    bulkhead.try_acquire()

    for _ in range(5):
        bulkhead.try_acquire()

    assert bulkhead.in_flight == 1
    bulkhead.release()
    assert bulkhead.in_flight == 0


def test_releasing_more_often_than_acquiring_raises() -> None:
    bulkhead = Bulkhead(2)
    bulkhead.try_acquire()
    bulkhead.release()

    with pytest.raises(RuntimeError, match="released more often"):
        bulkhead.release()
    assert bulkhead.in_flight == 0


def test_releasing_a_fresh_bulkhead_raises() -> None:
    with pytest.raises(RuntimeError):
        Bulkhead(1).release()


def test_max_in_flight_remembers_the_high_water_mark() -> None:
    bulkhead = Bulkhead(5)
    for _ in range(3):
        bulkhead.try_acquire()
    for _ in range(3):
        bulkhead.release()
    bulkhead.try_acquire()

    assert bulkhead.max_in_flight == 3
    assert bulkhead.in_flight == 1


def test_shrinking_keeps_the_calls_already_admitted() -> None:
    bulkhead = Bulkhead(4)
    for _ in range(4):
        bulkhead.try_acquire()

    bulkhead.resize(2, 0)

    assert bulkhead.in_flight == 4
    assert (bulkhead.max_concurrent, bulkhead.queue_size) == (2, 0)
    assert not bulkhead.try_acquire()
    bulkhead.release()
    bulkhead.release()
    assert not bulkhead.try_acquire()  # 2 still in flight, capacity 2
    bulkhead.release()
    assert bulkhead.try_acquire()


def test_growing_admits_more_at_once() -> None:
    bulkhead = Bulkhead(1)
    bulkhead.try_acquire()

    bulkhead.resize(2, 1)

    assert bulkhead.in_flight == 1
    assert [bulkhead.try_acquire() for _ in range(3)] == [True, True, False]
