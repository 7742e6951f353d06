"""The dashboard page in a real browser: tiles follow the live stream of a real registry.

Each test serves a fresh registry through the package's HTTP server (``/`` and
``/hystrix.stream``, one batch every 0.5 s as in production), opens ``/`` in headless Chromium
and drives the registry through its public API; the page must show it within 2 s. The breakers
run on the registry's fake clock, so a sleep window passes without sleeping.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from actors import AdaptiveLimit, Command, CommandConfig, CommandRegistry
from actors.http import start_http_server
from supervision import FakeClock

with contextlib.suppress(ImportError):  # without it the `browser` fixture fails or skips
    from playwright.sync_api import expect

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

KEY = "Get all Issues"
WHOLE_MS = re.compile(r"^\d[\d,]*$")  # the stream reports whole milliseconds
WITHIN_MS = 2000  # the issue's bound: the tile shows a change within 2 s
CONFIG = CommandConfig(
    timeout=10.0,
    request_volume_threshold=4,
    error_percent_threshold=50,
    sleep_window=5.0,
    rolling_window=10.0,
)


class Dependency:
    """The remote service behind the command: healthy or failing, and able to hold a call."""

    def __init__(self) -> None:
        self.failing = False
        self.released = threading.Event()
        self.released.set()
        self.entered = threading.Event()

    def call(self) -> str:
        self.entered.set()
        self.released.wait(timeout=10.0)
        if self.failing:
            raise ConnectionError("the dependency is down")
        return "issues"


class GetAllIssues(Command):
    key = KEY
    config = CONFIG

    def __init__(self, dependency: Dependency) -> None:
        self.dependency = dependency

    def run(self, payload: Any) -> str:
        return self.dependency.call()

    def fallback(self, payload: Any, error: BaseException) -> str:
        return "no issues"


@pytest.fixture
def dependency() -> Dependency:
    return Dependency()


@pytest.fixture
def served(registry: CommandRegistry, dependency: Dependency) -> Iterator[str]:
    """The dashboard's address, serving ``registry`` with ``GetAllIssues`` registered."""
    registry.register(GetAllIssues, dependency)
    server, thread = start_http_server(0, registry=registry, interval=0.5)
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        thread.join(timeout=5.0)


@pytest.fixture
def dashboard(page: Page, served: str, page_log: Any) -> Iterator[Page]:
    """The page open on the dashboard; afterwards, it must have stayed local and error-free."""
    page.goto(served)
    yield page
    assert page_log.remote() == [], "the page fetched something beyond this machine"
    assert page_log.errors == []


def tile(page: Page, key: str = KEY) -> Locator:
    return page.locator(f'[data-command="{key}"]')


def shown(page: Page, name: str, key: str = KEY) -> Locator:
    return tile(page, key).locator(f'[data-field="{name}"]')


def ask(registry: CommandRegistry, times: int = 1) -> list[str]:
    return [registry.ask(KEY, None) for _ in range(times)]


# -- the issue's test --------------------------------------------------------------------------


def test_a_forced_open_circuit_shows_open_within_two_seconds_then_closed_again(
    dashboard: Page, registry: CommandRegistry
) -> None:
    assert ask(registry, 3) == ["issues"] * 3
    expect(shown(dashboard, "circuit-state")).to_have_text("closed", timeout=WITHIN_MS)

    registry.configure(KEY, CONFIG.replace(force_open=True))
    assert ask(registry, 3) == ["no issues"] * 3
    forced = time.monotonic()
    expect(shown(dashboard, "circuit-state")).to_have_text("open", timeout=WITHIN_MS)
    assert time.monotonic() - forced < WITHIN_MS / 1000
    expect(tile(dashboard)).to_have_attribute("data-state", "open")
    expect(shown(dashboard, "rate-short-circuited")).to_have_text("0.3")  # 3 in a 10 s window

    registry.configure(KEY, CONFIG)
    assert ask(registry, 3) == ["issues"] * 3
    expect(shown(dashboard, "circuit-state")).to_have_text("closed", timeout=WITHIN_MS)
    expect(tile(dashboard)).to_have_attribute("data-state", "closed")


