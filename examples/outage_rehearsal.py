"""An outage rehearsal driven only by fault injection: JIRA stays healthy all along.

    python examples/outage_rehearsal.py            # about 3 seconds
    python examples/outage_rehearsal.py --quick    # fewer calls (HYSTRIX_DEMO_QUICK=1 too)

The issue report's JIRA search ("Get all Issues") runs against the fake JIRA (``fake_jira.py``),
which never misbehaves. ``registry.inject`` rehearses what it would do if it did:

    healthy     no injection: every call reaches JIRA
    down        inject(error=ConnectionError): the breaker opens, calls short-circuit to the
                fallback (the last list of issues the command saw), JIRA is not called
    recovered   stop(): after the sleep window the probe reaches JIRA and the circuit closes
    flaky       inject(error=..., rate=0.3, seed=1): a reproducible 30 % of calls fail and
                fall back; too few to trip the breaker
    slow        inject(latency=1.0) past the 0.3 s timeout: every call times out, at its
                deadline, and falls back

Each call prints its events and the circuit's state; the injections' start and end are the
library's own warnings (``injection.started``, ``injection.ended``). The registry must be made
with ``allow_injection=True`` (or ``HYSTRIX_ALLOW_INJECTION=1``): injection is refused otherwise.
Exits 1 unless the circuit opened while JIRA was "down", closed once it "recovered", and no
call of the down phase reached JIRA: the example checks itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import urllib.parse
import urllib.request
from typing import Any

from fake_jira import FakeJira

from actors import CircuitState, Command, CommandConfig, CommandRegistry, Reply

KEY = "Get all Issues"
TIMEOUT = 0.3  # seconds a search may take
SLEEP_WINDOW = 1.0  # seconds the circuit stays open before a probe


class GetAllIssues(Command):
    """JIRA's search for a project's issues; the fallback is the last answer seen (or none)."""

    key = KEY
    config = CommandConfig(
        timeout=TIMEOUT,
        request_volume_threshold=5,
        error_percent_threshold=50,
        sleep_window=SLEEP_WINDOW,
    )
    last_seen: list[str] = []  # noqa: RUF012 - shared by the workers' instances on purpose

    def __init__(self, jira_url: str) -> None:
        self.jira_url = jira_url

    def run(self, project: str) -> list[str]:
        query = urllib.parse.urlencode({"jql": f"project={project}"})
        url = f"{self.jira_url}/rest/api/2/search?{query}"
        with urllib.request.urlopen(url, timeout=self.time_left()) as response:
            keys = [issue["key"] for issue in json.load(response)["issues"]]
        GetAllIssues.last_seen = keys
        return keys

    def fallback(self, project: str, error: BaseException) -> list[str]:
        return list(GetAllIssues.last_seen)


class InjectionEvents(logging.Filter):
    """Only the library's ``injection.*`` events (its other warnings would repeat each call)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return str(getattr(record, "event", "")).startswith("injection.")


def show_injections() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(InjectionEvents())
    handler.setFormatter(logging.Formatter("    [log] %(message)s"))
    library = logging.getLogger("actors")
    library.addHandler(handler)
    library.setLevel(logging.WARNING)
    library.propagate = False


def line(number: int, reply: Reply, state: str) -> str:
    events = ",".join(event.value for event in reply.events)
    source = "fallback" if reply.fell_back else "JIRA"
    return f"call {number:>2}  {events:<34} circuit {state:<9} {len(reply.value)} issues ({source})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="An outage rehearsal driven by fault injection.")
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("HYSTRIX_DEMO_QUICK", "") not in ("", "0"),
        help="fewer calls per phase",
    )
    args = parser.parse_args(argv)
    calls = 5 if args.quick else 8
    show_injections()
    seen: dict[str, Any] = {}
    number = 0
    with FakeJira() as jira, CommandRegistry(allow_injection=True) as registry:
        registry.register(GetAllIssues, jira.url)

        def ask(times: int) -> list[Reply]:
            nonlocal number
            replies = []
            for _ in range(times):
                number += 1
                reply = registry.ask_reply(KEY, "ACME")
                replies.append(reply)
                print(line(number, reply, registry.health(KEY).state.value))
            return replies

        print("--- healthy: no injection ---")
        ask(calls)

        print("--- down: inject(error=ConnectionError) ---")
        before = jira.requests
        with registry.inject(KEY, error=ConnectionError("rehearsed: JIRA unreachable")):
            down = ask(2 * calls)  # the healthy calls are still in the window
            seen["opened"] = registry.health(KEY).state is CircuitState.OPEN
        seen["jira_calls_while_down"] = jira.requests - before
        seen["short_circuited"] = sum(r.events[0].value == "SHORT_CIRCUITED" for r in down)

        print(f"--- recovered: injection stopped, {SLEEP_WINDOW:g} s sleep window ---")
        time.sleep(SLEEP_WINDOW)
        ask(2)
        seen["closed"] = registry.health(KEY).state is CircuitState.CLOSED

        print("--- flaky: inject(error=ConnectionError, rate=0.3, seed=1) ---")
        with registry.inject(KEY, error=ConnectionError, rate=0.3, seed=1) as flaky:
            ask(calls)
        print(f"    {flaky.faulted} of {flaky.runs} runs faulted")

        print(f"--- slow: inject(latency=1.0), past the {TIMEOUT:g} s timeout ---")
        with registry.inject(KEY, latency=1.0, duration=10.0):
            ask(2)
        print(f"    circuit {registry.health(KEY).state.value}")

    problems = []
    if not seen["opened"]:
        problems.append("the circuit did not open while JIRA was down")
    if not seen["short_circuited"]:
        problems.append("no call was short-circuited while JIRA was down")
    if seen["jira_calls_while_down"]:
        problems.append(f"{seen['jira_calls_while_down']} calls reached JIRA while it was down")
    if not seen["closed"]:
        problems.append("the circuit did not close once JIRA recovered")
    if problems:
        print(f"FAILED: {'; '.join(problems)}")
        return 1
    print(
        "OK: the circuit opened on the injected outage (JIRA never called), short-circuited to"
        " the fallback, and closed again once the injection stopped"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
