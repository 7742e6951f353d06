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
from .snapshot import HISTOGRAM_BOUNDS, PERCENTILES, Histogram, Latency

__all__ = [
    "EXECUTED",
    "LATENCY_BUCKETS",
    "LATENCY_WINDOW",
    "MAX_ACTIVE",
    "MAX_IN_FLIGHT",
    "CommandStats",
    "RollingCounters",
    "RollingLatency",
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


#: Columns of a counters row: one per event type, then three of our own.
_EVENT_COLUMN = {event: i for i, event in enumerate(EventType)}
EXECUTED = len(_EVENT_COLUMN)  # calls that ran on a worker (a sum)
MAX_IN_FLIGHT = EXECUTED + 1  # the most calls admitted at once (a maximum)
MAX_ACTIVE = EXECUTED + 2  # the most calls inside ``run`` at once (a maximum)
_COLUMNS = EXECUTED + 3


class RollingCounters:
    """Per-bucket rows of counters (sums, or maxima for the ``MAX_*`` columns) over a rolling
    window. Every record finds its bucket once; a row is allocated only when a bucket starts."""

    __slots__ = ("_clock", "_ids", "_n", "_rows", "_width")

    def __init__(self, window: float, buckets: int, clock: Clock) -> None:
        if not window > 0 or buckets < 1:
            msg = f"a rolling window needs window > 0 and buckets >= 1, got {window!r}, {buckets!r}"
            raise ValueError(msg)
        self._clock = clock
        self._n = buckets
        self._width = window / buckets
        self._ids = [-1] * buckets
        self._rows = [[0] * _COLUMNS for _ in range(buckets)]

    def _row(self, now: float | None = None) -> list[int]:
        bucket = int((self._clock() if now is None else now) // self._width)
        slot = bucket % self._n
        if self._ids[slot] != bucket:
            self._ids[slot] = bucket
            self._rows[slot] = [0] * _COLUMNS
        return self._rows[slot]

    def events(self, events: Iterable[EventType], now: float | None = None) -> None:
        row = self._row(now)
        for event in events:
            row[_EVENT_COLUMN[event]] += 1

    def add(self, column: int, n: int = 1) -> None:
        self._row()[column] += n

    def peak(self, column: int, value: int) -> None:
        row = self._row()
        row[column] = max(row[column], value)

    def _live(self) -> list[list[int]]:
        newest = int(self._clock() // self._width)
        oldest = newest - self._n + 1
        return [self._rows[s] for s, bucket in enumerate(self._ids) if oldest <= bucket <= newest]

    def count(self, event: EventType) -> int:
        column = _EVENT_COLUMN[event]
        return sum(row[column] for row in self._live())

    def total(self, column: int) -> int:
        return sum(row[column] for row in self._live())

    def maximum(self, column: int) -> int:
        return max((row[column] for row in self._live()), default=0)


class RollingLatency:
    """Latencies over a rolling window, as histogram bin counts per bucket."""

    __slots__ = (
        "_all",
        "_all_count",
        "_all_sum",
        "_bins",
        "_clock",
        "_counts",
        "_ids",
        "_n",
        "_sums",
        "_width",
    )

    def __init__(
        self, clock: Clock, window: float = LATENCY_WINDOW, buckets: int = LATENCY_BUCKETS
    ) -> None:
        self._clock = clock
        self._n = buckets
        self._width = window / buckets
        self._ids = [-1] * buckets
        self._bins: list[dict[int, int]] = [{} for _ in range(buckets)]
        self._counts = [0] * buckets
        self._sums = [0.0] * buckets
        self._all: dict[int, int] = {}  # every latency since the start, by bin
        self._all_count = 0
        self._all_sum = 0.0

    def record(self, seconds: float, now: float | None = None) -> None:
        bucket = int((self._clock() if now is None else now) // self._width)
        slot = bucket % self._n
        bins = self._bins[slot]
        if self._ids[slot] != bucket:
            self._ids[slot] = bucket
            bins.clear()
            self._counts[slot] = 0
            self._sums[slot] = 0.0
        us = int(seconds * 1e6)
        if us < _LINEAR:
            index = max(us, 0)
        else:
            shift = us.bit_length() - 6
            index = _LINEAR + (shift - 1) * _SUB + ((us >> shift) - _SUB)
        bins[index] = bins.get(index, 0) + 1
        self._counts[slot] += 1
        self._sums[slot] += seconds
        every = self._all
        every[index] = every.get(index, 0) + 1
        self._all_count += 1
        self._all_sum += seconds

    def lifetime(self) -> Histogram:
        """Every latency since the start, as cumulative counts per ``HISTOGRAM_BOUNDS``."""
        cumulative = []
        ordered = sorted(self._all.items())
        seen = 0
        position = 0
        for bound in HISTOGRAM_BOUNDS:
            while position < len(ordered) and value_of(ordered[position][0]) <= bound:
                seen += ordered[position][1]
                position += 1
            cumulative.append((bound, seen))
        return Histogram(tuple(cumulative), self._all_count, self._all_sum)

    def snapshot(self) -> Latency:
        newest = int(self._clock() // self._width)
        oldest = newest - self._n + 1
        live = [slot for slot, bucket in enumerate(self._ids) if oldest <= bucket <= newest]
        count = sum(self._counts[slot] for slot in live)
        if count == 0:
            return Latency(0, 0.0, dict.fromkeys(PERCENTILES, 0.0), self.lifetime())
        merged: dict[int, int] = {}
        for slot in live:
            for index, n in self._bins[slot].items():
                merged[index] = merged.get(index, 0) + n
        ordered = sorted(merged.items())
        mean = sum(self._sums[slot] for slot in live) / count
        return Latency(count, mean, _percentiles(ordered, count), self.lifetime())


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
        "_clock",
        "completed",
        "counters",
        "execute",
        "largest_pool",
        "total",
        "totals",
        "transitions",
    )

    def __init__(self, window: float, buckets: int, clock: Clock) -> None:
        self._clock = clock
        #: Every event of every reply, calls run, concurrency maxima, over the rolling window
        #: (not reset when a circuit closes).
        self.counters = RollingCounters(window, buckets, clock)
        #: Every event since the key started (monotonic: Prometheus counters).
        self.totals: dict[EventType, int] = dict.fromkeys(EventType, 0)
        self.execute = RollingLatency(clock)
        self.total = RollingLatency(clock)
        #: Calls run on a worker since the key started; the most workers alive at once.
        self.completed = 0
        self.largest_pool = 0
        #: Circuit transitions since the key started, by the state entered.
        self.transitions: dict[str, int] = {}

    def replied(self, events: tuple[EventType, ...], latency: float, thrown: bool) -> None:
        """One answer was delivered, with its events and the ask's whole latency; ``thrown``:
        it carried an error and no value (EXCEPTION_THROWN, as Hystrix counts it)."""
        if thrown:
            events = (*events, EventType.EXCEPTION_THROWN)
        now = self._clock()  # one reading for both windows: this is every answer's path
        self.counters.events(events, now)
        totals = self.totals
        for event in events:
            totals[event] += 1
        self.total.record(latency, now)

    def ran(self, seconds: float) -> None:
        """``run`` returned after ``seconds``."""
        self.execute.record(seconds)
        self.counters.add(EXECUTED)
        self.completed += 1

    def resized(self, window: float, buckets: int, clock: Clock) -> None:
        """The key's rolling window changed shape: its rolling counters start afresh (the
        lifetime totals and the latency windows are kept)."""
        self.counters = RollingCounters(window, buckets, clock)
