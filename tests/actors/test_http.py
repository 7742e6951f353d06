"""Serving the stream, ``/metrics`` and the page: end to end over a real socket, and the WSGI
and ASGI apps driven directly (wsgiref's validator; a small in-test ASGI server)."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest
from probe import WAIT, Busy, Dependency, Probe, Slow
from prometheus_client.parser import text_string_to_metric_families
from sample_metrics import Source, sample

import actors.dashboard
from actors import Command, CommandConfig, CommandError, CommandRegistry
from actors.http import AsgiApp, HttpServer, WsgiApp, asgi_app, start_http_server, wsgi_app
from actors.stream import PING, Tick, command_message, pool_message
from supervision.checks import show

# -- reading a stream ----------------------------------------------------------------------------


class EventReader:
    """Reads server-sent events off an HTTP response: messages, and ``None`` for a ping."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.response = response

    def event(self) -> dict[str, Any] | None:
        while True:
            line = self.response.readline()  # bounded by the connection's socket timeout
            if not line:
                raise EOFError("the stream ended")
            if line == b"\n":
                continue
            if line.startswith(b"data: "):
                message: dict[str, Any] = json.loads(line[len(b"data: ") :])
                return message
            assert line == b"ping: \n", line
            return None

    def batch(self) -> list[dict[str, Any]]:
        """The messages of one tick (up to its ping)."""
        messages = []
        while (message := self.event()) is not None:
            messages.append(message)
        return messages

    def until_keys(self, keys: set[str], ticks: int = 50) -> dict[tuple[str, str], Any]:
        """The latest message of each (type, name) once every key's command and pool showed."""
        seen: dict[tuple[str, str], Any] = {}
        for _ in range(ticks):
            for message in self.batch():
                seen[message["type"], message["name"]] = message
            wanted = {("HystrixCommand", k) for k in keys} | {
                ("HystrixThreadPool", k) for k in keys
            }
            if wanted <= set(seen):
                return seen
        pytest.fail(f"never saw every key of {sorted(keys)} in {ticks} ticks: {sorted(seen)}")


def get(
    server: HttpServer, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=WAIT)
    connection.request(method, path, headers=headers or {})
    return connection, connection.getresponse()


# -- what the end-to-end tests make happen -------------------------------------------------------


class Flaky(Dependency):
    key = "flaky"
    group = None  # the dashboard shows the command class's module


class Forced(Dependency):
    key = "forced"
    config = CommandConfig(force_open=True)


class Bare(Command):
    """No fallback: a failure reaches the caller."""

    key = "bare"

    def run(self, payload: Any) -> Any:
        raise RuntimeError("boom")


KEYS = {"ok", "flaky", "slow", "busy", "forced", "bare"}


@pytest.fixture
def probe(registry: CommandRegistry) -> Iterator[Probe]:
    """Depends on ``registry`` so its teardown (releasing hung runs) comes before shutdown."""
    probe = Probe()
    for command_class in (Dependency, Flaky, Slow, Busy, Forced):
        registry.register(command_class, probe)
    registry.register(Bare)
    yield probe
    probe.release.set()


@pytest.fixture
def happened(registry: CommandRegistry, probe: Probe) -> None:
    """Three successes, a failure with a fallback, a timeout, a rejection, a short-circuit and a
    failure without a fallback; two calls are left hanging (the timed-out one and the busy one)."""
    for _ in range(3):
        assert registry.ask("ok", "ok") == "ok"
    assert registry.ask("flaky", "fail") == "fallback"
    assert registry.ask("slow", "hang") == "fallback"
    probe.wait_entered()
    registry.ask("busy", "hang", block=False)
    probe.wait_entered()
    assert registry.ask("busy", "ok") == "fallback"
    assert registry.ask("forced", "ok") == "fallback"
    with pytest.raises(RuntimeError, match="boom"):
        registry.ask("bare", None)


@pytest.fixture
def server(registry: CommandRegistry) -> Iterator[HttpServer]:
    server, thread = start_http_server(0, registry=registry, interval=0.05)
    yield server
    server.shutdown()
    thread.join(WAIT)
    assert not thread.is_alive()


# -- end to end ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("happened")
def test_the_stream_shows_what_each_key_did(server: HttpServer) -> None:
    connection, response = get(server, "/hystrix.stream")
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/event-stream; charset=utf-8"
    assert "no-cache" in response.getheader("Cache-Control", "")

    seen = EventReader(response).until_keys(KEYS)
    connection.close()

    command = {key: seen["HystrixCommand", key] for key in KEYS}
    pool = {key: seen["HystrixThreadPool", key] for key in KEYS}
    ok, flaky, slow, busy, forced, bare = (
        command[k] for k in ("ok", "flaky", "slow", "busy", "forced", "bare")
    )
    assert (ok["group"], flaky["group"], bare["group"]) == ("Issues", __name__, __name__)
    assert (ok["rollingCountSuccess"], ok["requestCount"], ok["errorCount"]) == (3, 3, 0)
    assert ok["errorPercentage"] == 0
    assert ok["isCircuitBreakerOpen"] is False
    assert ok["circuitState"] == "closed"
    assert ok["currentConcurrentExecutionCount"] == 0
    assert ok["rollingMaxConcurrentExecutionCount"] == 1
    assert ok["threadPool"] == "ok"
    assert pool["ok"]["rollingCountThreadsExecuted"] == 3
    assert pool["ok"]["currentCompletedTaskCount"] == 3
    assert pool["ok"]["currentPoolSize"] >= 1  # a worker may not have parked before the next ask

    assert (flaky["rollingCountFailure"], flaky["rollingCountFallbackSuccess"]) == (1, 1)
    assert (flaky["errorCount"], flaky["requestCount"], flaky["errorPercentage"]) == (1, 1, 100)

    assert (slow["rollingCountTimeout"], slow["rollingCountFallbackSuccess"]) == (1, 1)
    assert slow["propertyValue_executionTimeoutInMilliseconds"] == 50
    assert slow["currentConcurrentExecutionCount"] == 1  # run goes on after its timeout
    assert slow["latencyTotal"]["100"] >= 45  # the caller waited out the 50 ms deadline
    assert slow["rollingCountSuccess"] == 0

    assert (busy["rollingCountThreadPoolRejected"], busy["rollingCountFallbackSuccess"]) == (1, 1)
    assert busy["currentConcurrentExecutionCount"] == 1
    assert pool["busy"]["currentActiveCount"] == 1
    assert pool["busy"]["rollingCountCommandRejections"] == 1
    assert pool["busy"]["currentMaximumPoolSize"] == 1

    assert (forced["rollingCountShortCircuited"], forced["rollingCountFallbackSuccess"]) == (1, 1)
    assert forced["isCircuitBreakerOpen"] is True
    assert forced["circuitState"] == "open"
    assert forced["propertyValue_circuitBreakerForceOpen"] is True
    assert forced["requestCount"] == 0  # a short-circuit is not a request

    assert (bare["rollingCountFailure"], bare["rollingCountFallbackMissing"]) == (1, 1)
    for message in command.values():
        assert message["reportingHosts"] == 1
        assert message["status"] == "up"


