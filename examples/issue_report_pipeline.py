"""A pipeline: the open issues from JIRA, each assignee from a user service, a report per team.

    python examples/issue_report_pipeline.py            # about 10 seconds
    python examples/issue_report_pipeline.py --quick    # a few seconds (HYSTRIX_DEMO_QUICK=1 too)

Three commands composed by ``actors.pipeline.Pipeline`` under one budget::

    Stage("Fetch open issues")           JIRA search -> the assignee of each open issue
    FanOut("Look up user", 4 at once)    each assignee -> their user record
    Stage("Summarise issues")            the records -> open issues per team

The fake JIRA (``fake_jira.py``) stays healthy; the fake user service (``fake_users.py``) is
healthy for the first reports, then slow (past the lookup's timeout), then down. Each lookup
that times out or fails falls back on its own to a placeholder user of team "unknown", so the
report still comes back, marked PARTIAL with what fell back (read from the pipeline's trace)
instead of failing. Exits 1 unless the healthy reports were COMPLETE and the degraded ones
PARTIAL: the example checks itself.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import logging
import os
import sys
import time
import urllib.parse
import urllib.request
from typing import Any

import structlog
from fake_jira import FakeJira, Mode
from fake_users import FakeUsers

from actors import Command, CommandConfig, CommandRegistry
from actors.pipeline import FanOut, Pipeline, PipelineResult, Stage

FETCH = "Fetch open issues"
LOOKUP = "Look up user"
SUMMARISE = "Summarise issues"
LOOKUP_TIMEOUT = 0.25  # seconds a user lookup may take
SLOW_DELAY = 1.0  # seconds a slow user service takes to answer
BUDGET = 2.0  # seconds for one whole report

ISSUES: tuple[dict[str, Any], ...] = tuple(
    {"key": f"ACME-{n}", "fields": {"summary": summary, "status": status, "assignee": who}}
    for n, (summary, status, who) in enumerate(
        (
            ("Login page times out", "Open", "alice"),
            ("Export to CSV drops rows", "In Progress", "bob"),
            ("Dark mode for the dashboard", "Done", "carol"),
            ("Search ignores accents", "Open", "carol"),
            ("Crash on rotate", "Open", "dave"),
            ("Flaky deploy job", "Open", "alice"),
            ("Slow report page", "In Progress", "bob"),
        ),
        start=1,
    )
)


class FetchOpenIssues(Command):
    """JIRA search; the assignee of each issue not yet done. No answer in time: no issues."""

    key = FETCH

    def __init__(self, jira_url: str) -> None:
        self.jira_url = jira_url

    def run(self, project: str) -> list[str]:
        query = urllib.parse.urlencode({"jql": f"project={project}"})
        url = f"{self.jira_url}/rest/api/2/search?{query}"
        with urllib.request.urlopen(url, timeout=self.time_left()) as response:
            issues: list[dict[str, Any]] = json.load(response)["issues"]
        return [i["fields"]["assignee"] for i in issues if i["fields"]["status"] != "Done"]

    def fallback(self, project: str, error: BaseException) -> list[str]:
        return []


class LookupUser(Command):
    """One assignee's record from the user service; when it cannot answer, a placeholder."""

    key = LOOKUP
    config = CommandConfig(timeout=LOOKUP_TIMEOUT, max_concurrent_requests=8)

    def __init__(self, users_url: str) -> None:
        self.users_url = users_url

    def run(self, name: str) -> dict[str, Any]:
        url = f"{self.users_url}/users/{urllib.parse.quote(name, safe='')}"
        with urllib.request.urlopen(url, timeout=self.time_left()) as response:
            user: dict[str, Any] = json.load(response)
        return user

    def fallback(self, name: str, error: BaseException) -> dict[str, Any]:
        return {"name": name, "email": None, "team": "unknown", "unknown": True}


