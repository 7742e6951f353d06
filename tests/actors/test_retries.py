"""Retries under a budget (``CommandConfig(retry=RetryPolicy(...))``), in the actor shell: a failed
run is run again within the call's one deadline, each attempt counted by the breaker, until the
policy, the budget, the deadline or the circuit says no; the reply carries every attempt's events.

Breakers and budgets run on the fake clock; backoffs are 0 (or jitter-free and short) so no test
waits on time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from actors import (
    BadRequest,
    CircuitState,
    Command,
    CommandConfig,
    CommandRegistry,
    EventType,
    RetryBudget,
    RetryPolicy,
)
from actors.stream import command_message

F, R, S = EventType.FAILURE, EventType.RETRY, EventType.SUCCESS
FALLBACK = EventType.FALLBACK_SUCCESS
EXHAUSTED = EventType.RETRY_BUDGET_EXHAUSTED

#: No wait between attempts, a budget that never runs out (unless a test says otherwise).
NOW = RetryPolicy(attempts=3, backoff=0.0, jitter=0.0, budget=None)


class Script:
    """What the dependency does, attempt after attempt: an exception instance raises it,
    anything else is returned."""

    def __init__(self, *steps: Any) -> None:
        self.steps = list(steps)
        self.runs = 0
        self.lock = threading.Lock()

    def next(self) -> Any:
        with self.lock:
            self.runs += 1
            step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, BaseException):
            raise step
        return step


class Flaky(Command):
    key = "flaky"
    config = CommandConfig(timeout=5.0, retry=NOW)

    def __init__(self, script: Script) -> None:
        self.script = script

    def run(self, payload: Any) -> Any:
        return self.script.next()

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return ("fallback", type(error).__name__)


class AsyncFlaky(Flaky):
    key = "async flaky"

    async def run(self, payload: Any) -> Any:  # type: ignore[override]
        await asyncio.sleep(0)
        return self.script.next()


class Here(Flaky):
    key = "here"
    config = CommandConfig(timeout=5.0, retry=NOW, isolation="semaphore")


@pytest.fixture(params=[Flaky, AsyncFlaky, Here], ids=["thread", "async", "semaphore"])
def command(request: pytest.FixtureRequest) -> type[Flaky]:
    kind: type[Flaky] = request.param
    return kind


def use(registry: CommandRegistry, command: type[Flaky], *steps: Any, **config: Any) -> Script:
    script = Script(*steps)
    registry.register(command, script)
    if config:
        registry.configure(command.key, command.config.replace(**config))
    return script


def test_a_failed_run_is_retried_until_it_succeeds(
    registry: CommandRegistry, command: type[Flaky]
) -> None:
    script = use(registry, command, ConnectionError("reset"), TimeoutError("slow"), "ok")

    reply = registry.ask_reply(command.key, "x")

    assert reply.value == "ok" and reply.error is None
    assert reply.events == (F, R, F, R, S)
    assert script.runs == 3
    health = registry.health(command.key)
    assert (health.requests, health.errors) == (3, 2)  # each attempt is a run for the breaker
    counts = registry.metrics(command.key).counts
    assert (counts[R], counts[F], counts[S]) == (2, 2, 1)


def test_retries_stop_after_the_policy_s_attempts(
    registry: CommandRegistry, command: type[Flaky]
) -> None:
    script = use(registry, command, ConnectionError("down"))

    reply = registry.ask_reply(command.key, "x")

    assert reply.value == ("fallback", "ConnectionError")
    assert reply.events == (F, R, F, R, F, FALLBACK)
    assert script.runs == 3


@pytest.mark.parametrize(
    "error",
    [ValueError("not retried"), BadRequest("bad input"), KeyError("ignored")],
    ids=["not in retry_on", "BadRequest", "ignored"],
)
def test_what_the_policy_does_not_name_is_never_retried(
    registry: CommandRegistry, command: type[Flaky], error: Exception
) -> None:
    retry = RetryPolicy(backoff=0.0, retry_on=(Exception,), budget=None)
    if isinstance(error, ValueError):
        retry = NOW  # ConnectionError and TimeoutError only
    script = use(registry, command, error, "ok", retry=retry, ignore=(KeyError,))

    reply = registry.ask_reply(command.key, "x")

    assert script.runs == 1
    assert R not in reply.events


def test_a_retry_whose_wait_would_pass_the_deadline_is_not_made(
    registry: CommandRegistry, command: type[Flaky]
) -> None:
    slow = RetryPolicy(attempts=3, backoff=0.5, jitter=0.0, budget=None)
    script = use(registry, command, ConnectionError("down"), "ok", retry=slow, timeout=0.2)

    reply = registry.ask_reply(command.key, "x")

    assert reply.events == (F, FALLBACK)
    assert script.runs == 1
    assert reply.latency < 0.2


def test_the_budget_s_floor_allows_a_few_retries_then_denies_them(
    registry: CommandRegistry, command: type[Flaky]
) -> None:
    # no share of calls, a floor of one retry per 10 s window: the first call's retry is allowed
    tight = RetryPolicy(
        attempts=3,
        backoff=0.0,
        jitter=0.0,
        budget=RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0),
    )
    use(registry, command, ConnectionError("down"), retry=tight)

    first = registry.ask_reply(command.key, "x")
    second = registry.ask_reply(command.key, "x")

    assert first.events == (F, R, F, EXHAUSTED, FALLBACK)
    assert second.events == (F, EXHAUSTED, FALLBACK)
    counts = registry.metrics(command.key).counts
    assert (counts[R], counts[EXHAUSTED]) == (1, 2)
    message = command_message(registry.metrics(command.key))
    assert message["rollingCountRetry"] == 1
    assert message["rollingCountRetryBudgetExhausted"] == 2


def test_the_budget_refills_as_its_window_moves_on(
    registry: CommandRegistry, clock: Any, command: type[Flaky]
) -> None:
    tight = RetryPolicy(
        attempts=2,
        backoff=0.0,
        jitter=0.0,
        budget=RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0),
    )
    use(registry, command, ConnectionError("down"), retry=tight, request_volume_threshold=1000)
    assert registry.ask_reply(command.key, "x").events == (F, R, F, FALLBACK)
    assert registry.ask_reply(command.key, "x").events == (F, EXHAUSTED, FALLBACK)

    clock.advance(11.0)

    assert registry.ask_reply(command.key, "x").events == (F, R, F, FALLBACK)


def test_a_retry_is_not_made_once_the_circuit_opened(
    registry: CommandRegistry, command: type[Flaky]
) -> None:
    script = use(
        registry,
        command,
        ConnectionError("down"),
        request_volume_threshold=1,
        error_percent_threshold=50,
    )

    reply = registry.ask_reply(command.key, "x")

    assert reply.events == (F, FALLBACK)  # its failure opened the circuit: no second attempt
    assert script.runs == 1
    assert registry.health(command.key).state is CircuitState.OPEN


def test_without_a_retry_policy_nothing_is_retried(registry: CommandRegistry) -> None:
    script = use(registry, Flaky, ConnectionError("down"), "ok", retry=None)

    assert registry.ask_reply(Flaky.key, "x").events == (F, FALLBACK)
    assert script.runs == 1


def test_a_non_blocking_ask_is_retried_too(registry: CommandRegistry) -> None:
    use(registry, Flaky, ConnectionError("reset"), "ok")

    future = registry.ask_reply(Flaky.key, "x", block=False)

    reply = future.get(timeout=5.0)
    assert reply.events == (F, R, S) and reply.value == "ok"


def test_retry_must_be_a_retry_policy() -> None:
    with pytest.raises(ValueError, match="retry must be a RetryPolicy"):
        CommandConfig(retry=3)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_leak(registry: CommandRegistry) -> Iterator[None]:
    """Every test ends with nothing in flight: retries give their slot back."""
    yield
    for metrics in registry.all_metrics():
        assert metrics.in_flight == 0, metrics.key


class AsyncHere(AsyncFlaky):
    key = "async here"
    config = CommandConfig(timeout=5.0, retry=NOW, isolation="semaphore")


def test_an_awaited_semaphore_call_is_retried_in_the_caller_s_task(
    registry: CommandRegistry,
) -> None:
    script = use(registry, AsyncHere, ConnectionError("reset"), "ok")

    async def main() -> Any:
        return await registry.ask_reply_async(AsyncHere.key, "x")

    reply = asyncio.run(main())

    assert reply.events == (F, R, S) and reply.value == "ok"
    assert script.runs == 2
