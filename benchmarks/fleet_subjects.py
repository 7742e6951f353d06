"""What the fleet benchmarks call: an echo key, a fleet whose Redis traffic is counted on the
client, pybreaker on ``CircuitRedisStorage``, and a caller paced at a steady rate."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pybreaker
import redis

from actors import Command
from actors.fleet import RedisFleet
from actors.fleet.store import Call, Store

__all__ = [
    "CountingFleet",
    "CountingStore",
    "FleetEchoCommand",
    "Paced",
    "identity",
    "pace",
    "pybreaker_on_redis",
]


def identity(value: object) -> object:
    return value


class FleetEchoCommand(Command):
    """The success path: ``run`` returns its payload (default config: the fleet is shared)."""

    key = "bench.fleet.echo"

    def run(self, payload: Any) -> Any:
        return payload


class CountingStore(Store):
    """The fleet's Redis client, counting what it sends: pipelines (round trips), scripts run
    (EVALSHA) and plain commands (``write``, ``command``)."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.round_trips = 0
        self.scripts = 0
        self.plain = 0

    def run(self, calls: Sequence[Call]) -> list[Any]:
        if calls:
            self.round_trips += 1
            self.scripts += len(calls)
        return super().run(calls)

    def write(self, commands: Sequence[tuple[Any, ...]]) -> None:
        if commands:
            self.round_trips += 1
            self.plain += len(commands)
        super().write(commands)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        self.round_trips += 1
        self.plain += 1
        return super().command(*args, **kwargs)


class CountingFleet(RedisFleet):
    """A ``RedisFleet`` whose stores are ``CountingStore``s (``stores``: every one it made)."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.stores: list[CountingStore] = []

    def new_store(self) -> Store:
        store = CountingStore(self.url, timeout=self.timeout)
        self.stores.append(store)
        return store

    def sent(self) -> tuple[int, int, int]:
        """(round trips, scripts, plain commands) sent so far by every store of the fleet."""
        stores = self.stores
        return (
            sum(s.round_trips for s in stores),
            sum(s.scripts for s in stores),
            sum(s.plain for s in stores),
        )


def pybreaker_on_redis(client: redis.Redis, namespace: str) -> Callable[[int], object]:
    """``breaker.call(identity, i)`` with the breaker's state in Redis (``CircuitRedisStorage``):
    what a Python user shares a circuit across processes with today."""
    storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client, namespace=namespace)
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=5.0, state_storage=storage)

    def call(i: int) -> object:
        return breaker.call(identity, i)

    return call


@dataclass(frozen=True, slots=True)
class Paced:
    """What a paced caller did: calls made, seconds taken, each call's latency (ns, sorted)."""

    calls: int
    seconds: float
    latencies_ns: list[int]

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else 0.0


def pace(call: Callable[[int], object], *, rate: float, seconds: float) -> Paced:
    """Call ``call(i)`` ``rate`` times a second for ``seconds`` from this thread (sleeping
    between calls; a caller that fell behind catches up, so the mean rate holds)."""
    clock, ns = time.perf_counter, time.perf_counter_ns
    period = 1.0 / rate
    spans: list[int] = []
    started = clock()
    end = started + seconds
    n = 0
    while True:
        now = clock()
        if now >= end:
            break
        due = started + n * period
        if due > now:
            time.sleep(due - now)
        t0 = ns()
        call(n)
        spans.append(ns() - t0)
        n += 1
    elapsed = clock() - started
    spans.sort()
    return Paced(n, elapsed, spans)