@pytest.mark.usefixtures("happened")
def test_a_failure_without_fallback_counts_as_an_exception_thrown(server: HttpServer) -> None:
    connection, response = get(server, "/hystrix.stream")
    seen = EventReader(response).until_keys({"bare"})
    connection.close()

    assert seen["HystrixCommand", "bare"]["rollingCountExceptionsThrown"] == 1


def test_every_tick_is_a_batch_of_every_key_then_a_ping(
    registry: CommandRegistry, server: HttpServer
) -> None:
    registry.do("a", lambda: 1)
    registry.do("b", lambda: 2)
    connection, response = get(server, "/hystrix.stream")
    reader = EventReader(response)

    batches = [reader.batch() for _ in range(3)]
    connection.close()

    for messages in batches:
        assert [(m["type"], m["name"]) for m in messages] == [
            ("HystrixCommand", "a"),
            ("HystrixCommand", "b"),
            ("HystrixThreadPool", "a"),
            ("HystrixThreadPool", "b"),
        ]


def test_a_stream_without_keys_sends_pings(server: HttpServer) -> None:
    connection, response = get(server, "/hystrix.stream")
    reader = EventReader(response)

    assert [reader.event() for _ in range(3)] == [None, None, None]
    connection.close()


def test_the_stream_shows_calls_made_after_it_opened(
    registry: CommandRegistry, server: HttpServer
) -> None:
    registry.do("later", lambda: 1)
    connection, response = get(server, "/hystrix.stream")
    reader = EventReader(response)
    assert reader.until_keys({"later"})["HystrixCommand", "later"]["rollingCountSuccess"] == 1

    registry.do("later", lambda: 1)

    for _ in range(50):
        commands = [m for m in reader.batch() if m["type"] == "HystrixCommand"]
        if [m["rollingCountSuccess"] for m in commands] == [2]:
            break
    else:
        pytest.fail("the second success never showed")
    connection.close()


def test_past_the_connection_limit_a_stream_is_refused_with_503(registry: CommandRegistry) -> None:
    server, thread = start_http_server(0, registry=registry, interval=0.05, max_connections=1)
    try:
        _, response = get(server, "/hystrix.stream")
        EventReader(response).event()  # the first stream is being served

        second, refused = get(server, "/hystrix.stream")
        assert refused.status == 503
        assert b"at most 1 concurrent connections" in refused.read()
        second.close()
    finally:
        server.shutdown()
        thread.join(WAIT)


def test_a_client_that_goes_away_frees_its_slot(
    registry: CommandRegistry, eventually: Callable[..., None]
) -> None:
    server, thread = start_http_server(0, registry=registry, interval=0.05, max_connections=1)
    try:
        first, response = get(server, "/hystrix.stream")
        EventReader(response).event()
        assert server.app.streams == 1

        response.close()
        first.close()

        eventually(lambda: server.app.streams == 0, within=WAIT, what="the slot was freed")
        again, response = get(server, "/hystrix.stream")
        assert response.status == 200
        again.close()
    finally:
        server.shutdown()
        thread.join(WAIT)


def test_delay_sets_this_stream_s_interval(registry: CommandRegistry) -> None:
    server, thread = start_http_server(0, registry=registry, interval=60.0)
    try:
        connection, response = get(server, "/hystrix.stream?delay=20")
        reader = EventReader(response)
        # Three ticks within the socket timeout: at 60 s a tick, the second would time out.
        assert [reader.event() for _ in range(3)] == [None, None, None]
        connection.close()
    finally:
        server.shutdown()
        thread.join(WAIT)


def test_shutdown_ends_open_streams_at_once(registry: CommandRegistry) -> None:
    server, thread = start_http_server(0, registry=registry, interval=60.0)
    connection, response = get(server, "/hystrix.stream")
    reader = EventReader(response)
    reader.event()

    server.shutdown()

    assert response.read().strip() == b""  # the end, well within the socket timeout
    thread.join(WAIT)
    assert not thread.is_alive()
    connection.close()


def test_a_registry_shut_down_ends_its_streams() -> None:
    registry = CommandRegistry()
    server, thread = start_http_server(0, registry=registry, interval=0.05)
    try:
        connection, response = get(server, "/hystrix.stream")
        EventReader(response).event()

        registry.shutdown()

        assert response.read().strip() == b""
        connection.close()
    finally:
        server.shutdown()
        thread.join(WAIT)