class Summarise(Command):
    """Pure: open issues per team (a command, so that it shows in the trace)."""

    key = SUMMARISE

    def run(self, users: tuple[dict[str, Any], ...]) -> dict[str, Any]:
        teams = collections.Counter(user["team"] for user in users)
        return {
            "issues": len(users),
            "teams": dict(sorted(teams.items())),
            "unknown": sum(1 for user in users if user.get("unknown")),
        }


def build_pipeline(registry: CommandRegistry) -> Pipeline:
    return Pipeline(
        Stage(FETCH),
        FanOut(LOOKUP, max_in_flight=4),
        Stage(SUMMARISE),
        registry=registry,
        budget=BUDGET,
    )


def verdict(result: PipelineResult) -> str:
    """COMPLETE, or PARTIAL with what fell back and why, from the trace."""
    if result.complete:
        return "COMPLETE"
    if not result.ok:
        return f"FAILED ({result.error!r})"
    parts = []
    for step in result.trace:
        if step.fell_back:
            why = collections.Counter(
                str(step.replies[i].events[0]).lower().replace("_", "-") for i in step.fell_back_at
            )
            reasons = ", ".join(f"{name} {count}" for name, count in sorted(why.items()))
            parts.append(f"{step.key} x{len(step.fell_back_at)}: {reasons}")
    return f"PARTIAL (fell back: {'; '.join(parts)})"


def describe(summary: dict[str, Any]) -> str:
    teams = ", ".join(f"{team} {count}" for team, count in summary["teams"].items())
    return f"{summary['issues']} open: {teams}"


@dataclasses.dataclass(frozen=True, slots=True)
class Phase:
    name: str
    mode: Mode
    reports: int


def timeline(quick: bool) -> tuple[Phase, ...]:
    counts = (3, 2, 2) if quick else (6, 4, 4)
    return (
        Phase("healthy", Mode.HEALTHY, counts[0]),
        Phase("slow", Mode.SLOW, counts[1]),
        Phase("down", Mode.DOWN, counts[2]),
    )


def quiet_logging() -> None:
    """The library logs timeouts as warnings; this story prints its own lines instead."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL),
        cache_logger_on_first_use=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The issue report pipeline example.")
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("HYSTRIX_DEMO_QUICK", "") not in ("", "0"),
        help="fewer reports (a few seconds)",
    )
    args = parser.parse_args(argv)
    pause = 0.1 if args.quick else 0.5
    quiet_logging()
    seen: dict[str, list[bool]] = collections.defaultdict(list)
    registry = CommandRegistry()
    try:
        with FakeJira(issues=ISSUES) as jira, FakeUsers(slow_delay=SLOW_DELAY) as users:
            registry.register(FetchOpenIssues, jira.url)
            registry.register(LookupUser, users.url)
            registry.register(Summarise)
            pipeline = build_pipeline(registry)
            print(
                f"each report: fetch open issues -> look up each assignee (4 at once,"
                f" {LOOKUP_TIMEOUT} s each) -> summarise; budget {BUDGET} s"
            )
            number = 0
            for phase in timeline(args.quick):
                users.set_mode(phase.mode)
                print(f"--- user service {phase.name} ---")
                for _ in range(phase.reports):
                    number += 1
                    started = time.monotonic()
                    result = pipeline.run("ACME")
                    took = time.monotonic() - started
                    seen[phase.name].append(result.complete)
                    summary = describe(result.value) if result.ok else "no report"
                    print(f"report {number:>2} {took:5.2f}s  {summary}  {verdict(result)}")
                    if not result.ok:
                        seen["failed"].append(True)
                    time.sleep(pause)
    finally:
        registry.shutdown(timeout=5.0)

    problems = []
    if not any(seen["healthy"]):
        problems.append("no complete report while the user service was healthy")
    if all(seen["slow"] + seen["down"]):
        problems.append("no partial report while the user service was degraded")
    if seen["failed"]:
        problems.append("some report failed instead of coming back partial")
    if problems:
        print(f"FAILED: {'; '.join(problems)}")
        return 1
    print("OK: complete reports while the user service was healthy, partial ones (marked) after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
