"""Adaptive concurrency limits (issue 13): goodput and p99 of ``AdaptiveLimit`` ("gradient",
"vegas", "aimd") against a sweep of fixed ``max_concurrent_requests``, the default 10 among
them, in front of a dependency whose latency grows with its concurrency beyond a capacity the
client is not told; then how long each algorithm takes to settle after the capacity halves.

The dependency (the queueing model of ``supervision.limit_sim``, in real time): a run that
starts with ``n`` runs in it, itself included, sleeps ``base * max(1, n / capacity)``. It counts
its runs itself, a timed-out one too (a thread's ``run`` goes on after its deadline, holding its
bulkhead slot). Callers form a closed loop: each asks, then asks again after ``THINK`` seconds;
after a rejection it waits ``base`` first (a timed-out ask has waited long enough). Every
variant has a registry of its own, with the breaker forced closed (``force_closed=True``): only
the limit differs.
"""

from __future__ import annotations

import dataclasses
import statistics
import threading
import time
from typing import Any

from actors import AdaptiveLimit, CommandConfig, CommandRegistry, EventType, LimitAlgorithm

from .load_shaping_common import calling, percentile

__all__ = [
    "ALGORITHMS",
    "THINK",
    "TIMEOUT_BASES",
    "Capacity",
    "Convergence",
    "LimitRun",
    "adaptive_name",
    "fixed_name",
    "measure_convergence",
    "measure_limits",
]

ALGORITHMS = ("gradient", "vegas", "aimd")
#: The command's timeout, in multiples of the dependency's ``base`` latency.
TIMEOUT_BASES = 4.0
#: Seconds a caller waits after a successful ask before its next one.
THINK = 0.001
#: Seconds between two readings of ``health(key).limit``.
SAMPLE_EVERY = 0.05
#: The band (a share of the new level) the limit must stay in after the capacity halves.
BAND = 0.2
#: Readings in a row outside the band that count as a probe's dip, not a move (150 ms).
DIP_READINGS = 3
#: The default bulkhead (``CommandConfig().max_concurrent_requests``).
DEFAULT_LIMIT = CommandConfig().max_concurrent_requests


def fixed_name(limit: int) -> str:
    return f"fixed {limit}" + (" (the default)" if limit == DEFAULT_LIMIT else "")


def adaptive_name(algorithm: str) -> str:
    return f'adaptive: `AdaptiveLimit("{algorithm}")`'


@dataclasses.dataclass(frozen=True, slots=True)
class Capacity:
    """One dependency: ``capacity`` runs at full speed, each taking ``base`` seconds; and the
    callers in front of it."""

    capacity: int
    base: float
    callers: int

    @property
    def timeout(self) -> float:
        return TIMEOUT_BASES * self.base

    @property
    def ideal(self) -> float:
        """The most calls a second it can serve: ``capacity / base``."""
        return self.capacity / self.base


class QueueingDependency:
    """``base * max(1, n / capacity)`` seconds per run, ``n`` the runs in it (itself
    included) when it starts; ``capacity`` may change while it runs."""

    def __init__(self, capacity: int, base: float) -> None:
        self.capacity = capacity
        self.base = base
        self._in = 0
        self._lock = threading.Lock()

    def __call__(self, payload: Any) -> Any:
        with self._lock:
            self._in += 1
            seconds = self.base * max(1.0, self._in / self.capacity)
        try:
            time.sleep(seconds)
        finally:
            with self._lock:
                self._in -= 1
        return payload


@dataclasses.dataclass(frozen=True, slots=True)
class LimitRun:
    """One variant over its measured seconds."""

    name: str
    goodput: float
    #: Latencies (seconds, sorted) of the asks answered by ``run`` in the measured seconds.
    latencies: list[float]
    timeouts: int
    rejections: int
    #: ``health(key).limit`` every ``SAMPLE_EVERY`` seconds over the measured seconds.
    limits: list[int]

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 0.5)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99)


