"""Logging is one subscriber of the library's events. The library never configures structlog.

Stable dotted event names (see docs/architecture.md for the table):

* ``circuit.opened``, ``circuit.half_opened``, ``circuit.closed`` (info)
* ``command.rejected``, ``command.timed_out`` (warning), ``command.short_circuited`` (debug)
* ``command.failed``, ``fallback.failed`` (error)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog

from supervision import CircuitState, Transition

__all__ = ["TRANSITION_EVENTS", "log_transitions", "logger"]

logger: Any = structlog.get_logger("actors")

TRANSITION_EVENTS: dict[CircuitState, str] = {
    CircuitState.OPEN: "circuit.opened",
    CircuitState.HALF_OPEN: "circuit.half_opened",
    CircuitState.CLOSED: "circuit.closed",
}


def log_transitions(log: Any, transitions: Iterable[Transition]) -> None:
    for moved in transitions:
        log.info(
            TRANSITION_EVENTS[moved.to_state],
            state=moved.to_state.value,
            from_state=moved.from_state.value,
            requests=moved.requests,
            error_percent=round(moved.error_percent, 1),
        )
