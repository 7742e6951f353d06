"""``CommandRegistry``: the public face. Class-level calls use a process-wide default registry.

``CommandRegistry.ask("Get all Issues", payload)`` works as written; ``CommandRegistry()`` makes
an isolated registry with the same methods (and is a context manager that shuts it down).

The first ask for a key is routed through the registry actor, which builds the key's port and
starts its supervisor; the port is cached here, so every later ask goes from the caller's thread
through the key's gate straight to its supervisor: no registry hop on the hot path.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
from collections.abc import Callable, Hashable
from types import MethodType, TracebackType
from typing import (
    Any,
    ClassVar,
    Concatenate,
    Generic,
    Literal,
    ParamSpec,
    TypeVar,
    cast,
    overload,
)

import pykka

from supervision import (
    Clock,
    CommandConfig,
    CommandError,
    Health,
    Isolation,
    PoolConfig,
    UnknownCommandError,
    monotonic,
)
from supervision.checks import show
from supervision.config import check_pool_name
from supervision.injection import UNSET, FaultPlan, InjectionDisabledError
from supervision.snapshot import CommandMetrics

from .asking import (
    check_deadline,
    check_key,
    check_timeout,
    class_key,
    dispatch,
    future_of,
    reply_of,
    unwrap,
)
from .caller import call_here, call_here_async
from .collapser import Batcher, Collapser, CollapserMetrics, check_collapser_class
from .commands import Command, FunctionCall, FunctionCommand, check_command_class
from .decorator import CommandDecorator
from .event_loop import wake
from .fleet_host import Fleet, FleetHost
from .injection import ENV_VAR, Injection, Injections, allowed_by_environment
from .log import logger
from .messages import Reply, ShutdownReport
from .port import CommandPort, TransitionListener
from .registry_actor import (
    Configure,
    ConfigurePool,
    HealthOf,
    Ports,
    Register,
    RegistryActor,
    ReserveCollapser,
    Reset,
    Restart,
    Route,
    largest_timeout,
)
from .request_cache import (
    SCOPE,
    RequestScope,
    ask_here_async,
    ask_in_scope,
    collapse_in_scope,
)
from .signatures import Ask, AskAsync, AskReply, AskReplyAsync, Key, Method
from .stream import use_default_source
from .ticket import Ticket
from .tracing import Tracer, default_tracer
from .watchdog import Watchdog

__all__ = ["CommandRegistry"]

P = ParamSpec("P")
R = TypeVar("R")
#: What ``register`` takes (and returns): a command class or a collapser class.
Registrable = TypeVar("Registrable", type[Command], type[Collapser])

_SEMAPHORE = Isolation.SEMAPHORE


class _DefaultBound(Generic[P, R]):
    """A method that, called on the class, acts on the process-wide default registry.

    The default registry is made on the first such call, not when the attribute is looked up.
    """

    def __init__(
        self, func: Callable[Concatenate[CommandRegistry, P], R], name: str | None = None
    ) -> None:
        self._func = func
        self.__doc__ = func.__doc__
        self.__name__ = name or func.__name__
        if name is not None:
            func.__name__ = name
            func.__qualname__ = f"CommandRegistry.{name}"

        @functools.wraps(func)
        def on_default(*args: P.args, **kwargs: P.kwargs) -> R:
            return func(CommandRegistry.default(), *args, **kwargs)

        self._on_default: Callable[P, R] = on_default

    @overload
    def __get__(self, obj: None, owner: type[CommandRegistry]) -> Callable[P, R]: ...
    @overload
    def __get__(
        self, obj: CommandRegistry, owner: type[CommandRegistry] | None = None
    ) -> Callable[P, R]: ...
    def __get__(
        self, obj: CommandRegistry | None, owner: type[CommandRegistry] | None = None
    ) -> Callable[P, R]:
        if obj is None:
            return self._on_default
        bound: Callable[P, R] = MethodType(self._func, obj)
        # kept on the instance: later lookups find it there (this descriptor defines no
        # __set__), so the hot path builds no bound method per call
        obj.__dict__[self.__name__] = bound
        return bound


class CommandRegistry:
    """Registered commands, each protected by its own supervisor, gate and workers."""

    _default: ClassVar[CommandRegistry | None] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        *,
        clock: Clock = monotonic,
        tracer: Tracer | Literal["auto"] | None = "auto",
        fleet: Fleet | None = None,
        allow_injection: bool | None = None,
    ) -> None:
        """``clock`` times circuit breakers and rolling windows (inject a ``FakeClock`` in
        tests); call deadlines always use ``time.monotonic``. ``tracer`` makes a span per ask:
        "auto" is OpenTelemetry's when the ``otel`` extra is installed (spans are recorded once
        the application configures an SDK), None turns tracing off. ``fleet`` shares each
        key's circuit with the service's other replicas (``actors.fleet.RedisFleet``, with the
        ``redis`` extra); keys opt out with ``CommandConfig(fleet=FleetPolicy(mode="off"))``.
        ``allow_injection`` allows ``inject`` (fault injection); None (the default): only if
        the environment variable ``HYSTRIX_ALLOW_INJECTION=1`` is set when it is made."""
        if fleet is not None and not callable(getattr(fleet, "attach", None)):
            msg = f"fleet must be a fleet such as actors.fleet.RedisFleet, got {show(fleet)}"
            raise TypeError(msg)
        if allow_injection is not None and not isinstance(allow_injection, bool):
            msg = f"allow_injection must be True, False or None, got {show(allow_injection)}"
            raise TypeError(msg)
        self._allow_injection = (
            allowed_by_environment() if allow_injection is None else allow_injection
        )
        self._injections = Injections()
        self._clock = clock
        self._tracer = default_tracer() if tracer == "auto" else tracer
        self._fleet = fleet
        self._listeners: list[TransitionListener] = []
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        self._watchdog = Watchdog()
        self._actor = RegistryActor.start(
            self._clock, self._watchdog, self._listeners, self._tracer
        )
        self._routes: dict[str, CommandPort] = {}
        self._collapsers: dict[str, Batcher] = {}  # docs/collapsing.md
        self._closed: CommandError | None = None
        self._report: ShutdownReport | None = None
        if self._fleet is not None:
            self._fleet.attach(
                FleetHost(ports=self._used_ports, timer=self._watchdog, subscribe=self._listen)
            )

    def _used_ports(self) -> list[CommandPort]:
        ports: list[CommandPort] = self._actor.ask(Ports(), block=True)
        return ports

    def _listen(self, listener: TransitionListener) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    @property
    def fleet(self) -> Fleet | None:
        """The fleet this registry shares its circuits with (``CommandRegistry(fleet=...)``)."""
        return self._fleet

    @classmethod
    def default(cls) -> CommandRegistry:
        """The process-wide registry that class-level calls act on."""
        registry = cls._default
        if registry is None:
            with cls._default_lock:
                if cls._default is None:
                    cls._default = cls()
                registry = cls._default
        return registry

    @classmethod
    def set_default(cls, registry: CommandRegistry) -> CommandRegistry | None:
        """Make ``registry`` the process-wide registry that class-level calls act on (say one
        built with a fleet: ``CommandRegistry.set_default(CommandRegistry(fleet=...))``), at
        start-up, before commands are registered on it; returns the one it replaces, if any
        was made (left running: shut it down if it is no longer needed)."""
        if not isinstance(registry, CommandRegistry):
            msg = f"set_default() takes a CommandRegistry, got {show(registry)}"
            raise TypeError(msg)
        with cls._default_lock:
            previous, cls._default = cls._default, registry
        return previous

    def __enter__(self) -> CommandRegistry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # -- registration and configuration --------------------------------------------------------

    @_DefaultBound
    def register(self, command_class: Registrable, *args: Any, **kwargs: Any) -> Registrable:
        """Register a ``Command`` subclass under its ``key``; args go to each instance.
        A ``Collapser`` subclass is registered the same way (args go to its one instance;
        see docs/collapsing.md)."""
        if isinstance(command_class, type) and issubclass(command_class, Collapser):
            self._register_collapser(command_class, args, kwargs)
            return command_class
        if not (isinstance(command_class, type) and issubclass(command_class, Command)):
            if isinstance(command_class, type):
                got = f"the class {command_class.__module__}.{command_class.__qualname__}"
            else:
                got = f"{type(command_class).__name__} {show(command_class)}"
            msg = f"register() takes a Command subclass, got {got}"
            raise TypeError(msg)
        key = getattr(command_class, "key", None)
        try:
            check_key(key)
        except (TypeError, ValueError) as exc:
            msg = f"{command_class.__qualname__}.key is invalid: {exc}"
            raise type(exc)(msg) from None
        if not isinstance(command_class.config, CommandConfig):
            msg = (
                f"{command_class.__qualname__}.config must be a CommandConfig,"
                f" got {show(command_class.config)}"
            )
            raise TypeError(msg)
        check_command_class(command_class, args, kwargs)
        self._ensure_open()
        self._actor.ask(Register(command_class, args, kwargs))
        return command_class

    def _register_collapser(
        self, cls: type[Collapser], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        try:
            key = check_key(getattr(cls, "key", None))
        except (TypeError, ValueError) as exc:
            msg = f"{cls.__qualname__}.key is invalid: {exc}"
            raise type(exc)(msg) from None
        check_collapser_class(cls)
        if cls.batch_command == key:
            msg = f"{cls.__qualname__}.batch_command must name another key than its own {key!r}"
            raise ValueError(msg)
        collapser = cls(*args, **kwargs)
        self._ensure_open()
        with self._lock:
            self._actor.ask(ReserveCollapser(key, cls.__qualname__, cls.batch_command))
            batch_command = cls.batch_command
            self._collapsers[key] = Batcher(
                collapser,
                submit=self._submit_batch,
                call_at=self._watchdog.call_at,
                default_timeout=lambda: self._port(batch_command).config.timeout,
                stats_clock=self._clock,
            )

    def _submit_batch(
        self, key: str, payloads: list[Any], timeout: float, on_answer: Callable[[Reply], object]
    ) -> Ticket | Reply | pykka.Future[Reply]:
        """A batch's ask, made in an empty context whichever thread sends it (the timer's, or
        the caller's that filled the batch): no caller's request scope or context variables
        reach a call made for many callers."""
        outcome = contextvars.Context().run(
            self._submit, key, payloads, timeout, False, on_answer=on_answer
        )
        port = self._routes.get(key)
        if port is not None:  # the batch command counts the requests collapsed into it
            port.gate.collapsed(len(payloads))
        return outcome

    def _collapse(
        self,
        batcher: Batcher,
        payload: Any,
        limit: float | None,
        on_answer: Callable[[Reply], object] | None,
    ) -> pykka.Future[Reply]:
        """An ask of a collapser's key: queued in its current batch, unless the request scope's
        cache answers it (docs/collapsing.md)."""
        future: pykka.ThreadingFuture[Reply] = pykka.ThreadingFuture()
        deliver = future.set if on_answer is None else on_answer
        cache = SCOPE.get()
        if (
            cache is not None
            and batcher.cache_enabled
            and collapse_in_scope(cache, batcher, payload, limit, deliver)
        ):
            return future
        batcher.ask(payload, limit, deliver)
        return future

    @_DefaultBound
    def collapser_metrics(self, key: str) -> CollapserMetrics:
        """A collapser's rolling metrics: requests collapsed, batches, batch sizes (mean and
        percentiles) over the last 10 seconds. ``UnknownCommandError`` if ``key`` is not a
        registered collapser's key."""
        batcher = self._collapsers.get(key) if type(key) is str else None
        if batcher is None:
            msg = f"{key!r} is not a registered collapser"
            raise UnknownCommandError(msg, key=key if isinstance(key, str) else None)
        return batcher.metrics()

    @_DefaultBound
    def all_collapser_metrics(self) -> list[CollapserMetrics]:
        """``collapser_metrics`` of every registered collapser, sorted by key."""
        batchers = list(self._collapsers.values())
        return [batcher.metrics() for batcher in sorted(batchers, key=lambda b: b.key)]

    @_DefaultBound
    def command(
        self,
        key: str,
        *,
        config: CommandConfig | None = None,
        fallback: Callable[[Any, BaseException], Any] | None = None,
        group: str | None = None,
        cache_key: Callable[[Any], Hashable | None] | None = None,
    ) -> CommandDecorator:
        """A decorator that turns a function ``f(payload)`` into a command registered here
        under ``key``: calling the decorated function asks through this registry and returns
        the value (or the fallback's, or raises as ``ask`` does); an ``async def`` function
        gives an awaitable that asks with ``ask_async``. ``fallback(payload, error)`` is the
        degraded answer, as ``Command.fallback``; ``config`` and ``group`` as on a
        ``Command``; ``cache_key(payload)`` as ``Command.cache_key`` (the request cache).
        ``actors.command`` is this method on the default registry."""
        check_key(key)
        return CommandDecorator(self, key, config, fallback, group, cache_key=cache_key)

    @_DefaultBound
    def configure(self, key: str, config: CommandConfig) -> None:
        """Set a key's configuration (like ``hystrix.ConfigureCommand``), live or not."""
        check_key(key)
        if not isinstance(config, CommandConfig):
            msg = f"configure() takes a CommandConfig, got {show(config)}"
            raise TypeError(msg)
        self._ensure_open()
        self._actor.ask(Configure(key, config))

    @_DefaultBound
    def configure_pool(self, name: str, config: PoolConfig) -> None:
        """Size and supervise the shared worker pool ``name`` (the keys whose
        ``CommandConfig(pool=name)``), before or after its first use; until then it has
        ``PoolConfig()``: 10 workers, no queue (like Hystrix's ``threadPoolKey`` properties)."""
        check_pool_name("pool name", name)
        if not isinstance(config, PoolConfig):
            msg = f"configure_pool() takes a PoolConfig, got {show(config)}"
            raise TypeError(msg)
        self._ensure_open()
        self._actor.ask(ConfigurePool(name, config))

    @_DefaultBound
    def subscribe(self, listener: TransitionListener) -> None:
        """Call ``listener(key, transition)`` on every circuit transition of this registry."""
        self._ensure_open()
        if not callable(listener):
            msg = f"subscribe() takes a callable, got {show(listener)}"
            raise TypeError(msg)
        self._listeners.append(listener)

    @staticmethod
    def request_scope() -> RequestScope:
        """A request scope for the request cache (docs/request-cache.md): ``with
        registry.request_scope():`` (or ``async with``); inside it an ask of a command whose
        ``cache_key(payload)`` is not None runs once per cache key, and the asks after it
        with an equal cache key get its reply, with RESPONSE_FROM_CACHE first in its events.
        A scope covers the asks of every registry made in its context; opened inside another
        one it joins it. ``actors.http.RequestScopeMiddleware`` opens one per HTTP request."""
        return RequestScope()

    # -- asking ----------------------------------------------------------------------------

    def _port(self, key: str, function_style: bool = False) -> CommandPort:
        """The key's port: from the cache (the hot path), else routed by the registry actor."""
        closed = self._closed
        if closed is not None:
            raise CommandError(
                str(closed), key=key if isinstance(key, str) else None, reason=closed.reason
            )
        port = self._routes.get(key) if type(key) is str else None
        if port is None:
            return self._route(key, function_style)
        if port.closed is not None or (
            function_style and not issubclass(port.command_class, FunctionCommand)
        ):
            return self._route(key, function_style)  # stopped by reset(), or the wrong style
        return port

    def _route(self, key: str, function_style: bool) -> CommandPort:
        """The first call to a key: the registry actor builds its port (or says why not)."""
        check_key(key)
        self._ensure_open()
        self._routes.pop(key, None)
        try:
            port: CommandPort = self._actor.ask(Route(key, function_style), block=True)
        except pykka.ActorDeadError:
            self._ensure_open()
            msg = "the registry's actor was stopped from outside; reset() rebuilds the registry"
            raise CommandError(msg, key=key, reason="unavailable") from None
        self._routes[key] = port
        return port

    def _port_of(self, key: Key) -> CommandPort:
        """The port of a key given as a string (the hot path) or as its command class."""
        if type(key) is str:
            return self._port(key)
        if not (isinstance(key, type) and issubclass(key, Command)):
            return self._port(key)  # not a key: refused there, with its type named
        port = self._port(class_key(key))
        if not issubclass(port.command_class, key):
            registered = port.command_class.__qualname__
            msg = (
                f"command {port.key!r} is registered as {registered}, not {key.__qualname__}:"
                f" ask with the key, or register {key.__qualname__}"
            )
            raise UnknownCommandError(msg, key=port.key)
        return port

    def _submit(
        self,
        key: Key,
        payload: Any,
        timeout: float | None,
        block: bool,
        deadline: float | None = None,
        *,
        on_answer: Callable[[Reply], object] | None = None,
    ) -> Ticket | Reply | pykka.Future[Reply]:
        if timeout is not None:
            check_timeout(timeout)
        if deadline is None:
            # the hot path: a key given as a string whose port is cached and open
            port = self._routes.get(key) if type(key) is str else None
            if port is None or port.closed is not None or self._closed is not None:
                batcher = self._collapsers.get(key) if type(key) is str else None
                if batcher is not None and self._closed is None:
                    return self._collapse(batcher, payload, timeout, on_answer)
                port = self._port_of(key)
            limit = timeout
        else:
            check_deadline(deadline)
            left = deadline - time.monotonic()
            batcher = self._collapsers.get(key) if type(key) is str else None
            if batcher is not None and self._closed is None:
                limit = left if timeout is None else min(timeout, left)
                return self._collapse(batcher, payload, max(limit, 0.0), on_answer)
            port = self._port_of(key)
            if left <= 0:
                return port.out_of_time(payload)
            limit = left if timeout is None else min(timeout, left)
        cache = SCOPE.get()
        if cache is not None:  # in a request scope (docs/request-cache.md)
            cached = ask_in_scope(
                cache, port, payload, limit, block, on_answer=on_answer, dispatch=dispatch
            )
            if cached is not None:
                return cached
        # dispatch, inlined: the hot path pays no extra call
        if port.config.isolation is _SEMAPHORE:
            reply = call_here(port, payload, limit)  # on this thread, now
            if on_answer is not None:
                on_answer(reply)
            return reply
        return port.submit(payload, limit, block, on_answer)

    def _ask_reply(
        self,
        key: Key,
        payload: Any = None,
        *,
        block: bool = True,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> Any:
        """The ``Reply`` itself (or a future of it with ``block=False``); never raises for a
        command's failure. ``timeout`` (seconds) and ``deadline`` (a ``time.monotonic()``
        instant, say a caller's own deadline passed down) can shorten the call's deadline, never
        lengthen it; a call whose ``deadline`` has already passed is answered TIMEOUT (then the
        fallback) without running."""
        outcome = self._submit(key, payload, timeout, block, deadline)
        return reply_of(outcome) if block else future_of(outcome)

    ask_reply = cast("Method[AskReply]", _DefaultBound(_ask_reply, "ask_reply"))
    """``ask_reply(key, payload=None, *, block=True, timeout=None, deadline=None)``

    The ``Reply`` itself (or a future of it with ``block=False``); never raises for a
    command's failure. ``timeout`` (seconds) and ``deadline`` (a ``time.monotonic()``
    instant, say a caller's own deadline passed down) can shorten the call's deadline, never
    lengthen it; a call whose ``deadline`` has already passed is answered TIMEOUT (then the
    fallback) without running.

    ``key`` is the command key or its ``Command`` class (typed code then gets the
    class's result type). Called on the class, it acts on the default registry."""

    def _ask(
        self,
        key: Key,
        payload: Any = None,
        *,
        block: bool = True,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> Any:
        """The value of ``run``, or of ``fallback`` when the call failed, timed out, was
        rejected or short-circuited; with no fallback, raise (see ``Reply.unwrap``).
        With ``block=False``, a pykka future of that value.

        ``key`` is the command's key, or its ``Command`` class (typed code then gets the
        class's result type). A blocking ask on a thread running an event loop works but
        stalls the loop: the first one per key logs a warning naming ``ask_async``."""
        outcome = self._submit(key, payload, timeout, block, deadline)
        return reply_of(outcome).unwrap() if block else future_of(outcome).map(unwrap)

    ask = cast("Method[Ask]", _DefaultBound(_ask, "ask"))
    """``ask(key, payload=None, *, block=True, timeout=None, deadline=None)``

    The value of ``run``, or of ``fallback`` when the call failed, timed out, was
    rejected or short-circuited; with no fallback, raise (see ``Reply.unwrap``).
    With ``block=False``, a pykka future of that value.

    ``key`` is the command's key, or its ``Command`` class (typed code then gets the
    class's result type). A blocking ask on a thread running an event loop works but
    stalls the loop: the first one per key logs a warning naming ``ask_async``.

    ``key`` is the command key or its ``Command`` class (typed code then gets the
    class's result type). Called on the class, it acts on the default registry."""

    async def _ask_reply_async(
        self,
        key: Key,
        payload: Any = None,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> Reply:
        """``ask_reply`` for ``await``: the ``Reply``, without ever blocking the running event
        loop. The call runs on the key's workers like a non-blocking ask (the registry's
        watchdog answers it at its deadline); its answer wakes this loop. A rejection or a
        short-circuit is answered at once (its fallback runs here, on the loop). Cancelling
        the awaiting task abandons only the wait: the call keeps its course and is answered."""
        loop = asyncio.get_running_loop()
        if type(key) is str and key in self._collapsers:  # docs/collapsing.md
            batch_waiter: asyncio.Future[Reply] = loop.create_future()
            wakes = functools.partial(wake, loop, batch_waiter)
            self._submit(key, payload, timeout, False, deadline, on_answer=wakes)
            return await batch_waiter
        if self._closed is None and not self._cached(key):
            # the key's first call: the registry actor builds its port, off the loop
            await loop.run_in_executor(None, self._port_of, key)
        here = self._semaphore_port(key)
        if here is not None:  # semaphore isolation: run in this task
            if timeout is not None:
                check_timeout(timeout)
            limit = timeout
            if deadline is not None:
                check_deadline(deadline)
                left = deadline - time.monotonic()
                if left <= 0:
                    return here.out_of_time(payload)
                limit = left if timeout is None else min(timeout, left)
            cache = SCOPE.get()
            if cache is not None:  # in a request scope (docs/request-cache.md)
                return await ask_here_async(cache, here, payload, limit, call_here_async)
            return await call_here_async(here, payload, limit)
        waiter: asyncio.Future[Reply] = loop.create_future()
        outcome = self._submit(
            key, payload, timeout, False, deadline, on_answer=functools.partial(wake, loop, waiter)
        )
        if isinstance(outcome, Reply):
            return outcome
        return await waiter

    ask_reply_async = cast(
        "Method[AskReplyAsync]", _DefaultBound(_ask_reply_async, "ask_reply_async")
    )
    """``await ask_reply_async(key, payload=None, *, timeout=None, deadline=None)``

    ``ask_reply`` for ``await``: the ``Reply``, without ever blocking the running event
    loop. The call runs on the key's workers like a non-blocking ask (the registry's
    watchdog answers it at its deadline); its answer wakes this loop. A rejection or a
    short-circuit is answered at once (its fallback runs here, on the loop). Cancelling
    the awaiting task abandons only the wait: the call keeps its course and is answered.

    ``key`` is the command key or its ``Command`` class (typed code then gets the
    class's result type). Called on the class, it acts on the default registry."""

    async def _ask_async(
        self,
        key: Key,
        payload: Any = None,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> Any:
        """``ask`` for ``await``: the value of ``run`` or ``fallback``, or raise like ``ask``;
        never blocks the running event loop (see ``ask_reply_async``)."""
        reply = await self.ask_reply_async(key, payload, timeout=timeout, deadline=deadline)
        return reply.unwrap()

    ask_async = cast("Method[AskAsync]", _DefaultBound(_ask_async, "ask_async"))
    """``await ask_async(key, payload=None, *, timeout=None, deadline=None)``

    ``ask`` for ``await``: the value of ``run`` or ``fallback``, or raise like ``ask``;
    never blocks the running event loop (see ``ask_reply_async``).

    ``key`` is the command key or its ``Command`` class (typed code then gets the
    class's result type). Called on the class, it acts on the default registry."""

    def _semaphore_port(self, key: object) -> CommandPort | None:
        """The key's cached open port if its calls run on their callers' threads."""
        if isinstance(key, type) and issubclass(key, Command):
            port = self._port_of(key) if self._closed is None else None
        else:
            port = self._routes.get(key) if type(key) is str else None
        if port is None or port.closed is not None or port.config.isolation is not _SEMAPHORE:
            return None
        return port

    def _cached(self, key: object) -> bool:
        if isinstance(key, type) and issubclass(key, Command):
            key = getattr(key, "key", None)
        port = self._routes.get(key) if type(key) is str else None
        return port is not None and port.closed is None

    def _call(
        self,
        key: str,
        run: Callable[[], Any],
        fallback: Callable[[BaseException], Any] | None,
        block: bool,
    ) -> Ticket | Reply:
        if not callable(run):
            msg = f"run must be a callable taking no argument, got {show(run)}"
            raise TypeError(msg)
        if fallback is not None and not callable(fallback):
            got = show(fallback)
            msg = f"fallback must be None or a callable taking the error, got {got}"
            raise TypeError(msg)
        port = self._port(key, function_style=True)
        if port.config.isolation is _SEMAPHORE:
            return call_here(port, FunctionCall(run, fallback), None)
        return port.submit(FunctionCall(run, fallback), None, block)

    @_DefaultBound
    def go(
        self,
        key: str,
        run: Callable[[], Any],
        fallback: Callable[[BaseException], Any] | None = None,
    ) -> pykka.Future[Any]:
        """hystrix-go's ``Go``: run ``run()`` under the key's protection; a future of its value
        (or of ``fallback(error)``'s). A key never configured uses the default config."""
        return future_of(self._call(key, run, fallback, block=False)).map(unwrap)

    @_DefaultBound
    def do(
        self,
        key: str,
        run: Callable[[], Any],
        fallback: Callable[[BaseException], Any] | None = None,
    ) -> Any:
        """hystrix-go's ``Do``: like ``go`` but blocks for the value."""
        return reply_of(self._call(key, run, fallback, block=True)).unwrap()

    # -- looking -------------------------------------------------------------------------------

    @_DefaultBound
    def health(self, key: str) -> Health:
        """A snapshot of the key's circuit and load (starts no actor for an unused key)."""
        port = self._routes.get(key) if isinstance(key, str) else None
        if port is not None and port.closed is None:
            return port.gate.health(key, port.status)
        check_key(key)
        self._ensure_open()
        health: Health = self._actor.ask(HealthOf(key), block=True)
        return health

    @_DefaultBound
    def metrics(self, key: str) -> CommandMetrics:
        """A snapshot of the key's rolling metrics: every event count, latency percentiles of
        ``run`` and of the whole ask, concurrency, the pool, the circuit and its config.
        A key registered but never used has no metrics yet: ``UnknownCommandError``."""
        port = self._routes.get(key) if type(key) is str else None
        if port is None or port.closed is not None:
            check_key(key)
            self._ensure_open()
            port = self._live_port(key)
            if port is None:
                msg = f"no metrics for {key!r}: it was never asked (or is not registered)"
                raise UnknownCommandError(msg, key=key)
        return port.metrics()

    @_DefaultBound
    def all_metrics(self) -> list[CommandMetrics]:
        """``metrics`` of every key that has been asked, sorted by key."""
        self._ensure_open()
        ports: list[CommandPort] = self._actor.ask(Ports(), block=True)
        return [port.metrics() for port in sorted(ports, key=lambda port: port.key)]

    @_DefaultBound
    def restart(self, key: str) -> str:
        """Revive a key that is down (its supervisor's restarts were exhausted): a fresh
        supervisor, the restart count forgotten; the breaker's state is kept. No effect on a
        key that is up or restarting. Returns the key's status afterwards."""
        check_key(key)
        self._ensure_open()
        status: str = self._actor.ask(Restart(key), block=True)
        return status

    def _live_port(self, key: str) -> CommandPort | None:
        """The key's port if it has been used (for fault injection)."""
        ports: list[CommandPort] = self._actor.ask(Ports(), block=True)
        return next((port for port in ports if port.key == key), None)

    # -- fault injection ---------------------------------------------------------------------

    @property
    def injection_allowed(self) -> bool:
        """Whether ``inject`` may be used on this registry (``allow_injection``, or the
        environment variable ``HYSTRIX_ALLOW_INJECTION=1`` when it was made)."""
        return self._allow_injection

    @_DefaultBound
    def inject(
        self,
        key: str,
        *,
        latency: float | None = None,
        error: Exception | type[Exception] | None = None,
        outcome: Any = UNSET,
        rate: float = 1.0,
        duration: float = 30.0,
        seed: int | None = None,
    ) -> Injection:
        """Fault the key's runs for ``duration`` seconds, as if its dependency did it: wait
        ``latency`` seconds first, raise ``error`` (an instance, or a class made with no
        arguments) or return ``outcome`` instead of running; a share ``rate`` of the runs,
        drawn from ``random.Random(seed)``. Returns the ``Injection`` (``stop()``, or use it as
        a context manager); a later inject on the key replaces it. Refused
        (``InjectionDisabledError``) unless the registry allows it. See docs/fault-injection.md."""
        if not self._allow_injection:
            msg = (
                f"fault injection is disabled on this registry (refused for {key!r}): make it"
                f" with CommandRegistry(allow_injection=True), or set the environment variable"
                f" {ENV_VAR}=1 before it is made"
            )
            raise InjectionDisabledError(msg, key=key if isinstance(key, str) else None)
        plan = FaultPlan(
            latency=latency, error=error, outcome=outcome, rate=rate, duration=duration, seed=seed
        )
        check_key(key)
        with self._lock:
            port = self._port(key)
            return self._injections.start(port, plan, port.clock, self._watchdog)

    # -- stopping ------------------------------------------------------------------------------

    def _ensure_open(self) -> None:
        closed = self._closed
        if closed is not None:
            raise CommandError(str(closed), reason=closed.reason)

    @_DefaultBound
    def reset(self) -> None:
        """Stop every command actor and forget registrations and configuration (like
        ``hystrix.Flush``). A registry that was shut down, or whose registry actor was
        stopped from outside (say by ``pykka.ActorRegistry.stop_all()``), is started afresh."""
        with self._lock:
            self._injections.end_all("reset")
            if self._closed is not None:
                self._start()
                return
            routes = list(self._routes.values())
            self._routes.clear()
            for batcher in self._collapsers.values():
                batcher.close(CommandError("the registry was reset", reason="unavailable"))
            self._collapsers.clear()
            reason = CommandError("the registry was reset", reason="unavailable")
            try:
                ports: list[CommandPort] = self._actor.ask(Ports(), block=True)
                self._actor.ask(Reset(reason))
            except pykka.ActorDeadError:  # the root is gone: its keys with it
                for port in routes:
                    port.closed = reason
                    port.loop.close()
                self._watchdog.close()
                if self._fleet is not None:
                    self._fleet.close()
                self._start()
                return
            for port in ports:
                port.loop.close()  # cancels coroutines still running: their workers go on

    @_DefaultBound
    def shutdown(self, timeout: float | None = None) -> ShutdownReport:
        """Stop admitting (later asks raise ``CommandError`` with reason "shutdown"), let calls
        in flight finish for up to ``timeout`` seconds (default: the longest command timeout),
        answer the rest with that error (or their fallback), stop every actor and thread.
        Workers still inside ``run`` cannot be stopped: they are reported as zombies (daemon
        threads that end when ``run`` returns). Calling it again returns the first report."""
        if timeout is not None:
            check_timeout(timeout)
        with self._lock:
            if self._report is not None and self._closed is not None:
                return self._report
            closed = CommandError("the registry is shut down", reason="shutdown")
            self._closed = closed
            for batcher in self._collapsers.values():
                batcher.close(closed)
            self._injections.end_all("shutdown")
            try:
                ports: list[CommandPort] = self._actor.ask(Ports(), block=True)
            except pykka.ActorDeadError:
                ports = []
            budget = largest_timeout(ports) if timeout is None else timeout
            deadline = time.monotonic() + budget
            drained = all(
                [port.gate.wait_drained(max(0.0, deadline - time.monotonic())) for port in ports]
            )
            if self._fleet is not None:
                self._fleet.close()
            self._routes.clear()
            if self._actor.is_alive():
                self._actor.ask(Reset(closed, sweep=True), block=True)
                self._actor.stop(block=True)
            for ticket in self._watchdog.close():
                ticket.port.sweep(closed)
            for port in ports:
                port.loop.close()  # cancels coroutines still running: their workers go on
            zombies = _join_workers(ports, deadline=time.monotonic() + _JOIN_BUDGET)
            report = ShutdownReport(
                drained=drained, answered=sum(port.swept for port in ports), zombies=zombies
            )
            log = logger.warning if zombies else logger.info
            log("registry.shutdown", drained=drained, answered=report.answered, zombies=zombies)
            self._report = report
            return report


use_default_source(CommandRegistry.default)

#: Seconds shutdown waits for the threads of stopped workers to end (they end at once unless
#: the machine is starved; a worker still inside ``run`` is not waited for: it is a zombie).
_JOIN_BUDGET = 5.0


def _join_workers(ports: list[CommandPort], deadline: float) -> int:
    """Wait for the threads of the ports' workers that are not inside ``run`` to end; how many
    threads are left (zombies)."""
    workers = []
    seen: set[int] = set()  # a shared pool's workers appear under each of its keys
    for port in ports:
        loop_thread = port.loop.thread
        loop_stopped = loop_thread is None or not loop_thread.is_alive()
        for worker in port.worker_actors():
            if id(worker) in seen:
                continue
            seen.add(id(worker))
            workers.append(worker)
            thread = worker.thread
            # a worker awaiting a coroutine is freed by the stopped loop (it cancelled the task)
            if thread is not None and (not worker.busy or (worker.awaiting and loop_stopped)):
                thread.join(max(0.0, deadline - time.monotonic()))
    return sum(worker.thread is not None and worker.thread.is_alive() for worker in workers)
