"""The dashboard page is one self-contained file shipped in the package: it fetches nothing but
the stream, relative to itself. (Its behaviour in a browser: ``tests/browser``.)"""

from __future__ import annotations

import html.parser
import json
import re

import actors.dashboard


class Tags(html.parser.HTMLParser):
    """Every tag's attributes, and the text of the inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.attributes: list[tuple[str, str, str | None]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attributes += [(tag, name, value) for name, value in attrs]
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def parsed() -> Tags:
    tags = Tags()
    tags.feed(actors.dashboard.page().decode("utf-8"))
    return tags


def test_the_page_is_an_html_document_read_from_the_package() -> None:
    page = actors.dashboard.page()

    assert page.lower().startswith(b"<!doctype html>")
    assert b"</html>" in page
    assert page == actors.dashboard.page()


def test_the_page_loads_no_script_style_font_or_image_from_anywhere() -> None:
    tags = parsed()

    links = [(tag, name, value) for tag, name, value in tags.attributes if name in ("src", "href")]
    assert links == [("link", "href", "data:,")]  # the empty favicon, so none is fetched
    text = actors.dashboard.page().decode()
    assert not re.search(r"@import|url\(|https?://|//[a-z]", text, re.IGNORECASE)


def test_the_page_opens_the_stream_relative_to_itself() -> None:
    """This node's stream, or the fleet's: both relative to the page."""
    script = "".join(parsed().scripts)

    assert re.findall(r"new EventSource\((.*?)\)", script) == ["STREAMS[scope]"]
    streams = re.search(r"const STREAMS = (\{.*?\});", script)
    assert streams is not None
    assert json.loads(re.sub(r"(\w+):", r'"\1":', streams.group(1))) == {
        "local": "hystrix.stream",
        "fleet": "hystrix.stream?scope=fleet",
    }
    assert "fetch(" not in script
    assert "XMLHttpRequest" not in script


def fleet_meta(page: bytes) -> list[str | None]:
    """The content of every ``<meta name="hystrix-fleet">``."""
    tags = Tags()
    tags.feed(page.decode("utf-8"))
    metas = [attributes for tag, attributes in tags.tags if tag == "meta"]
    return [meta.get("content") for meta in metas if meta.get("name") == "hystrix-fleet"]


def test_without_a_fleet_the_page_names_no_node() -> None:
    assert fleet_meta(actors.dashboard.page()) == [""]
    assert actors.dashboard.page(fleet=None) == actors.dashboard.page()


def test_with_a_fleet_the_page_carries_this_node_s_name_escaped() -> None:
    assert fleet_meta(actors.dashboard.page(fleet="pod-7")) == ["pod-7"]
    hostile = actors.dashboard.page(fleet='a"><script>alert(1)</script>')

    assert fleet_meta(hostile) == ['a"><script>alert(1)</script>']  # an attribute's text only
    assert hostile.count(b"<script>") == actors.dashboard.page().count(b"<script>")


def test_every_tile_offers_the_hooks_the_browser_tests_read() -> None:
    fields = {value for _, name, value in parsed().attributes if name == "data-field"}

    assert {
        "circuit-state",
        "error-percent",
        "request-rate",
        "rate-success",
        "rate-failure",
        "rate-timeout",
        "rate-rejected",
        "rate-short-circuited",
        "rate-fallback",
        "execute-50",
        "execute-99",
        "total-100",
        "status",
        "zombies",
        "circle",
        "sparkline",
        "max-pool-size",
        "rate-executed",
        "completed",
        "connection",
        "hosts",
        "scope",
        "fleet",
    } <= fields
