"""A ticket: one admitted call, answered exactly once.

Whoever claims the ticket first (the worker with the result, the caller or the watchdog at the
deadline, the supervisor when it stops) is the only one who answers it; the others let go.
A blocking caller waits on a plain lock (the cheapest hand-off Python has); a non-blocking one
gets a pykka future, made only for it, or (an ``await``) an ``on_answer`` callback that wakes its
event loop.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pykka

from supervision import CommandError, EventType, Permit

from .messages import Reply

if TYPE_CHECKING:
    from .tracing import CallTrace

__all__ = ["Hedge", "Owner", "Slots", "Ticket", "runs_of"]

_T = TypeVar("_T")


class Slots(Protocol):
    """A ticket's key's gate, as the key's worker pool sees it."""

    def free(self, ticket: Ticket) -> None:
        """Give the call's bulkhead slots back (the pool's lock is held)."""
        ...


class Owner(Protocol):
    """Who a ticket reports to: its key's port (named here, so this module never imports the
    layers above it)."""

    @property
    def tracked(self) -> set[Ticket]: ...

    @property
    def gate(self) -> Slots: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    def wait(self, ticket: Ticket) -> Reply: ...

    def sweep(self, error: CommandError) -> int: ...

    def replied(self, reply: Reply) -> Reply: ...

    def trace_ended(self, trace: CallTrace, reply: Reply) -> None: ...

    def expire(self, ticket: Ticket) -> Reply: ...


class Ticket:
    __slots__ = (
        "_claim",
        "_done",
        "abandoned",
        "answered",
        "attempts",
        "call",
        "context",
        "deadline",
        "future",
        "hedges",
        "holds_slot",
        "inflight",
        "on_answer",
        "payload",
        "permit",
        "port",
        "prior",
        "reply",
        "runner",
        "started",
        "timed_out",
        "trace",
    )

    def __init__(
        self,
        port: Owner,
        payload: Any,
        started: float,
        deadline: float,
        permit: Permit,
        *,
        block: bool = True,
        on_answer: Callable[[Reply], object] | None = None,
        context: contextvars.Context | None = None,
        trace: CallTrace | None = None,
    ) -> None:
        self.port = port
        #: A copy of the caller's context: ``run`` (and a fallback off the caller's thread)
        #: runs inside it, so contextvars (request ids, traces) cross the actor hop and what
        #: ``run`` sets stays in this call.
        self.context = contextvars.copy_context() if context is None else context
        #: The call's span, ended when it is answered (None without a tracer).
        self.trace = trace
        self.payload = payload
        self.started = started
        self.deadline = deadline
        self.permit = permit
        self.timed_out = False
        #: True until the call's bulkhead slot is given back (changed under the gate's lock).
        self.holds_slot = True
        #: The worker running it, once one has begun (set under the gate's lock).
        self.runner: pykka.ActorRef[Any] | None = None
        #: Its worker was abandoned while stuck in ``run`` (set under the gate's lock).
        self.abandoned = False
        #: Runs of ``run`` so far (retries: ``CommandConfig(retry=...)``), and the events of the
        #: attempts before the last (e.g. FAILURE, RETRY), put before the reply's own.
        self.attempts = 1
        self.prior: tuple[EventType, ...] = ()
        #: Extra runs started for it (``CommandConfig(hedge=...)``), and the coroutine call
        #: its ``async def run`` has on the key's loop (so a run that lost can be cancelled).
        self.hedges: tuple[Hedge, ...] = ()
        self.call: Any = None
        #: The key's calls in flight when it was admitted, itself included (read by an
        #: adaptive limit: ``CommandConfig(limit=...)``; 0 without one).
        self.inflight = 0
        self.answered = False
        self.reply: Reply | None = None
        self.future: pykka.ThreadingFuture[Reply] | None = (
            None if block or on_answer is not None else pykka.ThreadingFuture()
        )
        #: Called with the reply by whoever answers (set before the ticket is sent anywhere).
        self.on_answer = on_answer
        self._claim = threading.Lock()
        self._done = threading.Lock()
        self._done.acquire()  # released once, by answer()

    def in_context(self, function: Callable[..., _T], *args: Any) -> _T:
        """``function(*args)`` inside a fresh copy of the caller's context: ``run`` gets one,
        and so does each fallback off the caller's thread, so none sees what another set and
        several threads may hold one each at once."""
        return self.context.copy().run(function, *args)

    def claim(self) -> bool:
        """Take the right to answer; True for exactly one caller."""
        return self._claim.acquire(blocking=False)

    @property
    def settled(self) -> bool:
        """True once someone has claimed the ticket."""
        return self._claim.locked()

    def answer(self, reply: Reply, *, counted: bool = False) -> None:
        """Deliver the reply (only the claimer calls this); ``counted``: its events and latency
        are counted already (``Gate.succeed``)."""
        prior = self.prior
        if prior:  # a retried call: its earlier attempts' events come first
            reply = Reply(reply.key, reply.value, reply.error, prior + reply.events, reply.latency)
        self.reply = reply
        self.answered = True
        port = self.port
        port.tracked.discard(self)
        try:
            if not counted:
                port.replied(reply)  # counted before the caller wakes: it sees its own call
            if self.trace is not None:
                port.trace_ended(self.trace, reply)
        finally:  # whatever happens, the caller is answered
            try:
                if self.future is not None:
                    self.future.set(reply)
                elif self.on_answer is not None:
                    self.on_answer(reply)  # must not raise: see event_loop.wake
            finally:
                self._done.release()

    def wait(self, timeout: float | None) -> Reply | None:
        """The reply, waiting up to ``timeout`` seconds (None: as long as it takes). A wait
        longer than ``threading.TIMEOUT_MAX`` (about 292 years) is cut to it rather than
        raising ``OverflowError``; a negative or NaN one does not wait."""
        if timeout is None:
            timeout = -1.0
        elif not timeout > 0.0:
            timeout = 0.0
        elif timeout > threading.TIMEOUT_MAX:
            timeout = threading.TIMEOUT_MAX
        if self._done.acquire(timeout=timeout):
            self._done.release()  # stays answered for any later wait
            return self.reply
        return None


