"""Rolling metrics of one command key: event counts, maxima, latency percentiles.

Pure and clock-injected, like the breaker; the owner serialises access (the key's gate records
under its lock). Recording is cheap and allocates nothing per call once a bucket is in use:
a latency goes into a log-linear histogram bin (about 3 % wide), so a snapshot's percentiles are
read from bin counts, never by sorting samples. Hystrix's windows: counts over ``rolling_window``
in ``rolling_buckets``; latencies over 60 s in 6 buckets.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .clock import Clock
from .events import EventType
from .snapshot import PERCENTILES, Latency
from .window import RollingCounts

__all__ = [
    "LATENCY_BUCKETS",
    "LATENCY_WINDOW",
    "CommandStats",
    "RollingLatency",
    "RollingValue",
    "bin_of",
    "value_of",
]

#: Hystrix's rolling percentile window: 60 s in 6 buckets.
LATENCY_WINDOW = 60.0
LATENCY_BUCKETS = 6

_LINEAR = 64  # microseconds below this are their own bin
_SUB = 32  # bins per doubling above it: about 3 % wide


def bin_of(seconds: float) -> int:
    """The histogram bin of a latency (microsecond resolution)."""
    us = int(seconds * 1e6)
    if us < _LINEAR:
        return max(us, 0)
    shift = us.bit_length() - 6
    return _LINEAR + (shift - 1) * _SUB + ((us >> shift) - _SUB)


def value_of(index: int) -> float:
    """The middle of a bin, in seconds (exact below 64 µs)."""
    if index < _LINEAR:
        return index / 1e6
    shift, sub = divmod(index - _LINEAR, _SUB)
    shift += 1
    low = (sub + _SUB) << shift
    return (low + (1 << shift) / 2) / 1e6


class _Buckets:
    """The ring of bucket ids shared by the rolling classes below."""

    __slots__ = ("_clock", "_ids", "_n", "_width")

    def __init__(self, window: float, buckets: int, clock: Clock) -> None:
        if not window > 0 or buckets < 1:
            msg = f"a rolling window needs window > 0 and buckets >= 1, got {window!r}, {buckets!r}"
            raise ValueError(msg)
        self._clock = clock
        self._n = buckets
        self._width = window / buckets
        self._ids = [-1] * buckets

    def current(self) -> tuple[int, int, bool]:
        """(slot, bucket id, whether the slot held an older bucket that must be cleared)."""
        bucket = int(self._clock() // self._width)
        slot = bucket % self._n
        stale = self._ids[slot] != bucket
        if stale:
            self._ids[slot] = bucket
        return slot, bucket, stale

    def live(self) -> list[int]:
        """The slots whose bucket is within the window."""
        newest = int(self._clock() // self._width)
        oldest = newest - self._n + 1
        return [slot for slot, bucket in enumerate(self._ids) if oldest <= bucket <= newest]


class RollingValue:
    """A sum or a maximum of ints over a rolling window."""

    __slots__ = ("_buckets", "_max", "_values")

    def __init__(self, window: float, buckets: int, clock: Clock, *, maximum: bool) -> None:
        self._buckets = _Buckets(window, buckets, clock)
        self._values = [0] * buckets
        self._max = maximum

    def add(self, value: int) -> None:
        slot, _, stale = self._buckets.current()
        if stale:
            self._values[slot] = value
        elif self._max:
            self._values[slot] = max(self._values[slot], value)
        else:
            self._values[slot] += value

    def value(self) -> int:
        values = [self._values[slot] for slot in self._buckets.live()]
        if not values:
            return 0
        return max(values) if self._max else sum(values)


class RollingLatency:
    """Latencies over a rolling window, as histogram bin counts per bucket."""

    __slots__ = ("_bins", "_buckets", "_counts", "_sums")

    def __init__(
        self, clock: Clock, window: float = LATENCY_WINDOW, buckets: int = LATENCY_BUCKETS
    ) -> None:
        self._buckets = _Buckets(window, buckets, clock)
        self._bins: list[dict[int, int]] = [{} for _ in range(buckets)]
        self._counts = [0] * buckets
        self._sums = [0.0] * buckets

    def record(self, seconds: float) -> None:
        slot, _, stale = self._buckets.current()
        bins = self._bins[slot]
        if stale:
            bins.clear()
            self._counts[slot] = 0
            self._sums[slot] = 0.0
        index = bin_of(seconds)
        bins[index] = bins.get(index, 0) + 1
        self._counts[slot] += 1
        self._sums[slot] += seconds

    def snapshot(self) -> Latency:
        live = self._buckets.live()
        count = sum(self._counts[slot] for slot in live)
        if count == 0:
            return Latency(0, 0.0, dict.fromkeys(PERCENTILES, 0.0))
        merged: dict[int, int] = {}
        for slot in live:
            for index, n in self._bins[slot].items():
                merged[index] = merged.get(index, 0) + n
        ordered = sorted(merged.items())
        mean = sum(self._sums[slot] for slot in live) / count
        return Latency(count, mean, _percentiles(ordered, count))


def _percentiles(ordered: list[tuple[int, int]], count: int) -> dict[str, float]:
    """Nearest-rank percentiles from sorted (bin, count) pairs."""
    result: dict[str, float] = {}
    ranks = [(name, max(1, math.ceil(float(name) / 100 * count))) for name in PERCENTILES]
    seen = 0
    pairs = iter(ordered)
    index, n = next(pairs)
    seen = n
    for name, rank in ranks:
        while seen < rank:
            index, n = next(pairs)
            seen += n
        result[name] = value_of(index)
    return result


class CommandStats:
    """Everything the dashboard shows of one key, apart from the breaker's health counts."""

    __slots__ = (
        "completed",
        "counts",
        "execute",
        "executed",
        "largest_pool",
        "max_active",
        "max_in_flight",
        "total",
        "totals",
        "transitions",
    )

    def __init__(self, window: float, buckets: int, clock: Clock) -> None:
        #: Every event of every reply, over the rolling window (not reset when a circuit closes).
        self.counts = RollingCounts(window, buckets, clock)
        #: The same, since the key started (monotonic: Prometheus counters).
        self.totals: dict[EventType, int] = dict.fromkeys(EventType, 0)
        self.execute = RollingLatency(clock)
        self.total = RollingLatency(clock)
        self.max_in_flight = RollingValue(window, buckets, clock, maximum=True)
        self.max_active = RollingValue(window, buckets, clock, maximum=True)
        self.executed = RollingValue(window, buckets, clock, maximum=False)
        #: Calls run on a worker since the key started; the most workers alive at once.
        self.completed = 0
        self.largest_pool = 0
        #: Circuit transitions since the key started, by the state entered.
        self.transitions: dict[str, int] = {}

    def replied(self, events: Iterable[EventType], latency: float) -> None:
        """One answer was delivered, with its events and the ask's whole latency."""
        counts, totals = self.counts, self.totals
        for event in events:
            counts.add(event)
            totals[event] += 1
        self.total.record(latency)

    def ran(self, seconds: float) -> None:
        """``run`` returned after ``seconds``."""
        self.execute.record(seconds)
        self.executed.add(1)
        self.completed += 1

    def resized(self, window: float, buckets: int, clock: Clock) -> None:
        """The key's rolling window changed shape: counts move to the new shape; the rolling
        maxima start afresh."""
        self.counts = self.counts.resized(window, buckets)
        self.max_in_flight = RollingValue(window, buckets, clock, maximum=True)
        self.max_active = RollingValue(window, buckets, clock, maximum=True)
        self.executed = RollingValue(window, buckets, clock, maximum=False)
