"""The thousands-of-keys benchmark runs end to end: ``python -m benchmarks.scale --quick`` measures
each row in a process of its own and writes the section with every row.

No figure is asserted against its target here (a shared machine's figures are the benchmark's
business): what is checked is that every part ran and counted sanely: every key passivated, the
threads left once idle do not grow with the keys, passivation off keeps two threads per key,
and the first call after passivation and the warm ones were timed.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEADING = "## Thousands of keys: passivation"
VERDICTS = ("**PASS**", "**MISS**")


def _table_after(report: str, header_start: str) -> list[dict[str, str]]:
    """The rows of the Markdown table whose header row starts with ``header_start``."""
    lines = report.splitlines()
    top = next(n for n, line in enumerate(lines) if line.startswith(header_start))
    columns = [cell.strip() for cell in lines[top].strip("|").split("|")]
    rows = []
    for line in lines[top + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append(dict(zip(columns, cells, strict=True)))
    return rows


def _number(cell: str) -> float:
    return float(cell.split(" ", maxsplit=1)[0].replace(",", "").rstrip("x"))


@pytest.mark.timeout(180)
def test_the_quick_scale_benchmark_measures_every_row(tmp_path: pathlib.Path) -> None:
    output = tmp_path / "scale.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = output.read_text(encoding="utf-8")
    assert report.startswith(HEADING)

    on, small, off = _table_after(report, "| Keys |")
    for row in (on, small):
        assert row["passivate_after"].endswith(" s")
        assert _number(row["keys still awake"]) == 0
        assert _number(row["RSS per idle key"]) > 0
        # the registry actor, the timer and its runners: the same for any number of keys
        assert 0 < _number(row["library threads once idle"]) <= 12
    assert on["library threads once idle"] == small["library threads once idle"]
    assert _number(on["Keys"]) > _number(small["Keys"])
    assert on["Result"] in VERDICTS
    assert off["passivate_after"].startswith("None")
    assert _number(off["keys still awake"]) == _number(off["Keys"])
    # a supervisor and a worker for every key, besides the library's own
    assert _number(off["library threads once idle"]) >= 2 * _number(off["Keys"])

    warm, first = _table_after(report, "| Call |")
    assert warm["Call"] == "warm call" and first["Call"] == "first call after passivation"
    for row in (warm, first):
        assert 0 < _number(row["p50 µs"]) <= _number(row["p90 µs"])
    assert first["Result"] in VERDICTS

    traced = _table_after(report, "| Allocated at |")
    assert traced and all(_number(row["bytes per key"]) >= 100 for row in traced)

    own, shared = _table_after(report, "| Pools |")
    assert own["Pools"] == "each key its own" and shared["Pools"].startswith("one shared pool of")
    for row in (own, shared):
        assert _number(row["calls/s"]) > 0
    # a shared pool of 20 runs every key's calls on at most its own 20 workers and 1 supervisor
    assert _number(shared["library threads at the peak"]) < _number(
        own["library threads at the peak"]
    )
