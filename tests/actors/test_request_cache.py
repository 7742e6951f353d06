"""The request cache: within one request scope a command runs once per cache key and the asks
after it get its reply; two scopes (two HTTP requests) never share one."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import http.client
import json
import threading
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import flask
import pytest
import uvicorn
from probe import WAIT, Dependency, Probe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from actors import (
    Command,
    CommandConfig,
    CommandRegistry,
    EventType,
    FanOut,
    Isolation,
    Pipeline,
    Reply,
    RequestScope,
)
from actors.http import RequestScopeMiddleware
from actors.pipeline import Stage
from actors.prometheus import collector_registry
from actors.stream import command_message

FROM_CACHE = EventType.RESPONSE_FROM_CACHE
SUCCESS = EventType.SUCCESS


class Cached(Dependency):
    """``Dependency`` (steered by payload) whose cache key is the payload; counts its runs."""

    key = "cached"
    config = CommandConfig(timeout=2 * WAIT)

    def run(self, payload: Any) -> Any:
        self.probe.ran()
        return super().run(payload)

    def cache_key(self, payload: Any) -> Any:
        return payload


class CachedHere(Cached):
    key = "cached-here"
    config = CommandConfig(timeout=2 * WAIT, isolation=Isolation.SEMAPHORE)


class Uncached(Cached):
    """Cached only for payloads that are not "hang" (None: not cached)."""

    key = "uncached"

    def cache_key(self, payload: Any) -> Any:
        return None if payload == "hang" else payload


class NoFallback(Cached):
    key = "no-fallback"

    fallback = Command.fallback


@pytest.fixture
def probe() -> Iterator[Probe]:
    probe = Probe()
    yield probe
    probe.release.set()  # whatever a test left hanging returns


@pytest.fixture(params=[Cached, CachedHere], ids=["thread", "semaphore"])
def cached(request: pytest.FixtureRequest, registry: CommandRegistry, probe: Probe) -> str:
    """The key of a cached command, under thread and under semaphore isolation."""
    command: type[Cached] = request.param
    registry.register(command, probe)
    return command.key


def in_threads(
    count: int,
    ask: Callable[[], Reply],
    *,
    copy: bool = True,
    meanwhile: Callable[[], object] | None = None,
) -> list[Reply]:
    """``ask()`` on ``count`` threads at once (started with the current context when ``copy``,
    else plain threads), ``meanwhile()`` once they are about to ask; their replies in order."""
    replies: list[Reply | None] = [None] * count
    started = threading.Barrier(count + 1, timeout=WAIT)

    def target(index: int) -> None:
        started.wait()
        replies[index] = ask()

    threads = [
        threading.Thread(
            target=contextvars.copy_context().run if copy else target,
            args=(target, index) if copy else (index,),
        )
        for index in range(count)
    ]
    for thread in threads:
        thread.start()
    started.wait()
    if meanwhile is not None:
        meanwhile()
    for thread in threads:
        thread.join(3 * WAIT)
    assert all(reply is not None for reply in replies), "a thread never got its reply"
    return [reply for reply in replies if reply is not None]


# -- one scope ---------------------------------------------------------------------------------


def test_the_first_ask_runs_and_the_later_ones_get_its_reply(
    registry: CommandRegistry, probe: Probe, cached: str
) -> None:
    with registry.request_scope():
        first = registry.ask_reply(cached, "a")
        again = registry.ask_reply(cached, "a")
        other = registry.ask_reply(cached, "b")
    assert probe.runs == 2  # "a" once, "b" once
    assert first.events == (SUCCESS,)
    assert again.events == (FROM_CACHE, SUCCESS)
    assert again.value is first.value and again.ok and not again.fell_back
    assert other.events == (SUCCESS,)


def test_without_a_scope_nothing_is_cached(
    registry: CommandRegistry, probe: Probe, cached: str
) -> None:
    replies = [registry.ask_reply(cached, "a") for _ in range(3)]
    assert probe.runs == 3
    assert all(reply.events == (SUCCESS,) for reply in replies)


def test_a_command_without_a_cache_key_is_never_cached(
    registry: CommandRegistry, probe: Probe
) -> None:
    registry.register(Dependency, probe)  # the default cache_key: None
    registry.register(Uncached, probe)
    probe.release.set()
    with registry.request_scope() as scope:
        plain = [registry.ask_reply("ok", "a") for _ in range(2)]
        not_cached = [registry.ask_reply("uncached", "hang") for _ in range(2)]
        cached = [registry.ask_reply("uncached", "a") for _ in range(2)]
        assert len(scope) == 1
    assert [reply.events for reply in plain + not_cached] == [(SUCCESS,)] * 4
    assert [reply.events for reply in cached] == [(SUCCESS,), (FROM_CACHE, SUCCESS)]
    assert probe.runs == 3


def test_every_ask_path_is_answered_from_the_cache(
    registry: CommandRegistry, probe: Probe, cached: str
) -> None:
    with registry.request_scope():
        assert registry.ask(cached, "a") == "ok"
        assert registry.ask(cached, "a", block=False).get(timeout=WAIT) == "ok"
        assert (
            registry.ask_reply(cached, "a", block=False).get(timeout=WAIT).events[0] is FROM_CACHE
        )
        assert asyncio.run(registry.ask_async(cached, "a")) == "ok"
        reply = asyncio.run(registry.ask_reply_async(cached, "a", timeout=1.0))
        assert reply.events == (FROM_CACHE, SUCCESS)
        future = registry.ask_reply(cached, "b", block=False)  # a first ask, not blocking
        assert future.get(timeout=WAIT).events == (SUCCESS,)
        assert registry.ask_reply(cached, "b").events == (FROM_CACHE, SUCCESS)
    assert probe.runs == 2


def test_a_decorated_function_is_cached_by_its_cache_key(registry: CommandRegistry) -> None:
    calls: list[int] = []

    @registry.command("double", cache_key=lambda payload: payload)
    def double(payload: int) -> int:
        calls.append(payload)
        return 2 * payload

    with registry.request_scope():
        assert [double(1), double(1), double(2)] == [2, 2, 4]
        assert double.ask_reply(1).events == (FROM_CACHE, SUCCESS)
    assert calls == [1, 2]


def test_an_async_decorated_function_is_cached_too(registry: CommandRegistry) -> None:
    calls: list[int] = []

    @registry.command("async double", cache_key=lambda payload: payload)
    async def double(payload: int) -> int:
        calls.append(payload)
        return 2 * payload

    async def main() -> list[int]:
        async with registry.request_scope():
            return [await double(1), await double(1)]

    assert asyncio.run(main()) == [2, 2]
    assert calls == [1]


def test_a_pipeline_in_a_scope_shares_the_cache(
    registry: CommandRegistry, probe: Probe, cached: str
) -> None:
    pipeline = Pipeline(Stage(cached), registry=registry)
    fan_out = Pipeline(FanOut(cached), registry=registry)
    with registry.request_scope():
        assert pipeline.run("a").value == "ok"
        assert [result.value for result in pipeline.map(["a", "a", "a"])] == ["ok"] * 3
        assert fan_out.run(["a", "b", "b", "c", "c"]).value == ("ok",) * 5
    assert probe.runs == 3  # "a", "b" and "c" once each


def test_an_unhashable_cache_key_is_refused(registry: CommandRegistry, probe: Probe) -> None:
    registry.register(Cached, probe)
    with registry.request_scope(), pytest.raises(TypeError, match="hashable"):
        registry.ask("cached", ["a", "list"])
    assert probe.runs == 0


# -- failures and fallbacks are shared too -------------------------------------------------------


def test_a_fallback_is_shared_and_still_says_it_fell_back(
    registry: CommandRegistry, probe: Probe, cached: str
) -> None:
    with registry.request_scope():
        first = registry.ask_reply(cached, "fail")
        again = registry.ask_reply(cached, "fail")
    assert probe.runs == 1
    assert first.events == (EventType.FAILURE, EventType.FALLBACK_SUCCESS)
    assert again.events == (FROM_CACHE, EventType.FAILURE, EventType.FALLBACK_SUCCESS)
    assert again.value == "fallback" and again.ok and again.fell_back
    assert again.error is first.error


def test_an_error_is_shared_and_raised_again(registry: CommandRegistry, probe: Probe) -> None:
    registry.register(NoFallback, probe)
    with registry.request_scope():
        first = registry.ask_reply("no-fallback", "fail")
        with pytest.raises(RuntimeError, match="boom") as raised:
            registry.ask("no-fallback", "fail")
    assert probe.runs == 1
    assert not first.ok
    assert raised.value is first.error
    metrics = registry.metrics("no-fallback")
    assert metrics.counts[EventType.EXCEPTION_THROWN] == 2  # raised to both callers
    assert metrics.counts[FROM_CACHE] == 1 and metrics.counts[EventType.FAILURE] == 1


class Broken(Cached):
    key = "broken"

    def cache_key(self, payload: Any) -> Any:
        raise ValueError("no key for you")


def test_what_cache_key_raises_reaches_the_caller(registry: CommandRegistry, probe: Probe) -> None:
    registry.register(Broken, probe)
    with registry.request_scope(), pytest.raises(ValueError, match="no key for you"):
        registry.ask("broken", "a")
    assert probe.runs == 0
    assert registry.ask("broken", "a") == "ok"  # outside a scope cache_key is not called


# -- concurrent asks of one scope ----------------------------------------------------------------


def test_concurrent_asks_from_threads_of_one_scope_run_once(
    registry: CommandRegistry, probe: Probe, cached: str
) -> None:
    def release() -> None:  # once the first ask is in run: the others wait for it
        probe.wait_entered()
        probe.release.set()

    with registry.request_scope():
        replies = in_threads(6, lambda: ask_hang(registry, cached), meanwhile=release)
    assert probe.runs == 1
    assert {reply.value for reply in replies} == {"released"}
    assert sorted(reply.events for reply in replies) == sorted(
        [(SUCCESS,)] + [(FROM_CACHE, SUCCESS)] * 5
    )


def ask_hang(registry: CommandRegistry, key: str) -> Reply:
    reply: Reply = registry.ask_reply(key, "hang")
    return reply


def start_in_scope(function: Callable[[], object]) -> threading.Thread:
    """A thread running ``function`` in a copy of this context (so in its request scope)."""
    thread = threading.Thread(target=contextvars.copy_context().run, args=(function,))
    thread.start()
    return thread


def test_a_plain_thread_does_not_inherit_the_scope(
    registry: CommandRegistry, probe: Probe, cached: str
) -> None:
    with registry.request_scope():
        registry.ask_reply(cached, "a")
        (plain,) = in_threads(1, lambda: registry.ask_reply(cached, "a"), copy=False)
        (copied,) = in_threads(1, lambda: registry.ask_reply(cached, "a"))
    assert plain.events == (SUCCESS,)
    assert copied.events == (FROM_CACHE, SUCCESS)
    assert probe.runs == 2


def test_concurrent_tasks_of_one_scope_run_once(
    registry: CommandRegistry, probe: Probe, cached: str
) -> None:
    async def main() -> list[Reply]:
        async with registry.request_scope():
            # on a thread: under semaphore isolation the first ask's run blocks its thread
            first = asyncio.ensure_future(asyncio.to_thread(ask_hang, registry, cached))
            await asyncio.to_thread(probe.wait_entered)
            others = [asyncio.ensure_future(registry.ask_reply_async(cached, "hang"))]
            others += [
                asyncio.ensure_future(asyncio.to_thread(ask_hang, registry, cached)),
                asyncio.ensure_future(asyncio.to_thread(registry.ask_reply, cached, "hang")),
            ]
            await asyncio.sleep(0)  # the waiting tasks ask before the first is answered
            probe.release.set()
            return [await first, *await asyncio.gather(*others)]

    replies = asyncio.run(main())
    assert probe.runs == 1
    assert [reply.value for reply in replies] == ["released"] * 4
    assert [reply.events for reply in replies] == [(SUCCESS,)] + [(FROM_CACHE, SUCCESS)] * 3


def test_an_ask_arriving_while_the_first_runs_waits_for_it(
    registry: CommandRegistry, probe: Probe, cached: str
) -> None:
    with registry.request_scope():
        box: list[Reply] = []
        first = start_in_scope(lambda: box.append(ask_hang(registry, cached)))
        probe.wait_entered()
        waiting = registry.ask_reply(cached, "hang", block=False)  # while the first is in run
        probe.release.set()
        reply = waiting.get(timeout=WAIT)
        first.join(WAIT)
    assert box[0].events == (SUCCESS,)
    assert reply.events == (FROM_CACHE, SUCCESS) and reply.value == "released"
    assert probe.runs == 1


# -- a waiting ask's own deadline ----------------------------------------------------------------


def _wait_blocking(registry: CommandRegistry, key: str) -> Reply:
    reply: Reply = registry.ask_reply(key, "hang", timeout=0.05)
    return reply


def _wait_future(registry: CommandRegistry, key: str) -> Reply:
    reply: Reply = registry.ask_reply(key, "hang", block=False, timeout=0.05).get(timeout=WAIT)
    return reply


def _wait_awaiting(registry: CommandRegistry, key: str) -> Reply:
    return asyncio.run(registry.ask_reply_async(key, "hang", timeout=0.05))


@pytest.mark.parametrize(
    "wait", [_wait_blocking, _wait_future, _wait_awaiting], ids=["ask", "future", "await"]
)
def test_a_waiting_ask_ends_at_its_own_deadline(
    registry: CommandRegistry,
    probe: Probe,
    cached: str,
    wait: Callable[[CommandRegistry, str], Reply],
) -> None:
    with registry.request_scope():
        box: list[Reply] = []
        first = start_in_scope(lambda: box.append(ask_hang(registry, cached)))
        probe.wait_entered()
        timed_out = wait(registry, cached)  # the first is still in run: this one gives up
        probe.release.set()
        first.join(WAIT)
        later = registry.ask_reply(cached, "hang")
    assert timed_out.events == (EventType.TIMEOUT, EventType.FALLBACK_SUCCESS)
    assert timed_out.value == "fallback" and "request scope" in str(timed_out.error)
    assert box[0].events == (SUCCESS,) and box[0].value == "released"
    assert later.events == (FROM_CACHE, SUCCESS) and later.value == "released"
    assert probe.runs == 1
    health = registry.health(cached)
    assert health.requests == 1 and health.errors == 0  # the wait is no outcome of the dependency


def test_asks_waiting_for_a_first_ask_that_timed_out_share_its_timeout(
    registry: CommandRegistry, probe: Probe
) -> None:
    registry.register(Cached, probe)
    with registry.request_scope():
        box: list[Reply] = []
        first = start_in_scope(
            lambda: box.append(registry.ask_reply("cached", "hang", timeout=0.05))
        )
        probe.wait_entered()
        waiting = registry.ask_reply("cached", "hang")  # its own deadline: 2 * WAIT
        first.join(WAIT)
    assert box[0].events == (EventType.TIMEOUT, EventType.FALLBACK_SUCCESS)
    assert waiting.events == (FROM_CACHE, EventType.TIMEOUT, EventType.FALLBACK_SUCCESS)
    assert waiting.error is box[0].error


# -- scopes --------------------------------------------------------------------------------------


def test_two_scopes_never_share_an_entry(
    registry: CommandRegistry, probe: Probe, cached: str
) -> None:
    with registry.request_scope():
        one = registry.ask_reply(cached, "a")
    with registry.request_scope():
        two = registry.ask_reply(cached, "a")
    assert one.events == two.events == (SUCCESS,)
    assert probe.runs == 2


def test_two_concurrent_scopes_run_a_cache_key_once_each(
    registry: CommandRegistry, probe: Probe, cached: str
) -> None:
    both = threading.Barrier(2, timeout=WAIT)

    def request() -> list[Reply]:
        with registry.request_scope():
            both.wait()  # both scopes are open at once
            return [registry.ask_reply(cached, "a") for _ in range(3)]

    results: list[list[Reply]] = []
    threads = [threading.Thread(target=lambda: results.append(request())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert probe.runs == 2
    for replies in results:
        assert [reply.events for reply in replies] == [(SUCCESS,)] + [(FROM_CACHE, SUCCESS)] * 2


def test_a_nested_scope_joins_the_enclosing_one(
    registry: CommandRegistry, probe: Probe, cached: str
) -> None:
    with registry.request_scope() as outer:
        registry.ask_reply(cached, "a")
        with registry.request_scope() as inner:
            assert registry.ask_reply(cached, "a").events == (FROM_CACHE, SUCCESS)
            registry.ask_reply(cached, "b")
            assert len(inner) == len(outer) == 2
        assert registry.ask_reply(cached, "b").events == (FROM_CACHE, SUCCESS)
    with registry.request_scope():
        assert registry.ask_reply(cached, "a").events == (SUCCESS,)
    assert probe.runs == 3
    assert len(outer) == 0  # its entries are dropped when it ends


def test_a_context_kept_past_its_scope_asks_uncached(
    registry: CommandRegistry, probe: Probe, cached: str
) -> None:
    with registry.request_scope():
        kept = contextvars.copy_context()
        registry.ask_reply(cached, "a")
    assert kept.run(registry.ask_reply, cached, "a").events == (SUCCESS,)
    assert probe.runs == 2


def test_a_scope_is_entered_once() -> None:
    default = CommandRegistry._default
    scope = CommandRegistry.request_scope()
    assert CommandRegistry._default is default  # made no default registry
    assert isinstance(scope, RequestScope)
    with scope:
        pass
    with pytest.raises(RuntimeError, match="entered once"), scope:
        pass


def test_two_registries_never_share_an_entry(registry: CommandRegistry, probe: Probe) -> None:
    registry.register(Cached, probe)
    with CommandRegistry() as other:
        other.register(Cached, probe)
        with registry.request_scope():
            replies = [registry.ask_reply("cached", "a"), other.ask_reply("cached", "a")]
    assert [reply.events for reply in replies] == [(SUCCESS,), (SUCCESS,)]
    assert probe.runs == 2


# -- events, metrics, logs -----------------------------------------------------------------------


def test_hits_are_counted_as_responses_from_cache_and_not_by_the_breaker(
    registry: CommandRegistry, probe: Probe, cached: str
) -> None:
    with registry.request_scope():
        for _ in range(4):
            registry.ask_reply(cached, "a")
    metrics = registry.metrics(cached)
    assert metrics.counts[FROM_CACHE] == 3 and metrics.totals[FROM_CACHE] == 3
    assert metrics.counts[SUCCESS] == 1
    assert metrics.requests == 1  # health counts: the one call that ran
    assert command_message(metrics)["rollingCountResponsesFromCache"] == 3
    scraped = collector_registry(registry).get_sample_value(
        "hystrix_events_total", {"command": cached, "event": "RESPONSE_FROM_CACHE"}
    )
    assert scraped == 3


def test_a_hit_is_logged_at_debug(
    registry: CommandRegistry, probe: Probe, cached: str, captured_logs: list[dict[str, Any]]
) -> None:
    with registry.request_scope():
        registry.ask_reply(cached, "a")
        registry.ask_reply(cached, "a")
    hits = [log for log in captured_logs if log["event"] == "command.response_from_cache"]
    assert [(log["log_level"], log["command"]) for log in hits] == [("debug", cached)]


# -- the middleware, on real servers ---------------------------------------------------------------


class Rendezvous(Command):
    """Runs only once two runs are in ``run`` at once: two requests that shared one run would
    break the barrier (and get the fallback)."""

    key = "rendezvous"
    config = CommandConfig(timeout=2 * WAIT)

    def __init__(self, barrier: threading.Barrier, probe: Probe) -> None:
        self.barrier = barrier
        self.probe = probe

    def run(self, payload: Any) -> Any:
        self.probe.ran()
        self.barrier.wait()
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return "fallback"

    def cache_key(self, payload: Any) -> Any:
        return payload


def _events(reply: Reply) -> list[str]:
    return [event.value for event in reply.events]


def _get_both(port: int, path: str) -> list[Any]:
    """GET ``path`` twice at once; both bodies, decoded, each one's events sorted (which of
    a request's two concurrent asks ran first is not known)."""
    bodies: list[Any] = [None, None]

    def get(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=3 * WAIT)
        try:
            connection.request("GET", path)
            body = json.loads(connection.getresponse().read())
            bodies[index] = {**body, "events": sorted(body["events"])}
        finally:
            connection.close()

    threads = [threading.Thread(target=get, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(4 * WAIT)
    return bodies


EXPECTED_BODY = {
    "values": ["same", "same"],
    "events": [["RESPONSE_FROM_CACHE", "SUCCESS"], ["SUCCESS"]],  # sorted
}


@pytest.fixture
def rendezvous(registry: CommandRegistry, probe: Probe) -> CommandRegistry:
    registry.register(Rendezvous, threading.Barrier(2, timeout=WAIT), probe)
    return registry


class _ThreadingWsgiServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def wsgi_server(app: Any) -> Iterator[int]:
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingWsgiServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


@contextlib.contextmanager
def asgi_server(app: Any, eventually: Callable[..., None]) -> Iterator[int]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        eventually(lambda: server.started or not thread.is_alive(), within=WAIT)
        assert server.started, "uvicorn did not start"
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(WAIT)


def test_wsgi_requests_through_the_middleware_never_share_a_scope(
    rendezvous: CommandRegistry, probe: Probe
) -> None:
    app = flask.Flask(__name__)

    @app.get("/user")
    def user() -> Any:
        replies = [rendezvous.ask_reply("rendezvous", "same") for _ in range(2)]
        return {"values": [r.value for r in replies], "events": [_events(r) for r in replies]}

    app.wsgi_app = RequestScopeMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    assert app.wsgi_app.interface == "wsgi"
    with rendezvous.request_scope(), wsgi_server(app) as port:  # no effect on the requests
        bodies = _get_both(port, "/user")
    assert bodies == [EXPECTED_BODY, EXPECTED_BODY]
    assert probe.runs == 2


@pytest.mark.parametrize("style", ["async", "sync"])
def test_asgi_requests_through_the_middleware_never_share_a_scope(
    rendezvous: CommandRegistry, probe: Probe, eventually: Callable[..., None], style: str
) -> None:
    def body(replies: list[Reply]) -> JSONResponse:
        return JSONResponse(
            {"values": [r.value for r in replies], "events": [_events(r) for r in replies]}
        )

    async def user_async(request: Request) -> JSONResponse:
        first = asyncio.ensure_future(rendezvous.ask_reply_async("rendezvous", "same"))
        second = asyncio.ensure_future(rendezvous.ask_reply_async("rendezvous", "same"))
        return body([await first, await second])

    def user_sync(request: Request) -> JSONResponse:  # run on Starlette's thread pool
        return body([rendezvous.ask_reply("rendezvous", "same") for _ in range(2)])

    app = Starlette(routes=[Route("/user", user_async if style == "async" else user_sync)])
    app.add_middleware(RequestScopeMiddleware)
    with asgi_server(app, eventually) as port:
        bodies = _get_both(port, "/user")
    assert bodies == [EXPECTED_BODY, EXPECTED_BODY]
    assert probe.runs == 2


def test_the_middleware_tells_asgi_from_wsgi() -> None:
    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        pass

    def wsgi(environ: Any, start_response: Any) -> list[bytes]:
        return []

    assert RequestScopeMiddleware(asgi).interface == "asgi"
    assert RequestScopeMiddleware(wsgi).interface == "wsgi"
    assert RequestScopeMiddleware(wsgi, interface="asgi").interface == "asgi"
    assert isinstance(RequestScopeMiddleware(asgi), RequestScopeMiddleware)
    with pytest.raises(ValueError, match="interface"):
        RequestScopeMiddleware(wsgi, interface="rsgi")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ASGI or WSGI app"):
        RequestScopeMiddleware(42)


def test_a_streamed_wsgi_body_is_made_in_its_request_scope(
    registry: CommandRegistry, probe: Probe
) -> None:
    registry.register(Cached, probe)

    def app(environ: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        for _ in range(3):  # asked while the server iterates the body
            yield ",".join(_events(registry.ask_reply("cached", "a"))).encode() + b";"

    with wsgi_server(RequestScopeMiddleware(app)) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
        connection.request("GET", "/")
        text = connection.getresponse().read().decode()
        connection.close()
    assert text == "SUCCESS;RESPONSE_FROM_CACHE,SUCCESS;RESPONSE_FROM_CACHE,SUCCESS;"
    assert probe.runs == 1
