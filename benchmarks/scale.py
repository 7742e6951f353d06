"""Thousands of keys (issue 12): the threads and memory of idle keys once they passivate, what
the first call after passivation costs, and the threads of busy keys on their own pools against
one shared pool (``CommandConfig(pool=...)``). Part of ``python -m benchmarks``; alone:
``python -m benchmarks.scale [--quick] [--output PATH]``.

Every row is measured in a fresh Python process of its own (``--child``), so the memory it reads
is that of its keys alone: N keys are registered (one ``Command`` class each, as an application
writes them) and called once each, one after the other; then they are left idle until every
key has passivated. Threads are counted with ``threading.enumerate()``; memory is the process's
resident set (``VmRSS`` in ``/proc/self/status``, after ``gc.collect()``), before the registry
was made and once every key is idle, divided by N.
"""

from __future__ import annotations

import gc
import json
import linecache
import pathlib
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any

from .section import section_main

__all__ = ["SCALE_HEADING", "ScalePlan", "main", "scale_report"]

SCALE_HEADING = "## Thousands of keys: passivation"

#: Targets (issue 12).
MAX_IDLE_KEY_BYTES = 20 * 1024
MAX_LIBRARY_THREADS = 10
MAX_FIRST_CALL_EXTRA_US = 2000.0

#: ``passivate_after`` of the key called before the baseline is read.
WARM_UP_PASSIVATE_AFTER = 0.05

#: Names of the threads a key owns while it is awake.
_KEY_THREADS = ("CommandActor-", "WorkerActor-", "hystrix-async-")


@dataclass(frozen=True, slots=True)
class ScalePlan:
    """How much to measure."""

    #: Keys of the main row, and of the row that shows the thread count does not grow with them.
    keys: int
    small_keys: int
    #: Keys of the row with passivation off (what every key cost before issue 12).
    baseline_keys: int
    #: ``passivate_after`` of the rows with passivation on: short, so that the keys called
    #: first are idle again before the last ones are called (the peak of threads stays low).
    passivate_after: float
    #: Keys whose first call after passivation is timed, and warm calls timed after each.
    first_calls: int
    warm_calls: int
    #: Keys traced with ``tracemalloc`` (where an idle key's bytes go).
    trace_keys: int
    #: Busy keys (own pools against one shared pool): keys, caller threads, seconds of calls,
    #: and the shared pool's size.
    busy_keys: int = 1_000
    busy_callers: int = 20
    busy_seconds: float = 3.0
    busy_pool_size: int = 20

    @classmethod
    def full(cls) -> ScalePlan:
        return cls(
            keys=10_000,
            small_keys=1_000,
            baseline_keys=2_000,
            passivate_after=1.0,
            first_calls=1_000,
            warm_calls=5,
            trace_keys=1_000,
        )

    @classmethod
    def quick(cls) -> ScalePlan:
        return cls(
            keys=1_000,
            small_keys=200,
            baseline_keys=300,
            passivate_after=0.5,
            first_calls=200,
            warm_calls=5,
            trace_keys=200,
            busy_keys=100,
            busy_seconds=1.0,
        )


# -- in the child process ----------------------------------------------------------------------


def _rss_bytes() -> int:
    gc.collect()
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    msg = "no VmRSS in /proc/self/status"
    raise RuntimeError(msg)


def _key_threads() -> int:
    return sum(thread.name.startswith(_KEY_THREADS) for thread in threading.enumerate())


def _register_and_call(
    registry: Any, keys: int, passivate_after: float | None, prefix: str = "scale"
) -> int:
    """Register ``keys`` keys (a class each), call each once; the most threads seen."""
    from actors import Command, CommandConfig  # noqa: PLC0415 - the child imports late
    from supervision import SupervisionPolicy  # noqa: PLC0415

    class Echo(Command):
        def run(self, payload: Any) -> Any:
            return payload

    config = CommandConfig(supervision=SupervisionPolicy(passivate_after=passivate_after))
    peak = threading.active_count()
    for n in range(keys):
        command = type(f"Scale{n}", (Echo,), {"key": f"{prefix}-{n}", "config": config})
        registry.register(command)
        if registry.ask(command.key, n) != n:
            msg = f"{command.key} answered something else"
            raise RuntimeError(msg)
        if n % 50 == 0:
            peak = max(peak, threading.active_count())
    return max(peak, threading.active_count())


