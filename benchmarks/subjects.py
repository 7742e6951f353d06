"""What the benchmarks call: a bare pykka echo actor, our commands, and the hand-rolled
equivalents a Python user writes today (``ThreadPoolExecutor`` + ``pybreaker`` +
``future.result(timeout)`` + try/except fallback; a ``threading.BoundedSemaphore`` bulkhead).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pybreaker
import pykka

from actors import Command, CommandConfig, MaxConcurrencyError

__all__ = [
    "DEPENDENCY_SECONDS",
    "DEPENDENCY_SPANS",
    "FALLBACK",
    "BulkheadResult",
    "CachedEchoCommand",
    "EchoActor",
    "EchoCommand",
    "ForcedOpenCommand",
    "HandRolled",
    "HandRolledBulkhead",
    "Hold",
    "OVERLOAD_TIMEOUT",
    "OverloadedCommand",
    "ParkedCommand",
    "QuietOverloadedCommand",
    "SemaphoreEchoCommand",
    "SlowDependencyCommand",
    "WideFallbackOverloadedCommand",
    "call_dependency",
    "constant_fallback",
    "null_call",
]

#: What the slow dependency takes per call in the throughput benchmark.
DEPENDENCY_SECONDS = 0.01
#: The value every fallback here returns.
FALLBACK = "fallback"


class EchoActor(pykka.ThreadingActor):
    """The baseline: a bare pykka actor answering an ``ask`` with the message itself."""

    use_daemon_thread = True

    def on_receive(self, message: Any) -> Any:
        return message


class EchoCommand(Command):
    """The success path: ``run`` returns its payload."""

    key = "bench.echo"

    def run(self, payload: Any) -> Any:
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return FALLBACK


class SemaphoreEchoCommand(EchoCommand):
    """The success path under semaphore isolation: ``run`` on the caller's thread."""

    key = "bench.echo.semaphore"
    config = CommandConfig(isolation="semaphore")


class CachedEchoCommand(EchoCommand):
    """The success path with a cache key (the payload): asked again in a request scope, a cache
    hit."""

    key = "bench.echo.cached"

    def cache_key(self, payload: Any) -> Any:
        return payload


class ForcedOpenCommand(Command):
    """The short-circuit path: the circuit is forced open, every ask gets the fallback."""

    key = "bench.forced_open"
    config = CommandConfig(force_open=True)

    def run(self, payload: Any) -> Any:  # pragma: no cover - never admitted
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return FALLBACK


class ParkedCommand(Command):
    """The rejection path: one call parks in ``run`` and holds the only bulkhead slot.

    ``force_closed`` keeps the rejections (which count as errors) from opening the circuit,
    so every measured ask is a THREAD_POOL_REJECTED and not a SHORT_CIRCUITED; the long
    timeout keeps the parked call from timing out while it is measured.
    """

    key = "bench.bulkhead_full"
    config = CommandConfig(max_concurrent_requests=1, force_closed=True, timeout=300.0)

    def __init__(self, parked: threading.Event, release: threading.Event) -> None:
        self._parked = parked
        self._release = release

    def run(self, payload: Any) -> Any:
        self._parked.set()
        self._release.wait(300.0)
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return FALLBACK


#: The overload benchmark's call timeout: longer than the whole benchmark, so no held call
#: times out (and frees or records anything) while the rejections are measured.
OVERLOAD_TIMEOUT = 60.0


class Hold:
    """Keeps the overload benchmark's calls inside ``run`` until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self._entered = 0
        self._changed = threading.Condition()

    def enter(self) -> None:
        with self._changed:
            self._entered += 1
            self._changed.notify_all()

    def wait_entered(self, count: int, timeout: float) -> bool:
        """True once ``count`` calls are inside ``run``; False after ``timeout`` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: self._entered >= count, timeout)


class OverloadedCommand(Command):
    """The overload benchmark's key: its 10 slots are held in ``run`` for the whole benchmark.

    Rejections count as errors, so a ``request_volume_threshold`` no window can reach keeps the
    circuit closed: every measured ask is a bulkhead rejection (THREAD_POOL_REJECTED), never a
    short-circuit. The fallback is a constant.
    """

    key = "bench.overload"
    config = CommandConfig(
        max_concurrent_requests=10,
        timeout=OVERLOAD_TIMEOUT,
        request_volume_threshold=1_000_000_000,
    )

    def __init__(self, hold: Hold) -> None:
        self._hold = hold

    def run(self, payload: Any) -> Any:
        self._hold.enter()
        self._hold.release.wait(OVERLOAD_TIMEOUT)
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return FALLBACK


