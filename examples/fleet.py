"""The fleet demo: three processes share one circuit through Redis while JIRA goes down and back.

Three worker processes (``multiprocessing``, spawn) each build
``CommandRegistry(fleet=RedisFleet(url, namespace="fleet-demo", node="worker-<i>"))`` and ask
"Get all Issues" of a local fake JIRA (``fake_jira.py``) from two caller threads. No worker
calls JIRA often enough to trip its circuit on its own (each makes about 20 calls in the 2 s
window; the circuit needs 30): only the fleet's summed window can. Every second the demo prints,
for each process, its own circuit, the fleet's circuit as that process last read it, the nodes
reporting, the fleet's error percentage, the probe lease's holder and the calls that reached
JIRA; the library's circuit and fleet log events are printed as they happen.

The story: JIRA is healthy, then down (503 at once): within about a second the fleet's window
trips and every process opens in the same instant; while JIRA stays down exactly one process
probes it per sleep window. JIRA recovers: the next probe succeeds and every process closes.

    python examples/fleet.py                  # about 20 seconds
    python examples/fleet.py --check          # exits 1 unless the story happened as told
    python examples/fleet.py --seconds 3,8,5  # the healthy, down and recovered phases
    REDIS_URL=redis://127.0.0.1:6379/0 python examples/fleet.py   # an existing Redis

Without ``REDIS_URL`` the demo starts its own ``redis-server`` (Debian: ``apt-get install
redis-server``) on a free loopback port in a temporary directory, and stops it at the end.
With ``REDIS_URL`` it first deletes its own namespace's keys (``hx:{fleet-demo:...}``) there.
Needs the ``redis`` extra (``pip install "hystrix-actors[redis]"``; ``make fleet-demo`` installs
it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import structlog
from fake_jira import FakeJira, Mode

from actors import Command, CommandConfig, CommandRegistry

try:
    import redis

    from actors.fleet import RedisFleet, key_prefix
except ImportError as missing:  # the redis extra is not installed
    sys.exit(f"examples/fleet.py: {missing}")

KEY = "Get all Issues"
NAMESPACE = "fleet-demo"
PAYLOAD = {"project": "ACME"}
WORKERS = 3
CALLERS = 2  # caller threads per worker process
PAUSE = 0.2  # seconds each caller rests between asks: about 10 calls/s per process
PHASES = (3.0, 8.0, 5.0)  # seconds healthy, down, recovered
#: Seconds a worker process has to start, join the fleet and say so.
STARTUP_TIMEOUT = 30.0


class GetAllIssues(Command):
    """Search a project's issues in JIRA; the fallback is the empty list."""

    key = KEY
    group = "JIRA"
    config = CommandConfig(
        timeout=0.5,
        request_volume_threshold=30,  # no process alone makes 30 calls in 2 s: the fleet does
        error_percent_threshold=50,
        sleep_window=2.0,
        rolling_window=2.0,
        rolling_buckets=10,
    )

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def run(self, payload: dict[str, str]) -> list[dict[str, Any]]:
        REACHED.add(time.monotonic())
        query = urllib.parse.urlencode({"jql": f"project={payload['project']}"})
        url = f"{self.base_url}/rest/api/2/search?{query}"
        with urllib.request.urlopen(url, timeout=self.time_left()) as response:
            issues: list[dict[str, Any]] = json.load(response)["issues"]
        return issues

    def fallback(self, payload: dict[str, str], error: BaseException) -> list[dict[str, Any]]:
        return []


# -- inside a worker process -----------------------------------------------------------------------


