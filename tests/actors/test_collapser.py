"""The request collapser: concurrent asks for single items become one batch ask, and every
caller gets exactly its own answer (docs/collapsing.md)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pykka
import pytest

from actors import (
    Collapser,
    Command,
    CommandConfig,
    CommandError,
    CommandRegistry,
    CommandTimeoutError,
    EventType,
    UnknownCommandError,
)


class GetUsers(Command[list[int], list[str]]):
    """The batch command: one run for many user ids."""

    key = "Get users"
    runs: list[list[int]]
    hold: threading.Event | None = None

    def run(self, ids: list[int]) -> list[str]:
        type(self).runs.append(list(ids))
        if type(self).hold is not None:
            assert type(self).hold.wait(5.0)  # type: ignore[union-attr]
        return [f"user {i}" for i in ids]


def batch_command(
    name: str = "Get users", *, timeout: float = 1.0, fails: bool = False, fallback: bool = False
) -> type[GetUsers]:
    attrs: dict[str, Any] = {
        "key": name,
        "runs": [],
        "config": CommandConfig(timeout=timeout, max_concurrent_requests=50),
    }
    if fails:

        def run(self: GetUsers, ids: list[int]) -> list[str]:
            type(self).runs.append(list(ids))
            raise ConnectionError("users service down")

        attrs["run"] = run
    if fallback:

        def fall_back(self: GetUsers, ids: list[int], error: BaseException) -> list[str]:
            return [f"guest {i}" for i in ids]

        attrs["fallback"] = fall_back
    return type("Batch", (GetUsers,), attrs)


def collapser(
    name: str = "Get user",
    *,
    window: float = 5.0,
    max_batch: int | None = None,
    batch: str = "Get users",
    mapper: Any = None,
) -> type[Collapser]:
    attrs: dict[str, Any] = {
        "key": name,
        "batch_command": batch,
        "window": window,
        "max_batch": max_batch,
    }
    if mapper is not None:
        attrs["map_results"] = mapper
    return type("GetUser", (Collapser,), attrs)


def test_every_thread_gets_its_own_user_from_one_batch(registry: CommandRegistry) -> None:
    batch = registry.register(batch_command())
    registry.register(collapser(max_batch=20))
    start = threading.Barrier(20)
    got: dict[int, str] = {}

    def caller(i: int) -> None:
        start.wait()
        got[i] = registry.ask("Get user", i)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10.0)
    assert got == {i: f"user {i}" for i in range(20)}
    assert len(batch.runs) == 1
    assert sorted(batch.runs[0]) == list(range(20))
    metrics = registry.collapser_metrics("Get user")
    assert (metrics.batches, metrics.requests_collapsed) == (1, 20)
    assert metrics.batch_size_mean == 20.0
    assert metrics.batch_size_percentiles["100"] == 20.0


def test_every_task_gets_its_own_user_from_one_batch(registry: CommandRegistry) -> None:
    batch = registry.register(batch_command())
    registry.register(collapser(max_batch=10))

    async def main() -> list[Any]:
        return await asyncio.gather(*(registry.ask_async("Get user", i) for i in range(10)))

    assert asyncio.run(main()) == [f"user {i}" for i in range(10)]
    assert len(batch.runs) == 1


def test_a_reply_says_it_was_collapsed_then_how_the_batch_went(registry: CommandRegistry) -> None:
    registry.register(batch_command())
    registry.register(collapser(window=0.02))  # flushed by the timer
    reply = registry.ask_reply("Get user", 7)
    assert reply.value == "user 7"
    assert reply.events == (EventType.COLLAPSED, EventType.SUCCESS)
    assert reply.ok


def test_batches_never_exceed_max_batch(registry: CommandRegistry) -> None:
    batch = registry.register(batch_command())
    registry.register(collapser(window=0.05, max_batch=10))
    futures = [registry.ask("Get user", i, block=False) for i in range(25)]
    assert [future.get(timeout=5.0) for future in futures] == [f"user {i}" for i in range(25)]
    assert [len(ids) for ids in batch.runs] == [10, 10, 5]
    assert registry.collapser_metrics("Get user").batches == 3


def test_a_payload_missing_from_the_result_gets_a_clear_error(registry: CommandRegistry) -> None:
    def short(self: Collapser, payloads: list[int], result: list[str]) -> Sequence[Any]:
        return result[:-1]

    registry.register(batch_command())
    registry.register(collapser(max_batch=3, mapper=short))
    futures = [registry.ask_reply("Get user", i, block=False) for i in range(3)]
    replies = [future.get(timeout=5.0) for future in futures]
    assert [reply.value for reply in replies[:2]] == ["user 0", "user 1"]
    missing = replies[2]
    assert not missing.ok
    assert missing.events[-1] == EventType.FAILURE
    assert isinstance(missing.error, CommandError)
    assert missing.error.reason == "missing from batch"
    assert "'Get user'" in str(missing.error)
    assert "2" in str(missing.error)
    assert "missing from the batch result" in str(missing.error)


def test_an_exception_item_is_that_callers_error_only(registry: CommandRegistry) -> None:
    def some_fail(self: Collapser, payloads: list[int], result: list[str]) -> Sequence[Any]:
        return [
            LookupError(i) if i % 2 else value for i, value in zip(payloads, result, strict=True)
        ]

    registry.register(batch_command())
    registry.register(collapser(max_batch=4, mapper=some_fail))
    futures = [registry.ask("Get user", i, block=False) for i in range(4)]
    assert futures[0].get(timeout=5.0) == "user 0"
    assert futures[2].get(timeout=5.0) == "user 2"
    for odd in (1, 3):
        with pytest.raises(LookupError):
            futures[odd].get(timeout=5.0)


def test_map_results_raising_answers_every_caller_with_it(registry: CommandRegistry) -> None:
    def broken(self: Collapser, payloads: list[int], result: list[str]) -> Sequence[Any]:
        raise RuntimeError("bad mapping")

    registry.register(batch_command())
    registry.register(collapser(max_batch=2, mapper=broken))
    futures = [registry.ask("Get user", i, block=False) for i in range(2)]
    for future in futures:
        with pytest.raises(RuntimeError, match="bad mapping"):
            future.get(timeout=5.0)


def test_a_batch_fallback_is_mapped_per_payload(registry: CommandRegistry) -> None:
    registry.register(batch_command(fails=True, fallback=True))
    registry.register(collapser(max_batch=3))
    futures = [registry.ask_reply("Get user", i, block=False) for i in range(3)]
    replies = [future.get(timeout=5.0) for future in futures]
    assert [reply.value for reply in replies] == ["guest 0", "guest 1", "guest 2"]
    for reply in replies:
        assert reply.ok and reply.fell_back
        assert reply.events == (
            EventType.COLLAPSED,
            EventType.FAILURE,
            EventType.FALLBACK_SUCCESS,
        )
        assert isinstance(reply.error, ConnectionError)


def test_a_failed_batch_without_fallback_fails_every_caller(registry: CommandRegistry) -> None:
    registry.register(batch_command(fails=True))
    registry.register(collapser(max_batch=3))
    futures = [registry.ask("Get user", i, block=False) for i in range(3)]
    for future in futures:
        with pytest.raises(ConnectionError):
            future.get(timeout=5.0)


def test_a_batch_timeout_answers_every_caller(registry: CommandRegistry) -> None:
    batch = batch_command(timeout=0.1)
    batch.hold = threading.Event()
    registry.register(batch)
    registry.register(collapser(max_batch=3))
    try:
        futures = [registry.ask_reply("Get user", i, block=False) for i in range(3)]
        replies = [future.get(timeout=5.0) for future in futures]
    finally:
        batch.hold.set()
    for reply in replies:
        assert not reply.ok
        assert EventType.TIMEOUT in reply.events
        assert isinstance(reply.error, CommandTimeoutError)


def test_a_callers_short_deadline_answers_it_alone(registry: CommandRegistry) -> None:
    batch = batch_command(timeout=5.0)
    batch.hold = threading.Event()
    registry.register(batch)
    registry.register(collapser(max_batch=2))
    try:
        hurried = registry.ask_reply("Get user", 1, block=False, timeout=0.05)
        patient = registry.ask_reply("Get user", 2, block=False)
        reply = hurried.get(timeout=5.0)
        assert reply.events == (EventType.COLLAPSED, EventType.TIMEOUT)
        assert isinstance(reply.error, CommandTimeoutError)
        with pytest.raises(pykka.Timeout):  # the batch goes on for the other caller
            patient.get(timeout=0.0)
    finally:
        batch.hold.set()
    assert patient.get(timeout=5.0).value == "user 2"


@pytest.mark.parametrize(
    ("attrs", "words"),
    [
        ({"window": 0.0}, "window"),
        ({"window": 60.0}, "window"),
        ({"window": "fast"}, "window"),
        ({"max_batch": 0}, "max_batch"),
        ({"max_batch": 2.5}, "max_batch"),
        ({"batch_command": 3}, "batch_command"),
        ({"batch_command": "Get user"}, "batch_command"),
    ],
)
def test_a_wrong_collapser_is_refused_at_register(
    registry: CommandRegistry, attrs: dict[str, Any], words: str
) -> None:
    cls = collapser()
    for name, value in attrs.items():
        setattr(cls, name, value)
    with pytest.raises(ValueError, match=words):
        registry.register(cls)


def test_metrics_of_an_unknown_collapser_are_refused(registry: CommandRegistry) -> None:
    with pytest.raises(UnknownCommandError):
        registry.collapser_metrics("Get nobody")


def test_shutdown_answers_a_batch_not_yet_sent(clock: Any) -> None:
    registry = CommandRegistry(clock=clock)
    registry.register(batch_command())
    registry.register(collapser(window=5.0))
    future = registry.ask_reply("Get user", 1, block=False)
    registry.shutdown()
    reply = future.get(timeout=5.0)
    assert not reply.ok
    assert isinstance(reply.error, CommandError)
    assert reply.error.reason == "shutdown"
