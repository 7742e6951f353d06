"""``Command``: what users subclass. Each worker actor holds its own instance."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, ClassVar, Generic

from supervision import CommandConfig

from .generics import PayloadT, ResultT

if TYPE_CHECKING:
    from .ticket import Ticket

__all__ = ["Command", "FunctionCall", "FunctionCommand", "check_command_class"]


class Command(Generic[PayloadT, ResultT]):
    """A protected call to a dependency.

    Subclass it, set ``key`` (and optionally ``config``), implement ``run(payload)`` and
    optionally ``fallback(payload, error)``. Typed code names the payload and result types,
    ``class GetAllIssues(Command[Project, list[Issue]])``: ``registry.ask(GetAllIssues, ...)``
    is then a ``list[Issue]`` for the type checker (a bare ``Command`` is
    ``Command[Any, Any]``). ``run`` executes on a worker actor, never on the
    caller's thread; ``fallback`` runs where the failure was noticed: on the worker after a
    failure, on the caller's thread for a short-circuit, a rejection or a blocking ask's timeout.
    Fallbacks other than a worker's run on one shared instance per key and may run concurrently
    (at most ``config.fallback_max_concurrent`` at once).

    ``run`` may be ``async def``: its coroutine runs on the key's own event loop (its worker
    waits for it) and is cancelled at the deadline (see docs/asyncio.md). ``fallback`` stays a
    plain function.
    """

    key: ClassVar[str]
    config: ClassVar[CommandConfig] = CommandConfig()
    #: The dashboard's group for this command (Hystrix's command group); None: the class's
    #: module.
    group: ClassVar[str | None] = None

    #: The call this instance is running, set by its worker while ``run`` executes.
    _ticket: Ticket | None = None

    def run(self, payload: PayloadT) -> ResultT | Awaitable[ResultT]:
        """The normal path: call the dependency. Runs on a worker actor (an ``async def run``
        on the key's event loop). Must return its value: a generator function is refused
        by ``register`` (its body would run later, unprotected, on the caller's thread)."""
        msg = f"{type(self).__name__} must implement run(self, payload)"
        raise NotImplementedError(msg)

    def fallback(self, payload: PayloadT, error: BaseException) -> ResultT:
        """The degraded answer, given the error that made the call fall back."""
        raise NotImplementedError  # pragma: no cover - never called: see has_fallback

    def has_fallback(self, payload: PayloadT) -> bool:
        """Whether ``fallback`` exists for this payload (FALLBACK_MISSING when not)."""
        return type(self).fallback is not Command.fallback

    def cache_key(self, payload: PayloadT) -> Hashable | None:
        """The request cache's key for this payload (see docs/request-cache.md): inside one
        ``registry.request_scope()``, asks of this command whose cache keys are equal run once
        and share the first one's reply. None (the default): never cached. Called on the
        caller's thread, on the key's shared instance: keep it a pure function of the payload."""
        return None

    def time_left(self) -> float:
        """Seconds left before the running call's deadline (0.0 outside ``run``)."""
        ticket = self._ticket
        if ticket is None:
            return 0.0
        return max(0.0, ticket.deadline - ticket.port.clock())

    @property
    def cancelled(self) -> bool:
        """True once the running call has been timed out: its result will be discarded."""
        ticket = self._ticket
        return ticket is not None and ticket.timed_out


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionCall:
    """The payload of a function-style call (``go`` / ``do``)."""

    run: Callable[[], Any]
    fallback: Callable[[BaseException], Any] | None = None


class FunctionCommand(Command[FunctionCall, Any]):
    """Runs hystrix-go style functions: ``run()`` and ``fallback(error)``."""

    group = "functions"

    def run(self, payload: FunctionCall) -> Any:
        return payload.run()

    def fallback(self, payload: FunctionCall, error: BaseException) -> Any:
        if payload.fallback is None:  # pragma: no cover - has_fallback says so first
            raise error
        return payload.fallback(error)

    def has_fallback(self, payload: Any) -> bool:
        return isinstance(payload, FunctionCall) and payload.fallback is not None


def _binds(cls: type[Command], name: str, *args: object) -> str | None:
    """Why ``cls.<name>`` cannot be called with ``args`` (after ``self``), or None."""
    function = inspect.getattr_static(cls, name)
    if not inspect.isfunction(function):
        return None  # a staticmethod, a callable object...: left to the call
    signature = inspect.signature(function)
    try:
        signature.bind(None, *args)
    except TypeError as exc:
        call = ", ".join(map(str, args))
        return (
            f"{cls.__qualname__}.{name}{_bare(signature)} cannot be called as {name}({call}): {exc}"
        )
    return None


def _bare(signature: inspect.Signature) -> inspect.Signature:
    """The signature without annotations, for messages."""
    empty = inspect.Parameter.empty
    return signature.replace(
        parameters=[p.replace(annotation=empty) for p in signature.parameters.values()],
        return_annotation=inspect.Signature.empty,
    )


def check_command_class(cls: type[Command], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse at registration what would only fail at the first call (counted against the
    circuit, and then the fallback would fail too): a TypeError names the problem."""
    name = cls.__qualname__
    if cls.run is Command.run:
        msg = f"{name} does not implement run(self, payload)"
        raise TypeError(msg)
    if inspect.isgeneratorfunction(cls.run) or inspect.isasyncgenfunction(cls.run):
        msg = (
            f"{name}.run is a generator function: its body would run later, on the caller's"
            " thread, outside the command's protection; return a list (or another value)"
            " instead of yielding"
        )
        raise TypeError(msg)
    problem = _binds(cls, "run", "payload")
    if problem is None and cls.fallback is not Command.fallback:
        problem = _binds(cls, "fallback", "payload", "error")
    if problem is not None:
        raise TypeError(problem)
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # no signature to check against
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        given = "".join([*(f", {a!r}" for a in args), *(f", {k}={v!r}" for k, v in kwargs.items())])
        msg = (
            f"register({name}{given}): the arguments do not match the constructor"
            f" {name}{_bare(signature)}: {exc}"
        )
        raise TypeError(msg) from None
