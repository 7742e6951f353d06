"""Rolling metrics of one command key: event counts, maxima, latency percentiles.

Pure and clock-injected, like the breaker; the owner serialises access (the key's gate records
under its lock). Recording is cheap and allocates nothing per call once a bucket is in use:
a latency goes into a log-linear histogram bin (about 3 % wide), so a snapshot's percentiles are
read from bin counts, never by sorting samples. Hystrix's windows: counts over ``rolling_window``
in ``rolling_buckets``; latencies over 60 s in 6 buckets.
"""

from __future__ import annotations

import bisect
import itertools
import math
import sys
from collections.abc import Iterable, Mapping

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

#: The bucket id of a slot no bucket has used yet (no clock reading gives it). Such slots share
#: one row and one bin dict, never written (a bucket's first record replaces them) and never
#: read: an idle key of thousands keeps no empty rows.
_UNUSED = -(1 << 62)
_NO_ROW: list[int] = [0] * _COLUMNS
_NO_BINS: dict[int, int] = {}


def _until(ids: list[int], newest: int, n: int) -> int:
    """The last newest bucket for which a window read at ``newest`` still holds, if nothing is
    recorded meanwhile: until its oldest live bucket leaves, or a bucket beyond ``newest`` (a
    record given a later ``now``) comes in."""
    until = sys.maxsize
    for bucket in ids:
        if bucket > newest:
            until = min(until, bucket - 1)
        elif bucket >= 0 and bucket > newest - n:  # live: it leaves after bucket + n - 1
            until = min(until, bucket + n - 1)
    return until


#: A read of rolling counters: (first and last newest bucket it holds for, sums, maxima).
_Read = tuple[int, int, list[int], list[int]]


