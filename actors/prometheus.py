"""Prometheus metrics for every command key (needs the ``prometheus`` extra: prometheus_client).

A custom collector: nothing is recorded on the call path; each scrape reads
``registry.all_metrics()`` once and turns the snapshots into metric families::

    from actors.prometheus import register_metrics
    register_metrics()          # the default registry, into prometheus_client's REGISTRY

Every metric has the label ``command`` (the key) and one prefix (``hystrix`` by default):

* ``hystrix_events_total{event}``: counter, every event type since the key started (monotonic,
  for ``rate()``); ``hystrix_rolling_events{event}``: gauge, the same within the rolling window
  (what the breaker and the dashboard see; it goes down as buckets expire, so it is no counter).
* ``hystrix_circuit_transitions_total{state}``: counter, transitions into each state.
* ``hystrix_circuit_state{state}``, ``hystrix_status{status}``: 1 for the current one, 0 else.
* ``hystrix_error_ratio``: the breaker's error share in the window (0-1).
* ``hystrix_in_flight``, ``hystrix_queue``, ``hystrix_zombies``: gauges.
* ``hystrix_latency_seconds{kind,percentile}`` and ``hystrix_latency_mean_seconds{kind}``: gauges
  over the rolling latency window, ``kind`` "execute" (``run`` alone) or "total" (the whole ask);
  ``percentile`` is a fraction, "0" … "1" ("0.995": Hystrix's 99.5th percentile). Gauges, not a
  Prometheus summary (a summary's ``_count`` and ``_sum`` must be lifetime sums), so the label is
  not ``quantile``, which Prometheus reserves for summaries.
* ``hystrix_pool_workers``, ``hystrix_pool_active_workers``, ``hystrix_pool_max_workers``:
  gauges; ``hystrix_pool_completed_total``: counter.
* ``hystrix_command_info{group,thread_pool}``: 1, to join the group onto other metrics.
* ``hystrix_fault_injected``: 1 while a fault injection (``registry.inject``) faults the key's
  runs, else 0.

Every registered collapser (docs/collapsing.md), labelled ``collapser`` (its key):

* ``hystrix_collapser_batch_size``: histogram of the requests per batch sent, since the
  collapser was registered (``_count``: batches; ``_sum``: requests collapsed), buckets 1, 2,
  5, 10, 20, 50, 100, 200, 500, 1000;
* ``hystrix_collapser_responses_from_cache_total``: counter, asks answered from the request
  cache;
* ``hystrix_collapser_info{collapser,batch_command,group}``: 1 (``group`` "" when unset).

With a fleet (``CommandRegistry(fleet=RedisFleet(...))``), the fleet's circuits as this node last
read them from Redis (its last flush: nothing is read at scrape time), labelled ``node`` (this
node's name in the fleet, so the fleet's nodes' series never collide):

* ``hystrix_fleet_connected{node}`` (no ``command``): 1 while this node reaches the fleet's
  Redis, 0 while it cannot (or before its first try);
* ``hystrix_fleet_nodes{command,node}``: the nodes that reported the key within its rolling
  window (this one included);
* ``hystrix_fleet_circuit_state{command,node,state}``: 1 for the fleet circuit's state, 0 else;
* ``hystrix_fleet_error_ratio{command,node}``: errors / requests in the fleet's summed window
  (0-1, like ``hystrix_error_ratio``);
* ``hystrix_fleet_probe_holder{command,node}``: 1 while this node holds the fleet's half-open
  probe for the key, 0 else.

A key that takes no part in the fleet (``FleetPolicy(mode="off")``), or has not exchanged with it
yet, has no ``hystrix_fleet_*`` series.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from supervision import CircuitState, EventType, FleetView
from supervision.checks import show
from supervision.collapsing import CollapserMetrics
from supervision.snapshot import PERCENTILES, CommandMetrics, Latency

from .stream import MetricsSource, collapser_snapshots

__all__ = ["HystrixCollector", "collector_registry", "exposition", "register_metrics"]

#: The statuses a key can have (``CommandMetrics.status``).
STATUSES: tuple[str, ...] = ("up", "restarting", "down")

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _bound(seconds: float) -> str:
    return repr(seconds)


def _fraction(percentile: str) -> str:
    """Hystrix's percentile key as the ``percentile`` label, a fraction: "99.5" -> "0.995"."""
    return format(float(percentile) / 100, "g")


