"""A collapser's counts (supervision.collapsing): rolling over 10 s in 10 buckets by the injected
clock, exact nearest-rank batch-size percentiles, and lifetime totals for Prometheus."""

from __future__ import annotations

import pytest

from supervision import FakeClock
from supervision.collapsing import BATCH_SIZE_BOUNDS, BATCH_SIZE_PERCENTILES, CollapserStats


def test_an_unused_collapser_reads_zero_everywhere() -> None:
    stats = CollapserStats(FakeClock())

    requests, batches, cached, mean, percentiles = stats.read()

    assert (requests, batches, cached, mean) == (0, 0, 0, 0.0)
    assert percentiles == dict.fromkeys(BATCH_SIZE_PERCENTILES, 0.0)
    requests_total, batches_total, cached_total, sizes = stats.totals()
    assert (requests_total, batches_total, cached_total) == (0, 0, 0)
    assert sizes.count == sizes.sum == 0
    assert [bound for bound, _ in sizes.buckets] == list(BATCH_SIZE_BOUNDS)
    assert all(n == 0 for _, n in sizes.buckets)


def test_batches_add_up_their_requests_and_mean() -> None:
    stats = CollapserStats(FakeClock())
    for size in (1, 2, 3, 10):
        stats.batched(size)
    stats.from_cache()
    stats.from_cache()

    requests, batches, cached, mean, _ = stats.read()

    assert (requests, batches, cached) == (16, 4, 2)
    assert mean == 4.0


def test_percentiles_are_nearest_rank_over_the_exact_sizes() -> None:
    stats = CollapserStats(FakeClock())
    for size in range(1, 101):  # 1 .. 100, once each
        stats.batched(size)

    percentiles = stats.read()[4]

    assert percentiles == {
        "25": 25.0,
        "50": 50.0,
        "75": 75.0,
        "90": 90.0,
        "95": 95.0,
        "99": 99.0,
        "99.5": 100.0,  # ceil(99.5) = rank 100
        "100": 100.0,
    }


def test_one_large_batch_among_small_ones_shows_at_the_top_only() -> None:
    stats = CollapserStats(FakeClock())
    for _ in range(9):
        stats.batched(2)
    stats.batched(50)

    percentiles = stats.read()[4]

    assert percentiles["50"] == percentiles["90"] == 2.0
    assert percentiles["95"] == percentiles["100"] == 50.0


def test_the_window_rolls_by_the_injected_clock_and_the_totals_do_not() -> None:
    clock = FakeClock()
    stats = CollapserStats(clock)  # 10 s in 10 buckets of 1 s
    stats.batched(4)
    stats.from_cache()
    clock.advance(5.0)
    stats.batched(6)

    assert stats.read()[:3] == (10, 2, 1)
    clock.advance(5.0)  # the first bucket has left the window
    assert stats.read()[:3] == (6, 1, 0)
    clock.advance(5.0)
    assert stats.read()[:4] == (0, 0, 0, 0.0)

    requests_total, batches_total, cached_total, sizes = stats.totals()
    assert (requests_total, batches_total, cached_total) == (10, 2, 1)
    assert (sizes.count, sizes.sum) == (2, 10)


def test_a_bucket_reused_after_a_full_turn_starts_empty() -> None:
    clock = FakeClock()
    stats = CollapserStats(clock, window=10.0, buckets=10)
    stats.batched(3)
    clock.advance(10.0)  # the same slot, ten buckets later
    stats.batched(7)

    assert stats.read()[:2] == (7, 1)


def test_the_lifetime_histogram_is_cumulative_per_bound() -> None:
    stats = CollapserStats(FakeClock())
    for size in (1, 2, 2, 7, 1000, 5000):
        stats.batched(size)

    sizes = stats.totals()[3]

    assert dict(sizes.buckets) == {
        1: 1,
        2: 3,
        5: 3,
        10: 4,
        20: 4,
        50: 4,
        100: 4,
        200: 4,
        500: 4,
        1000: 5,
    }
    assert sizes.count == 6  # the +Inf bucket: 5000 is above every bound
    assert sizes.sum == 6012


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "3", None])
def test_a_batch_size_must_be_a_positive_int(size: object) -> None:
    with pytest.raises(ValueError, match="a batch size must be an int >= 1"):
        CollapserStats(FakeClock()).batched(size)  # type: ignore[arg-type]


@pytest.mark.parametrize(("window", "buckets"), [(0.0, 10), (-1.0, 10), (10.0, 0)])
def test_a_window_needs_a_length_and_buckets(window: float, buckets: int) -> None:
    with pytest.raises(ValueError, match="a rolling window needs window > 0 and buckets >= 1"):
        CollapserStats(FakeClock(), window=window, buckets=buckets)
