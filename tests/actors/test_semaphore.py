"""Semaphore isolation: ``run`` on the caller's thread (or task), the bulkhead a counter, the
same events, metrics, breaker and fallbacks as thread isolation."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest
from probe import WAIT

from actors import (
    BadRequest,
    CircuitState,
    Command,
    CommandConfig,
    CommandRegistry,
    EventType,
    Isolation,
    MaxConcurrencyError,
    Pipeline,
    Stage,
)
from actors.gate import HERE, Gate, Stuck
from actors.stream import command_message
from actors.ticket import Ticket
from supervision import FakeClock, Permit, Transition

E = EventType
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
SET_BY_RUN: contextvars.ContextVar[str] = contextvars.ContextVar("set_by_run", default="-")


class Gates:
    """Events a test uses to hold calls inside ``run`` and to learn they are there."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()


class Dependency(Command):
    """The payload says what ``run`` does."""

    key = "dependency"
    config = CommandConfig(isolation="semaphore", timeout=WAIT, max_concurrent_requests=2)
    gates = Gates()

    def run(self, payload: Any) -> Any:
        if payload == "fail":
            raise RuntimeError("boom")
        if payload == "bad":
            raise BadRequest("no such project")
        if payload == "lookup":
            raise LookupError("ignored")
        if payload == "hold":
            self.gates.entered.release()
            assert self.gates.release.wait(WAIT)
            return "held"
        if payload == "thread":
            return threading.get_ident()
        if payload == "self":
            return id(self)
        if payload == "context":
            SET_BY_RUN.set("run was here")
            return REQUEST_ID.get()
        if payload == "stop":
            raise KeyboardInterrupt
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return f"fallback: {getattr(error, 'reason', type(error).__name__)}"


class Plain(Dependency):
    """The same command under thread isolation (for side-by-side checks)."""

    key = "plain"
    config = Dependency.config.replace(isolation="thread")


@pytest.fixture
def reg(clock: FakeClock) -> Any:
    registry = CommandRegistry(clock=clock)
    Dependency.gates = Gates()
    registry.register(Dependency)
    registry.register(Plain)
    try:
        yield registry
    finally:
        Dependency.gates.release.set()
        registry.shutdown()


def test_the_isolation_is_thread_unless_configured() -> None:
    assert CommandConfig().isolation is Isolation.THREAD
    assert CommandConfig(isolation="semaphore").isolation is Isolation.SEMAPHORE


def test_an_unknown_isolation_is_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"isolation must be one of 'thread', 'semaphore'"):
        CommandConfig(isolation="process")  # type: ignore[arg-type]


def test_run_executes_on_the_callers_thread(reg: CommandRegistry) -> None:
    assert reg.ask("dependency", "thread") == threading.get_ident()
    assert reg.ask("plain", "thread") != threading.get_ident()


def test_run_sees_the_callers_context_and_keeps_what_it_sets_to_itself(
    reg: CommandRegistry,
) -> None:
    token = REQUEST_ID.set("req-42")
    try:
        assert reg.ask("dependency", "context") == "req-42"
    finally:
        REQUEST_ID.reset(token)
    assert SET_BY_RUN.get() == "-"


@pytest.mark.parametrize("key", ["dependency", "plain"])
@pytest.mark.parametrize(
    ("payload", "events", "value"),
    [
        ("ok", (E.SUCCESS,), "ok"),
        ("fail", (E.FAILURE, E.FALLBACK_SUCCESS), "fallback: RuntimeError"),
    ],
)
def test_outcomes_are_the_same_as_under_thread_isolation(
    reg: CommandRegistry, key: str, payload: str, events: tuple[E, ...], value: str
) -> None:
    reply = reg.ask_reply(key, payload)

    assert reply.events == events
    assert reply.value == value


@pytest.mark.parametrize("key", ["dependency", "plain"])
def test_a_bad_request_reaches_the_caller_without_a_fallback(
    reg: CommandRegistry, key: str
) -> None:
    with pytest.raises(BadRequest, match="no such project"):
        reg.ask(key, "bad")

    assert reg.health(key).requests == 0


def test_an_ignored_exception_passes_to_the_caller_like_a_bad_request(
    reg: CommandRegistry,
) -> None:
    reg.configure("dependency", Dependency.config.replace(ignore=(LookupError,)))

    reply = reg.ask_reply("dependency", "lookup")

    assert reply.events == (E.BAD_REQUEST,)
    assert isinstance(reply.error, LookupError)


