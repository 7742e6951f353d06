"""Many caller threads against a full bulkhead: how long a rejected ask takes, how many are
answered per second, and whether anything piles up while they are.

Each load is a number of caller threads asking in a closed loop (each asks again as soon as it
is answered) for a fixed time. The threads are started once and reused for every run, and they
time their asks with ``time.perf_counter_ns`` into one buffer allocated before the first
measurement, so neither thread stacks nor the samples themselves show in the memory trace.
Within a phase every load runs once, the order rotating from phase to phase so drift on a shared
machine hits every load alike; a load's p50, p99 and p99.9 are taken per run and the reported
figure is the median over phases (its max is the max over phases). After each phase the garbage
is collected and the resident set size read, so what the asks leave behind shows as growth
between the first and the last phase. The garbage collector stays on during the runs, as it
would in a server under overload. Large blocks are mmapped (see ``mmap_large_blocks``) so the
harness's own per-run sorting buffers do not show as growth.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import itertools
import math
import resource
import statistics
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .latency import percentile

__all__ = [
    "Load",
    "Overload",
    "Pressure",
    "measure_overload",
    "mmap_large_blocks",
    "rss_kib",
    "written_bytes",
]

#: More asks per second than any load reaches here (the null call, one caller alone: about
#: 1,000,000/s): the sample buffer is sized from it (16 MB for a 1 s run). Should a run outrun
#: it, the buffer wraps and keeps the latest asks (``Pressure.timed`` then falls short of
#: ``Pressure.asks``).
_MOST_ASKS_PER_SECOND = 2_000_000
#: glibc's ``mallopt`` parameter, and the size from which it mmaps a block (its default).
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 128 * 1024


@dataclass(frozen=True, slots=True)
class Load:
    """``callers`` threads calling ``call(payload)`` for ``seconds`` per run.

    ``outcome(reply)`` names what each answer was (tallied, outside the timed span; a call that
    raises is tallied as "raised <type>"); ``gauge()``, if given, is read every ``interval``
    during each run and once after it (the key's calls in flight).
    """

    name: str
    callers: int
    seconds: float
    call: Callable[[int], Any]
    outcome: Callable[[Any], str]
    gauge: Callable[[], int] | None = None


@dataclass(frozen=True, slots=True)
class Pressure:
    """What one load measured, over every phase."""

    name: str
    callers: int
    asks: int
    seconds: float
    #: Median over phases of each run's percentile, in microseconds; ``max_us`` over all runs.
    p50_us: float
    p99_us: float
    p999_us: float
    max_us: float
    #: How many answers were of each kind.
    outcomes: Mapping[str, int]
    #: Asks whose latency is in the percentiles (all of them unless a buffer wrapped).
    timed: int
    #: The gauge's lowest and highest readings (None without a gauge), and how many.
    gauge_min: int | None
    gauge_max: int | None
    gauge_readings: int
    #: Bytes the process wrote during the runs (``/proc/self/io`` wchar), None if unknown.
    written: int | None

    @property
    def per_second(self) -> float:
        return self.asks / self.seconds if self.seconds > 0 else 0.0

    @property
    def fair_share_us(self) -> float:
        """The mean wait Little's law gives ``callers`` closed-loop callers at this rate."""
        return 1e6 * self.callers / self.per_second if self.asks else math.inf


@dataclass(frozen=True, slots=True)
class Overload:
    pressures: dict[str, Pressure]
    #: Resident set size in KiB after the warm-up, then after each phase.
    rss_kib: tuple[int, ...]
    rss_source: str
    #: Whether ``mmap_large_blocks`` took effect (glibc only).
    large_blocks_mmapped: bool
    phases: int
    seconds: float

    @property
    def rss_growth_kib(self) -> int:
        """From the end of the first phase to the end of the last."""
        return self.rss_kib[-1] - self.rss_kib[1]


def rss_kib() -> tuple[int, str]:
    """The resident set size in KiB, and where it was read."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]), "VmRSS in /proc/self/status"
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak), "peak RSS (getrusage ru_maxrss): a ceiling, not the current size"


def mmap_large_blocks() -> bool:
    """Have glibc mmap every block of 128 KiB or more, and unmap it when freed, from now on.

    By default glibc raises that threshold to the size of the largest mmapped block freed, so
    after the first run each run's samples, copied and sorted (megabytes, freed at once), are
    carved from the heap instead, where a few small objects allocated meanwhile keep its pages
    resident: several MiB of growth from the harness alone, varying from run to run. Pinning
    the threshold at its default keeps that out of the trace; Python's object arenas (mmapped
    by CPython itself) and the small blocks the code under test allocates are unaffected.
    False where there is no ``mallopt`` (not glibc).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))


