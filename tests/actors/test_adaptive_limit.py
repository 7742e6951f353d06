"""An adaptive concurrency limit (``CommandConfig(limit=AdaptiveLimit(...))``), in the actor shell:
the key's bulkhead follows the limit its algorithm computes from each call's run time and drops
(timeouts); health, metrics, the stream and Prometheus show the limit now; the key's own pool
resizes with it. The algorithms themselves are tested in tests/supervision/test_limit.py.

AIMD is used here: its steps are exact (+1 per call while the limit is in use, x backoff_ratio
per drop), so each test knows the limit to expect.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from probe import WAIT

from actors import (
    AdaptiveLimit,
    Command,
    CommandConfig,
    CommandRegistry,
    EventType,
    MaxConcurrencyError,
)
from actors.stream import command_message

Eventually = Callable[..., None]

AIMD = AdaptiveLimit("aimd", min=1, max=8, initial=4, backoff_ratio=0.5)


class Dependency(Command):
    """ "hang" waits for ``release``; "meet" waits until ``party`` callers are inside ``run``
    together (so each call ends with the others in flight); anything else returns at once."""

    key = "limited"
    config = CommandConfig(timeout=WAIT, limit=AIMD, max_concurrent_requests=100)

    def __init__(self, gate: dict[str, Any]) -> None:
        self.gate = gate

    def run(self, payload: Any) -> Any:
        if payload == "hang":
            self.gate["entered"].release()
            assert self.gate["release"].wait(WAIT)
        elif payload == "meet":
            self.gate["party"].wait(WAIT)
        return payload


@pytest.fixture
def gate(registry: CommandRegistry) -> dict[str, Any]:
    shared = {
        "release": threading.Event(),
        "entered": threading.Semaphore(0),
        "party": threading.Barrier(4),
    }
    registry.register(Dependency, shared)
    yield shared
    shared["release"].set()
    shared["party"].abort()


def limit(registry: CommandRegistry) -> int:
    return registry.health(Dependency.key).limit


def test_the_limit_starts_at_initial_and_bounds_the_bulkhead_not_max_concurrent_requests(
    registry: CommandRegistry, gate: dict[str, Any]
) -> None:
    assert limit(registry) == 4  # registered, never used: the limit it would start at
    futures = [registry.ask(Dependency.key, "hang", block=False) for _ in range(4)]
    for _ in range(4):
        assert gate["entered"].acquire(timeout=WAIT)

    reply = registry.ask_reply(Dependency.key, "x")

    assert reply.events[0] is EventType.THREAD_POOL_REJECTED
    assert isinstance(reply.error, MaxConcurrencyError)
    gate["release"].set()
    assert [f.get(timeout=WAIT) for f in futures] == ["hang"] * 4


def test_a_timeout_shrinks_the_limit(registry: CommandRegistry, gate: dict[str, Any]) -> None:
    registry.configure(Dependency.key, Dependency.config.replace(timeout=0.05))

    reply = registry.ask_reply(Dependency.key, "hang")

    assert reply.events[0] is EventType.TIMEOUT
    assert limit(registry) == 2  # 4 x 0.5: a drop
    metrics = registry.metrics(Dependency.key)
    assert metrics.limit == 2 and metrics.pool.max_pool_size == 2  # the key's own pool follows
    assert command_message(metrics)["concurrencyLimit"] == 2


def test_calls_that_use_the_limit_grow_it_back(
    registry: CommandRegistry, gate: dict[str, Any]
) -> None:
    # four calls in flight together, each ending with the others still in: the limit is in use
    callers = [
        threading.Thread(target=registry.ask, args=(Dependency.key, "meet")) for _ in range(4)
    ]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(WAIT)

    assert 5 <= limit(registry) <= 8  # +1 per call that ended with at least half in use


def test_calls_far_below_the_limit_leave_it_alone(
    registry: CommandRegistry, gate: dict[str, Any]
) -> None:
    for _ in range(10):
        assert registry.ask(Dependency.key, "x") == "x"

    assert limit(registry) == 4  # one call in flight of 4 allowed: the limit is not in use


def test_a_failure_is_not_a_drop(registry: CommandRegistry, gate: dict[str, Any]) -> None:
    class Broken(Command):
        key = "broken"
        config = CommandConfig(limit=AIMD, request_volume_threshold=1000)

        def run(self, payload: Any) -> Any:
            raise ConnectionError("refused")

    registry.register(Broken)
    for _ in range(3):
        assert registry.ask_reply(Broken.key, "x").events[0] is EventType.FAILURE

    assert registry.health(Broken.key).limit == 4


def test_without_an_adaptive_limit_the_limit_is_max_concurrent_requests(
    registry: CommandRegistry, gate: dict[str, Any]
) -> None:
    registry.configure(Dependency.key, Dependency.config.replace(limit=None))
    registry.ask(Dependency.key, "x")

    assert limit(registry) == 100
    assert registry.metrics(Dependency.key).limit == 100


def test_configuring_another_limit_starts_it_afresh(
    registry: CommandRegistry, gate: dict[str, Any]
) -> None:
    registry.ask(Dependency.key, "x")
    registry.configure(Dependency.key, Dependency.config.replace(limit=AIMD.replace(initial=6)))

    assert limit(registry) == 6


def test_limit_must_be_an_adaptive_limit() -> None:
    with pytest.raises(ValueError, match="limit must be an AdaptiveLimit"):
        CommandConfig(limit=5)  # type: ignore[arg-type]
