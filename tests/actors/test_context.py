"""The caller's contextvars reach ``run`` and ``fallback`` on every path, and what ``run`` sets
stays in its own call."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from probe import WAIT

from actors import Command, CommandConfig, CommandRegistry, FanOut, Pipeline, Stage

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
scratch: contextvars.ContextVar[str | None] = contextvars.ContextVar("scratch", default=None)


class Seen:
    """What each run and fallback saw, by payload."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[Any, Any] = {}
        self.fallbacks: dict[Any, Any] = {}

    def clear(self) -> None:
        self.runs.clear()
        self.fallbacks.clear()

    def ran(self, payload: Any) -> None:
        with self.lock:
            self.runs[payload] = (request_id.get(), scratch.get())

    def fell_back(self, payload: Any) -> None:
        with self.lock:
            self.fallbacks[payload] = request_id.get()


SEEN = Seen()
RELEASE = threading.Event()


class Probe(Command):
    """Records the context; "fail" raises, "hang" waits for RELEASE; sets ``scratch``."""

    key = "ctx-probe"
    config = CommandConfig(timeout=0.3, max_concurrent_requests=1, request_volume_threshold=1000)

    def run(self, payload: Any) -> Any:
        SEEN.ran(payload)
        scratch.set(f"set by {payload}")  # must not leak to the caller or the next call
        request_id.set("changed inside run")
        if payload == "fail" or (isinstance(payload, str) and payload.startswith("fail")):
            raise ConnectionError(payload)
        if payload == "hang":
            RELEASE.wait(WAIT)
        return request_id.get()

    def fallback(self, payload: Any, error: BaseException) -> Any:
        SEEN.fell_back(payload)
        return "fallback"


class AsyncProbe(Command):
    key = "ctx-async"
    config = CommandConfig(timeout=0.3)

    async def run(self, payload: Any) -> Any:
        await asyncio.sleep(0)
        SEEN.ran(("async", payload))
        if payload == "hang":
            await asyncio.sleep(WAIT)
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:
        SEEN.fell_back(("async", payload))
        return "fallback"


class Open(Command):
    key = "ctx-open"
    config = CommandConfig(force_open=True)

    def run(self, payload: Any) -> Any:
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:
        SEEN.fell_back(("open", payload))
        return "fallback"


@pytest.fixture
def ctx_registry(registry: CommandRegistry) -> Iterator[CommandRegistry]:
    SEEN.clear()
    RELEASE.clear()
    for command in (Probe, AsyncProbe, Open):
        registry.register(command)
    try:
        yield registry
    finally:
        RELEASE.set()


