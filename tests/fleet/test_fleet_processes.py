"""A fleet of separate OS processes sharing one circuit through a real Redis.

Each node is a process of its own (``multiprocessing``, "spawn"): its own ``CommandRegistry``
with a ``RedisFleet``, hammering a simulated dependency (one ask every 4 ms) that the test
controls through shared memory (``nodes.Board``). The nodes report their circuit's transitions,
the edges of their answers and every call that reached a failing dependency; the test also
listens to the fleet's channel itself, so it sees every fleet transition with Redis's own time.
Nothing is mocked: Redis is Debian's ``redis-server`` (``redis_server`` fixture), killed,
restarted and paused for real.

What the fleet must do, seen from outside the processes:

1. the dependency dies for all four nodes: every node short-circuits within 100 ms of the fleet's
   open, and no call reaches the dependency after a node's first short-circuit;
2. while it stays down, exactly one call reaches it per sleep window, fleet-wide (the probe);
   once it recovers the fleet closes on every node;
3. quorum mode: one failing node opens alone, a second one opens the whole fleet;
4. Redis SIGKILLed and restarted, or SIGSTOPped for 3 s: no ask fails or waits for it, the
   breakers keep working on their own, and the fleet converges once Redis is back;
5. the probe's holder SIGKILLed mid-probe: another node probes when the lease expires;
6. a node joining an open fleet adopts the open at its first flush;
7. Redis lost while the fleet holds every circuit open: each node probes on its own and closes.

Figures (propagation lags, calls after the open, probes per sleep window) are printed on lines
starting with ``FLEET``: ``pytest -s`` shows them.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import math
import multiprocessing
import multiprocessing.connection
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

import pytest
import redis
from redis_servers import RedisServer, no_retry

from actors import CommandConfig, FleetPolicy
from actors.fleet import key_prefix

from .nodes import (
    BLOCKING,
    FAILING,
    HEALTHY,
    KEY,
    TRACED,
    Board,
    Crashed,
    Logged,
    Moved,
    NodeHealth,
    NodeSpec,
    Outcome,
    Reached,
    Ready,
    Slow,
    Stopped,
    node_main,
    node_name,
)

T = TypeVar("T")

CONTEXT = multiprocessing.get_context("spawn")

#: Nodes in a fleet.
SIZE = 4
#: Seconds each node sleeps between two asks.
INTERVAL = 0.004
SLEEP_WINDOW = 1.0
#: Seconds spawned nodes have to start and join the fleet (a busy two-core machine).
START_TIMEOUT = 30.0
#: Seconds a node has to exit once told to stop, before it is killed.
STOP_TIMEOUT = 10.0
#: The bound on propagation: from the fleet's open to every node's next answer short-circuited.
PROPAGATION = 0.1
#: The bound on any ask's latency while the dependency is healthy, whatever Redis does.
NORMAL_LATENCY = 0.05

#: Only the fleet can trip this circuit: a node asks at most once per INTERVAL, so its own
#: one-second window holds at most 250 calls, below the volume threshold; four nodes' summed
#: window holds about 800. Every node's open is therefore the fleet's, never its own.
FLEET_ONLY = CommandConfig(
    timeout=0.5,
    sleep_window=SLEEP_WINDOW,
    rolling_window=1.0,
    rolling_buckets=10,
    request_volume_threshold=300,
    error_percent_threshold=50,
)
assert FLEET_ONLY.request_volume_threshold > FLEET_ONLY.rolling_window / INTERVAL
#: Every node can also trip on its own window.
LOCAL = FLEET_ONLY.replace(request_volume_threshold=20)
#: The fleet opens when two nodes have tripped on their own windows.
QUORUM = LOCAL.replace(sleep_window=5.0, fleet=FleetPolicy(mode="quorum", quorum=2))


#: Events the library logs only when something inside it broke (``command.failed``, also at
#: ERROR, is our dependency failing: expected), or when a fleet key held a value its own
#: protocol never writes.
UNEXPECTED = frozenset(
    {
        "fleet.failed",
        "fleet.garbage",
        "fleet.listener_failed",
        "fleet.stop_timed_out",
        "listener.failed",
        "supervisor.died",
        "watchdog.job_failed",
        "watchdog.restarted",
        "worker.died",
        "worker.internal_error",
    }
)


def report(test: str, **figures: object) -> None:
    shown = " ".join(f"{name}={value}" for name, value in figures.items())
    print(f"FLEET {test}: {shown}")


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0-100) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms"


# -- the test's own view of the channel --------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Broadcast:
    """A fleet state change as published on the channel: ``at`` in Redis's milliseconds,
    ``received`` the monotonic instant it reached the test."""

    received: float
    key: str
    state: str
    epoch: int
    at: int
    by: str
    holder: str


class Observer:
    """A subscriber of the fleet's channel in the test process (re-subscribes after a fault)."""

    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self.items: list[Broadcast] = []
        self.subscribed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-observer", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self.subscribed.wait(10.0):
            pytest.fail(f"the test could not subscribe to {self.channel}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            client = redis.Redis.from_url(
                self.url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=no_retry()
            )
            try:
                subscribe: Any = client.pubsub  # untyped in redis-py
                pubsub = subscribe(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                self.subscribed.set()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.1)
                    if message is not None and message.get("type") == "message":
                        self._record(message["data"])
            except (redis.RedisError, OSError):  # Redis killed or paused: subscribe again
                pass
            finally:
                self.subscribed.clear()
                client.close()
            self._stop.wait(0.05)

    def _record(self, data: bytes) -> None:
        received = time.monotonic()
        fields = json.loads(data)
        self.items.append(
            Broadcast(
                received=received,
                key=fields["key"],
                state=fields["state"],
                epoch=int(fields["epoch"]),
                at=int(fields["at"]),
                by=fields["by"],
                holder=fields["holder"],
            )
        )


