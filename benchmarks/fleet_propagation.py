"""How fast a fleet-open reaches every node, and the calls it saves a dead dependency.

Four processes (``multiprocessing`` spawn), each a node calling one key at a steady rate
(``fleet_node``). Each repetition: the calls succeed long enough to fill the window, the parent
kills the dependency (a shared flag) for ``dead_seconds``, then revives it and waits until
every node answers normally again. The fleet circuit's opening instant is the ``at`` of the
open state it broadcasts (Redis ``TIME``, in ms); each node notes the wall-clock instant it
first short-circuited a call; both clocks are the machine's, so the difference is the delay
from the fleet's decision to the last node acting on it. The same load is run again with four
independent breakers (no fleet) to count the calls that reach the dead dependency without it.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.context
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from actors.fleet import RedisFleet

from .fleet_node import KEY, NodeShared, node_main, propagation_config

__all__ = ["NODES", "Propagation", "Repetition", "finite", "measure_propagation"]

NODES = 4
#: Seconds the nodes have to start (spawned interpreters import everything afresh).
START_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Repetition:
    """One outage."""

    #: Seconds from the fleet's open (its ``at``) to the last node's first short-circuit
    #: (inf: a node never short-circuited while the dependency was down); None without a fleet.
    propagation: float | None
    #: Seconds from the kill to the fleet's open (None without a fleet).
    opened_after: float | None
    #: Calls that reached the dead dependency, all nodes.
    doomed: int
    #: Calls made while the dependency was down, all nodes.
    calls: int
    #: Each node's delay from the fleet's open to its first short-circuit (seconds).
    nodes: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Propagation:
    fleet: list[Repetition]
    independent: list[Repetition]
    rate: float
    dead_seconds: float
    volume_threshold: int
    #: Calls per second each node really made (mean over nodes and phases).
    node_rate: float


class _Nodes:
    """Four node processes sharing one ``NodeShared``."""

    def __init__(
        self, context: multiprocessing.context.SpawnContext, url: str | None, rate: float
    ) -> None:
        self.shared = NodeShared(
            dead=context.RawValue("b", 0),
            stop=context.RawValue("b", 0),
            ready=context.RawArray("b", NODES),
            first_short=context.RawArray("d", NODES),
            doomed=context.RawArray("q", NODES),
            calls=context.RawArray("q", NODES),
            shorting=context.RawArray("b", NODES),
            failures=[context.RawArray("c", 2000) for _ in range(NODES)],
        )
        self.processes = [
            context.Process(
                target=node_main,
                args=(index, url, "bench-propagation", rate, self.shared),
                name=f"bench-fleet-node-{index}",
                daemon=True,
            )
            for index in range(NODES)
        ]
        self._started = time.monotonic()

    def start(self) -> None:
        for process in self.processes:
            process.start()
        self._started = time.monotonic()
        self.wait(lambda: all(self.shared.ready), "the nodes did not start", START_TIMEOUT)

    def check(self) -> None:
        for index, process in enumerate(self.processes):
            if process.exitcode is not None:
                said = self.shared.failures[index].value.decode("utf-8", "replace")
                msg = f"node {index} exited with status {process.exitcode}: {said}"
                raise RuntimeError(msg)

    def wait(self, ready: Any, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} within {timeout:g} s")
            time.sleep(0.005)

    def calls(self) -> int:
        return sum(self.shared.calls)

    def stop(self) -> None:
        self.shared.stop.value = 1
        started = [process for process in self.processes if process.pid is not None]
        for process in started:
            process.join(15.0)
        for process in started:
            if process.is_alive():
                process.kill()
                process.join()


@contextlib.contextmanager
def _nodes(url: str | None, rate: float) -> Iterator[_Nodes]:
    nodes = _Nodes(multiprocessing.get_context("spawn"), url, rate)
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


def _opened_at(pubsub: Any, timeout: float) -> float | None:
    """The ``at`` (seconds) of the next open state broadcast for the key, or None."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = pubsub.get_message(timeout=min(left, 0.1))
        if message is None or message.get("type") != "message":
            continue
        state = json.loads(message["data"])
        if state.get("key") == KEY and state.get("state") == "open":
            return int(state["at"]) / 1000
    return None


def _outage(
    nodes: _Nodes, *, warm_seconds: float, dead_seconds: float, pubsub: Any | None
) -> Repetition:
    shared = nodes.shared
    nodes.wait(lambda: not any(shared.shorting), "the circuits did not close", 15.0)
    time.sleep(warm_seconds)
    for index in range(NODES):
        shared.first_short[index] = 0.0
        shared.doomed[index] = 0
    if pubsub is not None:
        while pubsub.get_message(timeout=0.0) is not None:
            pass
    calls_before = nodes.calls()
    killed = time.time()
    shared.dead.value = 1
    opened = None if pubsub is None else _opened_at(pubsub, dead_seconds)
    time.sleep(max(0.0, killed + dead_seconds - time.time()))
    shared.dead.value = 0
    calls = nodes.calls() - calls_before
    doomed = sum(shared.doomed)
    nodes.check()
    if opened is None:
        return Repetition(
            propagation=None if pubsub is None else float("inf"),
            opened_after=None,
            doomed=doomed,
            calls=calls,
        )
    firsts = list(shared.first_short)
    last = max(firsts) - opened if all(firsts) else float("inf")
    nodes_delays = tuple(first - opened if first else float("inf") for first in firsts)
    return Repetition(last, opened - killed, doomed, calls, nodes_delays)


def _run(
    url: str | None, *, rate: float, repetitions: int, warm_seconds: float, dead_seconds: float
) -> tuple[list[Repetition], float]:
    client = redis.Redis.from_url(url) if url is not None else None
    pubsub = None
    try:
        with _nodes(url, rate) as nodes:
            if client is not None:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                channel = RedisFleet(url or "", namespace="bench-propagation").channel
                pubsub.subscribe(channel)
            started, calls_before = time.monotonic(), nodes.calls()
            reps = [
                _outage(nodes, warm_seconds=warm_seconds, dead_seconds=dead_seconds, pubsub=pubsub)
                for _ in range(repetitions)
            ]
            rate_seen = (nodes.calls() - calls_before) / (time.monotonic() - started) / NODES
    finally:
        if pubsub is not None:
            pubsub.close()
        if client is not None:
            client.close()
    return reps, rate_seen


def measure_propagation(
    url: str,
    *,
    rate: float,
    repetitions: int,
    independent_repetitions: int,
    dead_seconds: float,
) -> Propagation:
    """``repetitions`` outages with the fleet, then ``independent_repetitions`` without."""
    config = propagation_config(rate)
    warm = config.rolling_window + 0.2
    fleet, fleet_rate = _run(
        url, rate=rate, repetitions=repetitions, warm_seconds=warm, dead_seconds=dead_seconds
    )
    independent, alone_rate = _run(
        None,
        rate=rate,
        repetitions=independent_repetitions,
        warm_seconds=warm,
        dead_seconds=dead_seconds,
    )
    return Propagation(
        fleet=fleet,
        independent=independent,
        rate=rate,
        dead_seconds=dead_seconds,
        volume_threshold=config.request_volume_threshold,
        node_rate=(fleet_rate + alone_rate) / 2,
    )


def finite(values: Sequence[float | None]) -> list[float]:
    return sorted(v for v in values if v is not None and v != float("inf"))
