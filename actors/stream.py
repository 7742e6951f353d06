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
"restarting", "down"), ``zombieCount``, ``concurrencyLimit`` (the key's limit now: adaptive
with ``CommandConfig(limit=...)``), the counts of retries and hedged runs
(``rollingCountRetry``, ``rollingCountRetryBudgetExhausted``, ``rollingCountHedge``), and
``faultInjected`` (true while ``registry.inject`` faults the key's runs) with
``faultInjection`` (what it injects, or null).

A ``Renderer`` makes the ticks a server sends: it keeps each key's rendered messages and renders
a key again only when its metrics changed since the previous tick (an idle key's messages are
the same but for ``currentTime``, which is written anew). A ``Tick`` holds every key's message
apart, so a connection that asked for some keys or groups only picks their pieces.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol

from supervision import CircuitState, EventType
from supervision.collapsing import BATCH_SIZE_PERCENTILES, CollapserMetrics
from supervision.snapshot import PERCENTILES, CommandMetrics, Latency

__all__ = [
    "COLLAPSER_SUMS",
    "COMMAND_SUMS",
    "LATENCIES",
    "PING",
    "POOL_SUMS",
    "ROLLING_COUNTS",
    "MetricsSource",
    "Renderer",
    "Tick",
    "batch",
    "collapser_message",
    "collapser_snapshots",
    "command_message",
    "pool_message",
    "resolve",
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


def resolve(source: MetricsSource | None) -> MetricsSource:
    """``source``, or the default registry for None."""
    if source is None:
        if _default_source is None:  # pragma: no cover - importing actors imports the registry
            msg = "no default registry: import actors first"
            raise RuntimeError(msg)
        return _default_source()
    return source


def snapshots(source: MetricsSource | None) -> Sequence[CommandMetrics]:
    """Every used key's metrics now, from ``source`` (None: the default registry)."""
    return resolve(source).all_metrics()


def collapser_snapshots(source: MetricsSource | None) -> Sequence[CollapserMetrics]:
    """Every registered collapser's metrics now (none from a source that has no
    ``all_collapser_metrics``, as a ``CommandRegistry`` has)."""
    read: Callable[[], Sequence[CollapserMetrics]] | None = getattr(
        resolve(source), "all_collapser_metrics", None
    )
    return () if read is None else read()


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
    # Extensions (issue 13: retries and hedged runs; the dashboard ignores fields it does not know).
    "rollingCountRetry": EventType.RETRY,
    "rollingCountRetryBudgetExhausted": EventType.RETRY_BUDGET_EXHAUSTED,
    "rollingCountHedge": EventType.HEDGE,
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
    "concurrencyLimit",
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


#: A collapser message's per-host figures, summed across hosts (Turbine's way).
COLLAPSER_SUMS: tuple[str, ...] = (
    "rollingCountRequestsBatched",
    "rollingCountBatches",
    "rollingCountResponsesFromCache",
    "batchSize_mean",
    "shardSize_mean",
)

#: ``propertyValue_maxRequestsInBatch`` of a collapser without ``max_batch``: Hystrix's default,
#: Java's ``Integer.MAX_VALUE`` (unbounded).
UNBOUNDED_BATCH = 2**31 - 1


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
            "propertyValue_executionIsolationStrategy": config.isolation.value.upper(),
            "propertyValue_executionIsolationThreadTimeoutInMilliseconds": timeout_ms,
            "propertyValue_executionTimeoutInMilliseconds": timeout_ms,
            # A Python thread cannot be interrupted: a timed-out run goes on (see zombieCount).
            "propertyValue_executionIsolationThreadInterruptOnTimeout": False,
            # A key has its own pool, named after the key, unless it names a shared one.
            "propertyValue_executionIsolationThreadPoolKeyOverride": config.pool,
            "propertyValue_executionIsolationSemaphoreMaxConcurrentRequests": (
                config.max_concurrent_requests
            ),
            "propertyValue_fallbackIsolationSemaphoreMaxConcurrentRequests": (
                config.fallback_max_concurrent
            ),
            "propertyValue_metricsRollingStatisticalWindowInMilliseconds": _ms(
                config.rolling_window
            ),
            # the command defines cache_key (docs/request-cache.md)
            "propertyValue_requestCacheEnabled": m.cache_enabled,
            "propertyValue_requestLogEnabled": False,
            "reportingHosts": 1,
            "threadPool": m.pool.name,
            # Extensions (the dashboard ignores fields it does not know).
            "circuitState": m.state.value,
            "status": m.status,
            "zombieCount": m.zombies,
            # the key's concurrency limit now (its adaptive limit's, or max_concurrent_requests)
            "concurrencyLimit": m.limit,
            # an active fault injection (registry.inject), and what it injects
            "faultInjected": m.injection is not None,
            "faultInjection": m.injection,
        }
    )
    return message


def pool_message(m: CommandMetrics) -> dict[str, Any]:
    """The ``HystrixThreadPool`` message for a key's worker pool (its own, or a shared one)."""
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
        "propertyValue_metricsRollingStatisticalWindowInMilliseconds": _ms(pool.rolling_window),
        "reportingHosts": 1,
    }


