"""Reads of the rolling metrics are kept between records (the stream reads every key every
tick): a kept read must always equal a read made afresh, whatever the clock and the records did
meanwhile."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervision import FakeClock
from supervision.events import EventType
from supervision.metrics import (
    EXECUTED,
    MAX_ACTIVE,
    MAX_IN_FLIGHT,
    CommandStats,
    RollingCounters,
    RollingLatency,
)
from supervision.snapshot import PERCENTILES

S = EventType.SUCCESS
F = EventType.FAILURE

#: A step: read only, or record; the clock moves first. ``offset`` moves a record's ``now``
#: away from the clock (a caller that read the time a moment before, or after).
steps = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=6.0),
        st.booleans(),
        st.integers(0, 50),
        st.sampled_from([0.0, 0.0, 0.0, -1.5, -9.0, 2.5]),
    ),
    min_size=1,
    max_size=60,
)


#: A record: (the clock's time, the ``now`` given, the value).
Records = list[tuple[float, float, int]]


def counters_afresh(records: Records, at: float) -> RollingCounters:
    """Counters given the same records at the same times, read first at ``at``."""
    clock = FakeClock(0.0)
    counters = RollingCounters(10.0, 5, clock)  # buckets 2 s wide
    for time, now, value in records:
        clock.now = time
        record_into(counters, now, value)
    clock.now = at
    return counters


def record_into(counters: RollingCounters, now: float, value: int) -> None:
    counters.events((S,) * (value % 3) + (F,), now)
    counters.add(EXECUTED, value)
    counters.peak(MAX_ACTIVE, value)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_a_kept_counters_read_equals_a_fresh_one(
    script: list[tuple[float, bool, int, float]],
) -> None:
    clock = FakeClock(100.0)
    counters = RollingCounters(10.0, 5, clock)
    records: Records = []
    for advance, record, value, offset in script:
        clock.advance(advance)
        if record:
            now = max(clock.now + offset, 0.0)
            record_into(counters, now, value)
            records.append((clock.now, now, value))
        fresh = counters_afresh(records, clock.now)
        assert counters.counts() == fresh.counts()
        assert counters.count(F) == fresh.count(F)
        for column in (EXECUTED, MAX_ACTIVE, MAX_IN_FLIGHT):
            assert counters.total(column) == fresh.total(column)
            assert counters.maximum(column) == fresh.maximum(column)


def latency_afresh(records: list[tuple[float, float, float]], at: float) -> RollingLatency:
    clock = FakeClock(0.0)
    latency = RollingLatency(clock)
    for time, now, seconds in records:
        clock.now = time
        latency.record(seconds, now)
    clock.now = at
    return latency


@settings(max_examples=300, deadline=None)
@given(steps)
def test_a_kept_latency_snapshot_equals_a_fresh_one(
    script: list[tuple[float, bool, int, float]],
) -> None:
    clock = FakeClock(100.0)
    latency = RollingLatency(clock)  # 60 s in 6 buckets
    records: list[tuple[float, float, float]] = []
    for advance, record, value, offset in script:
        clock.advance(advance * 4)  # the latency buckets are 10 s wide
        if record:
            now = max(clock.now + offset * 4, 0.0)
            latency.record(value / 1000, now)
            records.append((clock.now, now, value / 1000))
        assert latency.snapshot() == latency_afresh(records, clock.now).snapshot()


def test_a_key_left_alone_is_read_from_what_was_kept(clock: FakeClock) -> None:
    stats = CommandStats(10.0, 10, clock)
    stats.replied((S,), 0.002, thrown=False)
    stats.ran(0.001)

    first = stats.total.snapshot(), stats.counters.counts()
    clock.advance(5.0)  # the buckets read still hold: nothing to compute again
    second = stats.total.snapshot(), stats.counters.counts()

    assert second[0] is first[0]
    assert second == first
    assert second[1] is first[1]  # one dict, read only, while the read holds


def test_a_record_or_a_bucket_leaving_the_window_is_seen_at_once(clock: FakeClock) -> None:
    stats = CommandStats(10.0, 10, clock)
    stats.replied((S,), 0.002, thrown=False)
    assert stats.counters.count(S) == 1
    assert stats.total.snapshot().count == 1

    stats.replied((F,), 0.004, thrown=False)
    assert (stats.counters.count(S), stats.counters.count(F)) == (1, 1)
    assert stats.total.snapshot().count == 2

    clock.advance(10.0)  # the counts' window (10 s) has moved past both
    assert stats.counters.counts() == dict.fromkeys(EventType, 0)
    assert stats.total.snapshot().count == 2  # the latency window is 60 s
    clock.advance(50.0)
    snapshot = stats.total.snapshot()
    assert snapshot.count == 0
    assert snapshot.percentiles == dict.fromkeys(PERCENTILES, 0.0)
    assert snapshot.lifetime.count == 2


def test_a_record_given_a_later_time_counts_once_the_clock_gets_there(clock: FakeClock) -> None:
    counters = RollingCounters(10.0, 10, clock)
    counters.events((S,), clock.now + 3.0)

    assert counters.count(S) == 0  # not yet in the window
    clock.advance(3.0)
    assert counters.count(S) == 1


@pytest.mark.parametrize("column", [EXECUTED, MAX_ACTIVE])
def test_a_peak_no_higher_than_the_bucket_s_keeps_the_read(clock: FakeClock, column: int) -> None:
    counters = RollingCounters(10.0, 10, clock)
    counters.peak(MAX_ACTIVE, 3)
    read = counters.maximum(column), counters.total(column)

    counters.peak(MAX_ACTIVE, 2)

    assert (counters.maximum(column), counters.total(column)) == read
    counters.peak(MAX_ACTIVE, 4)
    assert counters.maximum(MAX_ACTIVE) == 4
