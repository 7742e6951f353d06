"""The issue report pipeline with its user lookups collapsed into batch requests.

    python examples/issue_report_collapsed.py            # about 10 seconds
    python examples/issue_report_collapsed.py --quick    # a few seconds (HYSTRIX_DEMO_QUICK=1 too)

The pipeline of ``issue_report_pipeline.py`` (whose commands and helpers it imports), wider::

    Stage("Fetch open issues")           JIRA search -> the assignee of each open issue (36)
    FanOut("Look up user", 32 at once)   each assignee -> their record, through a Collapser
    Stage("Summarise issues")            the records -> open issues per team

"Look up user" is a ``Collapser``: the lookups asked within its window (10 ms) become one ask
of the batch command "Look up users", which makes ONE request to the fake user service's batch
endpoint (``GET /users?names=alice,bob,...``) per batch. After each report the example prints
the collapser's batch sizes (``registry.collapser_metrics``, the last 10 seconds) and how many
requests the user service served for how many lookups.

The user service is healthy, then slow (past the batch's timeout), then down: the batch
command's fallback gives a placeholder user (team "unknown") per payload, so every lookup of the
batch falls back on its own and the report comes back PARTIAL. Exits 1 unless the healthy
reports were COMPLETE, the lookups collapsed (mean batch size above 1, fewer requests than
lookups) and the degraded reports PARTIAL: the example checks itself.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import sys
import time
import urllib.request
from typing import Any

from fake_jira import FakeJira
from fake_users import FakeUsers, Mode
from issue_report_pipeline import (
    BUDGET,
    FETCH,
    LOOKUP,
    LOOKUP_TIMEOUT,
    SLOW_DELAY,
    SUMMARISE,
    FetchOpenIssues,
    Phase,
    Summarise,
    describe,
    quiet_logging,
    timeline,
)
from issue_report_pipeline import verdict as pipeline_verdict

from actors import Collapser, Command, CommandConfig, CommandRegistry, EventType
from actors.pipeline import FanOut, Pipeline, PipelineResult, Stage

LOOKUP_BATCH = "Look up users"
FAN_OUT = 32  # lookups in flight at once, per report

TEAMS = ("platform", "web", "mobile")
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank"]
NAMES += ["grace", "heidi", "ivan", "judy", "kim", "leo"]
USERS = [
    {"name": n, "email": f"{n}@example.com", "team": TEAMS[i % 3]} for i, n in enumerate(NAMES)
]
STATUSES = ("Open", "In Progress", "Open", "Done")  # three issues in four are not done
#: 48 issues, 36 of them open: one lookup per open issue, the same person several times.
ISSUES = [
    {
        "key": f"ACME-{n}",
        "fields": {"summary": f"Issue {n}", "status": STATUSES[n % 4], "assignee": NAMES[n % 12]},
    }
    for n in range(1, 49)
]


class LookupUsers(Command):
    """The batch command: the records of a list of names in ONE request, in order (None for a
    name the service does not know); when it cannot answer, a placeholder per name."""

    key = LOOKUP_BATCH
    config = CommandConfig(timeout=LOOKUP_TIMEOUT)

    def __init__(self, users: FakeUsers) -> None:
        self.users = users

    def run(self, names: list[str]) -> list[dict[str, Any] | None]:
        with urllib.request.urlopen(self.users.batch_url(names), timeout=self.time_left()) as got:
            records: list[dict[str, Any] | None] = json.load(got)["users"]
        return records

    def fallback(self, names: list[str], error: BaseException) -> list[dict[str, Any]]:
        return [{"name": n, "email": None, "team": "unknown", "unknown": True} for n in names]


class LookupUser(Collapser):
    """What the fan-out asks, one name at a time: collapsed into "Look up users" batches."""

    key = LOOKUP
    batch_command = LOOKUP_BATCH

    def map_results(self, payloads: list[Any], result: Any) -> list[Any]:
        return [
            LookupError(f"no such user: {name!r}") if user is None else user
            for name, user in zip(payloads, result, strict=False)
        ]


def build_pipeline(registry: CommandRegistry) -> Pipeline:
    return Pipeline(
        Stage(FETCH),
        FanOut(LOOKUP, max_in_flight=FAN_OUT),
        Stage(SUMMARISE),
        registry=registry,
        budget=BUDGET,
    )


def verdict(result: PipelineResult) -> str:
    """PARTIAL with how many lookups fell back and why (the event after COLLAPSED: the batch's
    TIMEOUT, FAILURE, SHORT_CIRCUITED, ...); else the plain pipeline's verdict."""
    lookups = [step for step in result.trace if step.key == LOOKUP]
    replies = [reply for step in lookups for reply in step.replies if reply.fell_back]
    if not replies or not result.ok or result.fell_back:
        return pipeline_verdict(result)
    why = collections.Counter(
        next(e for e in reply.events if e is not EventType.COLLAPSED) for reply in replies
    )
    reasons = ", ".join(f"{e.lower().replace('_', '-')} {n}" for e, n in sorted(why.items()))
    return f"PARTIAL (fell back: {LOOKUP} x{len(replies)}: {reasons})"