class Stamps:
    """Instants (``time.monotonic()``) noted by several threads, taken in batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Any] = []

    def add(self, item: Any) -> None:
        with self._lock:
            self._items.append(item)

    def take(self) -> list[Any]:
        with self._lock:
            items, self._items = self._items, []
        return items


#: When this process's calls reached JIRA (entered ``run``).
REACHED = Stamps()


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


def capture_library_events(sink: Stamps) -> None:
    """Keep the library's circuit and fleet events (and any warning) for the parent to print;
    drop the per-call ones. The library never configures structlog: the demo does."""

    def capture(logger: Any, method: str, event_dict: Any) -> Any:
        event = str(event_dict.get("event", ""))
        wanted = event.startswith(("circuit.", "fleet.")) or (
            method in ("warning", "error", "exception", "critical")
            and not event.startswith("command.")
        )
        if wanted:
            fields = {k: _plain(v) for k, v in event_dict.items() if k != "event"}
            sink.add((time.monotonic(), event, fields))
        raise structlog.DropEvent

    structlog.configure(
        processors=[capture],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def caller(registry: CommandRegistry, stop: threading.Event, calls: Stamps) -> None:
    while not stop.is_set():
        reply = registry.ask_reply(KEY, PAYLOAD)
        calls.add(reply.events[0] if reply.events else None)
        stop.wait(PAUSE)


def report(registry: CommandRegistry, node: str, parts: dict[str, Stamps]) -> dict[str, Any]:
    """What the parent prints and checks: this process's circuit, the fleet's, what happened."""
    health = registry.health(KEY)
    view = health.fleet
    return {
        "node": node,
        "local": str(health.state),
        "fleet": None if view is None else str(view.state),
        "nodes": None if view is None else view.nodes,
        "error_percent": None if view is None else view.error_percent,
        "probe_holder": None if view is None else view.probe_holder,
        "connected": None if view is None else view.connected,
        "calls": len(parts["calls"].take()),
        "reached": parts["reached"].take(),
        "events": parts["events"].take(),
        "transitions": parts["transitions"].take(),
    }


def worker_main(index: int, redis_url: str, jira_url: str, conn: Connection) -> None:
    """One process of the fleet: a registry with a RedisFleet, callers, and a line to the
    parent (``go``, ``report``, ``stop``)."""
    node = f"worker-{index}"
    parts = {"calls": Stamps(), "reached": REACHED, "events": Stamps(), "transitions": Stamps()}
    capture_library_events(parts["events"])
    registry = CommandRegistry(fleet=RedisFleet(redis_url, namespace=NAMESPACE, node=node))
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        registry.register(GetAllIssues, jira_url)
        registry.subscribe(
            lambda key, moved: parts["transitions"].add(
                (moved.at, moved.from_state.value, moved.to_state.value, moved.scope)
            )
        )
        fleet = registry.fleet
        assert isinstance(fleet, RedisFleet)
        registry.ask_reply(KEY, PAYLOAD)  # the key is used: this process takes part in its fleet
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while registry.health(KEY).fleet is None or not fleet.subscribed.is_set():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node} did not join the fleet at {fleet.safe_url}")
            time.sleep(0.02)
        REACHED.take()
        conn.send(("ready", node))
        while True:
            order = conn.recv()
            if order == "go":
                threads = [
                    threading.Thread(
                        target=caller, args=(registry, stop, parts["calls"]), daemon=True
                    )
                    for _ in range(CALLERS)
                ]
                for thread in threads:
                    thread.start()
            elif order == "report":
                conn.send(("report", report(registry, node, parts)))
            elif order == "stop":
                stop.set()
                for thread in threads:
                    thread.join(timeout=5.0)
                conn.send(("report", report(registry, node, parts)))
                return
    except (KeyboardInterrupt, EOFError):
        return
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("crashed", f"{node}:\n{traceback.format_exc()}"))
        raise
    finally:
        stop.set()
        registry.shutdown(timeout=2.0)


# -- Redis -----------------------------------------------------------------------------------------


class RedisServerMissingError(RuntimeError):
    pass


class LocalRedis:
    """A ``redis-server`` of the demo's own on a free loopback port in a temporary directory
    (no persistence), stopped by ``stop()``."""

    def __init__(self) -> None:
        program = shutil.which("redis-server")
        if program is None:
            raise RedisServerMissingError(
                "redis-server is not installed (Debian/Ubuntu: apt-get install redis-server);"
                " or point the demo at a Redis of yours: REDIS_URL=redis://host:6379/0"
            )
        self.directory = Path(tempfile.mkdtemp(prefix="fleet-demo-redis-"))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log = (self.directory / "redis.log").open("wb")
        command = [
            program,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command,
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise

    def _wait_until_up(self) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10.0
        try:
            while True:
                if self._process.poll() is not None:
                    log = (self.directory / "redis.log").read_text(errors="replace")
                    raise RuntimeError(f"redis-server exited at once:\n{log[-2000:]}")
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer on port {self.port}")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5.0)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def forget_the_last_run(url: str) -> None:
    """Delete what an earlier run left of the demo's namespace in a Redis of the user's."""
    store = RedisFleet(url, namespace=NAMESPACE, node="fleet-demo-cleanup").new_store()
    try:
        client: Any = store.connect()
        for key in list(client.scan_iter(match=key_prefix(NAMESPACE, KEY) + ":*", count=500)):
            client.delete(key)
        client.delete(f"hx:{{{NAMESPACE}}}:keys")
    finally:
        store.close()


# -- the parent: the timeline, the printout, the check ---------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Phase:
    name: str
    mode: Mode
    seconds: float
    story: str


def timeline(seconds: Sequence[float]) -> tuple[Phase, ...]:
    healthy, down, recovered = seconds
    return (
        Phase("healthy", Mode.HEALTHY, healthy, "JIRA answers at once"),
        Phase("down", Mode.DOWN, down, "JIRA answers 503 at once"),
        Phase("recovered", Mode.HEALTHY, recovered, "JIRA answers at once again"),
    )


def parse_seconds(text: str) -> tuple[float, float, float]:
    try:
        healthy, down, recovered = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected three numbers of seconds, healthy,down,recovered: {text!r}"
        ) from None
    sleep = GetAllIssues.config.sleep_window
    window = GetAllIssues.config.rolling_window
    if healthy < 1 or down < window + sleep + 1 or recovered < sleep + 2:
        raise argparse.ArgumentTypeError(
            f"the story needs at least 1 s healthy, {window + sleep + 1:g} s down (the window"
            f" trips, then a probe fails) and {sleep + 2:g} s recovered, got {text!r}"
        )
    return healthy, down, recovered


class Fleet:
    """The worker processes, from the parent's side."""

    def __init__(self, count: int, redis_url: str, jira_url: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.names = [f"worker-{i}" for i in range(count)]
        self.lines: list[Connection] = []
        self.processes: list[Any] = []
        for index in range(count):
            parent, child = context.Pipe()
            process = context.Process(
                target=worker_main,
                args=(index, redis_url, jira_url, child),
                name=self.names[index],
                daemon=True,
            )
            process.start()
            child.close()
            self.lines.append(parent)
            self.processes.append(process)

    def _answer(self, line: Connection, timeout: float) -> tuple[str, Any]:
        if not line.poll(timeout):
            raise RuntimeError(f"a worker did not answer within {timeout:g} s")
        kind, body = line.recv()
        if kind == "crashed":
            raise RuntimeError(f"a worker crashed: {body}")
        return kind, body

    def wait_ready(self) -> None:
        for line in self.lines:
            self._answer(line, STARTUP_TIMEOUT)

    def tell(self, order: str) -> None:
        for line in self.lines:
            line.send(order)

    def reports(self, order: str = "report") -> list[dict[str, Any]]:
        self.tell(order)
        return [self._answer(line, 10.0)[1] for line in self.lines]

    def close(self) -> None:
        for line in self.lines:
            with contextlib.suppress(OSError):
                line.close()
        for process in self.processes:
            process.join(timeout=10.0)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5.0)


