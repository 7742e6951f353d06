"""The fleet on a call's path: what one successful ask costs with the fleet on and off, and the
Redis commands per call of ours against pybreaker's ``CircuitRedisStorage``.

Latency: four cases interleaved in one process (``latency.measure_latencies``): an ask of a
registry without a fleet, the same ask of a registry with one (its ticks run meanwhile), the
same ask of a second registry without a fleet (A/A: the noise floor), and pybreaker's
``breaker.call`` with its state in Redis. Commands: each subject alone on the
server, called at a steady rate; ``CONFIG RESETSTAT`` before, ``INFO commandstats`` after.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import redis

from actors import CommandRegistry
from actors.fleet import RedisFleet

from .fleet_subjects import CountingFleet, FleetEchoCommand, identity, pace, pybreaker_on_redis
from .latency import Case, Latency, measure_latencies, percentile

__all__ = [
    "FLEET_OFF",
    "FLEET_OFF_AGAIN",
    "FLEET_ON",
    "PYBREAKER_REDIS",
    "REGISTRIES",
    "Commands",
    "measure_commands",
    "measure_overhead",
]

FLEET_OFF = "ours: `registry.ask`, success, no fleet"
#: The same path as FLEET_OFF on other registries: how far two identical paths drift apart.
FLEET_OFF_AGAIN = "ours: `registry.ask`, success, no fleet, other registries (A/A)"
FLEET_ON = "ours: `registry.ask`, success, fleet on (publish_interval=0.1)"
PYBREAKER_REDIS = "pybreaker: `breaker.call`, success, `CircuitRedisStorage`"

#: The names of the scripts' own commands in ``INFO commandstats`` (the calls a client sent).
SCRIPT_CALLS = ("evalsha", "evalsha_ro", "eval", "eval_ro", "fcall", "fcall_ro")
#: The benchmark's own commands (not the subject's).
_OWN = ("config", "info")


def _wait(ready: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout:g} s")
        time.sleep(0.01)


def _fleet_ready(registry: CommandRegistry, fleet: RedisFleet) -> None:
    """Wait until the key has been flushed once and the listener is subscribed."""
    _wait(lambda: registry.health(FleetEchoCommand.key).fleet is not None, "no flush")
    if not fleet.subscribed.wait(10.0):
        raise RuntimeError("the fleet's listener never subscribed")


#: Registries per path in the latency comparison, asked in turn: each registry's threads land
#: on the cores as the scheduler places them, and a hand-off costs more across cores than on
#: one, so one registry per path would make the ratio a draw of placements (two identical
#: paths measured up to 25% apart on this 2-core machine); several average it out.
REGISTRIES = 4


def _asking(registries: Sequence[CommandRegistry]) -> Callable[[int], object]:
    key, count = FleetEchoCommand.key, len(registries)
    asks = [registry.ask for registry in registries]

    def call(i: int) -> object:
        return asks[i % count](key, i)

    return call


def measure_overhead(
    url: str, *, rounds: int, samples: int, chunk: int, warmup: int
) -> dict[str, Latency]:
    """p50 / p99 of one successful ask without and with the fleet, and of pybreaker on Redis."""
    off = [CommandRegistry() for _ in range(REGISTRIES)]
    again = [CommandRegistry() for _ in range(REGISTRIES)]
    fleets = [
        RedisFleet(url, namespace="bench-overhead", node=f"bench-{n}", publish_interval=0.1)
        for n in range(REGISTRIES)
    ]
    on = [CommandRegistry(fleet=fleet) for fleet in fleets]
    client = redis.Redis.from_url(url)
    try:
        for registry in (*off, *again, *on):
            registry.register(FleetEchoCommand)
            registry.ask(FleetEchoCommand.key, 0)
        for registry, fleet in zip(on, fleets, strict=True):
            _fleet_ready(registry, fleet)
        cases = [
            Case(FLEET_OFF, _asking(off), identity),
            Case(FLEET_ON, _asking(on), identity),
            Case(FLEET_OFF_AGAIN, _asking(again), identity),
            Case(PYBREAKER_REDIS, pybreaker_on_redis(client, "bench-overhead"), identity),
        ]
        return measure_latencies(cases, rounds=rounds, samples=samples, chunk=chunk, warmup=warmup)
    finally:
        for registry in (*on, *again, *off):
            registry.shutdown(timeout=5.0)
        client.close()


@dataclass(frozen=True, slots=True)
class Commands:
    """One subject's Redis traffic over a paced run."""

    name: str
    calls: int
    seconds: float
    #: Every command ``INFO commandstats`` counted (those inside scripts included).
    counted: int
    #: Commands the subject's clients sent: scripts (EVALSHA) and plain commands.
    sent: int
    #: Of ``sent``: scripts run.
    scripts: int
    #: Pipelines / single commands sent: network round trips.
    round_trips: int
    #: ``INFO commandstats`` calls by command name.
    by_name: Mapping[str, int]
    p50_us: float
    p99_us: float

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else 0.0

    def per_call(self, count: int) -> float:
        return count / self.calls if self.calls else float("inf")