class _Families:
    """One scrape's metric families, by name, filled key by key."""

    def __init__(self, prefix: str) -> None:
        p = prefix
        self.events = CounterMetricFamily(
            f"{p}_events", "Events since the key started.", labels=["command", "event"]
        )
        self.rolling = GaugeMetricFamily(
            f"{p}_rolling_events",
            "Events within the rolling window (goes down as buckets expire).",
            labels=["command", "event"],
        )
        self.transitions = CounterMetricFamily(
            f"{p}_circuit_transitions",
            "Circuit transitions since the key started, by the state entered.",
            labels=["command", "state"],
        )
        self.state = GaugeMetricFamily(
            f"{p}_circuit_state",
            "1 for the circuit's current state, 0 for the others.",
            labels=["command", "state"],
        )
        self.status = GaugeMetricFamily(
            f"{p}_status",
            "1 for the key's current status (up, restarting, down), 0 for the others.",
            labels=["command", "status"],
        )
        self.error_ratio = GaugeMetricFamily(
            f"{p}_error_ratio",
            "Errors / requests in the rolling window, as the breaker counts them.",
            labels=["command"],
        )
        self.in_flight = GaugeMetricFamily(
            f"{p}_in_flight",
            "Calls admitted whose run has not returned (running, queued or timed out).",
            labels=["command"],
        )
        self.queue = GaugeMetricFamily(
            f"{p}_queue", "Calls admitted and waiting for a worker.", labels=["command"]
        )
        self.zombies = GaugeMetricFamily(
            f"{p}_zombies",
            "Workers abandoned while stuck in run, not yet returned.",
            labels=["command"],
        )
        self.limit = GaugeMetricFamily(
            f"{p}_concurrency_limit",
            "The key's concurrency limit now: max_concurrent_requests, or its adaptive limit's.",
            labels=["command"],
        )
        self.latency = GaugeMetricFamily(
            f"{p}_latency_seconds",
            "Latency percentiles (as fractions, 0-1) over the rolling latency window (execute:"
            " run; total: the ask).",
            labels=["command", "kind", "percentile"],
        )
        self.durations = {
            "execute": HistogramMetricFamily(
                f"{p}_run_duration_seconds",
                "How long run took, every call since the key started.",
                labels=["command"],
            ),
            "total": HistogramMetricFamily(
                f"{p}_ask_duration_seconds",
                "How long an ask took, admission to answer (fallback included), since the key"
                " started.",
                labels=["command"],
            ),
        }
        self.latency_mean = GaugeMetricFamily(
            f"{p}_latency_mean_seconds",
            "Mean latency over the rolling latency window.",
            labels=["command", "kind"],
        )
        self.workers = GaugeMetricFamily(
            f"{p}_pool_workers", "Worker actors alive.", labels=["command"]
        )
        self.active = GaugeMetricFamily(
            f"{p}_pool_active_workers", "Workers running a call.", labels=["command"]
        )
        self.max_workers = GaugeMetricFamily(
            f"{p}_pool_max_workers",
            "The pool's limit (max_concurrent_requests).",
            labels=["command"],
        )
        self.completed = CounterMetricFamily(
            f"{p}_pool_completed",
            "Calls that ran on a worker since the key started.",
            labels=["command"],
        )
        self.info = GaugeMetricFamily(
            f"{p}_command_info",
            "1 per key, with its group and thread pool.",
            labels=["command", "group", "thread_pool"],
        )
        self.fault_injected = GaugeMetricFamily(
            f"{p}_fault_injected",
            "1 while a fault injection (registry.inject) faults the key's runs, else 0.",
            labels=["command"],
        )

    def all(self) -> list[Metric]:
        families = [value for value in vars(self).values() if isinstance(value, Metric)]
        return [*families, *self.durations.values()]

    def add(self, m: CommandMetrics) -> None:
        key = m.key
        for event in EventType:
            self.events.add_metric([key, event.value], m.totals.get(event, 0))
            self.rolling.add_metric([key, event.value], m.counts.get(event, 0))
        for state in CircuitState:
            self.transitions.add_metric([key, state.value], m.transitions.get(state.value, 0))
            self.state.add_metric([key, state.value], 1 if m.state is state else 0)
        for status in STATUSES:
            self.status.add_metric([key, status], 1 if m.status == status else 0)
        self.error_ratio.add_metric([key], m.error_percent / 100)
        self.in_flight.add_metric([key], m.in_flight)
        self.queue.add_metric([key], m.pool.queued)
        self.zombies.add_metric([key], m.zombies)
        self.limit.add_metric([key], m.limit)
        self._latency(key, "execute", m.latency_execute)
        self._latency(key, "total", m.latency_total)
        self.workers.add_metric([key], m.pool.pool_size)
        self.active.add_metric([key], m.pool.active)
        self.max_workers.add_metric([key], m.pool.max_pool_size)
        self.completed.add_metric([key], m.pool.completed)
        self.info.add_metric([key, m.group, m.pool.name], 1)
        self.fault_injected.add_metric([key], 0 if m.injection is None else 1)

    def _latency(self, key: str, kind: str, latency: Latency) -> None:
        for percentile in PERCENTILES:
            value = latency.percentiles.get(percentile, 0.0)
            self.latency.add_metric([key, kind, _fraction(percentile)], value)
        self.latency_mean.add_metric([key, kind], latency.mean)
        lifetime = latency.lifetime
        buckets = [(_bound(bound), count) for bound, count in lifetime.buckets]
        buckets.append(("+Inf", lifetime.count))
        self.durations[kind].add_metric([key], buckets, lifetime.sum)