def _wait_idle(keys: int, passivate_after: float, threads: int | None = None) -> float:
    """Wait until no key has a thread left, then (given ``threads``) until the library is back
    to that many threads (runners started for a burst of jobs end after an idle second); the
    seconds it took."""
    started = time.monotonic()
    deadline = started + 3 * passivate_after + 60.0 + keys / 100
    while _key_threads():
        if time.monotonic() > deadline:
            msg = f"{_key_threads()} key threads still alive after {deadline - started:.0f} s"
            raise RuntimeError(msg)
        time.sleep(0.05)
    idle = time.monotonic() - started
    settle = time.monotonic() + 10.0
    while threads is not None and threading.active_count() > threads:
        if time.monotonic() > settle:
            break  # reported as it is
        time.sleep(0.05)
    return idle


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))]


def measure_keys(
    keys: int, passivate_after: float | None, first_calls: int = 0, warm_calls: int = 0
) -> dict[str, Any]:
    """One row: threads and memory of ``keys`` keys called once, once idle (or, with
    passivation off, as they are); then the first call after passivation against warm ones."""
    from actors import CommandRegistry  # noqa: PLC0415

    threads_before = threading.active_count()
    registry = CommandRegistry()
    try:
        # one key first, idle again at once: the registry's own threads are started, and
        # every module a call needs is imported, before the baseline is read
        _register_and_call(registry, 1, WARM_UP_PASSIVATE_AFTER, prefix="warm-up")
        _wait_idle(1, WARM_UP_PASSIVATE_AFTER)
        library = threading.active_count()
        rss_before = _rss_bytes()
        started = time.perf_counter()
        peak = _register_and_call(registry, keys, passivate_after)
        called_s = time.perf_counter() - started
        idle_s = 0.0 if passivate_after is None else _wait_idle(keys, passivate_after, library)
        rss_after = _rss_bytes()
        threads_after = threading.active_count()
        awake = sum(registry.health(f"scale-{n}").workers > 0 for n in range(keys))
        figures: dict[str, Any] = {
            "keys": keys,
            "passivate_after": passivate_after,
            "called_s": called_s,
            "idle_s": idle_s,
            "peak_threads": peak - threads_before,
            "library_threads": threads_after - threads_before,
            "thread_names": sorted(
                {t.name.rstrip("0123456789").rstrip("-") for t in threading.enumerate()}
            ),
            "bytes_per_key": (rss_after - rss_before) / keys,
            "rss_before": rss_before,
            "rss_after": rss_after,
            "keys_with_workers": awake,
        }
        if first_calls:
            figures.update(_first_calls(registry, keys, first_calls, warm_calls))
        return figures
    finally:
        registry.shutdown(timeout=5.0)


