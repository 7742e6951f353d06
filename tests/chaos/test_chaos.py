"""Chaos: many callers, faults injected mid-flight, and the invariants that must survive them.

One short seeded run of the chaos harness (set ``CHAOS_SEED`` to replay a seed; the seed is
printed and named in every failure), then targeted scenarios: every worker of a busy key
killed, a supervisor killed until its key goes down, a storm of BaseExceptions, stuck runs past
the zombie cap, a shutdown with runs still stuck, and a shutdown under load.
"""

from __future__ import annotations

import collections
import functools
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import pykka
import pytest

from actors import Command, CommandConfig, CommandError, CommandRegistry, Reply
from actors.testing import crash, kill_supervisor, workers_of
from supervision import SupervisionPolicy

from .harness import Chaos
from .keys import SHARED_KEYS, SHARED_POOLS, ChaosBaseException, classify
from .options import ChaosOptions
from .probes import PykkaTap, dump_threads

#: Upper bound on any wait for another thread: reached only when something is broken.
WAIT = 5.0
#: An ask must be answered within its timeout plus this.
SLACK = 2.0


def chaos_seed() -> int:
    seed = os.environ.get("CHAOS_SEED")
    return int(seed) if seed else int.from_bytes(os.urandom(4), "big")


def test_a_chaos_run_keeps_every_invariant() -> None:
    seed = chaos_seed()
    print(f"chaos seed {seed} (replay with CHAOS_SEED={seed})")
    result = Chaos(ChaosOptions(seconds=5.0, seed=seed, callers=16), log=print).run()

    assert result.passed, result.summary()
    # The run really was chaotic: otherwise the invariants above prove nothing.
    assert result.issued > 1_000, result.summary()
    # (each kind is drawn at random: a pair of kinds makes "none of either" vanishingly rare)
    for either in (
        ("kill_worker:crash", "kill_worker:stop"),
        ("kill_supervisor:crash", "kill_supervisor:stop"),
        ("resize", "retime"),
    ):
        assert any(result.faults[fault] > 0 for fault in either), f"no {either}: {result.summary()}"
    kinds = set(result.answers)
    for kind in ("success", "fallback(FAILURE)", "fallback(TIMEOUT)", "bad request"):
        assert kind in kinds, f"never answered {kind}: {result.summary()}"
    assert any("unavailable" in kind for kind in kinds), result.summary()
    assert any("REJECTED" in kind for kind in kinds), result.summary()
    assert max(result.zombies_max.values()) > 0, f"no zombie ever: {result.summary()}"
    assert result.pykka.injected_crashes > 0, result.summary()


def test_a_chaos_run_on_a_shared_pool_keeps_every_invariant() -> None:
    """Three keys share one pool of 6 workers (a fourth has its own): the same invariants hold
    while their calls compete for its workers, its queue and its one supervisor."""
    seed = chaos_seed()
    print(f"chaos seed {seed} (replay with CHAOS_SEED={seed})")
    options = ChaosOptions(seconds=5.0, seed=seed, callers=16, keys=SHARED_KEYS, pools=SHARED_POOLS)
    result = Chaos(options, log=print).run()

    assert result.passed, result.summary()
    assert result.issued > 1_000, result.summary()
    kinds = set(result.answers)
    for kind in ("success", "fallback(FAILURE)", "fallback(TIMEOUT)", "bad request"):
        assert kind in kinds, f"never answered {kind}: {result.summary()}"
    assert any("REJECTED" in kind for kind in kinds), result.summary()
    assert result.pykka.injected_crashes > 0, result.summary()


# -- targeted scenarios ---------------------------------------------------------------------------


