"""The fleet demo (``make fleet-demo``) tells its story and checks it: three processes open
together through a real Redis, one probes per sleep window while JIRA is down, one probe closes
them all. It starts its own redis-server (Debian's); without one it says what to install."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from scripts import run_example


def test_the_fleet_demo_opens_every_process_together_and_one_probe_closes_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from redis_servers import redis_server_path  # noqa: PLC0415 (fails or skips without it)

    redis_server_path()  # HYSTRIX_REDIS_REQUIRED=1 or CI: fail, never skip, when it is missing
    monkeypatch.delenv("REDIS_URL", raising=False)  # the demo starts its own redis-server
    started = time.monotonic()

    done = run_example("fleet.py", "--check", timeout=90)

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert time.monotonic() - started < 60, output
    lines = done.stdout.splitlines()
    assert lines[-1].startswith("OK: the fleet opened together"), output
    workers = ("worker-0", "worker-1", "worker-2")
    opened = [line for line in lines if "circuit.opened" in line and "closed -> open" in line]
    assert sorted(line.split()[1] for line in opened) == list(workers), output
    assert all("scope=fleet" in line for line in opened), output
    assert len(re.findall(r"fleet\.opened", done.stdout)) == 1, output
    verdicts = re.findall(r"fleet\.verdict +outcome=(\w+)", done.stdout)
    assert verdicts and verdicts[-1] == "closed" and set(verdicts[:-1]) <= {"open"}, output
    assert [states for _, states in rows(lines)[-3:]] == [("closed", "closed")] * 3, output
    assert not re.search(r"redis-server.*(not installed|exited)", output), output


def test_without_redis_server_the_demo_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server to be found
    started = time.monotonic()

    done = run_example("fleet.py", "--check", timeout=30)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "apt-get install redis-server" in done.stderr
    assert "REDIS_URL=" in done.stderr
    assert time.monotonic() - started < 15


STATES = frozenset({"closed", "open", "half_open"})


def rows(lines: list[str]) -> list[tuple[str, tuple[str, str]]]:
    """The table's rows: (worker, (its own circuit, the fleet's)), in order."""
    found = []
    for line in lines:
        words = line.split()
        for n, word in enumerate(words[:-2]):
            if re.fullmatch(r"worker-\d", word) and words[n + 1] in STATES:
                found.append((word, (words[n + 1], words[n + 2])))
    return found