def test_the_bulkhead_counts_calls_running_and_rejects_the_next_at_once(
    reg: CommandRegistry,
) -> None:
    # queue_size means nothing here: a caller running its own call cannot wait for a slot
    reg.configure("dependency", Dependency.config.replace(queue_size=5))
    held = [threading.Thread(target=reg.ask, args=("dependency", "hold")) for _ in range(2)]
    for thread in held:
        thread.start()
    for _ in held:
        assert Dependency.gates.entered.acquire(timeout=WAIT)

    reply = reg.ask_reply("dependency", "ok")
    health = reg.health("dependency")
    Dependency.gates.release.set()
    for thread in held:
        thread.join(WAIT)

    assert reply.events == (E.SEMAPHORE_REJECTED, E.FALLBACK_SUCCESS)
    assert isinstance(reply.error, MaxConcurrencyError)
    assert reply.error.reason == "max concurrency"
    assert health.in_flight == 2
    assert health.workers == 0
    metrics = reg.metrics("dependency")
    assert metrics.counts[E.SEMAPHORE_REJECTED] == 1
    assert metrics.counts[E.THREAD_POOL_REJECTED] == 0
    assert metrics.counts[E.SUCCESS] == 2
    assert reg.health("dependency").in_flight == 0


def test_each_concurrent_call_runs_on_a_command_instance_of_its_own(
    reg: CommandRegistry,
) -> None:
    seen: list[int] = []

    class Holder(Command):
        key = "holder"
        config = CommandConfig(isolation="semaphore", timeout=WAIT)
        inside = threading.Barrier(2)

        def run(self, payload: Any) -> int:
            self.inside.wait(WAIT)  # both calls are in run at once
            return id(self)

    reg.register(Holder)
    threads = [threading.Thread(target=lambda: seen.append(reg.ask("holder"))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)

    assert len(set(seen)) == 2
    assert reg.ask("dependency", "self") == reg.ask("dependency", "self")  # reused when idle


def test_an_open_circuit_short_circuits_without_running(reg: CommandRegistry) -> None:
    reg.configure("dependency", Dependency.config.replace(force_open=True))

    reply = reg.ask_reply("dependency", "thread")

    assert reply.events == (E.SHORT_CIRCUITED, E.FALLBACK_SUCCESS)


def test_failures_trip_the_breaker_and_the_transition_is_published(
    reg: CommandRegistry,
) -> None:
    moves: list[Transition] = []
    reg.subscribe(lambda key, moved: moves.append(moved))
    reg.configure(
        "dependency", Dependency.config.replace(request_volume_threshold=3, sleep_window=60.0)
    )

    for _ in range(3):
        reg.ask("dependency", "fail")

    assert reg.health("dependency").state is CircuitState.OPEN
    assert [m.to_state for m in moves] == [CircuitState.OPEN]
    assert reg.ask_reply("dependency", "ok").events == (E.SHORT_CIRCUITED, E.FALLBACK_SUCCESS)


def test_a_run_that_returns_after_its_deadline_is_answered_timeout_with_the_fallback(
    reg: CommandRegistry,
) -> None:
    class Slow(Command):
        key = "slow"
        config = CommandConfig(isolation="semaphore", timeout=0.05)
        returned = threading.Event()

        def run(self, payload: Any) -> str:
            # a dependency slower than the deadline: it cannot be interrupted
            threading.Event().wait(self.time_left() + 0.05)
            self.returned.set()
            return "late"

        def fallback(self, payload: Any, error: BaseException) -> str:
            return f"fallback: {getattr(error, 'reason', '?')}"

    reg.register(Slow)

    reply = reg.ask_reply("slow")

    assert Slow.returned.is_set()  # the caller got its answer only once run returned
    assert reply.events == (E.TIMEOUT, E.FALLBACK_SUCCESS)
    assert reply.value == "fallback: timeout"
    health = reg.health("slow")
    assert (health.requests, health.errors, health.in_flight) == (1, 1, 0)


def test_a_call_timeout_shortens_the_deadline(reg: CommandRegistry) -> None:
    left: list[float] = []

    class Measures(Command):
        key = "measures"
        config = CommandConfig(isolation="semaphore", timeout=WAIT)

        def run(self, payload: Any) -> None:
            left.append(self.time_left())

    reg.register(Measures)
    reg.ask("measures", timeout=0.5)

    assert 0 < left[0] <= 0.5


def test_a_base_exception_from_run_reaches_the_caller_and_frees_the_slot(
    reg: CommandRegistry,
) -> None:
    with pytest.raises(KeyboardInterrupt):
        reg.ask("dependency", "stop")

    health = reg.health("dependency")
    assert (health.in_flight, health.requests) == (0, 0)
    assert reg.ask("dependency", "ok") == "ok"


def test_configure_switches_a_live_key_to_the_callers_thread(reg: CommandRegistry) -> None:
    assert reg.ask("plain", "thread") != threading.get_ident()

    reg.configure("plain", Plain.config.replace(isolation="semaphore"))

    assert reg.ask("plain", "thread") == threading.get_ident()


def test_function_style_calls_run_on_the_callers_thread_too(reg: CommandRegistry) -> None:
    reg.configure("inline", CommandConfig(isolation="semaphore"))

    assert reg.do("inline", threading.get_ident) == threading.get_ident()
    assert reg.go("inline", threading.get_ident).get(timeout=WAIT) == threading.get_ident()


def test_a_non_blocking_ask_has_run_by_the_time_it_returns(reg: CommandRegistry) -> None:
    future = reg.ask("dependency", "thread", block=False)

    assert future.get(timeout=0) == threading.get_ident()


def test_a_pipeline_stage_may_be_semaphore_isolated(reg: CommandRegistry) -> None:
    pipeline = Pipeline(Stage("dependency"), Stage("plain"), registry=reg)

    assert pipeline.run("value").value == "value"


# -- async def run -----------------------------------------------------------------------------


class Seen:
    def __init__(self) -> None:
        self.cancelled = False
        self.task: asyncio.Task[Any] | None = None
        self.thread = 0


class Coroutine(Command):
    key = "coroutine"
    config = CommandConfig(isolation="semaphore", timeout=WAIT)
    seen = Seen()

    async def run(self, payload: Any) -> Any:
        self.seen.task = asyncio.current_task()
        self.seen.thread = threading.get_ident()
        if payload == "forever":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.seen.cancelled = True
                raise
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return f"fallback: {getattr(error, 'reason', type(error).__name__)}"


@pytest.fixture
def coro_reg(reg: CommandRegistry) -> CommandRegistry:
    Coroutine.seen = Seen()
    reg.register(Coroutine)
    return reg


def test_an_async_run_awaited_runs_in_the_callers_task(coro_reg: CommandRegistry) -> None:
    async def caller() -> tuple[Any, asyncio.Task[Any] | None]:
        return await coro_reg.ask_async("coroutine", "ok"), asyncio.current_task()

    value, task = asyncio.run(caller())

    assert value == "ok"
    assert Coroutine.seen.task is task
    assert Coroutine.seen.thread == threading.get_ident()


def test_an_async_run_awaited_is_cancelled_at_its_deadline(coro_reg: CommandRegistry) -> None:
    async def caller() -> Any:
        return await coro_reg.ask_reply_async("coroutine", "forever", timeout=0.05)

    reply = asyncio.run(caller())

    assert Coroutine.seen.cancelled
    assert reply.events == (E.TIMEOUT, E.FALLBACK_SUCCESS)
    assert coro_reg.health("coroutine").in_flight == 0


def test_an_async_run_from_a_blocking_ask_runs_on_the_keys_loop_and_is_cancelled_in_time(
    coro_reg: CommandRegistry,
) -> None:
    reply = coro_reg.ask_reply("coroutine", "forever", timeout=0.05)

    assert Coroutine.seen.cancelled
    assert Coroutine.seen.thread != threading.get_ident()
    assert reply.events == (E.TIMEOUT, E.FALLBACK_SUCCESS)


def test_cancelling_the_awaiting_task_cancels_run_and_frees_the_slot_without_an_outcome(
    coro_reg: CommandRegistry,
) -> None:
    async def caller() -> None:
        task = asyncio.create_task(coro_reg.ask_async("coroutine", "forever"))
        while Coroutine.seen.task is None:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(caller())

    health = coro_reg.health("coroutine")
    assert Coroutine.seen.cancelled
    assert (health.in_flight, health.requests) == (0, 0)


def test_a_rejection_awaited_is_answered_at_once(coro_reg: CommandRegistry) -> None:
    coro_reg.configure("coroutine", Coroutine.config.replace(force_open=True))

    async def caller() -> Any:
        return await coro_reg.ask_reply_async("coroutine", "ok")

    assert asyncio.run(caller()).events == (E.SHORT_CIRCUITED, E.FALLBACK_SUCCESS)


def test_the_dashboard_stream_says_semaphore_isolation(reg: CommandRegistry) -> None:
    reg.ask("dependency", "ok")
    reg.ask("plain", "ok")

    messages = {m.key: command_message(m) for m in reg.all_metrics()}

    strategy = "propertyValue_executionIsolationStrategy"
    assert messages["dependency"][strategy] == "SEMAPHORE"
    assert messages["plain"][strategy] == "THREAD"


def test_a_call_run_here_is_never_abandoned_as_a_zombie(clock: FakeClock) -> None:
    # A sweep (its supervisor died, say) may answer a call still in run on its caller's
    # thread; when its grace is over there is no worker to abandon: the slot stays held until
    # run returns, and no zombie is counted.
    gate = Gate(CommandConfig(isolation="semaphore"), clock)
    permit, _ = gate.admit_here()
    assert isinstance(permit, Permit)
    ticket = Ticket(_Owner(), None, 0.0, 1.0, permit)
    ticket.runner = HERE

    assert gate.abandon(ticket, max_zombies=10) is Stuck.DONE
    assert (gate.in_flight, gate.zombies, gate.running) == (1, 0, 1)
    assert gate.late(ticket, 0.5) is False  # run returned: the slot is given back
    assert (gate.in_flight, gate.running) == (0, 0)


class _Owner:
    """A ticket's owner that nothing here calls."""

    def __init__(self) -> None:
        self.tracked: set[Ticket] = set()
