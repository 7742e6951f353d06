"""A request collapser's metrics (``actors.collapser``): what it batched, over a rolling window
and since it was registered. Pure and clock-injected; the owner serialises access.

Hystrix's collapser metrics: the requests added to batches, the batches sent, the responses
served from the request cache, and the distribution of batch sizes (mean and percentiles),
over a rolling statistical window of 10 s in 10 buckets. Batch sizes are whole numbers, so each
bucket keeps exact counts per size: percentiles are exact (nearest rank), never estimated.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
from collections.abc import Mapping

from .clock import Clock

__all__ = [
    "BATCH_SIZE_BOUNDS",
    "BATCH_SIZE_PERCENTILES",
    "COLLAPSER_BUCKETS",
    "COLLAPSER_WINDOW",
    "CollapserMetrics",
    "CollapserStats",
    "SizeHistogram",
]

#: Seconds the rolling collapser metrics cover, and their buckets (Hystrix's defaults).
COLLAPSER_WINDOW = 10.0
COLLAPSER_BUCKETS = 10

#: The batch-size percentiles reported, keyed as the Hystrix stream spells them.
BATCH_SIZE_PERCENTILES: tuple[str, ...] = ("25", "50", "75", "90", "95", "99", "99.5", "100")

#: Upper bounds of the lifetime batch-size histogram (Prometheus's ``le``).
BATCH_SIZE_BOUNDS: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


@dataclasses.dataclass(frozen=True, slots=True)
class SizeHistogram:
    """Every batch since the collapser was registered: cumulative counts per bound."""

    #: (upper bound, batches of at most that many requests), for each of ``BATCH_SIZE_BOUNDS``.
    buckets: tuple[tuple[int, int], ...]
    #: Batches sent.
    count: int
    #: Requests in them.
    sum: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CollapserMetrics:
    """A collapser's metrics at one instant (``registry.collapser_metrics(key)``)."""

    key: str
    #: The key of the command each batch asks.
    batch_command: str
    #: ``Collapser.group`` (free text), or None.
    group: str | None
    #: Wall-clock time of the snapshot (epoch seconds).
    time: float
    #: Requests sent in batches within the rolling window (one ``COLLAPSED`` event each).
    requests_collapsed: int
    #: Batches sent to the batch command within the rolling window.
    batches: int
    #: Asks answered from the request cache within the rolling window, without joining a batch.
    responses_from_cache: int
    #: The mean batch size within the rolling window (0.0 with no batch).
    batch_size_mean: float
    #: Batch-size percentiles within the rolling window (nearest rank, 0.0 with no batch),
    #: keyed "25", "50", "75", "90", "95", "99", "99.5", "100".
    batch_size_percentiles: Mapping[str, float]
    #: Since the collapser was registered (monotonic: for Prometheus counters).
    requests_collapsed_total: int
    batches_total: int
    responses_from_cache_total: int
    batch_sizes: SizeHistogram
    #: The collapser's settings: ``Collapser.window`` (seconds), ``Collapser.max_batch``, and
    #: whether it defines ``cache_key`` (its asks use the request cache in a request scope).
    collapse_window: float
    max_batch: int | None
    cache_enabled: bool
    #: Seconds the rolling counts cover.
    window: float = COLLAPSER_WINDOW


class CollapserStats:
    """A collapser's counts per bucket of a rolling window, and since it started."""

    __slots__ = (
        "_batches",
        "_cached",
        "_clock",
        "_ids",
        "_n",
        "_sizes",
        "_total_batches",
        "_total_cached",
        "_total_requests",
        "_total_sizes",
        "_width",
    )

    def __init__(
        self,
        clock: Clock,
        window: float = COLLAPSER_WINDOW,
        buckets: int = COLLAPSER_BUCKETS,
    ) -> None:
        if not window > 0 or buckets < 1:
            msg = f"a rolling window needs window > 0 and buckets >= 1, got {window!r}, {buckets!r}"
            raise ValueError(msg)
        self._clock = clock
        self._n = buckets
        self._width = window / buckets
        self._ids = [-1] * buckets  # no clock reading gives bucket -1 on a monotonic clock
        self._batches = [0] * buckets
        self._cached = [0] * buckets
        self._sizes: list[dict[int, int]] = [{} for _ in range(buckets)]
        self._total_batches = 0
        self._total_requests = 0
        self._total_cached = 0
        self._total_sizes: dict[int, int] = {}

    def _slot(self) -> int:
        bucket = int(self._clock() // self._width)
        slot = bucket % self._n
        if self._ids[slot] != bucket:
            self._ids[slot] = bucket
            self._batches[slot] = self._cached[slot] = 0
            self._sizes[slot] = {}
        return slot

    def batched(self, size: int) -> None:
        """One batch of ``size`` requests was sent."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            msg = f"a batch size must be an int >= 1, got {size!r}"
            raise ValueError(msg)
        slot = self._slot()
        self._batches[slot] += 1
        sizes = self._sizes[slot]
        sizes[size] = sizes.get(size, 0) + 1
        self._total_batches += 1
        self._total_requests += size
        self._total_sizes[size] = self._total_sizes.get(size, 0) + 1

    def from_cache(self) -> None:
        """One ask was answered from the request cache."""
        self._cached[self._slot()] += 1
        self._total_cached += 1

    def _live(self) -> list[int]:
        newest = int(self._clock() // self._width)
        oldest = newest - self._n + 1
        return [slot for slot, bucket in enumerate(self._ids) if oldest <= bucket <= newest]

    def read(self) -> tuple[int, int, int, float, dict[str, float]]:
        """The rolling window's (requests batched, batches, responses from cache, mean batch
        size, batch-size percentiles)."""
        live = self._live()
        merged: dict[int, int] = {}
        for slot in live:
            for size, n in self._sizes[slot].items():
                merged[size] = merged.get(size, 0) + n
        batches = sum(merged.values())
        requests = sum(size * n for size, n in merged.items())
        cached = sum(self._cached[slot] for slot in live)
        mean = requests / batches if batches else 0.0
        return requests, batches, cached, mean, _percentiles(merged)

    def totals(self) -> tuple[int, int, int, SizeHistogram]:
        """Since the start: (requests batched, batches, responses from cache, batch sizes)."""
        per_bound = [0] * (len(BATCH_SIZE_BOUNDS) + 1)  # the last: above every bound
        for size, n in self._total_sizes.items():
            per_bound[bisect.bisect_left(BATCH_SIZE_BOUNDS, size)] += n
        cumulative = itertools.accumulate(per_bound[:-1])
        buckets = tuple(zip(BATCH_SIZE_BOUNDS, cumulative, strict=True))
        histogram = SizeHistogram(buckets, self._total_batches, self._total_requests)
        return self._total_requests, self._total_batches, self._total_cached, histogram


def _percentiles(counts: Mapping[int, int]) -> dict[str, float]:
    """Nearest-rank percentiles of sizes given as size -> how many batches had it."""
    total = sum(counts.values())
    if total == 0:
        return dict.fromkeys(BATCH_SIZE_PERCENTILES, 0.0)
    ordered = sorted(counts.items())
    running = list(itertools.accumulate(n for _, n in ordered))
    result: dict[str, float] = {}
    for name in BATCH_SIZE_PERCENTILES:
        rank = max(1, math.ceil(float(name) / 100 * total))
        result[name] = float(ordered[bisect.bisect_left(running, rank)][0])
    return result
