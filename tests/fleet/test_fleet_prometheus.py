"""Prometheus's ``hystrix_fleet_*`` metrics: each node's view of the fleet's circuits, labelled
with its name. Two registries with different node names share a real Redis; nothing is mocked."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis_servers import RedisServer
from tools import Requirement

from actors import Command, CommandConfig, CommandRegistry, FleetPolicy
from actors.fleet import RedisFleet
from actors.prometheus import HystrixCollector, collector_registry, exposition

KEY = "checkout"
LONER = "audit"  # a key that takes no part in the fleet
WAIT = 5.0
CONFIG = CommandConfig(timeout=5.0, request_volume_threshold=4, sleep_window=0.3)
FLEET_FAMILIES = {
    "hystrix_fleet_connected": "gauge",
    "hystrix_fleet_nodes": "gauge",
    "hystrix_fleet_circuit_state": "gauge",
    "hystrix_fleet_error_ratio": "gauge",
    "hystrix_fleet_probe_holder": "gauge",
}

PROMTOOL = Requirement(
    tests="promtool tests",
    variable="HYSTRIX_PROMTOOL_REQUIRED",
    install="apt-get install prometheus (Debian's package; it brings /usr/bin/promtool)",
)


class Gate:
    """Lets a test hold calls in ``run``."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()


class Checkout(Command):
    """ "fail" raises (the fallback answers); "hold" waits for the gate; else answers "ok"."""

    key = KEY
    config = CONFIG

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def run(self, payload: Any) -> Any:
        if payload == "fail":
            raise ConnectionError("the payment service is down")
        if payload == "hold":
            self.gate.open.wait(WAIT)
        return "ok"

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return "fallback"


class Audit(Command):
    key = LONER
    config = CommandConfig(fleet=FleetPolicy(mode="off"))

    def run(self, payload: Any) -> Any:
        return "audited"


class Fleet:
    def __init__(self, server: RedisServer) -> None:
        self.gate = Gate()
        self.registries: dict[str, CommandRegistry] = {}
        for node in ("a", "b"):
            fleet = RedisFleet(server.url, namespace="shop", node=node, publish_interval=0.05)
            registry = CommandRegistry(fleet=fleet)
            registry.register(Checkout, self.gate)
            registry.register(Audit)
            self.registries[node] = registry

    def shutdown(self) -> None:
        self.gate.open.set()
        for registry in self.registries.values():
            registry.shutdown()


@pytest.fixture
def fleet(redis_server: RedisServer) -> Iterator[Fleet]:
    nodes = Fleet(redis_server)
    try:
        yield nodes
    finally:
        nodes.shutdown()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CommandRegistry) -> tuple[Samples, dict[str, str]]:
    body, _ = exposition(collector_registry(registry))
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(body.decode()):
        types[family.name] = family.type
        for s in family.samples:
            samples[s.name, frozenset(s.labels.items())] = s.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def until(
    registry: CommandRegistry, holds: Callable[[Samples], bool], within: float = WAIT
) -> Samples:
    """The first scrape of ``registry`` for which ``holds`` is true."""
    deadline = time.monotonic() + within
    while True:
        samples, _ = scrape(registry)
        if holds(samples):
            return samples
        if time.monotonic() > deadline:
            fleet_samples = {k: v for k, v in samples.items() if "fleet" in k[0]}
            pytest.fail(f"no such scrape within {within}s: the last had {fleet_samples}")
        time.sleep(0.02)


def state_is(node: str, state: str) -> Callable[[Samples], bool]:
    def holds(samples: Samples) -> bool:
        labels = {"command": KEY, "node": node, "state": state}
        return value(samples, "hystrix_fleet_circuit_state", **labels) == 1

    return holds


def test_each_node_reports_its_view_of_the_fleet_labelled_with_its_name(fleet: Fleet) -> None:
    a, b = fleet.registries["a"], fleet.registries["b"]
    assert [a.ask(KEY, "ok") for _ in range(3)] == ["ok"] * 3
    assert b.ask(KEY, "fail") == "fallback"

    def both_counted(node: str) -> Callable[[Samples], bool]:
        """Both nodes, and all four calls (a node may report before its counts reach Redis)."""

        def holds(samples: Samples) -> bool:
            nodes = value(samples, "hystrix_fleet_nodes", command=KEY, node=node)
            ratio = value(samples, "hystrix_fleet_error_ratio", command=KEY, node=node)
            return nodes == 2 and ratio == 0.25

        return holds

    for node, registry in fleet.registries.items():
        samples = until(registry, both_counted(node))

        assert value(samples, "hystrix_fleet_connected", node=node) == 1
        assert value(samples, "hystrix_fleet_probe_holder", command=KEY, node=node) == 0
        labels = {"command": KEY, "node": node}
        states = {
            state: value(samples, "hystrix_fleet_circuit_state", **labels, state=state)
            for state in ("closed", "open", "half_open")
        }
        assert states == {"closed": 1, "open": 0, "half_open": 0}
        other = "b" if node == "a" else "a"
        assert not [k for k in samples if ("node", other) in k[1]]  # each reports its own view


