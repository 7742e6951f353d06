"""The worker actor: runs one call at a time on its own thread, with a ``Command`` of its own
for each key of its pool (one key, or every key sharing a pool).

Every exception ``run`` raises is turned into an answer here: nothing escapes to pykka, which
would stop the actor (an Exception) or every actor in the process (a BaseException). When a call
is done the worker takes the next waiting call or parks in the gate.

A worker dies (and its supervisor replaces it) when ``run`` raises a BaseException (its
``Command`` may be left broken), when its own code breaks, or when it is crashed or stopped from
outside; the call it held is answered first (FAILURE, with the fallback), and calls sent to it
that it never started go back to the supervisor.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import inspect
import logging
import threading
import time
from typing import Any

import pykka

from supervision import BadRequest, CommandError, EventType

from .commands import Command
from .gate import Retry
from .lifecycle import SupervisedActor
from .log import Log, logger
from .messages import Crash, Reply, Retire, Retired, WorkerExited
from .pool import RETIRE, Pool
from .port import CommandPort, port_of
from .ticket import Hedge, Ticket

__all__ = ["WorkerActor"]

_SUCCESS = EventType.SUCCESS
_SUCCEEDED = (_SUCCESS,)
_FAILURE = EventType.FAILURE
_BAD_REQUEST = EventType.BAD_REQUEST


class _After(enum.Enum):
    """What a worker does once a call is over."""

    NEXT = "next"  # take the next waiting call, or park
    PARKED = "parked"  # parked before answering: ``_following`` says what comes next
    DIE = "die"  # run raised a BaseException: be replaced
    LEAVE = "leave"  # abandoned while stuck, and since replaced: end quietly


class WorkerActor(SupervisedActor):
    def __init__(
        self,
        pool: Pool,
        supervisor: pykka.ActorRef[Any],
        generation: int,
        *,
        park: bool = False,
    ) -> None:
        super().__init__()
        self._pool = pool
        self._supervisor = supervisor
        self._generation = generation
        self._park_on_start = park
        #: This worker's own ``Command`` for each key it has run a call of (built on first use).
        self._commands: dict[CommandPort, Command] = {}
        self._claimed: Ticket | None = None  # the last call this worker claimed to answer
        self._retired = False
        #: What ``park`` said when this worker parked before answering its call.
        self._following: Ticket | str | None = None
        #: True while inside ``run`` (read by shutdown: a busy worker cannot be stopped).
        self.busy = False
        #: True while ``run``'s coroutine runs on the key's loop (stopping the loop ends it).
        self.awaiting = False
        self.thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._log: Log = logger

    def on_start(self) -> None:
        pool = self._pool
        self.thread = threading.current_thread()
        pool.actors[self.actor_ref] = self
        pool.join(self.actor_ref)  # first: whatever fails next, the pool counts this worker
        self._log = pool.log.bind(actor=self.actor_urn)
        if self._park_on_start:
            self._next()

    def on_receive(self, message: Any) -> None:
        if isinstance(message, Ticket):
            try:  # run and its log events inside a copy of the caller's context
                after = message.in_context(self._execute, message)
            except BaseException as exc:
                self._rescue(message, exc)
                after = _After.DIE
            if after is _After.NEXT:
                self._next()
            elif after is _After.PARKED:
                following, self._following = self._following, None
                self._then(following)
            elif after is _After.LEAVE:
                self._retire()
            else:
                self.stop()
        elif isinstance(message, Retire):
            self._retired = True
            self.stop()
        elif isinstance(message, Crash):
            raise message.error

    # -- ending --------------------------------------------------------------------------------

    def _retire(self) -> None:
        self._retired = True
        with contextlib.suppress(pykka.ActorDeadError):  # the supervisor went first
            self._supervisor.tell(Retired(self.actor_ref))
        self.stop()

    def _exited(self) -> None:
        """Leave the gate; give back calls sent here and never started; tell the supervisor
        (unless this was a planned retirement), so it can replace this worker."""
        pool = self._pool
        ref = self.actor_ref
        pool.actors.pop(ref, None)
        pool.leave(ref)
        stranded = []
        while not self.actor_inbox.empty():
            message = self.actor_inbox.get().message
            if isinstance(message, Ticket):
                stranded.append(message)
        if not self._retired:
            if self._error is not None:
                self._log.error("worker.died", error=repr(self._error))
            else:
                self._log.warning("worker.stopped")
            with contextlib.suppress(pykka.ActorDeadError):  # a dead supervisor's heir
                self._supervisor.tell(WorkerExited(ref, self._error))  # starts workers anyway
        for ticket in stranded:
            port_of(ticket).hand_back(ticket)

    def _next(self) -> None:
        self._then(self._pool.park(self.actor_ref, self._generation))

    def _then(self, following: Ticket | str | None) -> None:
        """What ``park`` said: nothing (parked), retire, or run the next waiting call."""
        if following is None:
            return
        if following is RETIRE:
            self._retire()
        else:
            self.actor_ref.tell(following)

    def _log_for(self, port: CommandPort) -> Log:
        """This worker's log for a call of ``port``'s key (a shared pool's names the key)."""
        return self._log if port.log is self._pool.log else port.log.bind(actor=self.actor_urn)

    # -- running a call ------------------------------------------------------------------------

    def _rescue(self, ticket: Ticket, exc: BaseException) -> None:
        """This worker's own handling of a call broke: answer the call (FAILURE, with the
        fallback) so its caller is never left waiting; the worker then dies."""
        self._error = exc
        port = port_of(ticket)
        with contextlib.suppress(BaseException):  # logging itself may be what broke
            self._log.error("worker.internal_error", error=repr(exc))
        if ticket.answered:
            return
        if not (self._claimed is ticket or ticket.claim()):
            # claimed by a caller or the watchdog, who answers it: only the slot is left
            with contextlib.suppress(BaseException):
                port.gate.late(ticket)
            return
        error = CommandError(
            f"command {port.key!r}: internal error {exc!r}", key=port.key, reason="internal error"
        )
        error.__cause__ = exc
        try:
            if ticket.holds_slot:
                port.gate.finish(ticket, _FAILURE, None)
            reply = ticket.in_context(
                port.fall_back, ticket.payload, _FAILURE, error, ticket.started
            )
        except BaseException:
            reply = Reply(port.key, None, error, (_FAILURE,), 0.0)
        ticket.answer(reply)

    def _run(self, command: Command, ticket: Ticket) -> Any:
        """Call ``run``; a coroutine it returns (``async def run``) runs on the key's event
        loop while this worker waits for it, and is cancelled at the deadline."""
        value = command.run(ticket.payload)
        if inspect.iscoroutine(value):
            self.awaiting = True
            value = port_of(ticket).run_coroutine(value, ticket)
        return value

    def _attempt(
        self, port: CommandPort, ticket: Ticket
    ) -> tuple[Any, BaseException | None, EventType, float]:
        """One run of the call: its value, or the exception it raised and how that counts;
        and how long it ran."""
        value: Any = None
        error: BaseException | None = None
        event = _SUCCESS
        ran = 0.0
        try:
            command = self._commands.get(port)
            if command is None:
                command = self._commands[port] = port.new_command()
            command._ticket = ticket
            self.busy = True
            began = port.clock()
            try:
                injection = port.injection  # fault injection: None unless registry.inject
                if injection is None:
                    value = self._run(command, ticket)
                else:
                    run = functools.partial(self._run, command, ticket)
                    value = injection.run(run, ticket.deadline, port.clock)
            finally:
                ran = port.clock() - began
                self.busy = self.awaiting = False
                command._ticket = None
        except BadRequest as exc:
            event, error = _BAD_REQUEST, exc
        except BaseException as exc:  # an ignored exception passes on like BadRequest
            event = _BAD_REQUEST if isinstance(exc, port.config.ignore) else _FAILURE
            error = exc
        return value, error, event, ran

    def _execute(self, ticket: Ticket) -> _After:
        port = port_of(ticket)
        if not port.gate.begin(ticket, self.actor_ref):
            return _After.NEXT  # timed out or dropped before it reached this worker
        while True:  # one run, then more while a retry policy allows them
            value, error, event, ran = self._attempt(port, ticket)
            if event is not _FAILURE or not isinstance(error, Exception):
                break
            delay = port.retry_delay(ticket, error)
            if delay is None or ticket.settled:
                break
            verdict = port.retried(ticket, ran)
            if verdict is not Retry.AGAIN:
                return self._gave_up(port, ticket, error)
            if delay > 0.0:
                time.sleep(delay)  # within the deadline: retry_delay said so
            if ticket.settled:  # answered meanwhile (its supervisor died, the registry stopped)
                return _After.LEAVE if port.gate.late(ticket) else _After.NEXT
        after = _After.NEXT if error is None or isinstance(error, Exception) else _After.DIE
        if after is _After.DIE:
            self._error = error
        hedged = bool(ticket.hedges) or isinstance(ticket, Hedge)  # a call with extra runs
        if hedged and event is _FAILURE and port.gate.defer(ticket, ran):
            return after  # another run of the call is still going: it answers
        if ticket.claim():
            self._claimed = ticket
            if hedged:
                port.cancel_losers(ticket)
        else:  # answered already (TIMEOUT, or swept): drop the late result
            if port.gate.late(ticket, ran):
                self._log_for(port).info("worker.zombie_returned", outcome=event.value)
                return _After.LEAVE if after is _After.NEXT else after
            self._log_for(port).debug("command.late_result_dropped", outcome=event.value)
            return after
        if event is _FAILURE and port.clock() >= ticket.deadline:
            # run gave up at the deadline (its client used time_left()): that is a timeout.
            port.expire(ticket, cause=error, ran=ran)
            return after
        return self._answer(ticket, after, event=event, value=value, error=error, ran=ran)

    def _gave_up(self, port: CommandPort, ticket: Ticket, error: Exception) -> _After:
        """A failed attempt was not retried (the budget is spent, the circuit opened): its
        FAILURE is recorded already; answer with the fallback and free the slot."""
        if not ticket.claim():  # answered already: only the slot is left
            return _After.LEAVE if port.gate.late(ticket) else _After.NEXT
        self._claimed = ticket
        port.gate.release(ticket)
        port.log_per_call(logging.ERROR, "command.failed", error=repr(error))
        reply = ticket.in_context(
            port.fall_back, ticket.payload, None, error, ticket.started, self._commands.get(port)
        )
        self._following = self._pool.park(self.actor_ref, self._generation)  # park first
        ticket.answer(reply)
        return _After.PARKED

    def _answer(
        self,
        ticket: Ticket,
        after: _After,
        *,
        event: EventType,
        value: Any,
        error: BaseException | None,
        ran: float,
    ) -> _After:
        """Record the call's outcome, answer it, and say what this worker does next."""
        port = port_of(ticket)
        if event is _SUCCESS and after is _After.NEXT and not ticket.prior:  # the hot path
            latency = port.clock() - ticket.started
            reply = Reply(port.key, value, None, _SUCCEEDED, latency)
            # Park first, answer last: once the caller is woken it needs the GIL, which this
            # thread then gives up at once (back to its mailbox) instead of after bookkeeping.
            # A call placed here meanwhile waits in the mailbox.
            moved, self._following = port.gate.succeed(
                ticket, ran, latency, self.actor_ref, self._generation
            )
            if moved:
                port.publish(moved)
            ticket.answer(reply, counted=True)
            return _After.PARKED
        moved = port.gate.finish(ticket, event, ran)
        if moved:
            port.publish(moved)
        if event is _SUCCESS:
            reply = Reply(port.key, value, None, (_SUCCESS,), port.clock() - ticket.started)
        elif event is _BAD_REQUEST:
            reply = Reply(port.key, None, error, (_BAD_REQUEST,), port.clock() - ticket.started)
        else:
            assert error is not None
            port.log_per_call(logging.ERROR, "command.failed", error=repr(error))
            reply = ticket.in_context(  # the caller's context, not what run left in it
                port.fall_back,
                ticket.payload,
                _FAILURE,
                error,
                ticket.started,
                self._commands.get(port),
            )
        if after is _After.NEXT:  # park first, answer last (see above)
            self._following = self._pool.park(self.actor_ref, self._generation)
            after = _After.PARKED
        ticket.answer(reply)
        return after
