"""``Pipeline.arun`` and ``async for ... in Pipeline.amap``: the same pipeline on an event loop."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from probe import WAIT

from actors import Command, CommandConfig, CommandRegistry, EventType
from actors.pipeline import FanOut, Pipeline, PipelineResult, Stage


class AddOne(Command):
    key = "async add one"

    def run(self, payload: Any) -> Any:
        return payload + 1


class Upto(Command):
    key = "async upto"

    def run(self, payload: Any) -> Any:
        return list(range(payload))


class Gated(Command):
    """Each element waits for its own gate (set by the test), counting how many run at once."""

    key = "async gated"
    config = CommandConfig(timeout=WAIT, max_concurrent_requests=20)

    def __init__(self, gates: dict[int, threading.Event], seen: dict[str, Any]) -> None:
        self.gates = gates
        self.seen = seen

    def run(self, payload: Any) -> Any:
        with self.seen["lock"]:
            self.seen["now"] += 1
            self.seen["peak"] = max(self.seen["peak"], self.seen["now"])
            self.seen["started"].append(payload)
        try:
            assert self.gates[payload].wait(WAIT)
        finally:
            with self.seen["lock"]:
                self.seen["now"] -= 1
        return payload * 10


class Never(Command):
    """Must not run: a stage reached after the budget is spent."""

    key = "async never"

    def __init__(self, runs: list[Any]) -> None:
        self.runs = runs

    def run(self, payload: Any) -> Any:
        self.runs.append(payload)
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return "too late"


class Slow(Command):
    key = "async slow"
    config = CommandConfig(timeout=WAIT)

    def run(self, payload: Any) -> Any:
        threading.Event().wait(0.2)  # the dependency's own duration
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return "degraded"


@pytest.fixture
def seen() -> dict[str, Any]:
    return {"lock": threading.Lock(), "now": 0, "peak": 0, "started": []}


def test_arun_flows_values_from_stage_to_stage(registry: CommandRegistry) -> None:
    registry.register(AddOne)
    registry.register(Upto)
    pipeline = Pipeline(Stage(AddOne.key), Stage(Upto.key), registry=registry)

    result = asyncio.run(pipeline.arun(2))

    assert result.value == [0, 1, 2]
    assert result.complete
    assert [step.events for step in result.trace] == [((EventType.SUCCESS,),)] * 2


def test_an_async_fan_out_keeps_input_order_and_its_bound(
    registry: CommandRegistry, seen: dict[str, Any]
) -> None:
    gates = {n: threading.Event() for n in range(6)}
    registry.register(Gated, gates, seen)
    registry.register(Upto)
    pipeline = Pipeline(Stage(Upto.key), FanOut(Gated.key, max_in_flight=3), registry=registry)

    async def main() -> PipelineResult:
        run = asyncio.ensure_future(pipeline.arun(6))
        loop = asyncio.get_running_loop()
        give_up = loop.time() + WAIT
        while len(seen["started"]) < 3:  # the first three are running, held
            assert loop.time() < give_up, "the fan-out never started three calls"
            await asyncio.sleep(0.001)  # yields to the loop while worker threads start
        for n in reversed(range(6)):  # released in reverse: results must come back in order
            gates[n].set()
        return await run

    result = asyncio.run(main())

    assert result.value == (0, 10, 20, 30, 40, 50)
    assert seen["peak"] <= 3


def test_the_loop_keeps_running_while_a_stage_waits(registry: CommandRegistry) -> None:
    registry.register(Slow)
    pipeline = Pipeline(Stage(Slow.key), registry=registry)

    async def main() -> tuple[Any, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.ensure_future(ticker())
        result = await pipeline.arun("x")
        task.cancel()
        return result.value, ticks

    value, ticks = asyncio.run(main())

    assert value == "x"
    assert ticks >= 5  # 0.2 s of dependency time: a blocked loop would tick once


def test_a_stage_reached_after_the_budget_is_answered_timeout_without_running(
    registry: CommandRegistry,
) -> None:
    runs: list[Any] = []
    registry.register(Slow)
    registry.register(Never, runs)
    pipeline = Pipeline(Stage(Slow.key), Stage(Never.key), registry=registry, budget=0.05)

    result = asyncio.run(pipeline.arun("x"))

    timed_out = ((EventType.TIMEOUT, EventType.FALLBACK_SUCCESS),)
    assert [step.events for step in result.trace] == [timed_out, timed_out]
    assert result.value == "too late"
    assert result.degraded
    assert runs == []  # stage 2 was reached with no time left: answered without running


def test_amap_yields_in_order_and_takes_at_most_n_payloads_ahead(
    registry: CommandRegistry,
) -> None:
    registry.register(AddOne)
    pipeline = Pipeline(Stage(AddOne.key), registry=registry)
    taken = 0

    async def endless() -> AsyncIterator[int]:
        nonlocal taken
        for n in itertools.count():
            taken += 1
            yield n

    async def main() -> list[Any]:
        values = []
        stream = pipeline.amap(endless(), max_in_flight=4)
        async for result in stream:
            values.append(result.value)
            assert taken - len(values) <= 4  # never more than N taken and not yet yielded
            if len(values) == 50:
                break
        await stream.aclose()
        return values

    assert asyncio.run(main()) == list(range(1, 51))


def test_amap_takes_a_plain_iterable_too(registry: CommandRegistry) -> None:
    registry.register(AddOne)
    pipeline = Pipeline(Stage(AddOne.key), registry=registry)

    async def main() -> list[Any]:
        return [result.value async for result in pipeline.amap(range(10), max_in_flight=3)]

    assert asyncio.run(main()) == list(range(1, 11))


def test_amap_refuses_a_bad_bound_at_once(registry: CommandRegistry) -> None:
    pipeline = Pipeline(Stage(AddOne.key), registry=registry)

    with pytest.raises(ValueError, match="max_in_flight"):
        pipeline.amap(range(3), max_in_flight=0)
