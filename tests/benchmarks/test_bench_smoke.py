"""The benchmark runs end to end: ``python -m benchmarks --quick`` exits 0 and writes its table.

No timing is asserted here: figures on a shared machine are the benchmark's business, not a test's.
What is checked is that every part ran and counted sanely, the overload part included: its asks
were all bulkhead rejections, and there were some.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

ROWS = (
    "| bare function call |",
    "| bare pykka ask",
    "| hand-rolled: ThreadPoolExecutor(10) + pybreaker",
    "| ours: `registry.ask`, success |",
    "| ours: `registry.ask`, short-circuit",
    "| ours: `registry.ask`, rejected",
    "| ours: `registry.ask`, max_concurrent_requests=10 |",
)

OVERLOAD_ROWS = (
    "200 callers, `command.rejected` logged",
    "1 caller, `command.rejected` logged",
    "200 callers, `command.rejected` filtered out",
    "1 caller, `command.rejected` filtered out",
)


def _table_after(report: str, header_start: str) -> dict[str, dict[str, str]]:
    """The Markdown table whose header row starts with ``header_start``: row name -> cells."""
    lines = report.splitlines()
    top = next(n for n, line in enumerate(lines) if line.startswith(header_start))
    columns = [cell.strip() for cell in lines[top].strip("|").split("|")]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[top + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(columns, cells, strict=True))
    return rows


def _number(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("x"))


@pytest.mark.timeout(120)
def test_quick_benchmark_exits_zero_and_writes_every_row(tmp_path: pathlib.Path) -> None:
    output = tmp_path / "perf.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = output.read_text(encoding="utf-8")
    for row in ROWS:
        assert row in report, f"missing row {row!r}"
    assert "PASS" in report or "MISS" in report
    assert "pybreaker" in report

    assert "## Overload: 200 callers against a full bulkhead" in report
    overload = _table_after(report, "| Load (full bulkhead) |")
    assert sorted(overload) == sorted(OVERLOAD_ROWS)
    for name, row in overload.items():
        assert _number(row["rejected"]) > 0, f"{name}: no rejected ask was counted"
        assert _number(row["not rejected"]) == 0, f"{name}: some answers were not rejections"
        assert _number(row["rejected asks/s"]) > 0, name
        assert 0 < _number(row["p50 µs"]) <= _number(row["p99 µs"]) <= _number(row["max µs"])
    checks = _table_after(report, "| Check |")
    assert len(checks) == 2
    assert all(row["Result"] in ("**PASS**", "**MISS**") for row in checks.values())
