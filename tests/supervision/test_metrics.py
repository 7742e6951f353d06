"""Rolling metrics of one key: the latency histogram's bins, rolling sums and maxima, latency
percentiles and the per-key stats, all on a fake clock."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervision import FakeClock
from supervision.events import EventType
from supervision.metrics import (
    EXECUTED,
    LATENCY_BUCKETS,
    LATENCY_WINDOW,
    MAX_ACTIVE,
    MAX_IN_FLIGHT,
    CommandStats,
    RollingCounters,
    RollingLatency,
    bin_of,
    value_of,
)
from supervision.snapshot import HISTOGRAM_BOUNDS, PERCENTILES

#: The relative error a bin may add to a latency above 64 µs ("about 3 % wide").
RELATIVE_ERROR = 0.032


def micros(n: float) -> float:
    """``n`` microseconds in seconds (``n * 1e-6`` may land an ulp below, in the bin below)."""
    return n / 1e6


def millis(n: float) -> float:
    return n / 1e3


S = EventType.SUCCESS
F = EventType.FAILURE


def near_bin(reported: float, exact: float) -> bool:
    """``reported`` is within one bin's width of ``exact`` (1 µs below 64 µs)."""
    return abs(reported - exact) <= max(RELATIVE_ERROR * exact, 1e-6)


