"""A snapshot of one command key's health, as ``health(key)`` returns it."""

from __future__ import annotations

import dataclasses

from .breaker import CircuitState
from .fleet import FleetView

__all__ = ["Health"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    """What a key looks like right now, over its rolling window."""

    key: str
    #: "closed", "open" or "half_open" (a str-valued enum: compares equal to the string).
    state: CircuitState
    #: Calls counted towards health in the window (SHORT_CIRCUITED and BAD_REQUEST are not).
    requests: int
    #: FAILURE + TIMEOUT + rejections in the window.
    errors: int
    error_percent: float
    #: Calls admitted whose ``run`` has not returned yet (running, queued or timed out).
    in_flight: int
    #: Worker actors alive for this key (started lazily, up to ``max_concurrent_requests``).
    workers: int = 0
    #: Workers abandoned while stuck in ``run`` past their deadline, not yet returned.
    zombies: int = 0
    #: "up", "restarting" (its supervisor died and is being restarted) or "down" (restarts
    #: exhausted: every call is answered "unavailable" until ``restart(key)``).
    status: str = "up"
    #: The fleet's view of the key (``CommandRegistry(fleet=...)``): nodes reporting, the
    #: fleet circuit's state and error percentage, the probe lease's holder. None without a
    #: fleet, with ``FleetPolicy(mode="off")``, or before the key's first exchange with it.
    fleet: FleetView | None = None
    #: The key's concurrency limit now: ``max_concurrent_requests``, or where its adaptive
    #: ``limit`` (``CommandConfig(limit=AdaptiveLimit(...))``) has moved it.
    limit: int = 0
    #: The key's active fault injection (``registry.inject``), described ("error=ConnectionError,
    #: rate=1, duration=30s"), or None.
    injection: str | None = None