@pytest.mark.usefixtures("happened")
def test_metrics_over_http_are_prometheus_text(server: HttpServer) -> None:
    connection, response = get(server, "/metrics")
    body = response.read().decode()
    connection.close()

    assert response.status == 200
    assert response.getheader("Content-Type", "").startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, s.labels.get("command"), s.labels.get("event")): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    assert samples["hystrix_events_total", "ok", "SUCCESS"] == 3
    assert samples["hystrix_events_total", "busy", "THREAD_POOL_REJECTED"] == 1
    assert samples["hystrix_in_flight", "slow", None] == 1


def test_the_page_is_served_at_the_root(server: HttpServer) -> None:
    connection, response = get(server, "/")
    body = response.read()
    connection.close()

    assert response.status == 200
    assert response.getheader("Content-Type") == "text/html; charset=utf-8"
    assert body == actors.dashboard.page()


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/nope", 404), ("POST", "/", 405)])
def test_other_requests_are_refused(
    server: HttpServer, method: str, path: str, status: int
) -> None:
    connection, response = get(server, path, method=method)
    response.read()
    connection.close()

    assert response.status == status


def test_the_server_binds_where_asked_and_picks_a_free_port(registry: CommandRegistry) -> None:
    server, thread = start_http_server(0, "127.0.0.1", registry)
    try:
        assert server.server_port > 0
        assert server.server_address[0] == "127.0.0.1"
        assert thread.daemon
    finally:
        server.shutdown()
        thread.join(WAIT)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("interval", 0, "interval must be a finite number of seconds > 0 and <= 86400, got 0"),
        (
            "interval",
            86_400.5,
            "interval must be a finite number of seconds > 0 and <= 86400, got 86400.5",
        ),
        ("max_connections", 0, "max_connections must be an integer >= 1, got 0"),
    ],
)
def test_bad_options_are_refused_with_their_name(option: str, value: Any, message: str) -> None:
    for make in (wsgi_app, asgi_app):
        with pytest.raises(ValueError, match=message):
            make(Source(), **{option: value})
    with pytest.raises(ValueError, match="port must be an integer between 0 and 65535"):
        start_http_server(-1)


# -- the WSGI and ASGI apps, driven directly -----------------------------------------------------


@dataclasses.dataclass
class Response:
    status: int
    #: Names in lower case (as ASGI sends them).
    headers: dict[str, str]
    body: bytes


def call_wsgi(
    app: WsgiApp,
    path: str,
    query: str = "",
    method: str = "GET",
    accept: str = "",
    mount: str = "",
) -> Response:
    """``path`` within the app; ``mount``: where it is mounted (``SCRIPT_NAME``)."""
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(REQUEST_METHOD=method, PATH_INFO=path, QUERY_STRING=query, HTTP_ACCEPT=accept)
    environ["SCRIPT_NAME"] = mount
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.update(
            status=int(status.split(maxsplit=1)[0]), headers={k.lower(): v for k, v in headers}
        )
        return lambda data: None

    body = validator(app)(environ, start_response)
    try:
        data = b"".join(body)
    finally:
        body.close()  # type: ignore[attr-defined]
    return Response(started["status"], started["headers"], data)


class AsgiServer:
    """Plays an ASGI server for one request; disconnects once ``until(body so far)`` holds."""

    def __init__(self, app: AsgiApp) -> None:
        self.app = app
        self.messages: list[dict[str, Any]] = []
        self.disconnect = asyncio.Event()
        self.sent = asyncio.Event()

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])

    async def request(
        self,
        path: str,
        query: str = "",
        method: str = "GET",
        accept: str = "",
        until: Callable[[bytes], bool] = lambda body: False,
        root_path: str = "",
    ) -> Response:
        requested = False

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self.disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            assert not self.disconnect.is_set(), f"sent after the disconnect: {message}"
            self.messages.append(message)
            self.sent.set()
            if until(self.body()):
                self.disconnect.set()

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": root_path,
            "headers": [(b"accept", accept.encode())] if accept else [],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080),
        }
        await asyncio.wait_for(self.app(scope, receive, send), WAIT)
        start = self.messages[0]
        assert start["type"] == "http.response.start"
        headers = {k.decode(): v.decode() for k, v in start["headers"]}
        return Response(start["status"], headers, self.body())


def call_asgi(
    app: AsgiApp,
    path: str,
    query: str = "",
    method: str = "GET",
    accept: str = "",
    mount: str = "",
) -> Response:
    """``path`` within the app; mounted, ASGI's way: ``root_path`` is the mount point and
    ``path`` the whole path, ``root_path`` included."""
    request = AsgiServer(app).request(mount + path, query, method, accept, root_path=mount)
    return asyncio.run(request)


def call_asgi_stripped(
    app: AsgiApp,
    path: str,
    query: str = "",
    method: str = "GET",
    accept: str = "",
    mount: str = "",
) -> Response:
    """Mounted as some servers and frameworks do it: ``path`` without ``root_path``."""
    return asyncio.run(AsgiServer(app).request(path, query, method, accept, root_path=mount))


APPS = [
    pytest.param(wsgi_app, call_wsgi, id="wsgi"),
    pytest.param(asgi_app, call_asgi, id="asgi"),
]