# -- the test's side of a fleet of node processes ---------------------------------------------


class FleetRun:
    """``size`` node processes in one namespace of ``server``: their board, their messages,
    their health on request, and the channel as the test hears it."""

    def __init__(
        self,
        server: RedisServer,
        namespace: str,
        config: CommandConfig,
        *,
        size: int = SIZE,
        lease_margin: float = 0.2,
    ) -> None:
        self.server = server
        self.namespace = namespace
        self.size = size
        self.board = Board(CONTEXT, size)
        #: Redis's clock (wall time) minus the monotonic clock, in seconds.
        self.offset = time.time() - time.monotonic()
        #: Every message of the nodes, by type (each list in the order received).
        self.messages: dict[type, list[Any]] = collections.defaultdict(list)
        self.killed: set[int] = set()
        self._cond = threading.Condition()
        self._replies: dict[int, NodeHealth] = {}
        self._ids = itertools.count()
        self._specs = [
            NodeSpec(
                index=index,
                url=server.url,
                namespace=namespace,
                config=config,
                lease_margin=lease_margin,
                interval=INTERVAL,
            )
            for index in range(size)
        ]
        self.processes: list[BaseProcess] = []
        self.conns: list[Connection] = []
        self.observer = Observer(server.url, f"hx:fleet:{namespace}")
        self._collector = threading.Thread(
            target=self._collect, name="fleet-collector", daemon=True
        )

    @property
    def nodes(self) -> list[int]:
        """The nodes not killed."""
        return [index for index in range(self.size) if index not in self.killed]

    def start(self, started: Sequence[int]) -> None:
        self.observer.start()
        for index in started:
            self.board.go[index] = 1
        for spec in self._specs:
            ours, theirs = CONTEXT.Pipe()
            process = CONTEXT.Process(
                target=node_main,
                args=(spec, self.board, theirs),
                name=node_name(spec.index),
                daemon=True,
            )
            process.start()
            theirs.close()
            self.processes.append(process)
            self.conns.append(ours)
        self._collector.start()

    def go(self, index: int) -> None:
        self.board.go[index] = 1

    def _collect(self) -> None:
        live = dict(zip(self.conns, range(self.size), strict=True))
        while live:
            try:
                readable = multiprocessing.connection.wait(list(live), timeout=0.1)
            except (OSError, ValueError):  # closed by ``close`` after a node would not exit
                return
            for conn in readable:
                assert isinstance(conn, Connection)
                try:
                    message = conn.recv()
                except (EOFError, OSError):  # the node exited (or was killed)
                    del live[conn]
                    continue
                with self._cond:
                    if isinstance(message, tuple):
                        self._replies[message[0]] = message[1]
                    else:
                        self.messages[type(message)].append(message)
                    self._cond.notify_all()

    # -- reading what the nodes said -------------------------------------------------------

    def of(self, kind: type[T], where: Callable[[T], bool] = lambda _: True) -> list[T]:
        with self._cond:
            messages = list(self.messages[kind])
        return [m for m in messages if where(m)]

    def firsts(
        self, kind: type[T], where: Callable[[T], bool], nodes: Sequence[int] | None = None
    ) -> dict[int, T] | None:
        """The first message of ``kind`` satisfying ``where`` from each of ``nodes`` (default:
        the live ones), or None while one of them has none."""
        found: dict[int, T] = {}
        for message in self.of(kind, where):
            found.setdefault(message.node, message)  # type: ignore[attr-defined]
        wanted = self.nodes if nodes is None else nodes
        return {i: found[i] for i in wanted} if all(i in found for i in wanted) else None

    def broadcasts(self, where: Callable[[Broadcast], bool] = lambda _: True) -> list[Broadcast]:
        return [b for b in list(self.observer.items) if where(b)]

    def mono(self, at_ms: int) -> float:
        """A Redis time (milliseconds, truncated) as a monotonic instant: up to a millisecond
        early, give or take the clocks' drift since the run began (compare with a margin)."""
        return at_ms / 1000 - self.offset

    def health(self, index: int, within: float = 5.0) -> NodeHealth:
        request = next(self._ids)
        self.conns[index].send((request, "health"))
        deadline = time.monotonic() + within
        with self._cond:
            while request not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.check()
                    pytest.fail(f"{node_name(index)} did not answer a health request in {within}s")
                self._cond.wait(left)
            return self._replies.pop(request)

    def healths(self, nodes: Sequence[int] | None = None) -> list[NodeHealth]:
        return [self.health(index) for index in (self.nodes if nodes is None else nodes)]

    # -- waiting -----------------------------------------------------------------------------

    def check(self) -> None:
        """Fail at once if a node crashed (with its traceback) or the library logged an error."""
        for crash in self.of(Crashed):
            pytest.fail(f"{node_name(crash.node)} crashed:\n{crash.error}")
        for logged in self.of(Logged, lambda m: m.event in UNEXPECTED):
            pytest.fail(f"{node_name(logged.node)} logged {logged.event} {logged.fields}")

    def wait(self, what: str, predicate: Callable[[], T | None], within: float) -> T:
        """Poll ``predicate`` until it returns a true value (returned); fail after ``within``
        seconds saying ``what``."""
        deadline = time.monotonic() + within
        while True:
            self.check()
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"not within {within}s: {what}\n{self.describe()}")
            time.sleep(0.005)

    def wait_broadcast(
        self,
        state: str,
        *,
        since: float,
        within: float,
        where: Callable[[Broadcast], bool] = lambda _: True,
    ) -> Broadcast:
        def found() -> Broadcast | None:
            hits = self.broadcasts(lambda b: b.state == state and b.received >= since and where(b))
            return hits[0] if hits else None

        return self.wait(f"a fleet broadcast {state!r}", found, within)

    def hold(self, seconds: float) -> None:
        """Let the nodes run ``seconds`` (a scenario's duration), failing early on a crash."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.check()
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))

    def all_in(self, state: str, nodes: Sequence[int] | None = None) -> list[NodeHealth] | None:
        """The health of ``nodes`` (default: the live ones) if each node's circuit and its view
        of the fleet's are in ``state``; else None."""
        healths = self.healths(nodes)
        return healths if all(h.state == state == h.fleet_state for h in healths) else None

    def converged(self) -> list[NodeHealth] | None:
        """Every live node connected, closed, and reading the same closed fleet state."""
        healths = self.healths()
        agreed = (
            all(
                h.state == "closed"
                and h.fleet_state == "closed"
                and h.connected is True
                and h.view_connected is True
                and h.subscribed
                for h in healths
            )
            and len({h.fleet_epoch for h in healths}) == 1
        )
        return healths if agreed else None

    def describe(self) -> str:
        lines = [f"namespace {self.namespace}; broadcasts:"]
        lines += [f"  {b}" for b in self.broadcasts()[-8:]]
        lines.append(f"asks {self.board.counts(self.board.asks)}")
        lines.append(f"shorts {self.board.counts(self.board.shorts)}")
        lines.append(f"reached {self.board.counts(self.board.reached)}")
        for kind in (Outcome, Moved, Logged, Slow):
            lines.append(f"last {kind.__name__} messages:")
            lines += [f"  {m}" for m in self.of(kind)[-8:]]
        return "\n".join(lines)

    # -- ending ------------------------------------------------------------------------------

    def kill(self, index: int) -> None:
        """SIGKILL a node: no goodbye to Redis nor to the test."""
        process = self.processes[index]
        process.kill()
        process.join(STOP_TIMEOUT)
        self.killed.add(index)

    def finish(self) -> list[Stopped]:
        """Stop every node, and check each shut down cleanly: no crash, no error logged, no
        call left stuck in ``run``."""
        self.close()
        self.check()
        stopped = {m.node: m for m in self.of(Stopped)}
        for index in self.nodes:
            assert index in stopped, f"{node_name(index)} did not shut down:\n{self.describe()}"
            assert stopped[index].zombies == 0, stopped[index]
        return list(stopped.values())

    def close(self) -> None:
        """Stop every node (killing the ones that do not exit), the collector, the observer."""
        for index in range(self.size):
            self.board.stop[index] = 1
        self.board.release.value = 1
        for index, process in enumerate(self.processes):
            if process.pid is None:
                continue
            process.join(STOP_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join(STOP_TIMEOUT)
                self.killed.add(index)
        if self._collector.is_alive():
            self._collector.join(STOP_TIMEOUT)
        for conn in self.conns:
            conn.close()
        self.observer.close()


@pytest.fixture
def start_fleet(
    redis_server: RedisServer, request: pytest.FixtureRequest
) -> Iterator[Callable[..., FleetRun]]:
    """Start a fleet of node processes on ``redis_server`` in a namespace of its own, and wait
    until they have joined; every process is stopped (or killed) after the test."""
    runs: list[FleetRun] = []

    def start(
        config: CommandConfig,
        *,
        started: Sequence[int] = range(SIZE),
        lease_margin: float = 0.2,
    ) -> FleetRun:
        name = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[:60]
        run = FleetRun(
            redis_server, f"{name}-{uuid.uuid4().hex[:8]}", config, lease_margin=lease_margin
        )
        runs.append(run)
        run.start(started)
        run.wait(
            "every started node joins the fleet",
            lambda: run.firsts(Ready, lambda _: True, started),
            START_TIMEOUT,
        )
        return run

    try:
        yield start
    finally:
        for run in runs:
            run.close()


def first_shorts(run: FleetRun, since: float, nodes: Sequence[int] | None = None) -> Any:
    """Each node's first short-circuited answer to an ask made at or after ``since``."""
    return run.firsts(Outcome, lambda m: m.kind == "short" and m.start >= since, nodes)


def first_opens(run: FleetRun, since: float, nodes: Sequence[int] | None = None) -> Any:
    """Each node's first transition to open at or after ``since``."""
    return run.firsts(Moved, lambda m: m.to_state == "open" and m.at >= since, nodes)


# -- 1. propagation -----------------------------------------------------------------------------

CYCLES = 5


@dataclasses.dataclass(frozen=True, slots=True)
class Cycle:
    """One outage's figures: per node, seconds from the fleet's open to its first
    short-circuited answer and to its adoption; the calls that reached the dependency after
    the open."""

    lags: list[float]
    adoptions: list[float]
    #: How each node learnt of the open: "broadcast" (its listener) or "flush" (its own).
    paths: list[str]
    after_open: int


def one_outage(run: FleetRun, cycle: int) -> Cycle:
    """The dependency dies for every node; the fleet opens; then it recovers and the fleet
    closes."""
    down = time.monotonic()
    run.board.set_mode(FAILING)
    opened = run.wait_broadcast("open", since=down, within=5.0)
    shorts = run.wait(
        f"cycle {cycle}: every node short-circuits", lambda: first_shorts(run, down), 2.0
    )
    opens = run.wait(f"cycle {cycle}: every node opens", lambda: first_opens(run, down), 2.0)
    for index, moved in opens.items():
        # opened by the fleet (its own window cannot trip), at the fleet's epoch
        assert (moved.scope, moved.epoch) == ("fleet", opened.epoch), (index, moved, opened)
    # The open: when the fleet's state was written (Redis time), reached the test, or was
    # first adopted by a node, whichever is earliest.
    open_at = min(run.mono(opened.at), opened.received, *(m.at for m in opens.values()))

    # Calls that reached the dependency after the open: only calls a node made before it
    # learnt of it; none after its first short-circuit (until the probe's sleep window).
    calls = run.of(
        Reached, lambda r: r.mode == FAILING and open_at < r.at < open_at + SLEEP_WINDOW / 2
    )
    for call in calls:
        assert call.at < shorts[call.node].start, (call, shorts[call.node])

    # Recovery: one probe closes the fleet, every node follows.
    run.board.set_mode(HEALTHY)
    run.wait_broadcast("closed", since=opened.received, within=SLEEP_WINDOW + 3.0)
    run.wait(
        f"cycle {cycle}: every node closes",
        lambda: all(h.state == "closed" for h in run.healths()),
        3.0,
    )
    return Cycle(
        lags=[short.end - open_at for short in shorts.values()],
        adoptions=[moved.at - open_at for moved in opens.values()],
        paths=[
            "broadcast" if moved.thread.startswith("hystrix-fleet") else "flush"
            for moved in opens.values()
        ],
        after_open=len(calls),
    )


@pytest.mark.timeout(90)
def test_when_the_dependency_dies_every_node_short_circuits_within_100_ms_of_the_fleet_open(
    start_fleet: Callable[..., FleetRun],
) -> None:
    run = start_fleet(FLEET_ONLY)
    cycles = [one_outage(run, cycle) for cycle in range(CYCLES)]
    run.finish()

    lags = [lag for cycle in cycles for lag in cycle.lags]
    adoptions = [lag for cycle in cycles for lag in cycle.adoptions]
    paths = collections.Counter(path for cycle in cycles for path in cycle.paths)
    report(
        "propagation",
        cycles=CYCLES,
        samples=len(lags),
        short_lag_p50=ms(percentile(lags, 50)),
        short_lag_p99=ms(percentile(lags, 99)),
        short_lag_max=ms(max(lags)),
        adoption_lag_p50=ms(percentile(adoptions, 50)),
        adoption_lag_max=ms(max(adoptions)),
        adopted_from=dict(paths),
        calls_after_open_per_cycle=[cycle.after_open for cycle in cycles],
        listener_reconnects=len(run.of(Logged, lambda m: m.event == "fleet.listener_disconnected")),
    )
    assert max(lags) <= PROPAGATION, [
        [(ms(lag), ms(adoption), path) for lag, adoption, path in zip(*c, strict=True)]
        for c in ((cycle.lags, cycle.adoptions, cycle.paths) for cycle in cycles)
    ]


# -- 2. one probe per sleep window ---------------------------------------------------------------

FAILED_PROBES = 3


@pytest.mark.timeout(60)
def test_while_the_dependency_is_down_it_sees_exactly_one_probe_per_sleep_window_fleet_wide(
    start_fleet: Callable[..., FleetRun],
) -> None:
    run = start_fleet(FLEET_ONLY)
    down = time.monotonic()
    run.board.set_mode(FAILING)
    opened = run.wait_broadcast("open", since=down, within=5.0)
    run.wait("every node short-circuits", lambda: first_shorts(run, down), 2.0)
    held_from = time.monotonic()  # every node is held by the fleet: nothing reaches it now
    reached_before = sum(run.board.counts(run.board.reached))

    def failed_probes() -> list[Broadcast] | None:
        later = run.broadcasts(lambda b: b.epoch > opened.epoch)
        reopened = [b for b in later if b.state == "open"]
        return later if len(reopened) >= FAILED_PROBES else None

    budget = FAILED_PROBES * (SLEEP_WINDOW + 0.5) + 2.0
    later = run.wait(f"{FAILED_PROBES} probes fail", failed_probes, budget)
    # The next grant is a whole sleep window away: count what reached the dependency so far.
    reached = sum(run.board.counts(run.board.reached)) - reached_before

    def reported() -> list[Reached] | None:
        calls = run.of(Reached, lambda r: r.mode == FAILING and r.at > held_from)
        return calls if len(calls) >= reached else None

    calls = run.wait(f"a report of each of the {reached} calls counted", reported, 2.0)
    assert len(calls) == reached, calls

    # The fleet's history: open, then (half_open by one node, open again) per sleep window.
    history = [opened, *later][: 1 + 2 * FAILED_PROBES]
    assert [b.state for b in history] == ["open", *["half_open", "open"] * FAILED_PROBES], history
    windows = []
    for k in range(FAILED_PROBES):
        opening, grant, reopening = history[2 * k : 2 * k + 3]
        assert grant.holder == grant.by == reopening.by, (grant, reopening)
        assert opening.epoch < grant.epoch < reopening.epoch
        waited = grant.at - opening.at
        assert SLEEP_WINDOW * 1000 <= waited <= SLEEP_WINDOW * 1000 + 300, (opening, grant)
        # one call reached the dependency at this grant: the holder's probe (grants are a
        # sleep window apart; the margins only absorb the conversion from Redis's clock)
        granted = run.mono(grant.at)
        probes = [c for c in calls if granted - 0.05 <= c.at < granted + SLEEP_WINDOW / 2]
        assert [node_name(c.node) for c in probes] == [grant.holder], (grant, probes)
        windows.append((grant.holder, waited))
    # and none at any other time: exactly one call per sleep window
    assert len(calls) == FAILED_PROBES, calls

    # Recovery: the next probe succeeds and the whole fleet closes.
    recovered = time.monotonic()
    run.board.set_mode(TRACED)
    closed = run.wait_broadcast("closed", since=recovered, within=SLEEP_WINDOW + 3.0)
    grant = run.broadcasts(lambda b: b.state == "half_open" and b.epoch < closed.epoch)[-1]
    healths = run.wait(
        "every node closed, and its fleet view too", lambda: run.all_in("closed"), 3.0
    )
    assert {h.fleet_epoch for h in healths} == {closed.epoch}
    closes = run.wait(
        "every node reports its close",
        lambda: run.firsts(Moved, lambda m: m.to_state == "closed" and m.at >= recovered),
        2.0,
    )
    for index, moved in closes.items():
        before = [r for r in run.of(Reached) if r.node == index and recovered <= r.at < moved.at]
        expected = 1 if node_name(index) == grant.holder else 0
        assert len(before) == expected, (index, moved, before)
    run.finish()

    report(
        "probes",
        probes_per_window=[1] * len(windows),
        holders=[holder for holder, _ in windows],
        grant_after_open_ms=[waited for _, waited in windows],
        closing_probe_by=grant.holder,
    )


# -- 3. quorum ------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_in_quorum_mode_one_failing_node_opens_alone_and_a_second_opens_the_fleet(
    start_fleet: Callable[..., FleetRun], redis_server: RedisServer
) -> None:
    run = start_fleet(QUORUM)
    tripped_key = f"{key_prefix(run.namespace, KEY)}:tripped"
    client = redis_server.client()

    first_down = time.monotonic()
    run.board.set_mode(FAILING, [0])
    opens = run.wait("node-0 opens", lambda: first_opens(run, first_down, [0]), 5.0)
    assert opens[0].scope == "local", opens
    run.wait(
        "node-0's flush reports it tripped",
        lambda: client.zrange(tripped_key, 0, -1) == [b"node-0"],
        2.0,
    )
    # The other three keep answering from the dependency, their fleet views closed.
    watch_from = time.monotonic()
    shorts_before = run.board.counts(run.board.shorts)
    asks_before = run.board.counts(run.board.asks)
    while time.monotonic() < watch_from + 2.0:
        for health in run.healths():
            assert health.fleet_state == "closed", health
            assert health.state == ("open" if health.node == 0 else "closed"), health
        run.hold(0.1)
    shorts_after = run.board.counts(run.board.shorts)
    asks_after = run.board.counts(run.board.asks)
    assert shorts_after[1:] == shorts_before[1:] == [0, 0, 0]
    assert shorts_after[0] > shorts_before[0]  # node-0 short-circuits on its own
    assert all(asks_after[i] - asks_before[i] > 100 for i in (1, 2, 3)), (asks_before, asks_after)
    assert run.broadcasts() == []
    assert not run.of(Outcome, lambda m: m.node != 0 and m.kind != "ok")

    # A second node fails: two tripped, quorum reached, the fleet opens everywhere.
    second_down = time.monotonic()
    run.board.set_mode(FAILING, [1])
    opened = run.wait_broadcast("open", since=second_down, within=5.0)
    shorts = run.wait(
        "node-2 and node-3 short-circuit", lambda: first_shorts(run, second_down, [2, 3]), 2.0
    )
    adopted = run.wait("node-2 and node-3 open", lambda: first_opens(run, second_down, [2, 3]), 2.0)
    for moved in adopted.values():
        assert (moved.scope, moved.epoch) == ("fleet", opened.epoch), moved
    open_at = min(run.mono(opened.at), opened.received)
    lags = [short.end - open_at for short in shorts.values()]
    healths = run.wait("all four open with the fleet", lambda: run.all_in("open"), 2.0)
    assert {h.fleet_epoch for h in healths} == {opened.epoch}
    run.finish()

    report("quorum", opened_by=opened.by, lags=[ms(lag) for lag in lags])
    assert max(lags) <= PROPAGATION, lags


