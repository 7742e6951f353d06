"""Semaphore isolation: a call its caller runs itself (``CommandConfig(isolation="semaphore")``).

Hystrix's SEMAPHORE strategy: no worker, no actor hop. The caller's thread admits the call through
the same gate (breaker, then the bulkhead as a plain counter of calls running: nothing waits, so
``queue_size`` is not used and a full key answers SEMAPHORE_REJECTED), runs ``run`` and records the
outcome, and runs the fallback; events, metrics, transitions, traces and the fleet see the same
call as under thread isolation.

Deadlines are enforced as far as Python allows. A blocking ``run`` cannot be interrupted: when it
returns after the call's deadline, the caller gets TIMEOUT and the fallback (counted as TIMEOUT, its
result dropped), never sooner. An ``async def run`` awaited with ``ask_async`` runs in the caller's
own task and is cancelled at the deadline; one called from a blocking ``ask`` runs on the key's
event loop, cancelled at the deadline, while the caller waits.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import time
from typing import Any

from supervision import BadRequest, CommandError, CommandTimeoutError, EventType, Permit

from .commands import Command
from .gate import HERE, Retry
from .log import ms
from .messages import Reply
from .port import CommandPort
from .ticket import Ticket

__all__ = ["call_here", "call_here_async"]

_SUCCESS = EventType.SUCCESS
_SUCCEEDED = (_SUCCESS,)
_FAILURE = EventType.FAILURE
_BAD_REQUEST = EventType.BAD_REQUEST
_TIMEOUT = EventType.TIMEOUT


def _admit(port: CommandPort, payload: Any, timeout: float | None) -> Ticket | Reply:
    """The call's ticket (counted as running), or its answer at once (closed, rejected)."""
    started = port.clock()
    closed = port.closed
    if closed is not None:
        return port.at_once(port.fall_back(payload, None, closed, started))
    admitted, moved = port.gate.admit_here()
    if moved:
        port.publish(moved)
    if not isinstance(admitted, Permit):
        return port.at_once(port.reject(admitted, payload, started))
    limit = port.config.timeout
    if timeout is not None and timeout < limit:
        limit = timeout
    context = contextvars.copy_context()
    trace = None if port.tracer is None else port.trace_begun(limit, context)
    ticket = Ticket(port, payload, started, started + limit, admitted, context=context, trace=trace)
    ticket.runner = HERE
    if port.gate.limiter is not None:  # its calls in flight now, itself included
        ticket.inflight = port.gate.in_flight
    port.tracked.add(ticket)
    return ticket


def _lend(port: CommandPort) -> Command:
    """A ``Command`` instance no other running call holds (one per concurrent call, reused)."""
    try:
        return port.spare_commands.pop()
    except IndexError:
        return port.new_command()


def _classify(port: CommandPort, exc: Exception) -> EventType:
    if isinstance(exc, (BadRequest, *port.config.ignore)):
        return _BAD_REQUEST
    return _FAILURE


def _stopped(port: CommandPort, ticket: Ticket) -> None:
    """``run`` raised a BaseException on the caller's own thread (KeyboardInterrupt,
    SystemExit, a cancelled task): it is the caller's to handle, not an outcome of the
    dependency. Free the slot and a probe's permit; nothing is recorded."""
    if ticket.claim():
        port.gate.cancel(ticket)
        port.tracked.discard(ticket)
        if ticket.trace is not None:
            error = CommandError(f"command {port.key!r}: the caller stopped", key=port.key)
            port.trace_ended(ticket.trace, Reply(port.key, None, error, (), 0.0))
    else:
        port.gate.late(ticket)


def _answer(
    port: CommandPort,
    ticket: Ticket,
    command: Command | None,
    *,
    value: Any,
    error: Exception | None,
    event: EventType,
    ran: float,
    cancelled: bool = False,
) -> Reply:
    """``run`` returned (``value``) or raised (``error``, ``event``) after ``ran`` seconds, or
    was ``cancelled`` at its deadline: record, fall back if need be, and answer the ticket."""
    if not ticket.claim():  # answered already: the registry swept it (reset, shutdown)
        port.gate.late(ticket, ran)
        reply = ticket.wait(None)
        assert reply is not None
        return reply
    started = ticket.started
    if cancelled or port.clock() >= ticket.deadline:  # late: a timeout, its result dropped
        ticket.timed_out = True
        moved = port.gate.finish(ticket, _TIMEOUT, ran)
        if moved:
            port.publish(moved)
        limit = ticket.deadline - started
        timeout = CommandTimeoutError(
            f"command {port.key!r}: timeout after {limit:.3f}s", key=port.key
        )
        timeout.__cause__ = error
        port.log_per_call(
            logging.WARNING,
            "command.timed_out",
            reason=timeout.reason,
            timeout_ms=ms(limit),
            ran_ms=ms(ran),
        )
        reply = ticket.in_context(
            port.fall_back, ticket.payload, _TIMEOUT, timeout, started, command
        )
    elif error is None:
        latency = port.clock() - started
        reply = Reply(port.key, value, None, _SUCCEEDED, latency)
        if ticket.prior:  # a retried call: its earlier attempts' events are counted too
            moved = port.gate.finish(ticket, _SUCCESS, ran)
        else:  # the hot path: one lock for the rest
            moved, _ = port.gate.succeed(ticket, ran, latency)
        if moved:
            port.publish(moved)
        ticket.answer(reply, counted=not ticket.prior)
        return ticket.reply if ticket.reply is not None else reply
    else:
        moved = port.gate.finish(ticket, event, ran)
        if moved:
            port.publish(moved)
        if event is _BAD_REQUEST:
            reply = Reply(port.key, None, error, (_BAD_REQUEST,), port.clock() - started)
        else:
            port.log_per_call(logging.ERROR, "command.failed", error=repr(error))
            reply = ticket.in_context(
                port.fall_back, ticket.payload, _FAILURE, error, started, command
            )
    ticket.answer(reply)
    return ticket.reply if ticket.reply is not None else reply  # with a retried call's events


