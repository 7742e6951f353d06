"""What one fleet flush costs a node with many keys: one tick of the fleet actor, timed alone.

A registry without a fleet of its own holds ``keys`` used keys. Two fleet actors are built on it
but never started: their ``_tick`` (what the actor runs every ``publish_interval``) is called on
this thread, after every key was asked once more, so every key has new counts to send. One
fleet never sends dashboard snapshots after its first tick (``snapshot_interval`` of days), the
other sends them at every tick (as every key does once per ``snapshot_interval``, 1 s by
default). The Redis round trip (``Store.run``, the pipeline of FLUSH scripts) is timed inside
the tick.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from actors import Command, CommandRegistry
from actors.fleet import RedisFleet
from actors.fleet.actor import FleetActor
from actors.fleet.store import Call, Store
from actors.fleet_host import FleetHost
from actors.log import logger

__all__ = ["FLUSH_ONLY", "WITH_SNAPSHOTS", "FlushCost", "measure_flush"]

FLUSH_ONLY = "one tick: FLUSH scripts, every key with new counts"
WITH_SNAPSHOTS = "one tick with dashboard snapshots (each key's, once per snapshot_interval)"


class _TimedStore(Store):
    """The fleet's store, timing each ``run`` (one pipeline: the Redis round trip)."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.spans: list[float] = []

    def run(self, calls: Sequence[Call]) -> list[Any]:
        started = time.perf_counter()
        try:
            return super().run(calls)
        finally:
            self.spans.append(time.perf_counter() - started)


@dataclass(frozen=True, slots=True)
class FlushCost:
    name: str
    keys: int
    #: Seconds each measured tick took, and its Redis round trip.
    ticks: list[float]
    round_trips: list[float]
    #: Seconds Redis spent running each tick's scripts (``INFO commandstats``).
    server: list[float]
    #: Ticks that could not reach Redis within the fleet's ``timeout``.
    failed: int

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.ticks) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.ticks) * 1000

    @property
    def round_trip_p50_ms(self) -> float:
        return statistics.median(self.round_trips) * 1000

    @property
    def server_p50_ms(self) -> float:
        return statistics.median(self.server) * 1000

    @property
    def per_key_us(self) -> float:
        return self.p50_ms * 1000 / self.keys


def _echo(self: Command, payload: Any) -> Any:
    return payload


def _commands(count: int) -> list[type[Command]]:
    return [
        type(f"FleetKey{n:04d}", (Command,), {"key": f"bench.fleet.key.{n:04d}", "run": _echo})
        for n in range(count)
    ]


def _script_seconds(client: redis.Redis) -> float:
    """Seconds Redis spent in scripts since the last ``CONFIG RESETSTAT``."""
    stats = client.info("commandstats")
    return (
        sum(
            int(stats.get(f"cmdstat_{name}", {}).get("usec", 0))
            for name in ("evalsha", "eval", "evalsha_ro", "eval_ro")
        )
        / 1e6
    )


def measure_flush(url: str, *, keys: int, ticks: int) -> tuple[FlushCost, FlushCost]:
    """``ticks`` ticks of each kind (alternating), after one warm-up tick each."""
    registry = CommandRegistry()
    client = redis.Redis.from_url(url)
    try:
        commands = _commands(keys)
        for command in commands:
            registry.register(command)
        host = FleetHost(
            ports=registry._used_ports,  # what the registry lends its fleet
            timer=registry._watchdog,
            subscribe=lambda listener: None,
        )
        log = logger.bind(component="fleet", node="bench")
        actors: dict[str, tuple[FleetActor, _TimedStore]] = {}
        for name, namespace, interval in (
            (FLUSH_ONLY, "bench-flush", 86_400.0),  # one day: the longest accepted
            (WITH_SNAPSHOTS, "bench-flush-snapshots", 1e-6),
        ):
            fleet = RedisFleet(url, namespace=namespace, node="bench", snapshot_interval=interval)
            store = _TimedStore(url, timeout=fleet.timeout)
            actors[name] = (FleetActor(fleet, host, store, log), store)
        spans: dict[str, list[float]] = {name: [] for name in actors}
        server: dict[str, list[float]] = {name: [] for name in actors}
        failed = dict.fromkeys(actors, 0)
        for n in range(ticks + 1):  # the first tick of each: new seats, the key set, a warm-up
            order = list(actors) if n % 2 == 0 else list(reversed(actors))
            for name in order:
                actor, store = actors[name]
                for command in commands:
                    registry.ask(command.key, n)
                gc.collect()
                client.config_resetstat()
                started = time.perf_counter()
                actor._tick()
                took = time.perf_counter() - started
                if n == 0:
                    store.spans.clear()
                    continue
                spans[name].append(took)
                server[name].append(_script_seconds(client))
                failed[name] += actor.connected is False
        for _, store in actors.values():
            store.close()
        flush_only, with_snapshots = (
            FlushCost(name, keys, spans[name], actors[name][1].spans, server[name], failed[name])
            for name in (FLUSH_ONLY, WITH_SNAPSHOTS)
        )
        return flush_only, with_snapshots
    finally:
        client.close()
        registry.shutdown(timeout=10.0)
