"""OpenTelemetry traces and metrics (needs the ``otel`` extra: ``opentelemetry-api``).

The library only speaks the API: it never configures an SDK, an exporter or a global provider.
A ``CommandRegistry`` uses ``tracer()`` by default when this module can be imported (its
``tracer="auto"``); until the application sets a tracer provider no span is started, and once
it has, spans appear with no change here. ``register_metrics(registry)`` adds the metrics::

    registry = CommandRegistry()                          # tracer=actors.otel.tracer()
    registry = CommandRegistry(tracer=tracer(provider))   # a provider of its own
    register_metrics(registry)                            # the global meter provider

Every admitted ask is a span named after its command key, a child of the caller's current span;
``run`` executes with it current, so a client instrumented by OpenTelemetry (httpx, requests,
a database driver) makes its span a child of ours. A call answered without running
(short-circuit, rejection, unavailable key, no time left) gets a span begun and ended at once.
``ATTRIBUTES`` and ``EVENTS`` name what a span carries (``docs/opentelemetry.md`` has them).
"""

from __future__ import annotations

import contextvars
import os
import time

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from supervision import CommandError, EventType, FallbackFailedError

from .messages import Reply
from .otel_metrics import GROUP, INSTRUMENTATION_NAME, KEY, VERSION, OtelMetrics, register_metrics

__all__ = [
    "ATTRIBUTES",
    "EVENTS",
    "INSTRUMENTATION_NAME",
    "OtelCallTrace",
    "OtelMetrics",
    "OtelTracer",
    "register_metrics",
    "tracer",
]

TIMEOUT_MS = "hystrix.timeout_ms"
EVENTS_ATTRIBUTE = "hystrix.events"
FALLBACK_USED = "hystrix.fallback.used"
CIRCUIT_STATE = "hystrix.circuit.state"
REASON = "hystrix.reason"
ADMITTED = "hystrix.admitted"
ERROR_TYPE = "error.type"
EVENT = "hystrix.event"
FALLBACK_OUTCOME = "hystrix.fallback.outcome"

#: Every span attribute we set, and what it holds (the docs' table).
ATTRIBUTES: dict[str, str] = {
    KEY: "the command key (also the span's name)",
    GROUP: "the command's group",
    TIMEOUT_MS: "the call's time limit in milliseconds (the key's timeout, or for an admitted"
    " call the caller's when shorter)",
    ADMITTED: "true for a call admitted to run, false for one answered at once (short-circuit,"
    " rejection, unavailable key, no time left)",
    EVENTS_ATTRIBUTE: "Hystrix's events of the call, in order (string array)",
    FALLBACK_USED: "true when the caller's value is the fallback's",
    CIRCUIT_STATE: "the circuit's state when the call was answered",
    REASON: "the reason of the library's error behind the answer (timeout, circuit open, ...)",
    ERROR_TYPE: "the class of the error the caller got (only then)",
}

_SHORT = EventType.SHORT_CIRCUITED
_TIMEOUT = EventType.TIMEOUT
_REJECTED = frozenset({EventType.THREAD_POOL_REJECTED, EventType.SEMAPHORE_REJECTED})
_RAN_AND_RAISED = frozenset({EventType.FAILURE, EventType.BAD_REQUEST})
_FALLBACKS: dict[EventType, str] = {
    EventType.FALLBACK_SUCCESS: "success",
    EventType.FALLBACK_FAILURE: "failure",
    EventType.FALLBACK_REJECTION: "rejected",
    EventType.FALLBACK_MISSING: "missing",
}

#: Span events: name -> when it is added.
EVENTS: dict[str, str] = {
    "hystrix.timeout": f"the call passed its deadline ({TIMEOUT_MS})",
    "hystrix.short_circuited": "the circuit was open: run was not called",
    "hystrix.rejected": f"the bulkhead was full: run was not called ({EVENT})",
    "hystrix.fallback": f"the fallback was called for, with its {FALLBACK_OUTCOME}: success,"
    " failure, rejected or missing",
    "exception": "an exception raised by run or by the fallback (OpenTelemetry's own event)",
}


_GONE = object()
#: The API makes the global tracer provider from this variable on first use.
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _type_name(error: BaseException) -> str:
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


#: Each sequence of events seen, as the attribute's plain strings (a few dozen at most).
_NAMES: dict[tuple[EventType, ...], tuple[str, ...]] = {}


def _outcome(reply: Reply, circuit_state: str, attributes: dict[str, AttributeValue]) -> None:
    """The attributes the reply gives, added to ``attributes``."""
    events = reply.events
    names = _NAMES.get(events)
    if names is None:
        names = _NAMES[events] = tuple(event.value for event in events)
    attributes[EVENTS_ATTRIBUTE] = names
    attributes[FALLBACK_USED] = EventType.FALLBACK_SUCCESS in events
    attributes[CIRCUIT_STATE] = circuit_state
    error = reply.error
    if isinstance(error, CommandError):
        attributes[REASON] = error.reason
    if error is not None and not reply.ok:
        attributes[ERROR_TYPE] = _type_name(error)


