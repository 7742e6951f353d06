"""The gate: a key's breaker, its share of the bulkhead and its figures, behind its pool's lock.

Callers, workers and the supervisor share it. Admission happens on the caller's thread before
anything is enqueued, so a short-circuit or a rejection costs no actor hop and no mailbox can grow
past the bulkhead. An admitted call takes a parked (idle) worker of the key's pool when there is
one and goes to it directly; otherwise it goes to the pool's supervisor, which starts a worker or
lets the call wait. A worker that finishes takes the next waiting call itself, or parks. Outcomes
are recorded by whoever answers a call, before the answer is delivered, so a caller reading
``health`` right after its answer sees the state its call produced.

Every admitted call holds one slot of the key's bulkhead (and, with a shared pool, one of the
pool's: ``Ticket.holds_slot``) until its ``run`` returns, it is found never to have started, or
its stuck worker is abandoned; ``free`` is the one place slots are given back, and it gives each
ticket's back once.

The gate outlives the key's actors: workers, waiting calls and passivation belong to the pool
(``actors.pool``); breaker, windows and counts stay here throughout.
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
from supervision.hedge import HedgeBudget, HedgePolicy, hedge_delay
from supervision.metrics import EXECUTED, MAX_ACTIVE, MAX_IN_FLIGHT, CommandStats
from supervision.retry import RetryTokens
from supervision.snapshot import CommandMetrics, PoolMetrics

from .pool import RETIRE, START, Pool
from .ticket import Hedge, runs_of

if TYPE_CHECKING:
    from .ticket import Ticket

_HEDGED = (EventType.HEDGE,)

__all__ = ["HERE", "RETIRE", "START", "Gate", "Retry", "Stuck"]

Worker = pykka.ActorRef[Any]

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


class Retry(enum.StrEnum):
    """What ``Gate.retry`` decided about a failed attempt (recorded as a FAILURE either way)."""

    #: Run it again (a new breaker permit is taken, a budget token spent).
    AGAIN = "again"
    #: The key's retry budget is spent: the call ends with its last error.
    EXHAUSTED = "exhausted"
    #: The circuit no longer admits calls: the call ends with its last error.
    OPEN = "open"


class Gate:
    __slots__ = (
        "_breaker",
        "_bulkhead",
        "_clock",
        "_lock",
        "fleet_view",
        "hedge_budget",
        "injected",
        "limiter",
        "pool",
        "retry_tokens",
        "running",
        "stats",
    )

    def __init__(self, config: CommandConfig, clock: Clock, pool: Pool | None = None) -> None:
        self._clock = clock
        self._breaker = CircuitBreaker(config, clock)
        #: Rolling metrics for the dashboard (recorded under the lock).
        self.stats = CommandStats(config.rolling_window, config.rolling_buckets, clock)
        #: This key's calls inside ``run`` now (a zombie's call no longer counts).
        self.running = 0
        #: The key's adaptive concurrency limit (``CommandConfig(limit=...)``), or None.
        self.limiter = None if config.limit is None else config.limit.limiter()
        limit = self._limit_for(config)
        #: This key's own bulkhead: with a shared pool, its share of the pool's.
        self._bulkhead = Bulkhead(limit, config.queue_size)
        if pool is None:  # the key's own pool: its bulkhead and figures are the key's
            pool = Pool(
                name=None,
                bulkhead=self._bulkhead,
                stats=self.stats,
                capacity=limit,
                queue_size=config.queue_size,
                policy=config.supervision,
            )
        #: The worker pool the key's calls run on.
        self.pool = pool
        self._lock = pool.lock
        #: The fleet's view of the key, as the fleet last read it (None: no fleet).
        self.fleet_view: FleetView | None = None
        #: What the key's active fault injection does (``registry.inject``), or None.
        self.injected: str | None = None
        #: The key's retry budget (``CommandConfig(retry=RetryPolicy(budget=...))``), or None.
        self.retry_tokens = _tokens(config, clock)
        #: The key's hedge budget (``CommandConfig(hedge=HedgePolicy(...))``), or None.
        self.hedge_budget = None if config.hedge is None else HedgeBudget(config.hedge, clock)

    def _limit_for(self, config: CommandConfig) -> int:
        """The key's concurrency limit: the adaptive one's now, or ``max_concurrent_requests``."""
        limiter = self.limiter
        return config.max_concurrent_requests if limiter is None else limiter.limit

    def _sample(self, ticket: Ticket, rtt: float, dropped: bool) -> None:
        """One call's run time (or its drop) for the adaptive limit (the lock is held), with the
        calls in flight when it was admitted (as concurrency-limits records them): the
        bulkhead, and the key's own pool, follow the limit it gives."""
        limiter = self.limiter
        assert limiter is not None
        bulkhead = self._bulkhead
        before = limiter.limit
        limit = limiter.sample(rtt, max(1, ticket.inflight), dropped)
        if limit != before:
            bulkhead.resize(limit, bulkhead.queue_size)
            pool = self.pool
            if pool.name is None:
                pool.capacity = limit
                if pool.worker_limit > 0:  # a closed pool stays closed
                    pool.worker_limit = limit

    @property
    def workers(self) -> int:
        """Worker actors of the key's pool (started or starting, not yet gone)."""
        return self.pool.workers

    @property
    def zombies(self) -> int:
        """Workers of the key's pool abandoned in ``run`` that have not returned yet."""
        return self.pool.zombies

    # -- the caller's side ---------------------------------------------------------------------

    def admit(self) -> tuple[Permit | EventType, Worker | None, tuple[Transition, ...]]:
        """A permit (with a parked worker to send the call to, if any), or the rejection event
        (SHORT_CIRCUITED / THREAD_POOL_REJECTED); with the transitions admission caused."""
        with self._lock:
            permit, moved = self._breaker.try_acquire()
            if permit is None:  # counted in the metrics when answered; not a health event
                return _SHORT, None, moved
            bulkhead = self._bulkhead
            if not bulkhead.try_acquire():
                return _REJECTED, None, moved + self._breaker.record(permit, _REJECTED)
            pool = self.pool
            shared = pool.bulkhead
            if shared is not bulkhead and not shared.try_acquire():  # the shared pool is full
                bulkhead.release()
                pool.stats.rejected()
                return _REJECTED, None, moved + self._breaker.record(permit, _REJECTED)
            self.stats.counters.peak(MAX_IN_FLIGHT, bulkhead.in_flight)
            tokens = self.retry_tokens
            if tokens is not None:
                tokens.called()
            hedges = self.hedge_budget
            if hedges is not None:
                hedges.called()
            idle = pool.idle
            return permit, (idle.pop() if idle else None), moved

    def admit_here(self) -> tuple[Permit | EventType, tuple[Transition, ...]]:
        """Semaphore isolation (a key's own pool only): admit a call its caller runs itself,
        counted as running at once (its ticket's ``runner`` must be ``HERE``); or the rejection
        event (SHORT_CIRCUITED / SEMAPHORE_REJECTED: nothing waits, so ``queue_size`` is not
        used); with the transitions admission caused."""
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
            self.pool.running += 1
            tokens = self.retry_tokens
            if tokens is not None:
                tokens.called()
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
                self.free(ticket)
                return None
            pool = self.pool
            if pool.idle:
                return pool.idle.pop()
            if pool.workers < pool.worker_limit:
                pool.reserved += 1
                return START
            pool.waiting.append(ticket)
            return None

    # -- the worker's side ---------------------------------------------------------------------

    def begin(self, ticket: Ticket, worker: Worker) -> bool:
        """A worker is about to run the call: False (and the slot freed) if it was settled
        (timed out, dropped) before it got there."""
        with self._lock:
            if ticket.settled:
                self.free(ticket)
                return False
            ticket.runner = worker
            self.running += 1
            self.stats.counters.peak(MAX_ACTIVE, self.running)
            pool = self.pool
            pool.running += 1
            if pool.name is not None:
                pool.stats.counters.peak(MAX_ACTIVE, pool.running)
            return True

    def _ran(self, seconds: float) -> None:
        """``run`` returned after ``seconds`` (the lock is held): the key's figures, and a
        shared pool's."""
        self.stats.ran(seconds)
        pool = self.pool
        if pool.name is not None:
            pool.stats.ran(seconds)

    def finish(self, ticket: Ticket, event: EventType, ran: float | None) -> tuple[Transition, ...]:
        """``run`` returned with ``event`` after ``ran`` seconds (None: not timed) and its
        worker answers: free the slot, record."""
        with self._lock:
            if self.limiter is not None and ran is not None:
                if event is EventType.SUCCESS:
                    self._sample(ticket, ran, dropped=False)
                elif event is _TIMEOUT:
                    self._sample(ticket, ran, dropped=True)
            self.free(ticket)
            if ran is not None:
                self._ran(ran)
            return self._breaker.record(ticket.permit, event)

    def retry(self, ticket: Ticket, ran: float) -> tuple[Retry, tuple[Transition, ...]]:
        """An attempt failed after ``ran`` seconds and may be retried: record its FAILURE (each
        attempt is a run for the breaker, as Finagle counts them), then take a new permit and a
        budget token for the next (``Retry.AGAIN``), or say why the call ends here. The slot
        stays held either way."""
        with self._lock:
            self._ran(ran)
            breaker = self._breaker
            moved = breaker.record(ticket.permit, EventType.FAILURE)
            permit, more = breaker.try_acquire()
            moved += more
            if permit is None:
                return Retry.OPEN, moved
            tokens = self.retry_tokens
            if tokens is not None and not tokens.try_retry():
                breaker.release(permit)
                return Retry.EXHAUSTED, moved
            ticket.permit = permit
            ticket.attempts += 1
            return Retry.AGAIN, moved

    def hedge_after(self, policy: HedgePolicy) -> float | None:
        """Seconds after which a call of the key gets an extra run (see ``hedge_delay``)."""
        with self._lock:
            return hedge_delay(policy, self.stats.execute)

    def admit_hedge(self, ticket: Ticket) -> tuple[Hedge | str, Worker | None]:
        """An extra run for a call still unanswered, if the bulkhead (a running slot of its
        own: an extra run never waits) and the hedge budget allow one; with a parked worker to
        send it to, if any. Else why not: "answered", "bulkhead" or "budget"."""
        with self._lock:
            budget = self.hedge_budget
            if ticket.settled or budget is None:
                return "answered", None
            bulkhead = self._bulkhead
            if not bulkhead.try_acquire(queue=False):
                return "bulkhead", None
            pool = self.pool
            shared = pool.bulkhead
            if shared is not bulkhead and not shared.try_acquire(queue=False):
                bulkhead.release()
                return "bulkhead", None
            if not budget.try_hedge():
                bulkhead.release()
                if shared is not bulkhead:
                    shared.release()
                return "budget", None
            hedge = Hedge(ticket)
            ticket.hedges += (hedge,)
            ticket.prior += _HEDGED
            idle = pool.idle
            return hedge, (idle.pop() if idle else None)

    def defer(self, ticket: Ticket, ran: float) -> bool:
        """A run of a hedged call failed after ``ran`` seconds: True (its slot freed, nothing
        recorded) if another run of the call is still going, which answers it instead."""
        with self._lock:
            if ticket.settled:
                return False
            for other in runs_of(ticket):
                if other is not ticket and other.holds_slot and other.runner is not None:
                    self._ran(ran)
                    self.free(ticket)
                    return True
            return False

    def late(self, ticket: Ticket, ran: float | None = None) -> bool:
        """``run`` returned (after ``ran`` seconds) after someone else answered the call. True
        if its worker had been abandoned (it must end now: it was replaced); else the slot is
        freed."""
        with self._lock:
            if ran is not None:
                self._ran(ran)
            if ticket.abandoned:
                ticket.abandoned = False
                self.pool.zombies -= 1
                return True
            self.free(ticket)
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
        ``worker``, park it too (what ``Pool.park`` says comes second)."""
        with self._lock:
            if self.limiter is not None:
                self._sample(ticket, ran, dropped=False)
            self.free(ticket)
            self._ran(ran)
            self.stats.replied(_SUCCEEDED, latency, False)
            moved = self._breaker.record(ticket.permit, EventType.SUCCESS)
            return moved, None if worker is None else self.pool.park_locked(worker, generation)

    # -- anyone --------------------------------------------------------------------------------

    def expire(self, ticket: Ticket) -> tuple[Transition, ...]:
        """The call's deadline passed: record TIMEOUT. If ``run`` has begun, the slot stays
        held until it returns; a call that never reached a worker gives its slot back now."""
        with self._lock:
            if self.limiter is not None:  # a timeout is a drop (concurrency-limits' onDropped)
                self._sample(ticket, ticket.deadline - ticket.started, dropped=True)
            self._unstarted(ticket)
            return self._breaker.record(ticket.permit, _TIMEOUT)

    def _unstarted(self, ticket: Ticket) -> None:
        """A settled call no worker has begun (none will: ``begin`` checks under this lock):
        free its slot, and drop it from the waiting calls (a stuck pool must not let timed-out
        entries pile up there)."""
        if ticket.runner is None and ticket.holds_slot:
            self.free(ticket)
            with contextlib.suppress(ValueError):  # in a mailbox, not waiting here
                self.pool.waiting.remove(ticket)

    def release(self, ticket: Ticket) -> None:
        """Free a call's slot without an outcome (idempotent)."""
        with self._lock:
            self.free(ticket)

    def cancel(self, ticket: Ticket) -> None:
        """A call that never ran: free its slot, no outcome, and a probe's slot back."""
        with self._lock:
            self.free(ticket)
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
                self.free(ticket)
                return Stuck.LOST
            if worker is HERE:  # its caller's own thread runs it: nothing to abandon or
                return Stuck.DONE  # replace; the slot is freed when run returns
            pool = self.pool
            if pool.zombies >= max_zombies:
                return Stuck.CAPPED
            ticket.abandoned = True
            pool.zombies += 1
            pool.members.discard(worker)
            self.free(ticket)
            return Stuck.ABANDONED

    def free(self, ticket: Ticket) -> None:
        """Give the call's slots back, once (the lock is held): the one place it happens."""
        if not ticket.holds_slot:
            return
        ticket.holds_slot = False
        pool = self.pool
        if ticket.runner is not None:
            self.running -= 1
            pool.running -= 1
        bulkhead = self._bulkhead
        bulkhead.release()
        shared = pool.bulkhead
        if shared is not bulkhead:
            shared.release()
        if shared.in_flight == 0:
            pool.idle_since = time.monotonic()
        if pool.drain_waiters and bulkhead.in_flight == 0:
            drained = pool.drained
            if drained is not None:
                drained.notify_all()

    def wait_drained(self, timeout: float | None) -> bool:
        """Block until none of the key's calls is in flight, or ``timeout`` seconds pass; True
        if drained."""
        pool = self.pool
        with self._lock:
            drained = pool.drained
            if drained is None:
                drained = pool.drained = threading.Condition(self._lock)
            pool.drain_waiters += 1
            try:
                return drained.wait_for(lambda: self._bulkhead.in_flight == 0, timeout)
            finally:
                pool.drain_waiters -= 1

    @property
    def in_flight(self) -> int:
        return self._bulkhead.in_flight

    def replied(self, events: tuple[EventType, ...], latency: float, thrown: bool) -> None:
        """An answer was delivered: count its events and the ask's latency."""
        with self._lock:
            self.stats.replied(events, latency, thrown)

    def collapsed(self, requests: int) -> None:
        """A collapser asked a batch of ``requests`` requests of this key."""
        with self._lock:
            self.stats.collapsed(requests)

    def circuit_state(self) -> str:
        """The circuit's state now ("closed", "open", "half_open"), for a span: read without
        the lock (one attribute; at worst a transition late)."""
        return self._breaker.state.value

    def transitioned(self, transitions: tuple[Transition, ...]) -> None:
        with self._lock:
            entered = self.stats.entered
            for moved in transitions:
                entered(moved.to_state.value)

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
            if config.limit is None:
                self.limiter = None
            elif self.limiter is None or self.limiter.config != config.limit:
                self.limiter = config.limit.limiter()
            limit = self._limit_for(config)
            self._bulkhead.resize(limit, config.queue_size)
            hedge = config.hedge
            if hedge is None:
                self.hedge_budget = None
            elif self.hedge_budget is None:
                self.hedge_budget = HedgeBudget(hedge, self._clock)
            else:
                self.hedge_budget.reconfigure(hedge)
            budget = None if config.retry is None else config.retry.budget
            tokens = self.retry_tokens
            if budget is None:
                self.retry_tokens = None
            elif tokens is None:
                self.retry_tokens = RetryTokens(budget, self._clock)
            else:
                tokens.reconfigure(budget)
            pool = self.pool
            if pool.name is None:  # the key's own pool follows the key's configuration
                pool.capacity = limit
                pool.queue_size = config.queue_size
                pool.policy = config.supervision
                if pool.worker_limit > 0:  # a closed pool stays closed
                    pool.worker_limit = limit

    def metrics(
        self,
        key: str,
        group: str,
        status: str,
        config: CommandConfig,
        now: float,
        *,
        cache_enabled: bool = False,
    ) -> CommandMetrics:
        """A snapshot of everything the dashboard shows of the key."""
        with self._lock:
            breaker, stats = self._breaker, self.stats
            counts = stats.counters
            in_flight = self._bulkhead.in_flight
            requests, errors, error_percent = breaker.health()
            totals, transitions = stats.shown()
            shared = self.pool
            # the key's own pool: its stats are the key's
            pool_stats, pool_running = shared.stats, shared.running
            pool_counts = pool_stats.counters
            pool = PoolMetrics(
                name=key if shared.name is None else shared.name,
                active=pool_running,
                queued=max(0, shared.bulkhead.in_flight - pool_running),
                pool_size=shared.workers,
                largest_pool_size=pool_stats.largest_pool,
                max_pool_size=shared.capacity,
                completed=pool_stats.completed,
                rolling_executed=pool_counts.total(EXECUTED),
                rolling_max_active=max(pool_counts.maximum(MAX_ACTIVE), pool_running),
                rolling_rejected=pool_counts.count(_REJECTED),
                queue_size=shared.queue_size,
                rolling_window=(config.rolling_window if shared.name is None else shared.shape[0]),
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
                zombies=self.pool.zombies,
                latency_execute=stats.execute.snapshot(),
                latency_total=stats.total.snapshot(),
                pool=pool,
                config=config,
                limit=self._bulkhead.max_concurrent,
                injection=self.injected,
                cache_enabled=cache_enabled,
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
                workers=self.pool.workers,
                zombies=self.pool.zombies,
                status=status,
                fleet=self.fleet_view,
                limit=self._bulkhead.max_concurrent,
                injection=self.injected,
            )


def _tokens(config: CommandConfig, clock: Clock) -> RetryTokens | None:
    """The retry budget's state for a key so configured, else None."""
    retry = config.retry
    if retry is None or retry.budget is None:
        return None
    return RetryTokens(retry.budget, clock)