class _CollapserFamilies:
    """One scrape's ``<prefix>_collapser_*`` families, filled collapser by collapser."""

    def __init__(self, prefix: str) -> None:
        p = prefix
        self.batch_size = HistogramMetricFamily(
            f"{p}_collapser_batch_size",
            "Requests per batch sent, every batch since the collapser was registered (_count:"
            " batches; _sum: requests collapsed).",
            labels=["collapser"],
        )
        self.from_cache = CounterMetricFamily(
            f"{p}_collapser_responses_from_cache",
            "Asks answered from the request cache since the collapser was registered.",
            labels=["collapser"],
        )
        self.info = GaugeMetricFamily(
            f"{p}_collapser_info",
            "1 per collapser, with its batch command and group.",
            labels=["collapser", "batch_command", "group"],
        )

    def all(self) -> list[Metric]:
        return [self.batch_size, self.from_cache, self.info]

    def add(self, c: CollapserMetrics) -> None:
        key = c.key
        sizes = c.batch_sizes
        buckets = [(str(bound), count) for bound, count in sizes.buckets]
        buckets.append(("+Inf", sizes.count))
        self.batch_size.add_metric([key], buckets, sizes.sum)
        self.from_cache.add_metric([key], c.responses_from_cache_total)
        self.info.add_metric([key, c.batch_command, c.group or ""], 1)


class _FleetFamilies:
    """One scrape's ``<prefix>_fleet_*`` families: this node's view of the fleet's circuits."""

    def __init__(self, prefix: str) -> None:
        p = prefix
        self.connected = GaugeMetricFamily(
            f"{p}_fleet_connected",
            "1 while this node reaches the fleet's Redis, else 0.",
            labels=["node"],
        )
        self.nodes = GaugeMetricFamily(
            f"{p}_fleet_nodes",
            "Nodes that reported the key to the fleet within its rolling window.",
            labels=["command", "node"],
        )
        self.state = GaugeMetricFamily(
            f"{p}_fleet_circuit_state",
            "1 for the fleet circuit's current state, 0 for the others.",
            labels=["command", "node", "state"],
        )
        self.error_ratio = GaugeMetricFamily(
            f"{p}_fleet_error_ratio",
            "Errors / requests in the fleet's summed rolling window.",
            labels=["command", "node"],
        )
        self.probe_holder = GaugeMetricFamily(
            f"{p}_fleet_probe_holder",
            "1 while this node holds the fleet's half-open probe for the key, else 0.",
            labels=["command", "node"],
        )

    def all(self) -> list[Metric]:
        return [value for value in vars(self).values() if isinstance(value, Metric)]

    def add(self, node: str, key: str, view: FleetView) -> None:
        self.nodes.add_metric([key, node], view.nodes)
        for state in CircuitState:
            self.state.add_metric([key, node, state.value], 1 if view.state is state else 0)
        self.error_ratio.add_metric([key, node], view.error_percent / 100)
        self.probe_holder.add_metric([key, node], 1 if view.probe_holder == node else 0)


