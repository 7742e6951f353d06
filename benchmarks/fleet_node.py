"""One node of the propagation benchmark, in a process of its own (``multiprocessing`` spawn).

The node is a ``CommandRegistry`` (with a ``RedisFleet``, or alone) calling one key at a steady
rate. The key's dependency fails while the parent holds the shared ``dead`` flag up. The node
writes what the parent measures into shared memory, each slot written by one node only: when it
first short-circuited a call since the flag went up, how many calls reached the dependency
while it was down, how many calls it made, and whether its last call short-circuited.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any

from actors import Command, CommandConfig, CommandRegistry, EventType
from actors.fleet import RedisFleet

__all__ = ["NodeShared", "node_main", "propagation_config"]

KEY = "bench.fleet.dependency"
FALLBACK = "fallback"


def propagation_config(rate: float) -> CommandConfig:
    """A 1 s window whose volume threshold is twice what one node calls in it: no node can
    open the circuit on its own counts, the fleet's (four nodes summed) can."""
    return CommandConfig(
        timeout=1.0,
        rolling_window=1.0,
        rolling_buckets=10,
        request_volume_threshold=max(1, round(2 * rate)),
        error_percent_threshold=50,
        sleep_window=0.5,
    )


@dataclass(frozen=True, slots=True)
class NodeShared:
    """Shared memory between the parent and its nodes (``multiprocessing`` raw values)."""

    #: 1 while the dependency is down (the parent writes it).
    dead: Any
    #: 1 once the nodes must stop (the parent writes it).
    stop: Any
    #: Per node: 1 once it is calling.
    ready: Any
    #: Per node: wall-clock time of its first short-circuit since ``dead`` went up (0: none).
    first_short: Any
    #: Per node: calls that reached the dependency while it was down.
    doomed: Any
    #: Per node: calls made.
    calls: Any
    #: Per node: 1 if its last call was short-circuited.
    shorting: Any
    #: Per node: a char array for the traceback if it failed (then it exits).
    failures: Any


def _dependency_command(config: CommandConfig) -> type[Command]:
    class DependencyCommand(Command):
        key = KEY

        def __init__(self, shared: NodeShared, index: int) -> None:
            self._dead = shared.dead
            self._doomed = shared.doomed
            self._index = index

        def run(self, payload: Any) -> Any:
            if self._dead.value:
                self._doomed[self._index] += 1
                raise ConnectionError("the dependency is down")
            return payload

        def fallback(self, payload: Any, error: BaseException) -> Any:
            return FALLBACK

    DependencyCommand.config = config
    return DependencyCommand


def _quiet() -> None:
    """The library's events go nowhere (structlog unconfigured routes them to this logger)."""
    log = logging.getLogger("actors")
    log.addHandler(logging.NullHandler())
    log.propagate = False


def node_main(index: int, url: str | None, namespace: str, rate: float, shared: NodeShared) -> None:
    """Call the key ``rate`` times a second until ``shared.stop``; ``url`` None: no fleet."""
    try:
        _run(index, url, namespace, rate, shared)
    except BaseException:
        text = traceback.format_exc().encode("utf-8", "replace")[-1999:]
        shared.failures[index].value = text
        raise


def _run(index: int, url: str | None, namespace: str, rate: float, shared: NodeShared) -> None:
    _quiet()
    fleet = None
    if url is not None:
        fleet = RedisFleet(url, namespace=namespace, node=f"node-{index}", publish_interval=0.1)
    registry = CommandRegistry(fleet=fleet)
    try:
        registry.register(_dependency_command(propagation_config(rate)), shared, index)
        registry.ask(KEY, 0)
        if fleet is not None:
            deadline = time.monotonic() + 20.0
            while registry.health(KEY).fleet is None or not fleet.subscribed.is_set():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node-{index}: the fleet never flushed or subscribed")
                time.sleep(0.01)
        shared.ready[index] = 1
        _call(registry, index, rate, shared)
    finally:
        registry.shutdown(timeout=5.0)


def _call(registry: CommandRegistry, index: int, rate: float, shared: NodeShared) -> None:
    ask_reply, clock, wall = registry.ask_reply, time.perf_counter, time.time
    dead, stop, first_short = shared.dead, shared.stop, shared.first_short
    calls, shorting = shared.calls, shared.shorting
    short_circuited = EventType.SHORT_CIRCUITED
    period = 1.0 / rate
    started = clock()
    n = 0
    while not stop.value:
        now = clock()
        due = started + n * period
        if due > now:
            time.sleep(due - now)
        elif now - due > 10 * period:  # stalled (a busy machine): no burst to catch up
            started, n = now, 0
        reply = ask_reply(KEY, n)
        answered = wall()
        short = short_circuited in reply.events
        shorting[index] = short
        if short and dead.value and first_short[index] == 0.0:
            first_short[index] = answered
        calls[index] += 1
        n += 1
