"""The benchmark runs end to end: ``python -m benchmarks --quick`` exits 0 and writes its table.

No timing is asserted here: figures on a shared machine are the benchmark's business, not a test's.
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
