"""The Hystrix dashboard's stream format: ``CommandMetrics`` as Hystrix's JSON messages.

Pure functions, no I/O. Each key gives one ``HystrixCommand`` message and one
``HystrixThreadPool`` message (a key's worker pool is its thread pool). Every field the
dashboard reads is filled from what the key really did: nothing is hard-coded to 0 except the
counts of features we do not have (emits, request collapsing, the request cache), which are 0 in
truth. Times are integer milliseconds, as Hystrix sends them; numeric fields are summable, so
Turbine can add hosts up (``reportingHosts`` is 1 per process). The fleet-wide stream
(``/hystrix.stream?scope=fleet``, ``actors.fleet.view``) adds a fleet's nodes up the same way:
``COMMAND_SUMS``, ``LATENCIES`` and ``POOL_SUMS`` name the fields it sums.

Beyond Hystrix's fields, a command message carries ``circuitState`` ("closed", "open",
"half_open": Hystrix's ``isCircuitBreakerOpen`` cannot say half-open), ``status`` ("up",
"restarting", "down") and ``zombieCount``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from supervision import CircuitState, EventType
from supervision.snapshot import PERCENTILES, CommandMetrics, Latency

__all__ = [
    "COMMAND_SUMS",
    "LATENCIES",
    "PING",
    "POOL_SUMS",
    "ROLLING_COUNTS",
    "MetricsSource",
    "batch",
    "command_message",
    "pool_message",
    "snapshots",
    "sse_event",
]

#: The keep-alive line sent between batches (an SSE comment).
PING = b"ping: \n\n"


class MetricsSource(Protocol):
    """Where the stream and the Prometheus collector read from: a ``CommandRegistry``."""

    def all_metrics(self) -> Sequence[CommandMetrics]: ...


#: Gives the default registry (set by ``actors.registry`` when it is imported, so this module
#: never imports the layers above it).
_default_source: Callable[[], MetricsSource] | None = None


def use_default_source(factory: Callable[[], MetricsSource]) -> None:
    """Name what ``snapshots(None)`` reads: ``CommandRegistry.default``."""
    global _default_source  # noqa: PLW0603 - set once, by the registry module
    _default_source = factory


def snapshots(source: MetricsSource | None) -> Sequence[CommandMetrics]:
    """Every used key's metrics now, from ``source`` (None: the default registry)."""
    if source is None:
        if _default_source is None:  # pragma: no cover - importing actors imports the registry
            msg = "no default registry: import actors first"
            raise RuntimeError(msg)
        source = _default_source()
    return source.all_metrics()


#: Stream field -> the event type it counts (within the rolling window).
ROLLING_COUNTS: Mapping[str, EventType] = {
    "rollingCountBadRequests": EventType.BAD_REQUEST,
    "rollingCountCollapsedRequests": EventType.COLLAPSED,
    "rollingCountExceptionsThrown": EventType.EXCEPTION_THROWN,
    "rollingCountFailure": EventType.FAILURE,
    "rollingCountFallbackFailure": EventType.FALLBACK_FAILURE,
    "rollingCountFallbackMissing": EventType.FALLBACK_MISSING,
    "rollingCountFallbackRejection": EventType.FALLBACK_REJECTION,
    "rollingCountFallbackSuccess": EventType.FALLBACK_SUCCESS,
    "rollingCountResponsesFromCache": EventType.RESPONSE_FROM_CACHE,
    "rollingCountSemaphoreRejected": EventType.SEMAPHORE_REJECTED,
    "rollingCountShortCircuited": EventType.SHORT_CIRCUITED,
    "rollingCountSuccess": EventType.SUCCESS,
    "rollingCountThreadPoolRejected": EventType.THREAD_POOL_REJECTED,
    "rollingCountTimeout": EventType.TIMEOUT,
}


#: A command message's per-host figures: counts, concurrency, mean latencies. Turbine sums them
#: across hosts, and so does the fleet-wide stream (``actors.fleet.view``).
COMMAND_SUMS: tuple[str, ...] = (
    "errorCount",
    "requestCount",
    *ROLLING_COUNTS,
    "rollingCountEmit",
    "rollingCountFallbackEmit",
    "currentConcurrentExecutionCount",
    "rollingMaxConcurrentExecutionCount",
    "latencyExecute_mean",
    "latencyTotal_mean",
    "zombieCount",
)

#: A command message's latency objects (percentile -> ms), summed percentile by percentile.
LATENCIES: tuple[str, ...] = ("latencyExecute", "latencyTotal")

#: A pool message's per-host figures, summed across hosts.
POOL_SUMS: tuple[str, ...] = (
    "currentActiveCount",
    "currentCompletedTaskCount",
    "currentCorePoolSize",
    "currentLargestPoolSize",
    "currentMaximumPoolSize",
    "currentPoolSize",
    "currentQueueSize",
    "currentTaskCount",
    "rollingCountThreadsExecuted",
    "rollingMaxActiveThreads",
    "rollingCountCommandRejections",
)


def _ms(seconds: float) -> int:
    """Seconds as whole milliseconds (Hystrix's unit for every time it reports)."""
    return round(seconds * 1000)


def _number(value: float) -> int | float:
    """An integral float as an int (``50.0`` -> ``50``), so JSON shows what Hystrix shows."""
    return int(value) if float(value).is_integer() else value


def _latencies(latency: Latency) -> dict[str, int]:
    return {p: _ms(latency.percentiles.get(p, 0.0)) for p in PERCENTILES}


