"""The asyncio variant of the pipeline example: httpx commands whose ``async def run`` is
cancelled at its deadline, on a loop that never blocks."""

from __future__ import annotations

import re

import pytest
from scripts import run_example


@pytest.mark.timeout(60)
def test_the_async_example_reports_complete_then_partial_and_cancels_slow_lookups() -> None:
    done = run_example("issue_report_async.py", "--quick", timeout=45)

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert done.stderr == "", output
    reports = [line for line in done.stdout.splitlines() if line.startswith("report ")]
    verdicts = [
        "COMPLETE" if line.split(": ")[1].startswith("COMPLETE") else "PARTIAL" for line in reports
    ]
    assert verdicts[0] == "COMPLETE", output
    assert verdicts[-1] == "PARTIAL", output
    assert verdicts == sorted(verdicts), output  # complete while healthy, then partial
    cancelled = re.search(r"lookups cancelled inside their request: (\d+)", done.stdout)
    assert cancelled is not None and int(cancelled.group(1)) > 0, output
    assert done.stdout.splitlines()[-1].startswith("OK:"), output
