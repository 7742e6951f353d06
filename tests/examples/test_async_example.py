"""The asyncio variant of the pipeline example: httpx commands whose ``async def run`` is
cancelled at its deadline, on a loop that never blocks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "issue_report_async.py"


@pytest.mark.timeout(60)
def test_the_async_example_reports_complete_then_partial_and_cancels_slow_lookups() -> None:
    paths = [str(ROOT), str(ROOT / "examples"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}

    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )

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
