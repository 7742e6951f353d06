"""Hedged requests (``CommandConfig(hedge=HedgePolicy(...))``), in the actor shell: a call still
unanswered after the hedge delay gets one more run on another worker; the first answer wins, the
other run's result is dropped (an ``async def run`` is cancelled); a failing run leaves the
answer to a run still going; extra runs take a bulkhead slot and the hedge budget.

Budgets and breakers run on the fake clock; the hedge delay is real time (the registry's timer),
kept short; every wait is on an event, a reply or a bounded poll (``eventually``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pykka
import pytest
from probe import WAIT

from actors import Command, CommandConfig, CommandRegistry, EventType, HedgePolicy

Eventually = Callable[..., None]

H, S, F = EventType.HEDGE, EventType.SUCCESS, EventType.FAILURE
FALLBACK = EventType.FALLBACK_SUCCESS

#: Hedge 20 ms after a call started, whenever the budget is not spent (one extra run per call).
SOON = HedgePolicy(delay=0.02, budget=1.0)


class Runs:
    """The dependency: run number ``n`` (from 1) does what ``plan[n]`` says (default: "ok")."""

    def __init__(self, **plan: str) -> None:
        self.plan = plan
        self.lock = threading.Lock()
        self.count = 0
        self.release = threading.Event()
        self.release_later = threading.Event()
        self.entered = {n: threading.Event() for n in range(1, 10)}
        self.cancelled = threading.Event()
        self.returned = threading.Event()

    def begin(self) -> tuple[int, str]:
        with self.lock:
            self.count += 1
            n = self.count
        self.entered[n].set()
        return n, self.plan.get(f"run{n}", "ok")


class Dependency(Command):
    key = "hedged"
    config = CommandConfig(timeout=WAIT, hedge=SOON)

    def __init__(self, runs: Runs) -> None:
        self.runs = runs

    def run(self, payload: Any) -> Any:
        n, what = self.runs.begin()
        if what == "hang":
            assert self.runs.release.wait(WAIT)
            self.runs.returned.set()
        elif what == "hang longer":
            assert self.runs.release_later.wait(WAIT)
        elif what == "fail after release":
            assert self.runs.release.wait(WAIT)
            raise ConnectionError(f"run {n} failed")
        elif what == "fail":
            raise ConnectionError(f"run {n} failed")
        return f"run {n}"

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return f"fallback: {error}"


class AsyncDependency(Dependency):
    key = "async hedged"

    async def run(self, payload: Any) -> Any:  # type: ignore[override]
        n, what = self.runs.begin()
        if what == "hang":
            try:
                await asyncio.Event().wait()  # never set: only a cancel ends it
            except asyncio.CancelledError:
                self.runs.cancelled.set()
                raise
        return f"run {n}"


def use(registry: CommandRegistry, runs: Runs, command: type[Dependency] = Dependency) -> None:
    registry.register(command, runs)


def test_a_slow_call_is_answered_by_its_extra_run(
    registry: CommandRegistry, eventually: Eventually
) -> None:
    runs = Runs(run1="hang")
    use(registry, runs)

    reply = registry.ask_reply(Dependency.key, "x")

    assert reply.value == "run 2" and reply.events == (H, S)
    assert registry.metrics(Dependency.key).in_flight == 1  # the first run still holds its slot
    runs.release.set()
    assert runs.returned.wait(WAIT)
    eventually(lambda: registry.metrics(Dependency.key).in_flight == 0, WAIT, "slot given back")
    metrics = registry.metrics(Dependency.key)
    assert (metrics.counts[H], metrics.counts[S]) == (1, 1)  # one call, one answer
    assert metrics.requests == 1  # only the winner's outcome counts for the breaker


def test_the_losing_run_never_answers_a_second_time(
    registry: CommandRegistry, eventually: Eventually
) -> None:
    runs = Runs(run1="hang")
    use(registry, runs)
    future = registry.ask_reply(Dependency.key, "x", block=False)
    reply = future.get(timeout=WAIT)

    runs.release.set()  # the first run now returns "run 1": too late
    eventually(lambda: registry.metrics(Dependency.key).in_flight == 0, WAIT, "slot given back")

    assert reply.value == "run 2"
    assert future.get(timeout=WAIT) is reply
    assert registry.metrics(Dependency.key).totals[S] == 1


def test_an_async_run_that_lost_is_cancelled(
    registry: CommandRegistry, eventually: Eventually
) -> None:
    runs = Runs(run1="hang")
    use(registry, runs, AsyncDependency)
    # a deadline far beyond the wait below: only the winner's cancel can end the loser in time
    registry.configure(AsyncDependency.key, AsyncDependency.config.replace(timeout=60.0))

    reply = registry.ask_reply(AsyncDependency.key, "x")

    assert reply.value == "run 2" and reply.events == (H, S)
    assert runs.cancelled.wait(WAIT), "the losing coroutine was not cancelled"
    eventually(lambda: registry.metrics(AsyncDependency.key).in_flight == 0, WAIT, "slot back")


def test_a_failing_run_leaves_the_answer_to_a_run_still_going(
    registry: CommandRegistry, eventually: Eventually
) -> None:
    runs = Runs(run1="fail after release", run2="hang longer")
    use(registry, runs)
    future = registry.ask_reply(Dependency.key, "x", block=False)
    assert runs.entered[2].wait(WAIT)

    runs.release.set()  # run 1 fails while run 2 is going: it gives its slot back, no answer
    eventually(lambda: registry.metrics(Dependency.key).in_flight == 1, WAIT, "run 1 deferred")
    with pytest.raises(pykka.Timeout):  # not answered: run 2 still goes
        future.get(timeout=0)
    runs.release_later.set()  # run 2 returns "run 2"

    reply = future.get(timeout=WAIT)
    assert reply.value == "run 2" and reply.events == (H, S)
    eventually(lambda: registry.metrics(Dependency.key).in_flight == 0, WAIT, "slots back")
    health = registry.health(Dependency.key)
    assert (health.requests, health.errors) == (1, 0)


def test_when_every_run_fails_the_last_one_answers_with_the_fallback(
    registry: CommandRegistry, eventually: Eventually
) -> None:
    runs = Runs(run1="fail after release", run2="fail")
    use(registry, runs)
    future = registry.ask_reply(Dependency.key, "x", block=False)
    assert runs.entered[2].wait(WAIT)
    eventually(lambda: registry.metrics(Dependency.key).in_flight == 1, WAIT, "run 2 deferred")

    runs.release.set()

    reply = future.get(timeout=WAIT)
    assert reply.events == (H, F, FALLBACK) and reply.value == "fallback: run 1 failed"
    health = registry.health(Dependency.key)
    assert (health.requests, health.errors, health.in_flight) == (1, 1, 0)


def test_an_extra_run_needs_a_free_slot_of_the_bulkhead(
    registry: CommandRegistry, captured_logs: list[dict[str, Any]], eventually: Eventually
) -> None:
    runs = Runs(run1="hang")
    use(registry, runs)
    registry.configure(Dependency.key, Dependency.config.replace(max_concurrent_requests=1))
    future = registry.ask_reply(Dependency.key, "x", block=False)

    eventually(lambda: denied(captured_logs) == ["bulkhead"], WAIT, "the hedge was refused")
    runs.release.set()

    assert future.get(timeout=WAIT).events == (S,)
    assert runs.count == 1


def test_extra_runs_are_limited_by_the_hedge_budget(
    registry: CommandRegistry, captured_logs: list[dict[str, Any]], eventually: Eventually
) -> None:
    runs = Runs(run1="hang")
    use(registry, runs)
    stingy = HedgePolicy(delay=0.02, budget=0.05)  # one extra run per 20 calls
    registry.configure(Dependency.key, Dependency.config.replace(hedge=stingy))
    future = registry.ask_reply(Dependency.key, "x", block=False)

    eventually(lambda: denied(captured_logs) == ["budget"], WAIT, "the hedge was refused")
    runs.release.set()

    assert future.get(timeout=WAIT).events == (S,)
    assert runs.count == 1


def test_a_percentile_delay_waits_for_enough_timed_runs(
    registry: CommandRegistry, eventually: Eventually
) -> None:
    runs = Runs(run6="hang")
    use(registry, runs)
    typical = HedgePolicy(percentile=50.0, min_samples=5, budget=1.0)
    registry.configure(Dependency.key, Dependency.config.replace(hedge=typical))
    for _ in range(5):  # fast runs: the key's median run time is tiny from now on
        assert registry.ask_reply(Dependency.key, "x").events == (S,)

    reply = registry.ask_reply(Dependency.key, "x")

    assert reply.value == "run 7" and reply.events == (H, S)
    runs.release.set()
    eventually(lambda: registry.metrics(Dependency.key).in_flight == 0, WAIT, "slot given back")


def test_a_hedge_is_for_thread_isolation_only() -> None:
    with pytest.raises(ValueError, match="hedge applies to thread isolation only"):
        CommandConfig(hedge=SOON, isolation="semaphore")


def denied(logs: list[dict[str, Any]]) -> list[str]:
    return [e["reason"] for e in logs if e["event"] == "command.hedge_denied"]
