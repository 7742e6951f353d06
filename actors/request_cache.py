"""The request cache: inside one request scope, a command asked again with an equal cache key
is answered with its first ask's reply instead of running again (Hystrix's request cache).

A scope is a ``contextvars`` variable holding one cache, so it follows the request wherever its
context goes: into the asyncio tasks it starts and into threads started through
``contextvars.copy_context().run`` (``asyncio.to_thread``, Starlette's thread pool, our
pipelines); a plain new thread starts with an empty context and asks uncached. Entries are keyed
by the key's port and the cache key, so two registries, two keys, and a key before and after
``reset()`` never share one; two scopes never share anything.

The registry calls ``ask_in_scope`` (every ask but an awaited one under semaphore isolation) or
``ask_here_async`` (that one) only while a scope is open: without one an ask pays one
``ContextVar.get()``. The first ask of a cache key runs as usual; the asks after it are answered
with its reply, with RESPONSE_FROM_CACHE put first in ``Reply.events``; one that arrives while it
runs waits for it until its own deadline, then gets TIMEOUT and its fallback.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Coroutine, Hashable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pykka

from supervision import CommandTimeoutError, EventType
from supervision.checks import show

from .commands import Command
from .event_loop import wake
from .log import ms
from .messages import Reply
from .port import CommandPort
from .ticket import Ticket

__all__ = [
    "SCOPE",
    "Batching",
    "Dispatch",
    "RequestScope",
    "RequestScopeMiddleware",
    "ask_here_async",
    "ask_in_scope",
    "collapse_in_scope",
]

#: Called with the reply of a call answered later (a ticket's ``on_answer``).
OnAnswer = Callable[[Reply], object]
#: How the registry makes a call that is not answered from the cache: ``dispatch(port,
#: payload, timeout, block, on_answer)``, as ``CommandRegistry._submit`` does.
Dispatch = Callable[[CommandPort, Any, float | None, bool, OnAnswer | None], Ticket | Reply]
#: ``call_here_async(port, payload, timeout)``: an awaited call under semaphore isolation.
RunHere = Callable[[CommandPort, Any, float | None], Coroutine[Any, Any, Reply]]

_FROM_CACHE = (EventType.RESPONSE_FROM_CACHE,)
_NO_CACHE_KEY = Command.cache_key


class _Entry:
    """One cache key's answer in one scope: the first ask's reply, once there is one."""

    __slots__ = ("_done", "_lock", "_waiters", "reply")

    def __init__(self) -> None:
        self.reply: Reply | None = None
        self._lock = threading.Lock()
        self._waiters: list[OnAnswer] = []
        self._done = threading.Lock()
        self._done.acquire()  # released once, by set()

    def set(self, reply: Reply) -> None:
        """The first ask was answered (only its first answer counts): wake every waiter."""
        with self._lock:
            if self.reply is not None:
                return
            self.reply = reply
            waiters, self._waiters = self._waiters, []
        self._done.release()
        for waiter in waiters:
            waiter(reply)

    def then(self, callback: OnAnswer) -> None:
        """Call ``callback(reply)`` once there is a reply (now, if there is one already)."""
        with self._lock:
            if self.reply is None:
                self._waiters.append(callback)
                return
        callback(self.reply)

    def wait(self, timeout: float) -> Reply | None:
        """The reply, waiting up to ``timeout`` seconds for it; None if it did not come."""
        reply = self.reply
        if reply is not None:
            return reply
        if timeout > 0.0:
            got = self._done.acquire(timeout=min(timeout, threading.TIMEOUT_MAX))
        else:
            got = self._done.acquire(blocking=False)
        if not got:
            return None
        self._done.release()  # stays answered for every later wait
        return self.reply


class _Cache:
    """What one scope holds: an entry per (port, cache key); closed when the scope ends."""

    __slots__ = ("_entries", "_lock", "closed")

    def __init__(self) -> None:
        self._entries: dict[tuple[Hashable, Hashable], _Entry] = {}
        self._lock = threading.Lock()
        self.closed = False

    def claim(
        self, port: CommandPort | Hashable, key: Hashable, owner: str | None = None
    ) -> tuple[_Entry, bool] | None:
        """The key's entry for ``port`` (a key's port, or a collapser's batcher, whose class
        is ``owner``), and True if this ask made it (it runs); None once closed."""
        try:
            hash(key)
        except TypeError:
            if owner is None and isinstance(port, CommandPort):
                owner = port.command_class.__qualname__
            msg = (
                f"{owner}.cache_key() must return a hashable value"
                f" or None, got {type(key).__name__} {show(key)}"
            )
            raise TypeError(msg) from None
        with self._lock:
            if self.closed:
                return None
            entries = self._entries
            entry = entries.get((port, key))
            if entry is not None:
                return entry, False
            entry = entries[port, key] = _Entry()
            return entry, True

    def forget(self, port: CommandPort | Hashable, key: Hashable, entry: _Entry) -> None:
        """The first ask of ``key`` raised instead of being answered: the next ask runs."""
        with self._lock:
            if self._entries.get((port, key)) is entry:
                del self._entries[port, key]

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


#: The open request scope's cache, if any (see ``RequestScope``).
SCOPE: contextvars.ContextVar[_Cache | None] = contextvars.ContextVar(
    "hystrix_actors_request_scope", default=None
)


class RequestScope:
    """One request's cache: ``with registry.request_scope():`` or ``async with``.

    Inside it, an ask of a command whose ``cache_key(payload)`` is not None runs once per cache
    key; the asks after it with an equal cache key get its reply (the same value, or the same
    error), with RESPONSE_FROM_CACHE first in ``Reply.events``. The scope is a ``contextvars``
    variable: asyncio tasks started inside it and threads started with
    ``contextvars.copy_context().run`` (``asyncio.to_thread``) share it; a plain new thread
    does not. A scope opened inside another one joins it (one scope per request, as Hystrix
    has one request context): it sees the enclosing scope's entries and leaves its own there
    until the outermost scope ends. When the outermost ends its entries are dropped; an ask
    made later in a context that still holds it (a thread it started) is not cached.

    A scope object is entered once; ``len(scope)`` is how many cache keys it holds (of every
    command).
    """

    __slots__ = ("_cache", "_fresh", "_token", "_used")

    def __init__(self) -> None:
        self._fresh = False
        self._used = False
        self._cache: _Cache | None = None
        self._token: contextvars.Token[_Cache | None] | None = None

    def __enter__(self) -> RequestScope:
        if self._used:
            msg = "a request scope is entered once: open another with registry.request_scope()"
            raise RuntimeError(msg)
        self._used = True
        outer = SCOPE.get()
        if outer is not None and not outer.closed and not self._fresh:
            self._cache = outer  # joins the request's scope: the outermost one ends it
            return self
        self._cache = _Cache()
        self._token = SCOPE.set(self._cache)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is None or self._cache is None:
            return
        self._cache.close()
        SCOPE.reset(token)

    async def __aenter__(self) -> RequestScope:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __len__(self) -> int:
        cache = self._cache
        return 0 if cache is None else len(cache)


def _fresh_scope() -> RequestScope:
    """A scope that never joins an enclosing one: the middleware's, one per request."""
    scope = RequestScope()
    scope._fresh = True
    return scope