def collapser_message(c: CollapserMetrics) -> dict[str, Any]:
    """The ``HystrixCollapser`` message for one collapser. Hystrix writes the mean and the
    percentiles of batch sizes as whole numbers; so do we (the mean rounded). A batch is never
    split into shards here, so each shard is a whole batch: ``shardSize`` is ``batchSize``."""
    sizes = {p: round(c.batch_size_percentiles.get(p, 0.0)) for p in BATCH_SIZE_PERCENTILES}
    mean = round(c.batch_size_mean)
    return {
        "type": "HystrixCollapser",
        "name": c.key,
        "currentTime": _ms(c.time),
        "rollingCountRequestsBatched": c.requests_collapsed,
        "rollingCountBatches": c.batches,
        "rollingCountResponsesFromCache": c.responses_from_cache,
        "batchSize_mean": mean,
        "batchSize": sizes,
        "shardSize_mean": mean,
        "shardSize": dict(sizes),
        "propertyValue_rollingStatisticalWindowInMilliseconds": _ms(c.window),
        "propertyValue_requestCacheEnabled": c.cache_enabled,
        "propertyValue_maxRequestsInBatch": (
            UNBOUNDED_BATCH if c.max_batch is None else c.max_batch
        ),
        "propertyValue_timerDelayInMilliseconds": _ms(c.collapse_window),
        "reportingHosts": 1,
        # Extensions (the dashboard ignores fields it does not know).
        "batchCommand": c.batch_command,
        "group": c.group,
    }


