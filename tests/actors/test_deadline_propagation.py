"""``deadline=``: a caller's own deadline, passed down to a call (gRPC-style propagation)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from probe import WAIT

from actors import Command, CommandConfig, CommandRegistry, CommandTimeoutError, EventType


class Slow(Command):
    key = "slow-for-deadlines"
    config = CommandConfig(timeout=WAIT)

    def __init__(self, ran: list[Any], release: threading.Event) -> None:
        self.ran = ran
        self.release = release

    def run(self, payload: Any) -> Any:
        self.ran.append(payload)
        self.release.wait(WAIT)
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return ("fallback", getattr(error, "reason", None))


@pytest.fixture
def ran(registry: CommandRegistry) -> Any:
    ran: list[Any] = []
    release = threading.Event()
    registry.register(Slow, ran, release)
    yield ran
    release.set()


def test_a_call_whose_deadline_has_passed_is_answered_timeout_without_running(
    registry: CommandRegistry, ran: list[Any]
) -> None:
    reply = registry.ask_reply(Slow.key, "late", deadline=time.monotonic() - 0.001)

    assert reply.events == (EventType.TIMEOUT, EventType.FALLBACK_SUCCESS)
    assert reply.value == ("fallback", "timeout")
    assert isinstance(reply.error, CommandTimeoutError)
    assert ran == []
    assert registry.metrics(Slow.key).requests == 0  # not a verdict on the dependency


def test_a_deadline_shortens_the_calls_timeout(registry: CommandRegistry, ran: list[Any]) -> None:
    started = time.monotonic()

    reply = registry.ask_reply(Slow.key, "slow", deadline=started + 0.05)

    assert reply.events == (EventType.TIMEOUT, EventType.FALLBACK_SUCCESS)
    assert time.monotonic() - started < WAIT / 2  # answered at the deadline, not the timeout
    assert ran == ["slow"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "soon", True, 10**400])
def test_a_bad_deadline_is_refused_naming_it(
    registry: CommandRegistry, ran: list[Any], bad: Any
) -> None:
    with pytest.raises(ValueError, match="deadline"):
        registry.ask(Slow.key, 1, deadline=bad)
    assert ran == []
