"""The collapsed pipeline example: user lookups collapse into batch requests (its printed batch
sizes say so), and the report is PARTIAL once the user service degrades; the fake user service's
batch endpoint answers in order and obeys the switch."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fake_users import FakeUsers
from scripts import get, run_example

LOOKUPS = re.compile(r"^    (\d+) user lookups, (\d+) requests to the user service$")
BATCHES = re.compile(
    r"^    collapser \(last 10 s\): (\d+) lookups in (\d+) batches, size mean ([\d.]+)"
)


@pytest.fixture
def users() -> Iterator[FakeUsers]:
    with FakeUsers(slow_delay=5.0) as server:
        yield server


# -- the example -----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_the_lookups_collapse_into_batches_and_the_degraded_reports_are_partial() -> None:
    done = run_example("issue_report_collapsed.py", "--quick", timeout=45)

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert done.stderr == "", output  # quiet: no library warnings unless asked
    phases: dict[str, list[tuple[str, re.Match[str], re.Match[str]]]] = {}
    lines = done.stdout.splitlines()
    for n, line in enumerate(lines):
        if line.startswith("--- user service "):
            phase = phases.setdefault(line.split()[3], [])
        elif line.startswith("report "):
            lookups, batches = LOOKUPS.match(lines[n + 1]), BATCHES.match(lines[n + 2])
            assert lookups is not None and batches is not None, output
            phase.append((line, lookups, batches))
    assert list(phases) == ["healthy", "slow", "down"], output
    assert any(line.endswith("COMPLETE") for line, _, _ in phases["healthy"]), output
    for _, lookups, batches in phases["healthy"]:
        asked, requests = int(lookups.group(1)), int(lookups.group(2))
        assert 0 < requests < asked, output  # one request per batch, not per lookup
        assert int(batches.group(2)) < int(batches.group(1)), output
        assert float(batches.group(3)) > 1, output
    for line, lookups, _ in phases["slow"] + phases["down"]:
        assert "PARTIAL (fell back: Look up user x" in line, output
        assert "unknown" in line, output  # the placeholder users are counted, not dropped
        assert int(lookups.group(2)) < int(lookups.group(1)), output  # still batched
    assert "timeout" in phases["slow"][0][0], output
    assert "failure" in phases["down"][0][0] or "short-circuited" in phases["down"][0][0], output
    assert lines[-1].startswith("OK:"), output


# -- the fake user service's batch endpoint --------------------------------------------------------


def batch(url: str, timeout: float = 2.0) -> tuple[int, list[Any]]:
    """GET the batch endpoint: (status, the list of records; empty for an error status)."""
    status, body = get(url, timeout=timeout)
    records = body.get("users", [])
    assert isinstance(records, list)
    return status, records


def test_the_batch_endpoint_answers_each_name_in_the_order_asked(users: FakeUsers) -> None:
    status, records = batch(users.batch_url(["carol", "alice", "carol"]))

    assert status == 200
    assert [record["name"] for record in records] == ["carol", "alice", "carol"]
    assert records[1] == {"name": "alice", "email": "alice@example.com", "team": "platform"}


def test_the_batch_endpoint_answers_null_for_an_unknown_name(users: FakeUsers) -> None:
    status, records = batch(users.batch_url(["bob", "mallory"]))

    assert status == 200
    assert records[0]["name"] == "bob"
    assert records[1] is None


def test_the_batch_endpoint_takes_the_names_repeated_too(users: FakeUsers) -> None:
    status, records = batch(f"{users.url}/users?names=dave&names=alice,bob")

    assert status == 200
    assert [record["name"] for record in records] == ["dave", "alice", "bob"]


def test_the_batch_endpoint_wants_names(users: FakeUsers) -> None:
    assert batch(f"{users.url}/users")[0] == 400
    assert batch(f"{users.url}/users?names=")[0] == 400


def test_the_batch_endpoint_obeys_the_switch_and_every_request_is_counted(
    users: FakeUsers,
) -> None:
    users.set_mode("down")
    started = time.monotonic()
    assert batch(users.batch_url(["alice"]))[0] == 503
    assert time.monotonic() - started < 1.0
    users.set_mode("healthy")
    assert batch(users.batch_url(["alice"]))[0] == 200
    assert get(users.user_url("alice"))[0] == 200  # the single-user endpoint still works

    assert users.requests == 3


def test_a_slow_batch_endpoint_outlasts_a_short_client_timeout(users: FakeUsers) -> None:
    users.set_mode("slow")

    with pytest.raises(TimeoutError):
        batch(users.batch_url(["alice"]), timeout=0.2)


def test_a_slow_batch_endpoint_answers_after_its_delay() -> None:
    with FakeUsers(mode="slow", slow_delay=0.2) as users:
        started = time.monotonic()
        status, records = batch(users.batch_url(["bob", "dave"]))

    assert status == 200
    assert [record["name"] for record in records] == ["bob", "dave"]
    assert time.monotonic() - started >= 0.2
