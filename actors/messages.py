"""Messages: the reply every caller receives, and the notes actors send each other.

A ``Reply`` is frozen data. Failures travel inside it; ``unwrap()`` turns them into exceptions at
the edge where a caller asked for a plain value.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Generic

import pykka

from supervision import EventType, SupervisionPolicy

from .generics import ResultT

__all__ = [
    "Crash",
    "InjectedCrash",
    "Reconfigure",
    "Refill",
    "Reply",
    "Retire",
    "Retired",
    "ShutdownReport",
    "SupervisorExited",
    "WorkerExited",
]

_VALUE_EVENTS = (EventType.SUCCESS, EventType.FALLBACK_SUCCESS)


@dataclasses.dataclass(frozen=True, slots=True, init=False)
class Reply(Generic[ResultT]):
    """The answer to one ask: the value of ``run``, or of ``fallback``, or an error.

    ``error`` is None when ``run`` succeeded; when the call fell back it is the reason it did
    (a ``CommandTimeoutError``, the exception ``run`` raised, ...) and ``value`` is the fallback's.
    ``events`` are Hystrix's event names in order, e.g. ``("TIMEOUT", "FALLBACK_SUCCESS")``;
    ``latency`` is the seconds from the ask to this reply.
    """

    key: str
    value: ResultT
    error: BaseException | None
    events: tuple[EventType, ...]
    latency: float

    def __init__(
        self,
        key: str,
        value: ResultT,
        error: BaseException | None,
        events: tuple[EventType, ...],
        latency: float,
    ) -> None:
        # Every answer builds one Reply: the slots' own setters cost about a third less than
        # the object.__setattr__ calls of a frozen dataclass's generated __init__.
        _set_key(self, key)
        _set_value(self, value)
        _set_error(self, error)
        _set_events(self, events)
        _set_latency(self, latency)

    @property
    def ok(self) -> bool:
        """True when the reply carries a value (from ``run`` or from the fallback)."""
        return self.events[-1] in _VALUE_EVENTS if self.events else False

    @property
    def fell_back(self) -> bool:
        """True when the value is the fallback's: the answer is degraded."""
        return EventType.FALLBACK_SUCCESS in self.events

    def unwrap(self) -> ResultT:
        """The value, or raise as ``ask`` would."""
        if self.ok:
            return self.value
        if self.error is None:  # pragma: no cover - every failed reply carries its error
            msg = f"reply for {self.key!r} has neither value nor error: {self.events}"
            raise RuntimeError(msg)
        raise self.error


_slots: Any = vars(Reply)
_set_key = _slots["key"].__set__
_set_value = _slots["value"].__set__
_set_error = _slots["error"].__set__
_set_events = _slots["events"].__set__
_set_latency = _slots["latency"].__set__


@dataclasses.dataclass(frozen=True, slots=True)
class Retired:
    """A worker tells its supervisor it is stopping as planned (surplus after a resize, of a
    past generation, or an abandoned zombie whose ``run`` finally returned)."""

    worker: pykka.ActorRef[Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Retire:
    """A supervisor tells a worker to stop as planned (surplus, replaced, shutting down)."""


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerExited:
    """A worker tells its supervisor it died: crashed, stopped from outside, or its ``run``
    raised a BaseException. ``error`` is what killed it (None for a plain stop)."""

    worker: pykka.ActorRef[Any]
    error: BaseException | None


@dataclasses.dataclass(frozen=True, slots=True)
class Refill:
    """A stuck worker was abandoned: start a replacement (and serve the waiting calls)."""


@dataclasses.dataclass(frozen=True, slots=True)
class SupervisorExited:
    """A command supervisor tells the registry it died (crashed, stopped from outside, or gave
    up after too many worker restarts: ``escalated``)."""

    #: The worker pool it supervised (an ``actors.pool.Pool``: not named here).
    pool: Any
    supervisor: pykka.ActorRef[Any]
    error: BaseException | None
    escalated: bool


@dataclasses.dataclass(frozen=True, slots=True)
class ShutdownReport:
    """What ``CommandRegistry.shutdown`` did."""

    #: True if every call in flight finished within the timeout.
    drained: bool
    #: Calls still in flight at the timeout, answered with the shutdown error.
    answered: int
    #: Worker threads still inside ``run`` when shutdown returned: left behind (daemon threads,
    #: they end when their ``run`` returns), and reported here and in the log.
    zombies: int


@dataclasses.dataclass(frozen=True, slots=True)
class Reconfigure:
    """The registry tells a pool's supervisor its pool has a new configuration (read from the
    pool); ``supervision`` is the pool's new policy."""

    supervision: SupervisionPolicy


class InjectedCrash(Exception):  # noqa: N818 (it is not an error of the library)
    """What a crashed actor raises (``actors.testing.crash``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Crash:
    """A message that makes the receiving actor raise ``error`` from its handler (fault
    injection for tests and chaos drills: ``actors.testing``)."""

    error: Exception = dataclasses.field(default_factory=lambda: InjectedCrash("injected"))