def written_bytes() -> int | None:
    """Bytes this process has passed to write() so far (/dev/null included), or None."""
    try:
        with open("/proc/self/io", encoding="ascii") as io:
            for line in io:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


@dataclass(frozen=True, slots=True)
class _Run:
    """One run, summed up at once: its samples are not kept (they would show as growth)."""

    asks: int
    seconds: float
    #: How many asks were timed, and their p50, p99, p99.9 and max in ns (zeros if none).
    timed: int
    p50_ns: int
    p99_ns: int
    p999_ns: int
    max_ns: int
    outcomes: dict[str, int]
    gauge: list[int]
    written: int | None


class _Callers:
    """``count`` threads that ask in a closed loop whenever ``run`` tells them to."""

    def __init__(self, count: int, capacity: int) -> None:
        #: Shared by the threads: each ask takes the next index (``next`` on an
        #: ``itertools.count`` is atomic under the GIL), however unevenly the GIL is shared.
        self._buffer = array("q", bytes(8 * capacity))
        self._index: Iterator[int] = itertools.count()
        self._asked = [0] * count
        self._tallies: list[dict[str, int]] = [{} for _ in range(count)]
        self._start = threading.Barrier(count + 1)
        self._done = threading.Barrier(count + 1)
        self._job: tuple[Load, int] | None = None
        self._threads = [
            threading.Thread(
                target=self._loop, args=(slot,), name=f"bench-overload-{slot}", daemon=True
            )
            for slot in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def _loop(self, slot: int) -> None:
        buffer = self._buffer
        capacity = len(buffer)
        clock = time.perf_counter_ns
        try:
            while True:
                self._start.wait()
                job = self._job
                if job is None:
                    return
                load, end = job
                index = self._index
                call = load.call
                outcome = load.outcome
                tally: dict[str, int] = {}
                asked = 0
                while clock() < end:
                    t0 = clock()
                    try:
                        reply = call(slot)
                    except Exception as exc:
                        reply = exc
                    t1 = clock()
                    buffer[next(index) % capacity] = t1 - t0
                    asked += 1
                    label = (
                        f"raised {type(reply).__name__}"
                        if isinstance(reply, Exception)
                        else outcome(reply)
                    )
                    tally[label] = tally.get(label, 0) + 1
                self._asked[slot] = asked
                self._tallies[slot] = tally
                self._done.wait()
        except threading.BrokenBarrierError:
            return

    def run(self, load: Load, seconds: float, interval: float) -> _Run:
        clock = time.perf_counter_ns
        read = load.gauge
        gauge = [] if read is None else [read()]
        written = written_bytes()
        started = clock()
        end = started + int(seconds * 1e9)
        self._job = (load, end)
        self._index = itertools.count()
        self._start.wait(timeout=30.0)
        while (now := clock()) < end:
            time.sleep(min(interval, (end - now) / 1e9))
            if read is not None:
                gauge.append(read())
        try:
            self._done.wait(timeout=seconds + 60.0)
        except threading.BrokenBarrierError:
            msg = f"{load.name}: the callers did not finish within a minute of their end"
            raise RuntimeError(msg) from None
        elapsed = (clock() - started) / 1e9
        if read is not None:
            gauge.append(read())
        after = written_bytes()
        outcomes: dict[str, int] = {}
        for tally in self._tallies:
            for label, count in tally.items():
                outcomes[label] = outcomes.get(label, 0) + count
        asks = sum(self._asked)
        spans = sorted(self._buffer[: min(asks, len(self._buffer))])
        return _Run(
            asks=asks,
            seconds=elapsed,
            timed=len(spans),
            p50_ns=percentile(spans, 0.50) if spans else 0,
            p99_ns=percentile(spans, 0.99) if spans else 0,
            p999_ns=percentile(spans, 0.999) if spans else 0,
            max_ns=spans[-1] if spans else 0,
            outcomes=outcomes,
            gauge=gauge,
            written=None if written is None or after is None else after - written,
        )

    def close(self) -> None:
        self._job = None
        with contextlib.suppress(threading.BrokenBarrierError):
            self._start.wait(timeout=5.0)
        for thread in self._threads:
            thread.join(5.0)


def _pressure(load: Load, runs: Sequence[_Run]) -> Pressure:
    timed = [r for r in runs if r.timed]

    def median_us(ns: Callable[[_Run], int]) -> float:
        return statistics.median(ns(r) for r in timed) / 1000 if timed else 0.0

    outcomes: dict[str, int] = {}
    for r in runs:
        for label, count in r.outcomes.items():
            outcomes[label] = outcomes.get(label, 0) + count
    written = [r.written for r in runs]
    readings = [reading for r in runs for reading in r.gauge]
    return Pressure(
        name=load.name,
        callers=load.callers,
        asks=sum(r.asks for r in runs),
        seconds=sum(r.seconds for r in runs),
        p50_us=median_us(lambda r: r.p50_ns),
        p99_us=median_us(lambda r: r.p99_ns),
        p999_us=median_us(lambda r: r.p999_ns),
        max_us=max((r.max_ns for r in runs), default=0) / 1000,
        outcomes=outcomes,
        timed=sum(r.timed for r in runs),
        gauge_min=min(readings, default=None),
        gauge_max=max(readings, default=None),
        gauge_readings=len(readings),
        written=None if None in written else sum(w for w in written if w is not None),
    )


def measure_overload(
    loads: Sequence[Load], *, phases: int, warmup_seconds: float, interval: float = 0.02
) -> Overload:
    """Run every load once to warm up, then once per phase; read the RSS after each phase."""
    if phases < 2:
        msg = f"phases must be at least 2 (growth is measured between phases), got {phases}"
        raise ValueError(msg)
    started = time.perf_counter()
    mmapped = mmap_large_blocks()
    pools: dict[int, _Callers] = {}
    for callers in sorted({load.callers for load in loads}):
        longest = max(max(lo.seconds, warmup_seconds) for lo in loads if lo.callers == callers)
        capacity = math.ceil(longest * _MOST_ASKS_PER_SECOND)
        pools[callers] = _Callers(callers, capacity)
    try:
        for load in loads:
            pools[load.callers].run(load, warmup_seconds, interval)
        gc.collect()
        rss, source = rss_kib()
        trace = [rss]
        runs: dict[str, list[_Run]] = {load.name: [] for load in loads}
        for phase in range(phases):
            order = [loads[(phase + k) % len(loads)] for k in range(len(loads))]
            for load in order:
                runs[load.name].append(pools[load.callers].run(load, load.seconds, interval))
            gc.collect()
            trace.append(rss_kib()[0])
    finally:
        for pool in pools.values():
            pool.close()
    return Overload(
        pressures={load.name: _pressure(load, runs[load.name]) for load in loads},
        rss_kib=tuple(trace),
        rss_source=source,
        large_blocks_mmapped=mmapped,
        phases=phases,
        seconds=time.perf_counter() - started,
    )
