"""asyncio: ``await ask_async`` never blocks the loop, and ``async def run`` is really cancelled.

pytest-asyncio is not a dependency: each test drives its own loop with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from probe import WAIT

from actors import (
    Command,
    CommandConfig,
    CommandRegistry,
    CommandTimeoutError,
    MaxConcurrencyError,
    Reply,
)


class Threaded(Command):
    """A classic threaded ``run``; the payload says what it does."""

    key = "threaded"
    config = CommandConfig(timeout=1.0, max_concurrent_requests=50)

    def run(self, payload: Any) -> Any:
        if payload == "fail":
            raise RuntimeError("run boom")
        if isinstance(payload, float):
            time.sleep(payload)
            return "slow done"
        if payload == "hang":
            time.sleep(0.5)
            return "late"
        return payload


class ThreadedWithFallback(Threaded):
    key = "threaded-fb"
    config = CommandConfig(timeout=0.2, max_concurrent_requests=50)

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return f"fallback: {getattr(error, 'reason', type(error).__name__)}"


class Seen:
    """What the coroutines of ``Coroutine`` report to the test."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.finally_ran = threading.Event()
        self.entered = threading.Event()
        self.threads: list[str] = []
        self.time_left: list[float] = []


class Coroutine(Command):
    """An ``async def run`` command."""

    key = "coroutine"
    config = CommandConfig(timeout=0.2)

    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def run(self, payload: Any) -> Any:
        seen = self.seen
        seen.threads.append(threading.current_thread().name)
        seen.time_left.append(self.time_left())
        if payload == "fail":
            await asyncio.sleep(0)
            raise RuntimeError("async boom")
        if payload == "exit":
            await asyncio.sleep(0)
            raise SystemExit(3)
        if payload == "hang":
            seen.entered.set()
            try:
                await asyncio.sleep(WAIT)
            except asyncio.CancelledError:
                seen.cancelled.set()
                await asyncio.sleep(0.05)  # cleanup that itself awaits: the slot stays held
                raise
            finally:
                seen.finally_ran.set()
            return "never"
        await asyncio.sleep(0.01)
        return f"async {payload}"


class CoroutineWithFallback(Coroutine):
    key = "coroutine-fb"

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return f"fallback: {getattr(error, 'reason', type(error).__name__)}"


def async_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("hystrix-async-")}


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def reg(registry: CommandRegistry, seen: Seen) -> CommandRegistry:
    registry.register(Threaded)
    registry.register(ThreadedWithFallback)
    registry.register(Coroutine, seen)
    registry.register(CoroutineWithFallback, seen)
    return registry


# -- awaiting a call ---------------------------------------------------------------------------


