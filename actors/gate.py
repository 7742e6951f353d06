"""The gate: a key's breaker, bulkhead and parked workers behind one lock.

Callers, workers and the supervisor share it. Admission happens on the caller's thread before
anything is enqueued, so a short-circuit or a rejection costs no actor hop and no mailbox can grow
past the bulkhead. An admitted call takes a parked (idle) worker when there is one and goes to it
directly; otherwise it goes to the supervisor, which starts a worker or lets the call wait.
A worker that finishes takes the next waiting call itself, or parks. Outcomes are recorded by
whoever answers a call, before the answer is delivered, so a caller reading ``health`` right
after its answer sees the state its call produced.
"""

from __future__ import annotations

import collections
import threading
from typing import TYPE_CHECKING, Any, Final

import pykka

from supervision import (
    Bulkhead,
    CircuitBreaker,
    Clock,
    CommandConfig,
    EventType,
    Health,
    Permit,
    Transition,
)

if TYPE_CHECKING:
    from .ticket import Ticket

__all__ = ["RETIRE", "START", "Gate"]

Worker = pykka.ActorRef[Any]

#: ``place`` says: start a new worker for this call.
START: Final = "start"
#: ``park`` says: this worker is surplus and must stop.
RETIRE: Final = "retire"

_SHORT = EventType.SHORT_CIRCUITED
_REJECTED = EventType.THREAD_POOL_REJECTED
_TIMEOUT = EventType.TIMEOUT


class Gate:
    __slots__ = (
        "_breaker",
        "_bulkhead",
        "_drained",
        "_idle",
        "_lock",
        "_waiting",
        "_worker_limit",
        "workers",
    )

    def __init__(self, config: CommandConfig, clock: Clock) -> None:
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._breaker = CircuitBreaker(config, clock)
        self._bulkhead = Bulkhead(config.max_concurrent_requests, config.queue_size)
        self._idle: list[Worker] = []
        self._waiting: collections.deque[Ticket] = collections.deque()
        self._worker_limit = config.max_concurrent_requests
        #: Worker actors started and not retired.
        self.workers = 0

    # -- the caller's side ---------------------------------------------------------------------

    def admit(self) -> tuple[Permit | EventType, Worker | None, tuple[Transition, ...]]:
        """A permit (with a parked worker to send the call to, if any), or the rejection event
        (SHORT_CIRCUITED / THREAD_POOL_REJECTED); with the transitions admission caused."""
        with self._lock:
            permit, moved = self._breaker.try_acquire()
            if permit is None:
                self._breaker.window.add(_SHORT)
                return _SHORT, None, moved
            if not self._bulkhead.try_acquire():
                return _REJECTED, None, moved + self._breaker.record(permit, _REJECTED)
            return permit, (self._idle.pop() if self._idle else None), moved

    # -- the supervisor's side -----------------------------------------------------------------

    def place(self, ticket: Ticket) -> Worker | str | None:
        """For a call no parked worker took: a worker that parked since, ``START`` (a new
        worker may be started), or None (the call waits for a worker)."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
            if self.workers < self._worker_limit:
                self.workers += 1
                return START
            self._waiting.append(ticket)
            return None

    def next_waiting_for_new_worker(self) -> Ticket | None:
        """A waiting call, if the limit allows one more worker for it (after a resize)."""
        with self._lock:
            while self._waiting and self.workers < self._worker_limit:
                ticket = self._waiting.popleft()
                if ticket.settled:
                    self._release()
                    continue
                self.workers += 1
                return ticket
            return None

    def take_surplus(self) -> list[Worker]:
        """Parked workers beyond the limit, removed from the gate (to be stopped)."""
        with self._lock:
            surplus = []
            while self._idle and self.workers > self._worker_limit:
                surplus.append(self._idle.pop())
                self.workers -= 1
            return surplus

    def close(self) -> list[Ticket]:
        """Empty the gate: forget parked workers, admit no more; the waiting calls (still
        holding their slots) are returned to be dropped."""
        with self._lock:
            waiting = list(self._waiting)
            self._idle.clear()
            self._waiting.clear()
            self._worker_limit = 0
            return waiting

    # -- the worker's side ---------------------------------------------------------------------

    def finish(self, permit: Permit, event: EventType) -> tuple[Transition, ...]:
        """``run`` returned with ``event``: free the slot and record the outcome."""
        with self._lock:
            self._release()
            return self._breaker.record(permit, event)

    def park(self, worker: Worker) -> Ticket | str | None:
        """A worker is free: the next waiting call for it, ``RETIRE``, or None (parked)."""
        with self._lock:
            if self.workers > self._worker_limit:
                self.workers -= 1
                return RETIRE
            waiting = self._waiting
            while waiting:
                ticket = waiting.popleft()
                if not ticket.settled:
                    return ticket
                self._release()  # timed out while it waited
            self._idle.append(worker)
            return None

    # -- anyone --------------------------------------------------------------------------------

    def expire(self, permit: Permit) -> tuple[Transition, ...]:
        """The call's deadline passed: record TIMEOUT; the slot stays held until ``run`` returns."""
        with self._lock:
            return self._breaker.record(permit, _TIMEOUT)

    def release(self) -> None:
        """Free a slot without an outcome (the call's outcome was already recorded)."""
        with self._lock:
            self._release()

    def cancel(self, permit: Permit) -> None:
        """Free the slot of a call that never ran: no outcome, and a probe's slot back."""
        with self._lock:
            self._release()
            self._breaker.release(permit)

    def _release(self) -> None:
        self._bulkhead.release()
        if self._bulkhead.in_flight == 0:
            self._drained.notify_all()

    def wait_drained(self, timeout: float | None) -> bool:
        """Block until no call is in flight, or ``timeout`` seconds pass; True if drained."""
        with self._lock:
            return self._drained.wait_for(lambda: self._bulkhead.in_flight == 0, timeout)

    @property
    def in_flight(self) -> int:
        return self._bulkhead.in_flight

    def reconfigure(self, config: CommandConfig) -> None:
        with self._lock:
            self._breaker.reconfigure(config)
            self._bulkhead.resize(config.max_concurrent_requests, config.queue_size)
            self._worker_limit = config.max_concurrent_requests

    def health(self, key: str) -> Health:
        with self._lock:
            breaker = self._breaker
            return Health(
                key=key,
                state=breaker.state,
                requests=breaker.requests(),
                errors=breaker.errors(),
                error_percent=breaker.error_percent(),
                in_flight=self._bulkhead.in_flight,
                workers=self.workers,
            )