def _json(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def sse_event(message: Mapping[str, Any], event: str | None = None) -> bytes:
    """One server-sent event: ``data: <json>`` and a blank line; with ``event``, a named event
    (``event: <name>`` first), which ``EventSource.onmessage`` and the Hystrix Dashboard skip."""
    data = b"data: " + _json(message) + b"\n\n"
    return data if event is None else b"event: " + event.encode() + b"\n" + data


def _around_time(message: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """``sse_event(message)`` cut around the value of its ``currentTime`` (an int): the bytes
    before it and after it. Within JSON, ``"currentTime":`` can only be the field's name (a
    quote inside a string is escaped)."""
    data = sse_event(message)
    start = data.index(_TIME_FIELD) + len(_TIME_FIELD)
    end = start + len(b"%d" % message["currentTime"])
    return data[:start], data[end:]


#: The time field as the JSON of a message spells it.
_TIME_FIELD = b'"currentTime":'


def _command_inputs(m: CommandMetrics) -> tuple[Any, ...]:
    """Everything ``command_message`` reads but the key and the time."""
    return (
        m.group,
        m.state,
        m.status,
        m.error_percent,
        m.errors,
        m.requests,
        m.counts,
        m.in_flight,
        m.rolling_max_in_flight,
        m.zombies,
        m.limit,
        m.injection,
        m.cache_enabled,
        m.latency_execute,
        m.latency_total,
        m.pool.name,
        m.config,
    )


def _pool_inputs(m: CommandMetrics) -> tuple[Any, ...]:
    """Everything ``pool_message`` reads but the time."""
    p = m.pool
    return (
        p.name,
        p.active,
        p.queued,
        p.pool_size,
        p.largest_pool_size,
        p.max_pool_size,
        p.completed,
        p.rolling_executed,
        p.rolling_max_active,
        p.rolling_rejected,
        p.queue_size,
        p.rolling_window,
    )


#: A rendered message, kept from one tick to the next: what it was rendered from (its
#: inputs), and its event around the value of its ``currentTime``.
_Rendered = tuple[tuple[Any, ...], bytes, bytes]

#: A tick's command: (key, group, pool, its event as parts to join).
_Command = tuple[str, str, str, tuple[bytes, ...]]
#: A tick's collapser: (key, group or None, its event).
_Collapser = tuple[str, str | None, bytes]


class Tick:
    """One tick of the stream, rendered once for every connection that sends it.

    ``commands`` holds each key's ``HystrixCommand`` event as (key, group, pool, the event's
    bytes in parts), in the order the source gave them (by key); ``pools`` each pool's
    ``HystrixThreadPool`` event (in parts), in the order the commands first name them;
    ``collapsers`` each collapser's ``HystrixCollapser`` event as (key, group, the event), by
    key. ``at`` is when the tick was made (the ``time.monotonic`` of whoever made it); ``head``
    what is sent before the commands (the fleet-wide stream's ``fleet`` event).
    """

    __slots__ = ("_positions", "_whole", "at", "collapsers", "commands", "head", "pools")

    def __init__(
        self,
        commands: Sequence[_Command],
        pools: Mapping[str, tuple[bytes, ...]],
        at: float = 0.0,
        head: bytes = b"",
        collapsers: Sequence[_Collapser] = (),
    ) -> None:
        self.commands = commands
        self.pools = pools
        self.at = at
        self.head = head
        self.collapsers = collapsers
        self._whole: dict[bytes, bytes] = {}
        self._positions: dict[str, int] | None = None

    @classmethod
    def of_messages(
        cls, messages: Iterable[Mapping[str, Any]], at: float = 0.0, head: bytes = b""
    ) -> Tick:
        """A tick of ready-made messages (the fleet's sums): commands and pools by ``type``."""
        commands: list[_Command] = []
        pools: dict[str, tuple[bytes, ...]] = {}
        collapsers: list[_Collapser] = []
        for message in messages:
            kind = message.get("type")
            if kind == "HystrixCommand":
                key, group, pool = message["name"], message["group"], message["threadPool"]
                commands.append((key, group, pool, (sse_event(message),)))
            elif kind == "HystrixThreadPool":
                pools.setdefault(message["name"], (sse_event(message),))
            elif kind == "HystrixCollapser":
                collapsers.append((message["name"], message.get("group"), sse_event(message)))
        return cls(commands, pools, at, head, collapsers)

    @property
    def keys(self) -> list[str]:
        """The keys the tick has a command message of."""
        return [command[0] for command in self.commands]

    def body(
        self,
        keys: Collection[str] | None = None,
        groups: Collection[str] | None = None,
        end: bytes = b"",
    ) -> bytes:
        """The tick's events: ``head``, every command, every pool, every collapser, then
        ``end``. With ``keys`` (command and collapser keys) and/or ``groups`` (their groups),
        only the commands that match both, their pools, and the collapsers that match both.
        The whole tick is joined once, whoever asks."""
        if keys is None and groups is None:
            whole = self._whole.get(end)
            if whole is None:
                whole = self._whole[end] = self._join(self.commands, self.collapsers, end)
            return whole
        chosen: Iterable[_Command] = self.commands
        if keys is not None:
            positions = self._positions
            if positions is None:
                positions = self._positions = {c[0]: n for n, c in enumerate(self.commands)}
            chosen = [
                self.commands[n] for n in sorted(positions[k] for k in keys if k in positions)
            ]
        if groups is not None:
            chosen = [c for c in chosen if c[1] in groups]
        collapsers = [
            c
            for c in self.collapsers
            if (keys is None or c[0] in keys) and (groups is None or c[1] in groups)
        ]
        return self._join(chosen, collapsers, end)

    def _join(
        self, commands: Iterable[_Command], collapsers: Iterable[_Collapser], end: bytes
    ) -> bytes:
        parts = [self.head]
        pools: dict[str, None] = {}
        for command in commands:
            parts += command[3]
            pools[command[2]] = None
        every = self.pools
        for name in pools:
            parts += every.get(name, ())
        parts += [collapser[2] for collapser in collapsers]
        parts.append(end)
        return b"".join(parts)


class Renderer:
    """Renders ticks, keeping each key's messages from one tick to the next: a key whose
    metrics did not change is not rendered again, only its ``currentTime`` is written anew.

    One caller at a time (a server makes its ticks one at a time for all its connections).
    """

    __slots__ = ("_commands", "_pools")

    def __init__(self) -> None:
        self._commands: dict[str, _Rendered] = {}
        self._pools: dict[str, _Rendered] = {}

    def tick(
        self,
        metrics: Iterable[CommandMetrics],
        at: float = 0.0,
        collapsers: Iterable[CollapserMetrics] = (),
    ) -> Tick:
        """A tick of ``metrics``: a command message per key, a pool message per pool (the
        first key naming it gives it), then a collapser message per collapser (rendered anew
        each tick: they are few); the same bytes as ``batch``."""
        old_commands, old_pools = self._commands, self._pools
        rendered_commands: dict[str, _Rendered] = {}
        rendered_pools: dict[str, _Rendered] = {}
        commands: list[_Command] = []
        pools: dict[str, tuple[bytes, ...]] = {}
        for m in metrics:
            now = b"%d" % _ms(m.time)
            inputs = _command_inputs(m)
            rendered = old_commands.get(m.key)
            if rendered is None or rendered[0] != inputs:
                rendered = (inputs, *_around_time(command_message(m)))
            rendered_commands[m.key] = rendered
            pool = m.pool.name
            commands.append((m.key, m.group, pool, (rendered[1], now, rendered[2])))
            if pool in pools:
                continue
            inputs = _pool_inputs(m)
            rendered = old_pools.get(pool)
            if rendered is None or rendered[0] != inputs:
                rendered = (inputs, *_around_time(pool_message(m)))
            rendered_pools[pool] = rendered
            pools[pool] = (rendered[1], now, rendered[2])
        self._commands, self._pools = rendered_commands, rendered_pools
        batchers = [(c.key, c.group, sse_event(collapser_message(c))) for c in collapsers]
        return Tick(commands, pools, at, collapsers=batchers)


def batch(metrics: Iterable[CommandMetrics], collapsers: Iterable[CollapserMetrics] = ()) -> bytes:
    """One tick of the stream: a command message per key, a pool message per pool, then a
    collapser message per collapser."""
    return Renderer().tick(metrics, collapsers=collapsers).body()
