"""``Pipeline``: stages in sequence, fan-out / fan-in, one deadline, streaming, the trace."""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from probe import WAIT

from actors import (
    Command,
    CommandConfig,
    CommandRegistry,
    CommandTimeoutError,
    EventType,
    FallbackFailedError,
    UnknownCommandError,
)
from actors.pipeline import FanOut, Pipeline, PipelineResult, Stage, StageTrace

SUCCESS = (EventType.SUCCESS,)
TIMED_OUT = (EventType.TIMEOUT, EventType.FALLBACK_SUCCESS)


class AddOne(Command):
    key = "add one"

    def run(self, payload: Any) -> Any:
        return payload + 1


class Double(Command):
    key = "double"

    def run(self, payload: Any) -> Any:
        return payload * 2


class Upto(Command):
    key = "upto"

    def run(self, payload: Any) -> Any:
        return list(range(payload))


class Total(Command):
    key = "total"

    def run(self, payload: Any) -> Any:
        return sum(payload)


class Broken(Command):
    key = "broken, no fallback"

    def run(self, payload: Any) -> Any:
        raise ConnectionError("dependency down")


class OddFails(Command):
    key = "odd fails"

    def run(self, payload: Any) -> Any:
        if payload % 2:
            raise ConnectionError(f"no answer for {payload}")
        return payload * 10

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return -1