# -- 4. Redis killed, restarted, paused ------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Phase:
    start: float
    asks: list[int]
    shorts: list[int]


def begin(run: FleetRun) -> Phase:
    board = run.board
    return Phase(time.monotonic(), board.counts(board.asks), board.counts(board.shorts))


def disconnected(run: FleetRun) -> bool:
    return all(h.connected is False and h.view_connected is False for h in run.healths())


def check_untouched(run: FleetRun, phase: Phase, name: str) -> dict[str, object]:
    """Through a Redis outage with a healthy dependency, every ask was answered by ``run``,
    fast; each node logged the outage once and the reconnection once."""
    board = run.board
    seconds = time.monotonic() - phase.start
    asks = [a - b for a, b in zip(board.counts(board.asks), phase.asks, strict=True)]
    assert board.counts(board.shorts) == phase.shorts, name
    assert not run.of(Outcome, lambda m: m.start >= phase.start and m.kind != "ok"), name
    slow = run.of(Slow, lambda m: m.start >= phase.start)
    slowest = max((m.latency for m in slow), default=0.0)
    assert slowest < NORMAL_LATENCY, (name, sorted(slow, key=lambda m: -m.latency)[:5])
    assert min(asks) > seconds * 10, (name, asks, seconds)  # every node kept asking
    for index in run.nodes:
        events = [
            m.event
            for m in run.of(Logged)
            if m.node == index
            and m.at >= phase.start
            and m.event in ("fleet.disconnected", "fleet.reconnected")
        ]
        assert events == ["fleet.disconnected", "fleet.reconnected"], (name, index, events)
    return {
        f"{name}_seconds": round(seconds, 2),
        f"{name}_asks": sum(asks),
        f"{name}_slowest": ms(slowest) if slow else "<10ms",
    }


