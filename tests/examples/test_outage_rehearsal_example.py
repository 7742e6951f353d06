"""The outage rehearsal example: an outage of a healthy JIRA driven by fault injection alone."""

from __future__ import annotations

import re

import pytest
from scripts import run_example


@pytest.mark.timeout(60)
def test_the_rehearsal_opens_the_circuit_without_calling_jira_and_closes_it_again() -> None:
    done = run_example("outage_rehearsal.py", "--quick", timeout=45)

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert done.stderr == "", output
    lines = done.stdout.splitlines()
    assert lines[-1].startswith("OK: the circuit opened on the injected outage"), output
    calls = [line for line in lines if line.startswith("call ")]
    down = lines.index("--- down: inject(error=ConnectionError) ---")
    recovered = next(n for n, line in enumerate(lines) if line.startswith("--- recovered"))
    during = [line for line in lines[down:recovered] if line.startswith("call ")]
    assert any("SHORT_CIRCUITED,FALLBACK_SUCCESS   circuit open" in line for line in during)
    assert all("(fallback)" in line for line in during), output
    assert "SUCCESS" in lines[recovered + 1] and "circuit closed" in lines[recovered + 1]
    started = [line for line in lines if "[log] injection.started" in line]
    ended = [line for line in lines if "[log] injection.ended" in line]
    assert len(started) == len(ended) == 3, output
    assert all("reason='stopped'" in line for line in ended), output
    assert re.search(r"^    \d of \d runs faulted$", done.stdout, re.MULTILINE), output
    assert any("TIMEOUT,FALLBACK_SUCCESS" in line for line in calls), output
