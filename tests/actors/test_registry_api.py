"""The public face of ``CommandRegistry``: registration, asking, replies, health and lifecycle."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from probe import WAIT, Probe

from actors import (
    BadRequest,
    CircuitOpenError,
    Command,
    CommandConfig,
    CommandError,
    CommandRegistry,
    CommandTimeoutError,
    FallbackFailedError,
    MaxConcurrencyError,
    Reply,
    UnknownCommandError,
)
from supervision import FakeClock, Transition


class Service(Command):
    """The payload says what ``run`` does."""

    key = "service"
    config = CommandConfig(timeout=0.2)

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def run(self, payload: Any) -> Any:
        self.probe.ran()
        seen = self.probe.seen
        if payload == "ok":
            return "ok"
        if payload == "fail":
            raise RuntimeError("run boom")
        if payload == "bad":
            seen["bad_request"] = BadRequest("no such issue")
            raise seen["bad_request"]
        if payload == "thread":
            return threading.get_ident()
        if payload == "time_left":
            return self.time_left()
        if payload == "hang":
            self.probe.entered.release()
            try:
                self.probe.release.wait(WAIT)
                return "released"
            finally:
                self.probe.finished.set()
        if payload == "watch_cancel":
            seen["instance"] = self
            seen["cancelled_before"] = self.cancelled
            self.probe.entered.release()
            try:
                self.probe.release.wait(WAIT)
                seen["cancelled_after"] = self.cancelled
                return "released"
            finally:
                self.probe.finished.set()
        raise AssertionError(payload)


class ServiceWithFallback(Service):
    key = "service-fb"

    def fallback(self, payload: Any, error: BaseException) -> Any:
        self.probe.fell_back()
        return f"fallback: {getattr(error, 'reason', type(error).__name__)}"


class ServiceWithFailingFallback(Service):
    key = "service-failing-fb"

    def fallback(self, payload: Any, error: BaseException) -> Any:
        raise ValueError("fallback boom")


class Echo(Command):
    key = "echo"

    def run(self, payload: Any) -> Any:
        return ("echo", payload)


@pytest.fixture
def probe(registry: CommandRegistry) -> Iterator[Probe]:
    """Depends on ``registry`` so its teardown (releasing hung runs) comes before shutdown."""
    probe = Probe()
    for command_class in (Service, ServiceWithFallback, ServiceWithFailingFallback):
        registry.register(command_class, probe)
    yield probe
    probe.release.set()


@pytest.fixture
def default_registry() -> Iterator[None]:
    CommandRegistry.reset()
    yield
    CommandRegistry.reset()


def configure(registry: CommandRegistry, key: str, **changes: Any) -> None:
    registry.configure(key, CommandConfig(**changes))


def trip(registry: CommandRegistry, key: str, n: int) -> None:
    for _ in range(n):
        registry.ask_reply(key, "fail")
    assert registry.health(key).state == "open"


# -- the default registry -------------------------------------------------------------------------


def test_class_level_calls_act_on_the_process_wide_default_registry(
    default_registry: None, registry: CommandRegistry
) -> None:
    CommandRegistry.register(Echo)

    assert CommandRegistry.ask("echo", 1) == ("echo", 1)
    assert CommandRegistry.ask_reply("echo", 2).value == ("echo", 2)
    assert CommandRegistry.health("echo").requests == 2
    assert CommandRegistry.do("default-fn", lambda: 3) == 3
    assert CommandRegistry.default() is CommandRegistry.default()
    with pytest.raises(UnknownCommandError):
        registry.ask("echo", 1)  # an isolated registry shares nothing with the default one


def test_reset_forgets_registrations_and_configuration(default_registry: None) -> None:
    CommandRegistry.register(Echo)
    CommandRegistry.configure("echo", CommandConfig(force_open=True))
    with pytest.raises(CircuitOpenError):
        CommandRegistry.ask("echo", 1)

    CommandRegistry.reset()

    with pytest.raises(UnknownCommandError):
        CommandRegistry.ask("echo", 1)
    CommandRegistry.register(Echo)
    assert CommandRegistry.ask("echo", 1) == ("echo", 1)


def test_an_isolated_registry_is_a_context_manager_that_shuts_it_down() -> None:
    with CommandRegistry() as registry:
        registry.register(Echo)
        assert registry.ask("echo", 1) == ("echo", 1)

    with pytest.raises(CommandError) as caught:
        registry.ask("echo", 1)
    assert caught.value.reason == "shutdown"


# -- registration ---------------------------------------------------------------------------------


class NotACommand:
    key = "not-a-command"

    def run(self, payload: Any) -> Any:
        return payload


def test_register_refuses_what_is_not_a_command_class(registry: CommandRegistry) -> None:
    with pytest.raises(TypeError, match="NotACommand"):
        registry.register(NotACommand)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        registry.register(Echo())  # type: ignore[arg-type]


def test_register_refuses_a_class_without_a_key_naming_the_class(
    registry: CommandRegistry,
) -> None:
    class Keyless(Command):
        def run(self, payload: Any) -> Any:
            return payload

    with pytest.raises((TypeError, ValueError), match="Keyless"):
        registry.register(Keyless)


@pytest.mark.parametrize("key", ["", "   "])
def test_register_refuses_an_empty_key_naming_the_class(
    registry: CommandRegistry, key: str
) -> None:
    class Blank(Command):
        def run(self, payload: Any) -> Any:
            return payload

    Blank.key = key

    with pytest.raises(ValueError, match="Blank"):
        registry.register(Blank)


def test_register_refuses_a_duplicate_key_naming_it(registry: CommandRegistry) -> None:
    class OtherEcho(Command):
        key = "echo"

        def run(self, payload: Any) -> Any:
            return payload

    registry.register(Echo)

    with pytest.raises(ValueError, match="'echo'"):
        registry.register(OtherEcho)
    assert registry.ask("echo", 1) == ("echo", 1)  # the first registration stands


def test_register_passes_its_arguments_to_each_instance(registry: CommandRegistry) -> None:
    class Greeter(Command):
        key = "greeter"

        def __init__(self, greeting: str, *, punctuation: str) -> None:
            self.text = greeting + "{}" + punctuation

        def run(self, payload: Any) -> Any:
            return self.text.format(payload)

    registry.register(Greeter, "hello ", punctuation="!")

    assert registry.ask("greeter", "bob") == "hello bob!"


def test_asking_an_unknown_key_raises_unknown_command_error(registry: CommandRegistry) -> None:
    with pytest.raises(UnknownCommandError) as caught:
        registry.ask("nobody", 1)

    assert isinstance(caught.value, LookupError)
    assert isinstance(caught.value, CommandError)
    assert caught.value.key == "nobody"
    with pytest.raises(LookupError):
        registry.ask_reply("nobody", 1)
    with pytest.raises(UnknownCommandError):
        registry.health("nobody")


# -- shutdown -------------------------------------------------------------------------------------


def test_every_ask_after_shutdown_raises_command_error_shutdown(
    registry: CommandRegistry,
) -> None:
    registry.register(Echo)
    assert registry.ask("echo", 1) == ("echo", 1)

    registry.shutdown()

    calls = [
        lambda: registry.ask("echo", 1),
        lambda: registry.ask_reply("echo", 1),
        lambda: registry.ask("echo", 1, block=False),
        lambda: registry.ask("never-used", 1),
        lambda: registry.do("fn", lambda: 1),
        lambda: registry.go("fn", lambda: 1),
    ]
    for call in calls:
        with pytest.raises(CommandError) as caught:
            call()
        assert caught.value.reason == "shutdown"


def test_shutdown_answers_a_call_still_in_flight(registry: CommandRegistry, probe: Probe) -> None:
    configure(registry, "service", timeout=1.0)
    future = registry.ask_reply("service", "hang", block=False)
    probe.wait_entered()

    registry.shutdown(timeout=0.05)

    reply = future.get(timeout=WAIT)
    assert isinstance(reply.error, CommandError)
    assert reply.error.reason == "shutdown"
    with pytest.raises(CommandError):
        reply.unwrap()


def test_shutdown_is_idempotent(registry: CommandRegistry) -> None:
    registry.shutdown()
    registry.shutdown()


# -- replies --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "payload", "config", "events", "value"),
    [
        ("service", "ok", {}, ("SUCCESS",), "ok"),
        ("service-fb", "fail", {}, ("FAILURE", "FALLBACK_SUCCESS"), "fallback: RuntimeError"),
        ("service", "fail", {}, ("FAILURE", "FALLBACK_MISSING"), None),
        ("service-failing-fb", "fail", {}, ("FAILURE", "FALLBACK_FAILURE"), None),
        (
            "service-fb",
            "hang",
            {"timeout": 0.05},
            ("TIMEOUT", "FALLBACK_SUCCESS"),
            "fallback: timeout",
        ),
        ("service", "hang", {"timeout": 0.05}, ("TIMEOUT", "FALLBACK_MISSING"), None),
        (
            "service-fb",
            "ok",
            {"force_open": True},
            ("SHORT_CIRCUITED", "FALLBACK_SUCCESS"),
            "fallback: circuit open",
        ),
        ("service", "ok", {"force_open": True}, ("SHORT_CIRCUITED", "FALLBACK_MISSING"), None),
        ("service-fb", "bad", {}, ("BAD_REQUEST",), None),
    ],
)
def test_ask_reply_carries_the_hystrix_events_and_never_raises(
    registry: CommandRegistry,
    probe: Probe,
    key: str,
    payload: str,
    config: dict[str, Any],
    events: tuple[str, ...],
    value: Any,
) -> None:
    if config:
        configure(registry, key, **config)

    reply = registry.ask_reply(key, payload)

    assert isinstance(reply, Reply)
    assert reply.key == key
    assert reply.events == events
    assert reply.value == value
    assert (reply.error is None) == (events == ("SUCCESS",))
    assert reply.latency >= 0


@pytest.mark.parametrize(
    ("key", "events", "value"),
    [
        ("service-fb", ("THREAD_POOL_REJECTED", "FALLBACK_SUCCESS"), "fallback: max concurrency"),
        ("service", ("THREAD_POOL_REJECTED", "FALLBACK_MISSING"), None),
    ],
)
def test_ask_reply_of_a_rejected_call(
    registry: CommandRegistry, probe: Probe, key: str, events: tuple[str, ...], value: Any
) -> None:
    configure(registry, key, max_concurrent_requests=1, timeout=1.0)
    holding = registry.ask(key, "hang", block=False)
    probe.wait_entered()

    reply = registry.ask_reply(key, "ok")

    assert reply.events == events
    assert reply.value == value
    assert isinstance(reply.error, MaxConcurrencyError)
    probe.release.set()
    assert holding.get(timeout=WAIT) == "released"


def test_unwrap_gives_the_value_or_raises_as_ask_would(
    registry: CommandRegistry, probe: Probe
) -> None:
    assert registry.ask_reply("service", "ok").unwrap() == "ok"
    assert registry.ask_reply("service-fb", "fail").unwrap() == "fallback: RuntimeError"
    with pytest.raises(RuntimeError, match="run boom"):
        registry.ask_reply("service", "fail").unwrap()
    with pytest.raises(FallbackFailedError):
        registry.ask_reply("service-failing-fb", "fail").unwrap()
    with pytest.raises(BadRequest):
        registry.ask_reply("service", "bad").unwrap()
    configure(registry, "service", force_open=True)
    with pytest.raises(CircuitOpenError):
        registry.ask_reply("service", "ok").unwrap()


def test_a_reply_is_frozen(registry: CommandRegistry, probe: Probe) -> None:
    reply = registry.ask_reply("service", "ok")

    with pytest.raises(AttributeError):
        reply.value = "changed"  # type: ignore[misc]


# -- block=False ----------------------------------------------------------------------------------


def test_ask_with_block_false_returns_a_future_of_the_value(
    registry: CommandRegistry, probe: Probe
) -> None:
    future = registry.ask("service", "ok", block=False)

    assert isinstance(future, pykka.Future)
    assert future.get(timeout=WAIT) == "ok"
    with pytest.raises(RuntimeError, match="run boom"):
        registry.ask("service", "fail", block=False).get(timeout=WAIT)
    assert registry.ask("service-fb", "fail", block=False).get(timeout=WAIT) == (
        "fallback: RuntimeError"
    )


def test_ask_reply_with_block_false_returns_a_future_of_the_reply(
    registry: CommandRegistry, probe: Probe
) -> None:
    reply = registry.ask_reply("service", "ok", block=False).get(timeout=WAIT)

    assert isinstance(reply, Reply)
    assert reply.events == ("SUCCESS",)


def test_a_non_blocking_call_is_answered_at_its_deadline_with_nobody_waiting(
    registry: CommandRegistry, probe: Probe
) -> None:
    configure(registry, "service-fb", timeout=0.05)

    future = registry.ask_reply("service-fb", "hang", block=False)

    reply = future.get(timeout=WAIT)
    assert reply.events == ("TIMEOUT", "FALLBACK_SUCCESS")
    assert reply.value == "fallback: timeout"
    assert reply.latency < 1.0
    assert not probe.finished.is_set()


def test_non_blocking_rejections_and_short_circuits_come_as_futures_too(
    registry: CommandRegistry, probe: Probe
) -> None:
    configure(registry, "service", force_open=True)

    future = registry.ask("service", "ok", block=False)

    with pytest.raises(CircuitOpenError):
        future.get(timeout=WAIT)
    reply = registry.ask_reply("service", "ok", block=False).get(timeout=WAIT)
    assert reply.events == ("SHORT_CIRCUITED", "FALLBACK_MISSING")


# -- deadlines ------------------------------------------------------------------------------------


def test_ask_timeout_shortens_the_deadline(registry: CommandRegistry, probe: Probe) -> None:
    configure(registry, "service", timeout=5.0)

    reply = registry.ask_reply("service", "hang", timeout=0.05)

    assert reply.events == ("TIMEOUT", "FALLBACK_MISSING")
    assert reply.latency < 1.0
    assert 0 < registry.ask("service", "time_left", timeout=0.5) <= 0.5


def test_ask_timeout_never_lengthens_the_deadline(registry: CommandRegistry, probe: Probe) -> None:
    configure(registry, "service", timeout=0.05)

    with pytest.raises(CommandTimeoutError):
        registry.ask("service", "hang", timeout=30.0)
    assert registry.ask("service", "time_left", timeout=30.0) <= 0.05


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), "1"])
def test_ask_refuses_a_timeout_that_is_not_a_positive_number(
    registry: CommandRegistry, probe: Probe, timeout: Any
) -> None:
    with pytest.raises(ValueError, match="timeout"):
        registry.ask("service", "ok", timeout=timeout)


def test_time_left_inside_run_is_positive_and_within_the_timeout(
    registry: CommandRegistry, probe: Probe
) -> None:
    configure(registry, "service", timeout=0.2)

    left = registry.ask("service", "time_left")

    assert 0 < left <= 0.2


def test_cancelled_becomes_true_once_the_call_has_timed_out(
    registry: CommandRegistry, probe: Probe
) -> None:
    configure(registry, "service", timeout=0.05)

    reply = registry.ask_reply("service", "watch_cancel")

    assert reply.events == ("TIMEOUT", "FALLBACK_MISSING")
    assert probe.seen["cancelled_before"] is False
    assert probe.seen["instance"].cancelled is True  # run is still hung here
    probe.release.set()
    assert probe.finished.wait(WAIT)
    assert probe.seen["cancelled_after"] is True


def test_cancelled_stays_false_for_a_call_that_was_not_timed_out(
    registry: CommandRegistry, probe: Probe
) -> None:
    configure(registry, "service", timeout=1.0)
    future = registry.ask("service", "watch_cancel", block=False)
    probe.wait_entered()
    probe.release.set()

    assert future.get(timeout=WAIT) == "released"
    assert probe.seen["cancelled_before"] is False
    assert probe.seen["cancelled_after"] is False


# -- BadRequest -----------------------------------------------------------------------------------


def test_a_bad_request_reaches_the_caller_as_is_without_fallback_or_counting(
    registry: CommandRegistry, probe: Probe
) -> None:
    with pytest.raises(BadRequest) as caught:
        registry.ask("service-fb", "bad")

    assert caught.value is probe.seen["bad_request"]
    assert probe.fallbacks == 0
    health = registry.health("service-fb")
    assert (health.requests, health.errors) == (0, 0)


def test_bad_requests_never_open_the_circuit(registry: CommandRegistry, probe: Probe) -> None:
    configure(registry, "service", request_volume_threshold=1)

    for _ in range(5):
        with pytest.raises(BadRequest):
            registry.ask("service", "bad")

    assert registry.health("service").state == "closed"


def test_a_bad_request_neither_opens_nor_closes_a_half_open_circuit(
    registry: CommandRegistry, probe: Probe, clock: FakeClock
) -> None:
    configure(registry, "service", request_volume_threshold=2, sleep_window=5.0)
    trip(registry, "service", 2)
    clock.advance(5.001)

    with pytest.raises(BadRequest):
        registry.ask("service", "bad")  # admitted as the half-open probe

    assert registry.health("service").state == "half_open"
    assert registry.ask("service", "ok") == "ok"  # the next probe is admitted and closes it
    assert registry.health("service").state == "closed"


# -- configure ------------------------------------------------------------------------------------


def test_configure_on_a_live_key_changes_its_timeout(
    registry: CommandRegistry, probe: Probe
) -> None:
    configure(registry, "service", timeout=5.0)
    assert registry.ask("service", "ok") == "ok"

    configure(registry, "service", timeout=0.05)

    reply = registry.ask_reply("service", "hang")
    assert reply.events == ("TIMEOUT", "FALLBACK_MISSING")
    assert reply.latency < 1.0


def test_configure_on_a_live_key_changes_its_bulkhead(
    registry: CommandRegistry, probe: Probe
) -> None:
    configure(registry, "service", max_concurrent_requests=1, timeout=1.0)
    first = registry.ask("service", "hang", block=False)
    probe.wait_entered()
    with pytest.raises(MaxConcurrencyError):
        registry.ask("service", "ok")

    configure(registry, "service", max_concurrent_requests=2, timeout=1.0)

    second = registry.ask("service", "hang", block=False)
    probe.wait_entered()
    assert registry.health("service").in_flight == 2
    with pytest.raises(MaxConcurrencyError):
        registry.ask("service", "ok")
    probe.release.set()
    assert [first.get(timeout=WAIT), second.get(timeout=WAIT)] == ["released", "released"]


def test_configure_shrinking_the_bulkhead_retires_surplus_workers(
    registry: CommandRegistry, probe: Probe, eventually: Any
) -> None:
    configure(registry, "service", max_concurrent_requests=3, timeout=1.0)
    futures = [registry.ask("service", "hang", block=False) for _ in range(3)]
    probe.wait_entered(3)
    assert registry.health("service").workers == 3

    configure(registry, "service", max_concurrent_requests=1, timeout=1.0)
    probe.release.set()

    assert [future.get(timeout=WAIT) for future in futures] == ["released"] * 3
    eventually(lambda: registry.health("service").workers == 1, what="surplus workers retired")
    assert [registry.ask("service", "ok") for _ in range(5)] == ["ok"] * 5
    assert registry.health("service").workers == 1


def test_configure_before_first_use_overrides_the_class_config(
    registry: CommandRegistry, probe: Probe
) -> None:
    configure(registry, "service", force_open=True)

    with pytest.raises(CircuitOpenError):
        registry.ask("service", "ok")


def test_queue_size_lets_calls_wait_for_a_worker_instead_of_being_rejected(
    registry: CommandRegistry, probe: Probe
) -> None:
    configure(registry, "service", max_concurrent_requests=1, queue_size=1, timeout=1.0)
    running = registry.ask("service", "hang", block=False)
    probe.wait_entered()

    waiting = registry.ask("service", "ok", block=False)
    with pytest.raises(MaxConcurrencyError):
        registry.ask("service", "ok")

    assert registry.health("service").in_flight == 2
    probe.release.set()
    assert running.get(timeout=WAIT) == "released"
    assert waiting.get(timeout=WAIT) == "ok"


# -- health ---------------------------------------------------------------------------------------


def test_health_counts_requests_errors_and_calls_in_flight(
    registry: CommandRegistry, probe: Probe
) -> None:
    for payload in ("ok", "ok", "ok", "fail"):
        registry.ask_reply("service", payload)

    health = registry.health("service")
    assert health.key == "service"
    assert health.state == "closed"
    assert (health.requests, health.errors, health.in_flight) == (4, 1, 0)
    assert health.error_percent == pytest.approx(25.0)

    configure(registry, "service", timeout=1.0)
    future = registry.ask("service", "hang", block=False)
    probe.wait_entered()
    assert registry.health("service").in_flight == 1
    probe.release.set()
    assert future.get(timeout=WAIT) == "released"
    assert registry.health("service").in_flight == 0


def test_short_circuits_count_neither_as_requests_nor_as_errors(
    registry: CommandRegistry, probe: Probe
) -> None:
    configure(registry, "service", force_open=True)
    for _ in range(3):
        registry.ask_reply("service", "ok")

    health = registry.health("service")
    assert (health.requests, health.errors) == (0, 0)


def test_health_of_a_registered_key_never_used_starts_no_actor(
    registry: CommandRegistry, probe: Probe
) -> None:
    actors_before = len(pykka.ActorRegistry.get_all())

    health = registry.health("service")

    assert health.state == "closed"
    assert (health.requests, health.errors, health.in_flight, health.workers) == (0, 0, 0, 0)
    assert len(pykka.ActorRegistry.get_all()) == actors_before


def test_a_thousand_registered_keys_cost_no_threads_until_used(registry: CommandRegistry) -> None:
    threads_before = threading.active_count()

    for n in range(1000):
        registry.register(type(f"Lazy{n}", (Echo,), {"key": f"lazy-{n}"}))

    assert threading.active_count() == threads_before
    assert registry.health("lazy-7").workers == 0
    assert registry.ask("lazy-7", 1) == ("echo", 1)
    assert registry.health("lazy-7").workers == 1


def test_workers_start_lazily_up_to_the_bulkhead_and_never_beyond(
    registry: CommandRegistry, probe: Probe
) -> None:
    configure(registry, "service", max_concurrent_requests=3, timeout=1.0)
    assert registry.health("service").workers == 0

    assert registry.ask("service", "ok") == "ok"
    assert registry.health("service").workers == 1

    futures = [registry.ask("service", "hang", block=False) for _ in range(3)]
    probe.wait_entered(3)
    assert registry.health("service").workers == 3
    with pytest.raises(MaxConcurrencyError):
        registry.ask("service", "ok")
    assert registry.health("service").workers == 3
    probe.release.set()
    assert [future.get(timeout=WAIT) for future in futures] == ["released"] * 3

    # Six callers keep the three slots busy: a call admitted while a finished worker has not
    # parked yet must wait for it, not start a fourth.
    barrier = threading.Barrier(6)
    most: list[int] = []

    def caller() -> None:
        barrier.wait(WAIT)
        for _ in range(100):
            registry.ask_reply("service", "ok")
            most.append(registry.health("service").workers)

    callers = [threading.Thread(target=caller) for _ in range(6)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(WAIT)
    assert len(most) == 600
    assert max(most) == 3
    assert registry.health("service").workers == 3


# -- transitions ----------------------------------------------------------------------------------


def test_a_subscribed_listener_sees_every_transition_in_order(
    registry: CommandRegistry, probe: Probe, clock: FakeClock
) -> None:
    seen: list[tuple[str, str, str]] = []

    def listener(key: str, moved: Transition) -> None:
        seen.append((key, moved.from_state, moved.to_state))

    registry.subscribe(listener)
    configure(registry, "service", request_volume_threshold=2, sleep_window=5.0)

    trip(registry, "service", 2)
    clock.advance(5.001)
    assert registry.ask("service", "ok") == "ok"

    assert seen == [
        ("service", "closed", "open"),
        ("service", "open", "half_open"),
        ("service", "half_open", "closed"),
    ]


def test_a_probe_failure_re_opens_the_circuit(
    registry: CommandRegistry, probe: Probe, clock: FakeClock
) -> None:
    configure(registry, "service", request_volume_threshold=2, sleep_window=5.0)
    trip(registry, "service", 2)
    clock.advance(5.001)

    with pytest.raises(RuntimeError):
        registry.ask("service", "fail")

    assert registry.health("service").state == "open"
    with pytest.raises(CircuitOpenError):
        registry.ask("service", "ok")
    clock.advance(5.001)
    assert registry.ask("service", "ok") == "ok"
    assert registry.health("service").state == "closed"


def test_a_failing_listener_does_not_break_the_call(
    registry: CommandRegistry, probe: Probe
) -> None:
    def listener(key: str, moved: Transition) -> None:
        raise RuntimeError("listener boom")

    registry.subscribe(listener)
    configure(registry, "service-fb", request_volume_threshold=1)

    assert registry.ask("service-fb", "fail") == "fallback: RuntimeError"
    assert registry.health("service-fb").state == "open"


# -- isolation --------------------------------------------------------------------------------


def test_run_never_executes_on_the_callers_thread(registry: CommandRegistry, probe: Probe) -> None:
    caller = threading.get_ident()

    assert registry.ask("service", "thread") != caller
    assert registry.ask("service", "thread", block=False).get(timeout=WAIT) != caller
    assert registry.ask_reply("service", "thread").value != caller


def test_a_port_cached_across_a_reset_is_routed_afresh(registry: CommandRegistry) -> None:
    registry.register(Echo)
    assert registry.ask("echo", 1) == ("echo", 1)
    stale = registry._routes["echo"]  # what a caller racing with reset() could leave cached

    registry.reset()
    registry.register(Echo)
    registry._routes["echo"] = stale

    assert registry.ask_reply("echo", 2).events == ("SUCCESS",)
    assert registry._routes["echo"] is not stale


def test_set_default_makes_class_level_calls_act_on_the_given_registry() -> None:
    class Echo(Command):
        key = "echo-for-set-default"

        def run(self, payload: object) -> object:
            return payload

    mine = CommandRegistry()
    previous = CommandRegistry.set_default(mine)
    try:
        CommandRegistry.register(Echo)
        assert CommandRegistry.default() is mine
        assert CommandRegistry.ask("echo-for-set-default", 7) == 7
        assert mine.health("echo-for-set-default").requests == 1
    finally:
        restored = CommandRegistry.set_default(previous) if previous else None
        if previous is None:
            CommandRegistry._default = None
        assert restored in (mine, None)
        mine.shutdown()


def test_set_default_refuses_what_is_not_a_registry() -> None:
    with pytest.raises(TypeError, match="set_default\\(\\) takes a CommandRegistry, got 'x'"):
        CommandRegistry.set_default("x")  # type: ignore[arg-type]
