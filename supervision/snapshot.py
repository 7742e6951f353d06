"""What ``registry.metrics(key)`` returns: frozen data, everything a dashboard shows of a key.

Times are float seconds (latencies) or wall-clock epoch seconds (``time``); the stream converts
them to Hystrix's milliseconds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from .breaker import CircuitState
from .config import CommandConfig
from .events import EventType

__all__ = [
    "HISTOGRAM_BOUNDS",
    "PERCENTILES",
    "CommandMetrics",
    "Histogram",
    "Latency",
    "PoolMetrics",
]

_T = TypeVar("_T")


def _quick_init(cls: type[_T]) -> type[_T]:
    """Give a frozen, slotted dataclass whose fields have no defaults an ``__init__`` that sets
    each slot through its descriptor: the same signature and the same object as the generated
    one (which calls ``object.__setattr__`` once per field, as a frozen class must), in about
    half the time. A stream's tick builds a ``CommandMetrics`` and a ``PoolMetrics`` per key.
    The class stays frozen: assigning a field raises ``FrozenInstanceError``."""
    names = [field.name for field in dataclasses.fields(cls)]  # type: ignore[arg-type]
    namespace: dict[str, Any] = {f"_set_{name}": getattr(cls, name).__set__ for name in names}
    exec(  # as dataclasses itself makes __init__
        f"def __init__(self, {', '.join(names)}):\n"
        + "".join(f"    _set_{name}(self, {name})\n" for name in names),
        namespace,
    )
    generated = cls.__init__
    init = namespace["__init__"]
    init.__qualname__ = generated.__qualname__
    init.__annotations__ = generated.__annotations__
    init.__doc__ = generated.__doc__
    setattr(cls, "__init__", init)  # noqa: B010 - mypy forbids assigning a method
    return cls


#: The percentiles Hystrix reports, as the stream's keys spell them.
PERCENTILES: tuple[str, ...] = ("0", "25", "50", "75", "90", "95", "99", "99.5", "100")

#: Upper bounds (seconds) of the cumulative latency histogram (Prometheus's ``le``).
HISTOGRAM_BOUNDS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Histogram:
    """Every latency since the key started: cumulative counts per bound (monotonic).

    A latency is placed by its histogram bin (about 3 % wide), so one within 3 % of a bound may
    land on either side of it.
    """

    #: (upper bound in seconds, latencies at or below it), for each of ``HISTOGRAM_BOUNDS``.
    buckets: tuple[tuple[float, int], ...]
    count: int
    sum: float


@dataclasses.dataclass(frozen=True, slots=True)
class Latency:
    """Latency over the rolling percentile window (60 s in 6 buckets by default), seconds."""

    #: How many latencies the window holds.
    count: int
    mean: float
    #: Percentile (a key of ``PERCENTILES``) -> seconds. All 0.0 when ``count`` is 0.
    percentiles: Mapping[str, float]
    #: Since the key started (not rolling): for Prometheus histograms.
    lifetime: Histogram = dataclasses.field(
        default_factory=lambda: Histogram(tuple((b, 0) for b in HISTOGRAM_BOUNDS), 0, 0.0)
    )


@_quick_init
@dataclasses.dataclass(frozen=True, slots=True)
class PoolMetrics:
    """A key's worker pool (Hystrix's thread pool): the key's own, named after the key, or the
    shared pool its ``CommandConfig(pool=...)`` names (the same figures for each of its keys)."""

    name: str
    #: Workers running a call now.
    active: int
    #: Calls admitted and waiting for a worker.
    queued: int
    #: Worker actors alive (started lazily).
    pool_size: int
    #: The most workers alive at once since the key started.
    largest_pool_size: int
    #: ``max_concurrent_requests``: the pool's limit.
    max_pool_size: int
    #: Calls that ran on a worker since the key started.
    completed: int
    #: Calls that ran on a worker within the rolling window.
    rolling_executed: int
    #: The most calls running at once within the rolling window.
    rolling_max_active: int
    #: Calls rejected by the bulkhead within the rolling window.
    rolling_rejected: int
    #: ``queue_size``: calls that may wait beyond the pool.
    queue_size: int
    #: Seconds the pool's rolling figures cover (a key's own pool: the key's
    #: ``rolling_window``; a shared one: its ``PoolConfig.rolling_window``).
    rolling_window: float


@_quick_init
@dataclasses.dataclass(frozen=True, slots=True)
class CommandMetrics:
    """A key's metrics at one instant."""

    key: str
    #: The command's group (``Command.group``; the command class's module when unset).
    group: str
    #: Wall-clock time of the snapshot (epoch seconds).
    time: float
    state: CircuitState
    #: "up", "restarting" or "down".
    status: str
    #: Count of every event type within the rolling window (``rolling_window`` seconds). Not
    #: reset when a circuit closes (the health counts are); started afresh when
    #: ``configure`` changes the window's shape.
    counts: Mapping[EventType, int]
    #: Count of every event type since the key started (monotonic: for Prometheus counters).
    totals: Mapping[EventType, int]
    #: Circuit transitions since the key started, by the state entered ("open", ...).
    transitions: Mapping[str, int]
    #: Health counts, as the breaker sees them (see ``Health``).
    requests: int
    errors: int
    error_percent: float
    #: Calls admitted whose ``run`` has not returned (running, queued, or timed out and running).
    in_flight: int
    #: The most calls in flight at once within the rolling window (never less than now).
    rolling_max_in_flight: int
    zombies: int
    #: ``run`` alone, and the whole ask (admission to answer, fallback included).
    latency_execute: Latency
    latency_total: Latency
    pool: PoolMetrics
    config: CommandConfig
    #: The key's concurrency limit now: ``max_concurrent_requests``, or where its adaptive
    #: ``limit`` (``AdaptiveLimit``) has moved it.
    limit: int
    #: The key's active fault injection (``registry.inject``), described, or None.
    injection: str | None
    #: Whether the command defines ``cache_key`` (its asks use the request cache in a request
    #: scope: docs/request-cache.md).
    cache_enabled: bool
