"""OpenTelemetry metrics for every command key: the Prometheus collector's figures, as instruments.

Nothing is recorded on the call path. Each instrument is asynchronous (observable): at collection
time its callback reads ``source.all_metrics()`` snapshots, as the Prometheus collector does at
scrape time, and reports one observation per key (and event, state, ...)::

    from actors.otel import register_metrics
    register_metrics(registry)      # the global meter provider; meter_provider= for another

Every observation carries ``hystrix.command.key`` and ``hystrix.command.group``. The names,
units and attributes are in ``INSTRUMENTS`` and in ``docs/opentelemetry.md``. The API has no
observable histogram, so a key's lifetime latency histogram is emitted as three observable
counters (``.count``, ``.sum``, and ``.bucket`` per upper bound ``hystrix.bucket.le``,
cumulative like a Prometheus histogram's buckets) rather than an OpenTelemetry histogram. The
attribute is not ``le``, which Prometheus reserves for histograms (the counter would be refused
by its linters once exported there).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.util.types import AttributeValue

from supervision import CircuitState, CommandError, EventType
from supervision.checks import show
from supervision.collapsing import CollapserMetrics
from supervision.snapshot import PERCENTILES, CommandMetrics, Latency

from .stream import MetricsSource, collapser_snapshots, snapshots

__all__ = [
    "COLLAPSER_INSTRUMENTS",
    "INSTRUMENTATION_NAME",
    "INSTRUMENTS",
    "STATUSES",
    "VERSION",
    "Instrument",
    "OtelMetrics",
    "register_metrics",
]

#: The statuses a key can have (``CommandMetrics.status``).
STATUSES: tuple[str, ...] = ("up", "restarting", "down")

_NAME = re.compile(r"[a-zA-Z][-_./a-zA-Z0-9]{0,200}")

#: The instrumentation scope of our spans and metrics.
INSTRUMENTATION_NAME = "hystrix-actors"

try:
    VERSION = importlib.metadata.version("hystrix-actors")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
    VERSION = ""

KEY = "hystrix.command.key"
GROUP = "hystrix.command.group"
LE = "hystrix.bucket.le"

Attributes = dict[str, AttributeValue]
#: A key's observations for one instrument: (value, attributes beyond the key and group).
Points = Callable[[CommandMetrics], Iterator[tuple[float, Attributes]]]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Instrument:
    """One observable instrument: its name after the prefix, kind, unit and what it reports."""

    name: str
    kind: str  # "counter", "up_down_counter" or "gauge"
    unit: str
    description: str
    points: Points


def _one(value: float) -> Iterator[tuple[float, Attributes]]:
    yield value, {}


def _events(m: CommandMetrics) -> Iterator[tuple[float, Attributes]]:
    for event in EventType:
        yield m.totals.get(event, 0), {"hystrix.event": event.value}


def _rolling(m: CommandMetrics) -> Iterator[tuple[float, Attributes]]:
    for event in EventType:
        yield m.counts.get(event, 0), {"hystrix.event": event.value}


def _transitions(m: CommandMetrics) -> Iterator[tuple[float, Attributes]]:
    for state in CircuitState:
        yield m.transitions.get(state.value, 0), {"hystrix.circuit.state": state.value}


def _state(m: CommandMetrics) -> Iterator[tuple[float, Attributes]]:
    for state in CircuitState:
        yield (1 if m.state is state else 0), {"hystrix.circuit.state": state.value}


def _status(m: CommandMetrics) -> Iterator[tuple[float, Attributes]]:
    for status in STATUSES:
        yield (1 if m.status == status else 0), {"hystrix.status": status}


def _kinds(m: CommandMetrics) -> Iterator[tuple[str, Latency]]:
    yield "execute", m.latency_execute
    yield "total", m.latency_total


def _fraction(percentile: str) -> str:
    """Hystrix's percentile key as a fraction, as the Prometheus label: "99.5" -> "0.995"."""
    return format(float(percentile) / 100, "g")


def _percentiles(m: CommandMetrics) -> Iterator[tuple[float, Attributes]]:
    for kind, latency in _kinds(m):
        for percentile in PERCENTILES:
            value = latency.percentiles.get(percentile, 0.0)
            yield value, {"hystrix.latency.kind": kind, "hystrix.percentile": _fraction(percentile)}


def _mean(m: CommandMetrics) -> Iterator[tuple[float, Attributes]]:
    for kind, latency in _kinds(m):
        yield latency.mean, {"hystrix.latency.kind": kind}


def _count(m: CommandMetrics) -> Iterator[tuple[float, Attributes]]:
    for kind, latency in _kinds(m):
        yield latency.lifetime.count, {"hystrix.latency.kind": kind}


def _sum(m: CommandMetrics) -> Iterator[tuple[float, Attributes]]:
    for kind, latency in _kinds(m):
        yield latency.lifetime.sum, {"hystrix.latency.kind": kind}