@pytest.mark.parametrize(("make", "call"), APPS)
def test_metrics_are_prometheus_text_or_openmetrics_as_accepted(make: Any, call: Any) -> None:
    app = make(Source(sample("a")))

    text = call(app, "/metrics")
    openmetrics = call(app, "/metrics", accept="application/openmetrics-text")

    assert text.status == 200
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    names = {f.name for f in text_string_to_metric_families(text.body.decode())}
    assert {"hystrix_events", "hystrix_circuit_state", "hystrix_latency_seconds"} <= names
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.body.endswith(b"# EOF\n")


@pytest.mark.parametrize(("make", "call"), APPS)
@pytest.mark.parametrize("path", ["/", "/index.html"])
def test_the_page_is_the_dashboard_s(make: Any, call: Any, path: str) -> None:
    response = call(make(Source()), path)

    assert response.status == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.body == actors.dashboard.page()


@pytest.mark.parametrize(("make", "call"), APPS)
def test_without_the_dashboard_the_root_says_so(
    make: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "actors.dashboard", None)

    response = call(make(Source()), "/")

    assert response.status == 404
    assert response.body.startswith(b"dashboard not installed")


@pytest.mark.parametrize(("make", "call"), APPS)
def test_without_prometheus_client_metrics_say_what_to_install(
    make: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in sys.modules if n.split(".")[0] == "prometheus_client"]:
        monkeypatch.setitem(sys.modules, name, None)  # submodules too: they are found first
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "actors.prometheus", raising=False)

    response = call(make(Source()), "/metrics")

    assert response.status == 404
    assert b"pip install 'hystrix-actors[prometheus]'" in response.body


@pytest.mark.parametrize(("make", "call"), APPS)
@pytest.mark.parametrize(
    ("method", "path", "query", "status"),
    [
        ("GET", "/nope", "", 404),
        ("GET", "/hystrix.stream/x", "", 404),
        ("POST", "/hystrix.stream", "", 405),
        ("GET", "/hystrix.stream", "delay=abc", 400),
        ("GET", "/hystrix.stream", "delay=", 400),
        ("GET", "/hystrix.stream", "delay=1.5", 400),
        ("GET", "/hystrix.stream", "delay=9", 400),
        ("GET", "/hystrix.stream", "delay=60001", 400),
    ],
)
def test_bad_requests_get_a_clear_answer(
    make: Any, call: Any, method: str, path: str, query: str, status: int
) -> None:
    source = Source()
    response = call(make(source), path, query, method)

    assert response.status == status
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    if status == 400:
        delay = query.partition("=")[2]
        assert response.body == (
            "delay must be a whole number of milliseconds between 10 and 60000, "
            f"got {delay!r}\n".encode()
        )
    if status == 405:
        assert response.headers["allow"] == "GET"
    assert source.reads == 0


@pytest.mark.parametrize(("make", "call"), APPS)
@pytest.mark.parametrize("query", ["scope=nodes", "scope=", "scope=FLEET"])
def test_a_stream_scope_other_than_local_or_fleet_is_refused(
    make: Any, call: Any, query: str
) -> None:
    source = Source()
    response = call(make(source), "/hystrix.stream", query)

    scope = query.partition("=")[2]
    assert response.status == 400
    assert response.body == f"scope must be 'local' or 'fleet', got {scope!r}\n".encode()
    assert source.reads == 0


@pytest.mark.parametrize(("make", "call"), APPS)
def test_without_a_fleet_the_fleet_stream_is_not_found_and_says_why(make: Any, call: Any) -> None:
    source = Source(sample("a"))
    response = call(make(source), "/hystrix.stream", "scope=fleet")

    assert response.status == 404
    assert response.body.startswith(b"no fleet: this registry shares no circuits")
    assert b"CommandRegistry(fleet=RedisFleet(...))" in response.body
    assert source.reads == 0


class Elsewhere:
    """A fleet (the registry's protocol) with no fleet-wide view to read."""

    node = "n1"

    def attach(self, host: Any) -> None: ...

    def close(self) -> None: ...


@pytest.mark.parametrize(("make", "call"), APPS)
def test_a_fleet_without_a_view_has_no_fleet_stream_nor_toggle(make: Any, call: Any) -> None:
    source = Source(sample("a"))
    source.fleet = Elsewhere()  # type: ignore[attr-defined]
    app = make(source)

    stream = call(app, "/hystrix.stream", "scope=fleet")
    page = call(app, "/")

    assert stream.status == 404
    assert stream.body.startswith(b"this registry's fleet offers no fleet-wide stream")
    assert page.body == actors.dashboard.page()


def test_a_local_stream_sends_no_fleet_event() -> None:
    app = wsgi_app(Source(sample("a")))

    chunk = app.tick()

    assert chunk is not None
    assert b"event:" not in chunk
    assert chunk == app.tick("local")


MOUNTED = [
    pytest.param(wsgi_app, call_wsgi, id="wsgi"),
    pytest.param(asgi_app, call_asgi, id="asgi"),
    pytest.param(asgi_app, call_asgi_stripped, id="asgi-path-stripped"),
]


@pytest.mark.parametrize(("make", "call"), MOUNTED)
@pytest.mark.parametrize("mount", ["/hystrix", "/ops/hystrix", "/hystrix/"])
def test_mounted_every_route_answers_under_the_prefix(make: Any, call: Any, mount: str) -> None:
    app = make(Source(sample("a")))
    within = mount.rstrip("/")  # a mount point ending in "/" is the same mount point

    page = call(app, "/", mount=within)
    index = call(app, "/index.html", mount=within)
    metrics = call(app, "/metrics", mount=within)
    stream = call(app, "/hystrix.stream", "delay=abc", mount=within)  # the stream's own 400
    missing = call(app, "/nope", mount=within)

    assert (page.status, page.body) == (200, actors.dashboard.page())
    assert (index.status, index.body) == (200, actors.dashboard.page())
    assert metrics.status == 200
    assert b'hystrix_in_flight{command="a"}' in metrics.body
    assert stream.status == 400
    assert stream.body.startswith(b"delay must be a whole number")
    assert (missing.status, missing.body) == (404, b"not found: /nope\n")