@pytest.mark.timeout(90)
def test_redis_killed_or_paused_never_delays_a_call_and_the_fleet_converges_after(
    start_fleet: Callable[..., FleetRun], redis_server: RedisServer
) -> None:
    run = start_fleet(LOCAL)
    run.wait("the fleet agrees", run.converged, 5.0)
    figures: dict[str, object] = {}

    # SIGKILL mid-run, a second down, then a restart on the same port (empty).
    phase = begin(run)
    redis_server.kill()
    run.wait("every node sees the fleet gone", lambda: disconnected(run), 3.0)
    run.hold(1.0)
    redis_server.start()
    run.wait("the fleet agrees again after the restart", run.converged, 8.0)
    figures |= check_untouched(run, phase, "killed")

    # SIGSTOP for 3 s: connections stay open, nothing answers.
    phase = begin(run)
    redis_server.pause()
    run.wait("every node sees the fleet hang", lambda: disconnected(run), 3.0)
    run.hold(max(0.0, phase.start + 3.0 - time.monotonic()))
    redis_server.resume()
    run.wait("the fleet agrees again after the pause", run.converged, 8.0)
    figures |= check_untouched(run, phase, "paused")

    # The dependency fails while Redis is dead: each breaker opens on its own window.
    killed = time.monotonic()
    redis_server.kill()
    run.wait("every node sees the fleet gone", lambda: disconnected(run), 3.0)
    failing = time.monotonic()
    run.board.set_mode(FAILING)
    opens = run.wait("every node opens on its own", lambda: first_opens(run, failing), 5.0)
    assert {m.scope for m in opens.values()} == {"local"}, opens
    run.wait("every node short-circuits", lambda: first_shorts(run, failing), 2.0)
    restarted = time.monotonic()
    redis_server.start()
    assert not run.of(Moved, lambda m: killed <= m.at < restarted and m.scope == "fleet")
    run.wait(
        "every node reconnects",
        lambda: all(h.connected and h.view_connected and h.subscribed for h in run.healths()),
        8.0,
    )
    run.board.set_mode(HEALTHY)
    recovered = time.monotonic()
    converged = run.wait("the fleet agrees once the dependency is back", run.converged, 10.0)
    figures["converged_after_recovery"] = ms(time.monotonic() - recovered)
    figures["epoch_after"] = converged[0].fleet_epoch
    figures["fleet_states_seen_after_restart"] = [
        b.state for b in run.broadcasts(lambda b: b.received >= restarted)
    ]
    slow = run.of(Slow, lambda m: m.start >= killed)
    assert max((m.latency for m in slow), default=0.0) < NORMAL_LATENCY, slow
    run.finish()
    report("redis_outage", **figures)


