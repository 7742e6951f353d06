"""Shared worker pools (``CommandConfig(pool=...)``, Hystrix's ``threadPoolKey``): keys naming
one pool share its workers and its bulkhead, each keeping its own breaker and metrics; the
stream's ``HystrixThreadPool`` messages follow pools, not keys.

Breakers run on the fake clock; every wait is on an event or a bounded poll (``eventually``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from probe import WAIT, Probe

from actors import (
    CircuitState,
    Command,
    CommandConfig,
    CommandRegistry,
    EventType,
    PoolConfig,
)
from actors.stream import Renderer
from actors.testing import kill_supervisor, supervisor_of, workers_of
from supervision import FakeClock, SupervisionPolicy

Eventually = Callable[..., None]

POOL = "jira"
REJECTED = EventType.THREAD_POOL_REJECTED


class Issues(Command):
    """Steered by the payload: "fail" raises, "hang" waits for ``probe.release`` (after
    releasing ``probe.entered``), "thread" answers the thread it ran on; else echoed."""

    key = "issues"
    config = CommandConfig(timeout=WAIT, pool=POOL, request_volume_threshold=2)

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def run(self, payload: Any) -> Any:
        self.probe.ran()
        if payload == "fail":
            raise RuntimeError("dependency down")
        if payload == "hang":
            self.probe.entered.release()
            assert self.probe.release.wait(WAIT)
        if payload == "thread":
            return threading.get_ident(), id(self)
        return (self.key, payload)

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return ("fallback", self.key, getattr(error, "reason", type(error).__name__))


class Projects(Issues):
    key = "projects"


class Users(Issues):
    """On its own pool."""

    key = "users"
    config = CommandConfig(timeout=WAIT, request_volume_threshold=2)


@pytest.fixture
def probe(registry: CommandRegistry) -> Iterator[Probe]:
    probe = Probe()
    for command in (Issues, Projects, Users):
        registry.register(command, probe)
    yield probe
    probe.release.set()


def size(registry: CommandRegistry, workers: int, queue: int = 0, **changes: Any) -> None:
    registry.configure_pool(
        POOL, PoolConfig(max_concurrent_requests=workers, queue_size=queue, **changes)
    )


def test_keys_of_one_pool_run_on_its_workers_each_with_its_own_command(
    registry: CommandRegistry, probe: Probe
) -> None:
    size(registry, 1)
    thread_a, command_a = registry.ask(Issues.key, "thread")
    thread_b, command_b = registry.ask(Projects.key, "thread")

    assert thread_a == thread_b  # the pool's one worker ran both
    assert command_a != command_b  # ...each key's call on that key's own Command
    assert workers_of(registry, Issues.key) == workers_of(registry, Projects.key)
    assert len(workers_of(registry, Issues.key)) == 1
    assert supervisor_of(registry, Issues.key) is supervisor_of(registry, Projects.key)
    assert registry.health(Issues.key).workers == registry.health(Projects.key).workers == 1


def test_a_full_pool_rejects_the_calls_of_every_key_naming_it(
    registry: CommandRegistry, probe: Probe
) -> None:
    size(registry, 1)
    hung = registry.ask(Issues.key, "hang", block=False)
    probe.wait_entered()

    reply = registry.ask_reply(Projects.key, "x")

    assert reply.events == (REJECTED, EventType.FALLBACK_SUCCESS)
    assert reply.value == ("fallback", Projects.key, "max concurrency")
    assert registry.ask(Users.key, "x") == (Users.key, "x")  # another pool is not affected
    probe.release.set()
    assert hung.get(timeout=WAIT) == (Issues.key, "hang")
    assert registry.ask(Projects.key, "x") == (Projects.key, "x")


def test_a_call_waits_in_the_pool_queue_and_runs_when_a_worker_frees(
    registry: CommandRegistry, probe: Probe
) -> None:
    size(registry, 1, queue=1)
    hung = registry.ask(Issues.key, "hang", block=False)
    probe.wait_entered()
    waiting = registry.ask(Projects.key, "queued", block=False)
    assert registry.metrics(Projects.key).pool.queued == 1
    assert registry.ask_reply(Users.key, "x").ok

    assert registry.ask_reply(Issues.key, "third").events[0] is REJECTED  # 1 running + 1 queued
    probe.release.set()

    assert hung.get(timeout=WAIT) == (Issues.key, "hang")
    assert waiting.get(timeout=WAIT) == (Projects.key, "queued")
    assert len(workers_of(registry, Projects.key)) == 1


def test_a_key_caps_its_own_share_of_the_pool(registry: CommandRegistry, probe: Probe) -> None:
    size(registry, 3)
    registry.configure(Issues.key, Issues.config.replace(max_concurrent_requests=1))
    hung = registry.ask(Issues.key, "hang", block=False)
    probe.wait_entered()

    assert registry.ask_reply(Issues.key, "x").events[0] is REJECTED  # its own cap
    other = registry.ask(Projects.key, "hang", block=False)  # the pool has room for others
    probe.wait_entered()
    assert registry.metrics(Issues.key).pool.rolling_rejected == 0  # not the pool's rejection
    probe.release.set()
    assert hung.get(timeout=WAIT) == (Issues.key, "hang")
    assert other.get(timeout=WAIT) == (Projects.key, "hang")


def test_each_key_keeps_its_own_breaker_and_metrics(
    registry: CommandRegistry, probe: Probe, clock: FakeClock
) -> None:
    size(registry, 2)
    for _ in range(2):
        assert registry.ask(Issues.key, "fail")[0] == "fallback"

    assert registry.health(Issues.key).state is CircuitState.OPEN
    assert registry.ask_reply(Issues.key, "x").events[0] is EventType.SHORT_CIRCUITED
    assert registry.health(Projects.key).state is CircuitState.CLOSED
    assert registry.ask(Projects.key, "x") == (Projects.key, "x")
    issues, projects = registry.metrics(Issues.key), registry.metrics(Projects.key)
    assert issues.counts[EventType.FAILURE] == 2 and projects.counts[EventType.FAILURE] == 0
    assert projects.counts[EventType.SUCCESS] == 1 and issues.counts[EventType.SUCCESS] == 0
    assert issues.pool == projects.pool  # one pool, the same figures for each of its keys
    assert issues.pool.name == POOL and issues.pool.completed == 3


def test_the_pool_figures_count_every_key(registry: CommandRegistry, probe: Probe) -> None:
    size(registry, 2, rolling_window=20.0, rolling_buckets=4)
    first = registry.ask(Issues.key, "hang", block=False)
    second = registry.ask(Projects.key, "hang", block=False)
    probe.wait_entered(2)
    assert registry.ask_reply(Users.key, "x").ok
    assert registry.ask_reply(Issues.key, "x").events[0] is REJECTED

    busy = registry.metrics(Projects.key).pool
    assert (busy.name, busy.active, busy.pool_size, busy.max_pool_size) == (POOL, 2, 2, 2)
    assert (busy.rolling_rejected, busy.rolling_max_active, busy.rolling_window) == (1, 2, 20.0)
    probe.release.set()
    first.get(timeout=WAIT)
    second.get(timeout=WAIT)
    done = registry.metrics(Issues.key).pool
    assert (done.active, done.completed, done.rolling_executed) == (0, 2, 2)
    assert registry.metrics(Users.key).pool.name == Users.key  # its own pool


def test_the_stream_sends_one_thread_pool_message_per_pool(
    registry: CommandRegistry, probe: Probe
) -> None:
    for key in (Issues.key, Projects.key, Users.key):
        registry.ask(key, "x")

    tick = Renderer().tick(registry.all_metrics(), 1.0)
    messages = [
        json.loads(line[len(b"data: ") :])
        for line in tick.body().splitlines()
        if line.startswith(b"data: ")
    ]

    pools = [m["name"] for m in messages if m["type"] == "HystrixThreadPool"]
    assert sorted(pools) == [POOL, Users.key]
    commands = {m["name"]: m for m in messages if m["type"] == "HystrixCommand"}
    assert commands[Issues.key]["threadPool"] == commands[Projects.key]["threadPool"] == POOL
    assert commands[Issues.key]["propertyValue_executionIsolationThreadPoolKeyOverride"] == POOL
    assert commands[Users.key]["propertyValue_executionIsolationThreadPoolKeyOverride"] is None
    [jira] = [m for m in messages if m["type"] == "HystrixThreadPool" and m["name"] == POOL]
    assert jira["rollingCountThreadsExecuted"] == 2


def test_growing_the_pool_live_starts_workers_for_the_calls_waiting(
    registry: CommandRegistry, probe: Probe
) -> None:
    size(registry, 1, queue=2)
    futures = [registry.ask(key, "hang", block=False) for key in (Issues.key, Projects.key)]
    probe.wait_entered()
    assert registry.metrics(Issues.key).pool.queued == 1

    size(registry, 2, queue=2)

    probe.wait_entered()  # the waiting call now runs on a second worker
    probe.release.set()
    assert [f.get(timeout=WAIT)[0] for f in futures] == [Issues.key, Projects.key]
    assert registry.metrics(Issues.key).pool.max_pool_size == 2


def test_a_pool_configured_before_its_first_use_is_sized_so(
    registry: CommandRegistry, probe: Probe
) -> None:
    size(registry, 3, queue=4)
    registry.ask(Issues.key, "x")

    pool = registry.metrics(Issues.key).pool
    assert (pool.max_pool_size, pool.queue_size) == (3, 4)


def test_an_unconfigured_pool_has_hystrix_defaults(registry: CommandRegistry, probe: Probe) -> None:
    registry.ask(Issues.key, "x")

    pool = registry.metrics(Issues.key).pool
    assert (pool.max_pool_size, pool.queue_size, pool.rolling_window) == (10, 0, 10.0)


def test_a_crashed_pool_supervisor_answers_every_key_and_is_restarted(
    registry: CommandRegistry, probe: Probe, eventually: Eventually
) -> None:
    fast = SupervisionPolicy(min_backoff=0.01, max_backoff=0.02)
    size(registry, 2, supervision=fast)
    issues = registry.ask_reply(Issues.key, "hang", block=False)
    projects = registry.ask_reply(Projects.key, "hang", block=False)
    probe.wait_entered(2)
    old = supervisor_of(registry, Issues.key)

    assert kill_supervisor(registry, Projects.key)

    for future, key in ((issues, Issues.key), (projects, Projects.key)):
        reply = future.get(timeout=WAIT)
        assert reply.value == ("fallback", key, "unavailable")
        assert reply.error is not None and getattr(reply.error, "key", None) == key
    probe.release.set()
    eventually(lambda: registry.health(Issues.key).status == "up", WAIT, "the pool restarted")
    assert supervisor_of(registry, Projects.key) not in (None, old)
    assert registry.ask(Issues.key, "x") == (Issues.key, "x")
    assert registry.ask(Projects.key, "x") == (Projects.key, "x")


def test_an_idle_pool_passivates_and_any_of_its_keys_wakes_it(
    registry: CommandRegistry, probe: Probe, eventually: Eventually
) -> None:
    size(registry, 2, supervision=SupervisionPolicy(passivate_after=0.05))
    registry.ask(Issues.key, "x")
    registry.ask(Projects.key, "x")

    eventually(lambda: supervisor_of(registry, Issues.key) is None, WAIT, "the pool passivated")
    eventually(lambda: not workers_of(registry, Projects.key), WAIT, "its workers stopped")
    assert registry.health(Projects.key).status == "up"

    assert registry.ask(Projects.key, "again") == (Projects.key, "again")
    assert supervisor_of(registry, Issues.key) is not None
    assert registry.ask(Issues.key, "again") == (Issues.key, "again")


def test_reset_forgets_pools_and_their_configuration(
    registry: CommandRegistry, probe: Probe
) -> None:
    size(registry, 1)
    registry.ask(Issues.key, "x")
    registry.reset()
    registry.register(Issues, probe)
    registry.register(Projects, probe)

    first = registry.ask(Issues.key, "hang", block=False)
    probe.wait_entered()
    assert registry.ask(Projects.key, "x") == (Projects.key, "x")  # PoolConfig() again: 10
    probe.release.set()
    assert first.get(timeout=WAIT) == (Issues.key, "hang")


def test_a_used_key_cannot_move_to_another_pool(registry: CommandRegistry, probe: Probe) -> None:
    registry.ask(Users.key, "x")
    with pytest.raises(ValueError, match="pool cannot change") as caught:
        registry.configure(Users.key, Users.config.replace(pool=POOL))
    assert Users.key in str(caught.value)
    registry.configure(Users.key, Users.config.replace(timeout=2.0))  # other fields still change
    assert registry.ask(Users.key, "x") == (Users.key, "x")


@pytest.mark.parametrize("bad", ["", "   ", "x" * 201, 7, b"jira"])
def test_a_bad_pool_name_is_refused_naming_the_field(bad: Any) -> None:
    with pytest.raises(ValueError, match="pool must be a non-empty string"):
        CommandConfig(pool=bad)


def test_a_shared_pool_is_for_thread_isolation_only() -> None:
    with pytest.raises(ValueError, match="pool applies to thread isolation only"):
        CommandConfig(pool=POOL, isolation="semaphore")


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_concurrent_requests", 0), ("queue_size", -1), ("rolling_window", 0.0)],
)
def test_a_bad_pool_config_is_refused_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        PoolConfig(**{field: value})


def test_configure_pool_checks_its_arguments(registry: CommandRegistry) -> None:
    with pytest.raises(TypeError, match="configure_pool\\(\\) takes a PoolConfig"):
        registry.configure_pool(POOL, CommandConfig())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pool name must be"):
        registry.configure_pool("", PoolConfig())