class QuietOverloadedCommand(OverloadedCommand):
    """The same under another key, whose events the suite drops in a first structlog processor."""

    key = "bench.overload.quiet"


class WideFallbackOverloadedCommand(OverloadedCommand):
    """The same with a fallback bulkhead as wide as the overload benchmark's crowd of callers.

    Each caller thread runs at most one fallback at a time, so with ``fallback_max_concurrent``
    at least the number of callers no fallback can be refused (FALLBACK_REJECTION).
    """

    key = "bench.overload.wide_fallback"
    #: As many fallback slots as the benchmark has callers (``OVERLOAD_CALLERS``).
    config = OverloadedCommand.config.replace(fallback_max_concurrent=200)


@dataclass(frozen=True, slots=True)
class BulkheadResult:
    """What the hand-rolled bulkhead answers: the fields of our ``Reply``, ``rejected`` for
    its events."""

    key: str
    value: Any
    error: BaseException | None
    rejected: bool
    latency: float


class HandRolledBulkhead:
    """The bulkhead a Python user writes without this library, for the overload benchmark.

    A ``threading.BoundedSemaphore`` of ``slots`` permits; a call that gets none is answered
    at once with ``fallback(payload, MaxConcurrencyError(...))`` in a small result object. No
    circuit, no metrics, no logging. ``fill()`` takes every permit, as held calls would.
    (The error is the library's class for brevity: a user's own would cost the same.)
    """

    def __init__(
        self,
        run: Callable[[Any], Any],
        fallback: Callable[[Any, BaseException], Any],
        *,
        key: str = "bench.hand_rolled_bulkhead",
        slots: int = 10,
    ) -> None:
        self.key = key
        self.slots = slots
        self._run = run
        self._fallback = fallback
        self._permits = threading.BoundedSemaphore(slots)

    def fill(self) -> None:
        for _ in range(self.slots):
            if not self._permits.acquire(blocking=False):
                msg = f"{self.key}: fewer than {self.slots} permits were free"
                raise RuntimeError(msg)

    def __call__(self, payload: Any) -> BulkheadResult:
        started = time.monotonic()
        if not self._permits.acquire(blocking=False):
            error = MaxConcurrencyError(f"command {self.key!r}: max concurrency", key=self.key)
            value = self._fallback(payload, error)
            return BulkheadResult(self.key, value, error, True, time.monotonic() - started)
        try:
            value = self._run(payload)
        finally:
            self._permits.release()
        return BulkheadResult(self.key, value, None, False, time.monotonic() - started)


def constant_fallback(payload: Any, error: BaseException) -> Any:
    """The hand-rolled bulkhead's fallback: the same constant as our commands'."""
    return FALLBACK


def null_call(payload: Any) -> Any:
    """The overload benchmark's floor: a Python function that returns a constant."""
    return FALLBACK


#: How long each call of the dependency really took, in ns (``time.sleep`` overshoots,
#: more so on a loaded machine): it bounds what any variant can reach.
DEPENDENCY_SPANS: list[int] = []


def call_dependency(payload: Any) -> Any:
    """The slow dependency of the throughput benchmark."""
    started = time.perf_counter_ns()
    time.sleep(DEPENDENCY_SECONDS)
    DEPENDENCY_SPANS.append(time.perf_counter_ns() - started)
    return payload


class SlowDependencyCommand(Command):
    """Our side of the throughput benchmark: a bulkhead of 10 in front of the dependency."""

    key = "bench.dependency"
    config = CommandConfig(max_concurrent_requests=10)

    def run(self, payload: Any) -> Any:
        return call_dependency(payload)

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return FALLBACK


class HandRolled:
    """What a Python user writes today without this library.

    A pool of 10 threads isolates the dependency, a ``pybreaker.CircuitBreaker`` wraps it inside
    the pool thread, the caller waits with ``future.result(timeout)`` and any exception (the
    dependency's, the breaker's ``CircuitBreakerError``, or the timeout) gives the fallback.

    With ``breaker=False`` it is the same without pybreaker: the pool alone, for context.
    """

    def __init__(
        self,
        func: Callable[[Any], Any],
        *,
        workers: int = 10,
        timeout: float = 1.0,
        breaker: bool = True,
    ) -> None:
        self._func = func
        self._timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench-handrolled")
        self._breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=5.0) if breaker else None

    def __call__(self, payload: Any) -> Any:
        try:
            if self._breaker is None:
                return self._pool.submit(self._func, payload).result(self._timeout)
            return self._pool.submit(self._breaker.call, self._func, payload).result(self._timeout)
        except Exception:
            return FALLBACK

    def close(self) -> None:
        self._pool.shutdown(wait=True)
