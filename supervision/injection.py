"""Fault injection (Polly's Simmy, Netflix's latency monkey), pure and clock-injected: what to
inject into a key's runs (``FaultPlan``) and which runs get it (``Injector``).

A plan adds ``latency`` before a run, raises ``error`` instead of running, or returns
``outcome`` instead of running (latency combines with either of the other two). An injector
holds one plan for ``duration`` seconds from when it was made; each run asks it for a fault
(``draw``): a share ``rate`` of the runs get one, drawn from ``random.Random(seed)``, so a seeded
injection faults the same runs every time the runs come in the same order. Nothing here sleeps
or raises on its own: the actors' shell waits the latency and applies the plan
(``actors.injection``).
"""

from __future__ import annotations

import dataclasses
import enum
import random
from collections.abc import Callable
from typing import Any, TypeVar

from .checks import MAX_SECONDS, check_number, check_seconds, show
from .clock import Clock
from .errors import CommandError

__all__ = [
    "UNSET",
    "FaultPlan",
    "InjectionDisabledError",
    "Injector",
    "Unset",
]

T = TypeVar("T")


class Unset(enum.Enum):
    """The type of ``UNSET``: no ``outcome`` was given (``None`` is an outcome)."""

    UNSET = "unset"


#: ``FaultPlan(outcome=UNSET)``: runs are not answered with a canned value.
UNSET = Unset.UNSET


class InjectionDisabledError(CommandError):
    """``inject`` was called on a registry that does not allow fault injection (the default):
    enable it with ``CommandRegistry(allow_injection=True)`` or the environment variable
    ``HYSTRIX_ALLOW_INJECTION=1`` (read when the registry is made)."""

    default_reason = "injection disabled"


def _error_name(error: BaseException | type[BaseException]) -> str:
    return error.__qualname__ if isinstance(error, type) else show(error, 60)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FaultPlan:
    """What an injection does to a faulted run, and for how long. A bad value raises
    ``ValueError`` naming the field, the allowed range and the value."""

    #: Seconds to wait before the run (then it runs, raises ``error`` or returns ``outcome``).
    latency: float | None = None
    #: An ``Exception`` instance (raised as is) or subclass (made with no arguments for each
    #: faulted run), raised instead of running.
    error: Exception | type[Exception] | None = None
    #: A value returned instead of running (``UNSET``: none; ``None`` is a value).
    outcome: Any = UNSET
    #: The share of runs faulted, 0 to 1.
    rate: float = 1.0
    #: Seconds the injection lasts (at most a day).
    duration: float = 30.0
    #: Seeds the draws of ``rate`` (``random.Random(seed)``); None: unpredictable.
    seed: int | None = None

    def __post_init__(self) -> None:
        latency, error, outcome, seed = self.latency, self.error, self.outcome, self.seed
        if latency is not None:
            check_number(
                "latency",
                latency,
                allow_low=True,
                high=MAX_SECONDS,
                unit="seconds",
                suffix=" or None",
            )
        _check_error(error)
        check_number("rate", self.rate, allow_low=True, high=1.0, suffix=" (a share of the runs)")
        check_seconds("duration", self.duration)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            msg = f"seed must be an int or None, got {show(seed)}"
            raise ValueError(msg)
        if error is not None and outcome is not UNSET:
            msg = (
                "error and outcome cannot be combined (a faulted run raises error or returns"
                f" outcome), got error={_error_name(error)} and outcome={show(outcome)}"
            )
            raise ValueError(msg)
        if latency is None and error is None and outcome is UNSET:
            msg = "an injection needs latency, error or outcome, got none of them"
            raise ValueError(msg)

    def describe(self) -> str:
        """A short line saying what is injected, as ``health(key).injection`` and the logs show
        it: "latency=0.2s, error=ConnectionError, rate=0.5, duration=30s, seed=7"."""
        parts = []
        if self.latency is not None:
            parts.append(f"latency={self.latency:g}s")
        if self.error is not None:
            parts.append(f"error={_error_name(self.error)}")
        if self.outcome is not UNSET:
            parts.append(f"outcome={show(self.outcome, 40)}")
        parts.append(f"rate={self.rate:g}")
        parts.append(f"duration={self.duration:g}s")
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        return ", ".join(parts)

    def wait(self, time_left: float) -> tuple[float, bool]:
        """The seconds a faulted run waits before it runs, given the seconds left before the
        call's deadline, and whether that wait reaches the deadline (the call then times out,
        as it would behind a dependency that slow)."""
        latency = self.latency
        if latency is None:
            return 0.0, False
        if latency >= time_left:
            return max(0.0, time_left), True
        return latency, False

    def instead(self, run: Callable[[], T]) -> T | Any:
        """What a faulted run does after its wait: raise ``error``, return ``outcome``, or run
        (``run()``) when the plan is latency alone."""
        error = self.error
        if error is not None:
            if isinstance(error, type):
                raise error()
            raise error.with_traceback(None)  # the same instance each time: no growing traceback
        if self.outcome is not UNSET:
            return self.outcome
        return run()


def _check_error(error: object) -> None:
    if error is None:
        return
    if isinstance(error, type) and issubclass(error, Exception):
        try:
            error()
        except Exception as exc:
            msg = (
                "error must be an Exception instance, or an Exception subclass that takes no"
                f" arguments, got {error.__qualname__} (calling it raised {exc!r})"
            )
            raise ValueError(msg) from None
        return
    if isinstance(error, Exception):
        return
    msg = f"error must be an Exception instance or subclass, or None, got {show(error)}"
    raise ValueError(msg)


class Injector:
    """One injection of one key: its plan for ``plan.duration`` seconds from when it was made,
    and the draws that pick the runs it faults.

    ``draw`` is called once per run (each attempt of a retried call, each run of a hedged one).
    With ``0 < rate < 1`` each call of ``draw`` takes the next ``random.Random(seed).random()``
    and faults the run when it is below ``rate``; with ``rate`` 1 every run is faulted and with
    0 none, without drawing. Not thread-safe: its caller serialises the draws.
    """

    __slots__ = ("_clock", "_random", "ends_at", "faulted", "plan", "runs", "started")

    def __init__(self, plan: FaultPlan, clock: Clock) -> None:
        self.plan = plan
        self._clock = clock
        #: When it was made, and when it ends (``clock`` instants).
        self.started = clock()
        self.ends_at = self.started + plan.duration
        self._random = random.Random(plan.seed)
        #: Runs that asked while it was on, and those it faulted.
        self.runs = 0
        self.faulted = 0

    def expired(self) -> bool:
        return self._clock() >= self.ends_at

    def remaining(self) -> float:
        """Seconds until it ends (0 once it has)."""
        return max(0.0, self.ends_at - self._clock())

    def draw(self) -> FaultPlan | None:
        """The plan if this run is faulted, else None (not drawn, or the injection is over)."""
        if self._clock() >= self.ends_at:
            return None
        self.runs += 1
        rate = self.plan.rate
        if rate >= 1.0 or (rate > 0.0 and self._random.random() < rate):
            self.faulted += 1
            return self.plan
        return None
