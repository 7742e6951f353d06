"""OpenTelemetry traces: every ask is a span named after its key, a child of the caller's span,
with ``run`` executing under it; calls answered at once get a span too.

The tracer layer (``actors.otel``) is tested on its own with real replies and contexts, then end
to end through a registry: request span -> command span -> an httpx span to a local server.
Real OpenTelemetry SDK (in-memory exporter), no mocks.
"""

from __future__ import annotations

import asyncio
import contextvars
import http.server
import json
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

import httpx
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import actors.otel
from actors import (
    CircuitOpenError,
    Command,
    CommandConfig,
    CommandError,
    CommandRegistry,
    CommandTimeoutError,
    EventType,
    FallbackFailedError,
    MaxConcurrencyError,
    Reply,
)
from actors.pipeline import FanOut, Pipeline, Stage
from actors.tracing import default_tracer

ROOT = Path(__file__).resolve().parents[2]
E = EventType


# -- fixtures ------------------------------------------------------------------------------------


class Traces:
    """A tracer provider exporting to memory, and the spans it finished."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.app = self.provider.get_tracer("the application")
        self.tracer = actors.otel.tracer(self.provider)

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        (span,) = self.named(name)
        return span


@pytest.fixture(scope="module")
def module_traces() -> Iterator[Traces]:
    traces = Traces()
    HTTPXClientInstrumentor().instrument(tracer_provider=traces.provider)
    try:
        yield traces
    finally:
        HTTPXClientInstrumentor().uninstrument()
        traces.provider.shutdown()


@pytest.fixture
def traces(module_traces: Traces) -> Traces:
    module_traces.exporter.clear()
    return module_traces


def reply(
    events: Sequence[EventType], error: BaseException | None = None, value: Any = None
) -> Reply:
    return Reply("Get issues", value, error, tuple(events), 0.004)


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


def event_names(span: ReadableSpan) -> list[str]:
    return [event.name for event in span.events]


def event(span: ReadableSpan, name: str) -> dict[str, Any]:
    (found,) = [dict(e.attributes or {}) for e in span.events if e.name == name]
    return found


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# -- the tracer layer on its own -----------------------------------------------------------------


def test_a_call_span_is_a_child_of_the_callers_span_and_current_only_inside_the_runs_context(
    traces: Traces,
) -> None:
    with traces.app.start_as_current_span("request") as request:
        context = contextvars.copy_context()
        call = traces.tracer.begin("Get issues", "JIRA", 0.5, context)
        assert call is not None
        assert trace.get_current_span() is request  # the caller's own context is untouched

        def run() -> None:
            with traces.app.start_as_current_span("GET /search"):
                pass

        context.run(run)
        call.ended(reply([E.SUCCESS], value=["ACME-1"]), "closed")

    command, client, outer = (
        traces.one("Get issues"),
        traces.one("GET /search"),
        traces.one("request"),
    )
    assert parent_of(command) == span_id(outer)
    assert parent_of(client) == span_id(command)
    assert {trace_id(command), trace_id(client)} == {trace_id(outer)}
    assert command.kind is trace.SpanKind.INTERNAL


def test_a_call_with_no_span_around_it_starts_a_trace(traces: Traces) -> None:
    call = traces.tracer.begin("Get issues", "JIRA", 0.5, contextvars.copy_context())
    assert call is not None
    call.ended(reply([E.SUCCESS]), "closed")

    assert traces.one("Get issues").parent is None


def test_a_successful_call_has_its_attributes_no_events_and_no_status(traces: Traces) -> None:
    call = traces.tracer.begin("Get issues", "JIRA", 0.25, contextvars.copy_context())
    assert call is not None
    call.ended(reply([E.SUCCESS], value=[]), "closed")

    span = traces.one("Get issues")
    assert attributes(span) == {
        "hystrix.command.key": "Get issues",
        "hystrix.command.group": "JIRA",
        "hystrix.timeout_ms": 250.0,
        "hystrix.admitted": True,
        "hystrix.events": ("SUCCESS",),
        "hystrix.fallback.used": False,
        "hystrix.circuit.state": "closed",
    }
    assert span.events == ()
    assert span.status.status_code is trace.StatusCode.UNSET


def test_a_timeout_answered_by_the_fallback_is_no_error_for_the_caller(traces: Traces) -> None:
    call = traces.tracer.begin("Get issues", "JIRA", 0.25, contextvars.copy_context())
    assert call is not None
    timeout = CommandTimeoutError("timeout after 0.250s", key="Get issues")
    call.ended(reply([E.TIMEOUT, E.FALLBACK_SUCCESS], timeout, value=[]), "closed")

    span = traces.one("Get issues")
    assert event_names(span) == ["hystrix.timeout", "hystrix.fallback"]
    assert event(span, "hystrix.timeout") == {"hystrix.timeout_ms": 250.0}
    assert event(span, "hystrix.fallback") == {"hystrix.fallback.outcome": "success"}
    assert attributes(span)["hystrix.fallback.used"] is True
    assert attributes(span)["hystrix.reason"] == "timeout"
    assert attributes(span)["hystrix.events"] == ("TIMEOUT", "FALLBACK_SUCCESS")
    assert span.status.status_code is trace.StatusCode.UNSET
    assert "error.type" not in attributes(span)


def test_a_failure_with_no_fallback_is_an_error_with_runs_exception_recorded(
    traces: Traces,
) -> None:
    call = traces.tracer.begin("Get issues", "JIRA", 1.0, contextvars.copy_context())
    assert call is not None
    call.ended(reply([E.FAILURE, E.FALLBACK_MISSING], ConnectionError("refused")), "closed")

    span = traces.one("Get issues")
    assert event_names(span) == ["exception", "hystrix.fallback"]
    assert event(span, "exception")["exception.type"] == "ConnectionError"
    assert event(span, "hystrix.fallback") == {"hystrix.fallback.outcome": "missing"}
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.status.description == "ConnectionError: refused"
    assert attributes(span)["error.type"] == "ConnectionError"
    assert attributes(span)["hystrix.fallback.used"] is False


def test_a_failure_the_fallback_answered_keeps_runs_exception_without_an_error_status(
    traces: Traces,
) -> None:
    call = traces.tracer.begin("Get issues", "JIRA", 1.0, contextvars.copy_context())
    assert call is not None
    call.ended(reply([E.FAILURE, E.FALLBACK_SUCCESS], ConnectionError("refused"), []), "closed")

    span = traces.one("Get issues")
    assert event_names(span) == ["exception", "hystrix.fallback"]
    assert span.status.status_code is trace.StatusCode.UNSET
    assert "hystrix.reason" not in attributes(span)  # not the library's error: see the event


def test_a_fallback_that_raised_records_both_exceptions_and_is_an_error(traces: Traces) -> None:
    run_error = ConnectionError("refused")
    failed = FallbackFailedError("fallback failed", key="Get issues", run_error=run_error)
    failed.__cause__ = KeyError("cache")
    call = traces.tracer.begin("Get issues", "JIRA", 1.0, contextvars.copy_context())
    assert call is not None
    call.ended(reply([E.FAILURE, E.FALLBACK_FAILURE], failed), "closed")

    span = traces.one("Get issues")
    assert event_names(span) == ["exception", "hystrix.fallback", "exception"]
    recorded = [dict(e.attributes or {}).get("exception.type") for e in span.events]
    assert recorded == ["ConnectionError", None, "KeyError"]
    assert event(span, "hystrix.fallback") == {"hystrix.fallback.outcome": "failure"}
    assert span.status.status_code is trace.StatusCode.ERROR
    assert attributes(span)["error.type"] == "supervision.errors.FallbackFailedError"
    assert attributes(span)["hystrix.reason"] == "fallback failed"


def test_a_call_may_be_ended_on_another_thread(traces: Traces) -> None:
    call = traces.tracer.begin("Get issues", "JIRA", 1.0, contextvars.copy_context())
    assert call is not None
    worker = threading.Thread(target=call.ended, args=(reply([E.SUCCESS]), "half_open"))
    worker.start()
    worker.join()

    assert attributes(traces.one("Get issues"))["hystrix.circuit.state"] == "half_open"


@pytest.mark.parametrize(
    ("events", "error", "span_events", "status"),
    [
        (
            [E.SHORT_CIRCUITED, E.FALLBACK_SUCCESS],
            CircuitOpenError("circuit open", key="Get issues"),
            ["hystrix.short_circuited", "hystrix.fallback"],
            trace.StatusCode.UNSET,
        ),
        (
            [E.SHORT_CIRCUITED, E.FALLBACK_MISSING],
            CircuitOpenError("circuit open", key="Get issues"),
            ["hystrix.short_circuited", "hystrix.fallback"],
            trace.StatusCode.ERROR,
        ),
        (
            [E.THREAD_POOL_REJECTED, E.FALLBACK_SUCCESS],
            MaxConcurrencyError("max concurrency", key="Get issues"),
            ["hystrix.rejected", "hystrix.fallback"],
            trace.StatusCode.UNSET,
        ),
        (
            [E.TIMEOUT, E.FALLBACK_MISSING],
            CommandTimeoutError("no time left", key="Get issues"),
            ["hystrix.timeout", "hystrix.fallback"],
            trace.StatusCode.ERROR,
        ),
    ],
    ids=["short-circuit", "short-circuit-no-fallback", "rejected", "no-time-left"],
)
def test_a_call_answered_at_once_gets_a_span_of_its_own(
    traces: Traces,
    events: list[EventType],
    error: BaseException,
    span_events: list[str],
    status: trace.StatusCode,
) -> None:
    answered = Reply("Get issues", None, error, tuple(events), 0.002)
    with traces.app.start_as_current_span("request"):
        before = time.time_ns()
        traces.tracer.at_once("Get issues", "JIRA", 0.25, answered, "open")

    span, outer = traces.one("Get issues"), traces.one("request")
    assert parent_of(span) == span_id(outer)
    assert event_names(span) == span_events
    assert span.status.status_code is status
    assert attributes(span)["hystrix.admitted"] is False
    assert attributes(span)["hystrix.circuit.state"] == "open"
    assert attributes(span)["hystrix.reason"] == error.reason  # type: ignore[attr-defined]
    assert "exception" not in event_names(span)  # the library's own errors: no traceback
    assert span.start_time is not None and span.end_time is not None
    assert span.start_time <= before - 1_000_000  # began when the call did (its latency ago)
    if events[0] in (E.THREAD_POOL_REJECTED, E.SEMAPHORE_REJECTED):
        assert event(span, "hystrix.rejected") == {"hystrix.event": "THREAD_POOL_REJECTED"}


def test_an_unavailable_key_answered_by_its_fallback_gets_a_plain_span(traces: Traces) -> None:
    gone = CommandError("the registry is shut down", key="Get issues", reason="shutdown")
    traces.tracer.at_once(
        "Get issues", "JIRA", 1.0, reply([E.FALLBACK_SUCCESS], gone, []), "closed"
    )

    span = traces.one("Get issues")
    assert event_names(span) == ["hystrix.fallback"]
    assert attributes(span)["hystrix.reason"] == "shutdown"
    assert span.status.status_code is trace.StatusCode.UNSET


@pytest.mark.parametrize(
    "provider",
    [trace.NoOpTracerProvider(), TracerProvider(sampler=ALWAYS_OFF)],
    ids=["no-op-provider", "not-sampled"],
)
def test_a_span_that_is_not_recorded_is_neither_made_current_nor_ended(
    traces: Traces, provider: trace.TracerProvider
) -> None:
    tracer = actors.otel.tracer(provider)
    with traces.app.start_as_current_span("request") as request:
        context = contextvars.copy_context()
        assert tracer.begin("Get issues", "JIRA", 1.0, context) is None
        # run keeps the caller's span: a client's span still joins the caller's trace
        assert context.run(trace.get_current_span) is request
        tracer.at_once("Get issues", "JIRA", 1.0, reply([E.SHORT_CIRCUITED]), "open")

    assert [span.name for span in traces.spans()] == ["request"]


def test_with_no_provider_set_the_global_tracer_starts_nothing(traces: Traces) -> None:
    tracer = actors.otel.tracer()  # the global provider's: none is set in the tests
    with traces.app.start_as_current_span("request") as request:
        context = contextvars.copy_context()
        assert tracer.begin("Get issues", "JIRA", 1.0, context) is None
        assert context.run(trace.get_current_span) is request
        tracer.at_once("Get issues", "JIRA", 1.0, reply([E.SHORT_CIRCUITED]), "open")

    assert [span.name for span in traces.spans()] == ["request"]


def test_the_default_tracer_is_ours_when_opentelemetry_is_installed() -> None:
    assert isinstance(default_tracer(), actors.otel.OtelTracer)


def test_the_global_tracer_starts_no_span_until_the_application_sets_a_provider() -> None:
    done = _python(
        "import contextvars\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import"
        " InMemorySpanExporter\n"
        "from actors import CommandRegistry\n"
        "registry = CommandRegistry()  # tracer='auto': the global provider's\n"
        "assert registry.do('before', lambda: 1) == 1\n"
        "exporter = InMemorySpanExporter()\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        "trace.set_tracer_provider(provider)\n"
        "assert registry.do('after', lambda: 2) == 2\n"
        "registry.shutdown()\n"
        "names = [span.name for span in exporter.get_finished_spans()]\n"
        "assert names == ['after'], names\n"
    )
    assert done.returncode == 0, done.stderr


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_importing_actors_imports_no_opentelemetry() -> None:
    done = _python(
        "import sys, actors, actors.tracing\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "assert not loaded, loaded\n"
    )
    assert done.returncode == 0, done.stderr


def test_without_opentelemetry_there_is_no_default_tracer() -> None:
    done = _python(
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'opentelemetry':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from actors.tracing import default_tracer\n"
        "assert default_tracer() is None\n"
    )
    assert done.returncode == 0, done.stderr


# -- end to end through a registry: request -> command -> httpx ----------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        delay = float(query.get("delay", ["0"])[0])
        if delay and self.server.stopping.wait(delay):
            return
        body = json.dumps({"path": url.path, "issues": ["ACME-1", "ACME-2"]}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    stopping: threading.Event


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    """A local HTTP service answering JSON, after ``?delay=`` seconds when asked."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.stopping = threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}"
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def traced(traces: Traces) -> Iterator[CommandRegistry]:
    registry = CommandRegistry(tracer=traces.tracer)
    try:
        yield registry
    finally:
        registry.shutdown()


