"""Messages: the reply every caller receives, and the notes actors send each other.

A ``Reply`` is frozen data. Failures travel inside it; ``unwrap()`` turns them into exceptions at
the edge where a caller asked for a plain value.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pykka

from supervision import CommandConfig, EventType

__all__ = ["Reconfigure", "Reply", "Retired"]

_VALUE_EVENTS = (EventType.SUCCESS, EventType.FALLBACK_SUCCESS)


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """The answer to one ask: the value of ``run``, or of ``fallback``, or an error.

    ``error`` is None when ``run`` succeeded; when the call fell back it is the reason it did
    (a ``CommandTimeoutError``, the exception ``run`` raised, ...) and ``value`` is the fallback's.
    ``events`` are Hystrix's event names in order, e.g. ``("TIMEOUT", "FALLBACK_SUCCESS")``;
    ``latency`` is the seconds from the ask to this reply.
    """

    key: str
    value: Any
    error: BaseException | None
    events: tuple[EventType, ...]
    latency: float

    @property
    def ok(self) -> bool:
        """True when the reply carries a value (from ``run`` or from the fallback)."""
        return self.events[-1] in _VALUE_EVENTS if self.events else False

    @property
    def fell_back(self) -> bool:
        """True when the value is the fallback's: the answer is degraded."""
        return EventType.FALLBACK_SUCCESS in self.events

    def unwrap(self) -> Any:
        """The value, or raise as ``ask`` would."""
        if self.ok:
            return self.value
        if self.error is None:  # pragma: no cover - every failed reply carries its error
            msg = f"reply for {self.key!r} has neither value nor error: {self.events}"
            raise RuntimeError(msg)
        raise self.error


@dataclasses.dataclass(frozen=True, slots=True)
class Retired:
    """A surplus worker tells its supervisor it has stopped (the pool was shrunk)."""

    worker: pykka.ActorRef[Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Reconfigure:
    """The registry tells a supervisor its key has a new configuration."""

    config: CommandConfig
