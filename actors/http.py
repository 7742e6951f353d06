"""Serving the metrics over HTTP: the Hystrix stream, Prometheus and the dashboard page.

Three ways, as prometheus_client offers them, with the same routes:

* ``wsgi_app(registry)``: mount it in any WSGI server;
* ``asgi_app(registry)``: pure ASGI 3 (asyncio), no framework needed;
* ``start_http_server(port)``: the standard library's ``wsgiref`` on a daemon thread.

Routes (GET only):

* ``/hystrix.stream``: server-sent events, every ``interval`` seconds one ``HystrixCommand``
  message per key, one ``HystrixThreadPool`` message per pool and one ``HystrixCollapser``
  message per registered collapser, then a ``ping:`` line. ``?delay=<ms>`` changes the interval
  for that connection (Hystrix's parameter). ``?keys=a,b`` (command and collapser keys) and
  ``?group=g`` (command and collapser groups), comma separated, percent-encoded (a comma within
  a name as ``%2C``), keep the messages of those commands, their pools and those collapsers
  only. Past ``max_connections`` open streams: 503.
* ``/hystrix.stream?scope=fleet``: the same messages summed over the fleet's live nodes (what
  Netflix's Turbine did, built in; ``actors.fleet.view`` says how they add up), for a registry
  with a fleet (``CommandRegistry(fleet=RedisFleet(...))``); collapsers are not in it (their
  messages are each node's own, in its local stream). Each tick starts with a named event
  ``event: fleet`` whose data says whether Redis could be read (``{"scope": "fleet",
  "connected": true, "node": ..., "nodes": <live nodes>}``); when it cannot (``"connected":
  false`` and an ``"error"``), the tick carries this node's own messages instead. Without a
  fleet: 404 saying so. ``?scope=local`` (the default) is this node's stream; any other scope is
  a 400.
* ``/metrics``: Prometheus text (OpenMetrics if the ``Accept`` header asks), when
  prometheus_client is installed (the ``prometheus`` extra); 404 otherwise.
* ``/`` (and ``/index.html``): the dashboard page, when ``actors.dashboard`` is installed. With
  a fleet, the page is told this node's name and offers the fleet scope.

Mounted under a prefix (WSGI's ``SCRIPT_NAME``, ASGI's ``root_path``), the routes are under it:
``/hystrix/``, ``/hystrix/hystrix.stream``, ``/hystrix/metrics``. The bare mount point
(``/hystrix``) redirects to ``hystrix/``, where the page's relative URLs resolve under the prefix.

A tick is made once for all the streams of an app (``actors.ticks``): ``registry.all_metrics()``
read once and rendered by one ``actors.stream.Renderer`` (which renders again only the keys
whose metrics changed); every stream sends that tick, or the pieces of it its filters keep.
Streams of one interval fall into step and share every tick. A stream naming at most
``actors.ticks.FEW_KEYS`` keys, when no tick of the app is fresh, reads just those keys
(``registry.metrics(key)``) rather than make a tick of every key. No lock is held between
ticks. A registry that is shut down ends its streams.

A fleet-wide tick also reads Redis, on the same thread (a WSGI connection's own, an ASGI app's
worker thread: never the event loop), within the fleet's short timeouts; one ``FleetReader`` per
app serves all its fleet-wide streams, so Redis sees at most one read per
``actors.fleet.view.FRESH`` seconds whatever the number of streams, and each read is rendered
once.

``start_http_server``'s thread is supervised: an exception escaping its serve loop is logged
(``http.restarted``) and the loop started again after a backoff; a request's own fault is
logged (``http.request_failed``) and never reaches the loop.

Also here, for the application's own app: ``RequestScopeMiddleware`` (defined in
``actors.request_cache``) opens one request scope per request of an ASGI or WSGI app, for the
request cache (docs/request-cache.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import http
import importlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote_plus

from supervision.checks import check_int, check_seconds, show

from .http_server import SupervisedWsgiServer, serve
from .log import logger
from .request_cache import RequestScopeMiddleware
from .stream import PING, MetricsSource, Renderer, Tick, sse_event
from .ticks import Ticks, tick_of_keys

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from .fleet.view import FleetBatch, FleetReader

__all__ = [
    "MAX_DELAY_MS",
    "MIN_DELAY_MS",
    "AsgiApp",
    "HttpServer",
    "RequestScopeMiddleware",
    "WsgiApp",
    "asgi_app",
    "start_http_server",
    "wsgi_app",
]

#: The range ``?delay=`` accepts, in milliseconds.
MIN_DELAY_MS = 10
MAX_DELAY_MS = 60_000

#: The ``?scope=`` values: this node's stream, or the fleet's sums.
SCOPES = ("local", "fleet")

#: The longest command key (as ``CommandRegistry`` accepts them).
MAX_KEY_LENGTH = 256

STREAM_PATH = "/hystrix.stream"
METRICS_PATH = "/metrics"
PAGE_PATHS = frozenset({"/", "/index.html"})

_TEXT = "text/plain; charset=utf-8"
_STREAM_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate"),
    ("Pragma", "no-cache"),
)

WsgiStartResponse = Callable[..., Any]
AsgiMessage = MutableMapping[str, Any]
AsgiReceive = Callable[[], Awaitable[AsgiMessage]]
AsgiSend = Callable[[AsgiMessage], Awaitable[None]]


@dataclasses.dataclass(frozen=True, slots=True)
class _Response:
    """A whole response, sent at once."""

    status: int
    body: bytes
    content_type: str = _TEXT
    headers: tuple[tuple[str, str], ...] = ()

    def header_list(self) -> list[tuple[str, str]]:
        return [("Content-Type", self.content_type), *self.headers]


@dataclasses.dataclass(frozen=True, slots=True)
class _Stream:
    """The stream, one tick every ``interval`` seconds, of this node or of the fleet; with
    ``keys`` and/or ``groups``, only the messages of those commands (and their pools)."""

    interval: float
    scope: str = "local"
    keys: frozenset[str] | None = None
    groups: frozenset[str] | None = None


class _Sender:
    """One open stream's side: what it asked for, the tick it sent last, and, for a stream of a
    few keys, the renderer of its own ticks (made when no tick of the app's is fresh)."""

    __slots__ = ("renderer", "sent", "stream")

    def __init__(self, stream: _Stream) -> None:
        self.stream = stream
        self.sent: Tick | None = None
        self.renderer: Renderer | None = None

    def wait(self) -> float:
        """Seconds until the next tick: an interval after the last one sent was made."""
        sent = self.sent
        if sent is None:
            return 0.0
        left = sent.at + self.stream.interval - time.monotonic()
        return min(max(0.0, left), threading.TIMEOUT_MAX)


def _text(status: int, message: str, *headers: tuple[str, str]) -> _Response:
    return _Response(status, message.encode() + b"\n", _TEXT, headers)


def _parameters(query: str) -> dict[str, list[str]]:
    """The query's parameters by name; values as sent, still percent-encoded (so a comma
    within a name, ``%2C``, is told from the commas between names)."""
    parameters: dict[str, list[str]] = {}
    for field in query.split("&"):
        if field:
            name, _, value = field.partition("=")
            parameters.setdefault(unquote_plus(name), []).append(value)
    return parameters


def _names(parameter: str, values: list[str], longest: int | None) -> frozenset[str] | _Response:
    """The names a ``?keys=`` or ``?group=`` lists (comma separated; repeated, all of them),
    or the 400 saying what is wrong with them."""
    kind = "command keys" if parameter == "keys" else "command groups"
    rule = f"{kind} separated by commas, each non-empty"
    if longest is not None:
        rule += f" and at most {longest} characters"
    names: set[str] = set()
    for value in values:
        for encoded in value.split(","):
            try:
                name = unquote_plus(encoded, errors="strict")
            except UnicodeDecodeError:
                return _text(
                    400, f"{parameter} must be UTF-8 once percent-decoded, got {show(encoded)}"
                )
            if not name.strip() or (longest is not None and len(name) > longest):
                sent = unquote_plus(value)
                return _text(
                    400,
                    f"{parameter} must be {rule} (a comma within a name as %2C), got {show(sent)}",
                )
            names.add(name)
    return frozenset(names)


class _Endpoints:
    """What the WSGI and ASGI apps share: routing, the ticks, the connection limit."""

    def __init__(
        self, registry: MetricsSource | None, *, interval: float, max_connections: int
    ) -> None:
        check_seconds("interval", interval)
        check_int("max_connections", max_connections, 1)
        self.registry = registry
        self.interval = float(interval)
        self.max_connections = max_connections
        self._lock = threading.Lock()
        self._streams = 0
        self._closed = threading.Event()
        self._prometheus: CollectorRegistry | None = None
        self._reader: FleetReader | None = None
        self._ticks = Ticks(registry)
        #: The fleet's last read, as a tick (or the ``fleet`` event saying why it failed).
        self._fleet_read: tuple[FleetBatch, Tick | bytes] | None = None

    @property
    def streams(self) -> int:
        """Streams open now."""
        return self._streams

    def close(self) -> None:
        """End the open streams (WSGI ones at once, ASGI ones at their next tick) and refuse new
        ones (503)."""
        self._closed.set()
        with self._lock:
            reader, self._reader = self._reader, None
            self._fleet_read = None
        if reader is not None:
            reader.close()
        self._ticks.forget()

    # -- routing -------------------------------------------------------------------------------

    def route(
        self, method: str, path: str, query: str, accept: str, mount: str = ""
    ) -> _Response | _Stream:
        """The answer to ``method path?query``; ``path`` is within the app, ``mount`` the path
        of the URL before it (WSGI's ``SCRIPT_NAME``)."""
        if method != "GET":
            return _text(405, f"{method} is not allowed: only GET", ("Allow", "GET"))
        if not path:
            if mount and not mount.endswith("/"):
                return _to_the_mount_point(mount, query)
            path = "/"
        if path == STREAM_PATH:
            return self._stream(query)
        if path == METRICS_PATH:
            return self._metrics(accept)
        return self._dashboard(path)

    def _stream(self, query: str) -> _Response | _Stream:
        parameters = _parameters(query)
        scope = unquote_plus(parameters.get("scope", ["local"])[-1])
        if scope not in SCOPES:
            return _text(400, f"scope must be 'local' or 'fleet', got {show(scope)}")
        filters: dict[str, frozenset[str] | None] = {}
        for parameter, longest in (("keys", MAX_KEY_LENGTH), ("group", None)):
            values = parameters.get(parameter)
            names = None if values is None else _names(parameter, values, longest)
            if isinstance(names, _Response):
                return names
            filters[parameter] = names
        interval = self.interval
        delays = parameters.get("delay")
        if delays:
            delay = unquote_plus(delays[-1])
            try:
                ms = int(delay)
            except ValueError:
                ms = -1
            if not MIN_DELAY_MS <= ms <= MAX_DELAY_MS:
                return _text(
                    400,
                    f"delay must be a whole number of milliseconds between {MIN_DELAY_MS} and "
                    f"{MAX_DELAY_MS}, got {show(delay)}",
                )
            interval = ms / 1000
        if scope == "fleet":
            refused = self._without_fleet_view()
            if refused is not None:
                return refused
        return _Stream(interval, scope, filters["keys"], filters["group"])

    # -- the fleet -----------------------------------------------------------------------------

    def _fleet(self) -> Any:
        """The registry's fleet (None without one); reading it starts no registry but the
        default one, which the stream would start anyway."""
        source: Any = self.registry
        if source is None:
            from .registry import CommandRegistry  # noqa: PLC0415 - the registry imports the actors

            source = CommandRegistry.default()
        return getattr(source, "fleet", None)

    def _without_fleet_view(self) -> _Response | None:
        """Why there is no fleet-wide stream here (a 404), or None when there is one."""
        fleet = self._fleet()
        if fleet is None:
            return _text(
                404,
                "no fleet: this registry shares no circuits, so there is no fleet-wide stream"
                " (CommandRegistry(fleet=RedisFleet(...)) joins one); this node's stream is"
                " hystrix.stream",
            )
        if not callable(getattr(fleet, "new_store", None)):
            return _text(404, f"this registry's fleet offers no fleet-wide stream: {show(fleet)}")
        module = _optional("actors.fleet.view")
        if isinstance(module, ImportError):
            return _text(
                404,
                "the fleet-wide stream needs redis-py "
                f"(pip install 'hystrix-actors[redis]'): {module}",
            )
        return None

    def _fleet_reader(self, fleet: Any) -> FleetReader | None:
        """The app's reader of ``fleet``'s snapshots (made at the first fleet-wide tick)."""
        module = _optional("actors.fleet.view")
        if isinstance(module, ImportError) or not callable(getattr(fleet, "new_store", None)):
            return None
        with self._lock:
            if self._closed.is_set():
                return None
            reader, old = self._reader, None
            if reader is None or reader.fleet is not fleet:  # the default registry was reset
                old, reader = reader, module.FleetReader(fleet)
                self._reader = reader
        if old is not None:
            old.close()
        return reader

    def _fleet_tick(self, tick: Tick, stream: _Stream) -> bytes:
        """A fleet-wide tick and a ping, as ``actors.fleet.view.fleet_events`` makes it: the
        ``fleet`` event, then the fleet's sums, or this node's ``tick`` when Redis cannot be
        read (or the registry has no fleet any more: the default one was replaced). Each read
        of the fleet is rendered once for every stream."""
        fleet = self._fleet()
        reader = None if fleet is None else self._fleet_reader(fleet)
        if reader is None:
            status = {"scope": "fleet", "node": None, "connected": False, "error": "no fleet"}
            return sse_event(status, "fleet") + tick.body(stream.keys, stream.groups, PING)
        summed = self._read_fleet(reader, tick)
        if isinstance(summed, bytes):  # the fleet event saying why: this node's messages
            return summed + tick.body(stream.keys, stream.groups, PING)
        return summed.body(stream.keys, stream.groups, PING)

    def _read_fleet(self, reader: FleetReader, tick: Tick) -> Tick | bytes:
        """The reader's latest read as a tick (its ``fleet`` event first), or the ``fleet``
        event saying why Redis could not be read."""
        status: dict[str, Any] = {"scope": "fleet", "node": reader.fleet.node}
        try:
            read = reader.read(tick.keys)
        except Exception as exc:  # a bug: this node's stream rather than none
            logger.exception("stream.fleet_failed", error=repr(exc))
            status.update(connected=False, error=f"the fleet could not be read: {exc!r}"[:200])
            return sse_event(status, "fleet")
        with self._lock:
            rendered = self._fleet_read
        if rendered is None or rendered[0] is not read:
            if read.error is None:
                status.update(connected=True, nodes=len(read.nodes))
                event = sse_event(status, "fleet")
                rendered = (read, Tick.of_messages(read.messages, head=event))
            else:
                status.update(connected=False, error=read.error)
                rendered = (read, sse_event(status, "fleet"))
            with self._lock:
                if not self._closed.is_set():
                    self._fleet_read = rendered
        return rendered[1]

    def _metrics(self, accept: str) -> _Response:
        module = _optional("actors.prometheus")
        if isinstance(module, ImportError):
            return _text(
                404,
                "Prometheus metrics need prometheus_client "
                f"(pip install 'hystrix-actors[prometheus]'): {module}",
            )
        if self._prometheus is None:
            self._prometheus = module.collector_registry(self.registry)
        body, content_type = module.exposition(self._prometheus, accept)
        return _Response(200, body, content_type)

    def _dashboard(self, path: str) -> _Response:
        module = _optional("actors.dashboard")
        if isinstance(module, ImportError):
            if path in PAGE_PATHS:
                return _text(
                    404, f"dashboard not installed ({module}): the stream is at hystrix.stream"
                )
            return _text(404, f"not found: {path}")
        if path in PAGE_PATHS:
            fleet = self._fleet()
            node = getattr(fleet, "node", None) if self._without_fleet_view() is None else None
            return _Response(200, bytes(module.page(fleet=node)), "text/html; charset=utf-8")
        return _text(404, f"not found: {path}")

    # -- streams -------------------------------------------------------------------------------

    def open_stream(self) -> _Response | None:
        """Take a connection slot (None), or the 503 to send."""
        with self._lock:
            if self._closed.is_set():
                return _text(503, "the server is shutting down")
            if self._streams >= self.max_connections:
                logger.warning("stream.rejected", max_connections=self.max_connections)
                return _text(
                    503,
                    f"hystrix.stream: at most {self.max_connections} concurrent connections; "
                    "try again later",
                )
            self._streams += 1
            streams = self._streams
        logger.debug("stream.opened", streams=streams)
        return None

    def close_stream(self) -> None:
        with self._lock:
            self._streams -= 1
            streams = self._streams
            if streams == 0:
                self._fleet_read = None
        if streams == 0:  # the rendered messages would only take memory until the next stream
            self._ticks.forget()
        logger.debug("stream.closed", streams=streams)

    @property
    def ticks_made(self) -> int:
        """Ticks made since the app started, shared by all its streams."""
        return self._ticks.made

    def next_tick(self, sender: _Sender) -> bytes | None:
        """The next tick's bytes for a stream (its messages and a ping); None when the stream
        should end. The app's latest tick if it is fresh; else, for a stream of a few keys,
        a tick of those keys read one by one; else the app's next tick."""
        if self._closed.is_set():
            return None
        stream = sender.stream
        # A stream's first tick is no older than the app's interval either (a stream of a long
        # ?delay= would otherwise start with a tick as old as its delay).
        fresh = stream.interval if sender.sent is not None else min(stream.interval, self.interval)
        try:
            tick = None
            if stream.keys is not None and stream.scope == "local":
                tick = self._ticks.fresh(sender.sent, fresh)
                if tick is None:
                    if sender.renderer is None:
                        sender.renderer = Renderer()
                    tick = tick_of_keys(self.registry, stream.keys, sender.renderer)
            if tick is None:
                tick = self._ticks.next(sender.sent, fresh)
        except Exception as error:  # a shut-down registry, or a bug: end this stream
            logger.warning("stream.ended", error=repr(error))
            return None
        sender.sent = tick
        if stream.scope == "fleet":
            return self._fleet_tick(tick, stream)
        return tick.body(stream.keys, stream.groups, PING)

    def tick(
        self,
        scope: str = "local",
        keys: Iterable[str] | None = None,
        groups: Iterable[str] | None = None,
    ) -> bytes | None:
        """One tick's messages (of ``keys`` and ``groups`` if given) and a ping, as a stream
        sends it: the latest tick if it is at most ``interval`` old; None when the stream
        should end."""
        stream = _Stream(
            self.interval,
            scope,
            None if keys is None else frozenset(keys),
            None if groups is None else frozenset(groups),
        )
        return self.next_tick(_Sender(stream))

    def wait(self, seconds: float) -> bool:
        """Sleep until the next tick; True if the endpoints were closed meanwhile."""
        return self._closed.wait(min(max(seconds, 0.0), threading.TIMEOUT_MAX))


def _to_the_mount_point(mount: str, query: str) -> _Response:
    """The redirect from the bare mount point ("/hystrix") to "/hystrix/": served at the bare
    one, the page's relative URLs ("hystrix.stream") would resolve beside it, at the root. The
    ``Location`` is relative ("hystrix/"), so it holds behind a proxy that adds a prefix."""
    segment = quote(mount.rpartition("/")[2], safe="!$&'()*+,;=@~")  # no ":" (not a scheme)
    location = f"{segment}/" + (f"?{query}" if query else "")
    return _text(308, f"the dashboard is at {location}", ("Location", location))


def _optional(name: str) -> ModuleType | ImportError:
    """The module, or why it cannot be imported (it, or what it needs, is not installed)."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        return error


# -- WSGI ----------------------------------------------------------------------------------------


class _WsgiStream:
    """The stream's body for WSGI: one tick per item; ``close()`` frees the connection slot."""

    def __init__(self, endpoints: _Endpoints, stream: _Stream) -> None:
        self._endpoints = endpoints
        self._sender = _Sender(stream)
        self._open = True

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._open and self._endpoints.wait(self._sender.wait()):
            self.close()
        chunk = self._endpoints.next_tick(self._sender) if self._open else None
        if chunk is None:
            self.close()
            raise StopIteration
        return chunk

    def close(self) -> None:
        if self._open:
            self._open = False
            self._endpoints.close_stream()


class WsgiApp(_Endpoints):
    """A WSGI application serving the stream, ``/metrics`` and the dashboard page."""

    def __call__(
        self, environ: dict[str, Any], start_response: WsgiStartResponse
    ) -> Iterable[bytes]:
        response = self.route(
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("PATH_INFO", ""),
            environ.get("QUERY_STRING", ""),
            environ.get("HTTP_ACCEPT", ""),
            environ.get("SCRIPT_NAME", ""),
        )
        if isinstance(response, _Stream):
            refused = self.open_stream()
            if refused is None:
                start_response(_status(200), list(_STREAM_HEADERS))
                return _WsgiStream(self, response)
            response = refused
        start_response(_status(response.status), response.header_list())
        return [response.body]


def _status(code: int) -> str:
    return f"{code} {http.HTTPStatus(code).phrase}"


def wsgi_app(
    registry: MetricsSource | None = None, *, interval: float = 0.5, max_connections: int = 5
) -> WsgiApp:
    """A WSGI app for ``registry`` (None: the default ``CommandRegistry``); ``interval`` seconds
    between ticks, at most ``max_connections`` streams at once. ``app.close()`` ends them."""
    return WsgiApp(registry, interval=interval, max_connections=max_connections)


# -- ASGI ----------------------------------------------------------------------------------------


async def _disconnected(receive: AsgiReceive) -> None:
    """Returns when the client has gone away."""
    while (await receive())["type"] != "http.disconnect":
        pass


class AsgiApp(_Endpoints):
    """An ASGI 3 application (asyncio) with the routes of ``WsgiApp``.

    A stream ends when the client disconnects (``http.disconnect``), when the registry is shut
    down, or at its next tick after ``close()`` (also called on the lifespan's shutdown, which a
    framework the app is mounted in does not pass on; uvicorn sends it only once its open
    connections are done, see ``--timeout-graceful-shutdown``). ``all_metrics()`` (and a
    fleet-wide tick's Redis reads) runs on a worker thread, never on the event loop.
    """

    async def __call__(self, scope: AsgiMessage, receive: AsgiReceive, send: AsgiSend) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = dict(scope.get("headers") or [])
        mount, path = _split(scope.get("root_path", ""), scope.get("path", ""))
        response = self.route(
            scope.get("method", "GET"),
            path,
            bytes(scope.get("query_string", b"")).decode("latin-1"),
            bytes(headers.get(b"accept", b"")).decode("latin-1"),
            mount,
        )
        if isinstance(response, _Stream):
            refused = self.open_stream()
            if refused is None:
                try:
                    await self._stream_to(receive, send, response)
                finally:
                    self.close_stream()
                return
            response = refused
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": _encode(response.header_list()),
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    async def _stream_to(self, receive: AsgiReceive, send: AsgiSend, stream: _Stream) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": _encode(_STREAM_HEADERS)}
        )
        gone = asyncio.ensure_future(_disconnected(receive))
        sender = _Sender(stream)
        try:
            while True:
                chunk = await asyncio.to_thread(self.next_tick, sender)
                if gone.done():
                    return
                if chunk is None:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                done, _ = await asyncio.wait({gone}, timeout=sender.wait())
                if done:
                    return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away mid-send (ASGI servers raise OSError subclasses)
            return
        finally:
            gone.cancel()

    async def _lifespan(self, receive: AsgiReceive, send: AsgiSend) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _split(root_path: str, path: str) -> tuple[str, str]:
    """(the mount point, the path within the app). ASGI's ``path`` is the whole path, ``root_path``
    included (Starlette's ``Mount`` passes it so); some servers and frameworks strip the prefix
    already: then ``path`` is the app's own."""
    base = root_path.rstrip("/")
    if base and (path == base or path.startswith(f"{base}/")):
        return base, path[len(base) :]
    return root_path, path