@pytest.mark.parametrize(("make", "call"), MOUNTED)
@pytest.mark.parametrize(
    ("mount", "query", "location"),
    [
        ("/hystrix", "", "hystrix/"),
        ("/ops/hystrix", "", "hystrix/"),
        ("/hystrix", "delay=100", "hystrix/?delay=100"),
        ("/my dashboard", "", "my%20dashboard/"),
        ("/ops:hystrix", "", "ops%3Ahystrix/"),  # not a URL with a scheme "ops:"
    ],
)
def test_the_bare_mount_point_redirects_to_itself_with_a_slash(
    make: Any, call: Any, mount: str, query: str, location: str
) -> None:
    """Served at "/hystrix", the page's "hystrix.stream" would resolve to "/hystrix.stream".
    The ``Location`` is relative, so a proxy's own prefix in front of the mount stays."""
    response = call(make(Source()), "", query, mount=mount)

    assert response.status == 308
    assert response.headers["location"] == location
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    base = "http://example.com/proxied" + urllib.parse.quote(mount)
    assert urllib.parse.urljoin(base, location).startswith(f"{base}/")


@pytest.mark.parametrize(("make", "call"), APPS)
@pytest.mark.parametrize("mount", ["", "/hystrix/"])
def test_at_the_root_or_a_mount_point_ending_in_a_slash_an_empty_path_is_the_page(
    make: Any, call: Any, mount: str
) -> None:
    response = call(make(Source()), "", mount=mount)

    assert (response.status, response.body) == (200, actors.dashboard.page())


@pytest.mark.parametrize(("make", "call"), MOUNTED)
def test_the_bare_mount_point_still_refuses_other_methods(make: Any, call: Any) -> None:
    response = call(make(Source()), "", method="POST", mount="/hystrix")

    assert (response.status, response.headers["allow"]) == (405, "GET")


def stream_environ() -> dict[str, Any]:
    environ: dict[str, Any] = {
        "SCRIPT_NAME": "",
        "PATH_INFO": "/hystrix.stream",
        "QUERY_STRING": "",
    }
    setup_testing_defaults(environ)
    return environ


def test_a_wsgi_stream_is_a_batch_and_a_ping_per_tick() -> None:
    app = wsgi_app(Source(sample("a")), interval=0.01)
    environ = stream_environ()
    statuses: list[str] = []

    body = validator(app)(environ, lambda status, headers: statuses.append(status))
    chunks = [next(body) for _ in range(2)]
    body.close()  # type: ignore[attr-defined]

    assert statuses == ["200 OK"]
    for chunk in chunks:
        assert chunk.endswith(PING)
        names = [json.loads(line[6:])["type"] for line in chunk.split(b"\n\n")[:-2]]
        assert names == ["HystrixCommand", "HystrixThreadPool"]
    assert app.streams == 0


def test_a_wsgi_stream_holds_its_slot_until_closed_even_if_never_read() -> None:
    app = wsgi_app(Source(), max_connections=1)
    environ = stream_environ()

    first = app(environ, lambda status, headers: None)
    assert call_wsgi(app, "/hystrix.stream").status == 503
    first.close()  # type: ignore[attr-defined]

    assert app.streams == 0
    second = app(environ, lambda status, headers: None)
    assert app.streams == 1
    second.close()  # type: ignore[attr-defined]


def test_closing_a_wsgi_app_ends_its_streams_and_refuses_new_ones() -> None:
    app = wsgi_app(Source(), interval=60.0)
    environ = stream_environ()
    body = iter(app(environ, lambda status, headers: None))
    assert next(body) == PING

    app.close()

    assert list(body) == []  # at once, not after 60 s
    assert app.streams == 0
    refused = call_wsgi(app, "/hystrix.stream")
    assert (refused.status, refused.body) == (503, b"the server is shutting down\n")


class ShutDown:
    def all_metrics(self) -> list[Any]:
        raise CommandError("the registry is shut down", reason="shutdown")


def test_a_wsgi_stream_ends_when_its_registry_cannot_answer() -> None:
    app = wsgi_app(ShutDown())
    environ = stream_environ()

    assert list(app(environ, lambda status, headers: None)) == []
    assert app.streams == 0


def run_stream(app: AsgiApp, until: Callable[[bytes], bool]) -> tuple[Response, AsgiServer]:
    server = AsgiServer(app)
    response = asyncio.run(server.request("/hystrix.stream", until=until))
    return response, server


def test_an_asgi_stream_runs_until_the_client_disconnects() -> None:
    threads: list[int] = []

    class Recording(Source):
        def all_metrics(self) -> list[Any]:
            threads.append(threading.get_ident())
            return super().all_metrics()

    app = asgi_app(Recording(sample("a")), interval=0.01)

    response, server = run_stream(app, until=lambda body: body.count(PING) == 3)

    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    ticks = response.body.split(PING)
    assert len(ticks) == 4 and ticks[-1] == b""
    for tick in ticks[:-1]:
        names = [json.loads(line[6:])["type"] for line in tick.split(b"\n\n") if line]
        assert names == ["HystrixCommand", "HystrixThreadPool"]
    assert all(m.get("more_body") for m in server.messages[1:])
    assert app.streams == 0
    assert threading.get_ident() not in threads  # all_metrics ran off the event loop


