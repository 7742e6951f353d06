"""The collapsing benchmark runs end to end: ``python -m benchmarks.collapsing --quick`` measures
50 callers with and without a request collapser at each connection count and writes the section
with every table and every row.

No figure is asserted against its target (figures on a shared machine are the benchmark's
business): what is checked is that every variant ran and counted sanely, that the collapser
batched (and the plain command did not), and that every target has its verdict.
"""

from __future__ import annotations

import math
import pathlib
import subprocess
import sys

import pytest
from markdown_tables import table_after

from benchmarks.collapsing import COLLAPSING_HEADING, VARIANTS, WITHOUT, CollapsingPlan

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAN = CollapsingPlan.quick()
FAILURES = "rejected / timed out / fell back / other"


def _number(cell: str) -> float:
    """A cell's figure: ``2,249``, ``21.6``, ``12.16x``, ``<0.001x``; NaN for n/a."""
    if cell == "n/a":
        return math.nan
    return float(cell.replace(",", "").lstrip("<").rstrip("x"))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    output = tmp_path_factory.mktemp("collapsing") / "collapsing.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.collapsing", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return output.read_text(encoding="utf-8")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("connections", PLAN.connections)
def test_every_variant_is_counted_beside_the_plain_command(report: str, connections: int) -> None:
    assert report.startswith(COLLAPSING_HEADING)
    plural = "s" if connections > 1 else ""
    table = table_after(report, f"| Collapsing: {connections} connection{plural},")
    assert list(table) == [variant.name for variant in VARIANTS]
    for name, row in table.items():
        assert _number(row["calls/s"]) > 0, name
        assert 0 < _number(row["p50 ms"]) <= _number(row["p99 ms"]), name
        assert _number(row["dependency calls/s"]) > 0, name
        assert [int(n) for n in row[FAILURES].split(" / ")] == [0, 0, 0, 0], name
    plain = table[WITHOUT]
    assert math.isnan(_number(plain["mean batch size"]))
    assert plain["calls/s ÷ without"] == plain["p50 ÷ without"] == "1.00x"
    assert plain["Target (issue)"] == plain["Result"] == ""
    for variant in VARIANTS[1:]:
        row = table[variant.name]
        assert 1 < _number(row["mean batch size"]) <= PLAN.callers, variant.name
        # the server saw fewer calls than the asks answered: they went in batches
        assert _number(row["dependency calls/s"]) < _number(row["calls/s"]), variant.name
        assert _number(row["calls/s ÷ without"]) > 0
        assert row["Target (issue)"] == "≥ 5x calls/s without"
        assert row["Result"] in ("**PASS**", "**MISS**")
