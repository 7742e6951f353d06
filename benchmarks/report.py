"""The benchmark's report: tables with the issue's targets beside the figures, as Markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .cells import Target, targets_cell, us, x
from .latency import Latency
from .overload import Overload
from .overload_report import overload_section
from .pipeline_report import PipelineFigures, pipeline_section
from .throughput import Throughput

__all__ = [
    "BARE_ASK",
    "BARE_FUNCTION",
    "OURS_CACHE_HIT",
    "HAND_ROLLED",
    "IDEAL_PER_SECOND",
    "OURS_CONTEXT",
    "OURS_INJECTION_READY",
    "OURS_METRICS",
    "OURS_REJECTED",
    "OURS_SEMAPHORE",
    "OURS_SHORT_CIRCUIT",
    "OURS_SUCCESS",
    "OURS_THROUGHPUT",
    "POOL_ALONE",
    "PYBREAKER_CALL",
    "UNPINNED",
    "RunInfo",
    "Target",
    "render",
]

BARE_FUNCTION = "bare function call"
BARE_ASK = "bare pykka ask (ThreadingActor echo)"
HAND_ROLLED = "hand-rolled: ThreadPoolExecutor(10) + pybreaker + result(timeout) + fallback"
OURS_SUCCESS = "ours: `registry.ask`, success"
OURS_SEMAPHORE = (
    'ours: `registry.ask`, success, `isolation="semaphore"` (run on the caller\'s thread)'
)
#: The success path of a registry that allows fault injection, none active (issue 14).
OURS_INJECTION_READY = "ours: `registry.ask`, success, `allow_injection=True`, no injection active"
#: An ask answered from a request scope's cache (issue 14), the scope entered with
#: ``Context.run`` around each ask (as a request's code runs in its context).
OURS_CACHE_HIT = (
    "ours: `registry.ask`, a cache hit in a request scope (`cache_key`, the scope's context"
    " entered with `Context.run`)"
)
PYBREAKER_CALL = (
    "pybreaker: `CircuitBreaker().call(f, x)` (on the caller's thread, no bulkhead, no timeout)"
)
#: Suffix of the rows measured without pinning the process to one CPU.
UNPINNED = ", threads not pinned"
OURS_SHORT_CIRCUIT = "ours: `registry.ask`, short-circuit (force_open, fallback)"
OURS_REJECTED = "ours: `registry.ask`, rejected (bulkhead full, fallback)"
#: What the rolling metrics add to one successful ask, timed alone (issue 4).
OURS_METRICS = (
    "ours: the metrics one successful ask records (events + total latency under the gate lock,"
    " run time, concurrency maxima)"
)
#: What carrying the caller's context adds to one successful ask, timed alone (issue 10).
OURS_CONTEXT = (
    "ours: the context propagation one successful ask does (copy_context at admission, a fresh"
    " copy entered on the worker)"
)
#: The throughput variant without any breaker (context for the hand-rolled figure).
POOL_ALONE = "ThreadPoolExecutor(10) alone, no breaker (context only)"
OURS_THROUGHPUT = "ours: `registry.ask`, max_concurrent_requests=10"

#: 10 callers against a dependency that takes 10 ms: at best 1,000 calls/s.
IDEAL_PER_SECOND = 1000.0


@dataclass(frozen=True, slots=True)
class RunInfo:
    date: str
    python: str
    pykka: str
    pybreaker: str
    structlog: str
    cores: int
    platform: str
    mode: str
    latency_plan: str
    throughput_plan: str
    timer_overhead_ns: int
    pybreaker_note: str
    #: What the "10 ms" dependency really took per call during the throughput slices.
    dependency_mean_ms: float = 0.0
    dependency_p99_ms: float = 0.0
    seconds: float = 0.0
    overload_plan: str = ""
    #: The bulkhead each overload key has: the calls in flight it must hold at, exactly.
    overload_slots: int = 10
    #: ``sys.getswitchinterval()``: how long a busy thread may keep the GIL from the others.
    switch_interval_ms: float = 5.0


def latency_targets(latencies: Mapping[str, Latency]) -> dict[str, list[Target]]:
    ask = latencies[BARE_ASK]
    ours = latencies[OURS_SUCCESS]
    short = latencies[OURS_SHORT_CIRCUIT]
    return {
        OURS_SUCCESS: [
            Target("p50 <= 1.3x ask (issue 12)", ours.p50_us / ask.p50_us, 1.3),
            Target("p99 <= 3x ask", ours.p99_us / ask.p99_us, 3.0),
        ],
        # the same path in a registry that allows injection: one attribute read per run, as on
        # every registry; two registries on this path differ by up to ~6 % from run to run
        OURS_INJECTION_READY: [
            Target(
                "p50 <= 1.1x success: no measurable cost (issue 14)",
                latencies[OURS_INJECTION_READY].p50_us / ours.p50_us,
                1.1,
            )
        ],
        OURS_SEMAPHORE: [
            Target("p50 <= 0.5x ask (issue 12)", latencies[OURS_SEMAPHORE].p50_us / ask.p50_us, 0.5)
        ],
        OURS_SHORT_CIRCUIT: [Target("p50 <= 0.25x ask", short.p50_us / ask.p50_us, 0.25)],
        # issue 14 asks for the cost of a hit beside a success-path ask
        OURS_CACHE_HIT: [
            Target("p50 <= 0.25x success", latencies[OURS_CACHE_HIT].p50_us / ours.p50_us, 0.25)
        ],
        # the success path with propagation over the same path less what propagation costs
        OURS_CONTEXT: [
            Target(
                "success <= 1.05x without it",
                ours.p50_us / max(ours.p50_us - latencies[OURS_CONTEXT].p50_us, 1e-9),
                1.05,
            )
        ],
    }


def throughput_targets(throughputs: Mapping[str, Throughput]) -> list[Target]:
    ours = throughputs[OURS_THROUGHPUT].per_second
    theirs = throughputs[HAND_ROLLED].per_second
    return [
        Target(">= 90% of ideal", 100 * ours / IDEAL_PER_SECOND, 90.0, at_least=True),
        Target(">= 5x hand-rolled", ours / theirs if theirs else float("inf"), 5.0, at_least=True),
    ]


def _latency_table(latencies: Mapping[str, Latency], suffix: str = "") -> list[str]:
    """The rows whose names end with ``suffix`` (none: every row but the unpinned ones), as
    ratios to the bare ask measured with them."""
    ask = latencies[BARE_ASK + suffix]
    targets = latency_targets(latencies) if not suffix else {}
    lines = [
        "| Path | p50 µs | p99 µs | p50 ÷ ask | p99 ÷ ask | Target (issue) | Result |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for name, figure in latencies.items():
        if name.endswith(UNPINNED) != bool(suffix):
            continue
        labels, verdicts = targets_cell(targets.get(name, []))
        lines.append(
            f"| {name} | {us(figure.p50_us)} | {us(figure.p99_us)}"
            f" | {x(figure.p50_us / ask.p50_us)} | {x(figure.p99_us / ask.p99_us)}"
            f" | {labels} | {verdicts} |"
        )
    return lines


def _throughput_table(throughputs: Mapping[str, Throughput]) -> list[str]:
    theirs = throughputs[HAND_ROLLED].per_second
    labels, verdicts = targets_cell(throughput_targets(throughputs))
    lines = [
        "| Variant (10 callers, 10 ms dependency) | calls/s | % of ideal 1,000/s"
        " | ÷ hand-rolled | fallbacks | Target (issue) | Result |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for name, figure in throughputs.items():
        mine = (labels, verdicts) if name == OURS_THROUGHPUT else ("", "")
        times = x(figure.per_second / theirs) if theirs else "n/a"
        share = 100 * figure.per_second / IDEAL_PER_SECOND
        lines.append(
            f"| {name} | {figure.per_second:,.0f} | {share:.1f}%"
            f" | {times} | {figure.fallbacks} | {mine[0]} | {mine[1]} |"
        )
    return lines


def _ceiling_note(info: RunInfo, throughputs: Mapping[str, Throughput]) -> list[str]:
    if info.dependency_mean_ms <= 0:
        return []
    ceiling = 10 * 1000 / info.dependency_mean_ms
    ours = throughputs[OURS_THROUGHPUT].per_second
    return [
        f"- The dependency's `time.sleep(0.01)` itself took {info.dependency_mean_ms:.2f} ms on"
        f" average (p99 {info.dependency_p99_ms:.2f} ms) during the throughput slices, so 10"
        f" callers could reach at most {ceiling:,.0f} calls/s with zero overhead; ours reached"
        f" {100 * ours / ceiling:.1f}% of that ceiling (the target is against the nominal 1,000)."
    ]


def render(
    info: RunInfo,
    latencies: Mapping[str, Latency],
    throughputs: Mapping[str, Throughput],
    overload: Overload,
    pipelines: PipelineFigures,
    fleet: Sequence[str] = (),
    scale: Sequence[str] = (),
    stream: Sequence[str] = (),
    load_shaping: Sequence[str] = (),
    collapsing: Sequence[str] = (),
) -> str:
    """The whole report as Markdown; ``fleet``: the fleet section's lines (``benchmarks.fleet``);
    ``scale``: the thousands-of-keys section's (``benchmarks.scale``); ``stream``: the stream
    at scale's (``benchmarks.stream_scale``); ``load_shaping``: retries, hedging and adaptive
    limits (``benchmarks.load_shaping``); ``collapsing``: with and without a request collapser
    (``benchmarks.collapsing``)."""
    lines = [
        "# Performance",
        "",
        "Generated by `make bench` (`python -m benchmarks`); every figure below comes from one"
        " run.",
        "",
        f"- Date: {info.date}",
        f"- Python {info.python}, pykka {info.pykka}, pybreaker {info.pybreaker},"
        f" structlog {info.structlog}",
        f"- Machine: {info.cores} cores, {info.platform}",
        f"- Mode: {info.mode}; the run took {info.seconds:.1f} s",
        f"- Latency: {info.latency_plan}",
        f"- Throughput: {info.throughput_plan}",
        f"- Overload: {info.overload_plan}",
        "",
        "## How to read this",
        "",
        "The machine is shared and noisy, so absolute microseconds move from run to run; the"
        ' ratios to a baseline measured in the same run (columns "÷ ask", "÷ hand-rolled") are'
        " the figures to compare. Each latency is the median, over interleaved rounds, of that"
        " round's p50 or p99 of single blocking calls from one caller thread (garbage collector"
        " off during the rounds, time taken with `time.perf_counter_ns`; each sample includes"
        f" about {info.timer_overhead_ns} ns of timing overhead, which is most of the bare"
        " function call's figure). A bare pykka ask is one round trip to an actor thread, the"
        " least any actor-based isolation can cost. The throughput rows count calls answered"
        " with the dependency's value per second, with 10 caller threads against a dependency"
        ' that sleeps 10 ms: at most 1,000 calls/s. "Target" is the issue\'s target for that'
        " row; PASS or MISS is what this run reached, unadjusted.",
        "",
        "A thread hand-off costs several times more when the machine is idle than when it is"
        " busy (an idle core first has to wake up): on this 2-core machine a bare pykka ask"
        " measured about 30-45 µs with another process keeping the cores busy and 120-150 µs"
        " with the machine idle. So the absolute figures below swing with the machine's load;"
        " the ratios, measured side by side, hold.",
        "",
        "## Latency of one call",
        "",
        "Measured with every thread of the benchmark pinned to one CPU: a hand-off between two"
        " threads is then a context switch, whose cost is steady, rather than a wake-up of the"
        " other core, whose cost swings several-fold with how deeply that core sleeps (which"
        " core the scheduler picks would decide the ratio). The second table is the same pair"
        " unpinned, for reference.",
        "",
        *_latency_table(latencies),
        "",
        *([*_latency_table(latencies, UNPINNED), ""] if BARE_ASK + UNPINNED in latencies else []),
        "## Throughput against a 10 ms dependency",
        "",
        *_throughput_table(throughputs),
        "",
        *pipeline_section(latencies, pipelines, throughputs[OURS_THROUGHPUT].per_second),
        "",
        *overload_section(
            overload,
            cores=info.cores,
            slots=info.overload_slots,
            switch_interval_ms=info.switch_interval_ms,
        ),
        "",
        *([*fleet, ""] if fleet else []),
        *([*scale, ""] if scale else []),
        *([*stream, ""] if stream else []),
        *([*load_shaping, ""] if load_shaping else []),
        *([*collapsing, ""] if collapsing else []),
        "## Notes",
        "",
        f"- {info.pybreaker_note}",
        *_ceiling_note(info, throughputs),
        "- The hand-rolled version submits `breaker.call(dependency, payload)` to the pool and"
        " waits with `future.result(timeout=1.0)` inside try/except that returns the fallback;"
        ' the "no breaker" row is the same pool without pybreaker, to show what the breaker'
        " itself costs under concurrency.",
        "- Our short-circuit and rejection paths are answered on the caller's thread (no actor"
        " hop). The latency and throughput tables run with default logging: structlog not"
        " configured and `logging` untouched, so the library's events go to"
        ' `logging.getLogger("actors")` at Python\'s default WARNING level (a `NullHandler`'
        " keeps the throttled `command.rejected` lines out of this report); the"
        " short-circuit's debug event costs one level check and renders nothing. The overload"
        " part configures structlog (see its notes).",
        "",
    ]
    return "\n".join(lines)