def as_request(value: str, function: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``function`` in a fresh context where ``request_id`` is ``value``."""

    def inside() -> Any:
        request_id.set(value)
        result = function(*args, **kwargs)
        assert request_id.get() == value  # nothing set inside run came back
        assert scratch.get() is None
        return result

    return contextvars.Context().run(inside)


def test_run_and_its_fallback_on_the_worker_see_the_callers_context(
    ctx_registry: CommandRegistry,
) -> None:
    assert as_request("req-1", ctx_registry.ask, "ctx-probe", "ok") == "changed inside run"
    assert as_request("req-2", ctx_registry.ask, "ctx-probe", "fail") == "fallback"
    assert SEEN.runs["ok"] == ("req-1", None)
    assert SEEN.runs["fail"] == ("req-2", None)
    assert SEEN.fallbacks["fail"] == "req-2"


def test_one_worker_two_calls_nothing_leaks_from_the_first_into_the_second(
    ctx_registry: CommandRegistry,
) -> None:
    as_request("req-a", ctx_registry.ask, "ctx-probe", "first")
    as_request("req-b", ctx_registry.ask, "ctx-probe", "second")
    assert ctx_registry.health("ctx-probe").workers == 1
    assert SEEN.runs["first"] == ("req-a", None)
    assert SEEN.runs["second"] == ("req-b", None)  # not "set by first", not "req-a"


def test_non_blocking_asks_and_the_watchdogs_fallback_see_it(ctx_registry: CommandRegistry) -> None:
    future = as_request("req-nb", ctx_registry.ask, "ctx-probe", "nb", block=False)
    assert future.get(timeout=WAIT) == "changed inside run"
    assert SEEN.runs["nb"] == ("req-nb", None)
    hung = as_request("req-hang", ctx_registry.ask, "ctx-probe", "hang", block=False)
    assert hung.get(timeout=WAIT) == "fallback"  # answered TIMEOUT by the watchdog
    assert SEEN.fallbacks["hang"] == "req-hang"


def test_a_blocking_callers_timeout_fallback_and_a_short_circuit_see_it(
    ctx_registry: CommandRegistry,
) -> None:
    assert as_request("req-t", ctx_registry.ask, "ctx-probe", "hang") == "fallback"
    assert SEEN.fallbacks["hang"] == "req-t"
    assert as_request("req-o", ctx_registry.ask, "ctx-open", "x") == "fallback"
    assert SEEN.fallbacks[("open", "x")] == "req-o"


def test_go_and_do_see_it(ctx_registry: CommandRegistry) -> None:
    assert as_request("req-do", ctx_registry.do, "ctx-fn", request_id.get) == "req-do"
    future = as_request("req-go", ctx_registry.go, "ctx-fn", request_id.get)
    assert future.get(timeout=WAIT) == "req-go"


def test_async_def_run_and_ask_async_see_it(ctx_registry: CommandRegistry) -> None:
    async def handler(value: str) -> list[Any]:
        request_id.set(value)
        return [
            await ctx_registry.ask_async("ctx-probe", "from-loop"),
            await ctx_registry.ask_async("ctx-async", "a"),
            await ctx_registry.ask_async("ctx-async", "hang"),
        ]

    assert asyncio.run(handler("req-async")) == ["changed inside run", "a", "fallback"]
    assert SEEN.runs["from-loop"] == ("req-async", None)
    assert SEEN.runs[("async", "a")] == ("req-async", None)
    assert SEEN.fallbacks[("async", "hang")] == "req-async"
    assert as_request("req-sync", ctx_registry.ask, "ctx-async", "b") == "b"
    assert SEEN.runs[("async", "b")] == ("req-sync", None)


class Split(Command):
    key = "ctx-split"

    def run(self, payload: Any) -> Any:
        SEEN.ran(("split", payload))
        return [f"{payload}-{n}" for n in range(4)]


class Element(Command):
    key = "ctx-element"
    config = CommandConfig(max_concurrent_requests=4)

    def run(self, payload: Any) -> Any:
        SEEN.ran(("element", payload))
        return request_id.get()


def test_every_stage_and_fan_out_element_sees_the_pipeline_callers_context(
    ctx_registry: CommandRegistry,
) -> None:
    ctx_registry.register(Split)
    ctx_registry.register(Element)
    pipeline = Pipeline(
        Stage("ctx-split"), FanOut("ctx-element", max_in_flight=2), registry=ctx_registry
    )
    result = as_request("req-p", pipeline.run, "p")
    assert list(result.value) == ["req-p"] * 4
    assert SEEN.runs[("split", "p")] == ("req-p", None)
    assert all(SEEN.runs[("element", f"p-{n}")] == ("req-p", None) for n in range(4))

    streamed = as_request("req-m", lambda: [list(r.value) for r in pipeline.map(["m1", "m2"])])
    assert streamed == [["req-m"] * 4, ["req-m"] * 4]

    async def awaited() -> Any:
        request_id.set("req-arun")
        return list((await pipeline.arun("q")).value)

    assert asyncio.run(awaited()) == ["req-arun"] * 4


def test_library_events_on_other_threads_carry_the_callers_structlog_contextvars(
    ctx_registry: CommandRegistry, eventually: Any
) -> None:
    capture = structlog.testing.LogCapture()
    processors = structlog.get_config()["processors"]
    saved = processors.copy()
    processors[:] = [structlog.contextvars.merge_contextvars, capture]  # in place, as
    try:  # structlog.testing.capture_logs does: loggers already bound follow it

        def request() -> Any:
            structlog.contextvars.bind_contextvars(request_id="req-42")
            return ctx_registry.ask("ctx-probe", "hang", block=False).get(timeout=WAIT)

        assert contextvars.Context().run(request) == "fallback"
        RELEASE.set()
        eventually(lambda: ctx_registry.health("ctx-probe").in_flight == 0, what="drained")
        ctx_registry.ask("ctx-probe", "fail-outside")  # no request id bound here
    finally:
        processors[:] = saved
    [timed_out] = [e for e in capture.entries if e["event"] == "command.timed_out"]
    assert timed_out["request_id"] == "req-42"  # emitted by the watchdog's thread
    failed = [e for e in capture.entries if e["event"] == "command.failed"]
    assert failed and all("request_id" not in e for e in failed)


class BrokenTracer:
    def recording(self) -> bool:
        return True

    def begin(self, *args: Any) -> Any:
        raise RuntimeError("tracer bug")

    def at_once(self, *args: Any) -> None:
        raise RuntimeError("tracer bug")


def test_a_failing_tracer_never_breaks_a_call(captured_logs: list[dict[str, Any]]) -> None:
    with CommandRegistry(tracer=BrokenTracer()) as registry:
        registry.register(Open)
        registry.register(Split)
        assert registry.ask("ctx-split", "x") == [f"x-{n}" for n in range(4)]
        assert registry.ask("ctx-open", "y") == "fallback"
    failures = [e for e in captured_logs if e["event"] == "tracer.failed"]
    assert sorted(e["command"] for e in failures) == ["ctx-open", "ctx-split"]  # one a key
    assert all("tracer bug" in e["error"] for e in failures)
