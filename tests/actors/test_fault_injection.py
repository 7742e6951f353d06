"""Fault injection in the actor shell (``registry.inject``): faults happen where the dependency's
would (on the worker, or on the caller's thread under semaphore isolation), so the breaker,
timeouts, fallbacks, retries and metrics react for real; refused unless the registry allows it.

Most tests run under both isolations. Breakers run on the fake clock; call deadlines and an
injection's duration are real time, so a test that needs them to pass uses short ones and waits
on the outcome, never on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actors import (
    CircuitState,
    Command,
    CommandConfig,
    CommandError,
    CommandRegistry,
    EventType,
    Injection,
    InjectionDisabledError,
    RetryPolicy,
    UnknownCommandError,
)
from actors.prometheus import collector_registry
from actors.stream import command_message
from supervision import FakeClock

KEY = "Get issues"
S, F, T = EventType.SUCCESS, EventType.FAILURE, EventType.TIMEOUT
SHORT, FALLBACK = EventType.SHORT_CIRCUITED, EventType.FALLBACK_SUCCESS
CONFIG = CommandConfig(timeout=2.0, request_volume_threshold=4, sleep_window=5.0)


class Dependency:
    """The real dependency: counts the calls that reached it."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def call(self) -> str:
        with self.lock:
            self.calls += 1
        return "issues"


class GetIssues(Command):
    key = KEY
    config = CONFIG

    def __init__(self, dependency: Dependency) -> None:
        self.dependency = dependency

    def run(self, payload: Any) -> str:
        return self.dependency.call()

    def fallback(self, payload: Any, error: BaseException) -> str:
        return "no issues"


