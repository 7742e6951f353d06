"""The traced service example: one request, one trace printed by the console exporter, from the
client through the service and the command to the fake JIRA."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.instrumentation.httpx")

from scripts import run_example


def exported_spans(stdout: str) -> list[dict[str, object]]:
    """The console exporter's spans: JSON objects, one after the other, before the summary."""
    decoder = json.JSONDecoder()
    spans: list[dict[str, object]] = []
    text = stdout
    while text.startswith("{"):
        span, end = decoder.raw_decode(text)
        spans.append(span)
        text = text[end:].lstrip("\n")
    return spans


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("args", "events"),
    [((), ["SUCCESS"]), (("--down",), ["FAILURE", "FALLBACK_SUCCESS"])],
    ids=["healthy", "down"],
)
def test_the_traced_example_prints_one_trace_through_the_command(
    args: tuple[str, ...], events: list[str]
) -> None:
    done = run_example("traced_service.py", *args, timeout=45)

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert done.stderr == "", output
    assert done.stdout.splitlines()[-1].startswith("OK: one trace"), output
    spans = exported_spans(done.stdout)
    assert [span["name"] for span in spans] == ["GET", "Get all Issues", "GET /issues", "GET"]
    (trace_id,) = {span["context"]["trace_id"] for span in spans}  # type: ignore[index]
    assert re.search(rf"^trace {trace_id[2:]}:$", done.stdout, re.MULTILINE), output  # type: ignore[index]
    (command,) = [span for span in spans if span["name"] == "Get all Issues"]
    attributes = command["attributes"]
    assert attributes["hystrix.command.key"] == "Get all Issues"  # type: ignore[index]
    assert attributes["hystrix.command.group"] == "JIRA"  # type: ignore[index]
    assert attributes["hystrix.events"] == events  # type: ignore[index]
    assert command["status"] == {"status_code": "UNSET"}
