"""The gate: a key's breaker, bulkhead, worker membership and waiting calls behind one lock.

Callers, workers and the supervisor share it. Admission happens on the caller's thread before
anything is enqueued, so a short-circuit or a rejection costs no actor hop and no mailbox can grow
past the bulkhead. An admitted call takes a parked (idle) worker when there is one and goes to it
directly; otherwise it goes to the supervisor, which starts a worker or lets the call wait.
A worker that finishes takes the next waiting call itself, or parks. Outcomes are recorded by
whoever answers a call, before the answer is delivered, so a caller reading ``health`` right
after its answer sees the state its call produced.

Every admitted call holds one bulkhead slot (``Ticket.holds_slot``) until its ``run`` returns, it
is found never to have started, or its stuck worker is abandoned; ``_free`` is the one place a
slot is given back, and it gives each ticket's slot back once. Worker membership is a set of
refs, so every way a worker can leave (retired, died, abandoned, orphaned) is counted once.

The gate outlives the key's actors: when the key has been idle long enough, ``passivate``
decides, under the same lock admission takes, that it sleeps (``asleep``): its workers leave and
its supervisor is stopped by the port; a call admitted afterwards finds it asleep and has the
port start a new supervisor (``awaken``). Breaker, windows and counts stay here throughout.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from typing import TYPE_CHECKING, Any, Final

import pykka

from supervision import (
    Bulkhead,
    CircuitBreaker,
    CircuitState,
    Clock,
    CommandConfig,
    EventType,
    Health,
    Permit,
    Transition,
)
from supervision.fleet import Delta, FleetState, FleetTally, FleetView, follow
from supervision.metrics import EXECUTED, MAX_ACTIVE, MAX_IN_FLIGHT, CommandStats
from supervision.snapshot import CommandMetrics, PoolMetrics

if TYPE_CHECKING:
    from .ticket import Ticket

__all__ = ["HERE", "RETIRE", "START", "Gate", "Stuck"]

Worker = pykka.ActorRef[Any]

#: ``place`` says: start a new worker for this call.
START: Final = "start"
#: ``park`` says: this worker is surplus (or of a past generation) and must stop.
RETIRE: Final = "retire"
#: The runner of a call its caller runs (semaphore isolation): no worker.
HERE: Final[Any] = "caller"

_SHORT = EventType.SHORT_CIRCUITED
_REJECTED = EventType.THREAD_POOL_REJECTED
_SEMAPHORE_REJECTED = EventType.SEMAPHORE_REJECTED
#: The events of a successful call's reply.
_SUCCEEDED = (EventType.SUCCESS,)
_TIMEOUT = EventType.TIMEOUT


class Stuck(enum.StrEnum):
    """What ``abandon`` found about a timed-out call whose grace period is over."""

    #: ``run`` returned (or the slot was freed some other way): nothing to do.
    DONE = "done"
    #: The call never reached a worker, yet held its slot (not expected: ``expire`` and ``void``
    #: free such slots at once); its slot is freed.
    LOST = "lost"
    #: Its worker is abandoned: slot freed, membership dropped, counted as a zombie.
    ABANDONED = "abandoned"
    #: The zombie cap is reached: the worker keeps its slot (the key sheds load); ask again later.
    CAPPED = "capped"


class Gate:
    __slots__ = (
        "_breaker",
        "_bulkhead",
        "_clock",
        "_drain_waiters",
        "_drained",
        "_idle",
        "_lock",
        "_members",
        "_reserved",
        "_waiting",
        "_worker_limit",
        "asleep",
        "fleet_view",
        "generation",
        "idle_since",
        "running",
        "stats",
        "zombies",
    )

    def __init__(self, config: CommandConfig, clock: Clock) -> None:
        self._lock = threading.Lock()
        #: Made by the first ``wait_drained`` (shutdown): most keys never need one.
        self._drained: threading.Condition | None = None
        self._drain_waiters = 0  # threads in wait_drained (notified only when there are some)
        self._clock = clock
        self._breaker = CircuitBreaker(config, clock)
        #: Rolling metrics for the dashboard (recorded under the lock).
        self.stats = CommandStats(config.rolling_window, config.rolling_buckets, clock)
        #: Calls inside ``run`` now (a zombie's call no longer counts).
        self.running = 0
        self._bulkhead = Bulkhead(config.max_concurrent_requests, config.queue_size)
        self._idle: list[Worker] = []
        #: Calls waiting for a worker, oldest first: a list, not a deque (a few calls at most,
        #: bounded by the bulkhead; an empty deque costs about 600 bytes per key).
        self._waiting: list[Ticket] = []
        self._worker_limit = config.max_concurrent_requests
        self._members: set[Worker] = set()
        self._reserved = 0  # workers being started, not yet members
        #: Bumped when the key's workers are replaced as a whole (supervisor restart,
        #: one_for_all): a worker of an older generation retires when its call ends.
        self.generation = 0
        #: Workers abandoned in ``run`` that have not returned yet.
        self.zombies = 0
        #: The fleet's view of the key, as the fleet last read it (None: no fleet).
        self.fleet_view: FleetView | None = None
        #: True while the key is passivated: no supervisor, no worker (see ``passivate``).
        self.asleep = False
        #: When (``time.monotonic()``) the last call in flight ended: the key is idle since.
        self.idle_since = time.monotonic()

    @property
    def workers(self) -> int:
        """Worker actors counted against the limit (started or starting, not yet gone)."""
        return len(self._members) + self._reserved

    # -- the caller's side ---------------------------------------------------------------------

    def admit(self) -> tuple[Permit | EventType, Worker | None, tuple[Transition, ...]]:
        """A permit (with a parked worker to send the call to, if any), or the rejection event
        (SHORT_CIRCUITED / THREAD_POOL_REJECTED); with the transitions admission caused."""
        with self._lock:
            permit, moved = self._breaker.try_acquire()
            if permit is None:  # counted in the metrics when answered; not a health event
                return _SHORT, None, moved
            if not self._bulkhead.try_acquire():
                return _REJECTED, None, moved + self._breaker.record(permit, _REJECTED)
            self.stats.counters.peak(MAX_IN_FLIGHT, self._bulkhead.in_flight)
            return permit, (self._idle.pop() if self._idle else None), moved

    def admit_here(self) -> tuple[Permit | EventType, tuple[Transition, ...]]:
        """Semaphore isolation: admit a call its caller runs itself, counted as running at once
        (its ticket's ``runner`` must be ``HERE``); or the rejection event (SHORT_CIRCUITED /
        SEMAPHORE_REJECTED: nothing waits, so ``queue_size`` is not used); with the transitions
        admission caused."""
        with self._lock:
            permit, moved = self._breaker.try_acquire()
            if permit is None:
                return _SHORT, moved
            bulkhead = self._bulkhead
            if not bulkhead.try_acquire(queue=False):
                return _SEMAPHORE_REJECTED, moved + self._breaker.record(
                    permit, _SEMAPHORE_REJECTED
                )
            self.running += 1
            counters = self.stats.counters
            counters.peak(MAX_IN_FLIGHT, bulkhead.in_flight)
            counters.peak(MAX_ACTIVE, self.running)
            return permit, moved

    # -- the supervisor's side -----------------------------------------------------------------

    def place(self, ticket: Ticket) -> Worker | str | None:
        """For a call no parked worker took: a worker that parked since, ``START`` (a new
        worker may be started), or None (the call waits for a worker)."""
        with self._lock:
            if ticket.settled:  # timed out or answered before it got here
                self._free(ticket)
                return None
            if self._idle:
                return self._idle.pop()
            if self.workers < self._worker_limit:
                self._reserved += 1
                return START
            self._waiting.append(ticket)
            return None

    def reserve(self) -> bool:
        """Count one more worker about to start, if the limit allows (a replacement)."""
        with self._lock:
            if self.workers >= self._worker_limit:
                return False
            self._reserved += 1
            return True

    def unreserve(self) -> None:
        """A reserved worker could not be started."""
        with self._lock:
            self._reserved -= 1

    def next_waiting_for_new_worker(self) -> Ticket | None:
        """A waiting call, if the limit allows one more worker for it (a resize, a death)."""
        with self._lock:
            while self._waiting and self.workers < self._worker_limit:
                ticket = self._waiting.pop(0)
                if ticket.settled:
                    self._free(ticket)
                    continue
                self._reserved += 1
                return ticket
            return None

    def take_surplus(self) -> list[Worker]:
        """Parked workers beyond the limit, removed from the gate (to be stopped)."""
        with self._lock:
            surplus = []
            while self._idle and self.workers > self._worker_limit:
                worker = self._idle.pop()
                self._members.discard(worker)
                surplus.append(worker)
            return surplus

    def renew(self) -> list[Worker]:
        """Start a new generation: parked workers leave now (returned, to be stopped); busy
        ones retire when their call ends."""
        with self._lock:
            self.generation += 1
            idle, self._idle = self._idle, []
            self._members.difference_update(idle)
            return idle

    def orphan(self) -> tuple[list[Ticket], list[Worker]]:
        """The supervisor died: a new generation; the waiting calls (still holding their slots,
        to be dropped) and the parked workers (gone from the gate, to be stopped)."""
        idle = self.renew()
        with self._lock:
            waiting = list(self._waiting)
            self._waiting.clear()
            return waiting, idle

    def close(self) -> tuple[list[Ticket], list[Worker]]:
        """Admit no more workers: like ``orphan``, and every busy worker retires."""
        waiting, idle = self.orphan()
        with self._lock:
            self._worker_limit = 0
        return waiting, idle

    # -- the worker's side ---------------------------------------------------------------------

    def join(self, worker: Worker) -> None:
        """A reserved worker has started."""
        with self._lock:
            self._reserved -= 1
            self._members.add(worker)
            stats = self.stats
            stats.largest_pool = max(stats.largest_pool, self.workers)

    def leave(self, worker: Worker) -> None:
        """A worker is gone (whatever the way); idempotent."""
        with self._lock:
            self._members.discard(worker)
            if worker in self._idle:
                self._idle.remove(worker)

    def begin(self, ticket: Ticket, worker: Worker) -> bool:
        """A worker is about to run the call: False (and the slot freed) if it was settled
        (timed out, dropped) before it got there."""
        with self._lock:
            if ticket.settled:
                self._free(ticket)
                return False
            ticket.runner = worker
            self.running += 1
            self.stats.counters.peak(MAX_ACTIVE, self.running)
            return True

    def finish(self, ticket: Ticket, event: EventType, ran: float | None) -> tuple[Transition, ...]:
        """``run`` returned with ``event`` after ``ran`` seconds (None: not timed) and its
        worker answers: free the slot, record."""
        with self._lock:
            self._free(ticket)
            if ran is not None:
                self.stats.ran(ran)
            return self._breaker.record(ticket.permit, event)

    def late(self, ticket: Ticket, ran: float | None = None) -> bool:
        """``run`` returned (after ``ran`` seconds) after someone else answered the call. True
        if its worker had been abandoned (it must end now: it was replaced); else the slot is
        freed."""
        with self._lock:
            if ran is not None:
                self.stats.ran(ran)
            if ticket.abandoned:
                ticket.abandoned = False
                self.zombies -= 1
                return True
            self._free(ticket)
            return False

    def succeed(
        self,
        ticket: Ticket,
        ran: float,
        latency: float,
        worker: Worker | None = None,
        generation: int = 0,
    ) -> tuple[tuple[Transition, ...], Ticket | str | None]:
        """The success path under one lock: ``run`` returned a value after ``ran`` seconds and
        the call is answered ``latency`` seconds after it was made: free the slot, record
        SUCCESS and count the reply (the caller's ``Ticket.answer(reply, counted=True)``); with
        ``worker``, park it too (what ``park`` says comes second)."""
        with self._lock:
            self._free(ticket)
            stats = self.stats
            stats.ran(ran)
            stats.replied(_SUCCEEDED, latency, False)
            moved = self._breaker.record(ticket.permit, EventType.SUCCESS)
            return moved, None if worker is None else self._park(worker, generation)

    def park(self, worker: Worker, generation: int) -> Ticket | str | None:
        """A worker is free: the next waiting call for it, ``RETIRE``, or None (parked)."""
        with self._lock:
            return self._park(worker, generation)

    def _park(self, worker: Worker, generation: int) -> Ticket | str | None:
        """``park``, under the lock the caller holds."""
        if (
            generation != self.generation
            or worker not in self._members
            or self.workers > self._worker_limit
        ):
            self._members.discard(worker)
            return RETIRE
        waiting = self._waiting
        while waiting:
            ticket = waiting.pop(0)
            if not ticket.settled:
                return ticket
            self._free(ticket)  # timed out while it waited
        self._idle.append(worker)
        return None

    def idle_workers(self) -> list[Worker]:
        with self._lock:
            return list(self._idle)

    # -- anyone --------------------------------------------------------------------------------

    def expire(self, ticket: Ticket) -> tuple[Transition, ...]:
        """The call's deadline passed: record TIMEOUT. If ``run`` has begun, the slot stays
        held until it returns; a call that never reached a worker gives its slot back now."""
        with self._lock:
            self._unstarted(ticket)
            return self._breaker.record(ticket.permit, _TIMEOUT)

    def _unstarted(self, ticket: Ticket) -> None:
        """A settled call no worker has begun (none will: ``begin`` checks under this lock):
        free its slot, and drop it from the waiting calls (a stuck pool must not let timed-out
        entries pile up there)."""
        if ticket.runner is None and ticket.holds_slot:
            self._free(ticket)
            with contextlib.suppress(ValueError):  # in a mailbox, not waiting here
                self._waiting.remove(ticket)

    def release(self, ticket: Ticket) -> None:
        """Free a call's slot without an outcome (idempotent)."""
        with self._lock:
            self._free(ticket)

    def cancel(self, ticket: Ticket) -> None:
        """A call that never ran: free its slot, no outcome, and a probe's slot back."""
        with self._lock:
            self._free(ticket)
            self._breaker.release(ticket.permit)

    def void(self, ticket: Ticket) -> None:
        """A call answered without an outcome while it may still run (its supervisor died, the
        registry stopped): a probe's slot back; the bulkhead slot stays until ``run`` returns."""
        with self._lock:
            self._unstarted(ticket)
            self._breaker.release(ticket.permit)

    def abandon(self, ticket: Ticket, max_zombies: int) -> Stuck:
        """A timed-out call's grace period is over: see ``Stuck``."""
        with self._lock:
            if not ticket.holds_slot:
                return Stuck.DONE
            worker = ticket.runner
            if worker is None:
                self._free(ticket)
                return Stuck.LOST
            if worker is HERE:  # its caller's own thread runs it: nothing to abandon or
                return Stuck.DONE  # replace; the slot is freed when run returns
            if self.zombies >= max_zombies:
                return Stuck.CAPPED
            ticket.abandoned = True
            self.zombies += 1
            self._members.discard(worker)
            self._free(ticket)
            return Stuck.ABANDONED

    def _free(self, ticket: Ticket) -> None:
        if not ticket.holds_slot:
            return
        ticket.holds_slot = False
        if ticket.runner is not None:
            self.running -= 1
        self._bulkhead.release()
        if self._bulkhead.in_flight == 0:
            self.idle_since = time.monotonic()
            drained = self._drained
            if drained is not None and self._drain_waiters:
                drained.notify_all()

    def wait_drained(self, timeout: float | None) -> bool:
        """Block until no call is in flight, or ``timeout`` seconds pass; True if drained."""
        with self._lock:
            drained = self._drained
            if drained is None:
                drained = self._drained = threading.Condition(self._lock)
            self._drain_waiters += 1
            try:
                return drained.wait_for(lambda: self._bulkhead.in_flight == 0, timeout)
            finally:
                self._drain_waiters -= 1

    @property
    def in_flight(self) -> int:
        return self._bulkhead.in_flight

    def replied(self, events: tuple[EventType, ...], latency: float, thrown: bool) -> None:
        """An answer was delivered: count its events and the ask's latency."""
        with self._lock:
            self.stats.replied(events, latency, thrown)

    def circuit_state(self) -> str:
        """The circuit's state now ("closed", "open", "half_open"), for a span: read without
        the lock (one attribute; at worst a transition late)."""
        return self._breaker.state.value

    def transitioned(self, transitions: tuple[Transition, ...]) -> None:
        with self._lock:
            entered = self.stats.entered
            for moved in transitions:
                entered(moved.to_state.value)

    # -- passivation (the registry's timer and the first caller after it) ----------------------

    def passivate(self, after: float) -> list[Worker] | float:
        """If the key has been idle for ``after`` seconds (nothing in flight or waiting, no
        worker starting, no zombie), mark it asleep and take every worker out of it (a new
        generation: the parked ones are returned, to be retired; one still finishing its call
        retires when it parks); else the ``time.monotonic()`` instant to look again. Decided
        under the lock admission takes, so a call admitted afterwards finds the key asleep."""
        with self._lock:
            now = time.monotonic()
            if self._bulkhead.in_flight or self._waiting or self._reserved or self.zombies:
                return now + after
            due = self.idle_since + after
            if now < due:
                return due
            self.asleep = True
            self.generation += 1
            idle, self._idle = self._idle, []
            self._members.clear()
            return idle

    def awaken(self) -> None:
        """The key has a supervisor again (its first call after passivation started one)."""
        with self._lock:
            self.asleep = False
            self.idle_since = time.monotonic()

    # -- the fleet (off every call's path: its own threads call these) -------------------------

    def fleet_take(self, tally: FleetTally) -> tuple[list[Delta], bool, int | None, int]:
        """For a flush: the counts the fleet has not seen, whether the circuit is tripped on
        this node's own window, the fleet epoch holding it (or None), and the short-circuits
        answered so far (demand for a probe)."""
        with self._lock:
            breaker = self._breaker
            deltas = tally.take(breaker.window)
            return deltas, breaker.tripped, breaker.held, self.stats.totals[_SHORT]

    def fleet_put_back(self, tally: FleetTally) -> None:
        with self._lock:
            tally.put_back()

    def fleet_follow(self, fleet: FleetState, node: str) -> tuple[Transition, ...]:
        """Adopt the fleet's circuit (see ``supervision.fleet.follow``)."""
        with self._lock:
            return follow(self._breaker, fleet, node)

    def fleet_release(self) -> None:
        """The fleet is out of reach: the breaker follows its own rules."""
        with self._lock:
            self._breaker.release_hold()

    def fleet_held(self) -> int | None:
        with self._lock:
            return self._breaker.held

    def reconfigure(self, config: CommandConfig) -> None:
        with self._lock:
            if (config.rolling_window, config.rolling_buckets) != (
                self._breaker.config.rolling_window,
                self._breaker.config.rolling_buckets,
            ):
                self.stats.resized(config.rolling_window, config.rolling_buckets, self._clock)
            self._breaker.reconfigure(config)
            self._bulkhead.resize(config.max_concurrent_requests, config.queue_size)
            if self._worker_limit > 0:  # a closed gate stays closed
                self._worker_limit = config.max_concurrent_requests

    def metrics(
        self, key: str, group: str, status: str, config: CommandConfig, now: float
    ) -> CommandMetrics:
        """A snapshot of everything the dashboard shows of the key."""
        with self._lock:
            breaker, stats = self._breaker, self.stats
            counts = stats.counters
            in_flight = self._bulkhead.in_flight
            running = self.running
            requests, errors, error_percent = breaker.health()
            totals, transitions = stats.shown()
            pool = PoolMetrics(
                name=key,
                active=running,
                queued=max(0, in_flight - running),
                pool_size=self.workers,
                largest_pool_size=stats.largest_pool,
                max_pool_size=config.max_concurrent_requests,
                completed=stats.completed,
                rolling_executed=counts.total(EXECUTED),
                rolling_max_active=max(counts.maximum(MAX_ACTIVE), running),
                rolling_rejected=counts.count(_REJECTED),
                queue_size=config.queue_size,
            )
            return CommandMetrics(
                key=key,
                group=group,
                time=now,
                state=CircuitState.OPEN if status == "down" else breaker.state,
                status=status,
                counts=counts.counts(),
                totals=totals,
                transitions=transitions,
                requests=requests,
                errors=errors,
                error_percent=error_percent,
                in_flight=in_flight,
                rolling_max_in_flight=max(counts.maximum(MAX_IN_FLIGHT), in_flight),
                zombies=self.zombies,
                latency_execute=stats.execute.snapshot(),
                latency_total=stats.total.snapshot(),
                pool=pool,
                config=config,
            )

    def health(self, key: str, status: str) -> Health:
        with self._lock:
            breaker = self._breaker
            requests, errors, error_percent = breaker.health()
            return Health(
                key=key,
                state=CircuitState.OPEN if status == "down" else breaker.state,
                requests=requests,
                errors=errors,
                error_percent=error_percent,
                in_flight=self._bulkhead.in_flight,
                workers=self.workers,
                zombies=self.zombies,
                status=status,
                fleet=self.fleet_view,
            )
