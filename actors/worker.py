"""The worker actor: runs one call at a time on its own thread and its own ``Command``.

Every exception ``run`` raises, BaseException included, is turned into an answer here: nothing
escapes to pykka, which would stop the actor (an Exception) or every actor in the process (a
BaseException). When a call is done the worker takes the next waiting call or parks in the gate.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pykka

from supervision import BadRequest, CommandError, EventType

from .command import Command
from .gate import RETIRE
from .log import logger
from .messages import Reply, Retired
from .port import CommandPort
from .ticket import Ticket

__all__ = ["WorkerActor"]

_SUCCESS = EventType.SUCCESS
_FAILURE = EventType.FAILURE
_BAD_REQUEST = EventType.BAD_REQUEST


class WorkerActor(pykka.ThreadingActor):
    use_daemon_thread = True  # a run that never returns must not keep the process alive

    def __init__(self, port: CommandPort, supervisor: pykka.ActorRef[Any]) -> None:
        super().__init__()
        self._port = port
        self._supervisor = supervisor
        self._command: Command | None = None
        self._claimed: Ticket | None = None  # the last call this worker claimed to answer
        self._log: Any = logger

    def on_start(self) -> None:
        self._log = self._port.log.bind(actor=self.actor_urn)

    def on_receive(self, message: Any) -> None:
        if isinstance(message, Ticket):
            try:
                self._execute(message)
            except BaseException as exc:
                self._rescue(message, exc)
            finally:
                self._next()

    def _rescue(self, ticket: Ticket, exc: BaseException) -> None:
        """Answer a call whose handling broke, so its caller is never left waiting."""
        if ticket.answered or not (self._claimed is ticket or ticket.claim()):
            return  # answered, or claimed by a caller or the watchdog, who will answer
        error = CommandError(
            f"command {self._port.key!r}: internal error {exc!r}",
            key=self._port.key,
            reason="internal error",
        )
        error.__cause__ = exc
        ticket.answer(Reply(self._port.key, None, error, (), 0.0))
        with contextlib.suppress(Exception):  # logging itself may be what broke
            self._log.error("worker.internal_error", error=repr(exc))

    def _next(self) -> None:
        following = self._port.gate.park(self.actor_ref)
        if following is None:
            return
        if following is RETIRE:
            with contextlib.suppress(pykka.ActorDeadError):  # the supervisor went first
                self._supervisor.tell(Retired(self.actor_ref))
            self.stop()
        else:
            self.actor_ref.tell(following)

    def _execute(self, ticket: Ticket) -> None:
        port = self._port
        if ticket.settled:  # timed out or abandoned before it reached this worker
            port.gate.release()
            return
        value: Any = None
        error: BaseException | None = None
        event = _SUCCESS
        try:
            command = self._command
            if command is None:
                command = self._command = port.new_command()
            command._ticket = ticket
            try:
                value = command.run(ticket.payload)
            finally:
                command._ticket = None
        except BadRequest as exc:
            event, error = _BAD_REQUEST, exc
        except BaseException as exc:
            event, error = _FAILURE, exc
        if ticket.claim():
            self._claimed = ticket
        else:  # answered TIMEOUT already: drop the late result
            port.gate.release()
            self._log.debug("command.late_result_dropped", outcome=event.value)
            return
        if event is _FAILURE and port.clock() >= ticket.deadline:
            # run gave up at the deadline (its client used time_left()): that is a timeout.
            port.expire(ticket, cause=error, returned=True)
            return
        moved = port.gate.finish(ticket.permit, event)
        if moved:
            port.publish(moved)
        if event is _SUCCESS:
            reply = Reply(port.key, value, None, (_SUCCESS,), port.clock() - ticket.started)
        elif event is _BAD_REQUEST:
            reply = Reply(port.key, None, error, (_BAD_REQUEST,), port.clock() - ticket.started)
        else:
            assert error is not None
            self._log.error("command.failed", error=repr(error))
            reply = port.fall_back(ticket.payload, _FAILURE, error, ticket.started, self._command)
        ticket.answer(reply)