class Dependency:
    """The fake dependency a scenario's commands call: a release for stuck runs, run counts."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)
        self._lock = threading.Lock()
        self.runs: collections.Counter[int] = collections.Counter()

    def ran(self, ask_id: int) -> None:
        with self._lock:
            self.runs[ask_id] += 1


class Scripted(Command):
    """``payload`` is ``(ask_id, what)``: "ok", ("sleep", s), "stuck", or an exception to raise."""

    key = "scripted"

    def __init__(self, dependency: Dependency) -> None:
        self.dependency = dependency

    def run(self, payload: tuple[int, Any]) -> Any:
        ask_id, what = payload
        self.dependency.ran(ask_id)
        if what == "ok":
            return ("ok", ask_id)
        if isinstance(what, tuple) and what[0] == "sleep":
            time.sleep(what[1])  # the dependency's latency
            return ("ok", ask_id)
        if what == "stuck":
            self.dependency.entered.release()
            assert self.dependency.release.wait(4 * WAIT)
            return ("late", ask_id)
        raise what

    def fallback(self, payload: tuple[int, Any], error: BaseException) -> Any:
        return ("fb", payload[0], getattr(error, "reason", type(error).__name__))


def scripted(key: str, config: CommandConfig) -> type[Command]:
    return type(f"Scripted_{key}", (Scripted,), {"key": key, "config": config})


@pytest.fixture
def dependency() -> Iterator[Dependency]:
    dependency = Dependency()
    yield dependency
    dependency.release.set()


@pytest.fixture
def live() -> Iterator[CommandRegistry]:
    """A registry on real time (restarts, backoffs and breakers all run on it)."""
    registry = CommandRegistry()
    try:
        yield registry
    finally:
        registry.shutdown(0.5)


def eventually(predicate: Callable[[], bool], what: str, within: float = WAIT) -> None:
    """Poll ``predicate`` until it holds, failing with a thread dump after ``within`` s."""
    deadline = time.monotonic() + within
    pace = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {within}s: {what}\n{dump_threads()}")
        pace.wait(0.005)  # polling a condition another thread is about to make true


class Callers:
    """Caller threads asking one key until stopped; every answer recorded once, by ask id.

    An answer is a ``Reply`` or, for the reasons in ``may_raise``, a ``CommandError`` raised by
    the ask; anything else raised is a problem.
    """

    def __init__(
        self,
        registry: CommandRegistry,
        key: str,
        timeout: float,
        may_raise: frozenset[str] = frozenset(),
    ) -> None:
        self.registry = registry
        self.key = key
        self.bound = timeout + SLACK
        self.may_raise = may_raise
        self.ids = itertools.count()
        self.lock = threading.Lock()
        self.answers: dict[int, Reply | CommandError] = {}
        self.problems: list[str] = []
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, n: int, what: Callable[[int], Any]) -> None:
        for caller in range(n):
            thread = threading.Thread(target=self._loop, args=(caller, what), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _loop(self, caller: int, what: Callable[[int], Any]) -> None:
        while not self.stop.is_set():
            ask_id = next(self.ids)
            payload = (ask_id, what(ask_id))
            started = time.monotonic()
            try:
                if (caller + ask_id) % 3 == 0:
                    future = self.registry.ask_reply(self.key, payload, block=False)
                    answer = future.get(timeout=self.bound)
                else:
                    answer = self.registry.ask_reply(self.key, payload)
            except CommandError as exc:
                answer = exc
                if exc.reason not in self.may_raise:
                    with self.lock:
                        self.problems.append(f"ask {ask_id} raised {exc!r}")
                if exc.reason == "shutdown":  # a refused caller goes away
                    self.stop.set()
            except BaseException as exc:
                with self.lock:
                    self.problems.append(f"ask {ask_id} raised {exc!r}")
                continue
            latency = time.monotonic() - started
            with self.lock:
                if ask_id in self.answers:
                    self.problems.append(f"ask {ask_id} answered twice")
                self.answers[ask_id] = answer
                if latency > self.bound:
                    self.problems.append(f"ask {ask_id} answered after {latency:.3f}s")
                if isinstance(answer, CommandError):
                    continue
                if not isinstance(answer, Reply) or answer.value not in (
                    ("ok", ask_id),
                    ("fb", ask_id, getattr(answer.error, "reason", type(answer.error).__name__)),
                ):
                    self.problems.append(f"ask {ask_id} got {answer!r:.200}")

    def raised(self) -> int:
        with self.lock:
            return sum(isinstance(answer, CommandError) for answer in self.answers.values())

    def answered(self) -> int:
        with self.lock:
            return len(self.answers)

    def finish(self) -> collections.Counter[str]:
        """Stop, join within the bound on an ask, and check every ask got exactly one answer."""
        self.stop.set()
        deadline = time.monotonic() + self.bound + WAIT
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        hung = [thread for thread in self.threads if thread.is_alive()]
        assert not hung, f"{len(hung)} callers never got an answer\n{dump_threads()}"
        assert self.problems == []
        assert len(self.answers) == next(self.ids)
        return collections.Counter(
            f"raised({answer.reason})" if isinstance(answer, CommandError) else classify(answer)
            for answer in self.answers.values()
        )


def run_for(seconds: float) -> None:
    """Let the load run (the callers are the ones doing the work)."""
    threading.Event().wait(seconds)


def none_alive(refs: Sequence[pykka.ActorRef[Any]]) -> bool:
    return not any(ref.is_alive() for ref in refs)


def threads_since(before: set[int | None]) -> list[threading.Thread]:
    """The threads alive now that were not in ``before`` (a set of thread idents)."""
    return [t for t in threading.enumerate() if t.ident not in before]


def test_killing_every_worker_of_a_busy_key_answers_every_caller(
    live: CommandRegistry, dependency: Dependency
) -> None:
    config = CommandConfig(
        timeout=0.5,
        max_concurrent_requests=4,
        queue_size=4,
        force_closed=True,
        supervision=SupervisionPolicy(max_restarts=10_000, max_zombies=2),
    )
    live.register(scripted("busy", config), dependency)
    tap = PykkaTap()
    with tap.installed():
        callers = Callers(live, "busy", config.timeout)
        callers.start(8, lambda _: ("sleep", 0.01))
        eventually(lambda: len(workers_of(live, "busy")) == 4, "the pool filled up")

        killed: list[pykka.ActorRef[Any]] = []
        statuses: set[str] = set()
        until = time.monotonic() + 1.0
        generation = 0
        while generation < 4 or time.monotonic() < until:
            doomed = workers_of(live, "busy")
            assert doomed, f"generation {generation}: no worker left to kill"
            for n, worker in enumerate(doomed):
                assert crash(worker, "crash" if (n + generation) % 2 else "stop")
            killed += doomed
            eventually(
                functools.partial(none_alive, doomed),
                f"generation {generation} died (busy workers die once their run returns)",
            )
            statuses.add(live.health("busy").status)
            eventually(lambda: len(workers_of(live, "busy")) > 0, "the pool was refilled")
            generation += 1
        counts = callers.finish()

    # Workers are replaced by their supervisor: the key itself never stops serving.
    assert tap.unexpected_crashes == [], tap.unexpected_crashes
    assert tap.injected_crashes > 0
    assert statuses == {"up"}, statuses
    assert counts["success"] > 0, counts
    assert set(counts) <= {"success", "fallback(THREAD_POOL_REJECTED)"}, counts
    assert none_alive(killed)
    eventually(lambda: live.health("busy").in_flight == 0, "every slot came back")
    health = live.health("busy")
    assert (health.status, health.zombies) == ("up", 0)
    assert 1 <= health.workers <= config.max_concurrent_requests
    assert live.ask_reply("busy", (-1, "ok")).value == ("ok", -1)
    assert all(n == 1 for n in dependency.runs.values()), "a call ran twice"


@pytest.mark.parametrize("how", ["crash", "stop"])
def test_killing_the_supervisor_repeatedly_drives_the_key_down_and_restart_revives_it(
    live: CommandRegistry, dependency: Dependency, how: Literal["crash", "stop"]
) -> None:
    config = CommandConfig(
        timeout=1.0,
        force_closed=True,
        supervision=SupervisionPolicy(
            max_supervisor_restarts=2,
            supervisor_restart_period=60.0,
            min_backoff=0.1,
            max_backoff=0.2,
            random_factor=0.0,
        ),
    )
    live.register(scripted("fragile", config), dependency)
    assert live.ask_reply("fragile", (0, "ok")).value == ("ok", 0)
    ids = itertools.count(1)

    def status() -> str:
        return live.health("fragile").status

    def ask_unavailable() -> None:
        ask_id = next(ids)
        reply = live.ask_reply("fragile", (ask_id, "ok"))
        assert reply.value == ("fb", ask_id, "unavailable"), reply
        assert reply.latency < 0.5 * config.timeout, "not answered at once"

    for kill in range(2):  # within the intensity: restarted after a backoff
        in_flight = live.ask_reply("fragile", (next(ids), "stuck"), block=False)
        assert dependency.entered.acquire(timeout=WAIT)
        assert kill_supervisor(live, "fragile", how=how)
        eventually(lambda: status() == "restarting", f"kill {kill}: the key is restarting")
        ask_unavailable()
        reply = in_flight.get(timeout=config.timeout + SLACK)  # its supervisor died with it
        assert reply.fell_back, reply
        eventually(lambda: status() == "up", f"kill {kill}: restarted after its backoff")
        ask_id = next(ids)
        assert live.ask_reply("fragile", (ask_id, "ok")).value == ("ok", ask_id)

    assert kill_supervisor(live, "fragile", how=how)  # one death too many
    eventually(lambda: status() == "down", "past max_supervisor_restarts the key is down")
    stays_down_until = time.monotonic() + 2 * config.supervision.max_backoff
    while time.monotonic() < stays_down_until:  # well past any backoff: nobody restarts it
        assert status() == "down"
        ask_unavailable()

    assert live.restart("fragile") in ("up", "restarting")
    eventually(lambda: status() == "up", "restart() revived the key")
    ask_id = next(ids)
    assert live.ask_reply("fragile", (ask_id, "ok")).value == ("ok", ask_id)
    eventually(lambda: live.health("fragile").in_flight == 0, "no slot leaked")


def test_a_storm_of_base_exceptions_never_stops_other_keys(
    live: CommandRegistry, dependency: Dependency
) -> None:
    storm_config = CommandConfig(timeout=0.5, max_concurrent_requests=3, force_closed=True)
    calm_config = CommandConfig(timeout=1.0, max_concurrent_requests=3, queue_size=3)
    live.register(scripted("storm", storm_config), dependency)
    live.register(scripted("calm", calm_config), dependency)
    storms: list[Callable[[], BaseException]] = [
        lambda: SystemExit(1),
        KeyboardInterrupt,
        GeneratorExit,
        lambda: ChaosBaseException("storm"),
    ]
    baseline = threading.active_count()
    tap = PykkaTap()
    with tap.installed():
        storm = Callers(live, "storm", storm_config.timeout)
        calm = Callers(live, "calm", calm_config.timeout)
        storm.start(4, lambda ask_id: storms[ask_id % len(storms)]())
        calm.start(3, lambda _: ("sleep", 0.002))
        deadline = time.monotonic() + 1.5
        threads_max = 0
        while time.monotonic() < deadline:
            threads_max = max(threads_max, threading.active_count())
            assert live.health("calm").status == "up"
            run_for(0.005)  # sampling the thread count while the storm blows
        storm_counts = storm.finish()
        calm_counts = calm.finish()

    assert set(calm_counts) == {"success"}, calm_counts
    assert storm_counts["fallback(FAILURE)"] > 0, storm_counts
    assert set(storm_counts) <= {
        "fallback(FAILURE)",
        "fallback(unavailable)",
        "fallback(THREAD_POOL_REJECTED)",
    }, storm_counts
    assert tap.stop_all == [] and tap.unexpected_crashes == []
    # 7 callers; per key its workers, zombies (max_zombies defaults to the pool) and supervisor.
    bound = baseline + 7 + 2 * (3 + 3 + 2) + 6
    assert threads_max <= bound, f"{threads_max} threads, bound {bound}"
    if live.health("storm").status == "down":  # escalated past its intensity: revive it
        live.restart("storm")
    eventually(lambda: live.ask_reply("storm", (-1, "ok")).value == ("ok", -1), "storm serves")


def test_stuck_runs_past_the_zombie_cap_make_the_key_reject_until_they_return(
    live: CommandRegistry, dependency: Dependency
) -> None:
    config = CommandConfig(
        timeout=0.25,
        max_concurrent_requests=2,
        force_closed=True,
        supervision=SupervisionPolicy(zombie_grace=0.05, max_zombies=1),
    )
    live.register(scripted("sticky", config), dependency)
    first = live.ask_reply("sticky", (0, "stuck"))
    assert first.events[0] == "TIMEOUT", first
    eventually(lambda: live.health("sticky").zombies == 1, "the stuck worker was abandoned")
    assert live.ask_reply("sticky", (1, "ok")).value == ("ok", 1)  # its replacement serves

    for ask_id in (2, 3):  # past the cap: stuck workers keep their slots
        assert live.ask_reply("sticky", (ask_id, "stuck")).events[0] == "TIMEOUT"
    eventually(lambda: live.health("sticky").in_flight == 2, "both slots held by stuck runs")
    rejected = live.ask_reply("sticky", (4, "ok"))
    assert rejected.events[0] == "THREAD_POOL_REJECTED", rejected
    assert live.health("sticky").zombies == 1

    dependency.release.set()
    eventually(
        lambda: (live.health("sticky").in_flight, live.health("sticky").zombies) == (0, 0),
        "the stuck runs returned and gave their slots back",
    )
    assert live.ask_reply("sticky", (5, "ok")).value == ("ok", 5)


def test_shutdown_leaves_behind_only_the_workers_stuck_in_run(dependency: Dependency) -> None:
    config = CommandConfig(
        timeout=0.25,
        max_concurrent_requests=3,
        force_closed=True,
        supervision=SupervisionPolicy(zombie_grace=0.05, max_zombies=1),
    )
    before = {thread.ident for thread in threading.enumerate()}
    registry = CommandRegistry()
    try:
        registry.register(scripted("stuck", config), dependency)
        assert registry.ask_reply("stuck", (0, "ok")).value == ("ok", 0)
        pending = [registry.ask_reply("stuck", (n, "stuck"), block=False) for n in (1, 2)]
        for _ in pending:
            assert dependency.entered.acquire(timeout=WAIT)
        eventually(lambda: registry.health("stuck").zombies == 1, "one zombie, one at the cap")
        assert [f.get(timeout=WAIT).events[0] for f in pending] == ["TIMEOUT", "TIMEOUT"]
    finally:
        report = registry.shutdown(0.2)

    assert report.zombies == 2
    with pytest.raises(CommandError) as refused:
        registry.ask_reply("stuck", (3, "ok"))
    assert refused.value.reason == "shutdown"

    eventually(lambda: len(threads_since(before)) == 2, "only the two stuck workers are left")
    dependency.release.set()
    eventually(lambda: threads_since(before) == [], "the stuck workers end once their run returns")


def test_shutdown_under_load_answers_every_caller_and_leaves_only_stuck_workers(
    dependency: Dependency,
) -> None:
    config = CommandConfig(
        timeout=0.2,
        max_concurrent_requests=3,
        queue_size=2,
        force_closed=True,
        supervision=SupervisionPolicy(zombie_grace=0.05, max_zombies=1),
    )
    before = {thread.ident for thread in threading.enumerate()}
    registry = CommandRegistry()
    try:
        registry.register(scripted("loaded", config), dependency)
        registry.register(scripted("loaded-too", config), dependency)
        assert registry.ask_reply("loaded", (-1, "stuck")).events[0] == "TIMEOUT"
        assert dependency.entered.acquire(timeout=WAIT)
        mixes: list[Any] = [("sleep", 0.005), "ok", RuntimeError("boom"), ("sleep", 0.05)]
        callers = [
            Callers(registry, key, config.timeout, may_raise=frozenset({"shutdown"}))
            for key in ("loaded", "loaded-too")
        ]
        for n, group in enumerate(callers):

            def what(ask_id: int, n: int = n) -> Any:
                return mixes[(ask_id + n) % len(mixes)]

            group.start(4, what)
        eventually(lambda: all(group.answered() > 20 for group in callers), "the load is on")
    finally:
        report = registry.shutdown(0.1)

    eventually(
        lambda: all(group.raised() > 0 for group in callers), "asks after shutdown are refused"
    )
    for group in callers:
        counts = group.finish()
        assert counts["success"] > 0, counts
        assert set(counts) <= {
            "success",
            "fallback(FAILURE)",
            "fallback(shutdown)",
            "fallback(THREAD_POOL_REJECTED)",
            "fallback(TIMEOUT)",
            "raised(shutdown)",
        }, counts
    assert report.zombies == 1  # the run stuck since before the load

    eventually(lambda: len(threads_since(before)) == 1, "only the stuck worker is left")
    dependency.release.set()
    eventually(lambda: threads_since(before) == [], "the stuck worker ends once its run returns")
