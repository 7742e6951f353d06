"""The dashboard page's collapser tiles in a real browser, fed by a real registry's stream.

As in test_dashboard.py: a fresh registry served by the package's HTTP server (one tick every
0.5 s), ``/`` open in headless Chromium, the registry driven through its public API. The
registry's rolling windows run on its fake clock, so a window's counts stay put while the page
reads them (the collapser's own window, its flush timer, runs in real time).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from actors import Collapser, Command, CommandRegistry
from actors.http import start_http_server

with contextlib.suppress(ImportError):  # without it the `browser` fixture fails or skips
    from playwright.sync_api import expect

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

KEY = "Get user"
BATCH_KEY = "Get users"
WITHIN_MS = 2000  # the page shows a tick within 2 s (one every 0.5 s)


class GetUsers(Command):
    key = BATCH_KEY

    def run(self, user_ids: list[int]) -> list[dict[str, int]]:
        return [{"id": user_id} for user_id in user_ids]


class GetUser(Collapser):
    key = KEY
    batch_command = BATCH_KEY
    max_batch = 5


class GetTeam(Collapser):
    """Unbounded, with a longer window, in a group: never asked."""

    key = "Get team"
    batch_command = BATCH_KEY
    window = 0.025
    group = "people"


@contextlib.contextmanager
def serving(registry: CommandRegistry) -> Iterator[str]:
    """The dashboard's address, serving ``registry``."""
    server, thread = start_http_server(0, registry=registry, interval=0.5)
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        thread.join(timeout=5.0)


@pytest.fixture
def dashboard(page: Page, registry: CommandRegistry, page_log: Any) -> Iterator[Page]:
    """The page open on a registry with "Get users" and its collapser "Get user"; afterwards,
    it must have stayed local and error-free."""
    registry.register(GetUsers)
    registry.register(GetUser)
    with serving(registry) as served:
        page.goto(served)
        yield page
    assert page_log.remote() == [], "the page fetched something beyond this machine"
    assert page_log.errors == []


def collapser(page: Page, key: str = KEY) -> Locator:
    return page.locator(f'[data-collapser="{key}"]')


def shown(page: Page, name: str, key: str = KEY) -> Locator:
    return collapser(page, key).locator(f'[data-field="{name}"]')


def summary(page: Page) -> Locator:
    return page.locator('header [data-field="summary"]')


def ask_all(registry: CommandRegistry, times: int) -> list[Any]:
    """``times`` asks of the collapser at once (one thread, so batches of 5, 5 and 2)."""
    futures = [registry.ask(KEY, n, block=False) for n in range(times)]
    return [future.get(timeout=5.0) for future in futures]


def test_a_collapser_tile_shows_its_batches_and_batch_sizes_over_the_window(
    dashboard: Page, registry: CommandRegistry
) -> None:
    assert ask_all(registry, 12) == [{"id": n} for n in range(12)]

    expect(shown(dashboard, "rate-batches")).to_have_text("0.3", timeout=WITHIN_MS)  # 3 in 10 s
    expect(shown(dashboard, "rate-requests")).to_have_text("1.2")  # 12 in 10 s
    expect(shown(dashboard, "rate-from-cache")).to_have_text("0")
    expect(shown(dashboard, "batch-size-mean")).to_have_text("4")  # 5, 5 and 2
    expect(shown(dashboard, "batch-size-50")).to_have_text("5")
    expect(shown(dashboard, "batch-size-90")).to_have_text("5")
    expect(shown(dashboard, "batch-size-99")).to_have_text("5")
    expect(shown(dashboard, "batch-size-100")).to_have_text("5")
    expect(shown(dashboard, "max-batch")).to_have_text("5")
    expect(shown(dashboard, "window")).to_have_text("10 ms")
    expect(shown(dashboard, "cache")).to_have_text("off")
    expect(shown(dashboard, "name")).to_have_text(KEY)
    expect(shown(dashboard, "batch-command")).to_have_text(f"→ {BATCH_KEY}")
    expect(shown(dashboard, "hosts")).to_have_text("")
    expect(shown(dashboard, "circle-title")).to_have_text("0.3 batches/s, mean batch 4")
    assert float(shown(dashboard, "circle").get_attribute("r") or 0) > 4.0  # grown from idle
    assert shown(dashboard, "sparkline").get_attribute("points")
    expect(shown(dashboard, "sparkline-label")).to_have_text("batches/s, peak 0.3")

    # the batch command has its own tiles, one call per batch
    command = dashboard.locator(f'[data-command="{BATCH_KEY}"]')
    expect(command.locator('[data-field="request-rate"]')).to_have_text("0.3")
    expect(dashboard.locator(f'[data-pool="{BATCH_KEY}"]')).to_be_visible()
    expect(summary(dashboard)).to_have_text("1 command, 1 pool, 1 collapser")
    expect(dashboard.locator("#collapser-section h2")).to_have_text("Collapsers")


