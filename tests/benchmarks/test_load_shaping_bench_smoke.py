"""The load-shaping benchmark runs end to end: ``python -m benchmarks.load_shaping --quick``
measures the retry storm, hedging and the adaptive limits and writes the section with every
table and every row.

No figure is asserted against its target (figures on a shared machine are the benchmark's
business): what is checked is that every variant ran and counted sanely, and that every target
has its verdict.
"""

from __future__ import annotations

import math
import pathlib
import re
import subprocess
import sys

import pytest
from markdown_tables import table_after

from benchmarks.load_shaping import LOAD_SHAPING_HEADING, LoadShapingPlan
from benchmarks.load_shaping_hedge import HEDGED, HEDGED_NARROW, PLAIN
from benchmarks.load_shaping_limit import ALGORITHMS, adaptive_name, fixed_name
from benchmarks.load_shaping_retry import ATTEMPTS, NO_RETRY, OURS, OURS_DEFAULT_WINDOW, TENACITY

ROOT = pathlib.Path(__file__).resolve().parents[2]
VERDICTS = re.compile(r"\*\*(PASS|MISS)\*\*(; \*\*(PASS|MISS)\*\*)*")


def _number(cell: str) -> float:
    """A cell's leading figure: ``1,486``, ``91.8 %``, ``0.94x``, ``<0.001x``; NaN for n/a."""
    first = cell.split(maxsplit=1)[0]
    if first == "n/a":
        return math.nan
    return float(first.replace(",", "").lstrip("<").rstrip("x%"))


def _verdicts(row: dict[str, str], count: int) -> None:
    assert VERDICTS.fullmatch(row["Result"]), row["Result"]
    assert row["Result"].count("**") == 2 * count
    assert row["Target (issue)"].count(";") == count - 1


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    output = tmp_path_factory.mktemp("load-shaping") / "load_shaping.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.load_shaping", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return output.read_text(encoding="utf-8")


PLAN = LoadShapingPlan.quick()


@pytest.mark.timeout(300)
def test_the_retry_storm_counts_every_variant_on_the_same_calls(report: str) -> None:
    assert report.startswith(LOAD_SHAPING_HEADING)
    storm = table_after(report, "| Retry storm:")
    assert list(storm) == [NO_RETRY, OURS, OURS_DEFAULT_WINDOW, TENACITY]
    calls = PLAN.storm_callers * round(PLAN.storm_rate * PLAN.storm_seconds)
    for name, row in storm.items():
        assert _number(row["calls"]) == calls
        runs = _number(row["runs reaching the dependency"])
        assert calls <= runs <= ATTEMPTS * calls, name
    assert _number(storm[NO_RETRY]["runs reaching the dependency"]) == calls
    assert _number(storm[NO_RETRY]["RETRY"]) == 0
    # every tenacity call failed: it ran each of its attempts
    assert _number(storm[TENACITY]["runs reaching the dependency"]) == ATTEMPTS * calls
    ours = storm[OURS]
    # each of our retries is one more run reaching the dependency (no slot was refused)
    assert _number(ours["RETRY"]) == _number(ours["runs reaching the dependency"]) - calls
    assert _number(ours["RETRY_BUDGET_EXHAUSTED"]) > 0
    _verdicts(ours, 1)
    _verdicts(storm[OURS_DEFAULT_WINDOW], 1)  # the floor read per window, as the budget has it
    for name in (NO_RETRY, TENACITY):
        assert storm[name]["Result"] == ""

    flaky = table_after(report, "| 10 % random failures:")
    assert list(flaky) == [NO_RETRY, OURS]
    calls = PLAN.storm_callers * round(PLAN.storm_rate * PLAN.flaky_seconds)
    for row in flaky.values():
        assert _number(row["calls"]) == calls
        assert 0 < _number(row["answered by `run`"]) <= calls
        assert 0 < _number(row["success rate"]) <= 100
    assert 1.0 < _number(flaky[OURS]["runs ÷ calls"]) <= ATTEMPTS
    _verdicts(flaky[OURS], 1)


@pytest.mark.timeout(300)
def test_hedging_times_each_variant_and_counts_its_extra_runs(report: str) -> None:
    hedging = table_after(report, "| Hedging:")
    assert list(hedging) == [PLAIN, HEDGED, HEDGED_NARROW]
    for name, row in hedging.items():
        latencies = [_number(row[c]) for c in ("p50 ms", "p95 ms", "p99 ms", "max ms")]
        assert 0 < latencies[0] <= latencies[1] <= latencies[2] <= latencies[3], name
        assert _number(row["calls"]) > 0
    assert _number(hedging[PLAIN]["calls"]) == PLAN.hedge_calls
    assert _number(hedging[HEDGED]["calls"]) == PLAN.hedge_calls
    assert _number(hedging[PLAIN]["extra runs (HEDGE ÷ calls)"]) == 0
    assert _number(hedging[PLAIN]["runs ÷ calls"]) == 1
    assert _number(hedging[HEDGED]["extra runs (HEDGE ÷ calls)"]) > 0
    _verdicts(hedging[HEDGED], 2)


@pytest.mark.timeout(300)
def test_the_adaptive_limits_sit_beside_the_sweep_at_each_capacity(report: str) -> None:
    adaptive = [adaptive_name(algorithm) for algorithm in ALGORITHMS]
    for capacity in PLAN.capacities:
        table = table_after(report, f"| Limit: capacity {capacity.capacity},")
        assert list(table) == [fixed_name(n) for n in PLAN.fixed_limits] + adaptive
        for name, row in table.items():
            goodput = _number(row["goodput calls/s"])
            assert 0 <= goodput <= 1.1 * capacity.ideal, name
            assert _number(row["timeouts"]) >= 0 and _number(row["rejections"]) >= 0
        for n in PLAN.fixed_limits:
            assert table[fixed_name(n)]["limit: mean (min-max)"] == f"{n:.1f} ({n}-{n})"
            assert table[fixed_name(n)]["Result"] == ""
        for name in adaptive:
            limit = _number(table[name]["limit: mean (min-max)"])
            assert 1 <= limit <= 200
            assert _number(table[name]["goodput calls/s"]) > 0
            _verdicts(table[name], 3)
        assert f"- Best fixed limit at capacity {capacity.capacity}: fixed " in report

    settling = table_after(report, f"| Capacity {PLAN.converge.capacity} →")
    assert list(settling) == adaptive
    for row in settling.values():
        assert 1 <= _number(row["limit before (median)"]) <= 200
        assert 1 <= _number(row["new level (median, last third)"]) <= 200
        settled = row["settled within ±20 % after s"]
        assert settled == "did not settle" or 0 <= _number(settled) <= PLAN.converge_after
