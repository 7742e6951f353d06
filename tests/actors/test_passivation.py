"""Passivation: a key idle for ``passivate_after`` seconds stops its workers, its supervisor and
its event loop's thread, keeps its gate (breaker, windows, counts, config), and is started again
by its next call, which is never lost, refused or answered "unavailable" because of it.

Breakers run on the fake clock; ``passivate_after`` is real time (the registry's timer), kept
short, and every wait is on an event or a bounded poll (``eventually``).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from probe import WAIT, Probe

from actors import (
    Command,
    CommandConfig,
    CommandRegistry,
    EventType,
    MaxConcurrencyError,
)
from actors.pool import Pool
from actors.port import CommandPort
from actors.supervisor import CommandActor
from actors.testing import kill_supervisor, supervisor_of, workers_of
from supervision import FakeClock, SupervisionPolicy

Eventually = Callable[..., None]

#: Short enough for a test, long enough that a key in use is never idle that long.
AFTER = 0.05


def policy(after: float | None = AFTER, **changes: Any) -> SupervisionPolicy:
    return SupervisionPolicy(
        **{"min_backoff": 0.01, "max_backoff": 0.05, **changes, "passivate_after": after}
    )


class Dependency(Command):
    """Steered by the payload: "fail" raises, "hang" waits for ``probe.release``, "thread"
    answers the thread it ran on, anything else is echoed."""

    key = "dependency"
    config = CommandConfig(
        timeout=WAIT, max_concurrent_requests=4, request_volume_threshold=4, supervision=policy()
    )

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def run(self, payload: Any) -> Any:
        self.probe.ran()
        if payload == "fail":
            raise ConnectionError("down")
        if payload == "hang":
            self.probe.entered.release()
            self.probe.release.wait(WAIT)
            return "released"
        if payload == "thread":
            return threading.current_thread()
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return "fallback"


class AsyncDependency(Command):
    key = "async"
    config = CommandConfig(timeout=WAIT, supervision=policy())

    async def run(self, payload: Any) -> Any:
        return threading.current_thread()


class Inline(Command):
    """Semaphore isolation: ``run`` on the caller's thread (its coroutine on the key's loop
    when asked with a blocking ask)."""

    key = "inline"
    config = CommandConfig(timeout=WAIT, isolation="semaphore", supervision=policy())

    def run(self, payload: Any) -> Any:
        if payload == "async":
            return self._async(payload)
        return payload

    async def _async(self, payload: Any) -> Any:
        return threading.current_thread()


@pytest.fixture
def probe(registry: CommandRegistry) -> Iterator[Probe]:
    probe = Probe()
    registry.register(Dependency, probe)
    yield probe
    probe.release.set()


def passivated(registry: CommandRegistry, key: str) -> Callable[[], bool]:
    """True once the key has no supervisor and no worker left."""

    def check() -> bool:
        return supervisor_of(registry, key) is None and not workers_of(registry, key)

    return check


def wait_past(registry: CommandRegistry, seconds: float) -> None:
    """Wait until the registry's timer has run its jobs due within ``seconds`` (the idle checks
    of a key that must not passivate)."""
    done = threading.Event()
    registry._watchdog.call_at(time.monotonic() + seconds, done.set)
    assert done.wait(WAIT)


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def configure(registry: CommandRegistry, **changes: Any) -> None:
    registry.configure(Dependency.key, Dependency.config.replace(**changes))


# -- an idle key passivates, keeping its gate ---------------------------------------------------


def test_an_idle_key_stops_its_workers_and_supervisor_and_keeps_its_gate(
    registry: CommandRegistry, probe: Probe, eventually: Eventually
) -> None:
    assert registry.ask(Dependency.key, "ok") == "ok"
    assert registry.ask(Dependency.key, "fail") == "fallback"
    supervisor = supervisor_of(registry, Dependency.key)
    [worker] = workers_of(registry, Dependency.key)
    before = registry.metrics(Dependency.key)

    eventually(passivated(registry, Dependency.key), WAIT, "the key passivated")

    assert supervisor is not None and not worker.is_alive()
    eventually(lambda: not supervisor.is_alive(), WAIT, "the supervisor stopped")
    health = registry.health(Dependency.key)
    assert (health.workers, health.in_flight, health.status) == (0, 0, "up")
    assert (health.requests, health.errors) == (2, 1)
    after = registry.metrics(Dependency.key)
    assert after.totals == before.totals
    assert after.counts == before.counts
    assert after.latency_execute.count == before.latency_execute.count == 2
    assert after.pool.pool_size == 0 and after.config == before.config


def test_its_next_call_starts_it_again_on_a_new_supervisor_and_worker(
    registry: CommandRegistry, probe: Probe, eventually: Eventually
) -> None:
    first_thread = registry.ask(Dependency.key, "thread")
    first = supervisor_of(registry, Dependency.key)
    eventually(passivated(registry, Dependency.key), WAIT, "the key passivated")
    eventually(lambda: not first_thread.is_alive(), WAIT, "the worker's thread ended")
    configure(registry, supervision=policy(60.0))  # awake for the assertions below

    second_thread = registry.ask(Dependency.key, "thread")

    assert second_thread is not first_thread and second_thread.is_alive()
    second = supervisor_of(registry, Dependency.key)
    assert second is not None and second is not first and second.is_alive()
    health = registry.health(Dependency.key)
    assert (health.workers, health.requests, health.status) == (1, 2, "up")
    assert registry.metrics(Dependency.key).totals[EventType.SUCCESS] == 2


def test_passivation_and_reactivation_are_logged_at_debug_and_are_no_crash(
    registry: CommandRegistry,
    probe: Probe,
    eventually: Eventually,
    captured_logs: list[dict[str, Any]],
) -> None:
    for _ in range(5):  # more than max_supervisor_restarts: passivation is not a restart
        assert registry.ask(Dependency.key, "ok") == "ok"
        eventually(passivated(registry, Dependency.key), WAIT, "the key passivated")

    assert registry.ask(Dependency.key, "ok") == "ok"
    passivations = events(captured_logs, "command.passivated")
    reactivations = events(captured_logs, "command.reactivated")
    assert len(passivations) == 5 and len(reactivations) == 5
    assert {entry["log_level"] for entry in passivations + reactivations} == {"debug"}
    assert all(entry["command"] == Dependency.key for entry in passivations + reactivations)
    assert all(entry["idle_ms"] >= AFTER * 1000 for entry in passivations)
    for quiet in ("supervisor.stopped", "supervisor.restarting", "supervisor.died"):
        assert not events(captured_logs, quiet), quiet
    assert not events(captured_logs, "worker.stopped")
    assert registry.health(Dependency.key).status == "up"


def test_idle_threads_are_a_fixed_handful_whatever_the_number_of_keys(
    registry: CommandRegistry, eventually: Eventually
) -> None:
    before = set(threading.enumerate())
    keys = [f"key-{n}" for n in range(40)]
    for key in keys:
        registry.register(
            type(f"Key{key}", (Dependency,), {"key": key}),
            Probe(),
        )
        assert registry.ask(key, "ok") == "ok"

    def only_the_timer_is_left() -> bool:
        """The threads started since: the registry's timer and its four runners (more runners
        start for a burst of jobs, and end after an idle second)."""
        names = [thread.name for thread in set(threading.enumerate()) - before]
        timer = [name for name in names if name.startswith(("hystrix-watchdog", "hystrix-runner"))]
        return names == timer and len(timer) <= 5

    eventually(only_the_timer_is_left, WAIT, "only the registry's timer is left")
    assert all(registry.health(key).workers == 0 for key in keys)
    assert registry.ask("key-7", "again") == "again"


def test_a_key_in_use_is_not_passivated_until_its_last_call_ends(
    registry: CommandRegistry, probe: Probe, eventually: Eventually
) -> None:
    held = registry.ask(Dependency.key, "hang", block=False)
    probe.wait_entered()
    supervisor = supervisor_of(registry, Dependency.key)
    assert supervisor is not None

    wait_past(registry, 6 * AFTER)  # idle, it would have passivated long ago

    assert supervisor_of(registry, Dependency.key) is supervisor and supervisor.is_alive()
    assert registry.health(Dependency.key).workers == 1

    probe.release.set()
    assert held.get(timeout=WAIT) == "released"
    eventually(passivated(registry, Dependency.key), WAIT, "passivated once idle")


def test_an_open_circuit_stays_open_and_short_circuits_without_waking_the_key(
    registry: CommandRegistry, probe: Probe, clock: FakeClock, eventually: Eventually
) -> None:
    for _ in range(4):
        registry.ask(Dependency.key, "fail")
    assert registry.health(Dependency.key).state == "open"
    eventually(passivated(registry, Dependency.key), WAIT, "the key passivated")

    reply = registry.ask_reply(Dependency.key, "ok")

    assert reply.events == (EventType.SHORT_CIRCUITED, EventType.FALLBACK_SUCCESS)
    assert supervisor_of(registry, Dependency.key) is None  # answered without a worker
    clock.advance(Dependency.config.sleep_window)
    assert registry.ask_reply(Dependency.key, "ok").events == (EventType.SUCCESS,)
    assert registry.health(Dependency.key).state == "closed"


# -- many callers at the moment the key passivates ---------------------------------------------


def test_callers_racing_the_passivation_are_all_answered_by_run(
    registry: CommandRegistry,
    probe: Probe,
    eventually: Eventually,
    captured_logs: list[dict[str, Any]],
) -> None:
    """Waves of calls: in every other wave the callers arrive between one and two
    ``passivate_after`` after the previous wave ended, as the key passivates (the timer's look,
    the supervisor being stopped, the first caller starting a new one); every call must be
    answered by ``run``."""
    after = 0.004
    configure(registry, max_concurrent_requests=8, supervision=policy(after))
    callers, rounds = 8, 60
    replies: list[Any] = []
    errors: list[BaseException] = []
    wave = threading.Barrier(callers)

    def caller(seed: int) -> None:
        pause = random.Random(seed)
        pacer = threading.Event()  # never set: its wait is this load's think time
        for n in range(rounds):
            wave.wait(WAIT)  # the previous wave has ended: the key is idle from here
            pacer.wait(pause.uniform(after, 2 * after) if n % 2 else pause.uniform(0, after / 2))
            try:
                replies.append(registry.ask_reply(Dependency.key, (seed, n)))
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=caller, args=(seed,)) for seed in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 6)

    assert not errors
    assert len(replies) == callers * rounds
    assert {reply.events for reply in replies} == {(EventType.SUCCESS,)}
    assert sorted(reply.value for reply in replies) == sorted(
        (seed, n) for seed in range(callers) for n in range(rounds)
    )
    assert len(events(captured_logs, "command.passivated")) >= 10, "the key seldom passivated"
    assert registry.health(Dependency.key).status == "up"
    eventually(passivated(registry, Dependency.key), WAIT, "passivated in the end")


def test_callers_arriving_together_start_exactly_one_supervisor(
    registry: CommandRegistry,
    probe: Probe,
    eventually: Eventually,
    captured_logs: list[dict[str, Any]],
) -> None:
    registry.ask(Dependency.key, "ok")
    eventually(passivated(registry, Dependency.key), WAIT, "the key passivated")
    configure(registry, supervision=policy(60.0))  # stays awake once woken
    callers = 4  # = max_concurrent_requests: none rejected
    start = threading.Barrier(callers)
    replies: list[Any] = []

    def caller(n: int) -> None:
        start.wait(WAIT)
        replies.append(registry.ask(Dependency.key, n))

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)

    assert sorted(replies) == list(range(callers))
    assert len(events(captured_logs, "command.reactivated")) == 1
    started = events(captured_logs, "supervisor.started")
    assert len(started) == 2  # the first call's, and the one after passivation


def test_a_call_admitted_as_the_key_passivates_wakes_it_and_skips_the_old_supervisor(
    registry: CommandRegistry,
    probe: Probe,
    eventually: Eventually,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The decision is taken under the lock admission takes: a call admitted right after it
    (before the old supervisor is even told to stop) must start a new supervisor, not reach the
    old one."""
    registry.ask(Dependency.key, "ok")
    old = supervisor_of(registry, Dependency.key)
    real_passivate, real_wake = Pool.passivate, CommandPort.wake
    real_receive = CommandActor.on_receive
    waking = threading.Event()
    received_by: list[Any] = []
    replies: list[Any] = []
    racing = threading.Thread(target=lambda: replies.append(registry.ask(Dependency.key, "race")))

    def passivate(self: Pool, after: float) -> Any:
        verdict = real_passivate(self, after)
        if isinstance(verdict, list) and not racing.is_alive() and not replies:
            racing.start()  # admitted now, while this look still holds the port's lock
            assert waking.wait(WAIT), "the call admitted after the decision did not wake the key"
        return verdict

    def wake(self: CommandPort) -> Any:
        waking.set()
        return real_wake(self)

    def on_receive(self: CommandActor, message: Any) -> None:
        if getattr(message, "payload", None) == "race":
            received_by.append(self.actor_ref)
        real_receive(self, message)

    monkeypatch.setattr(Pool, "passivate", passivate)
    monkeypatch.setattr(CommandPort, "wake", wake)
    monkeypatch.setattr(CommandActor, "on_receive", on_receive)

    eventually(lambda: racing.ident is not None, WAIT, "the key passivated")
    racing.join(WAIT)

    assert replies == ["race"]
    assert len(received_by) == 1 and received_by[0] is not old  # straight to the new one


