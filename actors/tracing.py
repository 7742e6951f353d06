"""Tracing hooks: what the call path tells a tracer, as two small protocols.

The port calls a ``Tracer`` on every ask: ``begin`` when a call is admitted (then ``ended`` on
the ``CallTrace`` it returned, once the call is answered), or ``at_once`` for a call answered
without running. Nothing here imports OpenTelemetry: ``actors.otel`` implements these protocols
with it (the ``otel`` extra), and ``default_tracer`` finds that implementation when it is
installed.
"""

from __future__ import annotations

import contextvars
from typing import Protocol

from .messages import Reply

__all__ = ["CallTrace", "Tracer", "default_tracer"]


class CallTrace(Protocol):
    """The telemetry of one admitted call, begun at admission."""

    def ended(self, reply: Reply, circuit_state: str) -> None:
        """The call was answered (any thread): record events/attributes, set status, end the
        span."""


class Tracer(Protocol):
    """What the port tells about each call; an implementation must be cheap and never raise."""

    def begin(
        self, key: str, group: str, timeout: float, context: contextvars.Context
    ) -> CallTrace | None:
        """An admitted call, on the caller's thread. ``context`` is a copy of the caller's
        context (``contextvars.copy_context()``) in which ``run`` will execute later on a
        worker: start the span as a child of the span current in the caller's context, and make
        it current inside ``context``, never in the caller's own context. None: nothing to end
        (the span is not recorded)."""

    def recording(self) -> bool:
        """Whether a span begun now would be recorded (False while no SDK is configured): the
        registry asks before it gathers what ``at_once`` takes."""

    def at_once(
        self, key: str, group: str, timeout: float, reply: Reply, circuit_state: str
    ) -> None:
        """A call answered without running (short-circuit, rejection, unavailable key, deadline
        already passed), on the caller's thread: a span begun and ended at once, child of the
        caller's current span."""


def default_tracer() -> Tracer | None:
    """The OpenTelemetry tracer (``actors.otel.tracer()``, through the global tracer provider)
    when ``opentelemetry-api`` is installed, else None. Imports OpenTelemetry only when called."""
    try:
        from . import otel  # noqa: PLC0415 - optional: only with the otel extra
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] == "opentelemetry":
            return None
        raise
    return otel.tracer()
