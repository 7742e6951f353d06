"""A simulated dependency for adaptive limits: latency that grows past a capacity, in fake time.

The model (closed loop, as a bulkhead in front of a saturated dependency sees it): ``callers``
callers each call, wait for the answer and call again at once; a rejected caller tries again
``retry_after`` seconds later. A call admitted when ``n`` calls are in flight (itself included)
takes ``latency * max(1, n / capacity)`` seconds (times a random factor when ``jitter`` is set):
up to ``capacity`` calls run at full speed, past it they share the dependency's throughput
(``capacity / latency`` calls a second, the most it can give), so more concurrency buys only
latency. The best fixed limit is therefore the capacity itself; a limiter should find it without
being told. A call slower than ``timeout`` is answered at the deadline (a drop: it counts for the
limiter, not for goodput) while the dependency goes on working on it, holding its slot.

Events run in order on a ``FakeClock``: no threads, no sleeps, and the same seed gives the same
run. Pure: :func:`simulate` drives one :class:`~supervision.limit.Limiter` (or a fixed limit).
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import itertools
import math
import random
from collections.abc import Sequence

from .checks import check_int, check_number, check_seconds, show
from .clock import FakeClock
from .limit import Limiter

__all__ = ["Phase", "SimulatedDependency", "SimulationResult", "simulate"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SimulatedDependency:
    """A dependency that serves ``capacity`` calls at full speed; more only wait longer."""

    #: Calls it can serve at once at full speed (unknown to the client).
    capacity: int
    #: Seconds one call takes at or below capacity.
    latency: float = 0.010
    #: Spread of each call's latency: a factor drawn uniformly from [1 - jitter, 1 + jitter].
    jitter: float = 0.0

    def __post_init__(self) -> None:
        check_int("capacity", self.capacity, 1, 100_000)
        check_seconds("latency", self.latency)
        check_number("jitter", self.jitter, allow_low=True, high=0.99)

    def call_latency(self, inflight: int, rng: random.Random) -> float:
        """Seconds a call admitted with ``inflight`` calls in flight (itself included) takes."""
        seconds = self.latency * max(1.0, inflight / self.capacity)
        if self.jitter:
            seconds *= rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        return seconds


@dataclasses.dataclass(frozen=True, slots=True)
class Phase:
    """``seconds`` of simulated time against ``dependency`` (a schedule is a list of phases)."""

    seconds: float
    dependency: SimulatedDependency

    def __post_init__(self) -> None:
        check_seconds("seconds", self.seconds)
        if not isinstance(self.dependency, SimulatedDependency):
            msg = f"dependency must be a SimulatedDependency, got {show(self.dependency)}"
            raise ValueError(msg)


@dataclasses.dataclass(frozen=True, slots=True)
class SimulationResult:
    """What a run measured; every figure can be read for a window of simulated time.

    Times are seconds from the start of the run. ``calls`` holds one ``(started, latency, ok)``
    per admitted call, in the order they were answered (``ok`` False: it timed out);
    ``limits`` the limit after each change, as ``(time, limit)`` from ``(0.0, first limit)``;
    ``rejected`` counts rejected attempts (a caller rejected three times counts three).
    """

    seconds: float
    calls: tuple[tuple[float, float, bool], ...]
    limits: tuple[tuple[float, int], ...]
    rejected: int

    def goodput(self, start: float = 0.0, end: float | None = None) -> float:
        """Calls answered in time per second, among those started within [start, end)."""
        end = self.seconds if end is None else end
        good = sum(1 for t, _, ok in self.calls if ok and start <= t < end)
        return good / (end - start)

    def p99(self, start: float = 0.0, end: float | None = None) -> float:
        """The 99th percentile latency (nearest rank) of admitted calls started within
        [start, end); a call that timed out counts at its timeout. NaN if there were none."""
        end = self.seconds if end is None else end
        latencies = sorted(lat for t, lat, _ in self.calls if start <= t < end)
        if not latencies:
            return math.nan
        return latencies[max(0, math.ceil(0.99 * len(latencies)) - 1)]

    def timeouts(self, start: float = 0.0, end: float | None = None) -> int:
        """Admitted calls started within [start, end) that timed out."""
        end = self.seconds if end is None else end
        return sum(1 for t, _, ok in self.calls if not ok and start <= t < end)

    def limit_at(self, time: float) -> int:
        """The limit in force at ``time``."""
        index = bisect.bisect_right(self.limits, (time, math.inf)) - 1
        return self.limits[max(0, index)][1]

    def mean_limit(self, start: float = 0.0, end: float | None = None) -> float:
        """The time-weighted mean limit over [start, end)."""
        end = self.seconds if end is None else end
        total, now, current = 0.0, start, self.limit_at(start)
        for t, limit in self.limits:
            if t <= start:
                continue
            if t >= end:
                break
            total += current * (t - now)
            now, current = t, limit
        total += current * (end - now)
        return total / (end - start)

    def limit_range(self, start: float = 0.0, end: float | None = None) -> tuple[int, int]:
        """The lowest and highest limit in force at some time within [start, end)."""
        end = self.seconds if end is None else end
        seen = [self.limit_at(start)] + [lim for t, lim in self.limits if start < t < end]
        return min(seen), max(seen)

    def settled_at(self, low: float, high: float, start: float = 0.0) -> float | None:
        """The first time from ``start`` after which the limit stays within [low, high] to the
        end of the run (``start`` itself if it never leaves); None if it is outside at the end."""
        settled: float | None = start if low <= self.limit_at(start) <= high else None
        for t, limit in self.limits:
            if t <= start:
                continue
            inside = low <= limit <= high
            if not inside:
                settled = None
            elif settled is None:
                settled = t
        return settled


# Event kinds, in the order they run when they fall on the same instant.
_DONE, _TIMEOUT, _CALL = 0, 1, 2

#: One event: (time, kind, sequence, caller, admitted at, latency, inflight at admission).
_Event = tuple[float, int, int, int, float, float, int]


def simulate(
    limit: Limiter | int,
    phases: Sequence[Phase],
    *,
    callers: int = 100,
    timeout: float | None = None,
    retry_after: float | None = None,
    seed: int = 0,
    clock: FakeClock | None = None,
) -> SimulationResult:
    """Run ``callers`` closed-loop callers through ``limit`` (a limiter, fed one sample per
    answered call, or a fixed limit) against each phase's dependency in turn.

    ``timeout``: seconds after which a call is answered as a drop (None: never).
    ``retry_after``: seconds a rejected caller waits (None: the current phase's latency).
    ``clock``: advanced to each event's time (default: a new ``FakeClock`` at 0).
    A limiter's samples get ``inflight`` as the calls in flight when the call was admitted,
    itself included; a timed-out call is sampled at its deadline, with ``rtt=timeout``.
    """
    check_int("callers", callers, 1, 100_000)
    if timeout is not None:
        check_seconds("timeout", timeout)
    if retry_after is not None:
        check_seconds("retry_after", retry_after)
    if not phases or not all(isinstance(p, Phase) for p in phases):
        msg = f"phases must be a non-empty sequence of Phase, got {show(phases)}"
        raise ValueError(msg)
    if not isinstance(limit, Limiter):
        check_int("limit", limit, 1, 100_000)
    run = _Run(limit, phases, timeout, retry_after, random.Random(seed))
    return run.run(callers, FakeClock(0.0) if clock is None else clock)


class _Run:
    """One simulation's state; ``run`` plays its events in order."""

    def __init__(
        self,
        limit: Limiter | int,
        phases: Sequence[Phase],
        timeout: float | None,
        retry_after: float | None,
        rng: random.Random,
    ) -> None:
        self.limiter = limit if isinstance(limit, Limiter) else None
        self.fixed = limit if isinstance(limit, int) else 0
        self.phases = phases
        self.ends = list(itertools.accumulate(p.seconds for p in phases))
        self.timeout = timeout
        self.retry_after = retry_after
        self.rng = rng
        self.events: list[_Event] = []
        self.seq = 0
        self.inflight = 0
        self.rejected = 0
        self.calls: list[tuple[float, float, bool]] = []
        self.limits: list[tuple[float, int]] = [(0.0, self.limit())]

    def limit(self) -> int:
        return self.fixed if self.limiter is None else self.limiter.limit

    def push(self, at: float, kind: int, caller: int, call: tuple[float, float, int]) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, kind, self.seq, caller, *call))

    def sample(self, now: float, rtt: float, inflight: int, dropped: bool) -> None:
        if self.limiter is not None:
            before = self.limiter.limit
            if self.limiter.sample(rtt, inflight, dropped) != before:
                self.limits.append((now, self.limiter.limit))

    def run(self, callers: int, clock: FakeClock) -> SimulationResult:
        origin, total, phase = clock(), self.ends[-1], 0
        for caller in range(callers):
            self.push(0.0, _CALL, caller, (0.0, 0.0, 0))
        while self.events:
            now, kind, _, caller, started, latency, inflight = heapq.heappop(self.events)
            if now >= total:
                break
            clock.advance(max(0.0, origin + now - clock()))
            while now >= self.ends[phase]:
                phase += 1
            if kind == _CALL:
                self.call(now, caller, self.phases[phase].dependency)
            elif kind == _TIMEOUT:
                assert self.timeout is not None
                self.calls.append((started, self.timeout, False))
                self.sample(now, self.timeout, inflight, True)
                self.push(now, _CALL, caller, (0.0, 0.0, 0))
            else:  # _DONE: the dependency has finished with the call; its slot is free
                self.inflight -= 1
                if self.timeout is None or latency <= self.timeout:
                    self.calls.append((started, latency, True))
                    self.sample(now, latency, inflight, False)
                    self.push(now, _CALL, caller, (0.0, 0.0, 0))
        clock.advance(max(0.0, origin + total - clock()))
        return SimulationResult(total, tuple(self.calls), tuple(self.limits), self.rejected)

    def call(self, now: float, caller: int, dependency: SimulatedDependency) -> None:
        if self.inflight >= self.limit():
            self.rejected += 1
            wait = dependency.latency if self.retry_after is None else self.retry_after
            self.push(now + wait, _CALL, caller, (0.0, 0.0, 0))
            return
        self.inflight += 1
        latency = dependency.call_latency(self.inflight, self.rng)
        call = (now, latency, self.inflight)
        self.push(now + latency, _DONE, caller, call)
        if self.timeout is not None and latency > self.timeout:
            self.push(now + self.timeout, _TIMEOUT, caller, call)
