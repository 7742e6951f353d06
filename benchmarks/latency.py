"""Round-trip latency of one call, for several paths measured side by side.

Each round runs every case in small interleaved chunks (so drift on a shared machine hits
every case alike), with the garbage collector off; a case's p50 and p99 are taken per round,
and the reported figure is the median over rounds.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Case",
    "Latency",
    "measure_latencies",
    "percentile",
    "pinned_to_one_cpu",
    "timer_overhead_ns",
]


@dataclass(frozen=True, slots=True)
class Case:
    """One path to time: ``call(i)`` must return ``expected(i)``."""

    name: str
    call: Callable[[int], Any]
    expected: Callable[[int], Any]


@dataclass(frozen=True, slots=True)
class Latency:
    name: str
    #: Median over rounds of each round's p50 / p99, in microseconds.
    p50_us: float
    p99_us: float
    rounds: int
    samples_per_round: int


def percentile(sorted_ns: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of already sorted samples (``q`` in 0..1)."""
    rank = max(1, math.ceil(q * len(sorted_ns)))
    return sorted_ns[rank - 1]


def _run_chunk(case: Case, start: int, count: int, out: list[int]) -> None:
    clock = time.perf_counter_ns
    call = case.call
    expected = case.expected
    append = out.append
    for i in range(start, start + count):
        t0 = clock()
        value = call(i)
        t1 = clock()
        append(t1 - t0)
        if value != expected(i):
            msg = f"{case.name}: call({i}) returned {value!r}, expected {expected(i)!r}"
            raise RuntimeError(msg)


@contextlib.contextmanager
def pinned_to_one_cpu() -> Iterator[int | None]:
    """Run every thread of this process (and those started meanwhile) on one CPU; yield it
    (None where affinity cannot be set). On one CPU a hand-off between two threads is a context
    switch; across CPUs it is a wake-up of the other core, whose cost swings several-fold with
    how deeply that core sleeps, so which core the scheduler picked would decide the ratios."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    tasks = [int(tid) for tid in os.listdir("/proc/self/task")]
    before = {tid: os.sched_getaffinity(tid) for tid in tasks}
    cpu = min(os.sched_getaffinity(0))
    for tid in tasks:
        with contextlib.suppress(OSError):  # a thread that ended since
            os.sched_setaffinity(tid, {cpu})
    try:
        yield cpu
    finally:
        for tid in (int(t) for t in os.listdir("/proc/self/task")):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, before.get(tid, before[os.getpid()]))


def timer_overhead_ns(samples: int = 20_000) -> int:
    """The median cost of the timing itself (two ``perf_counter_ns`` calls)."""
    clock = time.perf_counter_ns
    spans = []
    for _ in range(samples):
        t0 = clock()
        t1 = clock()
        spans.append(t1 - t0)
    return int(statistics.median(spans))


def measure_latencies(
    cases: Sequence[Case], *, rounds: int, samples: int, chunk: int, warmup: int
) -> dict[str, Latency]:
    """Time every case ``samples`` times per round, in chunks of ``chunk``, over ``rounds``."""
    for case in cases:
        _run_chunk(case, 0, warmup, [])
    p50s: dict[str, list[float]] = {case.name: [] for case in cases}
    p99s: dict[str, list[float]] = {case.name: [] for case in cases}
    chunks = max(1, samples // chunk)
    for round_no in range(rounds):
        order = [cases[(round_no + k) % len(cases)] for k in range(len(cases))]
        taken: dict[str, list[int]] = {case.name: [] for case in cases}
        gc.collect()
        gc.disable()
        try:
            for chunk_no in range(chunks):
                for case in order:
                    _run_chunk(case, chunk_no * chunk, chunk, taken[case.name])
        finally:
            gc.enable()
        for name, spans in taken.items():
            spans.sort()
            p50s[name].append(percentile(spans, 0.50) / 1000)
            p99s[name].append(percentile(spans, 0.99) / 1000)
    return {
        case.name: Latency(
            name=case.name,
            p50_us=statistics.median(p50s[case.name]),
            p99_us=statistics.median(p99s[case.name]),
            rounds=rounds,
            samples_per_round=chunks * chunk,
        )
        for case in cases
    }