def batch_sizes(registry: CommandRegistry) -> tuple[float, str]:
    """The collapser's mean batch size, and a line that shows its batches of the last 10 s."""
    metrics = registry.collapser_metrics(LOOKUP)
    sizes = metrics.batch_size_percentiles
    line = (
        f"collapser (last {metrics.window:g} s): {metrics.requests_collapsed} lookups in"
        f" {metrics.batches} batches, size mean {metrics.batch_size_mean:.1f},"
        f" p50 {sizes['50']:g}, p90 {sizes['90']:g}, max {sizes['100']:g}"
    )
    return metrics.batch_size_mean, line


@dataclasses.dataclass(slots=True)
class Tally:
    """What the reports showed, for the self-check."""

    complete: dict[str, list[bool]] = dataclasses.field(default_factory=dict)  # per phase
    failed: int = 0
    healthy_lookups: int = 0
    healthy_requests: int = 0
    healthy_means: list[float] = dataclasses.field(default_factory=list)


def run_report(
    number: int,
    phase: Phase,
    pipeline: Pipeline,
    registry: CommandRegistry,
    users: FakeUsers,
    tally: Tally,
) -> None:
    """One report: run it, print its verdict, its lookups and requests, and the batch sizes."""
    requests_before, started = users.requests, time.monotonic()
    result = pipeline.run("ACME")
    took, requests = time.monotonic() - started, users.requests - requests_before
    lookups = sum(len(step.replies) for step in result.trace if step.key == LOOKUP)
    mean, sizes = batch_sizes(registry)
    what = describe(result.value) if result.ok else "no report"
    print(f"report {number:>2} {took:5.2f}s  {what}  {verdict(result)}")
    print(f"    {lookups} user lookups, {requests} requests to the user service")
    print(f"    {sizes}")
    tally.complete.setdefault(phase.name, []).append(result.complete)
    tally.failed += not result.ok
    if phase.mode is Mode.HEALTHY:
        tally.healthy_lookups += lookups
        tally.healthy_requests += requests
        tally.healthy_means.append(mean)


def checks(tally: Tally) -> dict[str, bool]:
    """The example's own checks, by name: all must hold."""
    healthy = tally.complete.get("healthy", [])
    degraded = [done for name, runs in tally.complete.items() if name != "healthy" for done in runs]
    collapsed = tally.healthy_requests < tally.healthy_lookups
    return {
        "a complete report while the user service was healthy": any(healthy),
        "lookups collapsed (mean batch size above 1)": min(tally.healthy_means, default=0) > 1,
        "fewer requests to the user service than lookups": collapsed,
        "every report partial while the user service was degraded": not any(degraded),
        "no report failed": tally.failed == 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The issue report pipeline, lookups collapsed.")
    quick = os.environ.get("HYSTRIX_DEMO_QUICK", "") not in ("", "0")
    parser.add_argument("--quick", action="store_true", default=quick, help="a few seconds")
    parser.add_argument("--logs", action="store_true", help="leave the library's logging on")
    args = parser.parse_args(argv)
    if not args.logs:
        quiet_logging()
    reports = [phase for phase in timeline(args.quick) for _ in range(phase.reports)]
    tally = Tally()
    registry = CommandRegistry()
    try:
        with (
            FakeJira(issues=ISSUES) as jira,
            FakeUsers(slow_delay=SLOW_DELAY, users=USERS) as users,
        ):
            registry.register(FetchOpenIssues, jira.url)
            registry.register(LookupUsers, users)
            registry.register(LookupUser)
            registry.register(Summarise)
            pipeline = build_pipeline(registry)
            print(
                f"each report: fetch open issues -> look up each assignee ({FAN_OUT} at once;"
                f" the lookups of a {LookupUser.window * 1000:g} ms window make one"
                f" {LOOKUP_BATCH!r} request, {LOOKUP_TIMEOUT} s) -> summarise; budget {BUDGET} s"
            )
            previous = None
            for number, phase in enumerate(reports, start=1):
                if phase is not previous:
                    users.set_mode(phase.mode)
                    print(f"--- user service {phase.name} ---")
                    previous = phase
                run_report(number, phase, pipeline, registry, users, tally)
                time.sleep(0.1 if args.quick else 0.5)
    finally:
        registry.shutdown(timeout=5.0)

    failed = [name for name, ok in checks(tally).items() if not ok]
    if failed:
        print(f"FAILED: {'; '.join(failed)}")
        return 1
    print(
        f"OK: {tally.healthy_lookups} lookups while healthy took {tally.healthy_requests}"
        " requests to the user service; partial reports (marked) once it was slow or down"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