class Search(Command):
    """A blocking httpx GET."""

    key = "Search issues"
    group = "JIRA"
    config = CommandConfig(timeout=2.0)

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url)

    def run(self, payload: dict[str, Any]) -> list[str]:
        params = {"delay": payload.get("delay", 0)}
        issues: list[str] = self.client.get("/search", params=params, timeout=5.0).json()["issues"]
        return issues

    def fallback(self, payload: dict[str, Any], error: BaseException) -> list[str]:
        return []


class AsyncSearch(Command):
    """An ``async def run`` with httpx.AsyncClient."""

    key = "Search issues async"
    group = "JIRA"
    config = CommandConfig(timeout=2.0)

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def run(self, payload: dict[str, Any]) -> list[str]:
        async with httpx.AsyncClient(base_url=self.base_url) as client:
            response = await client.get("/search")
        issues: list[str] = response.json()["issues"]
        return issues


class GetIssue(Command):
    key = "Get issue"
    group = "JIRA"
    config = CommandConfig(timeout=2.0)

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url)

    def run(self, issue: str) -> dict[str, Any]:
        data: dict[str, Any] = self.client.get(f"/issue/{issue}").json()
        return data


def http_spans(traces: Traces) -> list[ReadableSpan]:
    return [span for span in traces.spans() if span.name.startswith("GET")]