class Held:
    """Shared by a test and its ``Gated`` commands: each element waits on its own gate."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gates: dict[Any, threading.Event] = {}
        self.running: set[Any] = set()
        self.peak = 0
        self.runs = 0
        self.entered: queue.Queue[Any] = queue.Queue()
        self.finished: list[Any] = []
        self._open = False

    def gate(self, element: Any) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(element, threading.Event())

    def release(self, element: Any) -> None:
        self.gate(element).set()

    def release_all(self) -> None:
        with self._lock:
            self._open = True
            for gate in self._gates.values():
                gate.set()

    def enter(self, element: Any) -> None:
        with self._lock:
            self.runs += 1
            self.running.add(element)
            self.peak = max(self.peak, len(self.running))
            if self._open:
                self._gates.setdefault(element, threading.Event()).set()
        self.entered.put(element)

    def leave(self, element: Any) -> None:
        with self._lock:
            self.running.discard(element)
            self.finished.append(element)

    def next_entered(self) -> Any:
        return self.entered.get(timeout=WAIT)


class Gated(Command):
    key = "gated"
    config = CommandConfig(timeout=WAIT)

    def __init__(self, held: Held) -> None:
        self.held = held

    def run(self, payload: Any) -> Any:
        self.held.enter(payload)
        try:
            self.held.gate(payload).wait(WAIT)
        finally:
            self.held.leave(payload)
        return payload * 10

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return ("late", payload)


class Counted(Command):
    key = "counted"

    def __init__(self, held: Held) -> None:
        self.held = held

    def run(self, payload: Any) -> Any:
        self.held.enter(payload)
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return "skipped"


@pytest.fixture
def commands(registry: CommandRegistry) -> CommandRegistry:
    for command in (AddOne, Double, Upto, Total, Broken, OddFails):
        registry.register(command)
    return registry


@pytest.fixture
def held(registry: CommandRegistry) -> Iterator[Held]:
    held = Held()
    registry.register(Gated, held)
    yield held
    held.release_all()


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2, thread_name_prefix="test-caller") as pool:
        yield pool


# -- sequential stages --------------------------------------------------------------------------


def test_the_value_of_each_stage_is_the_payload_of_the_next(commands: CommandRegistry) -> None:
    pipeline = Pipeline(Stage(AddOne.key), Stage(Double.key), registry=commands)

    result = pipeline.run(3)

    assert result.value == 8
    assert result.complete and result.ok and not result.degraded
    assert [step.key for step in result.trace] == [AddOne.key, Double.key]
    assert [step.events for step in result.trace] == [(SUCCESS,), (SUCCESS,)]
    assert pipeline(3) == 8


# -- fan-out / fan-in ---------------------------------------------------------------------------


def test_a_fan_out_gathers_its_values_in_input_order_when_they_finish_in_reverse(
    commands: CommandRegistry,
    held: Held,
    background: ThreadPoolExecutor,
    eventually: Callable[..., None],
) -> None:
    pipeline = Pipeline(Stage(Upto.key), FanOut(Gated.key, max_in_flight=5), registry=commands)

    running = background.submit(pipeline.run, 5)
    assert sorted(held.next_entered() for _ in range(5)) == [0, 1, 2, 3, 4]
    for element in reversed(range(5)):
        held.release(element)
        eventually(lambda element=element: element in held.finished, what=f"{element} ended")
    result = running.result(WAIT)

    assert held.finished == [4, 3, 2, 1, 0]
    assert result.value == (0, 10, 20, 30, 40)
    assert result.trace[1].fan_out
    assert result.trace[1].events == (SUCCESS,) * 5
    assert result.complete


def test_a_fan_out_never_runs_more_than_max_in_flight_and_refills_as_any_call_ends(
    commands: CommandRegistry, held: Held, background: ThreadPoolExecutor
) -> None:
    pipeline = Pipeline(Stage(Upto.key), FanOut(Gated.key, max_in_flight=3), registry=commands)

    running = background.submit(pipeline.run, 10)
    first = {held.next_entered() for _ in range(3)}
    assert first == {0, 1, 2}
    held.release(2)  # not the oldest: a new call starts anyway
    assert held.next_entered() == 3
    with held._lock:
        assert held.running == {0, 1, 3}
    held.release_all()
    result = running.result(WAIT)

    assert result.value == tuple(range(0, 100, 10))
    assert held.peak == 3
    assert held.runs == 10


def test_each_element_that_fails_gets_its_own_fallback_and_the_trace_says_which(
    commands: CommandRegistry,
) -> None:
    pipeline = Pipeline(Stage(Upto.key), FanOut(OddFails.key, max_in_flight=2), registry=commands)

    result = pipeline.run(5)

    assert result.value == (0, -1, 20, -1, 40)
    assert result.ok and result.degraded and not result.complete
    fan_out = result.trace[1]
    assert fan_out.fell_back and fan_out.fell_back_at == (1, 3)
    fallback = (EventType.FAILURE, EventType.FALLBACK_SUCCESS)
    assert fan_out.events == (SUCCESS, fallback, SUCCESS, fallback, SUCCESS)
    assert [type(error).__name__ for error in fan_out.errors] == [
        "NoneType",
        "ConnectionError",
        "NoneType",
        "ConnectionError",
        "NoneType",
    ]
    assert not result.trace[0].fell_back


def test_a_fan_out_over_a_value_that_is_not_iterable_names_the_stage(
    commands: CommandRegistry,
) -> None:
    pipeline = Pipeline(Stage(AddOne.key), FanOut(Double.key), registry=commands)

    with pytest.raises(TypeError, match=r"fan-out stage 'double' needs an iterable.*got int 2"):
        pipeline.run(1)


def test_a_fan_out_over_nothing_gives_an_empty_tuple(commands: CommandRegistry) -> None:
    pipeline = Pipeline(Stage(Upto.key), FanOut(Double.key), Stage(Total.key), registry=commands)

    assert pipeline.run(0).value == 0
    assert pipeline.run(4).value == 12


# -- the deadline -------------------------------------------------------------------------------


def test_a_budget_spent_in_stage_two_shortens_its_call_and_stage_three_does_not_run(
    commands: CommandRegistry, held: Held
) -> None:
    counted = Held()
    commands.register(Counted, counted)
    budget = 0.2
    pipeline = Pipeline(
        Stage(AddOne.key), Stage(Gated.key), Stage(Counted.key), registry=commands, budget=budget
    )

    started = time.monotonic()
    result = pipeline.run(1)
    elapsed = time.monotonic() - started

    assert budget <= elapsed < WAIT / 2  # answered at the budget, not at Gated's own timeout
    assert [step.events for step in result.trace] == [(SUCCESS,), (TIMED_OUT,), (TIMED_OUT,)]
    assert isinstance(result.trace[1].errors[0], CommandTimeoutError)
    assert "no time left" in str(result.trace[2].errors[0])
    assert counted.runs == 0
    assert held.runs == 1
    assert result.value == "skipped"
    assert result.degraded


def test_a_stage_timeout_shorter_than_the_budget_is_kept(
    commands: CommandRegistry, held: Held
) -> None:
    pipeline = Pipeline(Stage(Gated.key, timeout=0.05), registry=commands, budget=WAIT)

    started = time.monotonic()
    result = pipeline.run(7)

    assert time.monotonic() - started < WAIT / 2
    assert result.value == ("late", 7)
    assert result.trace[0].events == (TIMED_OUT,)


# -- the pipeline-level fallback ----------------------------------------------------------------


def test_the_pipeline_fallback_answers_when_a_stage_has_none(commands: CommandRegistry) -> None:
    seen: list[tuple[Any, BaseException, tuple[StageTrace, ...]]] = []

    def fallback(payload: Any, error: BaseException, trace: tuple[StageTrace, ...]) -> Any:
        seen.append((payload, error, trace))
        return "cached answer"

    pipeline = Pipeline(
        Stage(AddOne.key),
        Stage(Broken.key),
        Stage(Double.key),
        registry=commands,
        fallback=fallback,
    )

    result = pipeline.run(1)

    assert result.value == "cached answer"
    assert result.fell_back and result.degraded and result.ok
    assert isinstance(result.error, ConnectionError)
    assert [step.key for step in result.trace] == [AddOne.key, Broken.key]  # stopped there
    assert result.trace[1].events == ((EventType.FAILURE, EventType.FALLBACK_MISSING),)
    ((payload, error, trace),) = seen
    assert payload == 1 and error is result.error and trace == result.trace
    assert pipeline(1) == "cached answer"


def test_without_a_pipeline_fallback_the_error_is_carried_and_raised_at_the_edge(
    commands: CommandRegistry,
) -> None:
    pipeline = Pipeline(Stage(Broken.key), Stage(Double.key), registry=commands)

    result = pipeline.run(1)

    assert not result.ok and not result.complete and not result.degraded
    assert result.value is None
    with pytest.raises(ConnectionError, match="dependency down"):
        result.unwrap()
    with pytest.raises(ConnectionError, match="dependency down"):
        pipeline(1)


def test_a_failing_pipeline_fallback_is_a_fallback_failed_error(
    commands: CommandRegistry,
) -> None:
    def fallback(payload: Any, error: BaseException, trace: tuple[StageTrace, ...]) -> Any:
        raise LookupError("no cache either")

    pipeline = Pipeline(Stage(Broken.key), registry=commands, fallback=fallback)

    with pytest.raises(FallbackFailedError) as raised:
        pipeline(1)

    assert raised.value.key == Broken.key
    assert isinstance(raised.value.__cause__, LookupError)
    assert isinstance(raised.value.run_error, ConnectionError)


def test_a_fan_out_element_with_no_value_stops_new_calls_and_fails_the_stage(
    commands: CommandRegistry,
) -> None:
    pipeline = Pipeline(
        Stage(Upto.key),
        FanOut(Broken.key, max_in_flight=2),
        registry=commands,
        fallback=lambda payload, error, trace: ("degraded", len(trace[1].replies)),
    )

    result = pipeline.run(50)

    assert result.fell_back
    assert result.value[0] == "degraded"
    assert result.value[1] == 2  # the calls in flight when the first failed, no more


# -- streaming ----------------------------------------------------------------------------------


def test_map_yields_in_order_and_never_pulls_more_than_max_in_flight_ahead(
    commands: CommandRegistry,
) -> None:
    pulled = 0

    def numbers() -> Iterator[int]:
        nonlocal pulled
        for number in itertools.count():
            pulled += 1
            yield number

    pipeline = Pipeline(Stage(AddOne.key), Stage(Double.key), registry=commands)
    stream = pipeline.map(numbers(), max_in_flight=4)
    try:
        for consumed, result in enumerate(itertools.islice(stream, 200), start=1):
            assert result.value == consumed * 2
            assert pulled - consumed == 4 - 1  # 4 taken and not yet given, this one included
    finally:
        stream.close()
    assert pulled <= 200 + 4


def test_a_slow_stage_holds_the_producer_back(
    commands: CommandRegistry, held: Held, background: ThreadPoolExecutor
) -> None:
    pulled = 0

    def numbers() -> Iterator[int]:
        nonlocal pulled
        for number in itertools.count():
            pulled += 1
            yield number

    stream = Pipeline(Stage(Gated.key), registry=commands).map(numbers(), max_in_flight=3)
    first = background.submit(next, stream)
    assert {held.next_entered() for _ in range(3)} == {0, 1, 2}
    assert pulled == 3 and not first.done()
    held.release(0)
    assert first.result(WAIT).value == 0
    assert pulled == 3  # nothing more is taken until the consumer asks for more
    second = background.submit(next, stream)
    assert held.next_entered() == 3  # one taken for the one given
    assert pulled == 4
    held.release(1)
    assert second.result(WAIT).value == 10
    held.release_all()
    stream.close()


def _pipeline_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pipeline-")]


def test_breaking_out_of_map_leaves_no_thread_behind(
    commands: CommandRegistry, eventually: Callable[..., None]
) -> None:
    pipeline = Pipeline(Stage(Upto.key), FanOut(Double.key), registry=commands)

    for result in pipeline.map(itertools.count(), max_in_flight=4):
        assert _pipeline_threads()
        if result.value == (0, 2, 4, 6, 8, 10, 12, 14, 16, 18):
            break

    eventually(lambda: not _pipeline_threads(), what="the pipeline's threads ended")


def test_closing_a_map_that_is_still_held_releases_its_threads(
    commands: CommandRegistry, eventually: Callable[..., None]
) -> None:
    stream = Pipeline(Stage(AddOne.key), registry=commands).map(iter(range(100)), max_in_flight=3)

    assert next(stream).value == 1
    stream.close()

    eventually(lambda: not _pipeline_threads(), what="the pipeline's threads ended")
    assert list(stream) == []


# -- sharing ------------------------------------------------------------------------------------


def test_one_pipeline_used_by_eight_threads_at_once_gives_every_caller_its_own_answer(
    commands: CommandRegistry,
) -> None:
    pipeline = Pipeline(
        Stage(AddOne.key),
        Stage(Upto.key),
        FanOut(Double.key, max_in_flight=3),
        Stage(Total.key),
        registry=commands,
    )
    # 8 callers x 3 elements in flight: the bulkhead must admit them all for full answers
    commands.configure(Double.key, CommandConfig(max_concurrent_requests=8 * 3))
    start = threading.Barrier(8)

    def caller(offset: int) -> list[tuple[int, PipelineResult]]:
        start.wait(WAIT)
        return [(n, pipeline.run(n)) for n in range(offset, offset + 15)]

    with ThreadPoolExecutor(8) as pool:
        answers = [pair for batch in pool.map(caller, range(8)) for pair in batch]

    assert len(answers) == 8 * 15
    for n, result in answers:
        assert result.complete
        assert result.value == (n + 1) * n  # 2 * sum(range(n + 1))


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (Pipeline, ValueError, "at least one stage"),
        (lambda: Pipeline("add one"), TypeError, "stage 0 must be a Stage or a FanOut"),  # type: ignore[arg-type]
        (lambda: Pipeline(Stage("a"), budget=0), ValueError, "budget must be .* > 0.*got 0"),
        (lambda: Pipeline(Stage("a"), budget=-1.0), ValueError, "budget"),
        (lambda: Pipeline(Stage("a"), budget=True), ValueError, "budget"),
        (lambda: Pipeline(Stage("a"), fallback="x"), TypeError, "fallback must be"),  # type: ignore[arg-type]
        (lambda: Pipeline(Stage("a"), registry=object()), TypeError, "registry must be"),  # type: ignore[arg-type]
        (lambda: Stage(""), ValueError, "stage's key"),
        (lambda: Stage(3), TypeError, "stage's key"),  # type: ignore[arg-type]
        (lambda: Stage("a", timeout=0), ValueError, "timeout"),
        (
            lambda: Stage("a", timeout=1e12),
            ValueError,
            r"timeout .*<= 86400 or None, got 1000000000000\.0",
        ),
        (lambda: FanOut("a", timeout=1e12), ValueError, r"timeout .*<= 86400"),
        (lambda: Pipeline(Stage("a"), budget=86_400.5), ValueError, r"budget .*<= 86400"),
        (lambda: FanOut("a", max_in_flight=0), ValueError, "max_in_flight .*>= 1, got 0"),
        (lambda: FanOut("a", max_in_flight=2.5), ValueError, "max_in_flight"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_raise_errors_that_name_what_was_wrong(
    make: Callable[[], Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make()


def test_map_rejects_a_non_positive_max_in_flight_at_once(commands: CommandRegistry) -> None:
    pipeline = Pipeline(Stage(AddOne.key), registry=commands)

    with pytest.raises(ValueError, match="max_in_flight must be an integer >= 1, got -1"):
        pipeline.map(iter([1]), max_in_flight=-1)


def test_an_unregistered_key_raises_as_ask_reply_does(commands: CommandRegistry) -> None:
    pipeline = Pipeline(Stage(AddOne.key), Stage("never registered"), registry=commands)

    with pytest.raises(UnknownCommandError, match="never registered"):
        pipeline.run(1)
