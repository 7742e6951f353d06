"""Hand-made ``CommandMetrics`` for tests of what reads them (the stream, Prometheus).

Every number differs from every other, so a field filled from the wrong source shows. Test
modules import it as ``from sample_metrics import ...`` (like ``probe``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from supervision import CircuitState, CommandConfig, EventType
from supervision.snapshot import PERCENTILES, CommandMetrics, Latency, PoolMetrics

#: 2026-01-01T00:00:00.250Z, in epoch seconds.
TIME = 1_767_225_600.25

#: A distinct rolling count per event type: 1, 2, 3, ...
COUNTS: dict[EventType, int] = {event: i for i, event in enumerate(EventType, start=1)}
#: Lifetime totals: 100 more than the rolling counts.
TOTALS: dict[EventType, int] = {event: n + 100 for event, n in COUNTS.items()}

#: Percentile -> seconds: 1 ms, 2 ms, ... for execute; 10 ms, 20 ms, ... for total.
EXECUTE = Latency(
    count=40,
    mean=0.0042,
    percentiles={p: (i + 1) / 1000 for i, p in enumerate(PERCENTILES)},
)
TOTAL = Latency(
    count=41,
    mean=0.0137,
    percentiles={p: (i + 1) / 100 for i, p in enumerate(PERCENTILES)},
)

CONFIG = CommandConfig(
    timeout=1.5,
    max_concurrent_requests=12,
    request_volume_threshold=21,
    sleep_window=4.25,
    error_percent_threshold=55,
    queue_size=3,
    rolling_window=7.0,
    rolling_buckets=7,
    fallback_max_concurrent=9,
    force_closed=True,
)

POOL = PoolMetrics(
    name="pool-of-a",
    active=2,
    queued=1,
    pool_size=5,
    largest_pool_size=6,
    max_pool_size=12,
    completed=30,
    rolling_executed=17,
    rolling_max_active=4,
    rolling_rejected=8,
    queue_size=3,
    rolling_window=7.0,
)


def sample(key: str = "a", **changes: Any) -> CommandMetrics:
    """A key's metrics with distinct values everywhere; ``changes`` override fields."""
    metrics = CommandMetrics(
        key=key,
        group="Issues",
        time=TIME,
        state=CircuitState.CLOSED,
        status="up",
        counts=dict(COUNTS),
        totals=dict(TOTALS),
        transitions={"open": 3, "half_open": 2, "closed": 1},
        requests=29,
        errors=19,
        error_percent=100 * 19 / 29,
        in_flight=3,
        rolling_max_in_flight=7,
        zombies=2,
        latency_execute=EXECUTE,
        latency_total=TOTAL,
        pool=dataclasses.replace(POOL, name=f"pool-of-{key}"),
        config=CONFIG,
        limit=12,
        injection=None,
        cache_enabled=False,
    )
    return dataclasses.replace(metrics, **changes)


class Source:
    """A stand-in for a registry: returns the metrics it was given, counts the reads."""

    def __init__(self, *metrics: CommandMetrics) -> None:
        self.metrics: Sequence[CommandMetrics] = metrics
        self.reads = 0

    def all_metrics(self) -> list[CommandMetrics]:
        self.reads += 1
        return list(self.metrics)
