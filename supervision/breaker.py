"""The circuit breaker: a state machine over a rolling health window, with an injected clock.

The legal transitions are data (``TRANSITIONS``); ``CircuitBreaker._transition`` performs every
one of them, checks it is legal and records one ``Transition`` event. Decisions return data:
the caller (an actor) logs and publishes the transitions.

Semantics (Hystrix's, with its known defects fixed):

* closed: every call is admitted; after each outcome the circuit trips when the window holds at
  least ``request_volume_threshold`` calls and the error percentage is at or above
  ``error_percent_threshold`` (no 500 ms snapshot lag).
* open: calls are short-circuited until ``sleep_window`` has passed; then the next call moves the
  circuit to half_open and is admitted as a probe.
* half_open: at most ``half_open_probes`` probes are admitted; when that many have succeeded the
  circuit closes (and the window restarts); a probe's failure, timeout or rejection re-opens it
  and restarts the sleep window. Only a probe's outcome moves a half-open circuit: a success from
  a call admitted before the circuit opened does not close it (hystrix-go's defect), and a
  BAD_REQUEST says nothing about the dependency's health (Hystrix's defect): the probe's slot is
  simply given back.
* ``force_open`` rejects everything (and wins); ``force_closed`` admits everything and never trips.

With a fleet (``actors.fleet``), the breaker can also be *held* by the fleet's circuit: it adopts
a fleet-open state (``adopt_open``), then short-circuits past its own sleep window until the fleet
grants it the probe (``grant_probe``) or closes (``adopt_closed``); losing the fleet
(``release_hold``) hands it back to its own rules. Transitions while held, and adoptions, carry
``scope="fleet"``. OPEN -> CLOSED (``FLEET_TRANSITIONS``) is legal only as an adoption: another
node's probe succeeded.
"""

from __future__ import annotations

import dataclasses
import enum

from .clock import Clock
from .config import CommandConfig
from .events import ERROR_EVENTS, EventType
from .window import RollingCounts

__all__ = [
    "CircuitBreaker",
    "CircuitState",
    "FLEET_TRANSITIONS",
    "IllegalTransitionError",
    "NORMAL",
    "Permit",
    "TRANSITIONS",
    "Transition",
]


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


TRANSITIONS: frozenset[tuple[CircuitState, CircuitState]] = frozenset(
    {
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    }
)

#: The transitions a fleet adoption may also make: OPEN -> CLOSED when another node's probe
#: closed the fleet's circuit.
FLEET_TRANSITIONS: frozenset[tuple[CircuitState, CircuitState]] = TRANSITIONS | {
    (CircuitState.OPEN, CircuitState.CLOSED)
}


class IllegalTransitionError(RuntimeError):
    """A transition outside ``TRANSITIONS`` was attempted: a bug in the breaker."""


@dataclasses.dataclass(frozen=True, slots=True)
class Transition:
    """One change of state, as data: logged and published by the owning actor."""

    from_state: CircuitState
    to_state: CircuitState
    at: float
    requests: int
    error_percent: float
    #: "local" (this node's own window or probe) or "fleet" (an adopted fleet state, or a
    #: move while the fleet held the circuit).
    scope: str = "local"
    #: With scope "fleet": the fleet epoch the circuit was held at (else -1).
    fleet_epoch: int = -1


@dataclasses.dataclass(frozen=True, slots=True)
class Permit:
    """What admission granted: a normal call, or a probe of half-open ``epoch``."""

    probe: bool = False
    epoch: int = -1


#: The permit every non-probe call shares (no allocation on the hot path).
NORMAL = Permit()