def assert_one_trace(request: ReadableSpan, command: ReadableSpan, client: ReadableSpan) -> None:
    assert parent_of(command) == span_id(request)
    assert parent_of(client) == span_id(command)
    assert trace_id(request) == trace_id(command) == trace_id(client)


def test_a_blocking_ask_joins_request_command_and_http_spans_in_one_trace(
    traces: Traces, traced: CommandRegistry, service: str
) -> None:
    traced.register(Search, service)
    with traces.app.start_as_current_span("request"):
        assert traced.ask("Search issues", {}) == ["ACME-1", "ACME-2"]

    (client,) = http_spans(traces)
    assert_one_trace(traces.one("request"), traces.one("Search issues"), client)
    assert attributes(traces.one("Search issues"))["hystrix.events"] == ("SUCCESS",)


def test_an_async_ask_joins_the_trace_of_the_coroutine_that_awaits_it(
    traces: Traces, traced: CommandRegistry, service: str
) -> None:
    traced.register(Search, service)

    async def handle() -> Any:
        with traces.app.start_as_current_span("request"):
            return await traced.ask_async("Search issues", {})

    assert asyncio.run(handle()) == ["ACME-1", "ACME-2"]
    (client,) = http_spans(traces)
    assert_one_trace(traces.one("request"), traces.one("Search issues"), client)