# -- asking in a scope ----------------------------------------------------------------------------


def _cache_key(port: CommandPort, payload: Any) -> Hashable | None:
    if port.command_class.cache_key is _NO_CACHE_KEY:
        return None
    key: Hashable | None = port.fallback_command().cache_key(payload)
    return key


def _limit(port: CommandPort, timeout: float | None) -> float:
    """The seconds an ask may wait, as its own call would have had."""
    limit = port.config.timeout
    return limit if timeout is None or timeout >= limit else timeout


def _hit(port: CommandPort, reply: Reply, started: float) -> Reply:
    """The first ask's reply, for an ask answered from the cache: counted as
    RESPONSE_FROM_CACHE alone (the first ask counted its own events), never by the breaker."""
    latency = port.clock() - started
    port.gate.replied(_FROM_CACHE, latency, not reply.ok)
    port.log.debug("command.response_from_cache")
    return Reply(reply.key, reply.value, reply.error, (*_FROM_CACHE, *reply.events), latency)


def _timed_out(port: CommandPort, payload: Any, started: float, limit: float) -> Reply:
    """An ask whose own deadline passed while it waited for the first ask's reply: TIMEOUT,
    then its fallback (counted, but not by the breaker: the first ask's outcome is)."""
    error = CommandTimeoutError(
        f"command {port.key!r}: timeout after {limit:.3f}s waiting for the reply of the first"
        " ask of its cache key in this request scope",
        key=port.key,
    )
    port.log_per_call(
        logging.WARNING, "command.timed_out", reason=error.reason, timeout_ms=ms(limit)
    )
    return port.at_once(port.fall_back(payload, EventType.TIMEOUT, error, started))