def test_an_asgi_stream_past_the_limit_is_refused_with_503() -> None:
    app = asgi_app(Source(), interval=0.01, max_connections=1)

    async def scenario() -> tuple[Response, Response]:
        first = AsgiServer(app)
        streaming = asyncio.ensure_future(first.request("/hystrix.stream"))
        await asyncio.wait_for(first.sent.wait(), WAIT)
        refused = await AsgiServer(app).request("/hystrix.stream")
        first.disconnect.set()
        return await streaming, refused

    streamed, refused = asyncio.run(scenario())

    assert streamed.status == 200
    assert refused.status == 503
    assert refused.body == b"hystrix.stream: at most 1 concurrent connections; try again later\n"
    assert app.streams == 0


def test_closing_an_asgi_app_ends_its_streams_with_a_last_empty_body() -> None:
    app = asgi_app(Source(), interval=0.01)

    async def scenario() -> AsgiServer:
        server = AsgiServer(app)
        streaming = asyncio.ensure_future(server.request("/hystrix.stream"))
        await asyncio.wait_for(server.sent.wait(), WAIT)
        app.close()
        await streaming
        return server

    server = asyncio.run(scenario())

    assert server.messages[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert app.streams == 0


def test_an_asgi_stream_ends_when_its_registry_cannot_answer() -> None:
    app = asgi_app(ShutDown())

    response, server = run_stream(app, until=lambda body: False)

    assert (response.status, response.body) == (200, b"")
    assert server.messages[-1]["more_body"] is False
    assert app.streams == 0


def test_the_asgi_lifespan_completes_and_its_shutdown_closes_the_app() -> None:
    app = asgi_app(Source())
    sent: list[dict[str, Any]] = []
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))

    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert call_asgi(app, "/hystrix.stream").status == 503


def test_the_apps_read_the_default_registry_when_given_none() -> None:
    CommandRegistry.reset()
    try:
        CommandRegistry.do("http-default", lambda: 1)
        response, _ = run_stream(asgi_app(), until=lambda body: PING in body)
        messages = [
            json.loads(line[6:]) for line in response.body.split(b"\n\n") if line[:5] == b"data:"
        ]
        assert {m["name"] for m in messages} == {"http-default"}
    finally:
        CommandRegistry.reset()


# -- filters: ?keys= and ?group= -----------------------------------------------------------------


FILTERED = Source(
    sample("a", group="Issues"),
    sample("with space", group="Users"),
    sample("x,y", group="Issues"),
    sample("z", group="a,b"),
)


def commands_in(body: bytes) -> list[str]:
    return [
        m["name"]
        for line in body.split(b"\n\n")
        if line.startswith(b"data: ")
        for m in [json.loads(line[6:])]
        if m["type"] == "HystrixCommand"
    ]


def first_tick(make: Any, query: str) -> bytes:
    """The stream's first tick (up to its ping) for ``query``, from a WSGI or an ASGI app."""
    app = make(FILTERED, interval=0.01)
    if make is wsgi_app:
        environ = stream_environ()
        environ["QUERY_STRING"] = query
        body = app(environ, lambda status, headers: None)
        try:
            return next(iter(body))
        finally:
            body.close()
    response = asyncio.run(
        AsgiServer(app).request("/hystrix.stream", query, until=lambda body: PING in body)
    )
    assert response.status == 200
    return response.body.split(PING)[0] + PING


@pytest.mark.parametrize("make", [wsgi_app, asgi_app])
@pytest.mark.parametrize(
    ("query", "keys"),
    [
        ("", ["a", "with space", "x,y", "z"]),
        ("keys=a", ["a"]),
        ("keys=z,a", ["a", "z"]),
        ("keys=with%20space", ["with space"]),
        ("keys=with+space", ["with space"]),
        ("keys=x%2Cy", ["x,y"]),
        ("keys=x,y", []),
        ("keys=a&keys=z", ["a", "z"]),
        ("keys=nobody", []),
        ("group=Issues", ["a", "x,y"]),
        ("group=Users,Issues", ["a", "with space", "x,y"]),
        ("group=a%2Cb", ["z"]),
        ("group=Issues&keys=a,z", ["a"]),
        ("keys=a&delay=20&scope=local", ["a"]),
    ],
)
def test_keys_and_group_keep_those_commands_and_their_pools(
    make: Any, query: str, keys: list[str]
) -> None:
    tick = first_tick(make, query)

    assert commands_in(tick) == keys
    events = [json.loads(line[6:]) for line in tick.split(b"\n\n") if line.startswith(b"data:")]
    pools = [m["name"] for m in events if m["type"] == "HystrixThreadPool"]
    assert pools == [f"pool-of-{key}" for key in keys]
    assert tick.endswith(PING)


@pytest.mark.parametrize(("make", "call"), APPS)
@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "keys=",
            "keys must be command keys separated by commas, each non-empty and at most 256 "
            "characters (a comma within a name as %2C), got ''",
        ),
        (
            "keys=a,,b",
            "keys must be command keys separated by commas, each non-empty and at most 256 "
            "characters (a comma within a name as %2C), got 'a,,b'",
        ),
        (
            "keys=a,%20",
            "keys must be command keys separated by commas, each non-empty and at most 256 "
            "characters (a comma within a name as %2C), got 'a, '",
        ),
        (
            f"keys={'k' * 257}",
            "keys must be command keys separated by commas, each non-empty and at most 256 "
            f"characters (a comma within a name as %2C), got {show('k' * 257)}",
        ),
        ("keys=a%FF", "keys must be UTF-8 once percent-decoded, got 'a%FF'"),
        (
            "group=",
            "group must be command groups separated by commas, each non-empty (a comma within"
            " a name as %2C), got ''",
        ),
        (
            "keys=a&group=x,",
            "group must be command groups separated by commas, each non-empty (a comma within"
            " a name as %2C), got 'x,'",
        ),
    ],
)
def test_bad_keys_or_groups_are_refused_saying_what_is_wrong(
    make: Any, call: Any, query: str, message: str
) -> None:
    source = Source(sample("a"))
    response = call(make(source), "/hystrix.stream", query)

    assert response.status == 400
    assert response.body == (message + "\n").encode()
    assert source.reads == 0


