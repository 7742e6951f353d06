"""Restart decisions: restart intensity, backoff, and the flat table that says what to do.

Pure and clock-injected, as Erlang's supervisor keeps them: when a child dies, ``Restarts``
records it, checks the intensity (more than ``max_restarts`` within ``period`` seconds means give
up) and returns a ``Decision``; the actor performs it.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math
import random
from collections.abc import Callable

from .clock import Clock
from .policy import RestartStrategy, SupervisionPolicy

__all__ = [
    "DECISIONS",
    "Child",
    "Decision",
    "Directive",
    "Restarts",
    "backoff_delay",
    "decide",
]


class Child(enum.StrEnum):
    """What died."""

    WORKER = "worker"
    SUPERVISOR = "supervisor"


class Directive(enum.StrEnum):
    """What the parent does about it."""

    #: Start a replacement for the child that died.
    RESTART = "restart"
    #: Replace every worker of the key (one_for_all).
    RESTART_ALL = "restart_all"
    #: Restart the child after a backoff delay.
    RESTART_AFTER = "restart_after"
    #: Intensity exceeded: the supervisor stops itself and its parent decides.
    ESCALATE = "escalate"
    #: Intensity exceeded at the top: the child stays down.
    GIVE_UP = "give_up"


#: (what died, restart strategy, within intensity) -> directive. The whole policy, as data.
DECISIONS: dict[tuple[Child, RestartStrategy, bool], Directive] = {
    (Child.WORKER, RestartStrategy.ONE_FOR_ONE, True): Directive.RESTART,
    (Child.WORKER, RestartStrategy.ONE_FOR_ALL, True): Directive.RESTART_ALL,
    (Child.WORKER, RestartStrategy.ONE_FOR_ONE, False): Directive.ESCALATE,
    (Child.WORKER, RestartStrategy.ONE_FOR_ALL, False): Directive.ESCALATE,
    (Child.SUPERVISOR, RestartStrategy.ONE_FOR_ONE, True): Directive.RESTART_AFTER,
    (Child.SUPERVISOR, RestartStrategy.ONE_FOR_ALL, True): Directive.RESTART_AFTER,
    (Child.SUPERVISOR, RestartStrategy.ONE_FOR_ONE, False): Directive.GIVE_UP,
    (Child.SUPERVISOR, RestartStrategy.ONE_FOR_ALL, False): Directive.GIVE_UP,
}


def decide(child: Child, strategy: RestartStrategy, within_intensity: bool) -> Directive:
    return DECISIONS[child, strategy, within_intensity]


def backoff_delay(
    attempt: int, min_backoff: float, max_backoff: float, random_factor: float, jitter: float
) -> float:
    """Akka's backoff: ``min_backoff * 2**attempt`` capped at ``max_backoff``, stretched by
    ``random_factor * jitter`` (``jitter`` drawn from [0, 1)); ``attempt`` counts from 0."""
    if attempt < 0:
        msg = f"attempt must be >= 0, got {attempt!r}"
        raise ValueError(msg)
    try:
        grown = math.ldexp(min_backoff, attempt)  # min_backoff * 2**attempt, exactly
    except OverflowError:
        grown = math.inf
    return min(max_backoff, grown) * (1.0 + random_factor * jitter)


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What to do about one death, and why."""

    directive: Directive
    #: Seconds to wait before restarting (0 unless RESTART_AFTER).
    delay: float
    #: Restarts within the intensity period, this one included.
    restarts: int
    max_restarts: int
    period: float


class Restarts:
    """One parent's record of its children's deaths, for one level of the tree.

    ``max_restarts`` deaths within ``period`` seconds are restarted; one more is past the
    intensity (Erlang: more than MaxR restarts in MaxT seconds and the supervisor gives up).
    """

    __slots__ = ("_clock", "_deaths", "_jitter", "child", "policy")

    def __init__(
        self,
        child: Child,
        policy: SupervisionPolicy,
        clock: Clock,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.child = child
        self.policy = policy
        self._clock = clock
        self._jitter = jitter
        self._deaths: collections.deque[float] = collections.deque()

    @property
    def _limits(self) -> tuple[int, float]:
        policy = self.policy
        if self.child is Child.WORKER:
            return policy.max_restarts, policy.restart_period
        return policy.max_supervisor_restarts, policy.supervisor_restart_period

    def recent(self) -> int:
        """Deaths within the intensity period."""
        self._expire(self._clock())
        return len(self._deaths)

    def _expire(self, now: float) -> None:
        _, period = self._limits
        deaths = self._deaths
        while deaths and deaths[0] <= now - period:
            deaths.popleft()

    def died(self) -> Decision:
        """Record a death now; say what to do about it."""
        now = self._clock()
        self._expire(now)
        self._deaths.append(now)
        max_restarts, period = self._limits
        restarts = len(self._deaths)
        within = restarts <= max_restarts
        directive = decide(self.child, self.policy.strategy, within)
        delay = 0.0
        if directive is Directive.RESTART_AFTER:
            policy = self.policy
            delay = backoff_delay(
                restarts - 1,
                policy.min_backoff,
                policy.max_backoff,
                policy.random_factor,
                self._jitter(),
            )
        return Decision(directive, delay, restarts, max_restarts, period)

    def reset(self) -> None:
        """Forget past deaths (an operator revived the key)."""
        self._deaths.clear()
