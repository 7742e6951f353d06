"""What each node of a multi-process fleet test runs: one OS process (``spawn``) with its own
``CommandRegistry`` sharing one command key's circuit through a real Redis (``RedisFleet``),
hammering a simulated dependency that the test controls.

The test and its nodes share a ``Board`` of raw shared memory: the dependency's behaviour per
node (``mode``), start and stop flags, and counters of the calls that reached each node's
dependency. No lock is shared between processes (raw memory only, each counter written by one
node): a node killed with SIGKILL can hold none, so the others never hang on it. Everything else
a node has to say (its circuit's transitions, the edges of its answers, the calls that reached a
failing dependency, its fleet log events, its health on request) travels as frozen messages on
its own pipe to the test.

``time.monotonic()`` is the system's CLOCK_MONOTONIC on Linux: instants taken in different
processes are comparable, so the test measures lags across nodes directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import threading
import time
import traceback
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from typing import Any

from actors import Command, CommandConfig, CommandRegistry, EventType, Reply
from actors.fleet import RedisFleet

__all__ = [
    "BLOCKING",
    "FAILING",
    "HEALTHY",
    "KEY",
    "TRACED",
    "Board",
    "Crashed",
    "DependencyError",
    "Logged",
    "Moved",
    "NodeHealth",
    "NodeSpec",
    "Outcome",
    "Reached",
    "Ready",
    "Slow",
    "Stopped",
    "node_main",
    "node_name",
]

#: The command key every node asks.
KEY = "dependency"

# What a node's dependency does with a call (``Board.mode``).
#: Answers at once; the call is only counted.
HEALTHY = 0
#: Raises at once; the call is reported (``Reached``).
FAILING = 1
#: Blocks until the test releases it (``Board.release``), then answers; reported.
BLOCKING = 2
#: Answers at once like HEALTHY, and the call is reported (``Reached``).
TRACED = 3

#: Seconds a blocked call waits for the test at most.
BLOCK_LIMIT = 10.0
#: An ask slower than this (seconds) is reported (``Slow``).
SLOW = 0.01
#: Seconds a node has, from its first ask, to join the fleet (its first flush, its listener).
JOIN_TIMEOUT = 10.0
#: The end of a node's messages (for its sender thread).
_END = object()


def node_name(index: int) -> str:
    return f"node-{index}"


class DependencyError(RuntimeError):
    """What a failing dependency raises."""


# -- what the test and its nodes share -------------------------------------------------------


class Board:
    """Raw shared memory between the test and its nodes (made before the nodes are spawned)."""

    def __init__(self, context: SpawnContext, size: int) -> None:
        self.size = size
        #: Each node's dependency: HEALTHY, FAILING, BLOCKING or TRACED (written by the test).
        self.mode = context.RawArray("i", size)
        #: 1: the node may start (its registry is built then). Written by the test.
        self.go = context.RawArray("i", size)
        #: 1: the node stops asking, shuts its registry down and exits. Written by the test.
        self.stop = context.RawArray("i", size)
        #: 1: blocked calls return. Written by the test.
        self.release = context.RawValue("i", 0)
        #: Calls that reached each node's dependency (written by that node only).
        self.reached = context.RawArray("q", size)
        #: Asks answered, and of them short-circuited, per node (written by that node only).
        self.asks = context.RawArray("q", size)
        self.shorts = context.RawArray("q", size)

    def set_mode(self, mode: int, nodes: range | list[int] | None = None) -> None:
        for index in range(self.size) if nodes is None else nodes:
            self.mode[index] = mode

    def counts(self, counter: Any) -> list[int]:
        return [int(counter[index]) for index in range(self.size)]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NodeSpec:
    """One node: its index (its name is ``node-<index>``), the fleet it joins and its config."""

    index: int
    url: str
    namespace: str
    config: CommandConfig
    publish_interval: float = 0.1
    lease_margin: float = 0.2
    #: Seconds the node sleeps after each answer before it asks again.
    interval: float = 0.004


# -- what a node tells the test ------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Ready:
    """The node has asked, flushed to the fleet at least once and its listener is subscribed."""

    node: int
    pid: int
    at: float


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """The node's answers changed kind ("ok", "failed" or "short"): the first ask of the new
    kind, asked at ``start`` and answered at ``end``."""

    node: int
    kind: str
    start: float
    end: float
    events: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Moved:
    """A transition of the node's circuit, as ``subscribe`` saw it."""

    node: int
    from_state: str
    to_state: str
    scope: str
    epoch: int
    at: float
    #: The thread that made it: the fleet's listener ("hystrix-fleet-..."), its actor (a flush
    #: or a verdict), or a caller or worker (the node's own window or probe).
    thread: str


