"""One request, one trace: a web service asks "Get all Issues" of a fake JIRA, traced end to end.

The script is the whole story in one process: a fake JIRA (``fake_jira.py``), a small WSGI
service in front of it whose ``GET /issues?project=ACME`` asks the command, and a client that
calls the service once. The application configures OpenTelemetry's SDK (the library never does):
a console exporter prints every span as JSON as it ends, and httpx is instrumented, so the trace
reads::

    GET                 the client's httpx span (it sends the traceparent header)
      GET /issues       the service's span (continues the trace from the header)
        Get all Issues  the command's span (hystrix.* attributes and events)
          GET           the command's httpx span to JIRA (run executes under our span)

    python examples/traced_service.py           # JIRA healthy: SUCCESS
    python examples/traced_service.py --down    # JIRA answers 503: FAILURE, then the fallback

Exits 1 unless the four spans form that one trace: the example checks itself.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
from fake_jira import SEARCH_PATH, FakeJira, Mode
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from actors import Command, CommandConfig, CommandRegistry

KEY = "Get all Issues"


class GetAllIssues(Command):
    """Search a project's issues in JIRA over httpx; the empty list when JIRA fails."""

    key = KEY
    group = "JIRA"
    config = CommandConfig(timeout=2.0)

    def __init__(self, jira_url: str) -> None:
        self.client = httpx.Client(base_url=jira_url)  # one per worker: each has its instance

    def run(self, payload: dict[str, str]) -> list[str]:
        params = {"jql": f"project={payload['project']}"}
        response = self.client.get(SEARCH_PATH, params=params, timeout=self.time_left())
        response.raise_for_status()
        return [issue["key"] for issue in response.json()["issues"]]

    def fallback(self, payload: dict[str, str], error: BaseException) -> list[str]:
        return []


# -- the service: plain WSGI, its own server span ---------------------------------------------


def service(registry: CommandRegistry) -> Callable[..., Iterable[bytes]]:
    """``GET /issues?project=X`` -> the issue keys, one a line."""
    tracer = trace.get_tracer("traced_service")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = {
            name[5:].replace("_", "-").lower(): value
            for name, value in environ.items()
            if name.startswith("HTTP_")
        }
        caller = propagate.extract(headers)  # the client's trace, from its traceparent header
        name = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}"
        with tracer.start_as_current_span(name, context=caller, kind=trace.SpanKind.SERVER):
            project = environ.get("QUERY_STRING", "").partition("project=")[2] or "ACME"
            issues = registry.ask(KEY, {"project": project})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["".join(f"{issue}\n" for issue in issues).encode()]

    return app


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # the console exporter tells the story


# -- checking the trace ------------------------------------------------------------------------


def tree(spans: Sequence[ReadableSpan]) -> list[str]:
    """The spans as an indented tree, parents first, with the command's attributes."""
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        children.setdefault(span.parent.span_id if span.parent else None, []).append(span)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.start_time or 0):
            attributes = dict(span.attributes or {})
            detail = f"{span.kind.name.lower()}"
            if "hystrix.events" in attributes:
                events = ",".join(attributes["hystrix.events"])  # type: ignore[arg-type]
                detail += f" events={events} span events={[e.name for e in span.events]}"
            elif "url.full" in attributes or "http.url" in attributes:
                url = attributes.get("url.full", attributes.get("http.url"))
                status = attributes.get(
                    "http.response.status_code", attributes.get("http.status_code")
                )
                detail += f" {url} -> {status}"
            lines.append(f"{'  ' * depth}{span.name:<{24 - 2 * depth}} {detail}")
            assert span.context is not None
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return lines


def check(spans: Sequence[ReadableSpan], down: bool) -> list[str]:
    """What is wrong with the trace (nothing: an empty list)."""

    def span_id(span: ReadableSpan | None) -> int | None:
        return span.context.span_id if span is not None and span.context is not None else None

    def parent(span: ReadableSpan) -> int | None:
        return span.parent.span_id if span.parent is not None else None

    roots = [span for span in spans if span.parent is None]
    client = roots[0] if len(roots) == 1 else None
    below: dict[str, ReadableSpan] = {}  # the spans under the client's, by name
    for span in spans:
        if span is not client:
            below.setdefault(span.name, span)
    service, command, jira = below.get("GET /issues"), below.get(KEY), below.get("GET")
    chain = [client, service, command, jira]
    problems: list[str] = []
    if len(spans) != 4 or None in chain:
        problems.append(f"expected 4 spans, got {[span.name for span in spans]}")
    elif [parent(span) for span in chain if span] != [None, *map(span_id, chain[:3])]:
        problems.append("the spans are not client -> service -> command -> JIRA")
    if len({span.context.trace_id for span in spans if span.context}) != 1:
        problems.append("the spans are not one trace")
    if command is not None:
        events = tuple(dict(command.attributes or {}).get("hystrix.events", ()))  # type: ignore[arg-type]
        expected = ("FAILURE", "FALLBACK_SUCCESS") if down else ("SUCCESS",)
        if events != expected:
            problems.append(f"the command's events are {events}, expected {expected}")
        if command.status.status_code is trace.StatusCode.ERROR:
            problems.append("the command's span is an error, yet the caller got a value")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One request, one trace.")
    parser.add_argument("--down", action="store_true", help="JIRA answers 503: the fallback")
    args = parser.parse_args(argv)
    # The library logs a failed call as an error (to the stdlib logger "actors" here, structlog
    # not being configured); in this story the trace tells it instead.
    logging.getLogger("actors").setLevel(logging.CRITICAL)

    # The application's OpenTelemetry setup: a provider, the console exporter, httpx traced.
    # (The in-memory exporter is for the self-check at the end.)
    provider = TracerProvider(resource=Resource.create({"service.name": "traced-service"}))
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument()

    registry = CommandRegistry()  # tracer="auto": OpenTelemetry's, on the global provider
    with FakeJira(mode=Mode.DOWN if args.down else Mode.HEALTHY) as jira:
        registry.register(GetAllIssues, jira.url)
        server: WSGIServer = make_server(
            "127.0.0.1", 0, service(registry), handler_class=QuietHandler
        )
        serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        serving.start()
        try:
            url = f"http://127.0.0.1:{server.server_port}/issues?project=ACME"
            page = httpx.get(url, timeout=5.0).text  # the client: its span starts the trace
        finally:
            server.shutdown()
            serving.join()
            server.server_close()
            registry.shutdown()
    provider.shutdown()

    spans = memory.get_finished_spans()
    print(f"the page: {page.split() or 'no issues (the fallback)'}")
    trace_ids = {f"{span.context.trace_id:032x}" for span in spans if span.context}
    print(f"trace {', '.join(sorted(trace_ids))}:")
    for line in tree(spans):
        print(f"  {line}")
    problems = check(spans, args.down)
    for problem in problems:
        print(f"FAILED: {problem}")
    if problems:
        return 1
    print("OK: one trace, from the client's request through the command to JIRA")
    return 0


if __name__ == "__main__":
    sys.exit(main())