def test_a_tripped_circuit_shows_open_then_half_open_during_its_probe_then_closed(
    dashboard: Page, registry: CommandRegistry, dependency: Dependency, clock: FakeClock
) -> None:
    dependency.failing = True
    assert ask(registry, 4) == ["no issues"] * 4
    expect(shown(dashboard, "circuit-state")).to_have_text("open", timeout=WITHIN_MS)
    expect(shown(dashboard, "error-percent")).to_have_text("100.0", timeout=WITHIN_MS)

    dependency.failing = False
    dependency.released.clear()
    dependency.entered.clear()
    clock.advance(CONFIG.sleep_window)
    probe = registry.ask(KEY, None, block=False)  # admitted as the probe; held in run
    assert dependency.entered.wait(timeout=5.0)
    expect(shown(dashboard, "circuit-state")).to_have_text("half_open", timeout=WITHIN_MS)
    expect(tile(dashboard)).to_have_class("tile command state-half_open")

    dependency.released.set()
    assert probe.get(timeout=5.0) == "issues"
    expect(shown(dashboard, "circuit-state")).to_have_text("closed", timeout=WITHIN_MS)


# -- what a tile shows ---------------------------------------------------------------------------


def test_a_command_tile_shows_rates_per_second_over_the_window_and_latencies(
    dashboard: Page, registry: CommandRegistry, dependency: Dependency
) -> None:
    assert ask(registry, 20) == ["issues"] * 20
    dependency.failing = True
    assert ask(registry, 5) == ["no issues"] * 5

    expect(shown(dashboard, "request-rate")).to_have_text("2.5", timeout=WITHIN_MS)
    expect(shown(dashboard, "rate-success")).to_have_text("2.0")
    expect(shown(dashboard, "rate-failure")).to_have_text("0.5")
    expect(shown(dashboard, "rate-fallback")).to_have_text("0.5")
    expect(shown(dashboard, "rate-timeout")).to_have_text("0")
    expect(shown(dashboard, "error-percent")).to_have_text("20.0")
    expect(shown(dashboard, "status")).to_have_text("up")
    expect(shown(dashboard, "execute-100")).to_have_text(WHOLE_MS)
    circle = shown(dashboard, "circle")
    assert float(circle.get_attribute("r") or 0) > 4.0  # grown from its idle size
    assert shown(dashboard, "sparkline").get_attribute("points")


def test_a_pool_tile_shows_the_keys_worker_pool(dashboard: Page, registry: CommandRegistry) -> None:
    assert ask(registry, 10) == ["issues"] * 10

    pool = dashboard.locator(f'[data-pool="{KEY}"]')
    expect(pool.locator('[data-field="max-pool-size"]')).to_have_text(
        str(CONFIG.max_concurrent_requests), timeout=WITHIN_MS
    )
    expect(pool.locator('[data-field="rate-executed"]')).to_have_text("1.0")
    expect(pool.locator('[data-field="completed"]')).to_have_text("10")


def test_the_page_fetches_only_itself_and_the_stream_from_its_own_server(
    dashboard: Page, registry: CommandRegistry, page_log: Any, served: str
) -> None:
    ask(registry)
    expect(tile(dashboard)).to_be_visible(timeout=WITHIN_MS)
    expect(dashboard.locator('[data-field="connection"]')).to_have_text("live")

    assert sorted(set(page_log.urls)) == [served, served + "hystrix.stream"]


# -- the fleet ---------------------------------------------------------------------------------

FLEET_WITHIN_MS = 5000  # a node's snapshot reaches Redis within 0.2 s, the page at its next tick


