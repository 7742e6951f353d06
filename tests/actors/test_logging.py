"""The library logs like a library: through the application's structlog pipeline when there is
one, else through ``logging.getLogger("actors")``, where Python's defaults keep it quiet."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from probe import WAIT

import actors.log
from actors import Command, CommandConfig, CommandRegistry
from actors.log import Log


@pytest.fixture
def unconfigured() -> Iterator[None]:
    """structlog as an application that never configured it leaves it (restored afterwards)."""
    saved = structlog.get_config()
    structlog.reset_defaults()
    assert not structlog.is_configured()
    try:
        yield
    finally:
        structlog.configure(**saved)


class Slow(Command):
    key = "log-slow"
    config = CommandConfig(timeout=0.2)
    release = threading.Event()

    def run(self, payload: Any) -> Any:
        self.release.wait(WAIT)
        return "late"

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return "fallback"


class Down(Command):
    key = "log-down"
    config = CommandConfig(force_open=True)

    def run(self, payload: Any) -> Any:
        return "never"

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return []


def events(records: list[logging.LogRecord]) -> list[str]:
    return [record.event for record in records if record.name == "actors"]  # type: ignore[attr-defined]


def test_without_structlog_configured_events_go_to_the_actors_stdlib_logger(
    unconfigured: None, caplog: pytest.LogCaptureFixture, registry: CommandRegistry
) -> None:
    caplog.set_level(logging.DEBUG, logger="actors")
    registry.register(Down)
    assert registry.ask("log-down", None) == []
    [record] = [r for r in caplog.records if r.event == "command.short_circuited"]  # type: ignore[attr-defined]
    assert record.name == "actors"
    assert record.levelno == logging.DEBUG
    assert record.fields == {"command": "log-down", "reason": "circuit open"}  # type: ignore[attr-defined]
    assert record.getMessage() == "command.short_circuited command='log-down' reason='circuit open'"


def test_a_disabled_level_renders_nothing(
    unconfigured: None,
    caplog: pytest.LogCaptureFixture,
    registry: CommandRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rendered: list[Any] = []
    real = actors.log._value
    monkeypatch.setattr(actors.log, "_value", lambda v: rendered.append(v) or real(v))
    caplog.set_level(logging.WARNING, logger="actors")
    registry.register(Down)
    for _ in range(50):
        assert registry.ask("log-down", None) == []
    assert rendered == []
    assert events(caplog.records) == []
    caplog.set_level(logging.DEBUG, logger="actors")
    registry.ask("log-down", None)
    assert "circuit open" in rendered  # the same path renders once the level is enabled


def test_timeouts_are_logged_once_a_second_per_key_with_rounded_durations(
    unconfigured: None, caplog: pytest.LogCaptureFixture, registry: CommandRegistry
) -> None:
    caplog.set_level(logging.DEBUG, logger="actors")
    Slow.release.clear()
    registry.register(Slow)
    registry.configure("log-slow", CommandConfig(timeout=0.2, max_concurrent_requests=20))
    try:
        replies = [registry.ask_reply("log-slow", None, block=False) for _ in range(5)]
        assert [r.get(timeout=WAIT).value for r in replies] == ["fallback"] * 5
    finally:
        Slow.release.set()
    timed_out = [r for r in caplog.records if getattr(r, "event", None) == "command.timed_out"]
    assert len(timed_out) == 1  # the other four fell within the same second
    assert timed_out[0].levelno == logging.WARNING
    assert timed_out[0].fields["timeout_ms"] == 200.0  # type: ignore[attr-defined]
    assert "timeout_ms=200.0 " in timed_out[0].getMessage()


def test_the_applications_logging_setup_applies(
    unconfigured: None, caplog: pytest.LogCaptureFixture, registry: CommandRegistry
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("actors").setLevel(logging.ERROR)
    try:
        registry.register(Slow)
        Slow.release.clear()
        try:
            assert registry.ask("log-slow", None) == "fallback"
        finally:
            Slow.release.set()
        assert events(caplog.records) == []  # the warning was below the level the app set
    finally:
        logging.getLogger("actors").setLevel(logging.NOTSET)


def test_a_logger_made_before_structlog_is_configured_follows_the_configuration(
    unconfigured: None,
) -> None:
    log = Log().bind(command="early")
    with structlog.testing.capture_logs() as captured:
        log.info("circuit.opened", requests=20)
    assert captured == [
        {"event": "circuit.opened", "command": "early", "requests": 20, "log_level": "info"}
    ]


def test_with_structlog_configured_events_go_through_its_pipeline(
    registry: CommandRegistry, captured_logs: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    registry.register(Down)
    registry.ask("log-down", None)
    assert {"event": "command.short_circuited", "command": "log-down"}.items() <= (
        captured_logs[-1].items()
    )
    assert events(caplog.records) == []  # not twice


SERVICE = """
    import time
    from actors import Command, CommandConfig, CommandRegistry

    class Flaky(Command):
        key = "flaky"
        config = CommandConfig(timeout=0.05, request_volume_threshold=4, sleep_window=60.0)
        def run(self, payload):
            if payload == "slow":
                time.sleep(0.08)  # past the timeout, back within the zombie grace
            raise ConnectionError("upstream down")
        def fallback(self, payload, error):
            return []

    with CommandRegistry() as registry:
        registry.register(Flaky)
        for i in range(300):
            registry.ask("flaky", "slow" if i < 3 else "fail")
        assert registry.health("flaky").state == "open"
"""


def test_a_service_that_configured_nothing_prints_only_a_few_warnings() -> None:
    # In a subprocess: a process that configured neither structlog nor logging.
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SERVICE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    # Python's last-resort handler: WARNING and above, to stderr, one line per event; 3 timeouts
    # (one line), a failure (rate-limited) and the circuit's opening (info: not shown).
    assert 1 <= len(lines) <= 3, lines
    assert all(line.startswith(("command.timed_out ", "command.failed ")) for line in lines), lines
    assert "short_circuited" not in done.stderr