@dataclasses.dataclass(frozen=True, slots=True)
class Reached:
    """A call reached the node's dependency (FAILING, BLOCKING or TRACED) at ``at``."""

    node: int
    mode: int
    at: float


@dataclasses.dataclass(frozen=True, slots=True)
class Slow:
    """An ask took ``latency`` seconds (more than ``SLOW``); the dependency's mode when asked."""

    node: int
    latency: float
    start: float
    mode: int
    events: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Logged:
    """A library log event: every ``fleet.*`` event, and anything at ERROR."""

    node: int
    level: str
    event: str
    fields: dict[str, str]
    at: float


@dataclasses.dataclass(frozen=True, slots=True)
class NodeHealth:
    """``registry.health(KEY)`` and the fleet's link, on the test's request."""

    node: int
    state: str
    requests: int
    errors: int
    fleet_state: str | None
    fleet_epoch: int | None
    fleet_nodes: int | None
    probe_holder: str | None
    #: ``health(KEY).fleet.connected`` (None: no view yet).
    view_connected: bool | None
    #: ``RedisFleet.connected``.
    connected: bool | None
    subscribed: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Stopped:
    """The node shut its registry down and is about to exit."""

    node: int
    zombies: int
    asks: int
    slowest: float


@dataclasses.dataclass(frozen=True, slots=True)
class Crashed:
    """The node's own code raised (a test bug, or the library raised at a caller)."""

    node: int
    error: str


# -- the node ---------------------------------------------------------------------------------


class Dependency(Command[None, str]):
    """The simulated dependency: does what ``Board.mode`` says for this node."""

    key = KEY

    def __init__(self, node: Node) -> None:
        self.node = node

    def run(self, payload: None) -> str:
        node = self.node
        board, index = node.board, node.index
        mode = board.mode[index]
        at = time.monotonic()
        with node.count_lock:
            board.reached[index] += 1
        if mode == HEALTHY:
            return "ok"
        node.send(Reached(index, mode, at))
        if mode == FAILING:
            raise DependencyError(f"the dependency of {node.name} is down")
        if mode == BLOCKING:
            deadline = at + BLOCK_LIMIT
            while not board.release.value and not board.stop[index]:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.002)
            return "released"
        return "ok"


class _Forward(logging.Handler):
    """Sends the library's fleet events, and its errors but the per-call ``command.failed``
    (our failing dependency), to the test."""

    def __init__(self, node: Node) -> None:
        super().__init__(logging.DEBUG)
        self.node = node

    def emit(self, record: logging.LogRecord) -> None:
        event = str(getattr(record, "event", record.getMessage()))
        if event == "command.failed" or (
            not event.startswith("fleet.") and record.levelno < logging.ERROR
        ):
            return
        fields = getattr(record, "fields", {})
        shown = {str(k): str(v) for k, v in fields.items()} if isinstance(fields, dict) else {}
        if record.exc_info and record.exc_info[1] is not None:
            shown["exc_info"] = "".join(traceback.format_exception(*record.exc_info))
        self.node.send(Logged(self.node.index, record.levelname, event, shown, time.monotonic()))


def _kind(reply: Reply[Any]) -> str:
    events = reply.events
    if EventType.SUCCESS in events:
        return "ok"
    if EventType.SHORT_CIRCUITED in events:
        return "short"
    return "failed"