# -- ticks made once for every stream of an app --------------------------------------------------


def open_streams(app: WsgiApp, count: int, query: str = "") -> list[Any]:
    bodies = []
    for _ in range(count):
        environ = stream_environ()
        environ["QUERY_STRING"] = query
        bodies.append(app(environ, lambda status, headers: None))
    return bodies


def test_streams_of_an_app_share_each_tick_instead_of_reading_for_each() -> None:
    source = Source(sample("a", group="g"), sample("b", group="h"))
    app = wsgi_app(source, interval=1.0)
    streams = open_streams(app, 2) + open_streams(app, 1, "group=h")

    rounds = [[next(stream) for stream in streams] for _ in range(2)]
    for stream in streams:
        stream.close()

    assert source.reads == 2  # one per tick, not one per stream and tick
    assert app.ticks_made == 2
    for chunks in rounds:
        assert chunks[0] is chunks[1]  # the very same bytes, joined once
        assert commands_in(chunks[0]) == ["a", "b"]
        assert commands_in(chunks[2]) == ["b"]
    assert app.streams == 0


def test_a_stream_asking_while_a_tick_is_made_waits_for_that_tick() -> None:
    entered, release = threading.Event(), threading.Event()

    class Slow(Source):
        def all_metrics(self) -> list[Any]:
            entered.set()
            assert release.wait(WAIT)
            return super().all_metrics()

    source = Slow(sample("a"))
    app = wsgi_app(source, interval=60.0)
    first, second = open_streams(app, 2)
    chunks: list[bytes] = []
    making = threading.Thread(target=lambda: chunks.append(next(first)))
    making.start()
    assert entered.wait(WAIT)
    waiting = threading.Thread(target=lambda: chunks.append(next(second)))
    waiting.start()

    release.set()
    making.join(WAIT)
    waiting.join(WAIT)
    first.close()
    second.close()

    assert len(chunks) == 2 and chunks[0] is chunks[1]
    assert source.reads == 1


