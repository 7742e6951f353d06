"""The stream-at-scale benchmark runs end to end: ``python -m benchmarks.stream_scale --quick``
measures ours at each key count and the landed code (from ``git archive``, in a subprocess) and
writes the section with every row.

No timing is asserted (figures on a shared machine are the benchmark's business): what is checked
is that every part ran and counted sanely, and that streams open at once shared each tick.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
from markdown_tables import table_after

from benchmarks.stream_scale import STREAM_HEADING, StreamPlan

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _number(cell: str) -> float:
    return float(cell.split(maxsplit=1)[0].replace(",", "").rstrip("x"))


@pytest.mark.timeout(300)
def test_the_quick_stream_benchmark_writes_every_row(tmp_path: pathlib.Path) -> None:
    output = tmp_path / "stream.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.stream_scale", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=290,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = output.read_text(encoding="utf-8")
    plan = StreamPlan.quick()

    assert report.startswith(STREAM_HEADING)
    ticks = table_after(report, "| Keys (used, idle) |")
    assert list(ticks) == [f"{keys:,}" for keys in plan.keys]
    for keys, row in zip(plan.keys, ticks.values(), strict=True):
        assert 2000 * keys < _number(row["bytes per tick"]) * 1e6 < 3000 * keys  # ~2.5 KB a key
        assert 0 < _number(row["tick, keys idle: p50 ms (max)"]) <= _number(row["first tick ms"])
        assert _number(row["tick after every key was asked ms"]) > 0
        picked, alone, size = row["stream of 1 key (`?keys=`): picked µs, alone µs, bytes"].split(
            ", "
        )
        assert _number(picked) >= 0 and _number(alone) > 0
        assert 2000 < _number(size) < 3000  # one command and its pool
    landed = ticks[f"{plan.landed_keys[0]:,}"]
    if "not measured in this run" in report:  # no git, or not this repository's history
        assert landed["landed ÷ ours (idle)"] == "n/a"
    else:
        assert _number(landed["landed: tick per stream p50 ms"]) > 0
        assert _number(landed["landed ÷ ours (idle)"]) > 0

    shared = table_after(report, f"| {plan.streams} streams open at once |")
    assert list(shared) == [f"{keys:,} keys" for keys in plan.keys]
    for row in shared.values():
        assert row["ticks made per round of every stream asking"] == "1"