def test_with_a_fleet_the_toggle_switches_to_the_fleet_s_sums_and_shows_its_hosts(
    page: Page, page_log: Any
) -> None:
    """Two registries (nodes "node-a" and "node-b") share a real Redis; the page is node-a's."""
    from redis_servers import RedisServer  # noqa: PLC0415 - skips (or fails) without redis-server

    from actors.fleet import RedisFleet  # noqa: PLC0415 - the redis extra

    with RedisServer() as redis_server, contextlib.ExitStack() as stack:
        registries = []
        for node in ("node-a", "node-b"):
            fleet = RedisFleet(
                redis_server.url,
                namespace="jira",
                node=node,
                publish_interval=0.05,
                snapshot_interval=0.2,
            )
            registry = CommandRegistry(fleet=fleet)
            stack.callback(registry.shutdown)
            registry.register(GetAllIssues, Dependency())
            registries.append(registry)
        assert ask(registries[0], 2) == ["issues"] * 2
        assert ask(registries[1], 3) == ["issues"] * 3
        server, thread = start_http_server(0, registry=registries[0], interval=0.5)
        stack.callback(thread.join, 5.0)
        stack.callback(server.shutdown)
        served = f"http://127.0.0.1:{server.server_port}/"

        page.goto(served)
        expect(page.locator('header [data-field="scope"]')).to_be_visible()
        expect(page.locator('[data-scope="local"]')).to_have_text("this node (node-a)")
        expect(shown(page, "request-rate")).to_have_text("0.2", timeout=WITHIN_MS)  # 2 in 10 s
        expect(shown(page, "hosts")).to_have_text("")

        page.locator('[data-scope="fleet"]').click()
        expect(shown(page, "hosts")).to_have_text("2 hosts", timeout=FLEET_WITHIN_MS)
        expect(shown(page, "request-rate")).to_have_text("0.5")  # 5 in the fleet's 10 s
        expect(page.locator('header [data-field="fleet"]')).to_have_text("fleet: 2 nodes reporting")
        pool = page.locator(f'[data-pool="{KEY}"]')
        expect(pool.locator('[data-field="hosts"]')).to_have_text("2 hosts")
        expect(page.locator('[data-scope="fleet"]')).to_have_attribute("aria-pressed", "true")
        assert page.url == served + "?scope=fleet"

        page.locator('[data-scope="local"]').click()
        expect(shown(page, "request-rate")).to_have_text("0.2", timeout=WITHIN_MS)
        expect(shown(page, "hosts")).to_have_text("")
        assert page.url == served

        page.goto(served + "?scope=fleet")  # a link to the fleet's view opens on it
        expect(shown(page, "hosts")).to_have_text("2 hosts", timeout=FLEET_WITHIN_MS)

    assert page_log.remote() == []
    assert page_log.errors == []
    assert set(page_log.urls) == {
        served,
        served + "hystrix.stream",
        served + "?scope=fleet",
        served + "hystrix.stream?scope=fleet",
    }


# -- the demo's picture --------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(90)
def test_the_demo_serves_the_dashboard_and_pictures_it_during_the_outage(
    browser: Browser, tmp_path: Path
) -> None:
    picture = tmp_path / "outage.png"
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}

    demo = ["examples/jira_issues.py", "--quick", "--port", "0", "--screenshot", str(picture)]

    done = subprocess.run(
        [sys.executable, *demo],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/$", done.stdout, re.MULTILINE)
    assert f"screenshot: {picture}" in done.stdout
    png = picture.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    assert width == 480
    assert height > 400


def test_a_command_tile_shows_the_keys_concurrency_limit_and_its_retries(
    dashboard: Page, registry: CommandRegistry
) -> None:
    assert ask(registry) == ["issues"]
    expect(shown(dashboard, "limit")).to_have_text(
        str(CONFIG.max_concurrent_requests), timeout=WITHIN_MS
    )

    registry.configure(KEY, CONFIG.replace(limit=AdaptiveLimit("aimd", initial=3)))
    assert ask(registry) == ["issues"]

    expect(shown(dashboard, "limit")).to_have_text("3", timeout=WITHIN_MS)
    expect(shown(dashboard, "rate-retry")).to_have_text("0")
    expect(shown(dashboard, "rate-hedge")).to_have_text("0")


def test_a_command_tile_shows_a_fault_injected_badge_while_an_injection_is_on(
    page: Page, page_log: Any, clock: FakeClock, dependency: Dependency
) -> None:
    with CommandRegistry(clock=clock, allow_injection=True) as registry:
        registry.register(GetAllIssues, dependency)
        server, thread = start_http_server(0, registry=registry, interval=0.5)
        try:
            page.goto(f"http://127.0.0.1:{server.server_port}/")
            assert ask(registry) == ["issues"]
            badge = shown(page, "fault-injected")
            expect(tile(page)).to_have_attribute("data-fault-injected", "false", timeout=WITHIN_MS)
            expect(badge).to_be_hidden()

            injection = registry.inject(KEY, error=ConnectionError, rate=0.5, seed=1)
            expect(badge).to_be_visible(timeout=WITHIN_MS)
            expect(badge).to_have_text("fault injected")
            expect(badge).to_have_attribute("title", injection.plan.describe())
            expect(tile(page)).to_have_attribute("data-fault-injected", "true")

            injection.stop()
            expect(badge).to_be_hidden(timeout=WITHIN_MS)
            expect(tile(page)).to_have_attribute("data-fault-injected", "false")
        finally:
            server.shutdown()
            thread.join(timeout=5.0)
    assert page_log.remote() == []
    assert page_log.errors == []