# -- 5. the probe holder dies mid-probe ------------------------------------------------------------


@pytest.mark.timeout(60)
def test_when_the_probe_holder_is_killed_mid_probe_another_node_probes_after_the_lease(
    start_fleet: Callable[..., FleetRun],
) -> None:
    lease_margin = 0.2
    run = start_fleet(FLEET_ONLY, lease_margin=lease_margin)
    lease_ms = round((FLEET_ONLY.timeout + lease_margin) * 1000)
    down = time.monotonic()
    run.board.set_mode(FAILING)
    opened = run.wait_broadcast("open", since=down, within=5.0)
    run.wait("every node short-circuits", lambda: first_shorts(run, down), 2.0)
    # Every node is held: the next call to reach a dependency is the fleet's probe.
    run.board.set_mode(BLOCKING)
    probe = run.wait(
        "the probe reaches its dependency",
        lambda: next(iter(run.of(Reached, lambda r: r.mode == BLOCKING)), None),
        SLEEP_WINDOW + 2.0,
    )
    run.kill(probe.node)
    killed = time.monotonic()
    survivors = run.nodes
    run.board.set_mode(TRACED, survivors)
    assert killed < probe.at + FLEET_ONLY.timeout, "killed after the probe had timed out"
    holder = node_name(probe.node)
    grant = run.wait_broadcast("half_open", since=opened.received, within=1.0)
    assert grant.holder == holder, (grant, probe)

    # Nobody resolves the dead holder's probe: its lease expires, a survivor takes the next.
    second = run.wait_broadcast(
        "half_open",
        since=grant.received,
        within=lease_ms / 1000 + 2.0,
        where=lambda b: b.epoch > grant.epoch,
    )
    closed = run.wait_broadcast("closed", since=second.received, within=2.0)
    between = run.broadcasts(lambda b: grant.epoch < b.epoch < second.epoch)
    assert between == [], between
    assert second.holder != holder and second.holder in map(node_name, survivors), second
    waited = second.at - grant.at
    # (a lease set at Redis's script-start time may expire a fraction of a millisecond early)
    assert lease_ms - 1 <= waited <= lease_ms + 500, (grant, second)
    assert closed.by == second.holder, closed

    healths = run.wait("every survivor closed with the fleet", lambda: run.all_in("closed"), 3.0)
    assert {h.fleet_epoch for h in healths} == {closed.epoch}
    # One call reached a dependency between the kill and the close: the new holder's probe.
    closes = run.wait(
        "every survivor reports its close",
        lambda: run.firsts(Moved, lambda m: m.to_state == "closed" and m.at >= killed, survivors),
        2.0,
    )
    for index, moved in closes.items():
        calls = [r for r in run.of(Reached) if r.node == index and killed <= r.at < moved.at]
        assert len(calls) == (1 if node_name(index) == second.holder else 0), (index, calls)
    run.finish()
    report(
        "dead_probe_holder",
        killed=holder,
        lease=f"{lease_ms}ms",
        next_grant_after=f"{waited}ms",
        next_holder=second.holder,
    )


