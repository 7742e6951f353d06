"""The pool around the workers: waiting calls, resizing, dropping, and the fallback bulkhead."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from probe import WAIT, Probe

from actors import (
    Command,
    CommandConfig,
    CommandError,
    CommandRegistry,
    FallbackFailedError,
)


class Hangs(Command):
    """``run`` waits for the test; ``fallback`` waits too when the payload says so."""

    key = "hangs"
    config = CommandConfig(timeout=WAIT, max_concurrent_requests=1, queue_size=2)

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def run(self, payload: Any) -> Any:
        if payload == "fail":
            raise RuntimeError("dependency down")
        self.probe.entered.release()
        assert self.probe.release.wait(WAIT)
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:
        if payload == "fail":
            self.probe.in_fallback.release()
            assert self.probe.release.wait(WAIT)
        return ("fallback", getattr(error, "reason", type(error).__name__))


@pytest.fixture
def probe(registry: CommandRegistry) -> Iterator[Probe]:
    probe = Probe()
    registry.register(Hangs, probe)
    yield probe
    probe.release.set()


def test_growing_the_pool_starts_workers_for_the_calls_waiting(
    registry: CommandRegistry, probe: Probe
) -> None:
    futures = [registry.ask(Hangs.key, n, block=False) for n in range(3)]
    probe.wait_entered(1)
    assert registry.health(Hangs.key).in_flight == 3  # one running, two waiting

    registry.configure(Hangs.key, Hangs.config.replace(max_concurrent_requests=3))

    probe.wait_entered(2)  # the two waiting calls now run, each on a new worker
    assert registry.health(Hangs.key).workers == 3
    probe.release.set()
    assert [f.get(timeout=WAIT) for f in futures] == [0, 1, 2]


def test_calls_waiting_when_the_key_is_reset_are_answered_at_once(
    registry: CommandRegistry, probe: Probe
) -> None:
    running = registry.ask(Hangs.key, "running", block=False)
    probe.wait_entered(1)
    waiting = registry.ask_reply(Hangs.key, "waiting", block=False)

    registry.reset()

    reply = waiting.get(timeout=WAIT)  # answered without waiting for the running call
    assert reply.value == ("fallback", "unavailable")
    assert isinstance(reply.error, CommandError)
    probe.release.set()
    assert running.get(timeout=WAIT) == "running"  # a running call still finishes


def test_past_fallback_max_concurrent_a_fallback_is_rejected(
    registry: CommandRegistry, probe: Probe
) -> None:
    registry.configure(
        Hangs.key,
        Hangs.config.replace(max_concurrent_requests=2, fallback_max_concurrent=1),
    )
    first = registry.ask_reply(Hangs.key, "fail", block=False)
    assert probe.in_fallback.acquire(timeout=WAIT)  # the one fallback slot is taken

    second = registry.ask_reply(Hangs.key, "fail")

    assert second.events == ("FAILURE", "FALLBACK_REJECTION")
    assert isinstance(second.error, FallbackFailedError)
    assert second.error.reason == "fallback rejected"
    assert isinstance(second.error.run_error, RuntimeError)
    with pytest.raises(FallbackFailedError):
        second.unwrap()
    probe.release.set()
    assert first.get(timeout=WAIT).events == ("FAILURE", "FALLBACK_SUCCESS")
