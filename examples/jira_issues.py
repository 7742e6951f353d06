"""The demo: "Get all Issues" from a JIRA that is healthy, then slow, then down, then healthy again.

Eight callers ask ``CommandRegistry.ask_reply("Get all Issues", {"project": "ACME"})`` in a loop
against a local fake JIRA (``fake_jira.py``) while a script flips the server's mode. Every second
one line shows what the callers got: answers from JIRA, and fallbacks (the empty list) by reason.
The circuit's transitions are logged by the library through structlog as they happen; this
script configures structlog (the library never does) to print only those.

The story: while JIRA is slow the calls time out after 0.3 s; once they are half the calls in
the rolling window the circuit opens and the callers get the empty list at once instead of
waiting. While JIRA is down, the probe let through every 2 s fails and the circuit stays open;
once JIRA is back, the next probe succeeds and the circuit closes.

    python examples/jira_issues.py            # about 32 seconds
    python examples/jira_issues.py --quick    # about 11 seconds (HYSTRIX_DEMO_QUICK=1 too)

While it runs, the dashboard is served at http://127.0.0.1:8787/ (``--port``; another free port
when 8787 is taken; the address is printed first): one tile for the command, one for its pool,
updated live from ``/hystrix.stream``. ``--screenshot docs/dashboard.png`` saves a picture of
the page during the outage (headless Debian ``chromium`` driven by Playwright; see
``dashboard_camera.py``).

Exits 1 unless the circuit opened and closed again by the end: the demo checks itself.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import logging
import os
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from fake_jira import FakeJira, Mode

from actors import Command, CommandConfig, CommandRegistry, EventType, Reply
from actors.http import HttpServer, start_http_server
from supervision import CircuitState, Transition

KEY = "Get all Issues"
CALLERS = 8
PAUSE = 0.02  # seconds each caller rests between asks: keeps the load bounded
SLOW_DELAY = 1.0  # seconds a slow JIRA takes to answer (the command gives up after 0.3)
PORT = 8787  # the dashboard's, when free


@dataclasses.dataclass(frozen=True, slots=True)
class Phase:
    name: str
    mode: Mode
    seconds: float
    story: str


def timeline(quick: bool) -> tuple[Phase, ...]:
    scale = (2, 3, 2, 4) if quick else (6, 8, 8, 10)
    return (
        Phase("healthy", Mode.HEALTHY, scale[0], "JIRA answers at once"),
        Phase("slow", Mode.SLOW, scale[1], f"JIRA takes {SLOW_DELAY:.1f}s to answer"),
        Phase("down", Mode.DOWN, scale[2], "JIRA answers 503 at once"),
        Phase("recovered", Mode.HEALTHY, scale[3], "JIRA answers at once again"),
    )


class GetAllIssues(Command):
    """The seed article's command: search a project's issues; no answer in time means none."""

    key = KEY
    group = "JIRA"  # the dashboard shows it beside the key
    config = CommandConfig(
        timeout=0.3,
        max_concurrent_requests=10,
        request_volume_threshold=10,
        error_percent_threshold=50,
        sleep_window=2.0,
        rolling_window=2.0,
        rolling_buckets=10,
    )

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def run(self, payload: dict[str, str]) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"jql": f"project={payload['project']}"})
        url = f"{self.base_url}/rest/api/2/search?{query}"
        with urllib.request.urlopen(url, timeout=self.time_left()) as response:
            issues: list[dict[str, Any]] = json.load(response)["issues"]
        return issues

    def fallback(self, payload: dict[str, str], error: BaseException) -> list[dict[str, Any]]:
        return []  # the empty answer: the page renders, without issues


# -- what the callers got ------------------------------------------------------------------------

#: The first event of a reply says what happened to the call.
OUTCOMES: dict[EventType, str] = {
    EventType.SUCCESS: "success",
    EventType.TIMEOUT: "timeout",
    EventType.FAILURE: "failure",
    EventType.SHORT_CIRCUITED: "circuit open",
    EventType.THREAD_POOL_REJECTED: "max concurrency",
}
COLUMNS = ("success", "timeout", "failure", "circuit open", "max concurrency")


class Tally:
    """Outcome counts, per second and in total; shared by the caller threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._second: collections.Counter[str] = collections.Counter()
        self.total: collections.Counter[str] = collections.Counter()
        self.problems: list[str] = []

    def record(self, reply: Reply) -> None:
        outcome = OUTCOMES.get(reply.events[0], str(reply.events[0])) if reply.events else "?"
        problem = None
        if outcome != "success" and (not reply.fell_back or reply.value != []):
            problem = f"{outcome} without the fallback's empty list: {reply!r:.200}"
        with self._lock:
            self._second["requests"] += 1
            self._second[outcome] += 1
            self._second["microseconds"] += round(reply.latency * 1e6)
            if problem is not None and len(self.problems) < 5:
                self.problems.append(problem)

    def crashed(self, error: BaseException) -> None:
        with self._lock:
            if len(self.problems) < 5:
                self.problems.append(f"ask_reply raised {error!r}")

    def take(self) -> collections.Counter[str]:
        """The counts since the last call."""
        with self._lock:
            second, self._second = self._second, collections.Counter()
        self.total.update(second)
        return second


