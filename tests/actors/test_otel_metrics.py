"""OpenTelemetry metrics: the Prometheus collector's figures as observable instruments, read
from hand-made snapshots and from a real registry by the SDK's in-memory reader."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader, Sum
from sample_metrics import COUNTS, EXECUTE, TOTAL, TOTALS, Source, sample

from actors import Command, CommandConfig, CommandRegistry
from actors.otel import OtelMetrics, register_metrics
from actors.otel_metrics import COLLAPSER_INSTRUMENTS, INSTRUMENTS
from supervision import CircuitState, EventType, FakeClock
from supervision.snapshot import PERCENTILES, Histogram, Latency

Points = dict[tuple[str, frozenset[tuple[str, Any]]], float]


class Reader:
    """A meter provider with an in-memory reader, and what one collection reads."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def register(self, source: Any, **options: Any) -> OtelMetrics:
        return register_metrics(source, meter_provider=self.provider, **options)

    def collect(self) -> tuple[Points, dict[str, tuple[str, str]]]:
        """Every point by (name, attributes), and each instrument's (kind, unit)."""
        points: Points = {}
        kinds: dict[str, tuple[str, str]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                assert scope.scope.name == "hystrix-actors"
                for metric in scope.metrics:
                    kinds[metric.name] = (_kind(metric.data), metric.unit or "")
                    for point in metric.data.data_points:
                        attributes = frozenset((point.attributes or {}).items())
                        points[metric.name, attributes] = point.value  # type: ignore[union-attr]
        return points, kinds


def _kind(data: Any) -> str:
    if isinstance(data, Sum):
        return "counter" if data.is_monotonic else "up_down_counter"
    assert isinstance(data, Gauge), data
    return "gauge"


@pytest.fixture
def meter() -> Iterator[Reader]:
    reader = Reader()
    try:
        yield reader
    finally:
        reader.provider.shutdown()


#: The group of each key used here: sample()'s, this module's command class's, functions'.
GROUPS = {"a": "Issues", "b": "Issues", "remote": __name__}


def value(points: Points, name: str, key: str = "a", **attributes: str) -> float:
    group = GROUPS.get(key, "functions")
    common = {"hystrix.command.key": key, "hystrix.command.group": group}
    return points[name, frozenset({**common, **attributes}.items())]


# -- from hand-made snapshots --------------------------------------------------------------------


def test_every_instrument_has_the_kind_and_unit_its_name_promises(meter: Reader) -> None:
    meter.register(Source(sample("a")))
    _, kinds = meter.collect()

    assert kinds == {
        "hystrix.events": ("counter", "{event}"),
        "hystrix.rolling_events": ("gauge", "{event}"),
        "hystrix.circuit.transitions": ("counter", "{transition}"),
        "hystrix.circuit.state": ("gauge", "1"),
        "hystrix.status": ("gauge", "1"),
        "hystrix.error_ratio": ("gauge", "1"),
        "hystrix.in_flight": ("up_down_counter", "{call}"),
        "hystrix.queue": ("up_down_counter", "{call}"),
        "hystrix.zombies": ("up_down_counter", "{worker}"),
        "hystrix.latency": ("gauge", "s"),
        "hystrix.latency.mean": ("gauge", "s"),
        "hystrix.duration.count": ("counter", "{call}"),
        "hystrix.duration.sum": ("counter", "s"),
        "hystrix.duration.bucket": ("counter", "{call}"),
        "hystrix.pool.workers": ("up_down_counter", "{worker}"),
        "hystrix.pool.workers.active": ("up_down_counter", "{worker}"),
        "hystrix.pool.workers.limit": ("up_down_counter", "{worker}"),
        "hystrix.pool.completed": ("counter", "{call}"),
    }
    assert [f"hystrix.{spec.name}" for spec in INSTRUMENTS] == list(kinds)


def test_the_event_counter_is_the_lifetime_totals_and_the_gauge_the_rolling_counts(
    meter: Reader,
) -> None:
    meter.register(Source(sample("a")))
    points, _ = meter.collect()

    for event in EventType:
        assert value(points, "hystrix.events", **{"hystrix.event": event}) == TOTALS[event]
        assert value(points, "hystrix.rolling_events", **{"hystrix.event": event}) == COUNTS[event]


def test_the_current_state_and_status_read_one_and_the_others_zero(meter: Reader) -> None:
    meter.register(
        Source(sample("a"), sample("b", state=CircuitState.HALF_OPEN, status="restarting"))
    )
    points, _ = meter.collect()

    for key, current in (("a", "closed"), ("b", "half_open")):
        for state in CircuitState:
            attributes = {"hystrix.circuit.state": state.value}
            expected = 1 if state.value == current else 0
            assert value(points, "hystrix.circuit.state", key, **attributes) == expected
    for status, expected in (("up", 0), ("restarting", 1), ("down", 0)):
        assert value(points, "hystrix.status", "b", **{"hystrix.status": status}) == expected
    opened = {"hystrix.circuit.state": "open"}
    assert value(points, "hystrix.circuit.transitions", **opened) == 3


def test_load_figures_come_from_the_key_and_its_pool(meter: Reader) -> None:
    meter.register(Source(sample("a")))
    points, _ = meter.collect()

    assert value(points, "hystrix.in_flight") == 3
    assert value(points, "hystrix.queue") == 1
    assert value(points, "hystrix.zombies") == 2
    assert value(points, "hystrix.error_ratio") == pytest.approx(19 / 29)
    assert value(points, "hystrix.pool.workers") == 5
    assert value(points, "hystrix.pool.workers.active") == 2
    assert value(points, "hystrix.pool.workers.limit") == 12
    assert value(points, "hystrix.pool.completed") == 30


def test_latencies_are_seconds_with_percentiles_as_fractions(meter: Reader) -> None:
    meter.register(Source(sample("a")))
    points, _ = meter.collect()

    fractions = ["0", "0.25", "0.5", "0.75", "0.9", "0.95", "0.99", "0.995", "1"]
    for kind, latency in (("execute", EXECUTE), ("total", TOTAL)):
        for percentile, fraction in zip(PERCENTILES, fractions, strict=True):
            attributes = {"hystrix.latency.kind": kind, "hystrix.percentile": fraction}
            assert value(points, "hystrix.latency", **attributes) == latency.percentiles[percentile]
        mean = value(points, "hystrix.latency.mean", **{"hystrix.latency.kind": kind})
        assert mean == latency.mean


def test_the_lifetime_histogram_is_a_count_a_sum_and_cumulative_buckets(meter: Reader) -> None:
    lifetime = Histogram(((0.001, 2), (0.01, 5), (0.1, 7)), count=8, sum=0.75)
    execute = Latency(count=1, mean=0.0, percentiles={}, lifetime=lifetime)
    meter.register(Source(sample("a", latency_execute=execute)))
    points, _ = meter.collect()

    kind = {"hystrix.latency.kind": "execute"}
    assert value(points, "hystrix.duration.count", **kind) == 8
    assert value(points, "hystrix.duration.sum", **kind) == 0.75
    buckets = {
        bound: value(points, "hystrix.duration.bucket", **kind, **{"hystrix.bucket.le": bound})
        for bound in ("0.001", "0.01", "0.1", "+Inf")
    }
    assert buckets == {"0.001": 2, "0.01": 5, "0.1": 7, "+Inf": 8}


def test_registering_reads_nothing_each_collection_reads_once_and_close_stops_it(
    meter: Reader,
) -> None:
    source = Source(sample("a"))
    metrics = meter.register(source)
    assert source.reads == 0

    meter.collect()
    meter.collect()
    assert source.reads == 2

    metrics.close()
    points, _ = meter.collect()
    assert source.reads == 2
    assert points == {}


def test_a_prefix_names_every_instrument(meter: Reader) -> None:
    metrics = meter.register(Source(sample("a")), prefix="svc.hystrix")
    points, kinds = meter.collect()

    assert all(name.startswith("svc.hystrix.") for name in kinds)
    # the collapser instruments report nothing for a source without collapsers
    assert list(metrics.names) == [
        *kinds,
        *(f"svc.hystrix.{spec[0]}" for spec in COLLAPSER_INSTRUMENTS),
    ]
    assert value(points, "svc.hystrix.in_flight") == 3


@pytest.mark.parametrize("prefix", ["", "9lives", "a b", "é", 3])
def test_a_bad_prefix_is_refused_with_its_name(meter: Reader, prefix: Any) -> None:
    with pytest.raises(ValueError, match=r"prefix must be an OpenTelemetry instrument name .* got"):
        meter.register(Source(), prefix=prefix)


def test_no_keys_yet_reports_no_points(meter: Reader) -> None:
    meter.register(Source())
    points, _ = meter.collect()

    assert points == {}


# -- from a real registry ------------------------------------------------------------------------


class Remote(Command):
    key = "remote"
    config = CommandConfig(timeout=0.1, request_volume_threshold=100)

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def run(self, payload: str) -> str:
        if payload == "fail":
            raise RuntimeError("boom")
        if payload == "slow":
            self.release.wait(5.0)
        return "ok"

    def fallback(self, payload: str, error: BaseException) -> str:
        return "fallback"


def test_a_real_registry_s_outcomes_load_state_and_latencies_are_reported(
    meter: Reader,
    registry: CommandRegistry,
    clock: FakeClock,
    eventually: Callable[..., None],
) -> None:
    release = threading.Event()
    registry.register(Remote, release)
    meter.register(registry)
    try:
        outcomes = [registry.ask("remote", payload) for payload in ("ok", "ok", "fail", "slow")]
        assert outcomes == ["ok", "ok", "fallback", "fallback"]  # the slow one timed out

        points, _ = meter.collect()
        assert value(points, "hystrix.in_flight", "remote") == 1  # the timed-out run goes on
    finally:
        release.set()
    eventually(lambda: registry.metrics("remote").in_flight == 0, what="the slow run returned")

    registry.configure("remote", CommandConfig(timeout=0.1, force_open=True))
    assert registry.ask("remote", "ok") == "fallback"  # short-circuited
    points, _ = meter.collect()
    snapshot = registry.metrics("remote")

    def events(event: EventType) -> float:
        return value(points, "hystrix.events", "remote", **{"hystrix.event": event})

    assert events(EventType.SUCCESS) == 2
    assert (events(EventType.FAILURE), events(EventType.TIMEOUT)) == (1, 1)
    assert events(EventType.SHORT_CIRCUITED) == 1
    assert events(EventType.FALLBACK_SUCCESS) == 3
    assert value(points, "hystrix.in_flight", "remote") == 0
    assert value(points, "hystrix.circuit.state", "remote", **{"hystrix.circuit.state": "open"})
    # the latency figures are the snapshot's, and every ask was timed
    for kind, latency in (("execute", snapshot.latency_execute), ("total", snapshot.latency_total)):
        kind_of = {"hystrix.latency.kind": kind}
        assert (
            value(points, "hystrix.duration.count", "remote", **kind_of) == latency.lifetime.count
        )
        assert value(points, "hystrix.duration.sum", "remote", **kind_of) == latency.lifetime.sum
        assert value(points, "hystrix.latency.mean", "remote", **kind_of) == latency.mean
    total = {"hystrix.latency.kind": "total"}
    assert value(points, "hystrix.duration.count", "remote", **total) == 5
    slowest = {**total, "hystrix.percentile": "1"}
    assert value(points, "hystrix.latency", "remote", **slowest) >= 0.1  # the timeout's


def test_a_registry_shut_down_reports_no_keys(meter: Reader, clock: FakeClock) -> None:
    registry = CommandRegistry(clock=clock)
    meter.register(registry)
    registry.do("gone", lambda: 1)
    points, _ = meter.collect()
    assert value(points, "hystrix.pool.completed", "gone") == 1
    registry.shutdown()

    points, _ = meter.collect()

    assert points == {}


def test_register_metrics_of_none_reads_the_default_registry(meter: Reader) -> None:
    CommandRegistry.reset()
    try:
        meter.register(None)
        CommandRegistry.do("otel-default", lambda: 1)

        points, _ = meter.collect()

        attributes = {"hystrix.event": "SUCCESS"}
        assert value(points, "hystrix.events", "otel-default", **attributes) == 1
    finally:
        CommandRegistry.reset()


def test_every_instrument_is_documented() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "opentelemetry.md").read_text("utf-8")

    for spec in INSTRUMENTS:
        kind = spec.kind.replace("up_down_", "up-down ")
        assert f"| `hystrix.{spec.name}` | {kind} | `{spec.unit}` |" in page, spec.name
    for name, kind, unit, _, _ in COLLAPSER_INSTRUMENTS:
        assert f"| `hystrix.{name}` | {kind} | `{unit}` |" in page, name
