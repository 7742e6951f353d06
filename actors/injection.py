"""Fault injection, the shell: ``registry.inject(key, ...)`` and the ``Injection`` it returns.

An active injection hangs on its key's port (``port.injection``): the worker (or, under
semaphore isolation, the caller's thread) asks it, for each run, whether to fault that run
(``Injection.run``), so the fault happens where the dependency's would, and breakers, timeouts,
fallbacks, retries, metrics and the fleet see it as they would see the dependency's. With no
injection the run's path reads that one attribute, nothing more.

The draws are serialised by the injection's lock (the pure ``Injector`` holds no lock); the
latency is waited on the thread that runs the call (``await asyncio.sleep`` in a task), cut at
the call's deadline. An injection ends when ``stop()`` is called, when its context manager
exits, when its ``duration`` is over (a job on the registry's timer, which also logs it), when
another injection on the key replaces it, or when the registry is reset or shut down.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

from supervision import Clock
from supervision.checks import show
from supervision.injection import UNSET, FaultPlan, Injector

from .log import Log, ms

__all__ = ["ENV_VAR", "Injection", "Injections", "allowed_by_environment"]

#: The environment variable that allows fault injection in registries made while it is set.
ENV_VAR = "HYSTRIX_ALLOW_INJECTION"
_TRUE = frozenset({"1", "true", "yes", "on"})


def allowed_by_environment(environ: dict[str, str] | None = None) -> bool:
    """Whether ``HYSTRIX_ALLOW_INJECTION`` allows fault injection ("1", "true", "yes", "on",
    in any case); anything else, or unset, does not."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "")
    return value.strip().lower() in _TRUE


class Shown(Protocol):
    """Where a key's health and metrics read the injection's description (the key's gate)."""

    injected: str | None


class Target(Protocol):
    """What an injection needs of its key (the key's ``CommandPort``)."""

    key: str
    log: Log
    injection: Injection | None

    @property
    def gate(self) -> Shown: ...


class Timer(Protocol):
    """The registry's timer (``Watchdog``): ``job()`` at the monotonic instant ``when``."""

    def call_at(self, when: float, job: Callable[[], object]) -> None: ...


