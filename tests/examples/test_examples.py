"""Every example runs: the demo tells its story and checks it; the fake JIRA obeys its switch."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fake_jira import FakeJira, Mode
from scripts import get, run_example


@pytest.fixture
def jira() -> Iterator[FakeJira]:
    with FakeJira(slow_delay=5.0) as server:
        yield server


# -- the demo --------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_the_quick_demo_shows_the_circuit_opening_and_closing_again() -> None:
    started = time.monotonic()
    done = run_example("jira_issues.py", "--quick", timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert time.monotonic() - started < 60
    lines = done.stdout.splitlines()
    opened = [n for n, line in enumerate(lines) if "circuit.opened" in line]
    closed = [n for n, line in enumerate(lines) if "circuit.closed" in line]
    assert opened, output
    assert closed, output
    assert closed[-1] > opened[0], output
    rows = [line.split() for line in lines if line.split()[1:2] in (["healthy"], ["recovered"])]
    assert rows[-1][-2] == "closed", output
    assert "OK: the circuit opened" in done.stdout
    assert lines[0].startswith("dashboard: http://127.0.0.1:"), output  # served while it runs


# -- the fake JIRA ---------------------------------------------------------------------------------


def test_a_healthy_jira_lists_the_projects_issues(jira: FakeJira) -> None:
    status, body = get(jira.search_url("ACME"))

    assert status == 200
    issues = body["issues"]
    assert isinstance(issues, list)
    assert [issue["key"] for issue in issues] == ["ACME-1", "ACME-2", "ACME-3"]


def test_the_search_url_is_the_one_the_readme_uses(jira: FakeJira) -> None:
    status, body = get(f"{jira.url}/rest/api/2/search?jql=project=ACME")

    assert status == 200
    assert body["total"] == 3


def test_a_jira_that_is_down_answers_503_at_once(jira: FakeJira) -> None:
    jira.set_mode("down")
    started = time.monotonic()

    status, _ = get(jira.search_url("ACME"))

    assert status == 503
    assert time.monotonic() - started < 1.0
    assert jira.mode is Mode.DOWN


def test_a_slow_jira_outlasts_a_short_client_timeout(jira: FakeJira) -> None:
    jira.set_mode(Mode.SLOW)
    started = time.monotonic()

    with pytest.raises(TimeoutError):
        get(jira.search_url("ACME"), timeout=0.2)

    assert 0.2 <= time.monotonic() - started < 2.0


def test_a_slow_jira_answers_after_its_delay() -> None:
    with FakeJira(mode="slow", slow_delay=0.2) as jira:
        started = time.monotonic()
        status, _ = get(jira.search_url("ACME"))

    assert status == 200
    assert time.monotonic() - started >= 0.2


def test_a_jira_that_recovers_answers_again(jira: FakeJira) -> None:
    jira.set_mode("down")
    assert get(jira.search_url("ACME"))[0] == 503
    jira.set_mode("healthy")
    assert get(jira.search_url("ACME"))[0] == 200
    assert jira.requests == 2


def test_stopping_does_not_wait_for_requests_sleeping_in_slow_mode() -> None:
    jira = FakeJira(mode="slow", slow_delay=30.0).start()
    url = jira.search_url("ACME")
    with pytest.raises(TimeoutError):
        get(url, timeout=0.1)
    started = time.monotonic()

    jira.stop()

    assert time.monotonic() - started < 1.0
    with pytest.raises(RuntimeError, match="not running"):
        _ = jira.url


def test_an_unknown_mode_is_refused(jira: FakeJira) -> None:
    with pytest.raises(ValueError, match="broken"):
        jira.set_mode("broken")


def test_an_unknown_resource_is_not_found(jira: FakeJira) -> None:
    assert get(f"{jira.url}/rest/api/2/issue/ACME-1")[0] == 404
