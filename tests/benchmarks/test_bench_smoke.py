"""The benchmark runs end to end: ``python -m benchmarks --quick`` exits 0 and writes its table.

No timing is asserted here: figures on a shared machine are the benchmark's business, not a test's.
What is checked is that every part ran and counted sanely, the overload part included: every
load answered, every answer was what that load should give (a rejection served by the fallback,
a fallback refused for want of a slot, or the null call's constant), and no fallback was refused
where that cannot happen (one caller alone, or as many fallback slots as callers).
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
from markdown_tables import table_after

ROOT = pathlib.Path(__file__).resolve().parents[2]

ROWS = (
    "| bare function call |",
    "| bare pykka ask",
    "| hand-rolled: ThreadPoolExecutor(10) + pybreaker",
    "| ours: `registry.ask`, success |",
    "| ours: `registry.ask`, success, `allow_injection=True`, no injection active |",
    "| ours: `registry.ask`, a cache hit in a request scope",
    "| ours: `registry.ask`, short-circuit",
    "| ours: `registry.ask`, rejected",
    "| ours: `registry.ask`, max_concurrent_requests=10 |",
    "| ours: `Pipeline.run(x)`, 3 `Stage`s (echo) |",
    "| ours: 3 sequential `registry.ask` (echo, the same keys) |",
)

#: The pipeline section's rows (ours, then its baseline) and its streaming row.
PIPELINE_PAIRS = {
    "ours: `Pipeline.run(x)`, 3 `Stage`s (echo)": (
        "ours: 3 sequential `registry.ask` (echo, the same keys)"
    ),
    "ours: `await registry.ask_async` (echo, inside one `asyncio.run`)": (
        "ours: blocking `registry.ask` (echo, the same rounds and loop)"
    ),
}
MAP_ROW = "ours: `Pipeline(Stage(10 ms key)).map(count(), max_in_flight=10)`, 1 consumer"

OVERLOAD_ROWS = (
    "ours: 200 callers, `command.rejected` logged (defaults)",
    "hand-rolled bulkhead: 200 callers",
    "null call (returns a constant): 200 callers",
    "ours: 200 callers, `command.rejected` filtered out",
    "ours: 200 callers, logged, `fallback_max_concurrent=200`",
    "ours: 1 caller, `command.rejected` logged (defaults)",
    "hand-rolled bulkhead: 1 caller",
    "ours: 1 caller, `command.rejected` filtered out",
)
#: Rows where a refused fallback (FALLBACK_REJECTION) cannot happen: no caller runs two
#: fallbacks at once, and there are at least as many fallback slots as callers.
NEVER_REFUSED = (
    "ours: 200 callers, logged, `fallback_max_concurrent=200`",
    "ours: 1 caller, `command.rejected` logged (defaults)",
    "ours: 1 caller, `command.rejected` filtered out",
)


def _number(cell: str) -> float:
    return float(cell.replace(",", "").lstrip("<").rstrip("x"))


def _refused(cell: str) -> int | None:
    """The count in a FALLBACK_REJECTION cell such as ``1.5% (1,234)``; None for "n/a"."""
    if cell == "n/a":
        return None
    share, count = cell.split(" ")
    assert 0 <= _number(share.rstrip("%")) <= 100, cell
    return int(_number(count.strip("()")))


@pytest.mark.timeout(200)
def test_quick_benchmark_exits_zero_and_writes_every_row(tmp_path: pathlib.Path) -> None:
    output = tmp_path / "perf.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=190,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = output.read_text(encoding="utf-8")
    for start in ROWS:
        assert start in report, f"missing row {start!r}"
    assert "PASS" in report or "MISS" in report
    assert "pybreaker" in report

    assert "## Overload: 200 callers against a full bulkhead" in report
    overload = table_after(report, "| Load (bulkhead full) |")
    assert list(overload) == list(OVERLOAD_ROWS)
    for name, row in overload.items():
        assert _number(row["as expected"]) > 0, f"{name}: no expected answer was counted"
        assert _number(row["other"]) == 0, f"{name}: some answers were not as expected"
        assert _number(row["answers/s"]) > 0, name
        assert 0 < _number(row["p50 µs"]) <= _number(row["p99 µs"]) <= _number(row["max µs"])
        refused = _refused(row["FALLBACK_REJECTION"])
        assert (refused is None) == name.startswith(("hand-rolled", "null call")), name
        if name in NEVER_REFUSED:
            assert refused == 0, f"{name}: {refused} fallbacks refused"
    assert overload[OVERLOAD_ROWS[1]]["p99 ÷ hand-rolled"] == "1.00x"
    assert "## Pipelines and `ask_async`" in report
    pairs = table_after(report, "| Ours | Baseline |")
    assert list(pairs) == list(PIPELINE_PAIRS)
    for name, row in pairs.items():
        assert row["Baseline"] == PIPELINE_PAIRS[name]
        if "not measured" in row["p50 µs"]:  # this build has no ask_async (yet)
            assert "ask_async" in name
            continue
        assert 0 < _number(row["p50 µs"]) <= _number(row["p99 µs"]), name
        assert 0 < _number(row["base p50 µs"]) <= _number(row["base p99 µs"]), name
        assert _number(row["p50 ratio"]) > 0, name
    assert pairs[next(iter(PIPELINE_PAIRS))]["Result"] in ("**PASS**", "**MISS**")
    streaming = table_after(report, "| Streaming (10 ms dependency) |")
    assert list(streaming) == [MAP_ROW]
    mapped = streaming[MAP_ROW]
    assert _number(mapped["calls/s"]) > 0
    assert 0 < _number(mapped["% of ideal 1,000/s"].rstrip("%")) <= 110
    assert mapped["Result"] in ("**PASS**", "**MISS**")

    checks = table_after(report, "| Check |")
    assert len(checks) == 2
    assert all(row["Result"] in ("**PASS**", "**MISS**") for row in checks.values())
