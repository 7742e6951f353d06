"""``Command``: what users subclass. Each worker actor holds its own instance."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from supervision import CommandConfig

if TYPE_CHECKING:
    from .ticket import Ticket

__all__ = ["Command", "FunctionCall", "FunctionCommand"]


class Command:
    """A protected call to a dependency.

    Subclass it, set ``key`` (and optionally ``config``), implement ``run(payload)`` and
    optionally ``fallback(payload, error)``. ``run`` executes on a worker actor, never on the
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

    def run(self, payload: Any) -> Any:
        """The normal path: call the dependency. Runs on a worker actor (an ``async def run``
        on the key's event loop)."""
        msg = f"{type(self).__name__} must implement run(self, payload)"
        raise NotImplementedError(msg)

    def fallback(self, payload: Any, error: BaseException) -> Any:
        """The degraded answer, given the error that made the call fall back."""
        raise NotImplementedError  # pragma: no cover - never called: see has_fallback

    def has_fallback(self, payload: Any) -> bool:
        """Whether ``fallback`` exists for this payload (FALLBACK_MISSING when not)."""
        return type(self).fallback is not Command.fallback

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


class FunctionCommand(Command):
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
