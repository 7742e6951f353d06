"""A command port: everything a caller needs to reach one key without a registry hop.

The registry actor builds one port per key on first use and starts the key's supervisor; the
registry facade caches the port, so later asks go straight from the caller's thread through the
gate to the supervisor's mailbox. The port also answers what never reaches a worker
(short-circuits, rejections, timeouts) and runs fallbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, cast

import pykka

from supervision import (
    CircuitOpenError,
    Clock,
    CommandConfig,
    CommandError,
    CommandTimeoutError,
    EventType,
    FallbackFailedError,
    MaxConcurrencyError,
    Permit,
    Throttle,
    Transition,
)
from supervision.snapshot import CommandMetrics

from .commands import Command
from .event_loop import KeyLoop
from .gate import Gate, Retry, Stuck
from .injection import Injection
from .log import Log, log_transitions, logger, ms
from .messages import Refill, Reply, Retire
from .pool import Pool, Running
from .ticket import Ticket, runs_of
from .tracing import CallTrace, Tracer

if TYPE_CHECKING:
    from .watchdog import Watchdog

__all__ = ["CommandPort", "TransitionListener", "port_of"]

#: Called with (key, transition) on every circuit transition.
TransitionListener = Callable[[str, Transition], None]

_SHORT = EventType.SHORT_CIRCUITED
_FAILED = (EventType.FAILURE,)
_RETRIED = (EventType.FAILURE, EventType.RETRY)
_EXHAUSTED = (EventType.FAILURE, EventType.RETRY_BUDGET_EXHAUSTED)

#: At most one line of each per-call warning or error (``command.rejected``,
#: ``command.timed_out``, ``command.failed``, ``fallback.failed``) per key per this many seconds,
#: with a count of the lines held back: under overload or an outage, logging every call would
#: cost more than the call and drown the application's own logs.
PER_CALL_LOG_INTERVAL = 1.0


class CommandPort:
    def __init__(
        self,
        *,
        key: str,
        command_class: type[Command],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        config: CommandConfig,
        breaker_clock: Clock,
        clock: Clock,
        watchdog: Watchdog,
        listeners: Sequence[TransitionListener],
        tracer: Tracer | None = None,
        pool: Pool | None = None,
    ) -> None:
        self.key = key
        self.command_class = command_class
        #: The dashboard's (and the spans') group: the class's, else its module.
        self.group = command_class.group or command_class.__module__
        #: Whether the command defines ``cache_key`` (the request cache: docs/request-cache.md).
        self.cache_enabled = command_class.cache_key is not Command.cache_key
        #: Begins a span per ask (OpenTelemetry when installed), or None.
        self.tracer = tracer
        self._args = args
        self._kwargs = kwargs
        self.config = config
        self.clock = clock
        self.gate = Gate(config, breaker_clock, pool)
        self.log: Log = logger.bind(command=key)
        #: The worker pool the key's calls run on (its own, or a shared one): its workers, its
        #: supervisor, passivation, and whether it is restarting or down.
        self.pool = pool = self.gate.pool
        if pool.log is None:  # the key's own pool logs as the key
            pool.log = self.log
        pool.ports.append(self)
        #: Set when the registry stopped the key (reset, shutdown): asks are re-routed or refused.
        self.closed: CommandError | None = None
        #: Admitted calls not answered yet.
        self.tracked: set[Ticket] = set()
        #: Calls answered by ``sweep`` (for the shutdown report).
        self.swept = 0
        #: The fallback bulkhead: one token per fallback allowed to run at once. ``list.pop`` and
        #: ``list.append`` are single atomic operations, so taking and giving back a token
        #: needs no lock (a semaphore's own lock queued 200 callers behind each other).
        self.fallback_slots: list[None] = [None] * config.fallback_max_concurrent
        self.timer = watchdog
        self._listeners = listeners
        self._fallback_command: Command | None = None
        #: Idle ``Command`` instances for calls run by their callers (semaphore isolation):
        #: each running call holds one of its own, as a worker does.
        self.spare_commands: list[Command] = []
        self._lock = threading.Lock()
        self._throttles: dict[str, Throttle] = {}
        #: Set once a blocking ask was made on a thread running an event loop (warned once).
        self.warned_in_loop = False
        #: The key's event loop for ``async def run`` (its thread starts on first need).
        self.loop = KeyLoop(f"hystrix-async-{key}")
        #: The key's active fault injection (``registry.inject``), or None: read once per run.
        self.injection: Injection | None = None

    # -- the pool's lifecycle, as the key sees it ----------------------------------------------

    @property
    def supervisor(self) -> pykka.ActorRef[Any] | None:
        """The supervisor of the key's pool; None while it is passivated."""
        return self.pool.supervisor

    @supervisor.setter
    def supervisor(self, supervisor: pykka.ActorRef[Any] | None) -> None:
        self.pool.supervisor = supervisor

    @property
    def down(self) -> CommandError | None:
        """Set while the pool's supervisor is dead ("restarting") or given up on ("down"): asks
        are answered at once with it (reason "unavailable") or the fallback."""
        down = self.pool.down
        if down is None or down.key == self.key:
            return down
        return CommandError(str(down), key=self.key, reason=down.reason)  # a shared pool's

    @down.setter
    def down(self, error: CommandError | None) -> None:
        self.pool.down = error

    @property
    def status(self) -> str:
        """ "up", "restarting" or "down": the pool's supervisor's."""
        return self.pool.status

    @status.setter
    def status(self, status: str) -> None:
        self.pool.status = status

    # -- the caller's side ---------------------------------------------------------------------

    def submit(
        self,
        payload: Any,
        timeout: float | None,
        block: bool,
        on_answer: Callable[[Reply], object] | None = None,
    ) -> Ticket | Reply:
        """Admit a call and send it to the supervisor, or answer it at once. A non-blocking
        call's answer goes to ``on_answer`` if given, else to the ticket's pykka future."""
        if block and not self.warned_in_loop and asyncio._get_running_loop() is not None:
            self.warn_blocking_in_loop()
        started = self.clock()
        unavailable = self.closed or self.down
        if unavailable is not None:
            return self.at_once(self.fall_back(payload, None, unavailable, started))
        admitted, worker, moved = self.gate.admit()
        if moved:
            self.publish(moved)
        if not isinstance(admitted, Permit):
            return self.at_once(self.reject(admitted, payload, started))
        limit = self.config.timeout
        if timeout is not None and timeout < limit:
            limit = timeout
        context = contextvars.copy_context()  # the caller's, for run on the worker
        trace = None if self.tracer is None else self.trace_begun(limit, context)
        ticket = Ticket(
            self,
            payload,
            started,
            started + limit,
            admitted,
            block=block,
            on_answer=on_answer,
            context=context,
            trace=trace,
        )
        if self.gate.limiter is not None:  # its calls in flight now, itself included
            ticket.inflight = self.gate.in_flight
        self.tracked.add(ticket)
        if not block:
            self.timer.watch(ticket)
        hedge = self.config.hedge
        if hedge is not None and not admitted.probe:  # a probe is never hedged: one at a time
            after = self.gate.hedge_after(hedge)
            if after is not None and started + after < ticket.deadline:
                self.timer.call_at(started + after, functools.partial(self.hedge, ticket))
        if worker is not None:
            try:
                worker.tell(ticket)
            except pykka.ActorDeadError:  # died while parked: the supervisor places the call
                self.hand_back(ticket)
            return ticket
        self.hand_back(ticket)
        return ticket

    def hedge(self, ticket: Ticket) -> None:
        """The call's hedge delay is over (a job on the registry's timer): if it is still
        unanswered and the budget and the bulkhead allow, start one more run of it (up to
        ``max_extra``), which may answer it first. Its stuck worker is handled as any other."""
        policy = self.config.hedge
        if ticket.settled or policy is None or len(ticket.hedges) >= policy.max_extra:
            return
        extra, worker = self.gate.admit_hedge(ticket)
        if isinstance(extra, str):
            self.log.debug("command.hedge_denied", reason=extra)
            return
        self.log.debug("command.hedged", extra=len(ticket.hedges))
        self.check_stuck_at(ticket.deadline + self.grace(), extra)
        if len(ticket.hedges) < policy.max_extra:  # the next extra run, as late again
            after = ticket.started + 2 * (self.clock() - ticket.started)
            if after < ticket.deadline:
                self.timer.call_at(after, functools.partial(self.hedge, ticket))
        if worker is not None:
            try:
                worker.tell(extra)
            except pykka.ActorDeadError:
                self.hand_back(extra)
            return
        self.hand_back(extra)

    def cancel_losers(self, winner: Ticket) -> None:
        """A hedged call was answered by ``winner``: cancel the other runs' coroutines (an
        ``async def run``); a plain ``run`` goes on, its result dropped when it returns."""
        for run in runs_of(winner):
            call = run.call
            if run is not winner and call is not None and not call.ended.is_set():
                self.loop.cancel(call)

    def warn_blocking_in_loop(self) -> None:
        """A blocking ask on a thread running an event loop stalls that loop until the answer:
        say so once per key (the call still goes ahead)."""
        self.warned_in_loop = True
        self.log.warning(
            "command.blocking_ask_in_event_loop",
            hint="this blocks the running event loop until the answer; use"
            " 'await registry.ask_async(...)' (or ask_reply_async) there",
        )

    def out_of_time(self, payload: Any) -> Reply:
        """A call whose caller's deadline has passed before it was made: TIMEOUT, then the
        fallback, without admission (it says nothing about the dependency's health)."""
        started = self.clock()
        error = CommandTimeoutError(
            f"command {self.key!r}: no time left before the caller's deadline", key=self.key
        )
        self.log.debug("command.out_of_time", reason=error.reason)
        return self.at_once(self.fall_back(payload, EventType.TIMEOUT, error, started))

    def replied(self, reply: Reply) -> Reply:
        """Every answer passes here once: count its events and latency."""
        self.gate.replied(reply.events, reply.latency, not reply.ok)
        return reply

    def at_once(self, reply: Reply) -> Reply:
        """A call answered without running, on the caller's thread: counted, and traced."""
        self.gate.replied(reply.events, reply.latency, not reply.ok)
        tracer = self.tracer
        if tracer is not None:
            try:
                if not tracer.recording():  # no SDK configured: nothing to gather
                    return reply
                tracer.at_once(
                    self.key, self.group, self.config.timeout, reply, self.gate.circuit_state()
                )
            except Exception as exc:  # a tracer's fault never breaks a call
                self.log_per_call(logging.ERROR, "tracer.failed", error=repr(exc))
        return reply

    def trace_begun(self, limit: float, context: contextvars.Context) -> CallTrace | None:
        """An admitted call's span, current inside ``context`` (None if the tracer failed)."""
        assert self.tracer is not None
        try:
            return self.tracer.begin(self.key, self.group, limit, context)
        except Exception as exc:  # a tracer's fault never breaks a call
            self.log_per_call(logging.ERROR, "tracer.failed", error=repr(exc))
            return None

    def trace_ended(self, trace: CallTrace, reply: Reply) -> None:
        """An admitted call was answered: end its span (a tracer's fault never breaks it)."""
        try:
            trace.ended(reply, self.gate.circuit_state())
        except Exception as exc:
            self.log_per_call(logging.ERROR, "tracer.failed", error=repr(exc))

    def hand_back(self, ticket: Ticket) -> None:
        """Give a call to the supervisor to place, starting one first if the key is passivated;
        if it is dead, answer "unavailable"."""
        # asleep is read first: admitted after the key passivated, this call must not reach
        # the supervisor being stopped (``wake`` sets the new one before it clears asleep)
        pool = self.pool
        supervisor = self.wake() if pool.asleep else pool.supervisor
        try:
            if supervisor is None:
                raise pykka.ActorDeadError(self.key)
            supervisor.tell(ticket)
        except pykka.ActorDeadError:
            self.drop(ticket, self.unavailable())

    def unavailable(self) -> CommandError:
        error = self.closed or self.down
        if error is not None:
            return error
        return CommandError(
            f"command {self.key!r} is unavailable", key=self.key, reason="unavailable"
        )

    def metrics(self) -> CommandMetrics:
        return self.gate.metrics(
            self.key,
            self.group,
            self.status,
            self.config,
            time.time(),
            cache_enabled=self.cache_enabled,
        )

    def live_workers(self) -> list[pykka.ActorRef[Any]]:
        """The live workers of the key's pool."""
        return [ref for ref in list(self.pool.actors) if ref.is_alive()]

    def worker_actors(self) -> list[Running]:
        return list(self.pool.actors.values())

    def wait(self, ticket: Ticket) -> Reply:
        """Block for the ticket's reply; at its deadline, answer TIMEOUT on this thread."""
        reply = ticket.wait(ticket.deadline - self.clock())
        if reply is None:
            if ticket.claim():
                return self.expire(ticket)
            reply = ticket.wait(None)  # claimed a moment ago: being answered now
            assert reply is not None
        return reply

    # -- answers that never come from a worker -------------------------------------------------

    def reject(self, event: EventType, payload: Any, started: float) -> Reply:
        if event is _SHORT:
            error: CommandError = CircuitOpenError(
                f"command {self.key!r}: circuit open", key=self.key
            )
            self.log.debug("command.short_circuited", reason=error.reason)
        else:
            error = MaxConcurrencyError(f"command {self.key!r}: max concurrency", key=self.key)
            self.log_per_call(
                logging.WARNING,
                "command.rejected",
                reason=error.reason,
                in_flight=self.gate.in_flight,
            )
        return self.fall_back(payload, event, error, started)

    def expire(
        self, ticket: Ticket, *, cause: BaseException | None = None, ran: float | None = None
    ) -> Reply:
        """Answer a claimed ticket whose deadline passed (TIMEOUT, then the fallback).

        ``ran`` says ``run`` has already returned after that many seconds (it raised ``cause``
        after the deadline, say a socket timeout from ``time_left()``): the slot is freed now
        rather than later.
        """
        ticket.timed_out = True
        if ran is not None:
            moved = self.gate.finish(ticket, EventType.TIMEOUT, ran)
        else:
            moved = self.gate.expire(ticket)
            if ticket.holds_slot:  # run has begun: see whether it returns within its grace
                self.check_stuck_at(ticket.deadline + self.grace(), ticket)
        if moved:
            self.publish(moved)
        limit = ticket.deadline - ticket.started
        error = CommandTimeoutError(
            f"command {self.key!r}: timeout after {limit:.3f}s", key=self.key
        )
        error.__cause__ = cause
        self.log_per_call(
            logging.WARNING, "command.timed_out", reason=error.reason, timeout_ms=ms(limit)
        )
        reply = self.fall_back(ticket.payload, EventType.TIMEOUT, error, ticket.started)
        ticket.answer(reply)
        return reply

    def drop(self, ticket: Ticket, error: CommandError) -> None:
        """A call that will never run: free its slot, and answer it unless someone has."""
        if ticket.claim():
            self.gate.cancel(ticket)
            ticket.answer(
                ticket.in_context(self.fall_back, ticket.payload, None, error, ticket.started)
            )
        else:  # timed out already (its TIMEOUT recorded): only the slot is left
            self.gate.release(ticket)

    def sweep(self, error: CommandError) -> int:
        """Answer every call still in flight with ``error`` (the supervisor died, the registry
        stopped): no outcome is recorded; slots stay held until each ``run`` returns (a call
        that never reached a worker frees its slot at once)."""
        answered = 0
        for ticket in self.tracked.copy():
            if ticket.claim():
                self.gate.void(ticket)
                ticket.answer(
                    ticket.in_context(self.fall_back, ticket.payload, None, error, ticket.started)
                )
                if ticket.holds_slot:
                    self.check_stuck_at(self.clock() + self.grace(), ticket)
                answered += 1
        return answered

    # -- retries ---------------------------------------------------------------------------------

    def retry_delay(self, ticket: Ticket, error: Exception) -> float | None:
        """Seconds to wait before running a failed call again (``CommandConfig(retry=...)``), or
        None: the call ends with ``error`` (no policy, not an error it retries, its attempts
        used up, or no time left for the wait before its deadline)."""
        policy = self.config.retry
        if policy is None or ticket.attempts >= policy.attempts or not policy.retries(error):
            return None
        delay = policy.delay(ticket.attempts, random.random())
        if self.clock() + delay >= ticket.deadline:
            return None
        return delay

    def retried(self, ticket: Ticket, ran: float) -> Retry:
        """A failed attempt that ``retry_delay`` allows: record it and take what the next one
        needs (``Gate.retry``); the attempt's events go before the reply's."""
        verdict, moved = self.gate.retry(ticket, ran)
        if moved:
            self.publish(moved)
        if verdict is Retry.AGAIN:
            ticket.prior += _RETRIED
            self.log.debug("command.retrying", attempt=ticket.attempts)
        elif verdict is Retry.EXHAUSTED:
            ticket.prior += _EXHAUSTED
            self.log_per_call(logging.WARNING, "command.retry_budget_exhausted")
        else:  # the circuit opened meanwhile
            ticket.prior += _FAILED
        return verdict

    # -- coroutines -----------------------------------------------------------------------------

    def run_coroutine(self, coro: Coroutine[Any, Any, Any], ticket: Ticket) -> Any:
        """Run the coroutine an ``async def run`` returned on the key's loop; wait for it (on
        the worker) until the call's deadline, then cancel its task and wait until it has
        really ended (the zombie grace applies to the worker meanwhile). Its value, or raise
        what it raised; a task cancelled at the deadline raises ``CommandTimeoutError``."""
        loop = self.loop
        gone = self.unavailable()
        call = loop.submit(
            coro,
            CommandError(str(gone), key=self.key, reason=gone.reason),
            ticket.context.copy(),  # the caller's context, fresh: not the worker's copy
        )
        ticket.call = call  # a hedged call's winner cancels it (see cancel_losers)
        if not self.pool.armed:  # a loop started for a key that is asleep (semaphore)
            self.watch_idle()
        if not call.ended.wait(max(0.0, ticket.deadline - self.clock())):
            loop.cancel(call)
            call.ended.wait()  # ends when run has handled its CancelledError (or the loop stops)
        error = call.error
        if isinstance(error, asyncio.CancelledError) and call.cancel_sent:
            past = self.clock() - ticket.deadline
            if past < 0.0:  # another run of a hedged call answered it first
                self.log.debug("command.hedge_cancelled")
                raise CommandError(
                    f"command {self.key!r}: run cancelled, another run answered first",
                    key=self.key,
                    reason="cancelled",
                ) from error
            self.log.info("command.cancelled", ran_past_ms=ms(past))
            timeout = CommandTimeoutError(
                f"command {self.key!r}: run cancelled at its deadline", key=self.key
            )
            raise timeout from error
        if isinstance(error, asyncio.CancelledError):  # not ours: the loop stopped, or run's own
            closed = self.closed
            raise CommandError(
                f"command {self.key!r}: run was cancelled",
                key=self.key,
                reason="cancelled" if closed is None else closed.reason,
            ) from error
        return call.result()

    # -- stuck workers -------------------------------------------------------------------------

    def grace(self) -> float:
        return self.config.supervision.grace_for(self.config.timeout)

    def check_stuck_at(self, when: float, ticket: Ticket) -> None:
        self.timer.call_at(when, functools.partial(self.check_stuck, ticket))

    def check_stuck(self, ticket: Ticket) -> None:
        """The grace period of an answered call whose ``run`` had not returned is over."""
        pool = self.pool
        verdict = self.gate.abandon(ticket, pool.zombie_cap())
        if verdict is Stuck.ABANDONED:
            self.log.warning(
                "worker.abandoned",
                worker=ticket.runner.actor_urn if ticket.runner else None,
                zombies=pool.zombies,
                overdue_ms=ms(self.clock() - ticket.deadline),
            )
            supervisor = pool.supervisor
            if supervisor is not None:
                # a dead supervisor's successor starts workers on demand
                with contextlib.suppress(pykka.ActorDeadError):
                    supervisor.tell(Refill())
        elif verdict is Stuck.CAPPED:
            self.log.warning("worker.zombie_cap_reached", zombies=pool.zombies)
            self.check_stuck_at(self.clock() + self.grace(), ticket)
        elif verdict is Stuck.LOST:
            self.log.warning("command.lost_call_freed")

    # -- passivation (of the key's pool: any of its ports does it for all) --------------------

    def watch_idle(self, *, renew: bool = False) -> None:
        """Look, ``passivate_after`` seconds from now, whether the pool has been idle that long
        (a job on the registry's timer: no thread of its own), unless a look is due already;
        ``renew``: replace the look due (the setting changed)."""
        pool = self.pool
        with pool.life:
            if pool.armed and not renew:
                return
            pool.token += 1
            after = pool.policy.passivate_after
            if after is None or self.closed is not None or pool.start is None:
                pool.armed = False
                return
            pool.armed = True
            job = functools.partial(self._idle_check, pool.token)
            self.timer.call_at(time.monotonic() + after, job)

    def _idle_check(self, token: int) -> None:
        """Passivate the pool if it has been idle for ``passivate_after`` seconds: stop its
        workers, its supervisor and its keys' event loop threads, keeping the ports and gates
        (breakers, windows, counts, configs). Else look again when it could be."""
        pool = self.pool
        with pool.life:
            if token != pool.token:
                return  # a newer look replaced this one
            after = pool.policy.passivate_after
            if after is None or self.closed is not None:
                pool.armed = False
                return
            idle_since = pool.idle_since
            # restarting or down: the registry owns the supervisor; look again later
            if pool.down is not None:
                verdict: list[pykka.ActorRef[Any]] | float = time.monotonic() + after
            else:
                verdict = pool.passivate(after)
            if isinstance(verdict, float):
                self.timer.call_at(verdict, functools.partial(self._idle_check, token))
                return
            pool.armed = False
            supervisor, pool.supervisor = pool.supervisor, None
            loop_stopped = any([port.loop.suspend() for port in list(pool.ports)])
        for worker in verdict:
            with contextlib.suppress(pykka.ActorDeadError):
                worker.tell(Retire())
        if supervisor is not None:  # it retires its other workers (see CommandActor)
            with contextlib.suppress(pykka.ActorDeadError):
                supervisor.stop(block=False)
        if supervisor is not None or loop_stopped:
            pool.log.debug("command.passivated", idle_ms=ms(time.monotonic() - idle_since))

    def wake(self) -> pykka.ActorRef[Any] | None:
        """The pool's supervisor for a call admitted while the pool was passivated: the first
        such caller starts a new one (the others wait for it on the lock), and idleness is
        watched again. None if the key is closed or no supervisor could be started."""
        pool = self.pool
        with pool.life:
            if not pool.asleep:
                return pool.supervisor  # woken a moment ago by another caller
            start = pool.start
            if self.closed is not None or start is None:
                return None
            idle = time.monotonic() - pool.idle_since
            try:
                supervisor = pool.supervisor = start()
            except Exception as exc:  # no thread to be had: this call is answered unavailable
                self.log.error("command.reactivation_failed", error=repr(exc))
                return None
            pool.awaken()  # after the supervisor is set: see hand_back
        pool.log.debug("command.reactivated", idle_ms=ms(idle))
        self.watch_idle()
        return supervisor

    def revive(self) -> bool:
        """Start a supervisor in place of a dead one (the registry, after a backoff or on
        ``restart(key)``); False if the key is closed or its pool passivated (its next call
        starts one) or its supervisor is alive."""
        pool = self.pool
        with pool.life:
            start = pool.start
            if self.closed is not None or pool.asleep or start is None:
                return False
            supervisor = pool.supervisor
            if supervisor is not None and supervisor.is_alive():
                return False
            pool.supervisor = start()
            pool.down = None
            pool.status = "up"
        self.watch_idle()
        return True

    def tell_supervisor(self, message: object) -> None:
        """Tell the pool's supervisor, if it has one (a passivated pool has none: the one its
        next call starts reads the pool)."""
        pool = self.pool
        with pool.life:
            supervisor = pool.supervisor
            if supervisor is not None:
                with contextlib.suppress(pykka.ActorDeadError):
                    supervisor.tell(message)

    def current_supervisor(self) -> pykka.ActorRef[Any] | None:
        """The pool's supervisor, read once no supervisor is being started (for the registry
        stopping a closed key: a caller waking it then finds it closed)."""
        with self.pool.life:
            return self.pool.supervisor

    # -- fallbacks -----------------------------------------------------------------------------

    def fallback_command(self) -> Command:
        """The shared instance that runs fallbacks off the workers (built on first need)."""
        command = self._fallback_command
        if command is None:
            with self._lock:
                if self._fallback_command is None:
                    self._fallback_command = self.new_command()
                command = self._fallback_command
        return command

    def new_command(self) -> Command:
        return self.command_class(*self._args, **self._kwargs)

    def fall_back(
        self,
        payload: Any,
        event: EventType | None,
        error: BaseException,
        started: float,
        command: Command | None = None,
    ) -> Reply:
        """Run the fallback for a call that failed with ``event`` and ``error``."""
        head: tuple[EventType, ...] = () if event is None else (event,)
        key = self.key
        try:
            if command is None:
                command = self.fallback_command()
            missing = not command.has_fallback(payload)
        except BaseException as exc:  # the command class itself is broken
            return self._fallback_failed(payload, head, error, exc, started)
        if missing:
            events = (*head, EventType.FALLBACK_MISSING)
            return Reply(key, None, error, events, self.clock() - started)
        slots = self.fallback_slots
        try:
            slots.pop()
        except IndexError:
            failed = FallbackFailedError(
                f"command {key!r}: fallback rejected ({self.config.fallback_max_concurrent}"
                f" running). run error was '{error}'",
                key=key,
                reason="fallback rejected",
                run_error=error,
            )
            events = (*head, EventType.FALLBACK_REJECTION)
            return Reply(key, None, failed, events, self.clock() - started)
        try:
            value = command.fallback(payload, error)
        except BaseException as exc:
            return self._fallback_failed(payload, head, error, exc, started)
        finally:
            slots.append(None)
        events = (*head, EventType.FALLBACK_SUCCESS)
        return Reply(key, value, error, events, self.clock() - started)

    def _fallback_failed(
        self,
        payload: Any,
        head: tuple[EventType, ...],
        error: BaseException,
        exc: BaseException,
        started: float,
    ) -> Reply:
        failed = FallbackFailedError(
            f"fallback failed with '{exc}'. run error was '{error}'",
            key=self.key,
            run_error=error,
        )
        failed.__cause__ = exc
        self.log_per_call(logging.ERROR, "fallback.failed", error=repr(exc), run_error=repr(error))
        events = (*head, EventType.FALLBACK_FAILURE)
        return Reply(self.key, None, failed, events, self.clock() - started)

    # -- events and configuration --------------------------------------------------------------

    def log_per_call(self, level: int, event: str, **fields: Any) -> None:
        """Log an event that may happen on every call: at most one line per key per
        ``PER_CALL_LOG_INTERVAL``, with ``held_back`` (lines not written since the last one).
        Nothing is counted or rendered while the level is disabled."""
        log = self.log
        if not log.enabled(level):
            return
        throttle = self._throttles.get(event)
        if throttle is None:
            throttle = self._throttles.setdefault(
                event, Throttle(PER_CALL_LOG_INTERVAL, self.clock)
            )
        held_back = throttle.allow()
        if held_back is not None:
            log.log(level, event, **fields, held_back=held_back)

    def publish(self, transitions: tuple[Transition, ...]) -> None:
        self.gate.transitioned(transitions)
        log_transitions(self.log, transitions)
        for listener in self._listeners:
            for moved in transitions:
                try:
                    listener(self.key, moved)
                except BaseException:  # a listener must not break a call
                    self.log.exception("listener.failed", listener=repr(listener))

    def reconfigure(self, config: CommandConfig) -> None:
        self.gate.reconfigure(config)
        if config.fallback_max_concurrent != self.config.fallback_max_concurrent:
            self.fallback_slots = [None] * config.fallback_max_concurrent
        self.config = config


def port_of(ticket: Ticket) -> CommandPort:
    """The port of a ticket's key (a ticket names it through ``ticket.Owner``)."""
    return cast("CommandPort", ticket.port)