def nearest_rank(samples: list[float], percentile: str) -> float:
    """The reference percentile: sort the samples, take the nearest rank (exact arithmetic)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(Fraction(percentile) * len(ordered) / 100))
    return ordered[rank - 1]


latencies = st.floats(min_value=0.0, max_value=1e5, allow_nan=False, allow_infinity=False)


# -- bins -----------------------------------------------------------------------------------------


def test_a_latency_below_64_microseconds_is_its_own_bin_and_reads_back_exactly() -> None:
    for us in range(64):
        assert bin_of(micros(us)) == us
        assert value_of(us) == micros(us)


def test_a_latency_from_64_microseconds_up_reads_back_within_about_3_percent() -> None:
    for us in (64, 65, 100, 127, 128, 1_000, 4_095, 4_096, 20_000, 999_999, 10**9):
        seconds = micros(us)
        value = value_of(bin_of(seconds))
        assert abs(value - seconds) <= RELATIVE_ERROR * seconds


def test_bins_above_64_microseconds_are_about_3_percent_wide() -> None:
    for index in range(64, 64 + 32 * 20):
        width = value_of(index + 1) - value_of(index)
        assert 0 < width <= RELATIVE_ERROR * value_of(index)
        assert bin_of(value_of(index)) == index  # a bin's middle lies in that bin


def test_bin_of_never_decreases_as_the_latency_grows() -> None:
    bins = [bin_of(micros(us)) for us in range(0, 300_000, 7)]
    assert bins == sorted(bins)
    values = [value_of(index) for index in range(0, 1_000)]
    assert all(a < b for a, b in itertools.pairwise(values))


def test_a_negative_latency_lands_in_the_first_bin() -> None:
    assert bin_of(-0.5) == 0
    assert value_of(bin_of(-0.5)) == 0.0


@settings(max_examples=500, deadline=None)
@given(latencies)
def test_a_bins_value_is_within_3_2_percent_or_a_microsecond_of_the_latency(
    seconds: float,
) -> None:
    assert near_bin(value_of(bin_of(seconds)), seconds)


@given(latencies, latencies)
def test_a_longer_latency_never_gets_a_lower_bin(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert bin_of(low) <= bin_of(high)


# -- RollingCounters -----------------------------------------------------------------------------


def test_empty_rolling_counters_read_as_zero(clock: FakeClock) -> None:
    counters = RollingCounters(10.0, 10, clock)

    assert all(counters.count(event) == 0 for event in EventType)
    assert counters.total(EXECUTED) == 0
    assert counters.maximum(MAX_IN_FLIGHT) == 0
    assert counters.maximum(MAX_ACTIVE) == 0


def test_rolling_counters_count_each_event_of_a_reply(clock: FakeClock) -> None:
    counters = RollingCounters(10.0, 10, clock)

    counters.events((S,))
    counters.events((F, EventType.FALLBACK_SUCCESS))
    clock.advance(1.0)
    counters.events((F, EventType.FALLBACK_MISSING))

    assert counters.count(S) == 1
    assert counters.count(F) == 2
    assert counters.count(EventType.FALLBACK_SUCCESS) == 1
    assert counters.count(EventType.FALLBACK_MISSING) == 1
    assert counters.count(EventType.TIMEOUT) == 0


def test_a_rolling_sum_adds_values_from_every_bucket_in_the_window(clock: FakeClock) -> None:
    counters = RollingCounters(10.0, 10, clock)

    counters.add(EXECUTED)
    counters.add(EXECUTED, 2)
    clock.advance(1.0)
    counters.add(EXECUTED, 4)

    assert counters.total(EXECUTED) == 7
    assert counters.maximum(MAX_ACTIVE) == 0  # a column of its own


def test_a_rolling_sum_loses_values_bucket_by_bucket_as_they_expire() -> None:
    clock = FakeClock(0.0)
    counters = RollingCounters(10.0, 10, clock)
    for n in (1, 2, 4, 8):  # buckets 0..3
        counters.add(EXECUTED, n)
        counters.events((S,) * n)
        clock.advance(1.0)

    sums, successes = [], []
    for now in (9.999, 10.0, 11.0, 12.0, 13.0):
        clock.now = now
        sums.append(counters.total(EXECUTED))
        successes.append(counters.count(S))

    assert sums == [15, 14, 12, 8, 0]
    assert successes == sums


def test_a_rolling_maximum_keeps_the_largest_value_of_each_bucket() -> None:
    clock = FakeClock(0.0)
    counters = RollingCounters(10.0, 10, clock)
    for n in (3, 7, 5):  # bucket 0: 7
        counters.peak(MAX_IN_FLIGHT, n)
    clock.now = 1.0
    counters.peak(MAX_IN_FLIGHT, 2)  # bucket 1: 2
    clock.now = 2.0
    counters.peak(MAX_IN_FLIGHT, 4)  # bucket 2: 4

    assert counters.maximum(MAX_IN_FLIGHT) == 7
    assert counters.maximum(MAX_ACTIVE) == 0
    clock.now = 10.0  # bucket 0 leaves
    assert counters.maximum(MAX_IN_FLIGHT) == 4
    clock.now = 11.999  # bucket 1 has left too; bucket 2 is the oldest
    assert counters.maximum(MAX_IN_FLIGHT) == 4
    clock.now = 12.0
    assert counters.maximum(MAX_IN_FLIGHT) == 0


def test_a_reused_slot_forgets_the_bucket_it_held_before() -> None:
    clock = FakeClock(0.0)
    counters = RollingCounters(10.0, 10, clock)
    counters.add(EXECUTED, 9)  # bucket 0, slot 0
    counters.peak(MAX_ACTIVE, 9)
    counters.events((F,) * 9)

    clock.now = 10.5  # bucket 10, slot 0 again
    counters.add(EXECUTED, 1)

    assert counters.total(EXECUTED) == 1
    assert counters.maximum(MAX_ACTIVE) == 0
    assert counters.count(F) == 0


@pytest.mark.parametrize(("window", "buckets"), [(0.0, 10), (-1.0, 10), (10.0, 0)])
def test_rolling_counters_refuse_an_empty_window(
    clock: FakeClock, window: float, buckets: int
) -> None:
    with pytest.raises(ValueError, match="window"):
        RollingCounters(window, buckets, clock)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=4.0), st.integers(0, 1_000)),
        min_size=1,
        max_size=40,
    )
)
def test_rolling_counters_match_a_reference_over_the_live_buckets(
    steps: list[tuple[float, int]],
) -> None:
    clock = FakeClock(0.0)
    counters = RollingCounters(10.0, 5, clock)  # buckets 2 s wide
    added: list[tuple[int, int]] = []  # (bucket, value)
    for advance, value in steps:
        clock.advance(advance)
        counters.add(EXECUTED, value)
        counters.peak(MAX_ACTIVE, value)
        counters.events((S,))
        added.append((int(clock.now // 2.0), value))

        newest = int(clock.now // 2.0)
        live = [v for bucket, v in added if bucket > newest - 5]
        assert counters.total(EXECUTED) == sum(live)
        assert counters.maximum(MAX_ACTIVE) == max(live)
        assert counters.count(S) == len(live)


# -- RollingLatency -------------------------------------------------------------------------------


def test_an_empty_latency_window_reads_as_zeros(clock: FakeClock) -> None:
    snapshot = RollingLatency(clock).snapshot()

    assert snapshot.count == 0
    assert snapshot.mean == 0.0
    assert dict(snapshot.percentiles) == dict.fromkeys(PERCENTILES, 0.0)


def test_the_latency_window_is_hystrixs_60_seconds_in_6_buckets() -> None:
    assert (LATENCY_WINDOW, LATENCY_BUCKETS) == (60.0, 6)


def test_percentiles_are_nearest_rank_over_the_samples(clock: FakeClock) -> None:
    latency = RollingLatency(clock)
    samples = [millis(n) for n in range(1, 101)]  # 1 ms .. 100 ms
    for sample in reversed(samples):
        latency.record(sample)

    snapshot = latency.snapshot()

    assert snapshot.count == 100
    assert snapshot.mean == pytest.approx(millis(50.5), rel=1e-12)
    expected = {"0": 1, "25": 25, "50": 50, "75": 75, "90": 90, "95": 95, "99": 99}
    expected |= {"99.5": 100, "100": 100}
    for name, ms in expected.items():
        assert snapshot.percentiles[name] == value_of(bin_of(millis(ms))), name
        assert near_bin(snapshot.percentiles[name], millis(ms)), name


def test_one_sample_is_every_percentile(clock: FakeClock) -> None:
    latency = RollingLatency(clock)
    latency.record(micros(37))

    snapshot = latency.snapshot()

    assert snapshot.count == 1
    assert snapshot.mean == micros(37)
    assert set(snapshot.percentiles.values()) == {micros(37)}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.floats(min_value=0.0, max_value=30.0, allow_nan=False) | st.integers(0, 200).map(micros),
        min_size=1,
        max_size=300,
    )
)
def test_percentiles_match_a_reference_computed_by_sorting_the_samples(
    samples: list[float],
) -> None:
    clock = FakeClock(0.0)
    latency = RollingLatency(clock)
    for sample in samples:
        latency.record(sample)

    snapshot = latency.snapshot()

    assert snapshot.count == len(samples)
    assert snapshot.mean == pytest.approx(sum(samples) / len(samples), rel=1e-9, abs=1e-15)
    for name in PERCENTILES:
        exact = nearest_rank(samples, name)
        assert near_bin(snapshot.percentiles[name], exact), (name, exact)
        assert snapshot.percentiles[name] == value_of(bin_of(exact)), (name, exact)
    ordered = [snapshot.percentiles[name] for name in PERCENTILES]
    assert ordered == sorted(ordered)


def test_latencies_older_than_60_seconds_drop_out_bucket_by_bucket() -> None:
    clock = FakeClock(0.0)
    latency = RollingLatency(clock)
    for bucket in range(6):  # one sample in each 10 s bucket: 1 ms, 2 ms, ... 6 ms
        clock.now = bucket * 10.0
        latency.record(millis(bucket + 1))

    clock.now = 59.999
    assert latency.snapshot().count == 6

    counts, minima, means = [], [], []
    for now in (60.0, 70.0, 80.0, 90.0, 100.0):
        clock.now = now
        snapshot = latency.snapshot()
        counts.append(snapshot.count)
        minima.append(snapshot.percentiles["0"])
        means.append(snapshot.mean)

    assert counts == [5, 4, 3, 2, 1]
    assert minima == [value_of(bin_of(millis(ms))) for ms in (2, 3, 4, 5, 6)]
    assert means == pytest.approx([millis(4), millis(4.5), millis(5), millis(5.5), millis(6)])
    clock.now = 110.0
    assert latency.snapshot().count == 0
    assert set(latency.snapshot().percentiles.values()) == {0.0}


def test_a_reused_latency_bucket_forgets_its_old_samples() -> None:
    clock = FakeClock(0.0)
    latency = RollingLatency(clock)
    for _ in range(5):
        latency.record(millis(900))

    clock.now = 60.0  # the same slot, a new bucket
    latency.record(millis(2))
    snapshot = latency.snapshot()

    assert snapshot.count == 1
    assert snapshot.mean == millis(2)
    assert set(snapshot.percentiles.values()) == {value_of(bin_of(millis(2)))}


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=25.0), st.floats(min_value=0.0, max_value=5.0)
        ),
        min_size=1,
        max_size=60,
    )
)
def test_percentiles_follow_the_samples_of_the_live_buckets_as_time_moves(
    steps: list[tuple[float, float]],
) -> None:
    clock = FakeClock(0.0)
    latency = RollingLatency(clock)
    recorded: list[tuple[int, float]] = []  # (bucket, latency)
    for advance, sample in steps:
        clock.advance(advance)
        latency.record(sample)
        recorded.append((int(clock.now // 10.0), sample))

        newest = int(clock.now // 10.0)
        live = [s for bucket, s in recorded if bucket > newest - 6]
        snapshot = latency.snapshot()
        assert snapshot.count == len(live)
        assert snapshot.mean == pytest.approx(sum(live) / len(live), rel=1e-9, abs=1e-15)
        for name in PERCENTILES:
            assert snapshot.percentiles[name] == value_of(bin_of(nearest_rank(live, name)))


# -- CommandStats ---------------------------------------------------------------------------------


def test_a_new_stats_holds_nothing(clock: FakeClock) -> None:
    stats = CommandStats(10.0, 10, clock)

    assert set(stats.totals) == set(EventType)
    assert set(stats.totals.values()) == {0}
    assert all(stats.counters.count(event) == 0 for event in EventType)
    assert stats.counters.total(EXECUTED) == 0
    assert stats.transitions == {}
    assert (stats.completed, stats.largest_pool) == (0, 0)
    assert stats.execute.snapshot().count == stats.total.snapshot().count == 0


def test_replied_counts_every_event_of_an_answer_and_its_latency(clock: FakeClock) -> None:
    stats = CommandStats(10.0, 10, clock)

    stats.replied((S,), millis(3), False)
    stats.replied((F, EventType.FALLBACK_SUCCESS), millis(5), False)
    stats.replied((F, EventType.FALLBACK_MISSING), millis(7), True)  # an error reached the caller

    counts = {event: stats.counters.count(event) for event in EventType}
    expected = dict.fromkeys(EventType, 0)
    expected |= {
        S: 1,
        F: 2,
        EventType.FALLBACK_SUCCESS: 1,
        EventType.FALLBACK_MISSING: 1,
        EventType.EXCEPTION_THROWN: 1,
    }
    assert counts == expected
    assert stats.totals == expected
    total = stats.total.snapshot()
    assert total.count == 3
    assert total.mean == pytest.approx(millis(5))
    assert stats.execute.snapshot().count == 0  # an answer says nothing about run
    assert stats.counters.total(EXECUTED) == 0
    assert stats.completed == 0


def test_ran_records_the_execute_latency_and_counts_the_run(clock: FakeClock) -> None:
    stats = CommandStats(10.0, 10, clock)

    stats.ran(millis(20))
    stats.ran(millis(40))

    execute = stats.execute.snapshot()
    assert execute.count == 2
    assert execute.mean == pytest.approx(millis(30))
    assert execute.percentiles["0"] == value_of(bin_of(millis(20)))
    assert execute.percentiles["100"] == value_of(bin_of(millis(40)))
    assert stats.counters.total(EXECUTED) == 2
    assert stats.completed == 2
    assert stats.total.snapshot().count == 0
    assert sum(stats.totals.values()) == 0


def test_lifetime_totals_never_drop_when_the_window_moves_on(clock: FakeClock) -> None:
    stats = CommandStats(10.0, 10, clock)
    stats.replied((S,), millis(1), False)
    stats.replied((EventType.TIMEOUT, EventType.FALLBACK_SUCCESS), 1.0, False)
    stats.ran(millis(1))
    stats.counters.peak(MAX_IN_FLIGHT, 3)

    clock.advance(10.0)
    stats.replied((S,), millis(1), False)

    assert stats.counters.count(S) == 1
    assert stats.counters.count(EventType.TIMEOUT) == 0
    assert stats.counters.total(EXECUTED) == 0
    assert stats.counters.maximum(MAX_IN_FLIGHT) == 0
    assert stats.totals[S] == 2
    assert stats.totals[EventType.TIMEOUT] == 1
    assert stats.totals[EventType.FALLBACK_SUCCESS] == 1
    assert stats.completed == 1
    assert stats.execute.snapshot().count == 1  # the latency window is 60 s


def test_resized_starts_the_rolling_counters_afresh_and_keeps_the_rest(
    clock: FakeClock,
) -> None:
    stats = CommandStats(10.0, 10, clock)
    for _ in range(3):
        stats.replied((S,), millis(1), False)
        stats.ran(millis(1))
    stats.replied((F, EventType.FALLBACK_SUCCESS), millis(2), False)
    stats.counters.peak(MAX_IN_FLIGHT, 4)
    stats.largest_pool = 2
    stats.entered("open")

    stats.resized(20.0, 4, clock)

    assert all(stats.counters.count(event) == 0 for event in EventType)
    assert stats.counters.total(EXECUTED) == 0
    assert stats.counters.maximum(MAX_IN_FLIGHT) == 0
    assert (stats.totals[S], stats.totals[F]) == (3, 1)
    assert stats.completed == 3
    assert stats.largest_pool == 2
    assert stats.transitions == {"open": 1}
    assert stats.execute.snapshot().count == 3
    assert stats.total.snapshot().count == 4


def test_resized_counters_have_the_new_shape(clock: FakeClock) -> None:
    stats = CommandStats(10.0, 10, clock)
    stats.resized(20.0, 4, clock)  # buckets 5 s wide
    stats.replied((S,), millis(1), False)
    stats.ran(millis(1))
    stats.counters.peak(MAX_IN_FLIGHT, 2)

    clock.advance(15.0)
    assert stats.counters.count(S) == 1  # a 10 s window would have dropped it
    assert stats.counters.total(EXECUTED) == 1
    assert stats.counters.maximum(MAX_IN_FLIGHT) == 2
    clock.advance(5.0)
    assert stats.counters.count(S) == 0
    assert stats.counters.total(EXECUTED) == 0
    assert stats.counters.maximum(MAX_IN_FLIGHT) == 0


def test_the_lifetime_histogram_is_cumulative_and_never_rolls(clock: FakeClock) -> None:
    latency = RollingLatency(clock)
    samples = [0.00005, 0.0003, 0.0003, 0.004, 0.2, 30.0]
    for seconds in samples:
        latency.record(seconds)
    clock.advance(3600)  # far past the rolling window
    latency.record(0.0003)

    histogram = latency.lifetime()

    assert histogram.count == 7
    assert histogram.sum == pytest.approx(sum(samples) + 0.0003)
    assert [bound for bound, _ in histogram.buckets] == list(HISTOGRAM_BOUNDS)
    cumulative = dict(histogram.buckets)
    assert cumulative[0.0001] == 1
    assert cumulative[0.0005] == 4
    assert cumulative[0.005] == 5
    assert cumulative[0.25] == 6
    assert cumulative[10.0] == 6  # 30 s is above every bound: only in the count (+Inf)
    assert latency.snapshot().count == 1  # the rolling window kept only the last one


def test_snapshot_copies_are_shared_until_a_reply_or_a_transition_changes_them(
    clock: FakeClock,
) -> None:
    stats = CommandStats(10.0, 10, clock)
    stats.replied((S,), millis(1), False)
    totals, transitions = stats.shown()

    assert stats.shown() == (totals, transitions)
    assert stats.shown()[0] is totals  # an idle key's snapshot makes no new dicts
    stats.entered("open")
    assert stats.shown()[1] == {"open": 1}
    assert transitions == {}  # a copy handed out is never changed afterwards
    stats.replied((F,), millis(1), False)
    assert stats.shown()[0][F] == 1
    assert totals[F] == 0


def test_rolling_counts_are_one_dict_while_the_read_holds(clock: FakeClock) -> None:
    counters = RollingCounters(10.0, 10, clock)
    counters.events((S,))
    first = counters.counts()

    assert counters.counts() is first
    counters.events((S,))
    assert counters.counts()[S] == 2
    assert first[S] == 1
    clock.advance(10.0)  # the bucket left the window
    assert counters.counts()[S] == 0
