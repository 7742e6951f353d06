"""The fleet benchmarks run end to end: ``python -m benchmarks.fleet --quick`` starts its own
redis-server, measures the four parts, stops it, and writes the section with every row.

No timing is asserted (figures on a shared machine are the benchmark's business): what is checked
is that every part ran and counted sanely. Without redis-server the section says why it was not
measured and the run still exits 0.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
from markdown_tables import table_after
from redis_servers import REDIS

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEADING = "## Fleet-wide circuits (Redis)"

LATENCY_ROWS = (
    "ours: `registry.ask`, success, no fleet",
    "ours: `registry.ask`, success, fleet on (publish_interval=0.1)",
    "ours: `registry.ask`, success, no fleet, other registries (A/A)",
    "pybreaker: `breaker.call`, success, `CircuitRedisStorage`",
)
OURS = "ours: fleet on, publish_interval=0.1"
PYBREAKER = "pybreaker: `CircuitRedisStorage`"
VERDICTS = ("**PASS**", "**MISS**")


def _number(cell: str) -> float:
    return float(cell.split(" ", maxsplit=1)[0].replace(",", "").rstrip("x%"))


def _run(tmp_path: pathlib.Path, env: dict[str, str] | None = None) -> str:
    output = tmp_path / "fleet.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.fleet", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return output.read_text(encoding="utf-8")


@pytest.mark.timeout(180)
def test_the_quick_fleet_benchmark_measures_every_part_against_its_own_redis(
    tmp_path: pathlib.Path,
) -> None:
    REDIS.program("redis-server")
    report = _run(tmp_path)
    assert report.startswith(HEADING)

    latencies = table_after(report, "| Path |")
    assert list(latencies) == list(LATENCY_ROWS)
    for name, row in latencies.items():
        assert 0 < _number(row["p50 µs"]) <= _number(row["p99 µs"]), name
    assert latencies[LATENCY_ROWS[0]]["p50 ÷ no fleet"] == "1.00x"
    assert latencies[LATENCY_ROWS[1]]["Result"] in VERDICTS

    commands = table_after(report, "| Subject (1 node, 1 key, paced caller) |")
    assert list(commands) == [OURS, PYBREAKER]
    ours, theirs = commands[OURS], commands[PYBREAKER]
    assert _number(ours["calls"]) > 0 and _number(theirs["calls"]) > 0
    sent = _number(ours["(a) commands sent / call"])
    counted = _number(ours["(b) commands Redis counted / call"])
    assert 0 < sent < counted  # at least one flush ran, and its script ran commands inside
    assert ours["Result"] in VERDICTS
    # pybreaker reads and writes Redis on every call: no call without a command
    assert _number(theirs["(a) commands sent / call"]) >= 1
    assert theirs["(a) commands sent / call"] == theirs["(b) commands Redis counted / call"]

    propagation = table_after(report, "| Figure | Value |")
    rows = list(propagation.values())
    assert rows[0]["Value"].endswith(" ms") and rows[1]["Result"] in VERDICTS
    assert rows[2]["Value"] == "0 of 3", "a node never short-circuited during an outage"
    fleet, alone = rows[4]["Value"], rows[5]["Value"]
    assert _number(fleet) > 0  # the calls before the fleet circuit opened
    # no node alone reaches the volume threshold: without the fleet every call is doomed
    assert _number(alone.split("(")[1]) >= 95
    assert _number(fleet.split("(")[1]) < _number(alone.split("(")[1])

    flush = table_after(report, "| Tick (1 node) |")
    assert len(flush) == 2
    for name, row in flush.items():
        assert _number(row["keys"]) == 1000, name
        assert _number(row["failed ticks"]) == 0, name
        assert 0 < _number(row["Redis running the scripts p50 ms"]) <= _number(row["p50 ms"])


@pytest.mark.timeout(60)
def test_without_redis_server_the_section_says_so_and_the_run_succeeds(
    tmp_path: pathlib.Path,
) -> None:
    env = {**os.environ, "PATH": str(pathlib.Path(sys.executable).parent)}
    report = _run(tmp_path, env)
    assert report.startswith(HEADING)
    assert "Not measured in this run: redis-server was not found on PATH" in report
