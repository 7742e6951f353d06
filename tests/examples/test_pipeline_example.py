"""The pipeline example tells its story (COMPLETE, then PARTIAL); the fake user service obeys
its switch."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fake_users import FakeUsers, Mode
from scripts import get, run_example


@pytest.fixture
def users() -> Iterator[FakeUsers]:
    with FakeUsers(slow_delay=5.0) as server:
        yield server


# -- the example -----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_the_quick_example_reports_complete_then_partial_when_the_user_service_degrades() -> None:
    started = time.monotonic()
    done = run_example("issue_report_pipeline.py", "--quick", timeout=45)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert time.monotonic() - started < 30
    assert done.stderr == "", output  # nothing alarming
    phases: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        if line.startswith("--- user service "):
            phase = phases.setdefault(line.split()[3], [])
        elif line.startswith("report "):
            phase.append(line)
    assert list(phases) == ["healthy", "slow", "down"], output
    assert any(line.endswith("COMPLETE") for line in phases["healthy"]), output
    for line in phases["slow"] + phases["down"]:  # every lookup fell back on its own
        assert "PARTIAL (fell back: Look up user x" in line, output
        assert "unknown" in line, output  # the placeholder users are counted, not dropped
    assert "timeout" in phases["slow"][0], output
    assert "failure" in phases["down"][0] or "short-circuited" in phases["down"][0], output
    assert done.stdout.splitlines()[-1].startswith("OK:"), output


# -- the fake user service -------------------------------------------------------------------------


def test_a_healthy_user_service_answers_a_users_record(users: FakeUsers) -> None:
    status, body = get(users.user_url("alice"))

    assert status == 200
    assert body == {"name": "alice", "email": "alice@example.com", "team": "platform"}


def test_an_unknown_user_is_not_found(users: FakeUsers) -> None:
    assert get(users.user_url("mallory"))[0] == 404
    assert get(f"{users.url}/people/alice")[0] == 404


def test_a_user_service_that_is_down_answers_503_at_once(users: FakeUsers) -> None:
    users.set_mode("down")
    started = time.monotonic()

    status, _ = get(users.user_url("alice"))

    assert status == 503
    assert time.monotonic() - started < 1.0
    assert users.mode is Mode.DOWN


def test_a_slow_user_service_outlasts_a_short_client_timeout(users: FakeUsers) -> None:
    users.set_mode(Mode.SLOW)

    with pytest.raises(TimeoutError):
        get(users.user_url("alice"), timeout=0.2)


def test_a_slow_user_service_answers_after_its_delay() -> None:
    with FakeUsers(mode="slow", slow_delay=0.2) as users:
        started = time.monotonic()
        status, _ = get(users.user_url("bob"))

    assert status == 200
    assert time.monotonic() - started >= 0.2


def test_a_user_service_that_recovers_answers_again(users: FakeUsers) -> None:
    users.set_mode("down")
    assert get(users.user_url("bob"))[0] == 503
    users.set_mode("healthy")
    assert get(users.user_url("bob"))[0] == 200
    assert users.requests == 2


def test_stopping_does_not_wait_for_requests_waiting_in_slow_mode() -> None:
    users = FakeUsers(mode="slow", slow_delay=30.0).start()
    url = users.user_url("alice")
    with pytest.raises(TimeoutError):
        get(url, timeout=0.1)
    started = time.monotonic()

    users.stop()

    assert time.monotonic() - started < 1.0
    with pytest.raises(RuntimeError, match="not running"):
        _ = users.url


def test_the_service_serves_the_users_it_was_given() -> None:
    with FakeUsers(users=[{"name": "zoe", "email": "z@example.com", "team": "ops"}]) as users:
        assert get(users.user_url("zoe"))[1]["team"] == "ops"
        assert get(users.user_url("alice"))[0] == 404