def test_a_call_while_the_old_supervisor_is_still_stopping_runs_on_a_new_one(
    registry: CommandRegistry,
    probe: Probe,
    eventually: Eventually,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stopping, go_on = threading.Event(), threading.Event()
    real = CommandActor._passivated

    def slow_passivated(self: CommandActor) -> None:
        stopping.set()
        go_on.wait(WAIT)
        real(self)

    monkeypatch.setattr(CommandActor, "_passivated", slow_passivated)
    registry.ask(Dependency.key, "ok")
    old = supervisor_of(registry, Dependency.key)
    eventually(lambda: supervisor_of(registry, Dependency.key) is None, WAIT, "passivated")
    assert stopping.wait(WAIT)
    assert old is not None
    configure(registry, supervision=policy(60.0))  # awake for the assertions below

    assert registry.ask(Dependency.key, "while stopping") == "while stopping"

    new = supervisor_of(registry, Dependency.key)
    assert new is not None and new is not old
    go_on.set()
    eventually(lambda: not old.is_alive(), WAIT, "the old supervisor ended")
    assert registry.ask(Dependency.key, "after") == "after"
    assert new.is_alive()


def test_non_blocking_and_awaited_calls_wake_a_passivated_key_too(
    registry: CommandRegistry, probe: Probe, eventually: Eventually
) -> None:
    registry.ask(Dependency.key, "ok")
    eventually(passivated(registry, Dependency.key), WAIT, "the key passivated")
    assert registry.ask(Dependency.key, "future", block=False).get(timeout=WAIT) == "future"

    eventually(passivated(registry, Dependency.key), WAIT, "passivated again")
    assert asyncio.run(registry.ask_async(Dependency.key, "awaited")) == "awaited"


def test_a_key_that_cannot_start_again_answers_unavailable_and_tries_again_next_call(
    registry: CommandRegistry,
    probe: Probe,
    eventually: Eventually,
    captured_logs: list[dict[str, Any]],
) -> None:
    registry.ask(Dependency.key, "ok")
    eventually(passivated(registry, Dependency.key), WAIT, "the key passivated")
    port = registry._live_port(Dependency.key)
    assert port is not None
    start = port.pool.start

    def no_thread() -> Any:
        raise RuntimeError("can't start new thread")

    port.pool.start = no_thread
    reply = registry.ask_reply(Dependency.key, "ok")

    assert reply.events == (EventType.FALLBACK_SUCCESS,)
    assert getattr(reply.error, "reason", None) == "unavailable"
    [failed] = events(captured_logs, "command.reactivation_failed")
    assert failed["log_level"] == "error" and "can't start new thread" in failed["error"]
    assert registry.health(Dependency.key).in_flight == 0
    port.pool.start = start
    assert registry.ask(Dependency.key, "ok") == "ok"


# -- event loops and semaphore isolation -------------------------------------------------------


def async_threads(key: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"hystrix-async-{key}"]


def test_a_key_with_async_run_stops_its_loop_thread_too(
    registry: CommandRegistry, eventually: Eventually
) -> None:
    registry.register(AsyncDependency)
    loop_thread = registry.ask(AsyncDependency.key)
    assert loop_thread.name == f"hystrix-async-{AsyncDependency.key}"

    eventually(passivated(registry, AsyncDependency.key), WAIT, "the key passivated")
    eventually(lambda: not loop_thread.is_alive(), WAIT, "its loop thread ended")
    assert not async_threads(AsyncDependency.key)

    again = registry.ask(AsyncDependency.key)
    assert again is not loop_thread and again.name == loop_thread.name


def test_a_semaphore_key_never_starts_a_supervisor_and_stops_its_loop_when_idle(
    registry: CommandRegistry, eventually: Eventually
) -> None:
    registry.register(Inline)
    assert registry.ask(Inline.key, "sync") == "sync"
    assert supervisor_of(registry, Inline.key) is None
    assert registry.health(Inline.key).workers == 0

    loop_thread = registry.ask(Inline.key, "async")
    assert loop_thread.name == f"hystrix-async-{Inline.key}"
    eventually(lambda: not loop_thread.is_alive(), WAIT, "its loop thread ended")
    assert not async_threads(Inline.key)
    assert supervisor_of(registry, Inline.key) is None
    again = registry.ask(Inline.key, "async")
    assert again is not loop_thread and again.name == loop_thread.name
    assert registry.health(Inline.key).requests == 3


def test_a_semaphore_key_turned_to_threads_starts_its_supervisor_on_its_next_call(
    registry: CommandRegistry,
) -> None:
    registry.register(Inline)
    assert registry.ask(Inline.key, "sync") == "sync"
    # (and awake long enough for the assertions below)
    registry.configure(
        Inline.key, Inline.config.replace(isolation="thread", supervision=policy(60.0))
    )

    assert registry.ask(Inline.key, "threaded") == "threaded"

    assert supervisor_of(registry, Inline.key) is not None
    assert registry.health(Inline.key).workers == 1


# -- configuration, restarts, reset and shutdown -----------------------------------------------


def test_passivate_after_changed_live_takes_effect(
    registry: CommandRegistry, probe: Probe, eventually: Eventually
) -> None:
    configure(registry, supervision=policy(60.0))
    registry.ask(Dependency.key, "ok")

    configure(registry, supervision=policy(AFTER))

    eventually(passivated(registry, Dependency.key), WAIT, "passivated with the new setting")


def test_none_turns_passivation_off(
    registry: CommandRegistry, probe: Probe, eventually: Eventually
) -> None:
    configure(registry, supervision=policy(None))
    registry.ask(Dependency.key, "ok")
    supervisor = supervisor_of(registry, Dependency.key)

    wait_past(registry, 6 * AFTER)

    assert supervisor_of(registry, Dependency.key) is supervisor
    assert registry.health(Dependency.key).workers == 1


def test_the_pool_size_changed_while_passivated_holds_when_it_wakes(
    registry: CommandRegistry, probe: Probe, eventually: Eventually
) -> None:
    registry.ask(Dependency.key, "ok")
    eventually(passivated(registry, Dependency.key), WAIT, "the key passivated")
    configure(registry, max_concurrent_requests=2, supervision=policy(60.0))

    held = [registry.ask(Dependency.key, "hang", block=False) for _ in range(2)]
    probe.wait_entered(2)

    assert registry.health(Dependency.key).workers == 2
    rejected = registry.ask_reply(Dependency.key, "ok")
    assert rejected.events == (EventType.THREAD_POOL_REJECTED, EventType.FALLBACK_SUCCESS)
    assert isinstance(rejected.error, MaxConcurrencyError)
    probe.release.set()
    assert [future.get(timeout=WAIT) for future in held] == ["released"] * 2


def test_a_passivated_key_has_no_supervisor_to_kill_or_restart(
    registry: CommandRegistry,
    probe: Probe,
    eventually: Eventually,
    captured_logs: list[dict[str, Any]],
) -> None:
    registry.ask(Dependency.key, "ok")
    eventually(passivated(registry, Dependency.key), WAIT, "the key passivated")

    assert kill_supervisor(registry, Dependency.key) is False
    assert registry.restart(Dependency.key) == "up"
    assert supervisor_of(registry, Dependency.key) is None  # restart() woke nothing

    # after its next call, the key is supervised as ever: a killed supervisor is restarted
    configure(registry, supervision=policy(60.0))
    registry.ask(Dependency.key, "ok")
    woken = supervisor_of(registry, Dependency.key)
    assert kill_supervisor(registry, Dependency.key)
    eventually(
        lambda: (
            supervisor_of(registry, Dependency.key) not in (None, woken)
            and registry.health(Dependency.key).status == "up"
        ),
        WAIT,
        "the registry restarted the killed supervisor",
    )
    assert registry.ask(Dependency.key, "ok") == "ok"
    assert len(events(captured_logs, "supervisor.restarting")) == 1


def test_a_key_restarting_after_a_crash_is_revived_first_and_passivated_later(
    registry: CommandRegistry,
    probe: Probe,
    eventually: Eventually,
    captured_logs: list[dict[str, Any]],
) -> None:
    configure(registry, supervision=policy(AFTER, min_backoff=0.3, max_backoff=0.3))
    registry.ask(Dependency.key, "ok")
    crashed = supervisor_of(registry, Dependency.key)
    assert crashed is not None and kill_supervisor(registry, Dependency.key)
    eventually(lambda: registry.health(Dependency.key).status == "restarting", WAIT)

    wait_past(registry, 3 * AFTER)  # idle all along, but its supervisor is the registry's now

    assert registry.health(Dependency.key).status == "restarting"
    eventually(lambda: events(captured_logs, "supervisor.restarted"), WAIT, "revived")
    assert registry.health(Dependency.key).status == "up"
    # idle since before the crash: the revived supervisor soon passivates in turn
    eventually(passivated(registry, Dependency.key), WAIT, "passivated once revived")
    assert not crashed.is_alive()
    assert registry.ask(Dependency.key, "ok") == "ok"


def test_reset_and_shutdown_with_passivated_keys(
    registry: CommandRegistry, probe: Probe, eventually: Eventually
) -> None:
    registry.ask(Dependency.key, "ok")
    eventually(passivated(registry, Dependency.key), WAIT, "the key passivated")

    registry.reset()
    registry.register(Dependency, probe)
    assert registry.ask(Dependency.key, "again") == "again"
    eventually(passivated(registry, Dependency.key), WAIT, "passivated again")

    report = registry.shutdown()
    assert (report.drained, report.answered, report.zombies) == (True, 0, 0)


# -- the fleet ---------------------------------------------------------------------------------


def test_a_passivated_key_takes_part_in_the_fleet(eventually: Eventually) -> None:
    """Its counts reach the fleet and the fleet's circuit reaches it, without waking it."""
    from redis_servers import RedisServer  # noqa: PLC0415 - skips without redis-server

    from actors.fleet import RedisFleet  # noqa: PLC0415 - needs the redis extra

    class Shared(Command):
        key = "shared"
        config = CommandConfig(timeout=WAIT, request_volume_threshold=6, supervision=policy())

        def run(self, payload: Any) -> Any:
            raise ConnectionError("down")

        def fallback(self, payload: Any, error: BaseException) -> Any:
            return "fallback"

    with RedisServer() as server:
        nodes = [
            CommandRegistry(
                fleet=RedisFleet(server.url, namespace="test", node=name, publish_interval=0.2)
            )
            for name in ("one", "two")
        ]
        try:
            for node in nodes:
                node.register(Shared)
            one, two = nodes
            for _ in range(4):  # under one node's threshold of 6
                one.ask(Shared.key)
            eventually(passivated(one, Shared.key), WAIT, "the key passivated on node one")
            for _ in range(4):
                two.ask(Shared.key)

            eventually(lambda: one.health(Shared.key).state == "open", WAIT, "the fleet opened")
            assert supervisor_of(one, Shared.key) is None  # still passivated
        finally:
            for node in nodes:
                node.shutdown()


# -- what an idle key keeps ---------------------------------------------------------------------


def test_the_bucket_rows_idle_keys_share_are_never_written(clock: FakeClock) -> None:
    """An idle key's windows hold no empty rows of their own (one shared row stands for every
    bucket not used yet): what one key records shows in no other key's windows."""
    from supervision.metrics import EXECUTED, CommandStats  # noqa: PLC0415
    from supervision.window import RollingCounts  # noqa: PLC0415

    ok, failing, idle = (CommandStats(10.0, 10, clock) for _ in range(3))
    ok_window, failing_window, idle_window = (RollingCounts(10.0, 10, clock) for _ in range(3))
    for _ in range(25):  # through every bucket, more than once
        ok.replied((EventType.SUCCESS,), 0.002, False)
        ok.ran(0.001)
        ok_window.add(EventType.SUCCESS)
        failing.replied((EventType.FAILURE,), 0.004, True)
        failing_window.add(EventType.FAILURE)
        clock.advance(0.7)

    assert ok.counters.count(EventType.SUCCESS) > 0 and ok.counters.count(EventType.FAILURE) == 0
    assert failing.counters.count(EventType.SUCCESS) == 0
    assert failing.counters.total(EXECUTED) == 0 and failing.execute.snapshot().count == 0
    assert ok_window.health() == (ok_window.count(EventType.SUCCESS), 0)
    assert failing_window.count(EventType.SUCCESS) == 0
    assert idle.counters.count(EventType.SUCCESS) == idle.counters.count(EventType.FAILURE) == 0
    assert idle.total.snapshot().count == idle.execute.snapshot().count == 0
    assert idle_window.snapshot() == dict.fromkeys(EventType, 0)
