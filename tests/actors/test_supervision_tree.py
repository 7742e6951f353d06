"""The supervision tree: workers replaced, stuck workers abandoned, supervisors restarted.

Deaths are injected with ``actors.testing`` (a crash takes pykka's failure path, a stop its clean
path). Breakers run on the fake clock; deadlines, grace periods and backoffs are real but short,
and every wait is on an event or a bounded poll (``eventually``).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pytest
from probe import WAIT, Probe

from actors import (
    Command,
    CommandConfig,
    CommandError,
    CommandRegistry,
    EventType,
)
from actors.gate import Gate
from actors.testing import kill_supervisor, kill_worker, supervisor_of, workers_of
from supervision import FakeClock, RestartStrategy, SupervisionPolicy

Eventually = Callable[..., None]

_instances = itertools.count()


class Dependency(Command):
    """Does what the payload says; counts its instances (a replaced worker builds a new one)."""

    key = "dependency"
    config = CommandConfig(
        timeout=WAIT,
        max_concurrent_requests=2,
        supervision=SupervisionPolicy(min_backoff=0.01, max_backoff=0.05),
    )

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.instance = next(_instances)

    def run(self, payload: Any) -> Any:
        self.probe.ran()
        if payload == "hang":
            self.probe.entered.release()
            self.probe.release.wait(WAIT)
            self.probe.finished.set()
            return "late"
        if isinstance(payload, BaseException):
            raise payload
        return ("ok", self.instance)

    def fallback(self, payload: Any, error: BaseException) -> Any:
        self.probe.fell_back(error)
        return ("fallback", getattr(error, "reason", type(error).__name__))


@pytest.fixture
def probe(registry: CommandRegistry) -> Iterator[Probe]:
    probe = Probe()
    registry.register(Dependency, probe)
    yield probe
    probe.release.set()


def configure(registry: CommandRegistry, **policy: Any) -> None:
    config = Dependency.config
    registry.configure(
        Dependency.key, config.replace(supervision=config.supervision.replace(**policy))
    )


def worker_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("WorkerActor-")}


def library_threads() -> set[threading.Thread]:
    names = ("hystrix-watchdog", "hystrix-runner")
    return {t for t in threading.enumerate() if t.name.startswith(names)}


# -- worker deaths -----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["crash", "stop"])
def test_a_worker_that_dies_while_idle_is_replaced(
    registry: CommandRegistry,
    probe: Probe,
    eventually: Eventually,
    captured_logs: list[dict[str, Any]],
    how: Any,
) -> None:
    registry.ask(Dependency.key, "ok")
    [worker] = workers_of(registry, Dependency.key)

    assert kill_worker(registry, Dependency.key, how=how)

    eventually(lambda: not worker.is_alive(), what="the worker died")
    eventually(
        lambda: [w for w in workers_of(registry, Dependency.key) if w != worker] != [],
        what="a replacement started",
    )
    assert registry.health(Dependency.key).workers == 1
    assert registry.ask(Dependency.key, "ok")[0] == "ok"
    restarting = [e for e in captured_logs if e["event"] == "worker.restarting"]
    assert [e["directive"] for e in restarting] == ["restart"]


def test_a_base_exception_from_run_is_answered_with_the_fallback_and_the_worker_replaced(
    registry: CommandRegistry, probe: Probe, eventually: Eventually
) -> None:
    first = registry.ask(Dependency.key, "ok")

    reply = registry.ask_reply(Dependency.key, KeyboardInterrupt())

    assert reply.events == (EventType.FAILURE, EventType.FALLBACK_SUCCESS)
    assert reply.value == ("fallback", "KeyboardInterrupt")
    # the next call runs on a fresh Command instance: the broken one died with its worker
    eventually(lambda: registry.ask(Dependency.key, "ok") != first, what="a fresh instance")
    assert registry.health(Dependency.key).in_flight == 0


def test_an_exception_escaping_the_workers_own_code_answers_the_call_and_replaces_it(
    registry: CommandRegistry,
    probe: Probe,
    eventually: Eventually,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry.ask(Dependency.key, "ok")
    [worker] = workers_of(registry, Dependency.key)
    real_succeed = Gate.succeed  # the success path's bookkeeping, on the worker
    broken = threading.Event()

    def succeed_once_broken(self: Gate, *args: Any) -> Any:
        if not broken.is_set():
            broken.set()
            raise RuntimeError("bug in the worker")
        return real_succeed(self, *args)

    monkeypatch.setattr(Gate, "succeed", succeed_once_broken)

    reply = registry.ask_reply(Dependency.key, "ok", block=False).get(timeout=WAIT)

    assert reply.events == (EventType.FAILURE, EventType.FALLBACK_SUCCESS)
    assert reply.error is not None and getattr(reply.error, "reason", None) == "internal error"
    eventually(lambda: not worker.is_alive(), what="the broken worker died")
    assert registry.ask(Dependency.key, "ok")[0] == "ok"
    assert registry.health(Dependency.key).in_flight == 0


def test_one_for_all_replaces_every_worker_when_one_dies(
    registry: CommandRegistry, probe: Probe, eventually: Eventually
) -> None:
    configure(registry, strategy=RestartStrategy.ONE_FOR_ALL)
    hung = registry.ask(Dependency.key, "hang", block=False)
    probe.wait_entered()
    registry.ask(Dependency.key, "ok")  # a second worker, now parked
    before = set(workers_of(registry, Dependency.key))
    assert len(before) == 2

    assert kill_worker(registry, Dependency.key)  # the idle one

    probe.release.set()
    assert hung.get(timeout=WAIT) == "late"
    # the busy one retires once its call is over; only new workers remain
    eventually(
        lambda: not before & set(workers_of(registry, Dependency.key)),
        what="every old worker gone",
    )
    assert registry.ask(Dependency.key, "ok")[0] == "ok"


def test_too_many_worker_deaths_escalate_and_the_registry_restarts_the_supervisor(
    registry: CommandRegistry,
    probe: Probe,
    eventually: Eventually,
    captured_logs: list[dict[str, Any]],
) -> None:
    configure(registry, max_restarts=1, restart_period=60.0)
    registry.ask(Dependency.key, "ok")
    first = supervisor_of(registry, Dependency.key)

    for _ in range(2):
        [worker] = workers_of(registry, Dependency.key) or [None]
        assert worker is not None
        kill_worker(registry, Dependency.key)
        eventually(lambda w=worker: not w.is_alive(), what="the worker died")
        eventually(lambda: bool(workers_of(registry, Dependency.key)) or not first.is_alive())

    eventually(lambda: not first.is_alive(), what="the supervisor gave up")
    eventually(
        lambda: (
            registry.health(Dependency.key).status == "up"
            and supervisor_of(registry, Dependency.key) not in (None, first)
        ),
        what="a new supervisor",
    )
    assert registry.ask(Dependency.key, "ok")[0] == "ok"
    events = [e["event"] for e in captured_logs]
    assert events.index("supervisor.escalated") < events.index("supervisor.restarting")
    assert events.index("supervisor.restarting") < events.index("supervisor.restarted")


# -- supervisor deaths -------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["crash", "stop"])
def test_a_dead_supervisors_calls_are_answered_and_asks_meanwhile_are_answered_at_once(
    registry: CommandRegistry, probe: Probe, eventually: Eventually, how: Any
) -> None:
    configure(registry, min_backoff=30.0, max_backoff=30.0)  # stays "restarting"
    running = registry.ask_reply(Dependency.key, "hang", block=False)
    probe.wait_entered()

    assert kill_supervisor(registry, Dependency.key, how=how)

    reply = running.get(timeout=WAIT)  # answered without waiting for the hung run
    assert reply.value == ("fallback", "unavailable")
    eventually(lambda: registry.health(Dependency.key).status == "restarting")
    meanwhile = registry.ask_reply(Dependency.key, "ok")
    assert meanwhile.value == ("fallback", "unavailable")
    assert probe.runs == 1  # nothing ran while the supervisor was down
    probe.release.set()
    eventually(lambda: registry.health(Dependency.key).in_flight == 0, what="slot back")


def test_a_restarted_supervisor_keeps_the_circuit_and_serves_again(
    registry: CommandRegistry, probe: Probe, clock: FakeClock, eventually: Eventually
) -> None:
    registry.ask(Dependency.key, "ok")
    registry.configure(Dependency.key, Dependency.config.replace(force_open=True))
    assert registry.health(Dependency.key).state == "open"
    registry.configure(Dependency.key, Dependency.config)

    # trip it for real: the breaker's state must survive the restart
    tripping = Dependency.config.replace(request_volume_threshold=1, error_percent_threshold=1)
    registry.configure(Dependency.key, tripping)
    registry.ask_reply(Dependency.key, RuntimeError("down"))
    assert registry.health(Dependency.key).state == "open"

    first = supervisor_of(registry, Dependency.key)
    assert kill_supervisor(registry, Dependency.key)

    eventually(
        lambda: (
            supervisor_of(registry, Dependency.key) not in (None, first)
            and registry.health(Dependency.key).status == "up"
        ),
        what="restarted",
    )
    assert registry.health(Dependency.key).state == "open"
    clock.advance(tripping.sleep_window)
    probe_reply = registry.ask_reply(Dependency.key, "ok")
    assert probe_reply.value[0] == "ok", probe_reply  # the probe closes it
    assert registry.health(Dependency.key).state == "closed"


def test_past_the_registrys_intensity_the_key_stays_down_until_restarted(
    registry: CommandRegistry,
    probe: Probe,
    eventually: Eventually,
    captured_logs: list[dict[str, Any]],
) -> None:
    configure(registry, max_supervisor_restarts=0)
    registry.ask(Dependency.key, "ok")

    assert kill_supervisor(registry, Dependency.key)

    eventually(lambda: registry.health(Dependency.key).status == "down", what="down")
    health = registry.health(Dependency.key)
    assert health.state == "open"
    [down] = [e for e in captured_logs if e["event"] == "command.down"]
    assert down["log_level"] == "error"
    reply = registry.ask_reply(Dependency.key, "ok")
    assert isinstance(reply.error, CommandError)
    assert reply.error.reason == "unavailable"
    assert reply.value == ("fallback", "unavailable")

    assert registry.restart(Dependency.key) == "up"
    assert registry.ask(Dependency.key, "ok")[0] == "ok"


# -- zombies -----------------------------------------------------------------------------------


class Stuck(Command):
    """Hangs until released, far past its short timeout."""

    key = "stuck"
    config = CommandConfig(
        timeout=0.05,
        max_concurrent_requests=2,
        request_volume_threshold=1000,
        supervision=SupervisionPolicy(zombie_grace=0.05, max_zombies=1),
    )

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def run(self, payload: Any) -> Any:
        if payload == "hang":
            self.probe.entered.release()
            self.probe.release.wait(WAIT)
            return "late"
        return "ok"

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return ("fallback", getattr(error, "reason", type(error).__name__))


@pytest.fixture
def stuck(registry: CommandRegistry) -> Iterator[Probe]:
    probe = Probe()
    registry.register(Stuck, probe)
    yield probe
    probe.release.set()


def test_a_stuck_worker_is_abandoned_after_its_grace_and_replaced_up_to_the_cap(
    registry: CommandRegistry,
    stuck: Probe,
    eventually: Eventually,
    captured_logs: list[dict[str, Any]],
) -> None:
    replies = [registry.ask_reply(Stuck.key, "hang") for _ in range(2)]
    assert [r.value for r in replies] == [("fallback", "timeout")] * 2
    stuck.wait_entered(2)

    # one is abandoned (the cap is 1) and replaced; the other keeps its slot
    eventually(lambda: registry.health(Stuck.key).zombies == 1, what="one zombie")
    health = registry.health(Stuck.key)
    assert health.in_flight == 1
    eventually(lambda: registry.health(Stuck.key).workers == 2, what="a replacement")
    assert registry.ask(Stuck.key, "ok") == "ok"  # served by the replacement
    abandoned = [e for e in captured_logs if e["event"] == "worker.abandoned"]
    assert len(abandoned) == 1
    assert abandoned[0]["log_level"] == "warning"

    threads = worker_threads()
    stuck.release.set()
    eventually(lambda: registry.health(Stuck.key).zombies == 0, what="the zombie returned")
    eventually(lambda: registry.health(Stuck.key).in_flight == 0, what="slots back")
    eventually(lambda: len(worker_threads()) < len(threads), what="the zombie's thread ended")


def test_past_the_zombie_cap_the_key_sheds_load_instead_of_leaking_threads(
    registry: CommandRegistry, stuck: Probe, eventually: Eventually
) -> None:
    registry.configure(
        Stuck.key,
        Stuck.config.replace(
            max_concurrent_requests=1, supervision=Stuck.config.supervision.replace(max_zombies=0)
        ),
    )
    assert registry.ask_reply(Stuck.key, "hang").value == ("fallback", "timeout")
    stuck.wait_entered()
    threads = len(worker_threads())

    for _ in range(5):
        reply = registry.ask_reply(Stuck.key, "ok")
        assert reply.events[0] == EventType.THREAD_POOL_REJECTED

    assert registry.health(Stuck.key).zombies == 0
    assert len(worker_threads()) == threads


# -- shutdown ----------------------------------------------------------------------------------


def test_shutdown_lets_calls_finish_within_its_timeout_answers_the_rest_and_reports_zombies(
    clock: FakeClock, eventually: Eventually
) -> None:
    registry = CommandRegistry(clock=clock)
    probe = Probe()
    registry.register(Dependency, probe)
    quick = Probe()

    class Quick(Dependency):
        key = "quick"

    registry.register(Quick, quick)
    before = worker_threads()
    library_before = library_threads()
    hung = registry.ask_reply(Dependency.key, "hang", block=False)
    probe.wait_entered()
    quick_hang = registry.ask(Quick.key, "hang", block=False)
    quick.wait_entered()
    threading.Timer(0.05, quick.release.set).start()  # finishes within the shutdown timeout

    report = registry.shutdown(timeout=1.0)

    assert quick_hang.get(timeout=WAIT) == "late"  # finished, not cut short
    reply = hung.get(timeout=WAIT)
    assert isinstance(reply.error, CommandError)
    assert reply.error.reason == "shutdown"
    assert (report.drained, report.answered, report.zombies) == (False, 1, 1)
    with pytest.raises(CommandError) as refused:
        registry.ask(Dependency.key, "ok")
    assert refused.value.reason == "shutdown"
    assert library_threads() <= library_before  # this registry's timer and runners ended
    assert len(worker_threads() - before) == 1  # only the reported zombie
    probe.release.set()
    eventually(lambda: len(worker_threads() - before) == 0, what="the zombie ended")
    assert registry.shutdown() is report


def test_a_registry_whose_root_actor_was_stopped_from_outside_is_rebuilt_by_reset(
    registry: CommandRegistry, probe: Probe
) -> None:
    registry.ask(Dependency.key, "ok")
    pykka.ActorRegistry.stop_all()  # what some other code in the process might do
    if CommandRegistry._default is not None:  # it stopped the default registry's actors too
        CommandRegistry._default.reset()

    with pytest.raises(CommandError) as refused:  # refused at once, never hung
        registry.ask(Dependency.key, "ok")
    assert refused.value.reason == "unavailable"
    assert "reset()" in str(refused.value)

    registry.reset()
    registry.register(Dependency, probe)
    assert registry.ask(Dependency.key, "ok")[0] == "ok"


# -- reconfiguration ---------------------------------------------------------------------------


def test_configuring_a_live_key_keeps_its_open_circuit_its_counts_and_its_calls_in_flight(
    registry: CommandRegistry, probe: Probe, clock: FakeClock
) -> None:
    tripping = Dependency.config.replace(
        max_concurrent_requests=3, request_volume_threshold=1, error_percent_threshold=1
    )
    registry.configure(Dependency.key, tripping)
    hung = registry.ask(Dependency.key, "hang", block=False)
    probe.wait_entered()
    registry.ask_reply(Dependency.key, RuntimeError("down"))
    before = registry.health(Dependency.key)
    assert (before.state, before.in_flight, before.requests, before.errors) == ("open", 1, 1, 1)

    registry.configure(Dependency.key, tripping.replace(max_concurrent_requests=1, timeout=2.0))

    after = registry.health(Dependency.key)
    assert (after.state, after.in_flight, after.requests, after.errors) == ("open", 1, 1, 1)
    clock.advance(tripping.sleep_window)
    # half-open now, but the one slot is still held by the hung call: the probe is rejected
    reply = registry.ask_reply(Dependency.key, "ok")
    assert reply.events[0] == EventType.THREAD_POOL_REJECTED
    probe.release.set()
    assert hung.get(timeout=WAIT) == "late"
    assert registry.health(Dependency.key).in_flight == 0
