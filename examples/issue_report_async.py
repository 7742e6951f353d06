"""The issue report pipeline on asyncio, with httpx: ``async def run`` commands, ``arun``.

    python examples/issue_report_async.py            # about 10 seconds
    python examples/issue_report_async.py --quick    # a few seconds (HYSTRIX_DEMO_QUICK=1 too)

The same story as ``issue_report_pipeline.py`` (healthy, then the user service slow, then down),
but every command's ``run`` is ``async def`` and uses ``httpx.AsyncClient``; the pipeline runs
with ``await pipeline.arun(...)`` on the example's own event loop, which a ticker shows is never
blocked. When a lookup passes its deadline, its coroutine is really cancelled: the
``CancelledError`` reaches it inside the request (counted below), its ``async with`` closes the
connection, and its worker's slot is free as soon as it has ended. Exits 1 unless the healthy
reports were COMPLETE, the degraded ones PARTIAL, lookups were cancelled while slow, and the
ticker kept ticking.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import threading
from typing import Any

import httpx
from fake_jira import FakeJira
from fake_users import FakeUsers
from issue_report_pipeline import (
    FETCH,
    ISSUES,
    LOOKUP,
    LOOKUP_TIMEOUT,
    SLOW_DELAY,
    SUMMARISE,
    Summarise,
    build_pipeline,
    describe,
    quiet_logging,
    timeline,
    verdict,
)

from actors import Command, CommandConfig, CommandRegistry


def _client(command: Command, base_url: str) -> httpx.AsyncClient:
    """One client per command instance (each worker has its own), made on first use on the
    key's event loop, where every later run of that instance awaits too."""
    client: httpx.AsyncClient | None = getattr(command, "_http", None)
    if client is None:
        client = httpx.AsyncClient(base_url=base_url)
        command._http = client  # type: ignore[attr-defined]
    return client


class FetchOpenIssues(Command):
    """JIRA search over httpx; the assignee of each issue not yet done."""

    key = FETCH
    config = CommandConfig(timeout=0.5)

    def __init__(self, jira_url: str) -> None:
        self.jira_url = jira_url

    async def run(self, project: str) -> list[str]:
        client = _client(self, self.jira_url)
        response = await client.get("/rest/api/2/search", params={"jql": f"project={project}"})
        response.raise_for_status()
        issues: list[dict[str, Any]] = response.json()["issues"]
        return [i["fields"]["assignee"] for i in issues if i["fields"]["status"] != "Done"]

    def fallback(self, project: str, error: BaseException) -> list[str]:
        return []


class LookupUser(Command):
    """One assignee's record over httpx; counts the cancellations that reached it."""

    key = LOOKUP
    config = CommandConfig(timeout=LOOKUP_TIMEOUT, max_concurrent_requests=8)

    def __init__(self, users_url: str, cancelled: collections.Counter[str]) -> None:
        self.users_url = users_url
        self.cancellations = cancelled

    async def run(self, name: str) -> dict[str, Any]:
        try:
            response = await _client(self, self.users_url).get(f"/users/{name}")
            response.raise_for_status()
            user: dict[str, Any] = response.json()
            return user
        except asyncio.CancelledError:
            self.cancellations["lookups"] += 1  # the deadline reached the request itself
            raise

    def fallback(self, name: str, error: BaseException) -> dict[str, Any]:
        return {"name": name, "email": None, "team": "unknown", "unknown": True}


async def story(registry: CommandRegistry, users: FakeUsers, quick: bool) -> dict[str, Any]:
    """Run the reports; what happened, for the self-check."""
    pipeline = build_pipeline(registry)
    seen: dict[str, list[bool]] = collections.defaultdict(list)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticking = asyncio.ensure_future(ticker())
    pause = 0.1 if quick else 0.5
    # Warm up (not counted): the keys' event loops start and httpx builds its clients, which
    # can take longer than a lookup's 0.25 s on a busy machine.
    await pipeline.arun("ACME")
    number = 0
    started = asyncio.get_running_loop().time()
    for phase in timeline(quick):
        users.set_mode(phase.mode)
        print(f"--- user service {phase.name} ---")
        for _ in range(phase.reports):
            number += 1
            result = await pipeline.arun("ACME")
            seen[phase.name].append(result.complete)
            print(f"report {number}: {verdict(result)}; {describe(result.value)}")
            await asyncio.sleep(pause)
    ticking.cancel()
    elapsed = asyncio.get_running_loop().time() - started
    return {"seen": seen, "ticks": ticks, "elapsed": elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The issue report pipeline on asyncio.")
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("HYSTRIX_DEMO_QUICK", "") not in ("", "0"),
        help="fewer reports (a few seconds)",
    )
    args = parser.parse_args(argv)
    quiet_logging()
    cancelled: collections.Counter[str] = collections.Counter()
    registry = CommandRegistry()
    try:
        with FakeJira(issues=ISSUES) as jira, FakeUsers(slow_delay=SLOW_DELAY) as users:
            registry.register(FetchOpenIssues, jira.url)
            registry.register(LookupUser, users.url, cancelled)
            registry.register(Summarise)
            print(
                f"each report: {FETCH} -> {LOOKUP} (async def run, httpx, 4 at once,"
                f" {LOOKUP_TIMEOUT} s each) -> {SUMMARISE}; awaited on one event loop"
            )
            happened = asyncio.run(story(registry, users, args.quick))
    finally:
        registry.shutdown(timeout=2.0)
    seen = happened["seen"]
    # a loop blocked for the whole run would tick about once per report
    expected_ticks = happened["elapsed"] / 0.01 / 4
    print(
        f"lookups cancelled inside their request: {cancelled['lookups']};"
        f" ticker ticked {happened['ticks']} times in {happened['elapsed']:.1f} s;"
        f" threads left: {threading.active_count()}"
    )
    checks = {
        "healthy reports complete": all(seen["healthy"]),
        "degraded reports partial": not any(seen["slow"]) and not any(seen["down"]),
        "a slow lookup was cancelled inside its coroutine": cancelled["lookups"] > 0,
        "the event loop never blocked": happened["ticks"] >= expected_ticks,
    }
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    print("OK: complete while healthy, partial (not failed) while degraded, cancelled on time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
