"""Prometheus metrics: the collector's families from hand-made metrics and from a real registry,
parsed back with prometheus_client's own parser."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sample_metrics import COUNTS, EXECUTE, TOTAL, TOTALS, Source, sample

from actors import Command, CommandConfig, CommandRegistry
from actors.prometheus import HystrixCollector, collector_registry, exposition, register_metrics
from supervision import CircuitState, EventType, FakeClock
from supervision.snapshot import PERCENTILES

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(prometheus_registry: CollectorRegistry) -> tuple[Samples, dict[str, str]]:
    """Every sample by (name, labels), and every family's type, as Prometheus reads them."""
    text = generate_latest(prometheus_registry).decode()
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[s.name, frozenset(s.labels.items())] = s.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


def registry_of(*collectors: HystrixCollector) -> CollectorRegistry:
    prometheus_registry = CollectorRegistry()
    for collector in collectors:
        prometheus_registry.register(collector)
    return prometheus_registry


def test_every_family_has_the_type_its_name_promises() -> None:
    _, types = scrape(registry_of(HystrixCollector(Source(sample()))))

    assert types == {
        "hystrix_events": "counter",
        "hystrix_rolling_events": "gauge",
        "hystrix_circuit_transitions": "counter",
        "hystrix_circuit_state": "gauge",
        "hystrix_status": "gauge",
        "hystrix_error_ratio": "gauge",
        "hystrix_in_flight": "gauge",
        "hystrix_queue": "gauge",
        "hystrix_zombies": "gauge",
        "hystrix_concurrency_limit": "gauge",
        "hystrix_latency_seconds": "gauge",
        "hystrix_latency_mean_seconds": "gauge",
        "hystrix_pool_workers": "gauge",
        "hystrix_pool_active_workers": "gauge",
        "hystrix_pool_max_workers": "gauge",
        "hystrix_pool_completed": "counter",
        "hystrix_command_info": "gauge",
        "hystrix_fault_injected": "gauge",
        "hystrix_run_duration_seconds": "histogram",
        "hystrix_ask_duration_seconds": "histogram",
        "hystrix_collapser_batch_size": "histogram",
        "hystrix_collapser_responses_from_cache": "counter",
        "hystrix_collapser_info": "gauge",
    }


def test_no_family_uses_a_label_reserved_for_another_type() -> None:
    """``quantile`` belongs to summaries and ``le`` to histograms (promtool rejects the rest;
    ``test_promtool`` runs the whole check where promtool is installed)."""
    families = text_string_to_metric_families(
        generate_latest(registry_of(HystrixCollector(Source(sample("a"))))).decode()
    )

    misused = {
        (family.name, label)
        for family in families
        for s in family.samples
        for label, owner in (("quantile", "summary"), ("le", "histogram"))
        if label in s.labels and family.type != owner
    }
    assert misused == set()


def test_event_counters_are_lifetime_totals_and_the_gauges_the_rolling_counts() -> None:
    samples, _ = scrape(registry_of(HystrixCollector(Source(sample("a")))))

    for event in EventType:
        assert value(samples, "hystrix_events_total", command="a", event=event) == TOTALS[event]
        assert value(samples, "hystrix_rolling_events", command="a", event=event) == COUNTS[event]


def test_an_event_type_never_seen_is_exposed_as_zero() -> None:
    metrics = sample("a", totals={EventType.SUCCESS: 5}, counts={}, transitions={})
    samples, _ = scrape(registry_of(HystrixCollector(Source(metrics))))

    assert value(samples, "hystrix_events_total", command="a", event="SUCCESS") == 5
    assert value(samples, "hystrix_events_total", command="a", event="TIMEOUT") == 0
    assert value(samples, "hystrix_rolling_events", command="a", event="SUCCESS") == 0
    assert value(samples, "hystrix_circuit_transitions_total", command="a", state="open") == 0