def test_the_event_loop_keeps_running_while_a_call_is_awaited(reg: CommandRegistry) -> None:
    async def main() -> tuple[Any, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        value = await reg.ask_async(Threaded.key, 0.3)
        task.cancel()
        return value, ticks

    value, ticks = asyncio.run(main())
    assert value == "slow done"
    assert ticks >= 10  # about 30 in 0.3 s; a blocked loop would count 0


def test_an_awaited_call_answers_like_ask(reg: CommandRegistry) -> None:
    async def main() -> list[Any]:
        return [
            await reg.ask_async(Threaded.key, "ok"),
            await reg.ask_async(ThreadedWithFallback.key, "fail"),
            await reg.ask_async(ThreadedWithFallback.key, "hang"),
            await reg.ask_reply_async(ThreadedWithFallback.key, "hang"),
        ]

    ok, failed, timed_out, reply = asyncio.run(main())
    assert ok == reg.ask(Threaded.key, "ok") == "ok"
    assert failed == reg.ask(ThreadedWithFallback.key, "fail") == "fallback: RuntimeError"
    assert timed_out == "fallback: timeout"
    assert isinstance(reply, Reply)
    assert reply.events == ("TIMEOUT", "FALLBACK_SUCCESS")


def test_an_awaited_call_without_fallback_raises_like_ask(reg: CommandRegistry) -> None:
    with pytest.raises(RuntimeError, match="run boom"):
        asyncio.run(reg.ask_async(Threaded.key, "fail"))
    with pytest.raises(CommandTimeoutError) as caught:
        asyncio.run(reg.ask_async(Threaded.key, 0.5, timeout=0.05))
    assert caught.value.reason == "timeout"


def test_a_rejection_is_answered_at_once(reg: CommandRegistry) -> None:
    reg.configure(Threaded.key, CommandConfig(timeout=1.0, max_concurrent_requests=1))

    async def main() -> None:
        slow = asyncio.create_task(reg.ask_async(Threaded.key, 0.2))
        await asyncio.sleep(0.05)
        with pytest.raises(MaxConcurrencyError):
            await reg.ask_async(Threaded.key, "ok")
        assert await slow == "slow done"

    asyncio.run(main())


def test_many_awaited_calls_gathered(reg: CommandRegistry) -> None:
    async def main() -> list[Any]:
        return await asyncio.gather(*(reg.ask_async(Threaded.key, n) for n in range(50)))

    assert asyncio.run(main()) == list(range(50))


def test_an_asgi_app_serves_concurrent_requests_on_its_own_loop(reg: CommandRegistry) -> None:
    """The way FastAPI or uvicorn would call it: from handlers on the server's running loop."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        value = await reg.ask_async(Threaded.key, float(scope["query_string"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": value.encode()})

    async def request(delay: float) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "path": "/", "query_string": str(delay)}
        await app(scope, None, send)
        return sent

    async def server() -> tuple[list[list[dict[str, Any]]], float]:
        started = time.monotonic()
        responses = await asyncio.gather(*(request(0.2) for _ in range(5)))
        return responses, time.monotonic() - started

    responses, took = asyncio.run(server())
    assert [r[1]["body"] for r in responses] == [b"slow done"] * 5
    assert took < 0.2 * 5  # served concurrently, not one after another


def test_awaiting_from_a_plain_thread(reg: CommandRegistry) -> None:
    results: list[Any] = []

    def in_thread() -> None:
        results.append(asyncio.run(reg.ask_async(Threaded.key, "from a thread")))

    threads = [threading.Thread(target=in_thread) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert results == ["from a thread"] * 3


def test_cancelling_the_awaiting_task_leaves_the_call_to_end_normally(
    reg: CommandRegistry, eventually: Callable[..., None]
) -> None:
    async def main() -> None:
        task = asyncio.create_task(reg.ask_async(Threaded.key, 0.2))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())  # the loop is closed before the call is answered: nothing breaks
    eventually(lambda: reg.health(Threaded.key).in_flight == 0, what="the call ended")
    assert reg.health(Threaded.key).requests == 1
    assert reg.ask(Threaded.key, "ok") == "ok"


# -- async def run -----------------------------------------------------------------------------


def test_an_async_run_runs_on_the_keys_own_event_loop(reg: CommandRegistry, seen: Seen) -> None:
    assert asyncio.run(reg.ask_async(Coroutine.key, "x")) == "async x"
    assert reg.ask(Coroutine.key, "y") == "async y"  # a blocking ask works the same
    assert seen.threads == [f"hystrix-async-{Coroutine.key}"] * 2
    assert 0.0 < seen.time_left[0] <= Coroutine.config.timeout


def test_an_async_function_runs_through_go_and_do(registry: CommandRegistry) -> None:
    async def fetch() -> str:
        await asyncio.sleep(0.01)
        return threading.current_thread().name

    assert registry.do("functions", fetch) == "hystrix-async-functions"
    assert registry.go("functions", fetch).get(timeout=WAIT) == "hystrix-async-functions"


def test_an_async_run_answers_a_non_blocking_ask(reg: CommandRegistry) -> None:
    assert reg.ask(Coroutine.key, "x", block=False).get(timeout=WAIT) == "async x"


def test_an_async_run_that_raises_falls_back(reg: CommandRegistry) -> None:
    assert reg.ask(CoroutineWithFallback.key, "fail") == "fallback: RuntimeError"
    with pytest.raises(RuntimeError, match="async boom"):
        asyncio.run(reg.ask_async(Coroutine.key, "fail"))


def test_a_base_exception_in_an_async_run_is_contained(reg: CommandRegistry) -> None:
    assert reg.ask(CoroutineWithFallback.key, "exit") == "fallback: SystemExit"
    assert reg.ask(CoroutineWithFallback.key, "x") == "async x"  # the key's loop lives on


def test_at_the_deadline_the_coroutine_is_really_cancelled(
    reg: CommandRegistry, seen: Seen, eventually: Callable[..., None]
) -> None:
    started = time.monotonic()
    reply = reg.ask_reply(CoroutineWithFallback.key, "hang")
    assert time.monotonic() - started < Coroutine.config.timeout + 0.5
    assert reply.events == ("TIMEOUT", "FALLBACK_SUCCESS")
    assert reply.value == "fallback: timeout"
    assert seen.cancelled.wait(WAIT)  # CancelledError was raised inside run
    assert seen.finally_ran.wait(WAIT)
    eventually(lambda: reg.health(CoroutineWithFallback.key).in_flight == 0, what="slot freed")
    health = reg.health(CoroutineWithFallback.key)
    assert health.zombies == 0
    assert reg.ask(CoroutineWithFallback.key, "again") == "async again"  # the worker lives on


def test_an_awaited_async_run_is_cancelled_at_its_deadline(
    reg: CommandRegistry, seen: Seen, eventually: Callable[..., None]
) -> None:
    with pytest.raises(CommandTimeoutError):
        asyncio.run(reg.ask_async(Coroutine.key, "hang", timeout=0.05))
    assert seen.cancelled.wait(WAIT)
    assert seen.finally_ran.wait(WAIT)
    eventually(lambda: reg.health(Coroutine.key).in_flight == 0, what="slot freed")


def test_the_slot_is_held_until_the_cancelled_coroutine_ends(
    reg: CommandRegistry, seen: Seen, eventually: Callable[..., None]
) -> None:
    reg.configure(Coroutine.key, CommandConfig(timeout=0.05, max_concurrent_requests=1))
    with pytest.raises(CommandTimeoutError):
        reg.ask(Coroutine.key, "hang")
    assert seen.cancelled.wait(WAIT)
    # run is still in its 50 ms of cleanup: the only slot is not free yet
    if not seen.finally_ran.is_set():
        with pytest.raises(MaxConcurrencyError):
            reg.ask(Coroutine.key, "x")
    eventually(lambda: reg.health(Coroutine.key).in_flight == 0, what="slot freed")
    assert reg.ask(Coroutine.key, "x") == "async x"


def test_shutdown_stops_the_keys_event_loop(seen: Seen) -> None:
    before = async_threads()
    registry = CommandRegistry()
    registry.register(Coroutine, seen)
    assert registry.ask(Coroutine.key, "x") == "async x"
    assert len(async_threads() - before) == 1
    threading.Thread(target=registry.ask_reply, args=(Coroutine.key, "hang")).start()
    assert seen.entered.wait(WAIT)
    report = registry.shutdown(timeout=0.01)
    assert seen.cancelled.wait(WAIT)  # shutdown cancelled the coroutine still running
    assert async_threads() <= before
    assert report.answered == 1
    assert report.zombies == 0  # its worker was freed when the loop cancelled the coroutine


def test_reset_stops_the_keys_event_loop(reg: CommandRegistry, seen: Seen) -> None:
    before = async_threads()
    assert reg.ask(Coroutine.key, "x") == "async x"
    assert len(async_threads() - before) == 1
    reg.reset()
    assert not async_threads() - before
