"""One run of the fleet benchmarks: start a redis-server, measure all four, stop it, render."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import redis

from .fleet_calls import measure_commands, measure_overhead
from .fleet_flush import measure_flush
from .fleet_plan import FleetPlan
from .fleet_propagation import measure_propagation
from .fleet_report import FleetFigures, fleet_section
from .fleet_server import RedisServer

__all__ = ["measure_fleet"]


@contextlib.contextmanager
def _quiet_library() -> Iterator[None]:
    """The library's events (structlog unconfigured routes them to ``logging``) go nowhere."""
    log = logging.getLogger("actors")
    sink = logging.NullHandler()
    log.addHandler(sink)
    propagate, log.propagate = log.propagate, False
    try:
        yield
    finally:
        log.removeHandler(sink)
        log.propagate = propagate


def measure_fleet(program: str, plan: FleetPlan) -> list[str]:
    """Everything against one ``redis-server`` (``program``); the section's body."""
    started = time.perf_counter()
    with RedisServer(program) as server, _quiet_library():
        client = redis.Redis.from_url(server.url)
        try:
            version = f"Redis {client.info('server')['redis_version']}"
        finally:
            client.close()
        latencies = measure_overhead(
            server.url,
            rounds=plan.rounds,
            samples=plan.samples,
            chunk=plan.chunk,
            warmup=plan.warmup,
        )
        ours, theirs = measure_commands(server.url, rate=plan.rate, seconds=plan.paced_seconds)
        propagation = measure_propagation(
            server.url,
            rate=plan.node_rate,
            repetitions=plan.repetitions,
            independent_repetitions=plan.independent_repetitions,
            dead_seconds=plan.dead_seconds,
        )
        flush = measure_flush(server.url, keys=plan.flush_keys, ticks=plan.flush_ticks)
    figures = FleetFigures(
        redis_version=version,
        plan=plan.describe(),
        latencies=latencies,
        ours=ours,
        theirs=theirs,
        propagation=propagation,
        flush=flush,
        seconds=time.perf_counter() - started,
    )
    return fleet_section(figures)