def _gave_up(port: CommandPort, ticket: Ticket, command: Command | None, error: Exception) -> Reply:
    """A failed attempt was not retried (the budget is spent, the circuit opened): its FAILURE
    is recorded already; answer with the fallback and free the slot."""
    if not ticket.claim():  # answered already: the registry swept it
        port.gate.late(ticket)
        reply = ticket.wait(None)
        assert reply is not None
        return reply
    port.gate.release(ticket)
    port.log_per_call(logging.ERROR, "command.failed", error=repr(error))
    reply = ticket.in_context(port.fall_back, ticket.payload, None, error, ticket.started, command)
    ticket.answer(reply)
    return ticket.reply if ticket.reply is not None else reply


def _retry(
    port: CommandPort, ticket: Ticket, event: EventType, error: Exception | None, ran: float
) -> float | Retry | None:
    """After an attempt: None (it is the call's last: answer it), the seconds to wait before
    the next, or why the call ends now (``Retry.EXHAUSTED``, ``Retry.OPEN``)."""
    if event is not _FAILURE or error is None:
        return None
    delay = port.retry_delay(ticket, error)
    if delay is None or ticket.settled:
        return None
    verdict = port.retried(ticket, ran)
    return delay if verdict is Retry.AGAIN else verdict


def call_here(port: CommandPort, payload: Any, timeout: float | None) -> Reply:
    """Run one call on this thread; its reply (the fallback's when it failed, timed out, was
    rejected or short-circuited). ``timeout`` may shorten the key's timeout."""
    admitted = _admit(port, payload, timeout)
    if isinstance(admitted, Reply):
        return admitted
    ticket = admitted
    clock = port.clock
    while True:  # one run, then more while a retry policy allows them
        command: Command | None = None
        value: Any = None
        error: Exception | None = None
        event = _SUCCESS
        began = clock()
        try:
            command = _lend(port)
            command._ticket = ticket
            try:
                injection = port.injection  # fault injection: None unless registry.inject
                if injection is None:
                    value = ticket.context.run(command.run, payload)
                else:
                    run = functools.partial(ticket.context.run, command.run, payload)
                    value = injection.run(run, ticket.deadline, clock)
                if inspect.iscoroutine(value):  # async def run: on the key's loop, in time
                    value = port.run_coroutine(value, ticket)
            finally:
                command._ticket = None
        except Exception as exc:
            event, error = _classify(port, exc), exc
        except BaseException:
            _stopped(port, ticket)
            raise
        ran = clock() - began
        if command is not None:
            port.spare_commands.append(command)
        after = _retry(port, ticket, event, error, ran)
        if after is None:
            return _answer(port, ticket, command, value=value, error=error, event=event, ran=ran)
        if isinstance(after, Retry):
            assert error is not None
            return _gave_up(port, ticket, command, error)
        time.sleep(after)


async def call_here_async(port: CommandPort, payload: Any, timeout: float | None) -> Reply:
    """``call_here`` for ``await``: an ``async def run`` runs in this task (in the caller's
    context) and is cancelled at the call's deadline; a plain ``run`` runs right here, blocking
    the event loop while it runs (semaphore isolation is for calls that do not block)."""
    admitted = _admit(port, payload, timeout)
    if isinstance(admitted, Reply):
        return admitted
    ticket = admitted
    clock = port.clock
    while True:  # one run, then more while a retry policy allows them
        command: Command | None = None
        value: Any = None
        error: Exception | None = None
        event = _SUCCESS
        cancelled = False
        began = clock()
        try:
            command = _lend(port)
            command._ticket = ticket
            try:
                injection = port.injection  # fault injection: None unless registry.inject
                value = (
                    ticket.context.run(command.run, payload)
                    if injection is None
                    else await injection.run_async(
                        functools.partial(ticket.context.run, command.run, payload),
                        ticket.deadline,
                        clock,
                    )
                )
                if inspect.iscoroutine(value):
                    loop = asyncio.get_running_loop()
                    timer = asyncio.timeout_at(loop.time() + (ticket.deadline - clock()))
                    try:
                        async with timer:
                            value = await value
                    except TimeoutError as exc:
                        if not timer.expired():
                            raise  # run's own TimeoutError
                        cancelled = True
                        port.log.info(
                            "command.cancelled", ran_past_ms=ms(clock() - ticket.deadline)
                        )
                        raise CommandTimeoutError(
                            f"command {port.key!r}: run cancelled at its deadline", key=port.key
                        ) from exc
            finally:
                command._ticket = None
        except Exception as exc:
            event, error = _classify(port, exc), exc
        except BaseException:  # the caller's task was cancelled (or the process is stopping)
            _stopped(port, ticket)
            raise
        ran = clock() - began
        if command is not None:
            port.spare_commands.append(command)
        after = None if cancelled else _retry(port, ticket, event, error, ran)
        if after is None:
            return _answer(
                port,
                ticket,
                command,
                value=value,
                error=error,
                event=event,
                ran=ran,
                cancelled=cancelled,
            )
        if isinstance(after, Retry):
            assert error is not None
            return _gave_up(port, ticket, command, error)
        await asyncio.sleep(after)