@pytest.fixture(params=["thread", "semaphore"])
def isolation(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def dependency() -> Dependency:
    return Dependency()


@pytest.fixture
def reg(clock: FakeClock, dependency: Dependency, isolation: str) -> Iterator[CommandRegistry]:
    """A registry that allows injection, ``GetIssues`` registered with the test's isolation."""
    registry = CommandRegistry(clock=clock, allow_injection=True)
    registry.register(GetIssues, dependency)
    registry.configure(KEY, CONFIG.replace(isolation=isolation))
    try:
        yield registry
    finally:
        registry.shutdown()


def events(registry: CommandRegistry, times: int = 1) -> list[tuple[EventType, ...]]:
    return [registry.ask_reply(KEY).events for _ in range(times)]


def logged(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == event]


# -- enabling ------------------------------------------------------------------------------------


def test_injection_is_refused_unless_the_registry_allows_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HYSTRIX_ALLOW_INJECTION", raising=False)
    with CommandRegistry() as registry:
        registry.register(GetIssues, Dependency())

        with pytest.raises(InjectionDisabledError) as refused:
            registry.inject(KEY, error=ConnectionError)

        assert not registry.injection_allowed
        assert "CommandRegistry(allow_injection=True)" in str(refused.value)
        assert "HYSTRIX_ALLOW_INJECTION=1" in str(refused.value)
        assert isinstance(refused.value, CommandError)
        assert (refused.value.key, refused.value.reason) == (KEY, "injection disabled")
        assert registry.ask(KEY) == "issues"  # nothing was injected


@pytest.mark.parametrize(
    ("value", "allowed"), [("1", True), ("true", True), ("0", False), ("", False), ("no", False)]
)
def test_the_environment_variable_allows_it_when_the_registry_is_made(
    monkeypatch: pytest.MonkeyPatch, value: str, allowed: bool
) -> None:
    monkeypatch.setenv("HYSTRIX_ALLOW_INJECTION", value)
    with CommandRegistry() as registry:
        monkeypatch.delenv("HYSTRIX_ALLOW_INJECTION")  # read when made, not later
        registry.register(GetIssues, Dependency())

        assert registry.injection_allowed is allowed
        if allowed:
            with registry.inject(KEY, outcome="canned"):
                assert registry.ask(KEY) == "canned"
        else:
            with pytest.raises(InjectionDisabledError):
                registry.inject(KEY, outcome="canned")


def test_allow_injection_false_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYSTRIX_ALLOW_INJECTION", "1")
    with CommandRegistry(allow_injection=False) as registry:
        registry.register(GetIssues, Dependency())
        with pytest.raises(InjectionDisabledError):
            registry.inject(KEY, error=ConnectionError)


def test_allow_injection_takes_a_bool_or_none() -> None:
    with pytest.raises(TypeError, match="allow_injection must be True, False or None, got 'yes'"):
        CommandRegistry(allow_injection="yes")  # type: ignore[arg-type]


def test_bad_values_and_unknown_keys_are_refused(reg: CommandRegistry) -> None:
    with pytest.raises(ValueError, match="rate must be a finite number >= 0 and <= 1"):
        reg.inject(KEY, error=ConnectionError, rate=2)
    with pytest.raises(ValueError, match=r"duration must be .* <= 86400, got 100000"):
        reg.inject(KEY, error=ConnectionError, duration=100_000)
    with pytest.raises(ValueError, match="error and outcome cannot be combined"):
        reg.inject(KEY, error=ConnectionError, outcome=1)
    with pytest.raises(UnknownCommandError):
        reg.inject("nobody registered this", error=ConnectionError)
    assert reg.health(KEY).injection is None


# -- the faults, where the dependency's would happen --------------------------------------------


def test_an_injected_error_fails_the_run_and_the_fallback_answers(
    reg: CommandRegistry, dependency: Dependency
) -> None:
    with reg.inject(KEY, error=ConnectionError("injected")):
        reply = reg.ask_reply(KEY)

    assert reply.events == (F, FALLBACK)
    assert reply.value == "no issues"
    assert isinstance(reply.error, ConnectionError)
    assert str(reply.error) == "injected"
    assert dependency.calls == 0  # raised instead of running


def test_without_a_fallback_the_injected_error_reaches_the_caller(
    clock: FakeClock, isolation: str
) -> None:
    with CommandRegistry(clock=clock, allow_injection=True) as registry:
        fail = registry.command(KEY, config=CONFIG.replace(isolation=isolation))(lambda _: "ok")

        registry.inject(KEY, error=TimeoutError)

        with pytest.raises(TimeoutError):
            fail(None)


def test_an_injected_outcome_is_a_success_with_that_value(
    reg: CommandRegistry, dependency: Dependency
) -> None:
    with reg.inject(KEY, outcome=["canned"]):
        reply = reg.ask_reply(KEY)

    assert reply.events == (S,)
    assert reply.value == ["canned"]
    assert dependency.calls == 0
    assert reg.metrics(KEY).counts[S] == 1


def test_an_injected_latency_waits_then_runs(reg: CommandRegistry, dependency: Dependency) -> None:
    with reg.inject(KEY, latency=0.05):
        reply = reg.ask_reply(KEY)

    assert reply.events == (S,)
    assert reply.value == "issues"
    assert dependency.calls == 1
    assert reply.latency >= 0.05
    assert reg.metrics(KEY).latency_execute.mean >= 0.05  # run's time includes the wait


def test_latency_combines_with_an_error(reg: CommandRegistry, dependency: Dependency) -> None:
    with reg.inject(KEY, latency=0.05, error=ConnectionError):
        reply = reg.ask_reply(KEY)

    assert reply.events == (F, FALLBACK)
    assert reply.latency >= 0.05
    assert dependency.calls == 0


def test_a_latency_past_the_timeout_is_a_timeout_and_frees_the_slot_at_the_deadline(
    reg: CommandRegistry,
    dependency: Dependency,
    isolation: str,
    eventually: Callable[..., None],
) -> None:
    reg.configure(KEY, CONFIG.replace(isolation=isolation, timeout=0.1))
    with reg.inject(KEY, latency=30.0):
        reply = reg.ask_reply(KEY)

    assert reply.events == (T, FALLBACK)
    assert reply.value == "no issues"
    assert dependency.calls == 0
    # the wait ends at the deadline: no worker is left stuck for 30 s
    eventually(lambda: reg.health(KEY).in_flight == 0, what="the slot given back")
    assert reg.health(KEY).zombies == 0
    assert reg.ask(KEY) == "issues"


def test_a_non_blocking_call_times_out_behind_an_injected_latency_too(
    reg: CommandRegistry,
) -> None:
    reg.configure(KEY, CONFIG.replace(timeout=0.1))
    reg.inject(KEY, latency=30.0)

    future = reg.ask_reply(KEY, block=False)

    assert future.get(timeout=10.0).events == (T, FALLBACK)


def test_asyncio_callers_get_the_faults_too(reg: CommandRegistry) -> None:
    async def main() -> list[tuple[EventType, ...]]:
        replies = []
        with reg.inject(KEY, outcome="canned"):
            replies.append(await reg.ask_reply_async(KEY))
        with reg.inject(KEY, error=ConnectionError):
            replies.append(await reg.ask_reply_async(KEY))
        with reg.inject(KEY, latency=30.0):
            replies.append(await reg.ask_reply_async(KEY, timeout=0.1))
        return [reply.events for reply in replies]

    assert asyncio.run(main()) == [(S,), (F, FALLBACK), (T, FALLBACK)]


def test_a_retry_policy_sees_an_injected_error_as_any_error(reg: CommandRegistry) -> None:
    policy = RetryPolicy(attempts=3, backoff=0.0, jitter=0.0, budget=None)
    reg.configure(KEY, CONFIG.replace(retry=policy, request_volume_threshold=20))

    with reg.inject(KEY, error=ConnectionError, rate=0.5, seed=3) as injection:
        reply = reg.ask_reply(KEY)

    dice = random.Random(3)
    faulted = [dice.random() < 0.5 for _ in range(3)]
    expected: list[EventType] = []
    for failed in faulted:  # each attempt draws; a success ends the call
        if not failed:
            expected.append(S)
            break
        expected += [F, EventType.RETRY]
    else:
        expected[-1] = FALLBACK
    assert reply.events == tuple(expected)
    assert injection.runs == len([e for e in expected if e in (S, F)])


def test_a_seeded_rate_faults_a_reproducible_pattern_of_calls(
    clock: FakeClock, isolation: str
) -> None:
    patterns = []
    for _ in range(2):  # two registries, the same seed
        with CommandRegistry(clock=clock, allow_injection=True) as registry:
            registry.register(GetIssues, Dependency())
            registry.configure(KEY, CONFIG.replace(isolation=isolation, force_closed=True))
            with registry.inject(KEY, error=ConnectionError, rate=0.5, seed=2024) as injection:
                patterns.append([registry.ask_reply(KEY).events[0] is F for _ in range(40)])
            assert (injection.runs, injection.faulted) == (40, sum(patterns[-1]))

    dice = random.Random(2024)
    assert patterns[0] == patterns[1] == [dice.random() < 0.5 for _ in range(40)]
    assert 0 < sum(patterns[0]) < 40


# -- the outage rehearsal: the breaker reacts for real ------------------------------------------


def test_an_injected_outage_opens_the_circuit_and_stopping_it_lets_it_close(
    reg: CommandRegistry, dependency: Dependency, clock: FakeClock
) -> None:
    assert events(reg) == [(S,)]
    injection = reg.inject(KEY, error=ConnectionError("rehearsed outage"))

    assert events(reg, 3) == [(F, FALLBACK)] * 3  # 3 errors in 4 requests: it trips
    assert reg.health(KEY).state is CircuitState.OPEN
    assert events(reg) == [(SHORT, FALLBACK)]  # short-circuited: no run, no draw
    assert injection.runs == 3

    injection.stop()
    clock.advance(CONFIG.sleep_window)
    assert events(reg) == [(S,)]  # the half-open probe reaches the real dependency

    assert reg.health(KEY).state is CircuitState.CLOSED
    assert dependency.calls == 2
    assert reg.metrics(KEY).transitions == {"open": 1, "half_open": 1, "closed": 1}


def test_a_probe_during_the_injection_fails_and_reopens_the_circuit(
    reg: CommandRegistry, clock: FakeClock
) -> None:
    with reg.inject(KEY, error=ConnectionError):
        events(reg, 4)
        clock.advance(CONFIG.sleep_window)
        assert events(reg) == [(F, FALLBACK)]  # the probe meets the injected outage
        assert reg.health(KEY).state is CircuitState.OPEN


# -- its life: the handle, replacing, expiry, reset ----------------------------------------------


def test_the_context_manager_ends_the_injection_on_exit(
    reg: CommandRegistry, captured_logs: list[dict[str, Any]]
) -> None:
    with reg.inject(KEY, outcome="canned") as injection:
        assert isinstance(injection, Injection)
        assert injection.active
        assert injection.key == KEY
        assert reg.ask(KEY) == "canned"

    assert not injection.active
    assert injection.ended == "stopped"
    assert injection.remaining == 0.0
    assert reg.ask(KEY) == "issues"
    injection.stop()  # again: nothing happens
    assert [e["reason"] for e in logged(captured_logs, "injection.ended")] == ["stopped"]


def test_a_later_injection_on_the_key_replaces_the_earlier(
    reg: CommandRegistry, captured_logs: list[dict[str, Any]]
) -> None:
    first = reg.inject(KEY, outcome="first")
    second = reg.inject(KEY, outcome="second")

    assert reg.ask(KEY) == "second"
    assert (first.active, first.ended, second.active) == (False, "replaced", True)
    first.stop()  # ended already: the second stays
    assert reg.ask(KEY) == "second"
    assert [e["reason"] for e in logged(captured_logs, "injection.ended")] == ["replaced"]


def test_an_injection_ends_by_itself_when_its_duration_is_over_and_says_so(
    reg: CommandRegistry,
    captured_logs: list[dict[str, Any]],
    eventually: Callable[..., None],
) -> None:
    injection = reg.inject(KEY, error=ConnectionError, duration=0.2)

    eventually(lambda: injection.ended == "expired", within=5.0, what="the injection expired")

    (ended,) = logged(captured_logs, "injection.ended")
    assert ended["log_level"] == "warning"
    assert ended["command"] == KEY
    assert ended["reason"] == "expired"
    assert ended["fault"] == "error=ConnectionError, rate=1, duration=0.2s"
    assert (ended["runs"], ended["faulted"]) == (0, 0)
    assert reg.health(KEY).injection is None
    assert reg.ask(KEY) == "issues"


def test_starting_an_injection_is_logged_at_warning_with_what_it_injects(
    reg: CommandRegistry, captured_logs: list[dict[str, Any]]
) -> None:
    reg.inject(KEY, latency=0.25, error=ConnectionError, rate=0.5, duration=60, seed=7)

    (started,) = logged(captured_logs, "injection.started")
    assert started["log_level"] == "warning"
    assert started["command"] == KEY
    assert started["fault"] == (
        "latency=0.25s, error=ConnectionError, rate=0.5, duration=60s, seed=7"
    )
    assert started["latency_ms"] == 250.0
    assert started["error"] == "ConnectionError"
    assert started["outcome"] is None
    assert (started["rate"], started["duration_ms"], started["seed"]) == (0.5, 60000.0, 7)


@pytest.mark.parametrize("how", ["reset", "shutdown"])
def test_reset_and_shutdown_end_every_injection(
    clock: FakeClock, captured_logs: list[dict[str, Any]], how: str
) -> None:
    registry = CommandRegistry(clock=clock, allow_injection=True)
    try:
        registry.register(GetIssues, Dependency())
        injection = registry.inject(KEY, error=ConnectionError)
        getattr(registry, how)()

        assert injection.ended == how
        assert [e["reason"] for e in logged(captured_logs, "injection.ended")] == [how]
        if how == "reset":
            registry.register(GetIssues, Dependency())
            assert registry.ask(KEY) == "issues"
    finally:
        registry.shutdown()


def test_an_injection_on_a_key_never_asked_applies_from_its_first_call(
    reg: CommandRegistry,
) -> None:
    reg.inject(KEY, outcome="canned")

    assert reg.health(KEY).injection == "outcome='canned', rate=1, duration=30s"
    assert reg.ask(KEY) == "canned"


# -- visible: health, metrics, the stream, Prometheus --------------------------------------------


def test_health_metrics_the_stream_and_prometheus_show_an_active_injection(
    reg: CommandRegistry,
) -> None:
    def gauge() -> float | None:
        return collector_registry(reg).get_sample_value("hystrix_fault_injected", {"command": KEY})

    reg.ask(KEY)
    assert reg.health(KEY).injection is None
    assert command_message(reg.metrics(KEY))["faultInjected"] is False
    assert gauge() == 0

    with reg.inject(KEY, error=ConnectionError, rate=0.25, seed=1):
        described = "error=ConnectionError, rate=0.25, duration=30s, seed=1"
        assert reg.health(KEY).injection == described
        assert reg.metrics(KEY).injection == described
        message = command_message(reg.metrics(KEY))
        assert message["faultInjected"] is True
        assert message["faultInjection"] == described
        assert gauge() == 1

    assert reg.health(KEY).injection is None
    assert command_message(reg.metrics(KEY))["faultInjection"] is None
    assert gauge() == 0


def test_the_class_level_inject_acts_on_the_default_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = CommandRegistry(allow_injection=True)
    monkeypatch.setattr(CommandRegistry, "_default", default)  # the one before, back after
    try:
        CommandRegistry.register(GetIssues, Dependency())
        with CommandRegistry.inject(KEY, outcome="canned"):
            assert CommandRegistry.ask(KEY) == "canned"
    finally:
        default.shutdown()