def _finish(span: trace.Span, reply: Reply, timeout: float) -> None:
    """The reply's events and status on a recording span; then end it."""
    error = reply.error
    for event in reply.events:
        if event is _TIMEOUT:
            span.add_event("hystrix.timeout", {TIMEOUT_MS: _ms(timeout)})
        elif event is _SHORT:
            span.add_event("hystrix.short_circuited")
        elif event in _REJECTED:
            span.add_event("hystrix.rejected", {EVENT: event.value})
        elif event in _RAN_AND_RAISED:
            raised = error.run_error if isinstance(error, FallbackFailedError) else error
            if raised is not None:
                span.record_exception(raised)
        elif event in _FALLBACKS:
            span.add_event("hystrix.fallback", {FALLBACK_OUTCOME: _FALLBACKS[event]})
            cause = error.__cause__ if isinstance(error, FallbackFailedError) else None
            if cause is not None:  # the fallback itself raised
                span.record_exception(cause)
    if error is not None and not reply.ok:
        span.set_status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}")
    span.end()


class OtelCallTrace:
    """One admitted call's span, ended by ``ended`` when the call is answered."""

    __slots__ = ("_span", "_timeout")

    def __init__(self, span: trace.Span, timeout: float) -> None:
        self._span = span
        self._timeout = timeout

    def ended(self, reply: Reply, circuit_state: str) -> None:
        attributes: dict[str, AttributeValue] = {}
        _outcome(reply, circuit_state, attributes)
        span = self._span
        span.set_attributes(attributes)
        _finish(span, reply, self._timeout)


class OtelTracer:
    """``actors.tracing.Tracer`` on OpenTelemetry's API: one span per ask."""

    __slots__ = ("_tracer",)

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        #: None: the global provider's, looked up until the application sets one.
        self._tracer: trace.Tracer | None = (
            None
            if tracer_provider is None
            else trace.get_tracer(INSTRUMENTATION_NAME, VERSION, tracer_provider)
        )

    def _real(self) -> trace.Tracer | None:
        """The tracer, or None while no SDK is configured: the API's spans would be no-ops,
        and not asking for one keeps a call's cost to a few attribute reads."""
        tracer = self._tracer
        if tracer is None:
            # The API's global, read directly: get_tracer_provider() reads os.environ on every
            # call, which costs more than the no-op span. Should the name go away, the public
            # path below still answers.
            if getattr(trace, "_TRACER_PROVIDER", _GONE) is None and not _PROVIDER_FROM_ENV:
                return None
            provider = trace.get_tracer_provider()
            if isinstance(provider, trace.ProxyTracerProvider):
                return None  # nothing set yet: look again at the next call
            tracer = self._tracer = provider.get_tracer(INSTRUMENTATION_NAME, VERSION)
        return tracer

    def recording(self) -> bool:
        return self._real() is not None

    def begin(
        self, key: str, group: str, timeout: float, context: contextvars.Context
    ) -> OtelCallTrace | None:
        tracer = self._real()
        if tracer is None:
            return None
        # On the caller's thread, whose current context ``context`` copies: the caller's span
        # is the parent either way, and reading it here costs no ``context.run``.
        span = tracer.start_span(
            key,
            attributes={KEY: key, GROUP: group, TIMEOUT_MS: _ms(timeout), ADMITTED: True},
        )
        if not span.is_recording():
            # Not sampled (or a no-op provider): nothing to record or end. ``run`` keeps the
            # caller's current span, which carries the same trace (propagation still works).
            return None
        context.run(otel_context.attach, trace.set_span_in_context(span))
        return OtelCallTrace(span, timeout)

    def at_once(
        self, key: str, group: str, timeout: float, reply: Reply, circuit_state: str
    ) -> None:
        tracer = self._real()
        if tracer is None:
            return
        # The reply is made (its fallback has run): the span starts when the call did.
        start = time.time_ns() - int(reply.latency * 1e9)
        attributes: dict[str, AttributeValue] = {
            KEY: key,
            GROUP: group,
            TIMEOUT_MS: _ms(timeout),
            ADMITTED: False,
        }
        _outcome(reply, circuit_state, attributes)  # all known at once: one pass of the SDK
        span = tracer.start_span(key, attributes=attributes, start_time=start)
        if span.is_recording():
            _finish(span, reply, timeout)


def tracer(tracer_provider: trace.TracerProvider | None = None) -> OtelTracer:
    """A tracer for ``CommandRegistry(tracer=...)`` on ``tracer_provider`` (None: the global
    one, as set by ``opentelemetry.trace.set_tracer_provider``, even if set later; until then
    no span is started)."""
    return OtelTracer(tracer_provider)