# -- 6. a node joining an open fleet -------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_node_that_joins_late_adopts_the_open_fleet_circuit_at_its_first_flush(
    start_fleet: Callable[..., FleetRun],
) -> None:
    run = start_fleet(FLEET_ONLY.replace(sleep_window=5.0), started=[0, 1, 2])
    down = time.monotonic()
    run.board.set_mode(FAILING, [0, 1, 2])
    run.board.set_mode(TRACED, [3])
    opened = run.wait_broadcast("open", since=down, within=5.0)
    run.wait("the first three short-circuit", lambda: first_shorts(run, down, [0, 1, 2]), 2.0)

    joined = time.monotonic()
    run.go(3)
    first_ask = run.wait(
        "node-3 asks", lambda: run.firsts(Outcome, lambda _: True, [3]), START_TIMEOUT
    )[3]
    adopted = run.wait("node-3 opens", lambda: first_opens(run, joined, [3]), 2.0)[3]
    assert (adopted.scope, adopted.epoch) == ("fleet", opened.epoch), adopted
    # At its first flush, not from a broadcast: nothing was published since it started.
    assert run.broadcasts(lambda b: b.received >= joined) == []
    delay = adopted.at - first_ask.start
    assert delay <= 0.1 + 0.2, delay  # one publish interval, and slack for a busy machine
    short = run.wait("node-3 short-circuits", lambda: first_shorts(run, adopted.at, [3]), 1.0)[3]
    before = run.of(Reached, lambda r: r.node == 3 and r.at < adopted.at)
    after = run.of(Reached, lambda r: r.node == 3 and r.at >= short.start)
    assert after == [], after
    (health,) = run.wait("node-3 reads the fleet open", lambda: run.all_in("open", [3]), 2.0)
    assert health.fleet_epoch == opened.epoch, health
    run.finish()
    report("late_joiner", adopted_after_first_ask=ms(delay), calls_before=len(before))


