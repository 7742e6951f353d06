"""One key's place in the fleet, as this node's fleet actor keeps it, and the flush reply."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from supervision import CircuitState, FleetState, FleetView
from supervision.fleet import FleetTally, GarbageError, parse_int, parse_state

from ..port import CommandPort

__all__ = ["Flushed", "Seat", "key_prefix", "parse_flush"]


def key_prefix(namespace: str, key: str) -> str:
    """The prefix of every Redis key of one command: one hash tag, so one cluster slot."""
    return f"hx:{{{namespace}:{key}}}"


class Seat:
    """What the fleet actor remembers of one key between ticks."""

    __slots__ = (
        "granted",
        "next_heartbeat",
        "next_snapshot",
        "port",
        "prefix",
        "shorts",
        "tally",
        "tripped",
    )

    def __init__(self, port: CommandPort, namespace: str) -> None:
        self.port = port
        self.prefix = key_prefix(namespace, port.key)
        self.tally = FleetTally()
        #: Short-circuits answered up to the last tick (more since: there is demand to probe).
        self.shorts = 0
        #: Whether the key was tripped on its own window at the last flush.
        self.tripped = False
        #: Monotonic time by which the key is flushed even with nothing new (0: at once).
        self.next_heartbeat = 0.0
        #: Monotonic time by which the key's dashboard snapshot is written again.
        self.next_snapshot = 0.0
        #: The fleet epoch of the probe this node was granted (its verdict is reported), or -1.
        self.granted = -1


@dataclasses.dataclass(frozen=True, slots=True)
class Flushed:
    """A flush's reply, validated."""

    now_ms: int
    view: FleetView
    state: FleetState
    action: str
    garbage: bool


def parse_flush(reply: Any) -> Flushed:
    """The FLUSH script's reply (see ``scripts.FLUSH``), checked field by field."""
    if not isinstance(reply, Sequence) or isinstance(reply, str | bytes) or len(reply) != 11:
        raise GarbageError(f"a flush reply of an unexpected shape: {reply!r:.80}")
    now_ms = parse_int(reply[0], "now")
    requests = parse_int(reply[1], "requests")
    errors = parse_int(reply[2], "errors")
    nodes = parse_int(reply[3], "nodes")
    state = parse_state(
        {"state": reply[4], "epoch": reply[5], "at": reply[6], "by": reply[7], "holder": reply[8]}
    )
    action = reply[9].decode() if isinstance(reply[9], bytes) else str(reply[9])
    if action not in ("", "opened", "probe"):
        raise GarbageError(f"a flush reply's action is unknown: {action!r:.40}")
    percent = 0.0 if requests == 0 else min(100.0, 100.0 * errors / requests)
    view = FleetView(
        nodes=nodes,
        state=state.state,
        error_percent=percent if math.isfinite(percent) else 0.0,
        probe_holder=state.holder if state.state is CircuitState.HALF_OPEN else None,
        requests=requests,
        errors=errors,
        epoch=state.epoch,
    )
    return Flushed(now_ms, view, state, action, bool(parse_int(reply[10], "garbage")))
