"""The report's section on pipelines and ``ask_async``: each beside what it is built on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .cells import Target, targets_cell, us, x
from .latency import Latency
from .pipelines import MapThroughput

__all__ = [
    "ASK_ASYNC",
    "BLOCKING_ASK_IN_LOOP",
    "MAP_THROUGHPUT",
    "PIPELINE_RUN",
    "SEQUENTIAL_ASKS",
    "PipelineFigures",
    "pipeline_section",
]

PIPELINE_RUN = "ours: `Pipeline.run(x)`, 3 `Stage`s (echo)"
SEQUENTIAL_ASKS = "ours: 3 sequential `registry.ask` (echo, the same keys)"
ASK_ASYNC = "ours: `await registry.ask_async` (echo, inside one `asyncio.run`)"
BLOCKING_ASK_IN_LOOP = "ours: blocking `registry.ask` (echo, the same rounds and loop)"
MAP_THROUGHPUT = "ours: `Pipeline(Stage(10 ms key)).map(count(), max_in_flight=10)`, 1 consumer"

#: A map with 10 in flight against a dependency that takes 10 ms: at best 1,000 calls/s.
MAP_IDEAL_PER_SECOND = 1000.0


@dataclass(frozen=True, slots=True)
class PipelineFigures:
    """The pipeline rows' figures; ``ask_async`` None when this build has none."""

    map_throughput: MapThroughput
    ask_async: Mapping[str, Latency] | None
    map_plan: str
    ask_async_plan: str


def pipeline_targets(latencies: Mapping[str, Latency]) -> list[Target]:
    pipeline, asks = latencies[PIPELINE_RUN], latencies[SEQUENTIAL_ASKS]
    return [Target("p50 <= 1.2x 3 asks", pipeline.p50_us / asks.p50_us, 1.2)]


def map_targets(figure: MapThroughput) -> list[Target]:
    share = 100 * figure.per_second / MAP_IDEAL_PER_SECOND
    return [Target(">= 90% of ideal", share, 90.0, at_least=True)]


def _pair_row(ours: Latency, base: Latency, targets: list[Target]) -> str:
    labels, verdicts = targets_cell(targets)
    return (
        f"| {ours.name} | {base.name} | {us(ours.p50_us)} | {us(base.p50_us)}"
        f" | {us(ours.p99_us)} | {us(base.p99_us)} | {x(ours.p50_us / base.p50_us)}"
        f" | {x(ours.p99_us / base.p99_us)} | {labels} | {verdicts} |"
    )


def pipeline_section(
    latencies: Mapping[str, Latency], figures: PipelineFigures, callers_per_second: float
) -> list[str]:
    """The section; ``callers_per_second`` is the throughput table's 10 callers of ``ask``."""
    pipeline, asks = latencies[PIPELINE_RUN], latencies[SEQUENTIAL_ASKS]
    lines = [
        "## Pipelines and `ask_async`",
        "",
        "Each row beside its baseline, measured in the same interleaved rounds (the pipeline"
        " pair is also in the latency table above).",
        "",
        "| Ours | Baseline | p50 µs | base p50 µs | p99 µs | base p99 µs | p50 ratio"
        " | p99 ratio | Target | Result |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
        _pair_row(pipeline, asks, pipeline_targets(latencies)),
    ]
    if figures.ask_async is None:
        lines.append(
            f"| {ASK_ASYNC} | {BLOCKING_ASK_IN_LOOP} | not measured: this build has no"
            " `CommandRegistry.ask_async` | | | | | | | |"
        )
    else:
        lines.append(
            _pair_row(figures.ask_async[ASK_ASYNC], figures.ask_async[BLOCKING_ASK_IN_LOOP], [])
        )
    mapped = figures.map_throughput
    labels, verdicts = targets_cell(map_targets(mapped))
    ceiling = mapped.max_in_flight * 1000 / mapped.dependency_mean_ms
    lines += [
        "",
        "| Streaming (10 ms dependency) | calls/s | % of ideal 1,000/s"
        " | % of measured ceiling | ÷ 10 callers' `ask` | fallbacks | Target (issue) | Result |",
        "|---|---:|---:|---:|---:|---:|---|---|",
        f"| {MAP_THROUGHPUT} | {mapped.per_second:,.0f}"
        f" | {100 * mapped.per_second / MAP_IDEAL_PER_SECOND:.1f}%"
        f" | {100 * mapped.per_second / ceiling:.1f}%"
        f" | {x(mapped.per_second / callers_per_second) if callers_per_second else 'n/a'}"
        f" | {mapped.fallbacks}"
        f" | {labels} | {verdicts} |",
        "",
        f"- Pipeline latency: {pipeline.rounds} rounds x {pipeline.samples_per_round} runs,"
        " in the latency table's interleaved rounds; the pipeline and the 3 asks call the same"
        " echo key three times, with no budget.",
        f"- `ask_async`: {figures.ask_async_plan}.",
        f"- `map`: {figures.map_plan}. The dependency's `time.sleep(0.01)` took"
        f" {mapped.dependency_mean_ms:.2f} ms on average meanwhile, so {mapped.max_in_flight}"
        f" in flight could reach at most {ceiling:,.0f} calls/s (the measured ceiling). What"
        " `map` loses beyond that is its ordering: it yields results in input order and takes"
        " the next payload only after handing the oldest on, so a run that ends before the"
        " oldest leaves its slot empty until the oldest ends (the sleep's jitter can do"
        " that), and while the consumer holds a result"
        f" {mapped.max_in_flight - 1} runs are in flight, not {mapped.max_in_flight}."
        " \"÷ 10 callers' `ask`\" compares it with the throughput table's 10 independent"
        " callers of the same key, in the same run.",
    ]
    return lines