def test_every_fleet_family_is_a_gauge_and_described_up_front(fleet: Fleet) -> None:
    registry = fleet.registries["a"]
    registry.ask(KEY, "ok")
    until(registry, lambda s: value(s, "hystrix_fleet_nodes", command=KEY, node="a") is not None)

    _, types = scrape(registry)
    described = {family.name for family in HystrixCollector(registry).describe()}

    assert {name: types[name] for name in FLEET_FAMILIES} == FLEET_FAMILIES
    assert set(FLEET_FAMILIES) <= described


def test_a_key_outside_the_fleet_has_no_fleet_series(fleet: Fleet) -> None:
    registry = fleet.registries["a"]
    assert registry.ask(LONER, None) == "audited"
    registry.ask(KEY, "ok")

    samples = until(
        registry, lambda s: value(s, "hystrix_fleet_nodes", command=KEY, node="a") is not None
    )

    assert value(samples, "hystrix_in_flight", command=LONER) == 0  # its own metrics are there
    fleet_series = [labels for name, labels in samples if name.startswith("hystrix_fleet")]
    assert not [labels for labels in fleet_series if ("command", LONER) in labels]


def test_the_fleet_circuit_s_state_and_the_probe_holder_show_on_each_node(fleet: Fleet) -> None:
    """Two failures on each node open the fleet's circuit (four calls, none alone); after the
    sleep window the node that sees demand takes the probe: a shows it holds it, b that a does."""
    a, b = fleet.registries["a"], fleet.registries["b"]
    for registry in (a, b):
        assert [registry.ask(KEY, "fail") for _ in range(2)] == ["fallback"] * 2
    until(a, state_is("a", "open"))
    until(b, state_is("b", "open"))

    time.sleep(CONFIG.sleep_window)
    assert a.ask(KEY, "ok") == "fallback"  # short-circuited: demand, a asks for the probe
    samples_a = until(a, state_is("a", "half_open"))
    samples_b = until(b, state_is("b", "half_open"))

    assert value(samples_a, "hystrix_fleet_probe_holder", command=KEY, node="a") == 1
    assert value(samples_b, "hystrix_fleet_probe_holder", command=KEY, node="b") == 0
    assert value(samples_a, "hystrix_fleet_circuit_state", command=KEY, node="a", state="open") == 0


def test_a_node_that_cannot_reach_redis_says_so(fleet: Fleet, redis_server: RedisServer) -> None:
    registry = fleet.registries["a"]
    registry.ask(KEY, "ok")
    until(registry, lambda s: value(s, "hystrix_fleet_connected", node="a") == 1)

    redis_server.kill()

    until(registry, lambda s: value(s, "hystrix_fleet_connected", node="a") == 0)


def test_without_a_fleet_there_is_no_fleet_family() -> None:
    registry = CommandRegistry()
    try:
        registry.do(KEY, lambda: "ok")
        _, types = scrape(registry)
        described = {family.name for family in HystrixCollector(registry).describe()}
    finally:
        registry.shutdown()

    assert "hystrix_events" in types
    assert not [name for name in (*types, *described) if name.startswith("hystrix_fleet")]


@pytest.fixture(scope="session")
def promtool() -> str:
    return PROMTOOL.program("promtool")


def test_promtool_finds_no_problem_in_a_fleet_scrape(promtool: str, fleet: Fleet) -> None:
    a = fleet.registries["a"]
    a.ask(LONER, None)
    for registry in fleet.registries.values():
        assert [registry.ask(KEY, "fail") for _ in range(2)] == ["fallback"] * 2
    until(a, state_is("a", "open"))
    body, _ = exposition(collector_registry(a))

    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )

    assert b"hystrix_fleet_circuit_state{" in body
    assert (result.returncode, result.stdout + result.stderr) == (0, b"")