@dataclasses.dataclass(frozen=True, slots=True)
class Convergence:
    """One algorithm's limit, read every ``SAMPLE_EVERY`` seconds, before and after the
    capacity halved at ``change`` seconds."""

    name: str
    change: float
    samples: list[tuple[float, int]]
    goodput_before: float
    goodput_after: float

    def _after(self) -> list[tuple[float, int]]:
        return [(t, limit) for t, limit in self.samples if t >= self.change]

    @property
    def before(self) -> float:
        """The median limit over the second half of the time before the change."""
        return statistics.median(
            limit for t, limit in self.samples if self.change / 2 <= t < self.change
        )

    @property
    def level(self) -> float:
        """Its new level: the median limit over the last third of the time after it."""
        after = self._after()
        return statistics.median(limit for _, limit in after[len(after) * 2 // 3 :])

    @property
    def band(self) -> tuple[float, float]:
        return (1 - BAND) * self.level, (1 + BAND) * self.level

    def _outside(self, *, dips: bool) -> list[tuple[float, bool]]:
        """(time, outside the band) of each reading after the change; with ``dips`` False, up
        to ``DIP_READINGS`` readings in a row outside, with readings inside on both sides, count
        as inside (a probe: gradient and vegas halve the limit for a few calls now and then)."""
        after = self._after()
        low, high = self.band
        out = [not low <= limit <= high for _, limit in after]
        if not dips:
            n = 0
            while n < len(out):
                end = n
                while end < len(out) and out[end]:
                    end += 1
                if n < end and n > 0 and end < len(out) and end - n <= DIP_READINGS:
                    out[n:end] = [False] * (end - n)
                n = end + 1 if end == n else end
        return [(t, o) for (t, _), o in zip(after, out, strict=True)]

    def outside_last_third(self, *, dips: bool = True) -> int:
        """Readings outside the band in the last third of the time after the change."""
        readings = self._outside(dips=dips)
        return sum(o for _, o in readings[len(readings) * 2 // 3 :])

    def settled_after(self, *, dips: bool = True) -> float | None:
        """Seconds from the change until the limit stayed in the band to the end; None if it
        left the band in the last third of the time after the change (it did not settle)."""
        if self.outside_last_third(dips=dips):
            return None
        settled = self.change
        for t, outside in self._outside(dips=dips):
            if outside:
                settled = t + SAMPLE_EVERY
        return settled - self.change


@dataclasses.dataclass(slots=True)
class _Tally:
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    #: (answered at, latency) of the asks answered by ``run``.
    answered: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    timeouts: list[float] = dataclasses.field(default_factory=list)
    rejections: list[float] = dataclasses.field(default_factory=list)

    def window(self, start: float, end: float) -> tuple[list[float], int, int]:
        latencies = sorted(lat for t, lat in self.answered if start <= t < end)
        timeouts = sum(1 for t in self.timeouts if start <= t < end)
        rejections = sum(1 for t in self.rejections if start <= t < end)
        return latencies, timeouts, rejections


def _config(capacity: Capacity, limit: int | str) -> CommandConfig:
    common: dict[str, Any] = {"timeout": capacity.timeout, "force_closed": True}
    if isinstance(limit, int):
        return CommandConfig(max_concurrent_requests=limit, **common)
    adaptive = AdaptiveLimit(LimitAlgorithm(limit), min=1, max=200, initial=10)
    return CommandConfig(limit=adaptive, **common)


def _drive(
    capacity: Capacity,
    limit: int | str,
    seconds: float,
    change_at: float | None = None,
) -> tuple[_Tally, list[tuple[float, int]]]:
    """Callers against one key for ``seconds``; the capacity halves at ``change_at``. The
    tally (times from the start) and the limit read every ``SAMPLE_EVERY`` seconds."""
    registry = CommandRegistry()
    dependency = QueueingDependency(capacity.capacity, capacity.base)
    key = f"bench.load-shaping.limit.{limit}"
    tally = _Tally()
    stop = threading.Event()
    try:
        registry.register(calling(key, _config(capacity, limit)), dependency)
        started = time.monotonic()

        def caller() -> None:
            while not stop.is_set():
                asked = time.perf_counter()
                reply = registry.ask_reply(key, None)
                latency = time.perf_counter() - asked
                now = time.monotonic() - started
                if reply.error is None:
                    with tally.lock:
                        tally.answered.append((now, latency))
                    time.sleep(THINK)
                elif EventType.TIMEOUT in reply.events:
                    with tally.lock:
                        tally.timeouts.append(now)
                else:
                    with tally.lock:
                        tally.rejections.append(now)
                    time.sleep(capacity.base)

        threads = [
            threading.Thread(target=caller, name=f"bench-limit-{n}", daemon=True)
            for n in range(capacity.callers)
        ]
        for thread in threads:
            thread.start()
        samples: list[tuple[float, int]] = []
        tick = 0
        while (now := time.monotonic() - started) < seconds:
            if change_at is not None and now >= change_at:
                dependency.capacity = max(1, capacity.capacity // 2)
                change_at = None
            samples.append((now, registry.health(key).limit))
            tick += 1
            time.sleep(max(0.0, tick * SAMPLE_EVERY - (time.monotonic() - started)))
        stop.set()
        for thread in threads:
            thread.join()
        return tally, samples
    finally:
        stop.set()
        registry.shutdown(timeout=10.0)


def measure_limit(
    capacity: Capacity, limit: int | str, *, warmup: float, seconds: float
) -> LimitRun:
    """One variant: ``warmup`` seconds, then ``seconds`` measured."""
    tally, samples = _drive(capacity, limit, warmup + seconds)
    latencies, timeouts, rejections = tally.window(warmup, warmup + seconds)
    return LimitRun(
        name=fixed_name(limit) if isinstance(limit, int) else adaptive_name(limit),
        goodput=len(latencies) / seconds,
        latencies=latencies,
        timeouts=timeouts,
        rejections=rejections,
        limits=[limit for t, limit in samples if t >= warmup],
    )


def measure_limits(
    capacity: Capacity,
    fixed: tuple[int, ...],
    *,
    fixed_warmup: float,
    adaptive_warmup: float,
    seconds: float,
) -> list[LimitRun]:
    """The fixed limits (after a short warm-up), then each algorithm (after a longer one: it
    starts at 10 and must find the capacity first)."""
    runs = [measure_limit(capacity, n, warmup=fixed_warmup, seconds=seconds) for n in fixed]
    runs += [
        measure_limit(capacity, algorithm, warmup=adaptive_warmup, seconds=seconds)
        for algorithm in ALGORITHMS
    ]
    return runs


def measure_convergence(capacity: Capacity, *, before: float, after: float) -> list[Convergence]:
    """Each algorithm for ``before`` seconds, then ``after`` seconds at half the capacity."""
    results = []
    for algorithm in ALGORITHMS:
        tally, samples = _drive(capacity, algorithm, before + after, change_at=before)
        good_before = tally.window(before / 2, before)[0]
        good_after = tally.window(before + after * 2 / 3, before + after)[0]
        results.append(
            Convergence(
                name=adaptive_name(algorithm),
                change=before,
                samples=samples,
                goodput_before=len(good_before) / (before / 2),
                goodput_after=len(good_after) / (after / 3),
            )
        )
    return results