@dataclasses.dataclass
class Record:
    """Everything the workers reported, in the parent's time (seconds since the start)."""

    started: float
    transitions: list[tuple[float, str, str, str, str]] = dataclasses.field(default_factory=list)
    reached: list[tuple[float, str]] = dataclasses.field(default_factory=list)
    calls: dict[str, int] = dataclasses.field(default_factory=dict)
    reached_total: dict[str, int] = dataclasses.field(default_factory=dict)
    final: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def add(self, report: dict[str, Any]) -> None:
        node = report["node"]
        for at, from_state, to_state, scope in report["transitions"]:
            self.transitions.append((at - self.started, node, from_state, to_state, scope))
        self.reached.extend((at - self.started, node) for at in report["reached"])
        self.calls[node] = self.calls.get(node, 0) + report["calls"]
        self.reached_total[node] = self.reached_total.get(node, 0) + len(report["reached"])


def say(line: str = "") -> None:
    print(line, flush=True)


HEADER = (
    f"{'time':>6}  {'jira':<9} {'node':<9} {'local':<9} {'fleet':<9} {'nodes':>5}"
    f" {'fleet err%':>10}  {'probe holder':<12} {'calls':>5} {'reached JIRA':>12}"
)


def rows(elapsed: float, phase: str, reports: list[dict[str, Any]]) -> Iterator[str]:
    for n, report in enumerate(reports):
        fleet = report["fleet"] or "-"
        if report["connected"] is False:
            fleet += "?"  # the last view read: Redis cannot be reached
        percent = "-" if report["error_percent"] is None else f"{report['error_percent']:.1f}"
        yield (
            f"{f'{elapsed:.1f}s' if n == 0 else '':>6}  {phase if n == 0 else '':<9}"
            f" {report['node']:<9} {report['local']:<9} {fleet:<9}"
            f" {'-' if report['nodes'] is None else report['nodes']:>5} {percent:>10}"
            f"  {report['probe_holder'] or '-':<12} {report['calls']:>5}"
            f" {len(report['reached']):>12}"
        )


#: Fields every library event carries that the printout leaves out.
_BOUND = frozenset({"command", "component", "node", "namespace", "actor", "log_level"})


