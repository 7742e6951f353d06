"""The gate: a key's breaker and bulkhead behind one lock, shared by callers and actors.

Admission happens on the caller's thread, before anything is enqueued: a short-circuit or a
rejection costs no actor hop, and the supervisor's mailbox can never grow past the bulkhead.
Outcomes are recorded by whoever answers the call, before the answer is delivered, so a caller
that reads ``health`` right after its answer sees the state its call produced.
"""

from __future__ import annotations

import threading

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

__all__ = ["Gate"]

_SHORT = EventType.SHORT_CIRCUITED
_REJECTED = EventType.THREAD_POOL_REJECTED
_TIMEOUT = EventType.TIMEOUT


class Gate:
    __slots__ = ("_breaker", "_bulkhead", "_drained", "_lock")

    def __init__(self, config: CommandConfig, clock: Clock) -> None:
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._breaker = CircuitBreaker(config, clock)
        self._bulkhead = Bulkhead(config.max_concurrent_requests, config.queue_size)

    def admit(self) -> tuple[Permit | EventType, tuple[Transition, ...]]:
        """A permit, or the rejection event (SHORT_CIRCUITED / THREAD_POOL_REJECTED)."""
        with self._lock:
            permit, moved = self._breaker.try_acquire()
            if permit is None:
                self._breaker.window.add(_SHORT)
                return _SHORT, moved
            if not self._bulkhead.try_acquire():
                return _REJECTED, moved + self._breaker.record(permit, _REJECTED)
            return permit, moved

    def finish(self, permit: Permit, event: EventType) -> tuple[Transition, ...]:
        """``run`` returned with ``event``: free the slot and record the outcome."""
        with self._lock:
            self._release()
            return self._breaker.record(permit, event)

    def expire(self, permit: Permit) -> tuple[Transition, ...]:
        """The call's deadline passed: record TIMEOUT; the slot stays held until ``run`` returns."""
        with self._lock:
            return self._breaker.record(permit, _TIMEOUT)

    def release(self) -> None:
        """Free a slot without an outcome (the call's outcome was already recorded or moot)."""
        with self._lock:
            self._release()

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

    def health(self, key: str, workers: int) -> Health:
        with self._lock:
            breaker = self._breaker
            return Health(
                key=key,
                state=breaker.state,
                requests=breaker.requests(),
                errors=breaker.errors(),
                error_percent=breaker.error_percent(),
                in_flight=self._bulkhead.in_flight,
                workers=workers,
            )
