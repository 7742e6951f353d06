"""One variant of the collapsing benchmark (``benchmarks.collapsing``): 50 caller threads asking
"Get user" in a closed loop through a real ``CommandRegistry``, with or without a ``Collapser``
in front of the dependency, against a simulated server of ``connections`` connections.

The server (``Server``): a call holds one connection (a slot of a ``threading.BoundedSemaphore``)
for ``PER_CALL + PER_ITEM * items`` seconds; a call finding every connection busy waits for one,
as on a real server. It counts its calls and items itself. Without the collapser, "Get user"
calls it with one item; with it, "Get users" (the batch command) calls it once with the list.
Each variant has a registry of its own; a warm-up is run first and not counted.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import Any

from actors import Collapser, CommandConfig, CommandRegistry, EventType, Reply

from .load_shaping_common import Counter, calling, percentile, run_threads

__all__ = [
    "BATCH_KEY",
    "KEY",
    "PER_CALL",
    "PER_ITEM",
    "TIMEOUT",
    "CollapsingRun",
    "Server",
    "Variant",
    "measure_variant",
]

#: What the dependency costs: seconds per call, plus seconds per item asked.
PER_CALL = 0.005
PER_ITEM = 0.0001
#: The key callers ask (a command without the collapser, the collapser with it).
KEY = "Get user"
#: The batch command's key.
BATCH_KEY = "Get users"
#: Large enough that no ask times out: the comparison is of the dependency's cost.
TIMEOUT = 5.0
#: Without the collapser: a bulkhead as wide as the callers, so that none is rejected.
SINGLE = CommandConfig(timeout=TIMEOUT, max_concurrent_requests=50)
BATCH = CommandConfig(timeout=TIMEOUT)
_REJECTED = frozenset(
    {EventType.THREAD_POOL_REJECTED, EventType.SEMAPHORE_REJECTED, EventType.SHORT_CIRCUITED}
)


class Server:
    """A dependency with ``connections`` connections; a call holds one for ``PER_CALL +
    PER_ITEM * items`` seconds (a list payload is that many items, anything else one)."""

    def __init__(self, connections: int) -> None:
        self.connections = connections
        self._free = threading.BoundedSemaphore(connections)
        self.calls = Counter()
        self.items = Counter()

    def __call__(self, payload: Any) -> Any:
        items = len(payload) if isinstance(payload, list) else 1
        with self._free:
            time.sleep(PER_CALL + PER_ITEM * items)
        self.calls.add()
        self.items.add(items)
        return payload


@dataclasses.dataclass(frozen=True, slots=True)
class Variant:
    """A row: with ``collapse`` False, "Get user" asks the server itself; with it True, a
    ``Collapser`` (the default ``window``, this ``max_batch``) sends its asks in batches."""

    name: str
    collapse: bool
    max_batch: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class CollapsingRun:
    """One variant over its measured seconds."""

    variant: Variant
    connections: int
    seconds: float
    #: Asks answered with their own item, and their latencies' p50 and p99 (seconds).
    answered: int
    p50: float
    p99: float
    rejected: int
    timed_out: int
    fell_back: int
    other: int
    #: Calls the server served; ``collapser_metrics`` mean batch size (NaN without one).
    dependency_calls: int
    batch_size_mean: float

    @property
    def per_second(self) -> float:
        return self.answered / self.seconds


def _collapser(limit: int | None) -> type[Collapser]:
    class GetUser(Collapser):
        key = KEY
        batch_command = BATCH_KEY
        max_batch = limit

    return GetUser


def _registry(variant: Variant, server: Server) -> CommandRegistry:
    registry = CommandRegistry()
    if variant.collapse:
        registry.register(calling(BATCH_KEY, BATCH), server)
        registry.register(_collapser(variant.max_batch))
    else:
        registry.register(calling(KEY, SINGLE), server)
    return registry


def _outcome(reply: Reply[Any], payload: int) -> str:
    if reply.error is None and not reply.fell_back:
        if reply.value != payload:  # a benchmark that broke must not report figures
            msg = f"{KEY!r} asked {payload} answered {reply.value!r}"
            raise RuntimeError(msg)
        return "ok"
    if reply.fell_back:
        return "fell back"
    if EventType.TIMEOUT in reply.events:
        return "timed out"
    return "rejected" if _REJECTED & set(reply.events) else "other"


@dataclasses.dataclass(frozen=True, slots=True)
class _Mark:
    at: float
    calls: int
    collapsed: int
    batches: int


def _mark(registry: CommandRegistry, server: Server, variant: Variant) -> _Mark:
    at, calls = time.perf_counter(), server.calls.value
    if not variant.collapse:
        return _Mark(at, calls, 0, 0)
    metrics = registry.collapser_metrics(KEY)
    return _Mark(at, calls, metrics.requests_collapsed_total, metrics.batches_total)


def measure_variant(
    variant: Variant, connections: int, *, callers: int, warmup: float, seconds: float
) -> CollapsingRun:
    """``callers`` threads ask in a closed loop for ``warmup + seconds``; the last ``seconds``
    are counted. The mean batch size is the difference of two ``collapser_metrics`` readings
    of its totals since registration."""
    server = Server(connections)
    registry = _registry(variant, server)
    stop = threading.Event()
    answered: list[list[tuple[float, float, str]]] = [[] for _ in range(callers)]
    marks: list[_Mark] = []

    def control() -> None:
        try:
            time.sleep(warmup)
            marks.append(_mark(registry, server, variant))
            time.sleep(seconds)
            marks.append(_mark(registry, server, variant))
        finally:
            stop.set()

    def caller(index: int) -> None:
        if index == callers:
            control()
            return
        mine, ask_reply, n = answered[index], registry.ask_reply, 0
        while not stop.is_set():
            payload = index * 10_000_000 + n
            n += 1
            asked = time.perf_counter()
            reply = ask_reply(KEY, payload)
            done = time.perf_counter()
            mine.append((done, done - asked, _outcome(reply, payload)))

    try:
        run_threads(callers + 1, caller, "bench-collapsing")
    finally:
        stop.set()
        registry.shutdown(timeout=10.0)
    start, end = marks
    counted = [
        (latency, outcome)
        for taken in answered
        for done, latency, outcome in taken
        if start.at <= done < end.at
    ]
    batches = end.batches - start.batches
    latencies = sorted(latency for latency, o in counted if o == "ok")

    def count(outcome: str) -> int:
        return sum(1 for _, o in counted if o == outcome)

    return CollapsingRun(
        variant=variant,
        connections=connections,
        seconds=end.at - start.at,
        answered=len(latencies),
        p50=percentile(latencies, 0.5),
        p99=percentile(latencies, 0.99),
        rejected=count("rejected"),
        timed_out=count("timed out"),
        fell_back=count("fell back"),
        other=count("other"),
        dependency_calls=end.calls - start.calls,
        batch_size_mean=(end.collapsed - start.collapsed) / batches if batches else math.nan,
    )