def event_line(at: float, node: str, event: str, fields: dict[str, Any]) -> str:
    if event.startswith("circuit."):
        said = f"{fields.get('from_state')} -> {fields.get('state')} (scope={fields.get('scope')})"
    else:
        said = " ".join(f"{k}={v}" for k, v in fields.items() if k not in _BOUND)
    return f"{at:5.2f}s  {'':<9} {node:<9} {event:<20} {said}"


def play(fleet: Fleet, jira: FakeJira, phases: tuple[Phase, ...], record: Record) -> list[float]:
    """Flip JIRA's mode on schedule; each second, print every process's line. The start of
    each phase, in seconds since the start."""
    starts: list[float] = []
    tick = 0
    end = 0.0
    for phase in phases:
        jira.set_mode(phase.mode)
        starts.append(time.monotonic() - record.started)
        say(f"{starts[-1]:5.2f}s  --- {phase.name}: {phase.story} ---")
        end += phase.seconds
        while tick < end:
            tick += 1
            time.sleep(max(0.0, record.started + tick - time.monotonic()))
            reports = fleet.reports()
            for report in reports:
                record.add(report)
            events = sorted(
                (at - record.started, report["node"], event, fields)
                for report in reports
                for at, event, fields in report["events"]
            )
            for event in events:
                say(event_line(*event))
            for line in rows(time.monotonic() - record.started, phase.name, reports):
                say(line)
    return starts


# -- the check -------------------------------------------------------------------------------------

#: Seconds two instants taken by different processes may differ by for "the same moment".
SAME_SECOND = 1.0
#: Slack on the sleep window: a probe may come this much later than the window allows.
PROBE_SLACK = 1.0
#: Seconds a process's adoption of a fleet state may lag behind the state's start in Redis.
ADOPTION_SLACK = 0.25
#: Seconds after a process opened during which calls admitted before it may still reach JIRA.
IN_FLIGHT = 0.5


def check(record: Record, starts: list[float], nodes: list[str]) -> tuple[list[str], list[str]]:
    """The story as it happened (lines to print), and what went wrong (empty: all of it)."""
    told: list[str] = []
    wrong: list[str] = []
    down_at, recovered_at = starts[1], starts[2]
    sleep = GetAllIssues.config.sleep_window
    moves = sorted(record.transitions)

    early = [m for m in moves if m[0] < down_at]
    if early:
        wrong.append(f"a circuit moved while JIRA was healthy: {early[0]}")

    # 1. every process opened, all at once
    first_open: dict[str, float] = {}
    for at, node, _, to_state, _ in moves:
        if to_state == "open" and at >= down_at and node not in first_open:
            first_open[node] = at
    missing = [node for node in nodes if node not in first_open]
    if missing:
        wrong.append(f"never opened: {', '.join(missing)}")
        return told, wrong
    spread = max(first_open.values()) - min(first_open.values())
    opened = min(first_open.values())
    told.append(
        f"JIRA went down at {down_at:.2f}s; the fleet opened at {opened:.2f}s, every process"
        f" within {spread * 1000:.0f} ms of the first"
    )
    if spread >= SAME_SECOND:
        wrong.append(f"the processes opened {spread:.2f} s apart, not within the same second")
    if opened >= recovered_at:
        wrong.append("the fleet opened only after JIRA recovered")

    # 2. while JIRA is down: one probe per sleep window, and only probes reach JIRA
    probes = [(at, node) for at, node, _, to_state, _ in moves if to_state == "half_open"]
    while_down = [(at, node) for at, node in probes if opened <= at < recovered_at]
    told.append(
        f"probes while JIRA was down: {len(while_down)} ("
        + ", ".join(f"{node} at {at:.2f}s" for at, node in while_down)
        + f"), one per {sleep:g} s sleep window"
    )
    if not while_down:
        wrong.append("no process probed JIRA while it was down")
    previous = opened
    first_after = [(at, node) for at, node in probes if at >= recovered_at][:1]
    for at, node in [*while_down, *first_after]:
        gap = at - previous
        if gap < sleep - ADOPTION_SLACK:
            wrong.append(f"{node} probed {gap:.2f} s after the last probe or open: two in a window")
        elif gap > sleep + PROBE_SLACK and at < recovered_at:
            wrong.append(f"{node} probed {gap:.2f} s after the last: a sleep window went unprobed")
        previous = at
    leaks = []
    for node in nodes:
        mine = [at for at, who in while_down if who == node]
        reached = [
            at
            for at, who in record.reached
            if who == node and first_open[node] + IN_FLIGHT < at < recovered_at
        ]
        if len(reached) > len(mine):
            leaks.append(f"{node} ({len(reached)} calls, {len(mine)} probes)")
    reached_while_open = sum(
        1 for at, who in record.reached if first_open[who] + IN_FLIGHT < at < recovered_at
    )
    told.append(f"calls that reached JIRA while the fleet was open: {reached_while_open}")
    if leaks:
        wrong.append("calls other than probes reached JIRA while open: " + ", ".join(leaks))

    # 3. JIRA recovered: one probe closes every process
    after = [(at, node) for at, node in probes if at >= recovered_at]
    closes: dict[str, tuple[float, str, str]] = {}
    for at, node, from_state, to_state, scope in moves:
        if to_state == "closed" and at >= recovered_at and node not in closes:
            closes[node] = (at, from_state, scope)
    if len(after) > 1:
        wrong.append(f"{len(after)} probes after JIRA recovered, not one")
    unclosed = [node for node in nodes if node not in closes]
    if unclosed:
        wrong.append(f"never closed after JIRA recovered: {', '.join(unclosed)}")
    else:
        first = min(at for at, _, _ in closes.values())
        last = max(at for at, _, _ in closes.values())
        prober = [node for node, (_, from_state, _) in closes.items() if from_state == "half_open"]
        told.append(
            f"JIRA recovered at {recovered_at:.2f}s; {' '.join(prober) or 'a probe'}'s probe"
            f" closed the fleet at {first:.2f}s, every process within"
            f" {(last - first) * 1000:.0f} ms"
        )
        if last - first >= SAME_SECOND:
            wrong.append(f"the processes closed {last - first:.2f} s apart")
        if len(prober) != 1:
            wrong.append(f"{len(prober)} processes closed from half_open, not one: {prober}")

    # 4. the end: all closed, here and in the fleet
    for report in record.final:
        if report["local"] != "closed" or report["fleet"] != "closed":
            wrong.append(
                f"{report['node']} ended {report['local']} (fleet {report['fleet']}), not closed"
            )
    return told, wrong