# -- 7. Redis dies while the fleet holds every circuit open ------------------------------------


@pytest.mark.timeout(60)
def test_when_redis_dies_while_the_fleet_is_open_each_node_probes_on_its_own_and_closes(
    start_fleet: Callable[..., FleetRun], redis_server: RedisServer
) -> None:
    run = start_fleet(FLEET_ONLY)
    down = time.monotonic()
    run.board.set_mode(FAILING)
    run.wait_broadcast("open", since=down, within=5.0)
    run.wait("every node short-circuits", lambda: first_shorts(run, down), 2.0)
    adopted = run.wait("every node opens", lambda: first_opens(run, down), 2.0)

    killed = time.monotonic()
    redis_server.kill()
    run.wait("every node sees the fleet gone", lambda: disconnected(run), 3.0)
    run.board.set_mode(TRACED)  # the dependency recovers while Redis is down
    # Let go by the fleet, each breaker follows its own rules: after its own sleep window
    # (counted from its open) it probes, alone, and closes.
    closes = run.wait(
        "every node closes on its own",
        lambda: run.firsts(Moved, lambda m: m.to_state == "closed" and m.at >= killed),
        SLEEP_WINDOW + 3.0,
    )
    for index, moved in closes.items():
        assert (moved.from_state, moved.scope) == ("half_open", "local"), moved
        calls = [r for r in run.of(Reached) if r.node == index and killed <= r.at < moved.at]
        assert len(calls) == 1, (index, calls)  # its own probe, and nothing else
        assert calls[0].at >= adopted[index].at + SLEEP_WINDOW, (calls[0], adopted[index])
    restarted = time.monotonic()
    redis_server.start()
    run.wait("the fleet agrees once Redis is back", run.converged, 8.0)
    assert not run.of(Outcome, lambda m: m.start >= restarted and m.kind != "ok")
    run.finish()
    report(
        "redis_dies_while_open",
        closed_after_kill=[ms(closes[i].at - killed) for i in sorted(closes)],
    )