def command_message(m: CommandMetrics) -> dict[str, Any]:
    """The ``HystrixCommand`` message for one key."""
    config = m.config
    timeout_ms = _ms(config.timeout)
    message: dict[str, Any] = {
        "type": "HystrixCommand",
        "name": m.key,
        "group": m.group,
        "currentTime": _ms(m.time),
        # Hystrix's isOpen(): forced open reads as open (our state already says so); half-open
        # is not open. circuitState below tells the three apart.
        "isCircuitBreakerOpen": m.state is CircuitState.OPEN,
        # Hystrix truncates: (int) (errors / total * 100).
        "errorPercentage": int(m.error_percent),
        "errorCount": m.errors,
        "requestCount": m.requests,
    }
    for field, event in ROLLING_COUNTS.items():
        message[field] = m.counts.get(event, 0)
    message.update(
        {
            # Reactive emissions do not exist here: a command returns one value.
            "rollingCountEmit": 0,
            "rollingCountFallbackEmit": 0,
            "currentConcurrentExecutionCount": m.in_flight,
            "rollingMaxConcurrentExecutionCount": m.rolling_max_in_flight,
            "latencyExecute_mean": _ms(m.latency_execute.mean),
            "latencyExecute": _latencies(m.latency_execute),
            "latencyTotal_mean": _ms(m.latency_total.mean),
            "latencyTotal": _latencies(m.latency_total),
            "propertyValue_circuitBreakerRequestVolumeThreshold": config.request_volume_threshold,
            "propertyValue_circuitBreakerSleepWindowInMilliseconds": _ms(config.sleep_window),
            "propertyValue_circuitBreakerErrorThresholdPercentage": _number(
                config.error_percent_threshold
            ),
            "propertyValue_circuitBreakerForceOpen": config.force_open,
            "propertyValue_circuitBreakerForceClosed": config.force_closed,
            "propertyValue_circuitBreakerEnabled": True,
            # Every call runs on a worker actor's thread.
            "propertyValue_executionIsolationStrategy": "THREAD",
            "propertyValue_executionIsolationThreadTimeoutInMilliseconds": timeout_ms,
            "propertyValue_executionTimeoutInMilliseconds": timeout_ms,
            # A Python thread cannot be interrupted: a timed-out run goes on (see zombieCount).
            "propertyValue_executionIsolationThreadInterruptOnTimeout": False,
            # Each key has its own pool, named after the key.
            "propertyValue_executionIsolationThreadPoolKeyOverride": None,
            "propertyValue_executionIsolationSemaphoreMaxConcurrentRequests": (
                config.max_concurrent_requests
            ),
            "propertyValue_fallbackIsolationSemaphoreMaxConcurrentRequests": (
                config.fallback_max_concurrent
            ),
            "propertyValue_metricsRollingStatisticalWindowInMilliseconds": _ms(
                config.rolling_window
            ),
            "propertyValue_requestCacheEnabled": False,
            "propertyValue_requestLogEnabled": False,
            "reportingHosts": 1,
            "threadPool": m.pool.name,
            # Extensions (the dashboard ignores fields it does not know).
            "circuitState": m.state.value,
            "status": m.status,
            "zombieCount": m.zombies,
        }
    )
    return message


def pool_message(m: CommandMetrics) -> dict[str, Any]:
    """The ``HystrixThreadPool`` message for one key's worker pool."""
    pool = m.pool
    return {
        "type": "HystrixThreadPool",
        "name": pool.name,
        "currentTime": _ms(m.time),
        "currentActiveCount": pool.active,
        "currentCompletedTaskCount": pool.completed,
        # Workers start lazily up to the limit: the configured size is both core and maximum.
        "currentCorePoolSize": pool.max_pool_size,
        "currentLargestPoolSize": pool.largest_pool_size,
        "currentMaximumPoolSize": pool.max_pool_size,
        "currentPoolSize": pool.pool_size,
        "currentQueueSize": pool.queued,
        # As java.util.concurrent.ThreadPoolExecutor.getTaskCount: every task ever accepted.
        "currentTaskCount": pool.completed + pool.active + pool.queued,
        "rollingCountThreadsExecuted": pool.rolling_executed,
        "rollingMaxActiveThreads": pool.rolling_max_active,
        "rollingCountCommandRejections": pool.rolling_rejected,
        "propertyValue_queueSizeRejectionThreshold": pool.queue_size,
        "propertyValue_metricsRollingStatisticalWindowInMilliseconds": _ms(m.config.rolling_window),
        "reportingHosts": 1,
    }


def sse_event(message: Mapping[str, Any], event: str | None = None) -> bytes:
    """One server-sent event: ``data: <json>`` and a blank line; with ``event``, a named event
    (``event: <name>`` first), which ``EventSource.onmessage`` and the Hystrix Dashboard skip."""
    data = b"data: " + json.dumps(message, separators=(",", ":")).encode() + b"\n\n"
    return data if event is None else b"event: " + event.encode() + b"\n" + data


def batch(metrics: Iterable[CommandMetrics]) -> bytes:
    """One tick of the stream: a command message per key, then a pool message per pool."""
    snapshots = list(metrics)
    events = [sse_event(command_message(m)) for m in snapshots]
    pools: set[str] = set()
    for m in snapshots:
        if m.pool.name not in pools:
            pools.add(m.pool.name)
            events.append(sse_event(pool_message(m)))
    return b"".join(events)