class RollingCounters:
    """Per-bucket rows of counters (sums, or maxima for the ``MAX_*`` columns) over a rolling
    window. Every record finds its bucket once; a row is allocated only when a bucket starts.

    Reads add the live buckets up once and keep the result until the next record, or until
    the oldest bucket they counted leaves the window: reading a key left alone costs nothing.
    """

    __slots__ = ("_clock", "_counts", "_ids", "_n", "_rows", "_seen", "_width")

    def __init__(self, window: float, buckets: int, clock: Clock) -> None:
        if not window > 0 or buckets < 1:
            msg = f"a rolling window needs window > 0 and buckets >= 1, got {window!r}, {buckets!r}"
            raise ValueError(msg)
        self._clock = clock
        self._n = buckets
        self._width = window / buckets
        self._ids = [_UNUSED] * buckets
        self._rows = [_NO_ROW] * buckets
        #: The last read, until a record drops it: (the first and last newest bucket it holds
        #: for, the sums, the maxima).
        self._seen: _Read | None = None
        #: ``counts()`` of the read it was made from (shared while that read holds).
        self._counts: tuple[_Read, Mapping[EventType, int]] | None = None

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
        self._seen = None

    def add(self, column: int, n: int = 1) -> None:
        self._row()[column] += n
        self._seen = None

    def peak(self, column: int, value: int) -> None:
        row = self._row()
        if value > row[column]:
            row[column] = value
            self._seen = None

    def _read(self) -> _Read:
        """The live buckets' sums and maxima, column by column (kept while they hold)."""
        newest = int(self._clock() // self._width)
        seen = self._seen
        if seen is not None and seen[0] <= newest <= seen[1]:
            return seen
        oldest = max(newest - self._n + 1, 0)  # never a slot still _UNUSED
        live = [s for s, bucket in enumerate(self._ids) if oldest <= bucket <= newest]
        if live:
            columns = list(zip(*(self._rows[s] for s in live), strict=True))
            sums, maxima = [sum(c) for c in columns], [max(c) for c in columns]
        else:
            sums, maxima = [0] * _COLUMNS, [0] * _COLUMNS
        seen = self._seen = (newest, _until(self._ids, newest, self._n), sums, maxima)
        return seen

    def count(self, event: EventType) -> int:
        return self._read()[2][_EVENT_COLUMN[event]]

    def counts(self) -> Mapping[EventType, int]:
        """Every event type's count (zeros included), in ``EventType``'s order: ``count`` of
        each, read at once. The same dict while the read holds (read only: a stream tick then
        compares it by identity, and makes no garbage for an idle key)."""
        seen = self._read()
        made = self._counts
        if made is not None and made[0] is seen:
            return made[1]
        counts = dict(zip(_EVENT_COLUMN, seen[2][:EXECUTED], strict=True))
        self._counts = (seen, counts)
        return counts

    def total(self, column: int) -> int:
        return self._read()[2][column]

    def maximum(self, column: int) -> int:
        return self._read()[3][column]


class RollingLatency:
    """Latencies over a rolling window, as histogram bin counts per bucket.

    A snapshot is kept until the next latency is recorded or the oldest bucket it counted
    leaves the window: the percentiles of a key left alone are not computed again."""

    __slots__ = (
        "_all",
        "_all_count",
        "_all_sum",
        "_bins",
        "_clock",
        "_counts",
        "_ids",
        "_n",
        "_ranked",
        "_seen",
        "_sums",
        "_width",
    )

    def __init__(
        self, clock: Clock, window: float = LATENCY_WINDOW, buckets: int = LATENCY_BUCKETS
    ) -> None:
        self._clock = clock
        self._n = buckets
        self._width = window / buckets
        self._ids = [_UNUSED] * buckets
        self._bins: list[dict[int, int]] = [_NO_BINS] * buckets
        self._counts = [0] * buckets
        self._sums = [0.0] * buckets
        self._all: dict[int, int] = {}  # every latency since the start, by bin
        self._all_count = 0
        self._all_sum = 0.0
        #: The last snapshot: (latencies recorded then, first and last newest bucket it holds
        #: for, the snapshot).
        self._seen: tuple[int, int, int, Latency] | None = None
        #: The last ranking for ``percentile``: (latencies recorded then, the newest bucket,
        #: the bins in order, their running counts).
        self._ranked: tuple[int, int, list[int], list[int]] | None = None

    def record(self, seconds: float, now: float | None = None) -> None:
        bucket = int((self._clock() if now is None else now) // self._width)
        slot = bucket % self._n
        bins = self._bins[slot]
        if self._ids[slot] != bucket:
            self._ids[slot] = bucket
            bins = self._bins[slot] = {}
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

    def _live(self, newest: int) -> list[int]:
        """The slots of the buckets in the window when ``newest`` is the current bucket."""
        oldest = max(newest - self._n + 1, 0)  # never a slot still _UNUSED
        return [slot for slot, bucket in enumerate(self._ids) if oldest <= bucket <= newest]

    def count(self) -> int:
        """Latencies the window holds now."""
        live = self._live(int(self._clock() // self._width))
        return sum(self._counts[slot] for slot in live)

    def percentile(self, p: float) -> float | None:
        """The ``p``th percentile (0 < p <= 100) of the window's latencies, nearest rank, as
        ``snapshot`` reads its fixed ones (a bin's middle); None if the window holds none.

        Cheap enough to ask on every call: it reads a ranking of the window's bins kept until
        the window moves to its next bucket, or until more than 1/64 as many latencies as it
        ranked have been recorded since (a busy key ranks its window about once a bucket, not
        once a latency). Until then the newest latencies, at most that many, are left out."""
        if not 0 < p <= 100:
            msg = f"p must be a number > 0 and <= 100, got {p!r}"
            raise ValueError(msg)
        newest = int(self._clock() // self._width)
        ranked = self._ranked
        if (
            ranked is None
            or ranked[1] != newest
            or (self._all_count - ranked[0]) * _STALE > (ranked[3][-1] if ranked[3] else 0)
        ):
            merged: dict[int, int] = {}
            for slot in self._live(newest):
                for index, n in self._bins[slot].items():
                    merged[index] = merged.get(index, 0) + n
            ordered = sorted(merged.items())
            indexes = [index for index, _ in ordered]
            running = list(itertools.accumulate(n for _, n in ordered))
            ranked = self._ranked = (self._all_count, newest, indexes, running)
        indexes, running = ranked[2], ranked[3]
        if not running:
            return None
        rank = max(1, math.ceil(p / 100 * running[-1]))
        return value_of(indexes[bisect.bisect_left(running, rank)])

    def lifetime(self) -> Histogram:
        """Every latency since the start, as cumulative counts per ``HISTOGRAM_BOUNDS``."""
        per_bound = [0] * (len(HISTOGRAM_BOUNDS) + 1)  # the last: above every bound
        for index, n in self._all.items():
            position = _BOUND_OF_BIN.get(index)
            if position is None:
                # the first bound at or above the bin's value
                position = _BOUND_OF_BIN[index] = bisect.bisect_left(
                    HISTOGRAM_BOUNDS, value_of(index)
                )
            per_bound[position] += n
        buckets = tuple(
            _PAIRS[position][n] if n < _SHARED_COUNTS else (bound, n)
            for position, (bound, n) in enumerate(
                zip(HISTOGRAM_BOUNDS, itertools.accumulate(per_bound[:-1]), strict=True)
            )
        )
        return Histogram(buckets, self._all_count, self._all_sum)

    def snapshot(self) -> Latency:
        newest = int(self._clock() // self._width)
        seen = self._seen
        if seen is not None and seen[0] == self._all_count and seen[1] <= newest <= seen[2]:
            return seen[3]
        oldest = max(newest - self._n + 1, 0)  # never a slot still _UNUSED
        live = [slot for slot, bucket in enumerate(self._ids) if oldest <= bucket <= newest]
        count = sum(self._counts[slot] for slot in live)
        if count == 0:
            latency = Latency(0, 0.0, _NO_LATENCIES, self.lifetime())
        else:
            merged: dict[int, int] = {}
            for slot in live:
                for index, n in self._bins[slot].items():
                    merged[index] = merged.get(index, 0) + n
            ordered = sorted(merged.items())
            mean = sum(self._sums[slot] for slot in live) / count
            latency = Latency(count, mean, _percentiles(ordered, count), self.lifetime())
        self._seen = (self._all_count, newest, _until(self._ids, newest, self._n), latency)
        return latency


#: ``RollingLatency.percentile`` ranks its window again once more than 1/_STALE as many
#: latencies as it ranked have been recorded since.
_STALE = 64
#: The percentiles of an empty window, shared by every snapshot of one (read only, as every
#: snapshot's mapping is).
_NO_LATENCIES: dict[str, float] = dict.fromkeys(PERCENTILES, 0.0)
#: (bound, count) pairs of the lifetime histograms for counts below ``_SHARED_COUNTS``, made
#: once and shared by every key's histogram (most keys count little in most buckets).
_SHARED_COUNTS = 256
_PAIRS = [[(bound, n) for n in range(_SHARED_COUNTS)] for bound in HISTOGRAM_BOUNDS]
#: Each percentile's name and share (``"99.5"``: 0.995).
_SHARES = [(name, float(name) / 100) for name in PERCENTILES]
#: Bin -> the position in ``HISTOGRAM_BOUNDS`` of the first bound at or above its value (filled
#: as bins are met: about 1,200 bins cover a microsecond to a day).
_BOUND_OF_BIN: dict[int, int] = {}


def _percentiles(ordered: list[tuple[int, int]], count: int) -> dict[str, float]:
    """Nearest-rank percentiles from sorted (bin, count) pairs."""
    result: dict[str, float] = {}
    ranks = [(name, max(1, math.ceil(share * count))) for name, share in _SHARES]
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
        "_shown",
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
        #: Circuit transitions since the key started, by the state entered (``entered``).
        self.transitions: dict[str, int] = {}
        #: Copies of ``totals`` and ``transitions`` for snapshots, until either changes.
        self._shown: tuple[Mapping[EventType, int], Mapping[str, int]] | None = None

    def entered(self, state: str) -> None:
        """The circuit entered ``state``."""
        transitions = self.transitions
        transitions[state] = transitions.get(state, 0) + 1
        self._shown = None

    def shown(self) -> tuple[Mapping[EventType, int], Mapping[str, int]]:
        """Copies of ``totals`` and ``transitions`` for a snapshot: the same ones until either
        changes (read only)."""
        shown = self._shown
        if shown is None:
            # plain dicts (a snapshot pickles, copies and ``dataclasses.asdict``s as before),
            # typed read only
            shown = self._shown = (dict(self.totals), dict(self.transitions))
        return shown

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
        self._shown = None
        self.total.record(latency, now)

    def collapsed(self, requests: int) -> None:
        """A batch of ``requests`` collapsed requests was asked of this key (COLLAPSED, once
        per request, as Hystrix counts it on the batch command)."""
        self.counters.add(_EVENT_COLUMN[EventType.COLLAPSED], requests)
        self.totals[EventType.COLLAPSED] += requests
        self._shown = None

    def rejected(self) -> None:
        """A shared pool turned a call away (its own count of THREAD_POOL_REJECTED: a key's
        count comes from its replies)."""
        self.counters.add(_EVENT_COLUMN[EventType.THREAD_POOL_REJECTED])

    def ran(self, seconds: float) -> None:
        """``run`` returned after ``seconds``."""
        self.execute.record(seconds)
        self.counters.add(EXECUTED)
        self.completed += 1

    def resized(self, window: float, buckets: int, clock: Clock) -> None:
        """The key's rolling window changed shape: its rolling counters start afresh (the
        lifetime totals and the latency windows are kept)."""
        self.counters = RollingCounters(window, buckets, clock)