def test_collapser_tiles_are_sorted_by_key_and_show_their_settings(
    dashboard: Page, registry: CommandRegistry
) -> None:
    registry.register(GetTeam)  # after the page opened: its tile comes in before "Get user"

    expect(shown(dashboard, "max-batch", "Get team")).to_have_text("unbounded", timeout=WITHIN_MS)
    expect(shown(dashboard, "window", "Get team")).to_have_text("25 ms")
    expect(shown(dashboard, "group", "Get team")).to_have_text("group people")
    expect(shown(dashboard, "group")).to_have_text("")
    expect(shown(dashboard, "rate-batches", "Get team")).to_have_text("0")  # never asked
    expect(shown(dashboard, "batch-size-mean", "Get team")).to_have_text("0")
    keys = dashboard.locator("#collapsers [data-collapser]")
    expect(keys).to_have_count(2)
    assert [keys.nth(i).get_attribute("data-collapser") for i in range(2)] == ["Get team", KEY]
    expect(summary(dashboard)).to_have_text("0 commands, 0 pools, 2 collapsers")


def test_without_a_collapser_the_section_is_hidden_and_the_summary_unchanged(
    page: Page, registry: CommandRegistry, page_log: Any
) -> None:
    registry.register(GetUsers)
    with serving(registry) as served:
        page.goto(served)
        assert registry.ask(BATCH_KEY, [1, 2]) == [{"id": 1}, {"id": 2}]
        expect(summary(page)).to_have_text("1 command, 1 pool", timeout=WITHIN_MS)
        expect(page.locator("#collapser-section")).to_be_hidden()
        expect(page.locator("[data-collapser]")).to_have_count(0)
    assert page_log.errors == []


STALE_WITHIN_MS = 8000  # a tile fades 5 s after its key's last report (checked every second)


def test_a_collapser_tile_fades_when_its_collapser_stops_reporting(
    dashboard: Page, registry: CommandRegistry
) -> None:
    expect(collapser(dashboard)).to_be_visible(timeout=WITHIN_MS)
    expect(collapser(dashboard)).not_to_have_attribute("data-stale", "true")

    registry.reset()  # forgets the collapser: the stream stops sending it

    expect(collapser(dashboard)).to_have_attribute("data-stale", "true", timeout=STALE_WITHIN_MS)
    expect(collapser(dashboard)).to_have_class("tile collapser stale")


FLEET_WITHIN_MS = 5000  # a node's snapshot reaches Redis within 0.2 s, the page at its next tick


def test_the_fleet_view_clears_the_collapser_tiles_and_this_node_s_view_shows_them_again(
    page: Page, page_log: Any
) -> None:
    """One node ("node-a") with a real Redis: collapsers are in its own stream only."""
    from redis_servers import RedisServer  # noqa: PLC0415 - skips (or fails) without redis-server

    from actors.fleet import RedisFleet  # noqa: PLC0415 - the redis extra

    with RedisServer() as redis_server, contextlib.ExitStack() as stack:
        fleet = RedisFleet(
            redis_server.url,
            namespace="users",
            node="node-a",
            publish_interval=0.05,
            snapshot_interval=0.2,
        )
        registry = CommandRegistry(fleet=fleet)
        stack.callback(registry.shutdown)
        registry.register(GetUsers)
        registry.register(GetUser)
        assert ask_all(registry, 12) == [{"id": n} for n in range(12)]
        served = stack.enter_context(serving(registry))

        page.goto(served)
        expect(shown(page, "rate-requests")).to_have_text("1.2", timeout=WITHIN_MS)
        expect(summary(page)).to_have_text("1 command, 1 pool, 1 collapser")

        page.locator('[data-scope="fleet"]').click()
        command = page.locator(f'[data-command="{BATCH_KEY}"]')
        expect(command.locator('[data-field="hosts"]')).to_have_text(
            "1 host", timeout=FLEET_WITHIN_MS
        )
        expect(page.locator("[data-collapser]")).to_have_count(0)
        expect(page.locator("#collapser-section")).to_be_hidden()
        expect(summary(page)).to_have_text("1 command, 1 pool")
        expect(page.locator("#fleet-note")).to_contain_text("Collapsers are not in it")

        page.locator('[data-scope="local"]').click()
        expect(shown(page, "rate-requests")).to_have_text("1.2", timeout=WITHIN_MS)
        expect(page.locator("#collapser-section")).to_be_visible()

    assert page_log.remote() == []
    assert page_log.errors == []
