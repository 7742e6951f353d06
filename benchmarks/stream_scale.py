"""The stream at scale: bytes and CPU of one tick of ``/hystrix.stream`` at 100 / 2,000 / 10,000
used keys, ours beside the landed code's, measured in one run. The report's "The stream at
scale" section; alone: ``python -m benchmarks.stream_scale [--quick] [--output PATH]``.

For each count, a ``CommandRegistry`` holds that many keys, each asked once and then left
idle until it passivated (``passivate_after`` of ``PASSIVATE_AFTER``: its threads stop, its
metrics stay), and ticks are made as the apps make them: ``actors.ticks.Ticks.next`` (which reads
``registry.all_metrics()`` and renders it with the app's ``Renderer``) and ``Tick.body``, the
bytes a stream sends. CPU is the making thread's (``time.thread_time``; the registry actor's
share, one list of ports per tick, is left out); the garbage collector runs as usual. Rows:

* the first tick: every key rendered (a stream just opened, or the first since the last one
  closed);
* a tick with the keys idle since the previous one (the median of ``ticks`` ticks): what an
  open dashboard costs each interval;
* a tick after every key was asked once more: every key read and rendered again;
* a stream filtered to one key (``?keys=``): picking its pieces from a tick the app made for
  other streams, and alone (no other stream: it reads its key by itself);
* ``streams`` streams open at once: each tick is made once for all of them.

The landed code (commit ``LANDED``, before issue 12) is measured in a subprocess on that
commit's sources (``git archive``), the same way: every stream called
``batch(registry.all_metrics())`` at every tick. Without git or the commit (an sdist), that
column says so. It is not measured at 10,000 keys: 20,000 threads (two per key) before
passivation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import json
import pathlib
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from actors import Command, CommandConfig, CommandRegistry
from actors.stream import PING, Renderer
from actors.ticks import FEW_KEYS, Ticks, tick_of_keys
from supervision import SupervisionPolicy

from .cells import Target, targets_cell, x
from .section import section_main

__all__ = ["LANDED", "STREAM_HEADING", "StreamPlan", "main", "stream_report"]

STREAM_HEADING = "## The stream at scale"

#: The landed code the issue measured: the last commit before issue 12 (its stream unchanged).
LANDED = "3d3327801486cf67ddf1e20fdab387dbf36b1285"
#: The issue's figure for the landed code at 2,000 keys, measured on this machine before.
ISSUE_FIGURE = "4.9 MB and 0.32 s of CPU per tick"

#: The issue's target: a tick of 2,000 keys costs at most 50 ms of CPU.
TARGET_KEYS = 2000
TARGET_MS = 50.0

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: The keys' ``passivate_after``: short, so that the keys called once are soon idle as in a
#: service's long life; their ``timeout``: long, so that starting thousands of keys on a busy
#: machine times nothing out.
PASSIVATE_AFTER = 0.5
CONFIG = CommandConfig(timeout=60.0, supervision=SupervisionPolicy(passivate_after=PASSIVATE_AFTER))


@dataclasses.dataclass(frozen=True, slots=True)
class StreamPlan:
    #: Key counts measured, ours; and the landed code's.
    keys: tuple[int, ...] = (100, 2000, 10000)
    landed_keys: tuple[int, ...] = (100, 2000)
    #: Idle ticks timed per count (the median is reported); ticks after every key was asked.
    ticks: int = 7
    busy_ticks: int = 2
    #: Streams open at once, sharing each tick.
    streams: int = 5

    @classmethod
    def full(cls) -> StreamPlan:
        return cls()

    @classmethod
    def quick(cls) -> StreamPlan:
        return cls(keys=(100, 500), landed_keys=(100,), ticks=3, busy_ticks=1, streams=3)


@dataclasses.dataclass(frozen=True, slots=True)
class StreamCost:
    keys: int
    bytes: int
    first_ms: float
    idle_ms: list[float]
    busy_ms: list[float]
    filtered_us: float
    filtered_bytes: int
    #: A stream of one key alone: its tick, read key by key (µs of CPU).
    alone_us: float
    #: ``streams`` streams, each asking for the next tick: CPU per round, and ticks made.
    shared_ms: list[float]
    shared_made: int
    rounds: int
    threads: int

    @property
    def idle_p50(self) -> float:
        return statistics.median(self.idle_ms)


@dataclasses.dataclass(frozen=True, slots=True)
class LandedCost:
    keys: int
    bytes: int
    ms: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.ms)


def _echo(self: Command, payload: Any) -> Any:
    return payload


def _commands(count: int) -> list[type[Command]]:
    return [
        type(
            f"StreamKey{n:05d}",
            (Command,),
            {"key": f"bench.stream.key.{n:05d}", "run": _echo, "config": CONFIG},
        )
        for n in range(count)
    ]


def _passivated(count: int, threads_before: int) -> int:
    """Wait until the keys' threads have stopped (at most a minute and a bit); the threads
    alive then."""
    deadline = time.monotonic() + 60.0 + count / 100
    while (alive := threading.active_count()) > threads_before + 10:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return alive


@contextlib.contextmanager
def _registry(count: int) -> Iterator[tuple[CommandRegistry, list[type[Command]], int]]:
    """A registry of ``count`` keys, each asked once, passivated; with the threads alive."""
    before = threading.active_count()
    registry = CommandRegistry()
    commands = _commands(count)
    try:
        for command in commands:
            registry.register(command)
            registry.ask(command.key, 0)
        threads = _passivated(count, before)
        yield registry, commands, threads
    finally:
        registry.shutdown(timeout=30.0)


def _cpu_ms(started: float) -> float:
    return (time.thread_time() - started) * 1000


def measure_ours(count: int, plan: StreamPlan) -> StreamCost:
    """The ticks of one app on a registry of ``count`` idle keys."""
    with _registry(count) as (registry, commands, threads):
        ticks = Ticks(registry)
        gc.collect()
        started = time.thread_time()
        tick = ticks.next(None, 0.0)
        body = tick.body(end=PING)
        first = _cpu_ms(started)
        idle = []
        for _ in range(plan.ticks):
            started = time.thread_time()
            tick = ticks.next(tick, 0.0)  # max_age 0: a new tick every time
            body = tick.body(end=PING)
            idle.append(_cpu_ms(started))
        one = {commands[count // 2].key}
        started = time.perf_counter()
        rounds = 200
        for _ in range(rounds):
            filtered = tick.body(one, None, PING)
        filtered_us = (time.perf_counter() - started) / rounds * 1e6
        renderer = Renderer()
        alone = tick_of_keys(registry, one, renderer)
        started = time.thread_time()
        for _ in range(rounds):
            alone = tick_of_keys(registry, one, renderer)
            assert alone is not None
            alone.body(one, None, PING)
        alone_us = (time.thread_time() - started) / rounds * 1e6
        busy = []
        for n in range(plan.busy_ticks):
            for command in commands:
                registry.ask(command.key, n)
            started = time.thread_time()
            tick = ticks.next(tick, 0.0)
            tick.body(end=PING)
            busy.append(_cpu_ms(started))
        # Streams each asking for the tick after the one it sent, as a server's do.
        made = ticks.made
        sent = [tick] * plan.streams
        shared = []
        for _ in range(plan.ticks):
            first_asks = True
            started = time.thread_time()
            for n in range(plan.streams):
                # the first stream finds its own tick the latest: it makes the next one
                sent[n] = ticks.next(sent[n], 0.0 if first_asks else 60.0)
                sent[n].body(end=PING)
                first_asks = False
            shared.append(_cpu_ms(started))
        return StreamCost(
            keys=count,
            bytes=len(body),
            first_ms=first,
            idle_ms=idle,
            busy_ms=busy,
            filtered_us=filtered_us,
            filtered_bytes=len(filtered),
            alone_us=alone_us,
            shared_ms=shared,
            shared_made=ticks.made - made,
            rounds=plan.ticks,
            threads=threads,
        )


#: Run in the landed code's tree: one tick per call, as each of its streams made it.
_LANDED_SCRIPT = """
import gc, json, sys, time
from actors import Command, CommandRegistry
from actors.stream import PING, batch