class _Waiter:
    """A non-blocking ask waiting for the first ask's reply: answered once, by that reply or
    by the registry's timer at its own deadline."""

    __slots__ = ("_claim", "_context", "_deliver", "_limit", "_payload", "_port", "_started")

    def __init__(
        self, port: CommandPort, payload: Any, started: float, limit: float, deliver: OnAnswer
    ) -> None:
        self._port = port
        self._payload = payload
        self._started = started
        self._limit = limit
        self._deliver = deliver
        self._context = contextvars.copy_context()  # the caller's: its fallback runs in it
        self._claim = threading.Lock()

    def hit(self, reply: Reply) -> None:
        if self._claim.acquire(blocking=False):
            self._deliver(_hit(self._port, reply, self._started))

    def expire(self) -> None:
        if self._claim.acquire(blocking=False):
            port, payload, started, limit = self._port, self._payload, self._started, self._limit
            self._deliver(self._context.copy().run(_timed_out, port, payload, started, limit))


def _wait_later(
    entry: _Entry,
    port: CommandPort,
    payload: Any,
    timeout: float | None,
    started: float,
    *,
    deliver: OnAnswer,
) -> None:
    limit = _limit(port, timeout)
    waiter = _Waiter(port, payload, started, limit, deliver)
    entry.then(waiter.hit)
    if entry.reply is None:
        port.timer.call_at(started + limit, waiter.expire)


def ask_in_scope(
    cache: _Cache,
    port: CommandPort,
    payload: Any,
    timeout: float | None,
    block: bool,
    *,
    on_answer: OnAnswer | None,
    dispatch: Dispatch,
) -> Ticket | Reply | pykka.Future[Reply] | None:
    """An ask made in a request scope: None if it is not cached (no cache key, or the scope has
    ended: the caller makes it as usual); else its outcome as ``dispatch`` gives one (a reply,
    or a ticket to wait on), or a future of its reply (a non-blocking ask answered later).
    With ``on_answer``, a reply not returned here goes to it."""
    key = _cache_key(port, payload)
    claimed = None if key is None else cache.claim(port, key)
    if claimed is None:
        return None
    entry, first = claimed
    if first:
        try:
            outcome = dispatch(port, payload, timeout, block, entry.set)
        except BaseException:
            assert key is not None
            cache.forget(port, key, entry)
            raise
        if isinstance(outcome, Reply):  # answered at once
            entry.set(outcome)
            return outcome
        if block:
            return outcome  # the caller waits on the ticket; its answer sets the entry
        if on_answer is not None:
            entry.then(on_answer)
            return outcome
        future: pykka.ThreadingFuture[Reply] = pykka.ThreadingFuture()
        entry.then(future.set)
        return future
    started = port.clock()
    reply = entry.reply
    if reply is not None:  # the common case: answered a while ago
        return _hit(port, reply, started)
    if block:
        limit = _limit(port, timeout)
        reply = entry.wait(started + limit - port.clock())
        if reply is None:
            return _timed_out(port, payload, started, limit)
        return _hit(port, reply, started)
    waiting: pykka.ThreadingFuture[Reply] = pykka.ThreadingFuture()
    deliver = waiting.set if on_answer is None else on_answer
    _wait_later(entry, port, payload, timeout, started, deliver=deliver)
    return waiting


async def ask_here_async(
    cache: _Cache, port: CommandPort, payload: Any, timeout: float | None, run: RunHere
) -> Reply:
    """An awaited ask under semaphore isolation made in a request scope: ``run`` makes the
    call in this task unless the cache answers it."""
    key = _cache_key(port, payload)
    claimed = None if key is None else cache.claim(port, key)
    if claimed is None:
        return await run(port, payload, timeout)
    entry, first = claimed
    if first:
        try:
            reply = await run(port, payload, timeout)
        except BaseException:  # cancelled before it had a reply: the next ask runs
            assert key is not None
            cache.forget(port, key, entry)
            raise
        entry.set(reply)
        return reply
    started = port.clock()
    reply_now = entry.reply
    if reply_now is not None:
        return _hit(port, reply_now, started)
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[Reply] = loop.create_future()
    deliver = functools.partial(wake, loop, waiter)
    _wait_later(entry, port, payload, timeout, started, deliver=deliver)
    return await waiter


class Batching(Protocol):
    """A collapser's batches (``actors.collapser.Batcher``), as the cache uses them."""

    #: The collapser's class name.
    owner: str

    def __hash__(self) -> int: ...

    def cache_key(self, payload: Any) -> Hashable | None: ...

    def ask_shared(
        self, shared: _Entry, first: bool, payload: Any, limit: float | None, deliver: OnAnswer
    ) -> None: ...


