"""Logging is one subscriber of the library's events. The library never configures logging.

Where the events go depends on the application, decided at each event:

* the application has configured structlog (``structlog.is_configured()``): through its
  pipeline, as ``structlog.get_logger("actors")`` with the bound context;
* it has not: to the standard library logger ``logging.getLogger("actors")``, so Python's
  defaults apply (WARNING and above to stderr, nothing below unless asked) and the application's
  ``logging`` setup (levels, handlers, propagation) works as for any library. A disabled level
  costs one ``isEnabledFor`` check: nothing is rendered.

Stable dotted event names (see docs/logging.md for the table); durations in fields are
milliseconds rounded to the microsecond (``*_ms``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import structlog

from supervision import CircuitState, Transition

__all__ = ["TRANSITION_EVENTS", "Log", "log_transitions", "logger", "ms"]

#: The standard library logger the library writes to when structlog is not configured.
LOGGER_NAME = "actors"

TRANSITION_EVENTS: dict[CircuitState, str] = {
    CircuitState.OPEN: "circuit.opened",
    CircuitState.HALF_OPEN: "circuit.half_opened",
    CircuitState.CLOSED: "circuit.closed",
}


def ms(seconds: float) -> float:
    """A duration for a log field: milliseconds, rounded to the microsecond."""
    return round(seconds * 1000.0, 3)


_METHODS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
}


def _value(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


class Log:
    """A library's logger: the application's structlog pipeline when it has one, else stdlib
    ``logging``. Immutable; ``bind`` returns a new one with more context."""

    __slots__ = ("_bound", "_context", "_std", "_struct")

    def __init__(self, name: str = LOGGER_NAME, context: dict[str, Any] | None = None) -> None:
        self._context: dict[str, Any] = context or {}
        self._std = logging.getLogger(name)
        # a lazy proxy: nothing is resolved until structlog is configured and an event comes
        self._struct: Any = structlog.get_logger(name, **self._context)
        #: The proxy resolved at the first event under structlog (as binding resolves it);
        #: ``structlog.testing.capture_logs`` still reaches it (it edits the processor list).
        self._bound: Any = None

    def bind(self, **fields: Any) -> Log:
        return Log(self._std.name, {**self._context, **fields})

    def enabled(self, level: int) -> bool:
        """Whether an event at ``level`` would be emitted (always True under structlog, whose
        own filtering the application chose)."""
        return structlog.is_configured() or self._std.isEnabledFor(level)

    def _emit(self, level: int, method: str, event: str, fields: dict[str, Any]) -> None:
        if structlog.is_configured():
            bound = self._bound
            if bound is None:
                bound = self._bound = self._struct.bind()
            getattr(bound, method)(event, **fields)
            return
        std = self._std
        if not std.isEnabledFor(level):
            return
        merged = {**self._context, **fields}
        text = " ".join([event, *(f"{k}={_value(v)}" for k, v in merged.items())])
        std.log(
            level,
            text,
            exc_info=method == "exception",
            extra={"event": event, "fields": merged},
            stacklevel=3,
        )

    def log(self, level: int, event: str, **fields: Any) -> None:
        """An event at a ``logging`` level (DEBUG, INFO, WARNING or ERROR)."""
        self._emit(level, _METHODS[level], event, fields)

    def debug(self, event: str, **fields: Any) -> None:
        # checked here first: debug events are the per-call ones, and mostly disabled
        if structlog.is_configured() or self._std.isEnabledFor(logging.DEBUG):
            self._emit(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, "error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """An error with the exception being handled."""
        self._emit(logging.ERROR, "exception", event, fields)


logger = Log()


def log_transitions(log: Log, transitions: Iterable[Transition]) -> None:
    for moved in transitions:
        log.info(
            TRANSITION_EVENTS[moved.to_state],
            state=moved.to_state.value,
            from_state=moved.from_state.value,
            requests=moved.requests,
            error_percent=round(moved.error_percent, 1),
            scope=moved.scope,
        )