def test_the_current_state_and_status_read_one_and_the_others_zero() -> None:
    source = Source(sample("a"), sample("b", state=CircuitState.HALF_OPEN, status="restarting"))
    samples, _ = scrape(registry_of(HystrixCollector(source)))

    for key, current in (("a", "closed"), ("b", "half_open")):
        for state in CircuitState:
            expected = 1 if state.value == current else 0
            assert value(samples, "hystrix_circuit_state", command=key, state=state) == expected
    assert value(samples, "hystrix_status", command="b", status="restarting") == 1
    assert value(samples, "hystrix_status", command="b", status="up") == 0
    assert value(samples, "hystrix_status", command="b", status="down") == 0
    assert value(samples, "hystrix_circuit_transitions_total", command="a", state="open") == 3


def test_load_gauges_come_from_the_key_and_its_pool() -> None:
    samples, _ = scrape(registry_of(HystrixCollector(Source(sample("a")))))

    assert value(samples, "hystrix_in_flight", command="a") == 3
    assert value(samples, "hystrix_queue", command="a") == 1
    assert value(samples, "hystrix_zombies", command="a") == 2
    assert value(samples, "hystrix_concurrency_limit", command="a") == 12
    assert value(samples, "hystrix_error_ratio", command="a") == pytest.approx(19 / 29)
    assert value(samples, "hystrix_pool_workers", command="a") == 5
    assert value(samples, "hystrix_pool_active_workers", command="a") == 2
    assert value(samples, "hystrix_pool_max_workers", command="a") == 12
    assert value(samples, "hystrix_pool_completed_total", command="a") == 30
    info = {"command": "a", "group": "Issues", "thread_pool": "pool-of-a"}
    assert value(samples, "hystrix_command_info", **info) == 1


def test_latencies_are_seconds_with_percentile_labels_as_fractions() -> None:
    samples, _ = scrape(registry_of(HystrixCollector(Source(sample("a")))))

    fractions = ["0", "0.25", "0.5", "0.75", "0.9", "0.95", "0.99", "0.995", "1"]
    for kind, latency in (("execute", EXECUTE), ("total", TOTAL)):
        for percentile, fraction in zip(PERCENTILES, fractions, strict=True):
            labels = {"command": "a", "kind": kind, "percentile": fraction}
            expected = latency.percentiles[percentile]
            assert value(samples, "hystrix_latency_seconds", **labels) == expected
        mean = value(samples, "hystrix_latency_mean_seconds", command="a", kind=kind)
        assert mean == latency.mean


def test_registering_reads_nothing_and_each_scrape_reads_once() -> None:
    source = Source(sample("a"))
    prometheus_registry = CollectorRegistry()

    collector = register_metrics(source, registry=prometheus_registry)
    assert source.reads == 0

    scrape(prometheus_registry)
    scrape(prometheus_registry)
    assert source.reads == 2

    prometheus_registry.unregister(collector)
    scrape(prometheus_registry)
    assert source.reads == 2


def test_registering_twice_is_refused_as_a_duplicate() -> None:
    prometheus_registry = CollectorRegistry()
    register_metrics(Source(), registry=prometheus_registry)

    with pytest.raises(ValueError, match="Duplicated timeseries"):
        register_metrics(Source(), registry=prometheus_registry)


def test_a_prefix_names_every_family() -> None:
    prometheus_registry = CollectorRegistry()
    register_metrics(Source(sample("a")), registry=prometheus_registry, prefix="svc")
    samples, types = scrape(prometheus_registry)

    assert all(name.startswith("svc_") for name in types)
    assert value(samples, "svc_in_flight", command="a") == 3


@pytest.mark.parametrize("prefix", ["", "9lives", "my-app", "a b", 3])
def test_a_bad_prefix_is_refused_with_its_name(prefix: Any) -> None:
    with pytest.raises(ValueError, match=r"prefix must be a Prometheus metric name .* got"):
        HystrixCollector(Source(), prefix=prefix)


def test_no_keys_yet_is_a_valid_scrape_with_no_samples() -> None:
    samples, types = scrape(registry_of(HystrixCollector(Source())))

    assert samples == {}
    assert "hystrix_events" in types