def _encode(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def asgi_app(
    registry: MetricsSource | None = None, *, interval: float = 0.5, max_connections: int = 5
) -> AsgiApp:
    """An ASGI app for ``registry`` (None: the default ``CommandRegistry``); see ``wsgi_app``."""
    return AsgiApp(registry, interval=interval, max_connections=max_connections)


# -- the standalone server -----------------------------------------------------------------------


class HttpServer(SupervisedWsgiServer):
    """The standalone server: ``wsgiref``'s, one daemon thread per connection, serving a
    ``WsgiApp`` from a supervised thread (``actors.http_server``)."""

    app: WsgiApp

    def __init__(
        self, address: tuple[str, int], app: WsgiApp, family: socket.AddressFamily
    ) -> None:
        super().__init__(address, app, family)


def start_http_server(
    port: int,
    addr: str = "127.0.0.1",
    registry: MetricsSource | None = None,
    *,
    interval: float = 0.5,
    max_connections: int = 5,
) -> tuple[HttpServer, threading.Thread]:
    """Serve ``wsgi_app(registry, ...)`` on ``addr:port`` from a daemon thread.

    ``port=0`` picks a free port: read it from ``server.server_port``. ``server.shutdown()``
    ends open streams, stops the thread and closes the socket. The thread is supervised
    (``actors.http_server``): an exception escaping the server's loop is logged
    (``http.restarted``) and the loop started again; a request's fault is logged
    (``http.request_failed``) and ends that request only.
    """
    check_int("port", port, 0, 65_535)
    app = wsgi_app(registry, interval=interval, max_connections=max_connections)
    family = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0][0]
    server = HttpServer((addr, port), app, family)
    thread = serve(server)
    logger.info("http.started", addr=addr, port=server.server_port)
    return server, thread
