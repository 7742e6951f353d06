"""The fleet's pure side: how a key takes part in a fleet-wide circuit, and what the fleet says.

A fleet is the replicas of one service sharing each command key's circuit through a store
(Redis, in ``actors.fleet``). Nothing here does I/O: ``FleetPolicy`` is configuration,
``FleetState`` is the fleet's circuit as the store holds it (parsed and validated from untrusted
text: JSON or integers, never anything executable), ``FleetView`` is what ``health(key).fleet``
shows, and ``FleetTally`` works out which of a node's counts the store has not seen yet.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from .breaker import CircuitBreaker, CircuitState, Transition
from .checks import show
from .fleet_policy import FLEET_MODES, FleetPolicy
from .window import RollingCounts

__all__ = [
    "FLEET_MODES",
    "FleetPolicy",
    "FleetState",
    "FleetTally",
    "FleetView",
    "GarbageError",
    "follow",
    "parse_int",
    "parse_message",
    "parse_state",
]


class GarbageError(ValueError):
    """A value read from the fleet's store is not what our protocol writes there."""


_MAX_INT = 2**63 - 1
_MAX_NODE = 256


def parse_int(raw: object, name: str, low: int = 0) -> int:
    """An integer written as decimal text (bytes or str) or an int, within [low, 2**63)."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("ascii")
        except UnicodeDecodeError:
            raise GarbageError(f"{name} is not ASCII: {show(raw)}") from None
    if isinstance(raw, str):
        text = raw.strip()
        if not (text.isdigit() or (text[:1] == "-" and text[1:].isdigit())) or len(text) > 20:
            raise GarbageError(f"{name} is not an integer: {show(raw)}")
        value = int(text)
    elif isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    else:
        raise GarbageError(f"{name} is not an integer: {show(raw)}")
    if not low <= value <= _MAX_INT:
        raise GarbageError(f"{name} is out of range [{low}, 2**63): {value}")
    return value


def _text(raw: object, name: str, limit: int = _MAX_NODE) -> str:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise GarbageError(f"{name} is not UTF-8: {show(raw)}") from None
    if not isinstance(raw, str) or len(raw) > limit:
        raise GarbageError(f"{name} is not a short string: {show(raw)}")
    return raw


@dataclasses.dataclass(frozen=True, slots=True)
class FleetState:
    """The fleet's circuit for one key, as the store holds it.

    ``epoch`` grows with every change (it fences stale writers); ``at`` is when the state began,
    in the store's clock (milliseconds); ``by`` the node that wrote it; ``holder`` the node
    holding the probe lease (half_open only)."""

    state: CircuitState = CircuitState.CLOSED
    epoch: int = 0
    at: int = 0
    by: str | None = None
    holder: str | None = None


#: The state of a key the store knows nothing about.
UNKNOWN = FleetState()


def parse_state(fields: Mapping[str, object]) -> FleetState:
    """A ``FleetState`` from the store's fields (``state``, ``epoch``, ``at``, ``by``,
    ``holder``; values as bytes, str or int). All missing: the closed state of epoch 0.
    Anything else that is not what our scripts write raises ``GarbageError``."""
    raw_state = fields.get("state")
    if raw_state is None and fields.get("epoch") is None:
        return UNKNOWN
    name = _text(raw_state, "state", 16)
    try:
        state = CircuitState(name)
    except ValueError:
        raise GarbageError(f"state is not a circuit state: {show(name)}") from None
    epoch = parse_int(fields.get("epoch"), "epoch")
    at = parse_int(fields.get("at", 0), "at")
    by = fields.get("by")
    holder = fields.get("holder")
    return FleetState(
        state=state,
        epoch=epoch,
        at=at,
        by=None if by in (None, b"", "") else _text(by, "by"),
        holder=None if holder in (None, b"", "") else _text(holder, "holder"),
    )


_MAX_MESSAGE = 4096


def parse_message(raw: object) -> tuple[str, FleetState]:
    """A broadcast (JSON text: ``key`` and the state's fields): the key and its state."""
    if isinstance(raw, bytes | bytearray):
        if len(raw) > _MAX_MESSAGE:
            raise GarbageError(f"a broadcast of {len(raw)} bytes is too long")
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise GarbageError("a broadcast is not UTF-8") from None
    if not isinstance(raw, str) or len(raw) > _MAX_MESSAGE:
        raise GarbageError(f"a broadcast is not short text: {show(raw)}")
    try:
        decoded: Any = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise GarbageError(f"a broadcast is not JSON: {show(raw)}") from None
    if not isinstance(decoded, dict):
        raise GarbageError(f"a broadcast is not a JSON object: {show(raw)}")
    key = _text(decoded.get("key"), "key", 1024)
    return key, parse_state(decoded)


def _no_constant(name: str) -> Any:
    raise ValueError(name)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FleetView:
    """What ``health(key).fleet`` shows: the fleet's circuit and window as this node last read
    them from the store."""

    #: Nodes that reported counts for the key within its rolling window (this one included).
    nodes: int = 0
    #: The fleet circuit's state ("closed", "open", "half_open").
    state: CircuitState = CircuitState.CLOSED
    #: Error percentage of the fleet's summed window.
    error_percent: float = 0.0
    #: The node holding the probe lease while half-open, else None.
    probe_holder: str | None = None
    #: Calls counted in the fleet's summed window.
    requests: int = 0
    #: Errors counted in the fleet's summed window.
    errors: int = 0
    #: The fleet state's epoch (grows with every fleet transition).
    epoch: int = 0
    #: False while this node cannot reach the store (the view is the last one read).
    connected: bool = True


#: A count the store has not seen: (seconds ago the bucket began, requests, errors).
Delta = tuple[float, int, int]


class FleetTally:
    """Which health counts of a node's window the store has not been sent yet.

    The window is read, not hooked: the call path pays nothing. Counts are remembered per bucket;
    each ``take`` returns the growth since the last one, as (age, requests, errors) with the age
    of the bucket's start on the window's clock, so the store files them by its own clock.
    A ``put_back`` returns counts that could not be sent; they ride along with the next take
    while their bucket is still in the window."""

    __slots__ = ("_pending", "_resets", "_seen", "_sent", "_window")

    def __init__(self) -> None:
        self._window: RollingCounts | None = None
        self._resets = -1
        self._seen: dict[int, tuple[int, int]] = {}
        self._pending: dict[int, tuple[int, int]] = {}
        self._sent: dict[int, tuple[int, int]] = {}

    def take(self, window: RollingCounts) -> list[Delta]:
        if window is not self._window:
            if self._window is not None and window.resets == self._resets:
                # resized (configure): the counts carried over were sent already
                self._seen = {b: (r, e) for b, r, e in window.bucket_health()}
            else:
                self._seen = {}
            self._window, self._resets = window, window.resets
        elif window.resets != self._resets:
            # the breaker restarted its window (a close): what was not sent is void too
            self._resets = window.resets
            self._seen = {}
            self._pending = {}
        now = window.now()
        width = window.bucket_width
        oldest = math.floor(now / width) - window.bucket_count + 1
        seen = self._seen
        grown: dict[int, tuple[int, int]] = {}
        for bucket, requests, errors in window.bucket_health():
            before = seen.get(bucket, (0, 0))
            dr, de = requests - before[0], errors - before[1]
            if dr > 0 or de > 0:
                grown[bucket] = (max(dr, 0), max(de, 0))
            seen[bucket] = (requests, errors)
        for bucket in [b for b in seen if b < oldest]:
            del seen[bucket]
        for bucket, (r, e) in self._pending.items():
            if bucket >= oldest:
                gr, ge = grown.get(bucket, (0, 0))
                grown[bucket] = (gr + r, ge + e)
        self._pending = {}
        self._sent = grown
        return [(max(0.0, now - bucket * width), r, e) for bucket, (r, e) in sorted(grown.items())]

    def put_back(self) -> None:
        """The counts of the last ``take`` did not reach the store: send them with the next."""
        pending = self._pending
        for bucket, (r, e) in self._sent.items():
            pr, pe = pending.get(bucket, (0, 0))
            pending[bucket] = (pr + r, pe + e)
        self._sent = {}


def follow(breaker: CircuitBreaker, fleet: FleetState, node: str) -> tuple[Transition, ...]:
    """Bring a node's breaker in line with the fleet's circuit; the transitions it made.

    * open (or half-open with another node's probe) at a newer epoch than the breaker is held
      at: open and wait for the fleet;
    * half-open with this node holding the lease, newer than the epoch held: probe;
    * closed at a newer epoch: a held circuit closes (a circuit open on the node's own window
      stays open: it is the node's own verdict);
    * no state at all (epoch 0): the store lost its data (Redis restarted empty), so the breaker
      follows its own rules again.

    Epochs only grow, so a state older than one already followed (a flush's reply overtaken by
    a broadcast) changes nothing.
    """
    if fleet.epoch == 0:
        breaker.release_hold()
        breaker.fleet_seen = 0
        return ()
    if fleet.epoch < breaker.fleet_seen:
        return ()
    breaker.fleet_seen = fleet.epoch
    held = breaker.held
    if fleet.state is CircuitState.CLOSED:
        if held is not None and fleet.epoch > held:
            return breaker.adopt_closed()
        return ()
    if held is not None and fleet.epoch <= held:
        return ()
    if fleet.state is CircuitState.HALF_OPEN and fleet.holder == node:
        if held is None:  # not following the fleet any more (lost it a moment ago): no probe
            return ()
        return breaker.grant_probe(fleet.epoch)
    # open, or another node's probe: wait for the fleet's verdict
    return breaker.adopt_open(fleet.epoch)