def _commandstats(client: redis.Redis) -> dict[str, int]:
    """Calls per command name since the last ``CONFIG RESETSTAT`` (ours left out)."""
    stats = client.info("commandstats")
    counts: dict[str, int] = {}
    for name, fields in stats.items():
        command = name.removeprefix("cmdstat_")
        if command.split("|")[0] in _OWN:
            continue
        counts[command] = int(fields["calls"])
    return counts


def _ours(url: str, rate: float, seconds: float, client: redis.Redis) -> Commands:
    fleet = CountingFleet(url, namespace="bench-commands", node="bench", publish_interval=0.1)
    registry = CommandRegistry(fleet=fleet)
    try:
        registry.register(FleetEchoCommand)
        registry.ask(FleetEchoCommand.key, 0)
        _fleet_ready(registry, fleet)
        key = FleetEchoCommand.key

        def ask(i: int) -> object:
            return registry.ask(key, i)

        pace(ask, rate=rate, seconds=min(0.5, seconds))  # warm-up
        client.config_resetstat()
        before = fleet.sent()
        paced = pace(ask, rate=rate, seconds=seconds)
        after = fleet.sent()
        by_name = _commandstats(client)
    finally:
        registry.shutdown(timeout=5.0)
    round_trips, _, plain = (a - b for a, b in zip(after, before, strict=True))
    # Scripts from the server's count (a script's own commands are counted under their own
    # names, so only the script calls are the client's), plain commands from the client's.
    server_scripts = sum(by_name.get(name, 0) for name in SCRIPT_CALLS)
    return Commands(
        name="ours",
        calls=paced.calls,
        seconds=paced.seconds,
        counted=sum(by_name.values()),
        sent=server_scripts + plain,
        scripts=server_scripts,
        round_trips=round_trips,
        by_name=by_name,
        p50_us=percentile(paced.latencies_ns, 0.50) / 1000,
        p99_us=percentile(paced.latencies_ns, 0.99) / 1000,
    )


def _pybreaker(url: str, rate: float, seconds: float, client: redis.Redis) -> Commands:
    theirs = redis.Redis.from_url(url)
    try:
        call = pybreaker_on_redis(theirs, "bench-commands")
        pace(call, rate=rate, seconds=min(0.5, seconds))  # warm-up
        client.config_resetstat()
        paced = pace(call, rate=rate, seconds=seconds)
        by_name = _commandstats(client)
    finally:
        theirs.close()
    counted = sum(by_name.values())
    scripts = sum(by_name.get(name, 0) for name in SCRIPT_CALLS)
    return Commands(
        name="pybreaker",
        calls=paced.calls,
        seconds=paced.seconds,
        counted=counted,
        sent=counted,  # no scripts: every command counted is one the client sent
        scripts=scripts,
        round_trips=counted,  # no pipelines: one round trip per command
        by_name=by_name,
        p50_us=percentile(paced.latencies_ns, 0.50) / 1000,
        p99_us=percentile(paced.latencies_ns, 0.99) / 1000,
    )


def measure_commands(url: str, *, rate: float, seconds: float) -> tuple[Commands, Commands]:
    """Ours, then pybreaker, each alone on the server and called ``rate`` times a second."""
    client = redis.Redis.from_url(url)
    try:
        return _ours(url, rate, seconds, client), _pybreaker(url, rate, seconds, client)
    finally:
        client.close()