def _resolved(source: MetricsSource | None) -> MetricsSource:
    if source is None:
        from .registry import CommandRegistry  # noqa: PLC0415 - the registry imports the actors

        return CommandRegistry.default()
    return source


def _fleet_of(source: object) -> Any:
    """The source's fleet, when it has one and names its node (a ``CommandRegistry``'s)."""
    fleet = getattr(source, "fleet", None)
    return fleet if isinstance(getattr(fleet, "node", None), str) else None


def _fleet_view(source: Any, key: str) -> FleetView | None:
    view = getattr(source.health(key), "fleet", None)
    return view if isinstance(view, FleetView) else None


class HystrixCollector(Collector):
    """Reads ``source.all_metrics()`` at scrape time (None: the default registry)."""

    def __init__(self, source: MetricsSource | None = None, *, prefix: str = "hystrix") -> None:
        if not isinstance(prefix, str) or not _NAME.fullmatch(prefix):
            msg = (
                "prefix must be a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), "
                f"got {show(prefix)}"
            )
            raise ValueError(msg)
        self._source = source
        self._prefix = prefix

    def describe(self) -> Iterable[Metric]:
        """The families without samples: registering reads no metrics (nor starts a registry).
        The fleet's are among them when the source given has a fleet."""
        families = [*_Families(self._prefix).all(), *_CollapserFamilies(self._prefix).all()]
        if self._source is not None and _fleet_of(self._source) is not None:
            families += _FleetFamilies(self._prefix).all()
        return families

    def collect(self) -> Iterator[Metric]:
        source = _resolved(self._source)
        families = _Families(self._prefix)
        metrics = source.all_metrics()
        for m in metrics:
            families.add(m)
        yield from families.all()
        collapsers = _CollapserFamilies(self._prefix)
        for c in collapser_snapshots(source):
            collapsers.add(c)
        yield from collapsers.all()
        fleet = _fleet_of(source)
        if fleet is None:
            return
        node: str = fleet.node
        fleet_families = _FleetFamilies(self._prefix)
        connected = getattr(fleet, "connected", None) is True
        fleet_families.connected.add_metric([node], 1 if connected else 0)
        for m in metrics:
            view = _fleet_view(source, m.key)
            if view is not None:
                fleet_families.add(node, m.key, view)
        yield from fleet_families.all()


def register_metrics(
    source: MetricsSource | None = None,
    *,
    registry: CollectorRegistry = REGISTRY,
    prefix: str = "hystrix",
) -> HystrixCollector:
    """Register a ``HystrixCollector`` for ``source`` (a ``CommandRegistry``; None: the default
    one) into ``registry``, prometheus_client's registry (its ``REGISTRY`` unless told, as its
    own metrics take ``registry=``); returns it (``registry.unregister`` removes it)."""
    collector = HystrixCollector(source, prefix=prefix)
    registry.register(collector)
    return collector


def collector_registry(source: MetricsSource | None = None) -> CollectorRegistry:
    """A private ``CollectorRegistry`` holding only a ``HystrixCollector`` for ``source``."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(HystrixCollector(source))
    return registry


def exposition(registry: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
    """The scrape body and its content type, in the format the ``Accept`` header asks for
    (Prometheus text by default, OpenMetrics when asked)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