def test_exposition_speaks_openmetrics_when_asked() -> None:
    prometheus_registry = collector_registry(Source(sample("a")))

    text, text_type = exposition(prometheus_registry)
    om, om_type = exposition(prometheus_registry, "application/openmetrics-text; version=1.0.0")

    assert text_type.startswith("text/plain; version=0.0.4")
    assert b'hystrix_in_flight{command="a"} 3.0' in text
    assert om_type.startswith("application/openmetrics-text")
    assert om.endswith(b"# EOF\n")


# -- from a real registry ------------------------------------------------------------------------


class Remote(Command):
    key = "remote"
    config = CommandConfig(request_volume_threshold=2, sleep_window=5.0)

    def run(self, payload: Any) -> Any:
        if payload == "fail":
            raise RuntimeError("boom")
        return "ok"

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return "fallback"


def test_a_real_registry_s_events_and_transitions_are_counted(
    registry: CommandRegistry, clock: FakeClock
) -> None:
    registry.register(Remote)
    prometheus_registry = collector_registry(registry)

    assert registry.ask("remote", "ok") == "ok"
    assert registry.ask("remote", "fail") == "fallback"  # 1 error in 2: the circuit opens
    assert registry.ask("remote", "ok") == "fallback"  # short-circuited
    samples, _ = scrape(prometheus_registry)

    def events(event: str) -> float:
        return value(samples, "hystrix_events_total", command="remote", event=event)

    assert (events("SUCCESS"), events("FAILURE"), events("SHORT_CIRCUITED")) == (1, 1, 1)
    assert events("FALLBACK_SUCCESS") == 2
    assert value(samples, "hystrix_circuit_state", command="remote", state="open") == 1
    assert value(samples, "hystrix_circuit_transitions_total", command="remote", state="open") == 1
    assert value(samples, "hystrix_pool_completed_total", command="remote") == 2
    info = {"command": "remote", "group": __name__, "thread_pool": "remote"}
    assert value(samples, "hystrix_command_info", **info) == 1

    clock.advance(5.0)
    assert registry.ask("remote", "ok") == "ok"  # the probe closes the circuit
    samples, _ = scrape(prometheus_registry)

    for state in ("open", "half_open", "closed"):
        labels = {"command": "remote", "state": state}
        assert value(samples, "hystrix_circuit_transitions_total", **labels) == 1
    assert value(samples, "hystrix_circuit_state", command="remote", state="closed") == 1
    assert value(samples, "hystrix_events_total", command="remote", event="SUCCESS") == 2


def test_register_metrics_of_none_reads_the_default_registry() -> None:
    CommandRegistry.reset()
    try:
        prometheus_registry = CollectorRegistry()
        register_metrics(registry=prometheus_registry)
        CommandRegistry.do("prometheus-default", lambda: 1)

        samples, _ = scrape(prometheus_registry)

        labels = {"command": "prometheus-default", "event": "SUCCESS"}
        assert value(samples, "hystrix_events_total", **labels) == 1
    finally:
        CommandRegistry.reset()


def test_latency_histograms_count_every_call_since_the_key_started(clock: FakeClock) -> None:
    class Echo(Command):
        key = "echo-for-histograms"

        def run(self, payload: Any) -> Any:
            return payload

    with CommandRegistry(clock=clock) as registry:
        registry.register(Echo)
        for n in range(7):
            registry.ask(Echo.key, n)
        clock.advance(120)  # past the rolling windows: a histogram is not rolling
        registry.ask(Echo.key, 7)

        samples, _ = scrape(collector_registry(registry))

    for name in ("hystrix_run_duration_seconds", "hystrix_ask_duration_seconds"):
        assert value(samples, f"{name}_count", command=Echo.key) == 8
        assert value(samples, f"{name}_bucket", command=Echo.key, le="+Inf") == 8
        assert value(samples, f"{name}_bucket", command=Echo.key, le="10.0") == 8  # all fast
        assert value(samples, f"{name}_sum", command=Echo.key) > 0
        buckets = sorted(
            (float(dict(labels)["le"]), count)
            for (sample, labels), count in samples.items()
            if sample == f"{name}_bucket" and dict(labels).get("command") == Echo.key
        )
        counts = [count for _, count in buckets]
        assert counts == sorted(counts)  # cumulative