def test_many_streams_reading_at_once_share_most_ticks() -> None:
    source = Source(sample("a"))
    app = wsgi_app(source, interval=0.2)
    streams = open_streams(app, 4)
    ticks = 5

    def read(stream: Any) -> None:
        for _ in range(ticks):
            next(stream)

    threads = [threading.Thread(target=read, args=(stream,)) for stream in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    for stream in streams:
        stream.close()

    assert source.reads < len(streams) * ticks / 2  # one per stream and tick: 20


def test_an_asgi_stream_and_a_wsgi_one_of_an_app_share_ticks_too() -> None:
    source = Source(sample("a"))
    app = asgi_app(source, interval=60.0)

    first = asyncio.run(AsgiServer(app).request("/hystrix.stream", until=lambda body: PING in body))
    second = asyncio.run(
        AsgiServer(app).request("/hystrix.stream", "keys=a", until=lambda body: PING in body)
    )

    assert first.body == second.body
    assert source.reads == 2  # the last stream closed in between: nothing kept


def test_a_stream_opened_while_another_is_open_gets_the_latest_tick() -> None:
    source = Source(sample("a"))
    app = asgi_app(source, interval=60.0)

    async def scenario() -> tuple[Response, Response]:
        first = AsgiServer(app)
        streaming = asyncio.ensure_future(first.request("/hystrix.stream"))
        await asyncio.wait_for(first.sent.wait(), WAIT)
        second = await AsgiServer(app).request("/hystrix.stream", until=lambda body: PING in body)
        first.disconnect.set()
        return await streaming, second

    first, second = asyncio.run(scenario())

    assert first.body == second.body
    assert source.reads == 1


def test_when_the_last_stream_closes_nothing_rendered_is_kept() -> None:
    source = Source(sample("a"))
    app = wsgi_app(source, interval=60.0)
    (stream,) = open_streams(app, 1)
    first = next(stream)
    stream.close()

    (again,) = open_streams(app, 1)
    second = next(again)
    again.close()

    assert source.reads == 2
    assert second == first


def test_a_registry_s_streams_see_its_metrics_change_from_tick_to_tick() -> None:
    source = Source(sample("a", errors=1))
    app = wsgi_app(source, interval=0.01)
    (stream,) = open_streams(app, 1)
    first = next(stream)
    source.metrics = [sample("a", errors=2), sample("b")]
    second = next(stream)
    stream.close()

    assert [json.loads(first[6:].split(b"\n")[0])["errorCount"]] == [1]
    assert commands_in(second) == ["a", "b"]
    assert json.loads(second[6:].split(b"\n")[0])["errorCount"] == 2


# -- the fleet-wide stream, filtered and rendered once per read ----------------------------------


class StubFleet:
    """A fleet with a fleet-wide view; its reader is ``StubReader``."""

    node = "n1"

    def new_store(self) -> Any:  # pragma: no cover - the stub reader opens none
        raise AssertionError("no store")


class StubReader:
    """Stands in for ``actors.fleet.view.FleetReader``: one read, the same for every stream."""

    batch: Any = None
    reads = 0

    def __init__(self, fleet: Any) -> None:
        self.fleet = fleet

    def read(self, also: Any = ()) -> Any:
        type(self).reads += 1
        return type(self).batch

    def close(self) -> None: ...


@pytest.fixture
def fleet_source(monkeypatch: pytest.MonkeyPatch) -> Source:
    view = pytest.importorskip("actors.fleet.view")  # the redis extra

    summed = [{**command_message(m), "reportingHosts": 2} for m in FILTERED.metrics] + [
        {**pool_message(m), "reportingHosts": 2} for m in FILTERED.metrics
    ]
    StubReader.batch = view.FleetBatch(messages=tuple(summed), nodes=("n1", "n2"))
    StubReader.reads = 0
    monkeypatch.setattr(view, "FleetReader", StubReader)
    source = Source(*FILTERED.metrics)
    source.fleet = StubFleet()  # type: ignore[attr-defined]
    return source


def fleet_events_of(body: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    head, _, rest = body.partition(b"\n\n")
    assert head.startswith(b"event: fleet\ndata: ")
    return json.loads(head.split(b"data: ")[1]), [
        json.loads(line[6:]) for line in rest.split(b"\n\n") if line.startswith(b"data: ")
    ]


def test_the_fleet_stream_is_filtered_like_the_local_one(fleet_source: Source) -> None:
    app = wsgi_app(fleet_source)

    whole = app.tick("fleet")
    chunk = app.tick("fleet", groups={"Issues"})
    keyed = app.tick("fleet", keys={"z"}, groups=None)

    assert whole is not None and chunk is not None and keyed is not None
    status, messages = fleet_events_of(chunk)
    assert status == {"scope": "fleet", "node": "n1", "connected": True, "nodes": 2}
    assert [(m["type"], m["name"]) for m in messages] == [
        ("HystrixCommand", "a"),
        ("HystrixCommand", "x,y"),
        ("HystrixThreadPool", "pool-of-a"),
        ("HystrixThreadPool", "pool-of-x,y"),
    ]
    assert all(m["reportingHosts"] == 2 for m in messages)
    assert commands_in(keyed) == ["z"]
    assert len(fleet_events_of(whole)[1]) == 8
    assert whole.endswith(PING)


def test_a_fleet_read_is_rendered_once_for_every_stream(
    fleet_source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered: list[int] = []
    of_messages = Tick.of_messages.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Tick], *args: Any, **kwargs: Any) -> Tick:
        rendered.append(1)
        return of_messages(cls, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(Tick, "of_messages", classmethod(counting))
    app = wsgi_app(fleet_source, interval=60.0)
    streams = open_streams(app, 3, "scope=fleet")

    chunks = [next(stream) for stream in streams]
    for stream in streams:
        stream.close()

    assert chunks[0] is chunks[1] is chunks[2]
    assert fleet_source.reads == 1
    assert len(rendered) == 1


# -- a stream of a few keys reads only those ---------------------------------------------------


class Counting:
    """A registry's metrics, counting what the app reads: every key, or one key at a time."""

    def __init__(self, registry: CommandRegistry) -> None:
        self.registry = registry
        self.all_reads = 0
        self.key_reads: list[str] = []

    def all_metrics(self) -> list[Any]:
        self.all_reads += 1
        return self.registry.all_metrics()

    def metrics(self, key: str) -> Any:
        self.key_reads.append(key)
        return self.registry.metrics(key)


@pytest.fixture
def counting(registry: CommandRegistry) -> Counting:
    for key in ("a", "b", "c"):
        registry.do(key, lambda: 1)
    return Counting(registry)


def test_a_stream_of_a_few_keys_alone_reads_those_keys_only(counting: Counting) -> None:
    app = wsgi_app(counting, interval=0.01)
    (stream,) = open_streams(app, 1, "keys=c,a,never-asked")

    chunks = [next(stream) for _ in range(3)]
    stream.close()

    assert counting.all_reads == 0
    assert counting.key_reads == ["a", "c", "never-asked"] * 3
    assert [commands_in(chunk) for chunk in chunks] == [["a", "c"]] * 3
    assert app.ticks_made == 0


def test_a_stream_of_a_few_keys_picks_them_from_a_fresh_tick_of_the_app(
    counting: Counting,
) -> None:
    app = wsgi_app(counting, interval=60.0)
    (everything,) = open_streams(app, 1)
    (few,) = open_streams(app, 1, "keys=b")

    whole, picked = next(everything), next(few)
    everything.close()
    few.close()

    assert (counting.all_reads, counting.key_reads) == (1, [])
    assert commands_in(whole) == ["a", "b", "c"]
    assert commands_in(picked) == ["b"]


def test_a_stream_of_many_keys_shares_the_app_s_ticks(counting: Counting) -> None:
    many = ",".join(["a", "b", *(f"k{n}" for n in range(40))])
    app = wsgi_app(counting, interval=0.01)
    (stream,) = open_streams(app, 1, f"keys={many}")

    chunk = next(stream)
    stream.close()

    assert (counting.all_reads, counting.key_reads) == (1, [])
    assert commands_in(chunk) == ["a", "b"]


def test_a_stream_of_a_few_keys_ends_when_its_registry_is_shut_down(
    registry: CommandRegistry, counting: Counting
) -> None:
    app = wsgi_app(counting, interval=0.01)
    (stream,) = open_streams(app, 1, "keys=a")
    assert commands_in(next(stream)) == ["a"]

    registry.shutdown()

    assert list(stream) == []
    assert app.streams == 0


def test_a_stream_s_first_tick_is_no_older_than_the_app_s_interval() -> None:
    source = Source(sample("a"))
    app = wsgi_app(source, interval=1e-6)  # any tick made before is older than that
    (slow,) = open_streams(app, 1, "delay=60000")
    next(slow)

    (late,) = open_streams(app, 1, "delay=60000")
    next(late)
    slow.close()
    late.close()

    assert source.reads == 2