def collapse_in_scope(
    cache: _Cache, batcher: Batching, payload: Any, limit: float | None, deliver: OnAnswer
) -> bool:
    """An ask of a collapser with a cache key, in a request scope (docs/collapsing.md): the
    first ask of a key joins a batch, the others share its reply. False if it is not cached
    (no cache key, or the scope has ended: the caller queues it as usual)."""
    key = batcher.cache_key(payload)
    claimed = None if key is None else cache.claim(batcher, key, batcher.owner)
    if claimed is None:
        return False
    entry, first = claimed
    try:
        batcher.ask_shared(entry, first, payload, limit, deliver)
    except BaseException:  # not queued (say, no batch command): the next ask tries
        if first:
            assert key is not None
            cache.forget(batcher, key, entry)
        raise
    return True


# -- one scope per incoming request -------------------------------------------------------------

Interface = Literal["auto", "asgi", "wsgi"]
_INTERFACES = ("auto", "asgi", "wsgi")
#: The ASGI connection types a scope is opened for (``lifespan`` is not a request).
_REQUESTS = frozenset({"http", "websocket"})


def _is_asgi(app: Any) -> bool:
    """An ASGI 3 app is an ``async def`` function or an object whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(
        getattr(app, "__call__", None)  # noqa: B004 (the method itself, not callable())
    )


class RequestScopeMiddleware:
    """Opens one request scope per incoming request of ``app``, an ASGI 3 app (Starlette,
    FastAPI, ...) or a WSGI app (Flask, Django, ...): every ask the request makes, from its
    task or thread and from the tasks and context-copying threads those start, shares one
    cache, and two requests never share one, even when a request scope is open around the
    server. ``interface`` says which kind ``app`` is; "auto" (the default) takes an app
    whose ``__call__`` is ``async def`` for ASGI and any other for WSGI.

    An ASGI request's scope lasts until the app returns (after the response is sent); ``lifespan``
    events pass through without one. A WSGI request's scope lasts until the server closes the
    response body: the app and the iteration of its body run in a context of their own.
    """

    app: Any
    #: "asgi" or "wsgi": how this middleware calls ``app``.
    interface: str

    def __new__(cls, app: Any, *, interface: Interface = "auto") -> RequestScopeMiddleware:
        kind = cls
        if cls is RequestScopeMiddleware:
            if interface not in _INTERFACES:
                msg = f"interface must be one of {_INTERFACES}, got {show(interface)}"
                raise ValueError(msg)
            if interface == "asgi" or (interface == "auto" and _is_asgi(app)):
                kind = _AsgiRequestScope
            else:
                kind = _WsgiRequestScope
        return super().__new__(kind)

    def __init__(self, app: Any, *, interface: Interface = "auto") -> None:
        if not callable(app):
            msg = f"RequestScopeMiddleware wraps an ASGI or WSGI app, got {show(app)}"
            raise TypeError(msg)
        self.app = app
        self.interface = "asgi" if isinstance(self, _AsgiRequestScope) else "wsgi"

    if TYPE_CHECKING:

        def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


class _AsgiRequestScope(RequestScopeMiddleware):
    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Coroutine[Any, Any, Any]],
        send: Callable[[Any], Coroutine[Any, Any, None]],
    ) -> None:
        if scope.get("type") not in _REQUESTS:
            await self.app(scope, receive, send)
            return
        with _fresh_scope():
            await self.app(scope, receive, send)


class _WsgiRequestScope(RequestScopeMiddleware):
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        context = contextvars.copy_context()
        cache = _Cache()
        context.run(SCOPE.set, cache)
        try:
            body = context.run(self.app, environ, start_response)
        except BaseException:
            cache.close()
            raise
        if isinstance(body, list | tuple):  # made already: nothing more runs in the request
            cache.close()
            return body
        return _ScopedBody(body, context, cache)


class _ScopedBody:
    """A WSGI response body iterated in its request's context; ``close()`` ends the scope."""

    __slots__ = ("_body", "_cache", "_context", "_iterator")

    def __init__(self, body: Iterable[bytes], context: contextvars.Context, cache: _Cache) -> None:
        self._body = body
        self._context = context
        self._cache = cache
        self._iterator: Iterator[bytes] | None = None

    def __iter__(self) -> _ScopedBody:
        return self

    def __next__(self) -> bytes:
        iterator = self._iterator
        if iterator is None:
            iterator = self._iterator = self._context.run(iter, self._body)
        return self._context.run(next, iterator)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                self._context.run(close)
        finally:
            self._cache.close()