def _buckets(m: CommandMetrics) -> Iterator[tuple[float, Attributes]]:
    for kind, latency in _kinds(m):
        lifetime = latency.lifetime
        for bound, count in lifetime.buckets:
            yield count, {"hystrix.latency.kind": kind, LE: repr(bound)}
        yield lifetime.count, {"hystrix.latency.kind": kind, LE: "+Inf"}


_KINDS = "hystrix.latency.kind: execute (run alone) or total (the ask, fallback included)"

#: Every instrument, in the order they are created (names after the prefix and a dot).
INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument(
        name="events",
        kind="counter",
        unit="{event}",
        description="Events since the key started, by hystrix.event.",
        points=_events,
    ),
    Instrument(
        name="rolling_events",
        kind="gauge",
        unit="{event}",
        description="Events within the rolling window (goes down as buckets expire).",
        points=_rolling,
    ),
    Instrument(
        name="circuit.transitions",
        kind="counter",
        unit="{transition}",
        description="Circuit transitions since the key started, by the state entered.",
        points=_transitions,
    ),
    Instrument(
        name="circuit.state",
        kind="gauge",
        unit="1",
        description="1 for the circuit's current state, 0 for the others.",
        points=_state,
    ),
    Instrument(
        name="status",
        kind="gauge",
        unit="1",
        description="1 for the key's current status (up, restarting, down), 0 for the others.",
        points=_status,
    ),
    Instrument(
        name="error_ratio",
        kind="gauge",
        unit="1",
        description="Errors / requests in the rolling window, as the breaker counts them (0-1).",
        points=lambda m: _one(m.error_percent / 100),
    ),
    Instrument(
        name="in_flight",
        kind="up_down_counter",
        unit="{call}",
        description="Calls admitted whose run has not returned (running, queued or timed out).",
        points=lambda m: _one(m.in_flight),
    ),
    Instrument(
        name="queue",
        kind="up_down_counter",
        unit="{call}",
        description="Calls admitted and waiting for a worker.",
        points=lambda m: _one(m.pool.queued),
    ),
    Instrument(
        name="zombies",
        kind="up_down_counter",
        unit="{worker}",
        description="Workers abandoned while stuck in run, not yet returned.",
        points=lambda m: _one(m.zombies),
    ),
    Instrument(
        name="latency",
        kind="gauge",
        unit="s",
        description="Latency percentiles (hystrix.percentile, a fraction 0-1) over the rolling"
        f" latency window; {_KINDS}.",
        points=_percentiles,
    ),
    Instrument(
        name="latency.mean",
        kind="gauge",
        unit="s",
        description=f"Mean latency over the rolling latency window; {_KINDS}.",
        points=_mean,
    ),
    Instrument(
        name="duration.count",
        kind="counter",
        unit="{call}",
        description=f"Calls timed since the key started; {_KINDS}.",
        points=_count,
    ),
    Instrument(
        name="duration.sum",
        kind="counter",
        unit="s",
        description=f"Seconds spent by the calls timed since the key started; {_KINDS}.",
        points=_sum,
    ),
    Instrument(
        name="duration.bucket",
        kind="counter",
        unit="{call}",
        description=f"Calls since the key started that took at most {LE} seconds (cumulative,"
        f" as a Prometheus histogram's buckets; +Inf: all); {_KINDS}.",
        points=_buckets,
    ),
    Instrument(
        name="pool.workers",
        kind="up_down_counter",
        unit="{worker}",
        description="Worker actors alive.",
        points=lambda m: _one(m.pool.pool_size),
    ),
    Instrument(
        name="pool.workers.active",
        kind="up_down_counter",
        unit="{worker}",
        description="Workers running a call.",
        points=lambda m: _one(m.pool.active),
    ),
    Instrument(
        name="pool.workers.limit",
        kind="up_down_counter",
        unit="{worker}",
        description="The pool's limit (max_concurrent_requests).",
        points=lambda m: _one(m.pool.max_pool_size),
    ),
    Instrument(
        name="pool.completed",
        kind="counter",
        unit="{call}",
        description="Calls that ran on a worker since the key started.",
        points=lambda m: _one(m.pool.completed),
    ),
)

COLLAPSER = "hystrix.collapser.key"
BATCH_COMMAND = "hystrix.collapser.batch_command"
#: A collapser's observations for one instrument: (value, attributes beyond its key and batch
#: command).
CollapserPoints = Callable[[CollapserMetrics], Iterator[tuple[float, Attributes]]]


def _batch_sizes(c: CollapserMetrics) -> Iterator[tuple[float, Attributes]]:
    for bound, count in c.batch_sizes.buckets:
        yield count, {LE: str(bound)}
    yield c.batch_sizes.count, {LE: "+Inf"}