def caller(stop: threading.Event, tally: Tally) -> None:
    while not stop.is_set():
        try:
            reply = CommandRegistry.ask_reply(KEY, {"project": "ACME"})
        except Exception as error:  # never expected: every ask gets a reply
            tally.crashed(error)
        else:
            tally.record(reply)
        stop.wait(PAUSE)


# -- the printout ---------------------------------------------------------------------------------


class Stopwatch:
    """Seconds since the demo started, and the phase it is in (read by the log processors)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.phase = "-"

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def configure_logging(watch: Stopwatch) -> None:
    """Print the library's circuit transitions; drop its per-call events (the table counts them)."""

    def drop_per_call_events(logger: Any, method: str, event_dict: Any) -> Any:
        if str(event_dict.get("event", "")).startswith(("command.", "http.")):
            raise structlog.DropEvent
        return event_dict

    def stamp_demo_time(logger: Any, method: str, event_dict: Any) -> Any:
        event_dict["timestamp"] = f"{watch.elapsed():6.1f}s"
        event_dict["jira"] = watch.phase
        return event_dict

    structlog.configure(
        processors=[
            drop_per_call_events,
            structlog.processors.add_log_level,
            stamp_demo_time,
            structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty(), pad_event_to=16),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )


LEGEND = (
    "Each line counts the last second's calls: answered by JIRA (ok), or given the fallback's\n"
    "empty list because of a timeout, a failure, an open circuit or a full bulkhead (max.con);\n"
    "avg ms is the callers' mean wait; circuit and error% are health(key) at that moment."
)
HEADER = (
    f"{'time':>7}  {'jira':<9} {'calls':>5} {'ok':>5}  {'timeout':>7} {'failure':>7}"
    f" {'c.open':>6} {'max.con':>7} {'avg ms':>7}  {'circuit':<9} {'error%':>6}"
)


def row(watch: Stopwatch, counts: collections.Counter[str]) -> str:
    health = CommandRegistry.health(KEY)
    state = CircuitState(health.state).value
    calls = counts["requests"]
    wait = counts["microseconds"] / calls / 1000 if calls else 0.0
    return (
        f"{watch.elapsed():6.1f}s  {watch.phase:<9} {calls:>5} {counts['success']:>5}"
        f"  {counts['timeout']:>7} {counts['failure']:>7} {counts['circuit open']:>6}"
        f" {counts['max concurrency']:>7} {wait:>7.2f}  {state:<9} {health.error_percent:>6.1f}"
    )


def say(line: str) -> None:
    print(line, flush=True)


# -- the script -----------------------------------------------------------------------------------


def play(
    phases: tuple[Phase, ...],
    jira: FakeJira,
    watch: Stopwatch,
    tally: Tally,
    cues: dict[int, Callable[[], None]] | None = None,
) -> None:
    """Flip JIRA's mode on schedule and print one line per second; ``cues[n]()`` runs after
    second ``n``."""
    tick = 0
    phase_end = 0.0
    for phase in phases:
        watch.phase = phase.name
        jira.set_mode(phase.mode)
        say(f"{watch.elapsed():6.1f}s  --- {phase.name}: {phase.story} ---")
        phase_end += phase.seconds
        while tick < phase_end:
            tick += 1
            time.sleep(max(0.0, watch.started + tick - time.monotonic()))
            say(row(watch, tally.take()))
            if cues and tick in cues:
                cues[tick]()


def outage_second(phases: tuple[Phase, ...]) -> int:
    """The second of the timeline to picture the outage at: halfway through JIRA being down."""
    start = 0
    for phase in phases:
        if phase.mode is Mode.DOWN:
            return start + max(1, round(phase.seconds / 2))
        start += round(phase.seconds)
    raise ValueError("the timeline has no outage")


def serve_dashboard(port: int) -> HttpServer:
    """The stream and the page for the default registry, on ``port`` or else any free port."""
    try:
        server, _ = start_http_server(port)
    except OSError:  # taken: any free port will do
        server, _ = start_http_server(0)
    return server