def test_an_async_run_makes_its_http_span_a_child_of_the_command(
    traces: Traces, traced: CommandRegistry, service: str
) -> None:
    traced.register(AsyncSearch, service)
    with traces.app.start_as_current_span("request"):
        assert traced.ask("Search issues async", {}) == ["ACME-1", "ACME-2"]

    (client,) = http_spans(traces)
    assert_one_trace(traces.one("request"), traces.one("Search issues async"), client)


def test_a_pipeline_fan_out_puts_every_call_in_the_requests_trace(
    traces: Traces, traced: CommandRegistry, service: str
) -> None:
    traced.register(Search, service)
    traced.register(GetIssue, service)
    pipeline = Pipeline(Stage("Search issues"), FanOut("Get issue"), registry=traced)
    with traces.app.start_as_current_span("request"):
        result = pipeline.run({})
    assert result.complete, result

    request = traces.one("request")
    commands = [*traces.named("Search issues"), *traces.named("Get issue")]
    assert len(commands) == 3
    clients = http_spans(traces)
    assert len(clients) == 3
    assert {parent_of(command) for command in commands} == {span_id(request)}
    assert sorted(parent_of(client) or 0 for client in clients) == sorted(
        span_id(command) for command in commands
    )
    assert {trace_id(span) for span in traces.spans()} == {trace_id(request)}


