"""Load shaping (issue 13): retries under a budget, hedged requests and adaptive concurrency
limits, each against a simulated dependency (a Python function that sleeps or raises) driven
through a real ``CommandRegistry`` by real caller threads, as a user would run it. The report's
"Load shaping" section; alone: ``python -m benchmarks.load_shaping [--quick] [--output PATH]``.

Three scenarios, each with its variants side by side in one run:

* the retry storm (``benchmarks.load_shaping_retry``): runs reaching a dependency failing every
  call, with no retries, ours and tenacity's; then the success rate of ours at 10 % failures;
* hedging (``benchmarks.load_shaping_hedge``): p99 against a heavy-tailed dependency with and
  without ``HedgePolicy(percentile=95.0)``, and the extra runs it took;
* adaptive limits (``benchmarks.load_shaping_limit``): goodput and p99 of each algorithm
  against a sweep of fixed limits, at a capacity below 10 and one above 50, and how each
  settles when the capacity halves.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from .load_shaping_common import quiet_logging
from .load_shaping_hedge import hedge_table, measure_hedging
from .load_shaping_limit import Capacity, measure_convergence, measure_limits
from .load_shaping_limit_report import convergence_table, limit_notes, limit_table
from .load_shaping_retry import measure_flaky, measure_storm, retry_tables
from .section import section_main

__all__ = ["LOAD_SHAPING_HEADING", "LoadShapingPlan", "load_shaping_report", "main"]

LOAD_SHAPING_HEADING = "## Load shaping: retries, hedging, adaptive limits"

#: The adaptive limits' dependencies: a capacity below 10 and one above 50 (issue 13), each
#: with callers enough to overload it and a base latency this machine's callers can keep busy.
LOW = Capacity(5, 0.010, 40)
HIGH = Capacity(60, 0.040, 100)


@dataclasses.dataclass(frozen=True, slots=True)
class LoadShapingPlan:
    """How much to measure."""

    mode: str = "full"
    #: The retry storm: callers, calls a second each, seconds; the 10 % scenario's seconds.
    storm_callers: int = 20
    storm_rate: float = 20.0
    storm_seconds: float = 5.0
    flaky_seconds: float = 3.0
    #: Hedging: callers, asks per variant, asks per chunk, uncounted asks per variant first.
    hedge_callers: int = 4
    hedge_calls: int = 2000
    hedge_chunk: int = 200
    hedge_warmup: int = 100
    #: Adaptive limits: the dependencies (a capacity below 10 and one above 50), the fixed
    #: limits swept, warm-up seconds (fixed, adaptive) and seconds measured per variant.
    capacities: tuple[Capacity, ...] = (LOW, HIGH)
    fixed_limits: tuple[int, ...] = (2, 5, 10, 20, 40, 80)
    fixed_warmup: float = 0.5
    adaptive_warmup: float = 3.0
    limit_seconds: float = 3.0
    #: Settling: the dependency whose capacity halves, seconds before and after.
    converge: Capacity = HIGH
    converge_before: float = 4.0
    converge_after: float = 6.0

    @classmethod
    def full(cls) -> LoadShapingPlan:
        return cls()

    @classmethod
    def quick(cls) -> LoadShapingPlan:
        return cls(
            mode="quick (--quick)",
            storm_seconds=1.0,
            flaky_seconds=1.0,
            hedge_calls=400,
            hedge_chunk=100,
            fixed_limits=(5, 10, 20, 80),
            fixed_warmup=0.3,
            adaptive_warmup=0.7,
            limit_seconds=0.7,
            converge_before=1.2,
            converge_after=1.8,
        )


def load_shaping_report(plan: LoadShapingPlan) -> list[str]:
    """Measure the three scenarios; the section's lines."""
    started = time.perf_counter()
    with quiet_logging():
        storm = measure_storm(plan.storm_callers, plan.storm_rate, plan.storm_seconds)
        flaky = measure_flaky(plan.storm_callers, plan.storm_rate, plan.flaky_seconds)
        hedging = measure_hedging(
            callers=plan.hedge_callers,
            calls=plan.hedge_calls,
            chunk=plan.hedge_chunk,
            warmup=plan.hedge_warmup,
        )
        limits = [
            (
                capacity,
                measure_limits(
                    capacity,
                    plan.fixed_limits,
                    fixed_warmup=plan.fixed_warmup,
                    adaptive_warmup=plan.adaptive_warmup,
                    seconds=plan.limit_seconds,
                ),
            )
            for capacity in plan.capacities
        ]
        convergence = measure_convergence(
            plan.converge, before=plan.converge_before, after=plan.converge_after
        )
    lines = [
        LOAD_SHAPING_HEADING,
        "",
        f"Mode: {plan.mode}; the section took {time.perf_counter() - started:.0f} s on"
        f" {os.cpu_count() or 0} cores. Every dependency is a Python function (it sleeps or"
        " raises) behind a real `CommandRegistry`, asked by real caller threads; each"
        " scenario's variants run in the same run, side by side. \"Target\" is the issue's"
        " target for that row; PASS or MISS is what this run reached, unadjusted.",
        "",
        *retry_tables(
            storm,
            flaky,
            callers=plan.storm_callers,
            rate=plan.storm_rate,
            seconds=plan.storm_seconds,
            flaky_seconds=plan.flaky_seconds,
        ),
        "",
        *hedge_table(
            hedging, callers=plan.hedge_callers, chunk=plan.hedge_chunk, warmup=plan.hedge_warmup
        ),
        "",
        "### Adaptive concurrency limits",
        "",
    ]
    for capacity, runs in limits:
        lines += [*limit_table(capacity, runs), ""]
    lines += [
        *convergence_table(plan.converge, convergence),
        "",
        *limit_notes(
            plan.fixed_limits,
            fixed_warmup=plan.fixed_warmup,
            adaptive_warmup=plan.adaptive_warmup,
            seconds=plan.limit_seconds,
            converge_before=plan.converge_before,
            converge_after=plan.converge_after,
        ),
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    return section_main(
        argv,
        prog="python -m benchmarks.load_shaping",
        description="Only the load-shaping section of the benchmark (issue 13).",
        quick_help="a short run (about 40 s)",
        report=lambda quick: load_shaping_report(
            LoadShapingPlan.quick() if quick else LoadShapingPlan.full()
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
