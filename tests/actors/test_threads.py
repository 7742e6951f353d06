"""No thread of the library is left unsupervised (issue 12, part 1).

The registry's timer (``hystrix-watchdog``) and its runners (``hystrix-runner-N``), each key's
event loop (``hystrix-async-<key>``) and the fleet's listener are supervised like the workers: a
fault in one job never stops the deadlines and restarts of the other keys; a fault escaping a
thread's own loop is logged and the loop starts again. Every wait is clamped to
``threading.TIMEOUT_MAX``, so no instant, however far away, can overflow one. Faults are
injected with ``monkeypatch`` (in the target thread only, once); every wait is on an event or a
bounded poll (``eventually``).
"""

from __future__ import annotations

import asyncio
import heapq
import json
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from probe import WAIT, Probe, Slow

from actors import Command, CommandConfig, CommandError, CommandRegistry, EventType, Reply
from actors.event_loop import KeyLoop
from actors.log import Log
from actors.testing import kill_supervisor, supervisor_of
from actors.ticket import Ticket
from actors.watchdog import Watchdog
from supervision import NORMAL, SupervisionPolicy

Eventually = Callable[..., None]

#: Exceptions a fault may raise: an ordinary one, and the two a bare ``except Exception`` misses.
FAULTS = [RuntimeError("injected"), SystemExit(3), KeyboardInterrupt()]
FAULT_IDS = ["RuntimeError", "SystemExit", "KeyboardInterrupt"]


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def once_in_thread(prefix: str, real: Callable[..., Any], fault: BaseException) -> Any:
    """``real``, except that its first call from a thread named ``prefix...`` raises ``fault``."""
    fired = threading.Event()

    def patched(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name.startswith(prefix) and not fired.is_set():
            fired.set()
            raise fault
        return real(*args, **kwargs)

    patched.fired = fired  # type: ignore[attr-defined]
    return patched


class Owner:
    """The least a ticket needs from its port: ``expire`` (the watchdog's answer) sets an event."""

    def __init__(self) -> None:
        self.tracked: set[Ticket] = set()
        self.clock = time.monotonic
        self.expired = threading.Event()
        self.expired_tickets: list[Ticket] = []

    def wait(self, ticket: Ticket) -> Reply:  # pragma: no cover - not used here
        raise NotImplementedError

    def sweep(self, error: CommandError) -> int:  # pragma: no cover - not used here
        return 0

    def replied(self, reply: Reply) -> Reply:
        return reply

    def trace_ended(self, trace: Any, reply: Reply) -> None:  # pragma: no cover
        pass

    def expire(self, ticket: Ticket) -> Reply:
        reply = Reply("k", "expired", None, (EventType.TIMEOUT,), 0.0)
        ticket.answer(reply)
        self.expired_tickets.append(ticket)
        self.expired.set()
        return reply


def ticket(owner: Owner, deadline: float, *, block: bool = False) -> Ticket:
    return Ticket(owner, None, time.monotonic(), deadline, NORMAL, block=block)


@pytest.fixture
def watchdog() -> Iterator[Watchdog]:
    watchdog = Watchdog()
    try:
        yield watchdog
    finally:
        watchdog.close()


def soon(delay: float = 0.0) -> float:
    return time.monotonic() + delay


# -- waits are clamped to threading.TIMEOUT_MAX ------------------------------------------------


@pytest.mark.parametrize("far", [1e12, math.inf], ids=["1e12", "inf"])
def test_a_job_scheduled_far_past_timeout_max_leaves_every_other_deadline_alive(
    watchdog: Watchdog, far: float
) -> None:
    owner = Owner()
    first = threading.Event()
    ran = threading.Event()
    watchdog.call_at(time.monotonic() + far, lambda: None)
    watchdog.call_at(soon(), first.set)
    assert first.wait(WAIT)  # the timer has gone back to wait for the far job

    watchdog.call_at(soon(0.05), ran.set)
    watchdog.watch(ticket(owner, soon(0.05)))

    assert ran.wait(WAIT), "a job due soon never ran"
    assert owner.expired.wait(WAIT), "a ticket's deadline never fired"
    assert watchdog.pending() == 1  # only the far one is left
    assert watchdog._thread is not None
    assert watchdog._thread.is_alive()


def test_a_job_due_at_nan_runs_at_once_and_keeps_the_heap_in_order(watchdog: Watchdog) -> None:
    order: list[str] = []
    done = threading.Event()

    watchdog.call_at(math.nan, lambda: order.append("nan"))
    watchdog.call_at(soon(0.01), lambda: (order.append("later"), done.set()))

    assert done.wait(WAIT)
    assert order == ["nan", "later"]


def test_a_ticket_wait_longer_than_timeout_max_does_not_raise() -> None:
    owner = Owner()
    far = ticket(owner, soon(1e12), block=True)
    answered = threading.Event()
    got: list[Reply | None] = []

    def waiter() -> None:
        got.append(far.wait(1e12))
        answered.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    assert far.claim()
    owner.expire(far)

    assert answered.wait(WAIT)
    assert got[0] is not None
    assert got[0].value == "expired"
    assert far.wait(math.inf) is got[0]  # stays answered for any later wait
    thread.join(WAIT)


@pytest.mark.parametrize("timeout", [-1.0, 0.0, math.nan, -math.inf])
def test_a_ticket_wait_of_no_time_returns_none_at_once(timeout: float) -> None:
    assert ticket(Owner(), soon(1.0), block=True).wait(timeout) is None


def test_a_blocking_ask_with_a_deadline_far_away_times_out_at_the_commands_timeout(
    registry: CommandRegistry,
) -> None:
    probe = Probe()
    registry.register(Slow, probe)
    try:
        reply = registry.ask_reply(Slow.key, "hang", deadline=time.monotonic() + 1e12)
        late = registry.ask(Slow.key, "hang", block=False, deadline=time.monotonic() + 1e300)

        assert reply.events == (EventType.TIMEOUT, EventType.FALLBACK_SUCCESS)
        assert late.get(timeout=WAIT) == "fallback"
    finally:
        probe.release.set()


def test_a_registry_whose_timer_holds_a_job_a_lifetime_away_still_times_out_non_blocking_asks(
    registry: CommandRegistry,
) -> None:
    probe = Probe()
    registry.register(Slow, probe)
    registry._watchdog.call_at(time.monotonic() + 1e12, lambda: None)
    try:
        assert registry.ask(Slow.key, "hang", block=False).get(timeout=WAIT) == "fallback"
    finally:
        probe.release.set()


@pytest.mark.parametrize("timeout", [86_400.5, 1e12, math.inf])
def test_a_per_call_timeout_over_a_day_is_refused_naming_the_range_and_the_value(
    registry: CommandRegistry, timeout: float
) -> None:
    registry.register(Slow, Probe())

    with pytest.raises(ValueError) as refused:
        registry.ask(Slow.key, "ok", timeout=timeout)

    message = str(refused.value)
    assert "timeout" in message
    assert "<= 86400" in message
    assert repr(timeout) in message


def test_a_per_call_timeout_of_exactly_a_day_is_accepted(registry: CommandRegistry) -> None:
    registry.register(Slow, Probe())

    assert registry.ask(Slow.key, "ok", timeout=86_400.0) == "ok"


def test_a_shutdown_timeout_over_a_day_is_refused(registry: CommandRegistry) -> None:
    with pytest.raises(ValueError, match=r"^timeout .*<= 86400 or None, got 1000000000000\.0$"):
        registry.shutdown(timeout=1e12)


FLEET_DURATIONS = ["timeout", "heartbeat", "lease_margin", "snapshot_interval"]


@pytest.mark.parametrize("field", FLEET_DURATIONS)
def test_a_fleet_duration_of_exactly_one_day_is_accepted(field: str) -> None:
    fleet_module = pytest.importorskip("actors.fleet")  # needs the redis extra

    fleet = fleet_module.RedisFleet("redis://127.0.0.1:1/0", **{field: 86_400.0})

    assert getattr(fleet, field) == 86_400.0


@pytest.mark.parametrize("value", [86_400.5, 1e12], ids=repr)
@pytest.mark.parametrize("field", FLEET_DURATIONS)
def test_a_fleet_duration_over_a_day_is_refused_naming_the_field_the_range_and_the_value(
    field: str, value: float
) -> None:
    fleet_module = pytest.importorskip("actors.fleet")

    with pytest.raises(ValueError) as refused:
        fleet_module.RedisFleet("redis://127.0.0.1:1/0", **{field: value})

    message = str(refused.value)
    assert message.startswith(f"{field} must be a finite number of seconds")
    assert "<= 86400" in message
    assert message.endswith(f"got {value!r}")


def test_closing_with_a_timeout_past_timeout_max_does_not_raise() -> None:
    watchdog = Watchdog()
    ran = threading.Event()
    watchdog.call_at(soon(), ran.set)
    assert ran.wait(WAIT)
    loop = KeyLoop("hystrix-async-far")
    call = loop.submit(_value(1), CommandError("closed", reason="unavailable"))
    assert call.ended.wait(WAIT)

    assert watchdog.close(timeout=1e12) == []
    loop.close(timeout=1e12)

    assert watchdog._thread is not None
    assert not watchdog._thread.is_alive()
    assert loop.thread is not None
    assert not loop.thread.is_alive()


# -- a fault in a job ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
def test_a_job_that_raises_is_logged_and_every_runner_serves_the_next_jobs(
    watchdog: Watchdog,
    fault: BaseException,
    captured_logs: list[dict[str, Any]],
    eventually: Eventually,
) -> None:
    def broken() -> None:
        raise fault

    for _ in range(8):  # twice as many as there are runners: each runner gets some
        watchdog.call_at(soon(), broken)
    done = threading.Semaphore(0)
    for _ in range(8):
        watchdog.call_at(soon(0.01), done.release)

    for _ in range(8):
        assert done.acquire(timeout=WAIT), "a job after the faults never ran"
    eventually(lambda: len(events(captured_logs, "watchdog.job_failed")) == 8, what="8 faults")
    runners = [t for t in threading.enumerate() if t.name.startswith("hystrix-runner-")]
    assert runners and all(t.is_alive() for t in runners)
    assert all(e["log_level"] == "error" for e in events(captured_logs, "watchdog.job_failed"))


def test_a_job_that_raises_while_logging_is_broken_does_not_end_its_runner(
    watchdog: Watchdog, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_log(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("the application's log processor exits")

    monkeypatch.setattr(Log, "exception", broken_log)
    for _ in range(8):
        watchdog.call_at(soon(), lambda: 1 / 0)
    done = threading.Semaphore(0)
    for _ in range(8):
        watchdog.call_at(soon(0.01), done.release)

    for _ in range(8):
        assert done.acquire(timeout=WAIT)


# -- a fault in the timer's own loop ------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
def test_a_fault_in_the_timers_loop_restarts_it_and_keeps_the_heap(
    watchdog: Watchdog,
    fault: BaseException,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: list[dict[str, Any]],
) -> None:
    patched = once_in_thread("hystrix-watchdog", heapq.heappop, fault)
    monkeypatch.setattr(heapq, "heappop", patched)
    owner = Owner()
    ran = threading.Event()

    watchdog.call_at(soon(0.01), ran.set)  # its pop raises: it must survive the restart
    watchdog.watch(ticket(owner, soon(0.02)))

    assert ran.wait(WAIT), "the job whose pop failed never ran"
    assert owner.expired.wait(WAIT), "a ticket's deadline never fired after the restart"
    assert patched.fired.is_set()
    [restarted] = events(captured_logs, "watchdog.restarted")
    assert restarted["log_level"] == "error"
    assert restarted["thread"] == "hystrix-watchdog"
    assert restarted["error"] == repr(fault)


def test_a_ticket_whose_claim_raises_is_dropped_and_the_others_still_fire(
    watchdog: Watchdog, captured_logs: list[dict[str, Any]]
) -> None:
    class Broken(Ticket):
        def claim(self) -> bool:
            raise RuntimeError("claim boom")

    owner = Owner()
    broken = Broken(owner, None, time.monotonic(), soon(0.01), NORMAL, block=False)
    good = ticket(owner, soon(0.02))

    watchdog.watch(broken)
    watchdog.watch(good)

    assert owner.expired.wait(WAIT)
    assert owner.expired_tickets == [good]
    assert [e["error"] for e in events(captured_logs, "watchdog.restarted")] == [
        "RuntimeError('claim boom')"
    ]


def test_a_timer_thread_found_dead_is_started_again_by_the_next_job(
    watchdog: Watchdog, captured_logs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watchdog, "_loop", lambda: None)  # its thread returns at once
    watchdog.call_at(soon(), lambda: None)
    first = watchdog._thread
    assert first is not None
    first.join(WAIT)
    monkeypatch.undo()
    ran = threading.Event()

    watchdog.call_at(soon(), ran.set)

    assert ran.wait(WAIT)
    assert watchdog._thread is not first
    [restarted] = events(captured_logs, "watchdog.restarted")
    assert restarted["error"] == "the thread ended"


# -- the registry after its timer failed --------------------------------------------------------


class Other(Slow):
    key = "other"


class Kept(Command):
    key = "kept"
    config = CommandConfig(supervision=SupervisionPolicy(min_backoff=0.01, max_backoff=0.05))

    def run(self, payload: Any) -> Any:
        return payload


@pytest.mark.parametrize("fault", FAULTS[:2], ids=FAULT_IDS[:2])
def test_after_a_fault_in_the_timer_non_blocking_asks_still_time_out_and_supervisors_restart(
    registry: CommandRegistry,
    fault: BaseException,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: list[dict[str, Any]],
    eventually: Eventually,
) -> None:
    probe = Probe()
    registry.register(Slow, probe)
    registry.register(Other, probe)
    registry.register(Kept)
    assert registry.ask(Kept.key, 1) == 1
    patched = once_in_thread("hystrix-watchdog", heapq.heappop, fault)
    monkeypatch.setattr(heapq, "heappop", patched)
    try:
        # the first pop of the timer raises: this ask's ticket stays in the heap
        first = registry.ask(Slow.key, "hang", block=False)
        assert first.get(timeout=WAIT) == "fallback"
        assert patched.fired.is_set()
        assert len(events(captured_logs, "watchdog.restarted")) == 1

        # another key's non-blocking ask is still timed out
        assert registry.ask(Other.key, "hang", block=False).get(timeout=WAIT) == "fallback"

        # a dead supervisor is still restarted (its backoff is a job on the timer)
        dead = supervisor_of(registry, Kept.key)
        assert kill_supervisor(registry, Kept.key)
        eventually(
            lambda: (
                supervisor_of(registry, Kept.key) not in (None, dead)
                and registry.health(Kept.key).status == "up"
            ),
            within=WAIT,
            what="the supervisor was restarted",
        )
        assert registry.ask(Kept.key, 2) == 2
    finally:
        probe.release.set()


class StuckFallback(Slow):
    """Its ``run`` hangs, and so does its fallback (until ``probe.release``)."""

    key = "stuck-fallback"

    def fallback(self, payload: Any, error: BaseException) -> Any:
        self.probe.in_fallback.release()
        self.probe.release.wait(WAIT)
        self.probe.seen["returned"] = True  # released, or gave up waiting
        return "late fallback"


def test_fallbacks_that_hang_on_every_runner_hold_back_no_other_keys_timeouts_or_restarts(
    registry: CommandRegistry, monkeypatch: pytest.MonkeyPatch, eventually: Eventually
) -> None:
    monkeypatch.setattr("actors.watchdog.EXTRA_RUNNER_IDLE", 0.05)
    probe = Probe()
    registry.register(StuckFallback, probe)
    registry.register(Other, probe)
    registry.register(Kept)
    assert registry.ask(Kept.key, 1) == 1
    try:
        stuck = [registry.ask(StuckFallback.key, "hang", block=False) for _ in range(6)]
        for _ in stuck:  # more fallbacks hang on the runners than there are runners
            assert probe.in_fallback.acquire(timeout=WAIT), "a fallback never started"
        assert "returned" not in probe.seen  # none had to end for the last ones to start

        assert registry.ask(Other.key, "hang", block=False).get(timeout=WAIT) == "fallback"
        assert "returned" not in probe.seen
        dead = supervisor_of(registry, Kept.key)
        assert kill_supervisor(registry, Kept.key)
        eventually(
            lambda: (
                supervisor_of(registry, Kept.key) not in (None, dead)
                and registry.health(Kept.key).status == "up"
            ),
            within=WAIT,
            what="the supervisor was restarted",
        )
    finally:
        probe.release.set()
    assert [future.get(timeout=WAIT) for future in stuck] == ["late fallback"] * 6
    watchdog = registry._watchdog
    eventually(
        lambda: sum(runner.is_alive() for runner in watchdog._runners) == 4,
        within=WAIT,
        what="the extra runners ended once idle",
    )


# -- a key's event loop -------------------------------------------------------------------------


class Stopper(Command):
    """An ``async def run`` that stops the loop it runs on (a bug in the application)."""

    key = "stopper"
    config = CommandConfig(timeout=WAIT)

    async def run(self, payload: Any) -> Any:
        if payload == "stop":
            asyncio.get_running_loop().stop()
        await asyncio.sleep(0)
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return ("fallback", getattr(error, "reason", type(error).__name__))


def test_a_coroutine_that_stops_its_keys_loop_does_not_end_it(registry: CommandRegistry) -> None:
    registry.register(Stopper)

    assert registry.ask(Stopper.key, "stop") == "stop"
    assert registry.ask(Stopper.key, "after") == "after"
    loop_threads = [t for t in threading.enumerate() if t.name == f"hystrix-async-{Stopper.key}"]
    assert len(loop_threads) == 1


async def _value(value: Any) -> Any:
    await asyncio.sleep(0)
    return value


@pytest.mark.parametrize("fault", FAULTS[:2], ids=FAULT_IDS[:2])
def test_a_key_loop_whose_thread_dies_answers_its_calls_and_is_started_again(
    fault: BaseException,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: list[dict[str, Any]],
) -> None:
    name = "hystrix-async-dies"
    scheduled = threading.Event()  # the fault waits until the first call is on the loop
    real = asyncio.set_event_loop

    def set_event_loop(loop: asyncio.AbstractEventLoop | None) -> None:
        if threading.current_thread().name == name and not scheduled.is_set():
            scheduled.wait(WAIT)
            raise fault
        real(loop)

    monkeypatch.setattr(asyncio, "set_event_loop", set_event_loop)
    loop = KeyLoop(name)
    gone = CommandError("closed", reason="unavailable")
    try:
        first = loop.submit(_value("first"), gone)
        scheduled.set()
        assert first.ended.wait(WAIT), "a call of the dead loop was never answered"
        first_thread = loop.thread
        assert first_thread is not None
        first_thread.join(WAIT)

        second = loop.submit(_value("second"), gone)

        assert second.ended.wait(WAIT)
        assert second.result() == "second"
        assert loop.thread is not first_thread
    finally:
        loop.close()
    assert isinstance(first.error, CommandError)
    assert first.error.reason == "unavailable"
    [failed] = events(captured_logs, "event_loop.failed")
    assert (failed["log_level"], failed["thread"], failed["error"]) == ("error", name, repr(fault))
    [restarted] = events(captured_logs, "event_loop.restarted")
    assert (restarted["thread"], restarted["error"]) == (name, repr(fault))


class Echo(Command):
    key = "echo-async"
    config = CommandConfig(timeout=WAIT)

    async def run(self, payload: Any) -> Any:
        return await _value(payload)

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return ("fallback", getattr(error, "reason", type(error).__name__))


def test_a_keys_calls_go_on_after_its_loops_thread_died(
    registry: CommandRegistry,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: list[dict[str, Any]],
) -> None:
    name = f"hystrix-async-{Echo.key}"
    monkeypatch.setattr(
        asyncio, "set_event_loop", once_in_thread(name, asyncio.set_event_loop, SystemExit(1))
    )

    registry.register(Echo)

    first = registry.ask(Echo.key, 1)  # its loop dies: answered, by run or by the fallback
    second = registry.ask(Echo.key, 2)

    assert first in (1, ("fallback", "unavailable"))
    assert second == 2
    assert len(events(captured_logs, "event_loop.failed")) == 1
    assert len(events(captured_logs, "event_loop.restarted")) == 1


# -- the fleet's listener -----------------------------------------------------------------------


class FakePubSub:
    def __init__(self, messages: queue.Queue[Any]) -> None:
        self.messages = messages

    def subscribe(self, channel: str) -> None:
        pass

    def get_message(self, timeout: float) -> Any:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        pass


class FakeStore:
    def __init__(self) -> None:
        self.messages: queue.Queue[Any] = queue.Queue()
        self.subscriptions = 0

    def pubsub(self) -> FakePubSub:
        self.subscriptions += 1
        return FakePubSub(self.messages)

    def broken(self) -> None:
        pass

    def close(self) -> None:
        pass


def broadcast(key: str) -> dict[str, Any]:
    data = json.dumps({"key": key, "state": "open", "epoch": "1"}).encode()
    return {"type": "message", "data": data}


@pytest.mark.parametrize("fault", FAULTS[:2], ids=FAULT_IDS[:2])
def test_the_fleet_listener_survives_a_fault_in_its_callback_and_subscribes_again(
    fault: BaseException, captured_logs: list[dict[str, Any]]
) -> None:
    listener_module = pytest.importorskip("actors.fleet.listener")  # needs the redis extra
    store = FakeStore()
    seen: list[str] = []
    delivered = threading.Event()

    def on_state(key: str, state: Any) -> None:
        if key == "first":
            raise fault
        seen.append(key)
        delivered.set()

    listener = listener_module.Listener(
        store,  # type: ignore[arg-type]
        "hx:fleet:test",
        on_state,
        lambda key, detail: None,
        Log(),
        name="hystrix-fleet-listener-test",
    )
    listener.start()
    try:
        store.messages.put(broadcast("first"))
        store.messages.put(broadcast("second"))

        assert delivered.wait(WAIT), "the listener died with the fault"
    finally:
        listener.close()
    assert seen == ["second"]
    assert store.subscriptions == 2
    [failed] = events(captured_logs, "fleet.listener_failed")
    assert failed["error"] == repr(fault)