def measure_busy(keys: int, callers: int, seconds: float, pool_size: int | None) -> dict[str, Any]:
    """Callers asking random keys (a ``run`` of about 1 ms) for ``seconds``, the keys on their
    own pools (``pool_size`` None) or all on one shared pool of ``pool_size`` workers: the most
    threads seen, calls per second, rejections."""
    import random  # noqa: PLC0415

    from actors import Command, CommandConfig, CommandRegistry, PoolConfig  # noqa: PLC0415
    from supervision import SupervisionPolicy  # noqa: PLC0415

    class Sleepy(Command):
        def run(self, payload: Any) -> Any:
            time.sleep(0.001)
            return payload

    pool = None if pool_size is None else "shared"
    config = CommandConfig(pool=pool, supervision=SupervisionPolicy(passivate_after=None))
    threads_before = threading.active_count()
    registry = CommandRegistry()
    try:
        if pool is not None and pool_size is not None:
            registry.configure_pool(pool, PoolConfig(max_concurrent_requests=pool_size))
        for n in range(keys):
            registry.register(type(f"Busy{n}", (Sleepy,), {"key": f"busy-{n}", "config": config}))
        stop = threading.Event()
        counts = [[0, 0] for _ in range(callers)]  # per caller: answered ok, rejected

        def call(mine: list[int], seed: int) -> None:
            pick = random.Random(seed).randrange
            while not stop.is_set():
                reply = registry.ask_reply(f"busy-{pick(keys)}", 0)
                mine[0 if reply.ok else 1] += 1

        threads = [
            threading.Thread(target=call, args=(counts[n], n), daemon=True) for n in range(callers)
        ]
        peak = threading.active_count()
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        while time.perf_counter() - started < seconds:
            peak = max(peak, threading.active_count())
            time.sleep(0.02)
        stop.set()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        ok = sum(c[0] for c in counts)
        return {
            "keys": keys,
            "callers": callers,
            "pool_size": pool_size,
            "peak_threads": peak - threads_before - callers,
            "calls_per_s": (ok + sum(c[1] for c in counts)) / elapsed,
            "ok": ok,
            "rejected": sum(c[1] for c in counts),
        }
    finally:
        registry.shutdown(timeout=5.0)