count, ticks = int(sys.argv[1]), int(sys.argv[2])
def echo(self, payload):
    return payload
registry = CommandRegistry()
try:
    for n in range(count):
        command = type(f"K{n}", (Command,), {"key": f"bench.stream.key.{n:05d}", "run": echo})
        registry.register(command)
        registry.ask(command.key, 0)
    gc.collect()
    spans = []
    for _ in range(ticks + 1):
        started = time.thread_time()
        body = batch(registry.all_metrics()) + PING
        spans.append((time.thread_time() - started) * 1000)
    print(json.dumps({"keys": count, "bytes": len(body), "ms": spans[1:]}))
finally:
    registry.shutdown(timeout=30.0)
"""


def _landed_tree(into: pathlib.Path) -> str | None:
    """Extract the landed commit's ``actors`` and ``supervision`` into ``into``; None, or why
    it could not."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", LANDED, "actors", "supervision"],
            capture_output=True,
            check=False,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"git could not be run: {exc}"
    if archive.returncode != 0:
        error = archive.stderr.decode(errors="replace").strip()
        return f"git archive {LANDED[:7]} failed: {error}"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return None


def measure_landed(plan: StreamPlan) -> tuple[list[LandedCost], str | None]:
    """The landed code's tick at each of ``plan.landed_keys``, or why it was not measured."""
    with tempfile.TemporaryDirectory(prefix="hystrix-landed-") as tree:
        why = _landed_tree(pathlib.Path(tree))
        if why is not None:
            return [], why
        costs = []
        for count in plan.landed_keys:
            done = subprocess.run(
                [sys.executable, "-c", _LANDED_SCRIPT, str(count), str(plan.ticks)],
                cwd=tree,
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
            if done.returncode != 0:
                return costs, f"the landed code failed at {count} keys: {done.stderr[-300:]}"
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            costs.append(LandedCost(figures["keys"], figures["bytes"], figures["ms"]))
        return costs, None


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def _ms(value: float) -> str:
    return f"{value:.1f}"


def render_section(
    ours: list[StreamCost], landed: list[LandedCost], why_not: str | None, plan: StreamPlan
) -> list[str]:
    by_keys = {cost.keys: cost for cost in landed}
    lines = [
        STREAM_HEADING,
        "",
        "| Keys (used, idle) | bytes per tick | first tick ms | tick, keys idle: p50 ms (max)"
        " | tick after every key was asked ms | stream of 1 key (`?keys=`): picked µs, alone µs,"
        " bytes"
        " | landed: tick per stream p50 ms | landed ÷ ours (idle) | Target (issue) | Result |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cost in ours:
        base = by_keys.get(cost.keys)
        targets = []
        if cost.keys == TARGET_KEYS:
            targets.append(Target(f"≤ {TARGET_MS:g} ms CPU", cost.idle_p50, TARGET_MS))
        target, result = targets_cell(targets)
        lines.append(
            f"| {cost.keys:,} | {_mb(cost.bytes)} | {_ms(cost.first_ms)}"
            f" | {_ms(cost.idle_p50)} ({_ms(max(cost.idle_ms))})"
            f" | {_ms(statistics.median(cost.busy_ms))}"
            f" | {cost.filtered_us:.0f}, {cost.alone_us:.0f}, {cost.filtered_bytes:,} B"
            f" | {_ms(base.p50) if base else 'not measured'}"
            f" | {x(base.p50 / cost.idle_p50) if base else 'n/a'}"
            f" | {target} | {result} |"
        )
    lines += [
        "",
        f"| {plan.streams} streams open at once | ticks made per round of every stream asking"
        " | CPU per round p50 ms | ÷ one stream's idle tick | landed: per round (one tick per"
        " stream) ms |",
        "|---|---|---|---|---|",
    ]
    for cost in ours:
        base = by_keys.get(cost.keys)
        shared = statistics.median(cost.shared_ms)
        lines.append(
            f"| {cost.keys:,} keys | {cost.shared_made / cost.rounds:g}"
            f" | {_ms(shared)} | {x(shared / cost.idle_p50)}"
            f" | {_ms(base.p50 * plan.streams) if base else 'not measured'} |"
        )
    lines += [
        "",
        "- Each registry holds that many keys of an echo command, each asked once and then left"
        f" idle until it passivated (`passivate_after={PASSIVATE_AFTER:g}`: its threads"
        " stopped, its gate and metrics kept), as the issue's scale check does; threads alive"
        f" then with the largest registry: {max(c.threads for c in ours):,}. The keys asked"
        ' again for the "after every key was asked" rows start again (and passivate again'
        " later). A tick is made the way the apps make it"
        " (`actors.ticks.Ticks.next`: `registry.all_metrics()` read once, rendered by the app's"
        " `Renderer`, joined once with its ping); CPU is the making thread's"
        " (`time.thread_time`), the garbage collector on. Idle: the median of"
        f' {plan.ticks} ticks in a row (each a new tick); "after every key was asked": each'
        " key asked once more just before the tick, so every key is read and rendered again"
        f" (median of {plan.busy_ticks}).",
        "- Where a tick's CPU goes with idle keys: reading each key's metrics"
        " (`port.metrics()`: the gate's lock, a `CommandMetrics` and a `PoolMetrics` built)"
        " takes most of it; the rolling counts and latency percentiles are not computed again"
        " (`supervision.metrics` keeps a read until a record or a bucket leaving the window"
        " changes it), and each key's messages are not rendered again (only `currentTime` is"
        " written anew). A stream of one key picks its two messages from a tick the app made"
        ' for its other streams ("picked": the CPU of the pick alone), or, with no tick'
        ' fresh, reads its key by itself ("alone": `registry.metrics(key)`, rendered; a'
        f" stream of at most {FEW_KEYS} keys does so).",
        f"- Landed: the commit before issue 12 ({LANDED[:7]}), from `git archive`, in a"
        " subprocess of this run: every open stream called `batch(registry.all_metrics())`"
        " at each tick, so its cost per tick is multiplied by the streams open. Its keys do not"
        " passivate (two threads each). The issue measured"
        f" {ISSUE_FIGURE} at 2,000 keys. Not run at 10,000 keys (20,000 threads).",
    ]
    if why_not is not None:
        lines.append(f"- The landed code was not measured in this run: {why_not}.")
    return lines


def stream_report(plan: StreamPlan) -> list[str]:
    """Measure ours and the landed code's; the section's lines."""
    ours = [measure_ours(count, plan) for count in plan.keys]
    landed, why_not = measure_landed(plan)
    return render_section(ours, landed, why_not, plan)


def main(argv: list[str] | None = None) -> int:
    return section_main(
        argv,
        prog="python -m benchmarks.stream_scale",
        description="Only the stream-at-scale section of the benchmark.",
        quick_help="a short run",
        report=lambda quick: stream_report(StreamPlan.quick() if quick else StreamPlan.full()),
    )


if __name__ == "__main__":
    sys.exit(main())