class CircuitBreaker:
    """Closed / open / half_open over a rolling window. Not thread-safe: one owner at a time."""

    __slots__ = (
        "_clock",
        "_config",
        "_epoch",
        "_fleet_epoch",
        "_opened_at",
        "_probe_successes",
        "_probes_admitted",
        "_state",
        "fleet_seen",
        "window",
    )

    def __init__(self, config: CommandConfig, clock: Clock) -> None:
        self._clock = clock
        self._config = config
        self._state = CircuitState.CLOSED
        self._epoch = 0
        self._opened_at = 0.0
        self._probes_admitted = 0
        self._probe_successes = 0
        self._fleet_epoch: int | None = None
        #: The newest fleet epoch this breaker has followed (older states are stale).
        self.fleet_seen = 0
        self.window = RollingCounts(config.rolling_window, config.rolling_buckets, clock)

    # -- reading -------------------------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The state users see: forced open reads as open, forced closed as closed (as in
        Hystrix's ``isOpen``)."""
        if self._config.force_open:
            return CircuitState.OPEN
        if self._config.force_closed:
            return CircuitState.CLOSED
        return self._state

    @property
    def config(self) -> CommandConfig:
        return self._config

    def requests(self) -> int:
        return self.window.health()[0]

    def errors(self) -> int:
        return self.window.health()[1]

    def error_percent(self) -> float:
        total, errors = self.window.health()
        return 0.0 if total == 0 else 100.0 * errors / total

    def health(self) -> tuple[int, int, float]:
        """``(requests(), errors(), error_percent())`` from one read of the window."""
        total, errors = self.window.health()
        return total, errors, 0.0 if total == 0 else 100.0 * errors / total

    # -- deciding ------------------------------------------------------------------------------

    def try_acquire(self) -> tuple[Permit | None, tuple[Transition, ...]]:
        """Admit a call (a ``Permit``) or short-circuit it (``None``); with any transition."""
        config = self._config
        if config.force_open:
            return None, ()
        state = self._state
        if config.force_closed or state is CircuitState.CLOSED:
            return NORMAL, ()
        if state is CircuitState.OPEN:
            if (
                self._fleet_epoch is not None
                or self._clock() - self._opened_at < config.sleep_window
            ):
                return None, ()
            moved = self._transition(CircuitState.HALF_OPEN)
            self._probes_admitted = 1
            return Permit(probe=True, epoch=self._epoch), (moved,)
        if self._probes_admitted < config.half_open_probes:
            self._probes_admitted += 1
            return Permit(probe=True, epoch=self._epoch), ()
        return None, ()

    def record(self, permit: Permit, event: EventType) -> tuple[Transition, ...]:
        """Record one call's outcome and apply what it implies for the circuit."""
        self.window.add(event)
        if permit.probe and permit.epoch == self._epoch:
            return self._probe_outcome(event)
        # A normal call (or a probe of an earlier half-open period, whose verdict is stale):
        # it moves only a closed circuit, and any outcome may find the window trippable.
        if self._state is CircuitState.CLOSED and not self._config.force_closed:
            total, errors = self.window.health()
            config = self._config
            if (
                total > 0
                and total >= config.request_volume_threshold
                and 100.0 * errors >= config.error_percent_threshold * total
            ):
                return (self._open(),)
        return ()

    def _probe_outcome(self, event: EventType) -> tuple[Transition, ...]:
        # The epoch matched, so the circuit is still in the half-open period that admitted it.
        if event is EventType.SUCCESS:
            self._probe_successes += 1
            if self._probe_successes >= self._config.half_open_probes:
                moved = self._transition(CircuitState.CLOSED)
                self.window.reset()
                return (moved,)
            return ()
        if event in ERROR_EVENTS:
            return (self._open(),)
        # BAD_REQUEST (or anything else neutral): no verdict; give the probe's slot back.
        self._probes_admitted -= 1
        return ()

    def release(self, permit: Permit) -> None:
        """A permit whose call never ran gives no verdict: a probe gives its slot back, so
        another probe can be admitted. (A matching epoch means the circuit is still in the
        half-open period that admitted it.)"""
        if permit.probe and permit.epoch == self._epoch and self._probes_admitted > 0:
            self._probes_admitted -= 1

    # -- the fleet -----------------------------------------------------------------------------

    @property
    def held(self) -> int | None:
        """The fleet epoch holding this circuit, or None (the breaker follows its own rules)."""
        return self._fleet_epoch

    @property
    def tripped(self) -> bool:
        """Open or half-open on this node's own window (not because the fleet said so)."""
        return self._fleet_epoch is None and self.state is not CircuitState.CLOSED

    def adopt_open(self, fleet_epoch: int) -> tuple[Transition, ...]:
        """The fleet's circuit opened (at ``fleet_epoch``): open, and wait for the fleet."""
        self._fleet_epoch = fleet_epoch
        if self._state is CircuitState.OPEN:
            return ()
        moved = self._transition(CircuitState.OPEN, "fleet")
        self._opened_at = moved.at
        return (moved,)

    def grant_probe(self, fleet_epoch: int) -> tuple[Transition, ...]:
        """This node won the fleet's probe lease at ``fleet_epoch``: go half-open and admit
        the probe(s). Nothing happens unless the fleet holds the circuit open."""
        if self._fleet_epoch is None or self._state is not CircuitState.OPEN:
            return ()
        self._fleet_epoch = fleet_epoch
        return (self._transition(CircuitState.HALF_OPEN, "fleet"),)

    def adopt_closed(self) -> tuple[Transition, ...]:
        """The fleet's circuit closed: a held circuit closes with it (window restarted)."""
        if self._fleet_epoch is None:
            return ()
        if self._state is CircuitState.CLOSED:
            self._fleet_epoch = None
            return ()
        moved = self._transition(CircuitState.CLOSED, "fleet")
        self.window.reset()
        return (moved,)

    def release_hold(self) -> None:
        """The fleet is out of reach: follow this node's own rules again (an open circuit
        probes after its own sleep window, counted from when it opened)."""
        self._fleet_epoch = None

    def reconfigure(self, config: CommandConfig) -> None:
        """Take new thresholds; the state, the epoch and the counts are kept."""
        if (config.rolling_window, config.rolling_buckets) != (
            self._config.rolling_window,
            self._config.rolling_buckets,
        ):
            self.window = self.window.resized(config.rolling_window, config.rolling_buckets)
        self._config = config

    # -- moving --------------------------------------------------------------------------------

    def _open(self) -> Transition:
        moved = self._transition(CircuitState.OPEN)
        self._opened_at = moved.at
        return moved

    def _transition(self, to_state: CircuitState, scope: str = "local") -> Transition:
        from_state = self._state
        legal = FLEET_TRANSITIONS if scope == "fleet" else TRANSITIONS
        if (from_state, to_state) not in legal:
            msg = f"illegal circuit transition {from_state.value} -> {to_state.value}"
            raise IllegalTransitionError(msg)
        fleet_epoch = self._fleet_epoch
        if fleet_epoch is not None:
            scope = "fleet"
        moved = Transition(
            from_state=from_state,
            to_state=to_state,
            at=self._clock(),
            requests=self.requests(),
            error_percent=self.error_percent(),
            scope=scope,
            fleet_epoch=-1 if fleet_epoch is None else fleet_epoch,
        )
        self._state = to_state
        if to_state is CircuitState.CLOSED:
            self._fleet_epoch = None
        self._epoch += 1
        self._probes_admitted = 0
        self._probe_successes = 0
        return moved