class Hedge(Ticket):
    """An extra run of a slow call (``HedgePolicy``): a slot and a runner of its own; the call's
    claim, permit and answer. Whichever run claims first answers the call; the other's result is
    dropped (its slot given back when it returns), as a late result is."""

    __slots__ = ("primary",)

    def __init__(self, primary: Ticket) -> None:
        self.primary = primary
        self.port = primary.port
        self.payload = primary.payload
        self.started = primary.started
        self.deadline = primary.deadline
        self.permit = primary.permit
        self.context = primary.context
        self.trace = None
        self.timed_out = False
        self.holds_slot = True
        self.runner = None
        self.abandoned = False
        self.attempts = 1 << 30  # an extra run is never retried: its call is the one to retry
        self.hedges = ()
        self.call = None
        self.inflight = primary.inflight
        self.answered = False
        self.reply = None
        self.future = None
        self.on_answer = None
        self._claim = primary._claim  # one claim for every run of the call
        self._done = primary._done

    @property
    def prior(self) -> tuple[EventType, ...]:
        """The call's (the first run's)."""
        return self.primary.prior

    @prior.setter
    def prior(self, events: tuple[EventType, ...]) -> None:
        self.primary.prior = events

    def answer(self, reply: Reply, *, counted: bool = False) -> None:
        self.primary.answer(reply, counted=counted)

    def wait(self, timeout: float | None) -> Reply | None:
        return self.primary.wait(timeout)


def runs_of(ticket: Ticket) -> tuple[Ticket, ...]:
    """Every run of ``ticket``'s call: the first, then its extra ones."""
    primary = ticket.primary if isinstance(ticket, Hedge) else ticket
    return (primary, *primary.hedges)