def verdict(transitions: list[tuple[float, str, Transition]], recovered_at: float) -> str | None:
    """Why the story went wrong, or None when the circuit opened and closed again."""
    opened = [at for at, _, moved in transitions if moved.to_state is CircuitState.OPEN]
    if not opened:
        return "the circuit never opened"
    closed = [at for at, _, moved in transitions if moved.to_state is CircuitState.CLOSED]
    if not closed or closed[-1] < max(opened):
        return "the circuit did not close again after JIRA recovered"
    if closed[-1] < recovered_at:
        return "the circuit closed before JIRA recovered"
    state = CommandRegistry.health(KEY).state
    if state != CircuitState.CLOSED:
        return f"the circuit ended {state}, not closed"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The Get all Issues demo.")
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("HYSTRIX_DEMO_QUICK", "") not in ("", "0"),
        help="a shorter timeline (about 11 s)",
    )
    parser.add_argument(
        "--port", type=int, default=PORT, help=f"the dashboard's port (default {PORT}; 0: any)"
    )
    parser.add_argument(
        "--screenshot",
        type=Path,
        metavar="PATH",
        help="save a PNG of the dashboard during the outage (needs chromium and Playwright)",
    )
    args = parser.parse_args(argv)
    phases = timeline(args.quick)
    watch = Stopwatch()
    configure_logging(watch)
    server = serve_dashboard(args.port)
    url = f"http://127.0.0.1:{server.server_port}/"
    say(f"dashboard: {url}")

    transitions: list[tuple[float, str, Transition]] = []
    CommandRegistry.subscribe(lambda key, moved: transitions.append((watch.elapsed(), key, moved)))

    tally = Tally()
    stop = threading.Event()
    with FakeJira(slow_delay=SLOW_DELAY) as jira:
        CommandRegistry.register(GetAllIssues, jira.url)
        issues = CommandRegistry.ask(KEY, {"project": "ACME"})
        camera = None
        if args.screenshot is not None:
            from dashboard_camera import Camera  # noqa: PLC0415 (needs Playwright)

            camera = Camera(url, args.screenshot, KEY)
            camera.start()
        say(f"JIRA at {jira.url}; ACME has {len(issues)} issues:")
        for issue in issues:
            say(f"    {issue['key']:<8} {issue['fields']['summary']}")
        total = sum(phase.seconds for phase in phases)
        config = GetAllIssues.config
        say(
            f"\n{CALLERS} callers ask {KEY!r} every {PAUSE * 1000:.0f} ms for {total:.0f} s."
            f" Each call may take {config.timeout} s; at most {config.max_concurrent_requests}"
            f" run at once.\nThe circuit opens at {config.error_percent_threshold}% errors over"
            f" >= {config.request_volume_threshold} calls in {config.rolling_window} s, and"
            f" probes JIRA again after {config.sleep_window} s.\n"
        )
        say(LEGEND)
        say(HEADER)
        watch.started = time.monotonic()
        threads = [
            threading.Thread(target=caller, args=(stop, tally), name=f"caller-{n}", daemon=True)
            for n in range(CALLERS)
        ]
        for thread in threads:
            thread.start()
        cues = {outage_second(phases): camera.shoot} if camera is not None else {}
        try:
            play(phases, jira, watch, tally, cues)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=5.0)
            tally.take()
            problem = verdict(transitions, recovered_at=total - phases[-1].seconds)
            shot = camera.finish() if camera is not None else None
            server.shutdown()
            CommandRegistry.shutdown()

    say("\nSummary")
    counts = tally.total
    say(f"  calls {counts['requests']}, answered by JIRA {counts['success']}")
    fallbacks = ", ".join(f"{name} {counts[name]}" for name in COLUMNS[1:])
    say(f"  fallbacks (the empty list): {fallbacks}")
    say(f"  circuit transitions: {len(transitions)}")
    for at, _, moved in transitions:
        say(
            f"    {at:6.1f}s  {moved.from_state.value:>9} -> {moved.to_state.value:<9}"
            f" (window: {moved.requests} calls, {moved.error_percent:.0f}% errors)"
        )
    for line in tally.problems:
        say(f"  problem: {line}")
    if problem is None and tally.problems:
        problem = "some callers got no proper answer"
    if camera is not None:
        say(f"  screenshot: {args.screenshot}" if shot is None else f"  no screenshot: {shot}")
        if problem is None and shot is not None:
            problem = "the screenshot of the outage failed"
    if problem is not None:
        say(f"FAILED: {problem}")
        return 1
    say("OK: the circuit opened while JIRA was slow or down, and closed again once it recovered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
