"""Hedged requests (issue 13): the p99 of an ask against a dependency with a heavy tail, with
``HedgePolicy(percentile=95.0)`` and without, and the share of extra runs it took.

Two keys of one registry call two copies of the dependency (the same seeded draws); a few
caller threads ask one key, then the other, in alternating chunks (which goes first alternates
too), each ask timed by its caller (``time.perf_counter``) from the call to the reply.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from typing import Any

from actors import CommandConfig, CommandRegistry, EventType, HedgePolicy

from .cells import Target, targets_cell, x
from .load_shaping_common import Counter, calling, ms, percentile, run_threads

__all__ = ["HEDGED", "HEDGED_NARROW", "PLAIN", "HedgeRun", "hedge_table", "measure_hedging"]

PLAIN = "no hedging"
HEDGED = "ours: `HedgePolicy(percentile=95.0, max_extra=1, budget=0.05)`"
#: The same with the default bulkhead (10): the losers' runs hold their slots.
HEDGED_NARROW = "ours, the same with the default bulkhead of 10"

FAST_SECONDS = 0.005
SLOW_SECONDS = 0.200
SLOW_SHARE = 0.04
POLICY = HedgePolicy(percentile=95.0, max_extra=1, budget=0.05)
#: The bulkhead of the first two variants: wide enough that no ask is rejected.
WIDE = 20

#: Targets (issue 13).
P99_RATIO = 0.3
EXTRA_PERCENT = 6.0


class HeavyTail:
    """Answers after ``FAST_SECONDS``, or ``SLOW_SECONDS`` for ``SLOW_SHARE`` of its runs
    (seeded: every run draws anew, a hedge too); counts its runs."""

    def __init__(self, seed: int) -> None:
        self.runs = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def __call__(self, payload: Any) -> Any:
        self.runs.add()
        with self._lock:
            slow = self._rng.random() < SLOW_SHARE
        time.sleep(SLOW_SECONDS if slow else FAST_SECONDS)
        return payload


@dataclasses.dataclass(frozen=True, slots=True)
class HedgeRun:
    """One variant's calls: the latencies (seconds, sorted) of those answered by ``run``,
    the extra runs and the errors (rejections: the calls not timed)."""

    name: str
    latencies: list[float]
    hedges: int
    runs: int
    errors: int

    @property
    def calls(self) -> int:
        return len(self.latencies) + self.errors

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99)


@dataclasses.dataclass(slots=True)
class _Tally:
    latencies: list[float] = dataclasses.field(default_factory=list)
    hedges: int = 0
    errors: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


def _chunk(registry: CommandRegistry, key: str, callers: int, calls: int, tally: _Tally) -> None:
    each = calls // callers

    def caller(_: int) -> None:
        for n in range(each):
            started = time.perf_counter()
            reply = registry.ask_reply(key, n)
            elapsed = time.perf_counter() - started
            with tally.lock:
                if reply.error is None:
                    tally.latencies.append(elapsed)
                else:
                    tally.errors += 1
                tally.hedges += reply.events.count(EventType.HEDGE)

    run_threads(callers, caller, "bench-hedge")


def measure_hedging(*, callers: int, calls: int, chunk: int, warmup: int) -> list[HedgeRun]:
    """``calls`` asks per variant (in chunks of ``chunk``) after ``warmup`` uncounted ones."""
    registry = CommandRegistry()
    variants = {
        PLAIN: ("bench.load-shaping.hedge.plain", CommandConfig(max_concurrent_requests=WIDE)),
        HEDGED: (
            "bench.load-shaping.hedge.hedged",
            CommandConfig(hedge=POLICY, max_concurrent_requests=WIDE),
        ),
        HEDGED_NARROW: ("bench.load-shaping.hedge.narrow", CommandConfig(hedge=POLICY)),
    }
    dependencies = {name: HeavyTail(seed=95) for name in variants}
    try:
        for name, (key, config) in variants.items():
            registry.register(calling(key, config), dependencies[name])
            _chunk(registry, key, callers, warmup, _Tally())
        tallies = {name: _Tally() for name in variants}
        runs_before = {name: dependencies[name].runs.value for name in variants}
        names = [PLAIN, HEDGED]
        for round_ in range(max(1, calls // chunk)):
            turn = round_ % len(names)
            for name in names[turn:] + names[:turn]:
                _chunk(registry, variants[name][0], callers, chunk, tallies[name])
        # back to back, not in turns: between its turns its losers would finish their runs
        _chunk(registry, variants[HEDGED_NARROW][0], callers, calls // 2, tallies[HEDGED_NARROW])
        time.sleep(SLOW_SECONDS)  # the last losers finish their runs (counted below)
        return [
            HedgeRun(
                name=name,
                latencies=sorted(tally.latencies),
                hedges=tally.hedges,
                runs=dependencies[name].runs.value - runs_before[name],
                errors=tally.errors,
            )
            for name, tally in tallies.items()
        ]
    finally:
        registry.shutdown(timeout=10.0)


def hedge_targets(runs: list[HedgeRun]) -> list[Target]:
    plain = next(run for run in runs if run.name == PLAIN)
    hedged = next(run for run in runs if run.name == HEDGED)
    extra = 100 * hedged.hedges / hedged.calls
    return [
        Target(f"p99 ≤ {P99_RATIO:g}x no hedging", hedged.p99 / plain.p99, P99_RATIO),
        Target(f"extra runs ≤ {EXTRA_PERCENT:g} %", extra, EXTRA_PERCENT),
    ]


def hedge_table(runs: list[HedgeRun], *, callers: int, chunk: int, warmup: int) -> list[str]:
    """The hedging table and its notes, as Markdown lines."""
    plain = next(run for run in runs if run.name == PLAIN)
    lines = [
        "### Hedged requests",
        "",
        f"| Hedging: {callers} callers, dependency {100 - 100 * SLOW_SHARE:g} % at"
        f" {FAST_SECONDS * 1000:g} ms, {100 * SLOW_SHARE:g} % at {SLOW_SECONDS * 1000:g} ms"
        " | calls | p50 ms | p95 ms | p99 ms | max ms | p99 ÷ no hedging"
        " | extra runs (HEDGE ÷ calls) | runs ÷ calls | errors (rejected) | Target (issue)"
        " | Result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for run in runs:
        label, verdict = targets_cell(hedge_targets(runs) if run.name == HEDGED else [])
        rejected = f"{run.errors} ({100 * run.errors / run.calls:.1f} %)" if run.errors else "0"
        lines.append(
            f"| {run.name} | {run.calls:,} | {ms(percentile(run.latencies, 0.5))}"
            f" | {ms(percentile(run.latencies, 0.95))} | {ms(run.p99)}"
            f" | {ms(run.latencies[-1])} | {x(run.p99 / plain.p99)}"
            f" | {100 * run.hedges / run.calls:.2f} % | {x(run.runs / run.calls)}"
            f" | {rejected} | {label} | {verdict} |"
        )
    lines += [
        "",
        f"- Each ask is timed by its caller; chunks of {chunk} asks per variant alternate"
        f" (split between the {callers} callers; which goes first alternates too), after"
        f" {warmup} uncounted asks per variant"
        " (the percentile delay needs `min_samples=20` run latencies first). Each run of the"
        " dependency draws its latency anew from a seeded generator (one per key, the same"
        " seed), so a hedge is slow 4 % of the time too. Latency percentiles are those of the"
        " asks answered by `run`; an ask answered otherwise is an error (each was a"
        " `THREAD_POOL_REJECTED`). Runs ÷ calls counts the losers' runs, which go on sleeping"
        " after the winner answered (a thread's `run` cannot be cancelled) and hold their"
        f" bulkhead slots meanwhile: the first two rows have a bulkhead of {WIDE}, the last the"
        " default 10, where the slow losers left behind (about 4 % of the calls, for up to"
        f" {SLOW_SECONDS * 1000:g} ms each) take slots beside the callers' own runs and their"
        " hedges. That row is measured after the others, its asks back to back (in turns with"
        " the others its losers would finish between its turns). Otherwise the default"
        " `CommandConfig`.",
    ]
    return lines