#: Every collapser instrument (docs/collapsing.md), created after ``INSTRUMENTS``; each
#: observation carries ``hystrix.collapser.key`` and ``hystrix.collapser.batch_command``.
COLLAPSER_INSTRUMENTS: tuple[tuple[str, str, str, str, CollapserPoints], ...] = (
    (
        "collapser.batches",
        "counter",
        "{batch}",
        "Batches sent since the collapser was registered.",
        lambda c: _one(c.batches_total),
    ),
    (
        "collapser.requests",
        "counter",
        "{request}",
        "Requests collapsed into batches since the collapser was registered.",
        lambda c: _one(c.requests_collapsed_total),
    ),
    (
        "collapser.responses_from_cache",
        "counter",
        "{request}",
        "Asks answered from the request cache since the collapser was registered.",
        lambda c: _one(c.responses_from_cache_total),
    ),
    (
        "collapser.batch_size.bucket",
        "counter",
        "{batch}",
        f"Batches since the collapser was registered of at most {LE} requests (cumulative, as a"
        " Prometheus histogram's buckets; +Inf: all).",
        _batch_sizes,
    ),
)

#: How old the snapshots read at the start of a collection may be for the later instruments of
#: that collection to reuse them rather than read again.
_REUSE_FOR = 1.0


class OtelMetrics:
    """The instruments registered for ``source``; ``close()`` stops them reporting (the API
    cannot remove an instrument)."""

    def __init__(self, source: MetricsSource | None, meter: metrics.Meter, prefix: str) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._snapshots: Sequence[CommandMetrics] = ()
        self._read_at = -_REUSE_FOR
        self._closed = False
        self.names: tuple[str, ...] = tuple(f"{prefix}.{spec.name}" for spec in INSTRUMENTS)
        create = {
            "counter": meter.create_observable_counter,
            "up_down_counter": meter.create_observable_up_down_counter,
            "gauge": meter.create_observable_gauge,
        }
        for n, (name, spec) in enumerate(zip(self.names, INSTRUMENTS, strict=True)):
            create[spec.kind](
                name,
                callbacks=[self._callback(spec.points, first=n == 0)],
                unit=spec.unit,
                description=spec.description,
            )
        for name, kind, unit, description, collapser_points in COLLAPSER_INSTRUMENTS:
            full = f"{prefix}.{name}"
            self.names += (full,)
            create[kind](
                full,
                callbacks=[self._collapser_callback(collapser_points)],
                unit=unit,
                description=description,
            )

    def close(self) -> None:
        """Report nothing from now on, and let go of the source's snapshots."""
        with self._lock:
            self._closed = True
            self._snapshots = ()

    def _read(self, fresh: bool) -> Sequence[CommandMetrics]:
        """The snapshots of this collection: the SDK calls the callbacks in the instruments'
        creation order, so the first reads and the others reuse what it read (one
        ``all_metrics()`` per collection); a reuse is never older than ``_REUSE_FOR``."""
        with self._lock:
            if self._closed:
                return ()
            now = time.monotonic()
            if fresh or now - self._read_at > _REUSE_FOR:
                try:
                    self._snapshots = snapshots(self._source)
                except CommandError as error:
                    if error.reason != "shutdown":
                        raise
                    self._snapshots = ()  # the registry was shut down: no keys to report
                self._read_at = now
            return self._snapshots

    def _callback(
        self, points: Points, *, first: bool
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            observations: list[Observation] = []
            for m in self._read(first):
                common: Attributes = {KEY: m.key, GROUP: m.group}
                for value, attributes in points(m):
                    observations.append(Observation(value, {**common, **attributes}))
            return observations

        return observe

    def _collapser_callback(
        self, points: CollapserPoints
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                if self._closed:
                    return []
            try:
                collapsers = collapser_snapshots(self._source)
            except CommandError as error:
                if error.reason != "shutdown":
                    raise
                return []
            observations: list[Observation] = []
            for c in collapsers:
                common: Attributes = {COLLAPSER: c.key, BATCH_COMMAND: c.batch_command}
                for value, attributes in points(c):
                    observations.append(Observation(value, {**common, **attributes}))
            return observations

        return observe


def register_metrics(
    source: MetricsSource | None = None,
    *,
    meter_provider: metrics.MeterProvider | None = None,
    prefix: str = "hystrix",
) -> OtelMetrics:
    """Create observable instruments reporting ``source``'s keys (a ``CommandRegistry``; None:
    the default one, read at collection time) on ``meter_provider`` (None: the global one, even
    if set later); returns them (``close()`` stops them reporting)."""
    if not isinstance(prefix, str) or not _NAME.fullmatch(prefix):
        msg = (
            "prefix must be an OpenTelemetry instrument name ([a-zA-Z][-_./a-zA-Z0-9]*), "
            f"got {show(prefix)}"
        )
        raise ValueError(msg)
    meter = metrics.get_meter(INSTRUMENTATION_NAME, VERSION, meter_provider)
    return OtelMetrics(source, meter, prefix)
