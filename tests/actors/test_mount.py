"""The apps mounted under ``/hystrix`` in real frameworks on real servers: Starlette's ``Mount``
on uvicorn (ASGI's ``root_path``) and Flask with werkzeug's ``DispatcherMiddleware`` on
werkzeug's server (WSGI's ``SCRIPT_NAME``). Every route answers under the prefix, the bare
prefix leads to the page, and the page's stream resolves under the prefix."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from flask import Flask
from probe import WAIT
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import WSGIRequestHandler, make_server

import actors.dashboard
from actors import CommandRegistry
from actors.http import asgi_app, wsgi_app

PREFIX = "/hystrix"
KEY = "mounted"
Eventually = Callable[..., None]


@dataclasses.dataclass(frozen=True)
class Site:
    """A host app serving its own ``/`` and ours under ``PREFIX``, on a real server."""

    #: "http://127.0.0.1:<port>"
    base: str


@dataclasses.dataclass(frozen=True)
class Uvicorn:
    base: str
    server: uvicorn.Server
    thread: threading.Thread


@contextlib.contextmanager
def uvicorn_serving(app: Any, eventually: Eventually, graceful: int = 1) -> Iterator[Uvicorn]:
    """``app`` on uvicorn on a free loopback port, from a thread; stopped on the way out.
    ``graceful``: seconds uvicorn gives open connections at shutdown before it cancels them."""
    config = uvicorn.Config(
        app, log_config=None, access_log=False, timeout_graceful_shutdown=graceful
    )
    server = uvicorn.Server(config)
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listening]}, name="uvicorn", daemon=True
    )
    thread.start()
    try:
        eventually(lambda: server.started or not thread.is_alive(), WAIT, "uvicorn started")
        assert server.started, "uvicorn did not start"
        yield Uvicorn(f"http://127.0.0.1:{port}", server, thread)
    finally:
        server.should_exit = True
        thread.join(WAIT + graceful)
        listening.close()
    assert not thread.is_alive(), "uvicorn did not stop"


async def home(request: Any) -> PlainTextResponse:
    return PlainTextResponse("home")


@contextlib.contextmanager
def starlette_on_uvicorn(registry: CommandRegistry, eventually: Eventually) -> Iterator[Site]:
    hystrix = asgi_app(registry, interval=0.05)
    app = Starlette(routes=[Route("/", home), Mount(PREFIX, app=hystrix)])
    with uvicorn_serving(app, eventually) as served:
        yield Site(served.base)


class QuietHandler(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def flask_on_werkzeug(registry: CommandRegistry, eventually: Eventually) -> Iterator[Site]:
    hystrix = wsgi_app(registry, interval=0.05)
    app = Flask(__name__)
    app.add_url_rule("/", "home", lambda: "home")
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {PREFIX: hystrix})
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="werkzeug", daemon=True
    )
    thread.start()  # the socket listens already: requests wait in its backlog
    try:
        yield Site(f"http://127.0.0.1:{server.server_port}")
    finally:
        hystrix.close()  # ends open streams at once
        server.shutdown()
        thread.join(WAIT)
        server.server_close()
    assert not thread.is_alive(), "werkzeug's server did not stop"


@pytest.fixture(
    params=[
        pytest.param(starlette_on_uvicorn, id="starlette-on-uvicorn"),
        pytest.param(flask_on_werkzeug, id="flask-on-werkzeug"),
    ]
)
def site(
    request: pytest.FixtureRequest, registry: CommandRegistry, eventually: Eventually
) -> Iterator[Site]:
    registry.do(KEY, lambda: "ok")
    with request.param(registry, eventually) as site:
        yield site


def client(site: Site, **options: Any) -> httpx.Client:
    return httpx.Client(base_url=site.base, timeout=WAIT, **options)


def first_message(response: httpx.Response) -> dict[str, Any]:
    """The first ``data:`` event of a stream (pings before it are skipped)."""
    for n, line in enumerate(response.iter_lines()):
        if line.startswith("data: "):
            message: dict[str, Any] = json.loads(line[len("data: ") :])
            return message
        assert n < 100, "no data event in 100 lines"
    pytest.fail("the stream ended before any data event")


def stream_url(page_url: str, page: str) -> str:
    """Where the page opens its stream (this node's) from ``page_url``, as a browser resolves
    it: the page opens ``STREAMS[scope]``."""
    assert "new EventSource(STREAMS[scope])" in page
    (source,) = re.findall(r'const STREAMS = \{ local: "([^"]+)", fleet: "[^"]+" \}', page)
    return urllib.parse.urljoin(page_url, source)


# -- mounted ---------------------------------------------------------------------------------------


def test_the_page_is_served_under_the_prefix(site: Site) -> None:
    with client(site) as http:
        response = http.get(f"{PREFIX}/")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.content == actors.dashboard.page()


def test_the_bare_prefix_redirects_to_the_page(site: Site) -> None:
    with client(site) as http:
        moved = http.get(PREFIX)
        followed = http.get(PREFIX, follow_redirects=True)

    assert moved.is_redirect
    assert str(moved.url.join(moved.headers["location"])) == f"{site.base}{PREFIX}/"
    assert str(followed.url) == f"{site.base}{PREFIX}/"
    assert followed.content == actors.dashboard.page()


@pytest.mark.parametrize("entry", [PREFIX, f"{PREFIX}/", f"{PREFIX}/index.html"])
def test_the_page_s_stream_resolves_under_the_prefix_and_sends_data(site: Site, entry: str) -> None:
    with client(site, follow_redirects=True) as http:
        page = http.get(entry)
        url = stream_url(str(page.url), page.text)
        assert url == f"{site.base}{PREFIX}/hystrix.stream"

        with http.stream("GET", url) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            message = first_message(response)

    assert (message["type"], message["name"]) == ("HystrixCommand", KEY)
    assert message["rollingCountSuccess"] == 1


def test_a_stream_filtered_by_an_encoded_key_passes_through_the_framework(
    site: Site, registry: CommandRegistry
) -> None:
    odd = "issues, by project/100%"
    registry.do(odd, lambda: "ok")
    query = urllib.parse.urlencode({"keys": odd})  # "," as %2C: one key, not two

    with client(site) as http, http.stream("GET", f"{PREFIX}/hystrix.stream?{query}") as response:
        assert response.status_code == 200
        message = first_message(response)
    with client(site) as http:
        refused = http.get(f"{PREFIX}/hystrix.stream?keys=a,,b")

    assert (message["type"], message["name"]) == ("HystrixCommand", odd)
    assert refused.status_code == 400
    assert refused.text.startswith("keys must be command keys separated by commas")


def test_metrics_are_served_under_the_prefix(site: Site) -> None:
    with client(site) as http:
        response = http.get(f"{PREFIX}/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, s.labels.get("command"), s.labels.get("event")): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert samples["hystrix_events_total", KEY, "SUCCESS"] == 1


def test_the_host_app_keeps_the_rest_of_the_site(site: Site) -> None:
    with client(site) as http:
        own = http.get("/")
        elsewhere = [http.get(path).status_code for path in ("/hystrix.stream", "/metrics")]

    assert (own.status_code, own.text) == (200, "home")
    assert elsewhere == [404, 404]


# -- shutting uvicorn down with a stream open ----------------------------------------------------


def test_uvicorn_s_graceful_timeout_ends_open_streams_then_the_lifespan_closes_the_app(
    registry: CommandRegistry, eventually: Eventually
) -> None:
    """What docs/observability.md says: uvicorn waits for open connections (a stream never ends
    by itself) for ``timeout_graceful_shutdown`` seconds, cancels them, then sends the lifespan's
    shutdown, on which the app (served on its own, not mounted) closes itself."""
    hystrix = asgi_app(registry, interval=0.05)
    with (
        uvicorn_serving(hystrix, eventually, graceful=1) as served,
        httpx.Client(base_url=served.base, timeout=WAIT) as http,
        http.stream("GET", "/hystrix.stream") as response,
    ):
        lines = response.iter_lines()
        assert next(lines) == "ping: "  # no keys yet: the stream is open
        assert hystrix.streams == 1

        served.server.should_exit = True
        served.thread.join(WAIT)

        assert not served.thread.is_alive()
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            list(lines)  # cut at once (no read timeout), with no last chunk
        assert hystrix.streams == 0
        refused = hystrix.open_stream()
        assert refused is not None
        assert refused.status == 503