class Injection:
    """An active fault injection on one key, as ``registry.inject`` returns it.

    ``stop()`` ends it (again: nothing happens); ``with registry.inject(...):`` ends it when the
    block exits. ``active`` says whether it still faults runs; ``runs`` and ``faulted`` count the
    runs that asked it and those it faulted; ``plan`` is what it injects.
    """

    __slots__ = ("_ended", "_injector", "_lock", "_owner", "_target", "key", "plan")

    def __init__(self, target: Target, plan: FaultPlan, clock: Clock, owner: Injections) -> None:
        self.key = target.key
        self.plan = plan
        self._target = target
        self._owner = owner
        self._injector = Injector(plan, clock)
        self._lock = threading.Lock()
        #: Why it ended ("stopped", "expired", "replaced", "reset", "shutdown"), or None.
        self._ended: str | None = None

    # -- the public face ------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """True until it is stopped, replaced or over."""
        return self._ended is None and not self._injector.expired()

    @property
    def ended(self) -> str | None:
        """Why it ended: "stopped", "expired", "replaced", "reset" or "shutdown"; None while it
        is on (an injection past its duration reads "expired" once the timer has ended it)."""
        return self._ended

    @property
    def remaining(self) -> float:
        """Seconds until its duration is over (0 once it has ended)."""
        return 0.0 if self._ended is not None else self._injector.remaining()

    @property
    def runs(self) -> int:
        """Runs of the key that asked it whether to fault them while it was on."""
        return self._injector.runs

    @property
    def faulted(self) -> int:
        """Runs it faulted."""
        return self._injector.faulted

    def describe(self) -> str:
        return self.plan.describe()

    def stop(self) -> None:
        """End it now: the key's later runs are not faulted (runs already waiting out an
        injected latency finish as planned)."""
        self.end("stopped")

    def __enter__(self) -> Injection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "active" if self._ended is None else self._ended
        return f"<Injection {self.key!r} {state}: {self.plan.describe()}>"

    # -- on a run's path ------------------------------------------------------------------------

    def _draw(self) -> FaultPlan | None:
        with self._lock:
            if self._ended is not None:
                return None
            return self._injector.draw()

    def run(self, run: Callable[[], Any], deadline: float, clock: Clock = time.monotonic) -> Any:
        """Perform one run under the injection: ``run()`` as is, or the fault drawn for it
        (wait the latency, cut at ``deadline``; then raise the error, return the outcome, or
        ``run()``). A latency that reaches the deadline raises ``TimeoutError`` there."""
        fault = self._draw()
        if fault is None:
            return run()
        wait, reaches = fault.wait(deadline - clock())
        if reaches:
            while (left := deadline - clock()) > 0.0:
                time.sleep(left)
            raise _late(fault)
        if wait > 0.0:
            time.sleep(wait)
        return fault.instead(run)

    async def run_async(
        self, run: Callable[[], Any], deadline: float, clock: Clock = time.monotonic
    ) -> Any:
        """``run`` for a call run in the caller's task (``ask_async`` under semaphore
        isolation): the latency is an ``await asyncio.sleep``."""
        fault = self._draw()
        if fault is None:
            return run()
        wait, reaches = fault.wait(deadline - clock())
        if reaches:
            while (left := deadline - clock()) > 0.0:
                await asyncio.sleep(left)
            raise _late(fault)
        if wait > 0.0:
            await asyncio.sleep(wait)
        return fault.instead(run)

    # -- ending ---------------------------------------------------------------------------------

    def end(self, reason: str) -> bool:
        """End it (once: False if it had ended already), take it off its key, log it."""
        with self._lock:
            if self._ended is not None:
                return False
            self._ended = reason
        self._owner.remove(self)
        self._target.log.warning(
            "injection.ended",
            reason=reason,
            fault=self.plan.describe(),
            runs=self._injector.runs,
            faulted=self._injector.faulted,
        )
        return True

    def _expire(self) -> None:
        """The registry's timer at the end of its duration."""
        self.end("expired")


def _late(fault: FaultPlan) -> TimeoutError:
    return TimeoutError(f"injected latency of {fault.latency:g}s reached the call's deadline")


def _error_text(error: BaseException | type[BaseException] | None) -> str | None:
    if error is None:
        return None
    return error.__qualname__ if isinstance(error, type) else show(error)


class Injections:
    """A registry's active injections, one per key at most."""

    def __init__(self) -> None:
        self._active: dict[str, Injection] = {}
        self._lock = threading.Lock()

    def start(self, target: Target, plan: FaultPlan, clock: Clock, timer: Timer) -> Injection:
        """Put ``plan`` on the key (replacing the injection it had), log it, and have the
        timer end it when its duration is over."""
        injection = Injection(target, plan, clock, self)
        with self._lock:
            previous = self._active.get(target.key)
            self._active[target.key] = injection
            target.injection = injection  # from now on, its runs ask it
            target.gate.injected = plan.describe()
        if previous is not None:
            previous.end("replaced")
        target.log.warning(
            "injection.started",
            fault=plan.describe(),
            latency_ms=None if plan.latency is None else ms(plan.latency),
            error=_error_text(plan.error),
            outcome=None if plan.outcome is UNSET else show(plan.outcome),
            rate=plan.rate,
            duration_ms=ms(plan.duration),
            seed=plan.seed,
        )
        timer.call_at(injection._injector.ends_at, functools.partial(injection._expire))
        return injection

    def remove(self, injection: Injection) -> None:
        """Take an injection that ended off its key (unless another one has replaced it)."""
        with self._lock:
            target = injection._target
            if target.injection is injection:
                target.injection = None
                target.gate.injected = None
            if self._active.get(injection.key) is injection:
                del self._active[injection.key]

    def active(self) -> dict[str, Injection]:
        """The injections on now, by key."""
        with self._lock:
            return {key: i for key, i in self._active.items() if i.active}

    def end_all(self, reason: str) -> None:
        """End every injection (the registry is reset or shut down)."""
        with self._lock:
            injections = list(self._active.values())
        for injection in injections:
            injection.end(reason)