def _first_calls(registry: Any, keys: int, count: int, warm_calls: int) -> dict[str, Any]:
    """Time the first call to ``count`` passivated keys, each followed by warm calls."""
    clock = time.perf_counter_ns
    step = max(1, keys // count)
    first: list[float] = []
    warm: list[float] = []
    gc.disable()
    try:
        for n in range(0, step * count, step):
            key = f"scale-{n}"
            if registry.health(key).workers:
                msg = f"{key} was not passivated"
                raise RuntimeError(msg)
            t0 = clock()
            registry.ask(key, n)
            first.append((clock() - t0) / 1000)
            for _ in range(warm_calls):
                t0 = clock()
                registry.ask(key, n)
                warm.append((clock() - t0) / 1000)
    finally:
        gc.enable()
    return {
        "first_p50_us": statistics.median(first),
        "first_p90_us": _percentile(first, 0.9),
        "warm_p50_us": statistics.median(warm),
        "warm_p90_us": _percentile(warm, 0.9),
        "first_calls": len(first),
        "warm_calls": len(warm),
    }


def trace_keys(keys: int, passivate_after: float) -> dict[str, Any]:
    """Where an idle key's bytes go: ``tracemalloc`` lines, per key, once ``keys`` are idle."""
    from actors import CommandRegistry  # noqa: PLC0415

    registry = CommandRegistry()
    try:
        _register_and_call(registry, 1, WARM_UP_PASSIVATE_AFTER, prefix="warm-up")
        _wait_idle(1, WARM_UP_PASSIVATE_AFTER)
        library = threading.active_count()
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        _register_and_call(registry, keys, passivate_after)
        _wait_idle(keys, passivate_after, library)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
    finally:
        registry.shutdown(timeout=5.0)
    root = str(pathlib.Path(__file__).resolve().parents[1]) + "/"
    lines = []
    for stat in after.compare_to(before, "lineno"):
        frame = stat.traceback[0]
        where = f"{frame.filename.removeprefix(root)}:{frame.lineno}"
        code = linecache.getline(frame.filename, frame.lineno).strip()
        lines.append((where, code, stat.size_diff / keys))
    return {
        "keys": keys,
        "bytes_per_key": sum(size for _, _, size in lines),
        "lines": [line for line in lines if line[2] >= 100][:12],
    }


def _child(argv: list[str]) -> int:
    job = json.loads(argv[0])
    kind = job.pop("kind")
    if kind == "trace":
        figures = trace_keys(**job)
    elif kind == "busy":
        figures = measure_busy(**job)
    else:
        figures = measure_keys(**job)
    print(json.dumps(figures))
    return 0


# -- in the parent ------------------------------------------------------------------------------


def _run_child(**job: Any) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", "--child", json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        msg = f"the scale child {job} failed:\n{done.stderr}"
        raise RuntimeError(msg)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _kb(n: float) -> str:
    return f"{n / 1024:,.1f} KB"


def _verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**MISS**"


def scale_report(plan: ScalePlan) -> list[str]:
    """Measure (each row in a process of its own) and render the section."""
    started = time.perf_counter()
    main = _run_child(
        kind="keys",
        keys=plan.keys,
        passivate_after=plan.passivate_after,
        first_calls=plan.first_calls,
        warm_calls=plan.warm_calls,
    )
    small = _run_child(kind="keys", keys=plan.small_keys, passivate_after=plan.passivate_after)
    off = _run_child(kind="keys", keys=plan.baseline_keys, passivate_after=None)
    traced = _run_child(kind="trace", keys=plan.trace_keys, passivate_after=plan.passivate_after)
    busy = [
        _run_child(
            kind="busy",
            keys=plan.busy_keys,
            callers=plan.busy_callers,
            seconds=plan.busy_seconds,
            pool_size=size,
        )
        for size in (None, plan.busy_pool_size)
    ]
    seconds = time.perf_counter() - started
    return render(plan, main, small, off, traced, seconds) + render_busy(plan, busy)


def render_busy(plan: ScalePlan, rows: list[dict[str, Any]]) -> list[str]:
    """The busy keys' subsection: own pools against one shared pool."""
    own = rows[0]
    lines = [
        "",
        "### Busy keys: their own pools or one shared pool",
        "",
        f"{plan.busy_keys:,} keys, {plan.busy_callers} caller threads asking random keys for"
        f" {plan.busy_seconds:g} s (`run` sleeps 1 ms), passivation off, each setup in a process"
        " of its own. On their own pools every key called keeps a supervisor and a worker; on"
        " one shared pool (`CommandConfig(pool=...)`, sized by `configure_pool`) the keys share"
        " its workers and its one supervisor. Threads are the library's, at the peak (the"
        " callers not counted).",
        "",
        "| Pools | library threads at the peak | threads ÷ own pools | calls/s | calls/s ÷ own"
        " pools | rejected |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        size = row["pool_size"]
        name = "each key its own" if size is None else f"one shared pool of {size}"
        lines.append(
            f"| {name} | {row['peak_threads']:,} | {row['peak_threads'] / own['peak_threads']:.2f}x"
            f" | {row['calls_per_s']:,.0f} | {row['calls_per_s'] / own['calls_per_s']:.2f}x"
            f" | {row['rejected']:,} |"
        )
    return lines


def render(
    plan: ScalePlan,
    main: dict[str, Any],
    small: dict[str, Any],
    off: dict[str, Any],
    traced: dict[str, Any],
    seconds: float,
) -> list[str]:
    same_threads = main["library_threads"] == small["library_threads"]
    threads_ok = same_threads and main["library_threads"] <= MAX_LIBRARY_THREADS
    memory_ok = main["bytes_per_key"] <= MAX_IDLE_KEY_BYTES
    extra = main["first_p50_us"] - main["warm_p50_us"]
    lines = [
        SCALE_HEADING,
        "",
        f"Each row is a fresh process (`python -m benchmarks.scale`, {seconds:.0f} s in all):"
        " N keys registered (one `Command` class each) and called once each, one after the"
        " other, then left idle until every key has passivated (no thread named after a key's"
        " actors or loop is left). Library threads are counted with `threading.enumerate()`"
        " against the count before the registry was made. Memory is the resident set (`VmRSS`,"
        " after `gc.collect()`) once the N keys are idle, less the one before they were"
        " registered (the registry made, one key called and passivated: its threads started and"
        " every module imported), divided by N: the keys' classes, registrations, ports, gates"
        " (breakers, windows, counts) and configs, and what the allocator keeps of the threads"
        " that were awake at the peak (which is why fewer keys show more bytes each)."
        f" `passivate_after={plan.passivate_after:g}` keeps that peak low: the keys called first"
        " are asleep again before the last ones are called.",
        "",
        "| Keys | passivate_after | threads at the peak | library threads once idle"
        " | RSS per idle key | keys still awake | Target (issue 12) | Result |",
        "|---:|---|---:|---:|---:|---:|---|---|",
    ]
    target = (
        f"threads: a handful (≤ {MAX_LIBRARY_THREADS}), the same for {small['keys']:,} and"
        f" {main['keys']:,} keys; RSS ≤ {_kb(MAX_IDLE_KEY_BYTES)} per key"
    )
    for row, cells in (
        (main, (target, _verdict(threads_ok and memory_ok))),
        (small, ("", "")),
        (off, ("today's figures: 2,000 keys = 4,004 threads, 183 MB", "")),
    ):
        after = row["passivate_after"]
        setting = "None (passivation off)" if after is None else f"{after:g} s"
        lines.append(
            f"| {row['keys']:,} | {setting} | {row['peak_threads']:,}"
            f" | {row['library_threads']:,} | {_kb(row['bytes_per_key'])}"
            f" | {row['keys_with_workers']:,} | {cells[0]} | {cells[1]} |"
        )
    lines += [
        "",
        f"Threads left once idle ({main['keys']:,} keys): "
        + ", ".join(f"`{name}`" for name in main["thread_names"])
        + f". With passivation off, {off['keys']:,} keys kept {off['library_threads']:,}"
        f" threads and {_kb(off['bytes_per_key'])} each"
        f" ({(off['rss_after'] - off['rss_before']) / 2**20:,.0f} MB in all).",
        "",
        "### The first call after passivation",
        "",
        f"{main['first_calls']:,} passivated keys of the {main['keys']:,}-key row, each asked"
        f" once (its first call after passivation: a supervisor and a worker start) and then"
        f" {plan.warm_calls} times more (warm calls: a parked worker takes each); one caller"
        " thread, garbage collector off, not pinned to a CPU.",
        "",
        "| Call | p50 µs | p90 µs | p50 ÷ warm | Target (issue 12) | Result |",
        "|---|---:|---:|---:|---|---|",
        f"| warm call | {main['warm_p50_us']:,.0f} | {main['warm_p90_us']:,.0f} | 1.00x | | |",
        f"| first call after passivation | {main['first_p50_us']:,.0f}"
        f" | {main['first_p90_us']:,.0f} | {main['first_p50_us'] / main['warm_p50_us']:.2f}x"
        f" | p50 ≤ warm + {MAX_FIRST_CALL_EXTRA_US:,.0f} µs (this run: +{extra:,.0f} µs)"
        f" | {_verdict(extra <= MAX_FIRST_CALL_EXTRA_US)} |",
        "",
        f"### Where an idle key's bytes go ({traced['keys']:,} keys, `tracemalloc`)",
        "",
        f"Python allocations still held once the keys are idle: {traced['bytes_per_key']:,.0f}"
        " bytes per key in all (the resident set adds the allocator's own overhead). Lines"
        " holding 100 bytes or more per key:",
        "",
        "| Allocated at | code | bytes per key |",
        "|---|---|---:|",
        *(
            f"| `{where}` | `{code.replace('|', '¦')}` | {size:,.0f} |"
            for where, code, size in traced["lines"]
        ),
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child(argv[1:])
    return section_main(
        argv,
        prog="python -m benchmarks.scale",
        description="Only the thousands-of-keys section of the benchmark (passivation).",
        quick_help="a short run (about 30 s)",
        report=lambda quick: scale_report(ScalePlan.quick() if quick else ScalePlan.full()),
    )


if __name__ == "__main__":
    sys.exit(main())