class Node:
    """One fleet member, inside its own process."""

    def __init__(self, spec: NodeSpec, board: Board, conn: Connection) -> None:
        self.spec = spec
        self.board = board
        self.conn = conn
        self.index = spec.index
        self.name = node_name(spec.index)
        self.count_lock = threading.Lock()
        self._gone = False  # the test's end of the pipe is closed
        self.registry: CommandRegistry | None = None
        self.slowest = 0.0
        self._outbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send_all, name="test-sender", daemon=True)
        self._sender.start()
        # also notices the test's end (EOF) while the node waits for its go
        threading.Thread(target=self._serve, name="test-requests", daemon=True).start()

    def send(self, message: object) -> None:
        """One message to the test, from any thread of the node. It never blocks: the
        library's own threads (its fleet listener, its flushes) call it through ``subscribe``,
        and a test process slow to read must not delay them."""
        self._outbox.put(message)

    def _send_all(self) -> None:
        while (message := self._outbox.get()) is not _END:
            try:
                self.conn.send(message)
            except OSError:  # the test is gone: nobody to tell
                self._gone = True
                return

    def close(self) -> None:
        """Send what is left, then close the pipe."""
        self._outbox.put(_END)
        self._sender.join(5.0)
        with contextlib.suppress(OSError):
            self.conn.close()

    @property
    def stopping(self) -> bool:
        return bool(self.board.stop[self.index]) or self._gone

    def main(self) -> None:
        while not self.board.go[self.index]:
            if self.stopping:
                return
            time.sleep(0.002)
        spec = self.spec
        log = logging.getLogger("actors")
        log.setLevel(logging.DEBUG)  # for fleet.listener_disconnected; the rest is dropped
        log.propagate = False
        log.addHandler(_Forward(self))
        fleet = RedisFleet(
            spec.url,
            namespace=spec.namespace,
            node=self.name,
            publish_interval=spec.publish_interval,
            lease_margin=spec.lease_margin,
        )
        registry = self.registry = CommandRegistry(fleet=fleet, tracer=None)
        try:
            registry.register(Dependency, self)
            registry.configure(KEY, spec.config)
            registry.subscribe(self._moved)
            self._hammer(registry, fleet)
        finally:
            report = registry.shutdown(timeout=1.0)
            asks = int(self.board.asks[self.index])
            self.send(Stopped(self.index, report.zombies, asks, self.slowest))

    def _moved(self, key: str, moved: Any) -> None:
        self.send(
            Moved(
                self.index,
                moved.from_state.value,
                moved.to_state.value,
                moved.scope,
                moved.fleet_epoch,
                moved.at,
                threading.current_thread().name,
            )
        )

    def _hammer(self, registry: CommandRegistry, fleet: RedisFleet) -> None:
        """Ask, record, sleep ``interval``; until told to stop."""
        board, index, interval = self.board, self.index, self.spec.interval
        last = ""
        ready = False
        join_by = time.monotonic() + JOIN_TIMEOUT
        while not self.stopping:
            mode = board.mode[index]
            start = time.monotonic()
            reply = registry.ask_reply(KEY)
            end = time.monotonic()
            kind = _kind(reply)
            with self.count_lock:
                board.asks[index] += 1
                if kind == "short":
                    board.shorts[index] += 1
            latency = end - start
            if mode != BLOCKING:
                self.slowest = max(self.slowest, latency)
            if latency > SLOW:
                events = tuple(e.value for e in reply.events)
                self.send(Slow(index, latency, start, mode, events))
            if kind != last:
                self.send(Outcome(index, kind, start, end, tuple(e.value for e in reply.events)))
                last = kind
            if not ready:
                ready = self._joined(registry, fleet)
                if ready:
                    self.send(Ready(index, os.getpid(), time.monotonic()))
                elif end > join_by:
                    msg = f"{self.name} did not join the fleet within {JOIN_TIMEOUT}s"
                    raise RuntimeError(msg)
            time.sleep(interval)

    @staticmethod
    def _joined(registry: CommandRegistry, fleet: RedisFleet) -> bool:
        return registry.health(KEY).fleet is not None and fleet.subscribed.is_set()

    def _serve(self) -> None:
        """Answer the test's requests: ``(id, "health")`` -> ``(id, NodeHealth)``."""
        while True:
            try:
                request_id, what = self.conn.recv()
            except (EOFError, OSError):
                self._gone = True
                return
            if what == "health":
                try:
                    self.send((request_id, self._health()))
                except Exception:  # the test fails on it at once (``FleetRun.check``)
                    self.send(Crashed(self.index, traceback.format_exc()))

    def _health(self) -> NodeHealth:
        registry = self.registry
        assert registry is not None
        health = registry.health(KEY)
        view = health.fleet
        fleet = registry.fleet
        assert isinstance(fleet, RedisFleet)
        return NodeHealth(
            node=self.index,
            state=health.state.value,
            requests=health.requests,
            errors=health.errors,
            fleet_state=None if view is None else view.state.value,
            fleet_epoch=None if view is None else view.epoch,
            fleet_nodes=None if view is None else view.nodes,
            probe_holder=None if view is None else view.probe_holder,
            view_connected=None if view is None else view.connected,
            connected=fleet.connected,
            subscribed=fleet.subscribed.is_set(),
        )


def node_main(spec: NodeSpec, board: Board, conn: Connection) -> None:
    """A node process's entry point: run until ``board.stop``, report any crash, exit."""
    node = Node(spec, board, conn)
    try:
        node.main()
    except BaseException:
        node.send(Crashed(spec.index, traceback.format_exc()))
    finally:
        node.close()