# -- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Three processes share one circuit in Redis.")
    parser.add_argument(
        "--seconds",
        type=parse_seconds,
        default=PHASES,
        metavar="H,D,R",
        help="seconds JIRA is healthy, down, then recovered (default %(default)s)",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 unless the story happened as told"
    )
    args = parser.parse_args(argv)
    phases = timeline(args.seconds)
    config = GetAllIssues.config

    url = os.environ.get("REDIS_URL", "")
    local = None
    if not url:
        try:
            local = LocalRedis()
        except RedisServerMissingError as error:
            print(f"examples/fleet.py: {error}", file=sys.stderr)
            return 2
        url = local.url
        say(f"Redis: {url} (a redis-server of the demo's own, in {local.directory})")
    else:
        forget_the_last_run(url)
        say(f"Redis: {RedisFleet(url, namespace=NAMESPACE).safe_url} (REDIS_URL)")

    fleet = None
    try:
        with FakeJira() as jira:
            say(f"JIRA (fake): {jira.url}")
            say(
                f"{WORKERS} processes, each CommandRegistry(fleet=RedisFleet(url,"
                f' namespace="{NAMESPACE}", node="worker-<i>")), each with {CALLERS} callers'
                f" asking {KEY!r} every {PAUSE:g} s.\nThe circuit opens at"
                f" {config.error_percent_threshold}% errors over >="
                f" {config.request_volume_threshold} calls in {config.rolling_window:g} s: no"
                " process makes that many alone, the fleet's summed window does. One probe per"
                f" {config.sleep_window:g} s while open."
            )
            fleet = Fleet(WORKERS, url, jira.url)
            fleet.wait_ready()
            say(f"{WORKERS} processes joined the fleet.\n")
            say(HEADER)
            record = Record(started=time.monotonic())
            fleet.tell("go")
            starts = play(fleet, jira, phases, record)
            record.final = fleet.reports("stop")
            for report in record.final:
                record.add(report)
            jira_requests = jira.requests
    finally:
        if fleet is not None:
            fleet.close()
        if local is not None:
            local.stop()

    told, wrong = check(record, starts, fleet.names)
    say("\nSummary")
    for node in fleet.names:
        say(
            f"  {node}: {record.calls.get(node, 0)} calls,"
            f" {record.reached_total.get(node, 0)} reached JIRA"
        )
    say(f"  JIRA received {jira_requests} requests in all")
    for line in told:
        say(f"  {line}")
    for line in wrong:
        say(f"  problem: {line}")
    if wrong:
        say("NOT AS TOLD: see the problems above")
        return 1 if args.check else 0
    say(
        "OK: the fleet opened together, one process probed per sleep window while JIRA was"
        " down, and one probe closed every process once it recovered"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
