"""Supervision policy: how a key's actors are restarted, as plain data (Erlang's vocabulary).

A key's supervisor restarts its workers (``strategy``, ``max_restarts`` within
``restart_period``); past that intensity it gives up and escalates to the registry, which restarts
the supervisor after an Akka-style backoff (``min_backoff`` doubling up to ``max_backoff``, each
delay stretched by up to ``random_factor``), at most ``max_supervisor_restarts`` within
``supervisor_restart_period``; past that the key stays down. A worker stuck in ``run`` past its
call's deadline by ``zombie_grace`` seconds is abandoned and replaced, at most ``max_zombies`` of
them at once per key.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from .checks import check_int, check_number, check_seconds, show

__all__ = ["RestartStrategy", "SupervisionPolicy"]


class RestartStrategy(enum.StrEnum):
    """Which workers a supervisor restarts when one dies (Erlang's names)."""

    #: Only the worker that died is replaced.
    ONE_FOR_ONE = "one_for_one"
    #: Every worker of the key is replaced: idle ones at once, busy ones when their call ends.
    ONE_FOR_ALL = "one_for_all"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SupervisionPolicy:
    """How a key's workers and supervisor are restarted. Durations are float seconds."""

    #: Which workers are restarted when one dies.
    strategy: RestartStrategy = RestartStrategy.ONE_FOR_ONE
    #: Worker restarts allowed within ``restart_period`` before the supervisor escalates.
    max_restarts: int = 10
    restart_period: float = 10.0
    #: Supervisor restarts allowed within ``supervisor_restart_period`` before the key stays down.
    max_supervisor_restarts: int = 3
    supervisor_restart_period: float = 60.0
    #: The first supervisor restart waits ``min_backoff``; each further one twice as long, up to
    #: ``max_backoff``; each delay is stretched by a random share up to ``random_factor``.
    min_backoff: float = 0.1
    max_backoff: float = 10.0
    random_factor: float = 0.2
    #: Seconds a worker may stay in ``run`` past its call's deadline before it is abandoned and
    #: replaced. None: twice the command's timeout.
    zombie_grace: float | None = None
    #: Abandoned workers a key may hold at once; past it the key sheds load (its stuck workers
    #: keep their bulkhead slots, so new calls are rejected). None: ``max_concurrent_requests``.
    max_zombies: int | None = None
    #: Seconds a key may stay idle (no call) before its workers, supervisor and event loop are
    #: stopped; its breaker, windows, counts and config are kept, and the next call starts it
    #: again. None: never.
    passivate_after: float | None = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.strategy, RestartStrategy):
            try:
                object.__setattr__(self, "strategy", RestartStrategy(self.strategy))
            except Exception:  # not a strategy (even one whose __repr__ or __eq__ raises)
                allowed = ", ".join(repr(s.value) for s in RestartStrategy)
                msg = f"strategy must be one of {allowed}, got {show(self.strategy)}"
                raise ValueError(msg) from None
        check_int("max_restarts", self.max_restarts, 0, 1_000_000)
        check_seconds("restart_period", self.restart_period)
        check_int("max_supervisor_restarts", self.max_supervisor_restarts, 0, 1_000_000)
        check_seconds("supervisor_restart_period", self.supervisor_restart_period)
        check_seconds("min_backoff", self.min_backoff, allow_zero=True)
        check_seconds("max_backoff", self.max_backoff, allow_zero=True)
        if self.max_backoff < self.min_backoff:
            msg = (
                f"max_backoff must be >= min_backoff ({show(self.min_backoff)}),"
                f" got {show(self.max_backoff)}"
            )
            raise ValueError(msg)
        check_number("random_factor", self.random_factor, low=0, allow_low=True, high=10.0)
        if self.zombie_grace is not None:
            check_seconds("zombie_grace", self.zombie_grace, allow_zero=True)
        if self.passivate_after is not None:
            check_seconds("passivate_after", self.passivate_after)
        if self.max_zombies is not None:
            check_int("max_zombies", self.max_zombies, 0, 100_000)

    def grace_for(self, timeout: float) -> float:
        """Seconds past a call's deadline before its worker is abandoned."""
        return 2.0 * timeout if self.zombie_grace is None else self.zombie_grace

    def zombie_cap(self, max_concurrent_requests: int) -> int:
        """Abandoned workers allowed at once for a key of this bulkhead size."""
        return max_concurrent_requests if self.max_zombies is None else self.max_zombies

    def replace(self, **changes: Any) -> SupervisionPolicy:
        """A copy with some fields changed (validated like the original)."""
        return dataclasses.replace(self, **changes)