def test_a_timed_out_calls_http_span_ends_after_the_command_span(
    traces: Traces, traced: CommandRegistry, service: str, eventually: Callable[..., None]
) -> None:
    traced.register(Search, service)
    traced.configure("Search issues", CommandConfig(timeout=0.2))
    with traces.app.start_as_current_span("request"):
        assert traced.ask("Search issues", {"delay": 0.6}) == []  # the fallback's

    eventually(lambda: len(http_spans(traces)) == 1, within=5.0, what="the late http span")
    command, (client,) = traces.one("Search issues"), http_spans(traces)
    assert_one_trace(traces.one("request"), command, client)
    assert event_names(command) == ["hystrix.timeout", "hystrix.fallback"]
    assert command.status.status_code is trace.StatusCode.UNSET
    assert command.end_time is not None and client.end_time is not None
    assert client.end_time > command.end_time  # run went on after the caller was answered


def test_a_short_circuited_ask_is_a_span_in_the_requests_trace(
    traces: Traces, traced: CommandRegistry, service: str
) -> None:
    traced.register(Search, service)
    traced.configure("Search issues", CommandConfig(force_open=True))
    with traces.app.start_as_current_span("request"):
        assert traced.ask("Search issues", {}) == []

    command = traces.one("Search issues")
    assert parent_of(command) == span_id(traces.one("request"))
    assert event_names(command) == ["hystrix.short_circuited", "hystrix.fallback"]
    assert attributes(command)["hystrix.admitted"] is False
    assert attributes(command)["hystrix.circuit.state"] == "open"
    assert http_spans(traces) == []


def test_every_attribute_and_event_is_documented() -> None:
    page = (ROOT / "docs" / "opentelemetry.md").read_text(encoding="utf-8")

    for name in [*actors.otel.ATTRIBUTES, *actors.otel.EVENTS]:
        assert f"| `{name}` |" in page, name
