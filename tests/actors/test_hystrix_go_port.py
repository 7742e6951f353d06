"""hystrix-go's hystrix_test.go scenarios, ported to the registry's API.

Each scenario of afex/hystrix-go's ``hystrix_test.go`` becomes one test here. Where hystrix-go
sleeps to let things happen, these tests coordinate with ``run`` through events; a ``run`` that
simulates a hung dependency blocks on an event that the test (or its teardown) releases.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from probe import WAIT, Probe

from actors import (
    CircuitOpenError,
    Command,
    CommandConfig,
    CommandRegistry,
    CommandTimeoutError,
    FallbackFailedError,
    MaxConcurrencyError,
)
from supervision import FakeClock


class Scripted(Command):
    """The payload says what ``run`` does: "ok", "fail", "hang", or an Event to wait on."""

    key = "scripted"

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def run(self, payload: Any) -> Any:
        self.probe.ran()
        if payload == "ok":
            return "ok"
        if payload == "fail":
            raise RuntimeError("run boom")
        event = self.probe.release if payload == "hang" else payload
        assert isinstance(event, threading.Event), payload
        self.probe.entered.release()
        try:
            event.wait(WAIT)
            return "released"
        finally:
            self.probe.finished.set()


class ScriptedWithFallback(Scripted):
    key = "scripted-fb"

    def fallback(self, payload: Any, error: BaseException) -> Any:
        self.probe.fell_back(error)
        return f"fallback: {getattr(error, 'reason', type(error).__name__)}"


class FailingFallback(Scripted):
    key = "failing-fb"

    def fallback(self, payload: Any, error: BaseException) -> Any:
        self.probe.fell_back(error)
        raise ValueError("fallback boom")


@pytest.fixture
def probe(registry: CommandRegistry) -> Iterator[Probe]:
    """Depends on ``registry`` so its teardown (releasing hung runs) comes before shutdown."""
    probe = Probe()
    for command_class in (Scripted, ScriptedWithFallback, FailingFallback):
        registry.register(command_class, probe)
    yield probe
    probe.release.set()


def configure(registry: CommandRegistry, key: str, **changes: Any) -> None:
    registry.configure(key, CommandConfig(**changes))


# -- hystrix-go: TestSuccess, TestFallback --------------------------------------------------------


def test_success_returns_the_value_of_run(registry: CommandRegistry, probe: Probe) -> None:
    reply = registry.ask_reply("scripted-fb", "ok")

    assert reply.value == "ok"
    assert reply.error is None
    assert reply.events == ("SUCCESS",)
    assert registry.ask("scripted", "ok") == "ok"
    assert probe.fallbacks == 0
    assert registry.health("scripted-fb").requests == 1


def test_a_failure_answers_with_the_fallback_which_sees_the_run_error(
    registry: CommandRegistry, probe: Probe
) -> None:
    reply = registry.ask_reply("scripted-fb", "fail")

    assert reply.value == "fallback: RuntimeError"
    assert reply.events == ("FAILURE", "FALLBACK_SUCCESS")
    assert [str(e) for e in probe.fallback_errors] == ["run boom"]
    assert reply.error is probe.fallback_errors[0]


def test_a_failure_without_fallback_re_raises_the_run_error(
    registry: CommandRegistry, probe: Probe
) -> None:
    with pytest.raises(RuntimeError, match="run boom"):
        registry.ask("scripted", "fail")


# -- hystrix-go: TestTimeout, TestTimeoutEmptyFallback ----------------------------------------


def test_a_timeout_answers_with_the_fallback(registry: CommandRegistry, probe: Probe) -> None:
    configure(registry, "scripted-fb", timeout=0.05)

    reply = registry.ask_reply("scripted-fb", "hang")

    assert reply.value == "fallback: timeout"
    assert reply.events == ("TIMEOUT", "FALLBACK_SUCCESS")
    assert isinstance(reply.error, CommandTimeoutError)
    assert 0.04 <= reply.latency < 1.0
    assert not probe.finished.is_set()  # answered while run is still hung


def test_a_timeout_without_fallback_raises_command_timeout_error(
    registry: CommandRegistry, probe: Probe
) -> None:
    configure(registry, "scripted", timeout=0.05)

    with pytest.raises(CommandTimeoutError) as caught:
        registry.ask("scripted", "hang")

    assert caught.value.reason == "timeout"
    assert caught.value.key == "scripted"


# -- hystrix-go: TestMaxConcurrent ----------------------------------------------------------------


def three_calls_against_two_slots(registry: CommandRegistry, probe: Probe, key: str) -> list[Any]:
    """Three callers start together; every admitted run hangs until the rejection is seen."""
    configure(registry, key, timeout=1.0, max_concurrent_requests=2)
    barrier = threading.Barrier(3)
    outcomes: queue.Queue[Any] = queue.Queue()

    def call() -> None:
        barrier.wait(WAIT)
        try:
            outcomes.put(registry.ask(key, "hang"))
        except Exception as exc:
            outcomes.put(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    # The two admitted runs hold their slots until released: the third caller is answered first.
    first = outcomes.get(timeout=WAIT)
    probe.release.set()
    for thread in threads:
        thread.join(WAIT)
    return [first, outcomes.get(timeout=WAIT), outcomes.get(timeout=WAIT)]


def test_max_concurrency_rejects_exactly_the_call_past_the_limit(
    registry: CommandRegistry, probe: Probe
) -> None:
    first, *rest = three_calls_against_two_slots(registry, probe, "scripted")

    assert isinstance(first, MaxConcurrencyError)
    assert first.reason == "max concurrency"
    assert first.key == "scripted"
    assert rest == ["released", "released"]
    assert probe.runs == 2


def test_max_concurrency_fallback_sees_the_reason_max_concurrency(
    registry: CommandRegistry, probe: Probe
) -> None:
    outcomes = three_calls_against_two_slots(registry, probe, "scripted-fb")

    assert outcomes == ["fallback: max concurrency", "released", "released"]
    [error] = probe.fallback_errors
    assert isinstance(error, MaxConcurrencyError)
    assert error.reason == "max concurrency"


# -- hystrix-go: TestOpenCircuit (forced open) ----------------------------------------------------


def test_forced_open_short_circuits_without_running(
    registry: CommandRegistry, probe: Probe
) -> None:
    configure(registry, "scripted", force_open=True)
    configure(registry, "scripted-fb", force_open=True)

    with pytest.raises(CircuitOpenError) as caught:
        registry.ask("scripted", "ok")
    reply = registry.ask_reply("scripted-fb", "ok")

    assert caught.value.reason == "circuit open"
    assert caught.value.key == "scripted"
    assert reply.value == "fallback: circuit open"
    assert reply.events == ("SHORT_CIRCUITED", "FALLBACK_SUCCESS")
    assert probe.runs == 0
    assert registry.health("scripted").state == "open"


def test_forced_open_wins_over_forced_closed(registry: CommandRegistry, probe: Probe) -> None:
    configure(registry, "scripted", force_open=True, force_closed=True)

    with pytest.raises(CircuitOpenError):
        registry.ask("scripted", "ok")
    assert probe.runs == 0


# -- hystrix-go: TestFailedFallback ---------------------------------------------------------------


def test_a_failed_fallback_raises_fallback_failed_error_with_both_errors(
    registry: CommandRegistry, probe: Probe
) -> None:
    with pytest.raises(FallbackFailedError) as caught:
        registry.ask("failing-fb", "fail")

    error = caught.value
    assert str(error) == "fallback failed with 'fallback boom'. run error was 'run boom'"
    assert isinstance(error.__cause__, ValueError)
    assert str(error.__cause__) == "fallback boom"
    assert isinstance(error.run_error, RuntimeError)
    assert str(error.run_error) == "run boom"
    assert error.key == "failing-fb"
    reply = registry.ask_reply("failing-fb", "fail")
    assert reply.events == ("FAILURE", "FALLBACK_FAILURE")


# -- hystrix-go: TestCloseCircuitAfterSuccess -----------------------------------------------------


def test_a_success_after_the_sleep_window_closes_the_circuit(
    registry: CommandRegistry, probe: Probe, clock: FakeClock
) -> None:
    configure(registry, "scripted", request_volume_threshold=3, sleep_window=5.0, timeout=0.2)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            registry.ask("scripted", "fail")
    assert registry.health("scripted").state == "open"
    with pytest.raises(CircuitOpenError):
        registry.ask("scripted", "ok")

    clock.advance(5.0 + 0.001)

    assert registry.ask("scripted", "ok") == "ok"
    assert registry.health("scripted").state == "closed"


def test_the_circuit_stays_open_until_the_sleep_window_has_passed(
    registry: CommandRegistry, probe: Probe, clock: FakeClock
) -> None:
    configure(registry, "scripted", request_volume_threshold=2, sleep_window=5.0)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            registry.ask("scripted", "fail")
    runs = probe.runs

    clock.advance(4.9)

    with pytest.raises(CircuitOpenError):
        registry.ask("scripted", "ok")
    assert probe.runs == runs
    assert registry.health("scripted").state == "open"


def test_a_success_of_a_call_admitted_before_the_circuit_opened_does_not_close_it(
    registry: CommandRegistry, probe: Probe, clock: FakeClock
) -> None:
    # hystrix-go's defect: any success closes an open circuit. Only a probe's may.
    configure(registry, "scripted", request_volume_threshold=2, timeout=1.0, sleep_window=5.0)
    old_call, probe_call = threading.Event(), threading.Event()
    old = registry.ask("scripted", old_call, block=False)
    probe.wait_entered()
    for _ in range(2):
        with pytest.raises(RuntimeError):
            registry.ask("scripted", "fail")
    assert registry.health("scripted").state == "open"
    clock.advance(5.001)
    probing = registry.ask("scripted", probe_call, block=False)
    probe.wait_entered()
    assert registry.health("scripted").state == "half_open"

    old_call.set()
    assert old.get(timeout=WAIT) == "released"
    assert registry.health("scripted").state == "half_open"

    probe_call.set()
    assert probing.get(timeout=WAIT) == "released"
    assert registry.health("scripted").state == "closed"


# -- hystrix-go: TestFallbackAfterTimeout / "runs fallback once" ----------------------------------


def test_the_fallback_runs_once_after_a_timeout(
    registry: CommandRegistry, probe: Probe, eventually: Any
) -> None:
    configure(registry, "scripted-fb", timeout=0.05)

    assert registry.ask("scripted-fb", "hang") == "fallback: timeout"
    assert probe.fallbacks == 1

    probe.release.set()
    assert probe.finished.wait(WAIT)
    eventually(lambda: registry.health("scripted-fb").in_flight == 0, what="late run accounted")
    assert probe.fallbacks == 1


# -- hystrix-go: TestReturnTicket / rejected run never executes ---------------------------------


def test_a_rejected_call_never_runs(registry: CommandRegistry, probe: Probe) -> None:
    configure(registry, "scripted", max_concurrent_requests=1, timeout=1.0)
    holding = registry.ask("scripted", "hang", block=False)
    probe.wait_entered()

    with pytest.raises(MaxConcurrencyError):
        registry.ask("scripted", "ok")
    assert probe.runs == 1

    probe.release.set()
    assert holding.get(timeout=WAIT) == "released"
    assert probe.runs == 1


def test_the_slot_of_a_timed_out_call_is_held_until_its_run_returns(
    registry: CommandRegistry, probe: Probe, eventually: Any
) -> None:
    # hystrix-go hands the ticket back at the timeout; we keep it until run returns.
    configure(registry, "scripted", max_concurrent_requests=1, timeout=0.05)

    with pytest.raises(CommandTimeoutError):
        registry.ask("scripted", "hang")
    assert registry.health("scripted").in_flight == 1
    with pytest.raises(MaxConcurrencyError):
        registry.ask("scripted", "ok")
    assert probe.runs == 1

    probe.release.set()
    assert probe.finished.wait(WAIT)
    eventually(lambda: registry.health("scripted").in_flight == 0, what="slot handed back")
    assert registry.ask("scripted", "ok") == "ok"


# -- hystrix-go: Go / Do ----------------------------------------------------------------------


def test_do_blocks_for_the_value_of_run(registry: CommandRegistry) -> None:
    assert registry.do("fn", lambda: 42) == 42


def test_do_answers_with_the_fallback_given_the_error(registry: CommandRegistry) -> None:
    assert registry.do("fn", lambda: 1 / 0, lambda error: type(error).__name__) == (
        "ZeroDivisionError"
    )


def test_do_without_fallback_re_raises_the_run_error(registry: CommandRegistry) -> None:
    with pytest.raises(ZeroDivisionError):
        registry.do("fn", lambda: 1 / 0)


def test_go_returns_a_future_of_the_value(registry: CommandRegistry) -> None:
    future = registry.go("fn", lambda: 42)

    assert isinstance(future, pykka.Future)
    assert future.get(timeout=WAIT) == 42


def test_go_answers_a_failure_with_the_fallback(registry: CommandRegistry) -> None:
    future = registry.go("fn", lambda: 1 / 0, lambda error: type(error).__name__)

    assert future.get(timeout=WAIT) == "ZeroDivisionError"


def test_go_without_fallback_raises_the_run_error_from_get(registry: CommandRegistry) -> None:
    future = registry.go("fn", lambda: 1 / 0)

    with pytest.raises(ZeroDivisionError):
        future.get(timeout=WAIT)


def test_go_on_a_configured_key_times_out_with_its_config(registry: CommandRegistry) -> None:
    configure(registry, "fn-slow", timeout=0.05)
    hung = threading.Event()
    try:
        future = registry.go("fn-slow", lambda: hung.wait(WAIT), lambda error: error.reason)
        assert future.get(timeout=WAIT) == "timeout"
        with pytest.raises(CommandTimeoutError):
            registry.do("fn-slow", lambda: hung.wait(WAIT))
    finally:
        hung.set()


def test_go_on_a_key_never_configured_uses_the_default_config(
    registry: CommandRegistry,
) -> None:
    hung = threading.Event()
    entered = threading.Semaphore(0)

    def run() -> str:
        entered.release()
        hung.wait(WAIT)
        return "released"

    try:
        futures = [registry.go("fresh", run) for _ in range(10)]
        for _ in range(10):
            assert entered.acquire(timeout=WAIT)
        # The default bulkhead admits 10: the 11th call is rejected.
        assert registry.do("fresh", lambda: "ran", lambda error: error.reason) == (
            "max concurrency"
        )
        health = registry.health("fresh")
        assert health.in_flight == 10
        assert health.state == "closed"
    finally:
        hung.set()
    assert [future.get(timeout=WAIT) for future in futures] == ["released"] * 10


def test_go_and_do_refuse_a_key_registered_to_a_command_class(
    registry: CommandRegistry, probe: Probe
) -> None:
    with pytest.raises(ValueError, match="scripted"):
        registry.do("scripted", lambda: 1)
    with pytest.raises(ValueError, match="scripted"):
        registry.go("scripted", lambda: 1)


def test_go_runs_off_the_callers_thread(registry: CommandRegistry) -> None:
    caller = threading.get_ident()

    assert registry.go("fn", threading.get_ident).get(timeout=WAIT) != caller
    assert registry.do("fn", threading.get_ident) != caller


def test_go_and_do_refuse_a_command_class_key_also_after_it_was_asked(
    registry: CommandRegistry, probe: Probe
) -> None:
    assert registry.ask("scripted", "ok") == "ok"

    with pytest.raises(ValueError, match="scripted"):
        registry.do("scripted", lambda: 1)
