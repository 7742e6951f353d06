"""Prometheus's own linter, ``promtool check metrics``, finds no problem in what ``/metrics``
serves: names, types, help texts, units and reserved labels.

promtool comes with Debian's ``prometheus`` package. Without it these tests are skipped, unless
the run needs them (``HYSTRIX_PROMTOOL_REQUIRED=1`` or ``CI``, as ``.ci/run`` sets): then they
fail.
"""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from probe import WAIT, Busy, Dependency, Probe, Slow
from prometheus_client.parser import text_string_to_metric_families
from sample_metrics import Source, sample
from tools import Requirement

from actors import Collapser, Command, CommandConfig, CommandRegistry
from actors.http import start_http_server
from actors.prometheus import collector_registry, exposition

PROMTOOL = Requirement(
    tests="promtool tests",
    variable="HYSTRIX_PROMTOOL_REQUIRED",
    install="apt-get install prometheus (Debian's package; it brings /usr/bin/promtool)",
)


@pytest.fixture(scope="session")
def promtool() -> str:
    return PROMTOOL.program("promtool")


def problems(promtool: str, body: bytes) -> str:
    """Everything ``promtool check metrics`` says about ``body``, and its exit status unless 0:
    "" when it finds no problem."""
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    said = (result.stdout + result.stderr).decode()
    return said + (f"(exit status {result.returncode})" if result.returncode else "")


# -- a registry after every kind of outcome ------------------------------------------------------


class Fragile(Dependency):
    key = "fragile"
    config = CommandConfig(request_volume_threshold=2, sleep_window=60.0)


class Users(Command):
    """A batch command, asked by the collapser below."""

    key = "users"

    def run(self, ids: list[int]) -> list[str]:
        return [f"user {i}" for i in ids]


class User(Collapser):
    key = "user"
    batch_command = "users"
    window = 5.0  # sent when full
    max_batch = 2


class Bare(Command):
    """No fallback: the failure reaches the caller."""

    key = "bare"

    def run(self, payload: Any) -> Any:
        raise RuntimeError("boom")


@pytest.fixture
def scraped(registry: CommandRegistry) -> Iterator[bytes]:
    """``GET /metrics`` from the HTTP server, after successes, failures with and without a
    fallback, a timeout, a pool rejection, a circuit that opened and short-circuits."""
    probe = Probe()
    for command_class in (Dependency, Slow, Busy, Fragile):
        registry.register(command_class, probe)
    registry.register(Bare)
    registry.register(Users)
    registry.register(User)
    server, thread = start_http_server(0, registry=registry)
    try:
        assert [registry.ask("ok", "ok") for _ in range(3)] == ["ok"] * 3
        assert registry.ask("ok", "fail") == "fallback"
        assert registry.ask("slow", "hang") == "fallback"  # timed out
        probe.wait_entered()
        registry.ask("busy", "hang", block=False)
        probe.wait_entered()
        assert registry.ask("busy", "ok") == "fallback"  # its one worker is busy: rejected
        assert [registry.ask("fragile", "fail") for _ in range(2)] == ["fallback"] * 2  # opens
        assert registry.ask("fragile", "ok") == "fallback"  # short-circuited
        with pytest.raises(RuntimeError, match="boom"):
            registry.ask("bare", None)
        collapsed = [registry.ask("user", i, block=False) for i in (1, 2)]  # one batch
        assert [future.get(timeout=WAIT) for future in collapsed] == ["user 1", "user 2"]

        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            yield response.read()
    finally:
        probe.release.set()
        server.shutdown()
        thread.join(WAIT)


def test_promtool_finds_no_problem_in_a_real_scrape(promtool: str, scraped: bytes) -> None:
    samples = {
        (s.name, s.labels.get("command") or s.labels.get("collapser"), s.labels.get("event"))
        for family in text_string_to_metric_families(scraped.decode())
        for s in family.samples
        if s.value
    }
    for seen in [
        ("hystrix_events_total", "ok", "SUCCESS"),
        ("hystrix_events_total", "ok", "FAILURE"),
        ("hystrix_events_total", "slow", "TIMEOUT"),
        ("hystrix_events_total", "busy", "THREAD_POOL_REJECTED"),
        ("hystrix_events_total", "fragile", "SHORT_CIRCUITED"),
        ("hystrix_events_total", "bare", "FALLBACK_MISSING"),
        ("hystrix_pool_active_workers", "busy", None),
        ("hystrix_latency_seconds", "ok", None),
        ("hystrix_events_total", "users", "COLLAPSED"),
        ("hystrix_collapser_batch_size_count", "user", None),
        ("hystrix_collapser_batch_size_sum", "user", None),
    ]:
        assert seen in samples, f"the scrape lacks {seen}"

    assert problems(promtool, scraped) == ""


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(Source(sample("a"), sample("b", status="restarting")), id="every-field"),
        pytest.param(Source(), id="no-keys-yet"),
    ],
)
def test_promtool_finds_no_problem_in_hand_made_metrics(promtool: str, source: Source) -> None:
    body, _ = exposition(collector_registry(source))

    assert problems(promtool, body) == ""


# -- the skip policy -----------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["HYSTRIX_PROMTOOL_REQUIRED", "CI"])
def test_without_promtool_a_run_that_needs_it_fails(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv("PATH", "")
    for name in ("HYSTRIX_PROMTOOL_REQUIRED", "CI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "1")

    with pytest.raises(pytest.fail.Exception, match=r"no promtool on PATH\. This run needs them"):
        PROMTOOL.program("promtool")


@pytest.mark.parametrize("setting", [None, "", "0", "false", "No"])
def test_without_promtool_any_other_run_skips_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch, setting: str | None
) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CI", raising=False)
    if setting is None:
        monkeypatch.delenv("HYSTRIX_PROMTOOL_REQUIRED", raising=False)
    else:
        monkeypatch.setenv("HYSTRIX_PROMTOOL_REQUIRED", setting)

    with pytest.raises(pytest.skip.Exception, match=r"PROMTOOL TESTS NOT RUN: .* apt-get install"):
        PROMTOOL.program("promtool")
