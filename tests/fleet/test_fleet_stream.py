"""``/hystrix.stream?scope=fleet``: every live node's snapshot, read from a real Redis and summed
(Turbine, built in). Two registries with different node names in one process make the fleet;
the summing rules are tested on their own first, on messages a real registry wrote."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis_servers import RedisClusterServers, RedisServer

from actors import Command, CommandConfig, CommandRegistry
from actors.fleet import RedisFleet
from actors.fleet.view import (
    FRESH,
    MAX_SNAPSHOT_BYTES,
    FleetReader,
    Snapshot,
    parse_snapshot,
    sum_command,
    sum_pool,
)
from actors.http import AsgiApp, HttpServer, asgi_app, start_http_server
from actors.stream import COMMAND_SUMS, command_message, pool_message
from supervision import CircuitState, FakeClock, FleetState
from supervision.fleet import GarbageError
from supervision.snapshot import PERCENTILES

KEY = "checkout"
NAMESPACE = "shop"
WAIT = 5.0  # any wait for another thread: reached only when something is broken
CONFIG = CommandConfig(timeout=5.0, request_volume_threshold=4, sleep_window=60.0)


class Checkout(Command):
    """Answers its payload; "fail" raises (the fallback answers "fallback")."""

    key = KEY
    config = CONFIG

    def run(self, payload: Any) -> Any:
        if payload == "fail":
            raise ConnectionError("the payment service is down")
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return "fallback"


# -- the summing rules, on messages a real registry wrote ------------------------------------


def node_messages(registry: CommandRegistry, ok: int, failed: int) -> dict[str, Any]:
    """A node's snapshot value after ``ok`` successes and ``failed`` failures."""
    registry.register(Checkout)
    for _ in range(ok):
        assert registry.ask(KEY, "ok") == "ok"
    for _ in range(failed):
        assert registry.ask(KEY, "fail") == "fallback"
    metrics = registry.metrics(KEY)
    return {"command": command_message(metrics), "pool": pool_message(metrics)}


@pytest.fixture
def two_nodes(registry: CommandRegistry) -> list[Snapshot]:
    """Node "a": 9 successes and 1 failure; node "b": 30 successes, then forced open."""
    a = node_messages(registry, 9, 1)
    second = CommandRegistry(clock=FakeClock())
    try:
        b = node_messages(second, 30, 0)
        second.configure(KEY, CONFIG.replace(force_open=True, request_volume_threshold=5))
        b["command"] = command_message(second.metrics(KEY))
    finally:
        second.shutdown()
    b["command"]["status"] = "restarting"
    for part, scale in ((a, 1), (b, 10)):  # the fake clock measures no latency: make some up
        for name in ("latencyExecute", "latencyTotal"):
            part["command"][name] = {p: scale * i for i, p in enumerate(PERCENTILES)}
    return [
        parse_snapshot(KEY, "a", json.dumps(a).encode()),
        parse_snapshot(KEY, "b", json.dumps(b).encode()),
    ]


CLOSED = FleetState()
NOW_MS = 1_800_000_000_000


def test_counts_concurrency_and_latencies_are_summed_and_the_hosts_counted(
    two_nodes: list[Snapshot],
) -> None:
    a, b = (s.command for s in two_nodes)

    message = sum_command(KEY, two_nodes, CLOSED, NOW_MS)

    for name in COMMAND_SUMS:
        assert message[name] == a[name] + b[name], name
    assert message["requestCount"] == 40
    assert message["rollingCountSuccess"] == 39
    for name in ("latencyExecute", "latencyTotal"):
        assert message[name] == {p: a[name][p] + b[name][p] for p in PERCENTILES}
    assert message["reportingHosts"] == 2
    assert message["currentTime"] == NOW_MS


def test_the_error_percentage_is_the_fleet_s_not_the_sum_of_the_nodes_and_reads_so_per_host(
    two_nodes: list[Snapshot],
) -> None:
    """a: 1 error in 10 (10 %), b: 0 in 30. The fleet: 1 in 40, 2 % (truncated, as Hystrix does).
    The dashboard divides errorPercentage by reportingHosts (Turbine's field is a sum): it must
    read 2, where Turbine's sum would read (10 + 0) / 2 = 5."""
    message = sum_command(KEY, two_nodes, CLOSED, NOW_MS)

    assert (message["errorCount"], message["requestCount"]) == (1, 40)
    assert message["errorPercentage"] / message["reportingHosts"] == 2


def test_names_group_and_properties_come_from_the_first_node_and_the_status_is_the_worst(
    two_nodes: list[Snapshot],
) -> None:
    a = two_nodes[0].command

    message = sum_command(KEY, two_nodes, CLOSED, NOW_MS)

    assert message["name"] == KEY
    assert (message["group"], message["threadPool"]) == (a["group"], a["threadPool"])
    properties = {k: v for k, v in message.items() if k.startswith("propertyValue_")}
    assert properties == {k: v for k, v in a.items() if k.startswith("propertyValue_")}
    assert message["propertyValue_circuitBreakerForceOpen"] is False  # a's, not b's
    assert message["status"] == "restarting"


def test_the_circuit_is_the_fleet_s_and_open_hosts_counts_the_nodes_open_on_their_own(
    two_nodes: list[Snapshot],
) -> None:
    closed = sum_command(KEY, two_nodes, CLOSED, NOW_MS)
    opened = sum_command(KEY, two_nodes, FleetState(CircuitState.OPEN, 7, 1), NOW_MS)
    probing = sum_command(KEY, two_nodes, FleetState(CircuitState.HALF_OPEN, 8, 2), NOW_MS)

    assert (closed["isCircuitBreakerOpen"], closed["circuitState"]) == (False, "closed")
    assert (opened["isCircuitBreakerOpen"], opened["circuitState"]) == (True, "open")
    assert (probing["isCircuitBreakerOpen"], probing["circuitState"]) == (False, "half_open")
    assert closed["openHosts"] == 1  # b, forced open on its own


def test_a_fleet_message_has_the_local_message_s_fields_and_open_hosts_only(
    two_nodes: list[Snapshot],
) -> None:
    a = two_nodes[0]

    command = sum_command(KEY, two_nodes, CLOSED, NOW_MS)
    pool = sum_pool(two_nodes, NOW_MS)

    assert set(command) == set(a.command) | {"openHosts"}
    assert set(pool) == set(a.pool)
    assert pool["currentCompletedTaskCount"] == 40
    assert pool["currentMaximumPoolSize"] == 2 * a.pool["currentMaximumPoolSize"]
    assert (pool["reportingHosts"], pool["currentTime"], pool["name"]) == (2, NOW_MS, KEY)


def test_one_node_reads_as_its_own_message(two_nodes: list[Snapshot]) -> None:
    a = two_nodes[0]

    message = sum_command(KEY, [a], CLOSED, NOW_MS)

    assert message["reportingHosts"] == 1
    assert message["errorPercentage"] == a.command["errorPercentage"] == 10
    unchanged = set(a.command) - {"currentTime", "openHosts"}
    assert {k: message[k] for k in unchanged} == {k: a.command[k] for k in unchanged}


def changed(snapshot: Snapshot, part: str, **fields: Any) -> bytes:
    value = {"command": dict(snapshot.command), "pool": dict(snapshot.pool)}
    value[part].update(fields)
    return json.dumps(value).encode()


GARBAGE: list[Any] = [
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"\xff\xfe", id="not-utf8"),
    pytest.param(b"[1, 2]", id="not-an-object"),
    pytest.param(b'{"command": {}, "pool": {}}', id="empty-messages"),
    pytest.param(b"[" * 5000 + b"]" * 5000, id="deeply-nested"),
    pytest.param(b" " * (MAX_SNAPSHOT_BYTES + 1), id="too-long"),
    pytest.param(12, id="not-text"),
    pytest.param(("command", {"requestCount": "12"}), id="count-as-a-string"),
    pytest.param(("command", {"requestCount": True}), id="count-as-a-boolean"),
    pytest.param(("command", {"requestCount": -1}), id="negative-count"),
    pytest.param(("command", {"requestCount": 2**60}), id="huge-count"),
    pytest.param(("command", {"name": "other"}), id="another-key"),
    pytest.param(("command", {"type": "HystrixThreadPool"}), id="wrong-type"),
    pytest.param(("command", {"latencyTotal": {"50": 1}}), id="percentiles-missing"),
    pytest.param(("command", {"status": "<b>up</b>"}), id="unknown-status"),
    pytest.param(("command", {"circuitState": "ajar"}), id="unknown-state"),
    pytest.param(("command", {"group": ["a"]}), id="group-not-text"),
    pytest.param(("command", {"propertyValue_x": {"a": 1}}), id="property-an-object"),
    pytest.param(("pool", {"currentPoolSize": None}), id="pool-figure-null"),
]


@pytest.mark.parametrize("raw", GARBAGE)
def test_anything_but_what_a_node_writes_is_garbage(two_nodes: list[Snapshot], raw: Any) -> None:
    if isinstance(raw, tuple):
        part, fields = raw
        raw = changed(two_nodes[0], part, **fields)

    with pytest.raises(GarbageError):
        parse_snapshot(KEY, "a", raw)


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_json_s_non_numbers_are_garbage(two_nodes: list[Snapshot], constant: bytes) -> None:
    raw = changed(two_nodes[0], "command", requestCount=0).replace(
        b'"requestCount": 0', b'"requestCount": ' + constant
    )

    with pytest.raises(GarbageError):
        parse_snapshot(KEY, "a", raw)


def test_unknown_fields_are_dropped(two_nodes: list[Snapshot]) -> None:
    raw = changed(two_nodes[0], "command", script="<script>alert(1)</script>")

    message = sum_command(KEY, [parse_snapshot(KEY, "a", raw)], CLOSED, NOW_MS)

    assert "script" not in message


# -- a fleet of two registries on a real Redis ---------------------------------------------------


class Fleet:
    """Two registries, nodes "a" and "b", sharing circuits through one Redis."""

    def __init__(self, server: RedisServer, **options: Any) -> None:
        self.server = server
        self.fleets = {
            node: RedisFleet(
                server.url,
                namespace=NAMESPACE,
                node=node,
                publish_interval=0.05,
                snapshot_interval=0.1,
                **options,
            )
            for node in ("a", "b")
        }
        self.registries = {node: CommandRegistry(fleet=f) for node, f in self.fleets.items()}
        for registry in self.registries.values():
            registry.register(Checkout)

    @property
    def a(self) -> CommandRegistry:
        return self.registries["a"]

    @property
    def b(self) -> CommandRegistry:
        return self.registries["b"]

    def shutdown(self) -> None:
        for registry in self.registries.values():
            registry.shutdown()


@pytest.fixture
def fleet(redis_server: RedisServer) -> Iterator[Fleet]:
    nodes = Fleet(redis_server)
    try:
        yield nodes
    finally:
        nodes.shutdown()


@pytest.fixture
def served(fleet: Fleet) -> Iterator[HttpServer]:
    """Node a's HTTP server: 0.1 s between ticks."""
    server, thread = start_http_server(0, registry=fleet.a, interval=0.1)
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(WAIT)


Tick = tuple[dict[str, Any] | None, list[dict[str, Any]]]


class Events:
    """Reads a stream's ticks: the ``fleet`` event (None on a local stream) and the messages."""

    def __init__(self, server: HttpServer, query: str = "scope=fleet") -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=WAIT)
        self.connection.request("GET", f"/hystrix.stream?{query}")
        self.response = self.connection.getresponse()

    def close(self) -> None:
        self.connection.close()

    def tick(self) -> Tick:
        status: dict[str, Any] | None = None
        messages: list[dict[str, Any]] = []
        event = "message"
        while True:
            line = self.response.readline()
            if not line:
                raise EOFError("the stream ended")
            if line == b"ping: \n":
                return status, messages
            if line.startswith(b"event: "):
                event = line[len(b"event: ") :].strip().decode()
            elif line.startswith(b"data: "):
                data = json.loads(line[len(b"data: ") :])
                if event == "fleet":
                    status = data
                else:
                    messages.append(data)
                event = "message"

    def until(self, holds: Callable[[Tick], bool], ticks: int = 100) -> Tick:
        """The first tick for which ``holds`` is true."""
        seen: list[Tick] = []
        for _ in range(ticks):
            tick = self.tick()
            if holds(tick):
                return tick
            seen.append(tick)
        pytest.fail(f"no such tick in {ticks}: the last was {seen[-1]}")


@pytest.fixture
def events(served: HttpServer) -> Iterator[Events]:
    reader = Events(served)
    try:
        yield reader
    finally:
        reader.close()


def command(tick: Tick, key: str = KEY) -> dict[str, Any] | None:
    found = [m for m in tick[1] if m["type"] == "HystrixCommand" and m["name"] == key]
    return found[0] if found else None


def hosts(n: int, requests: int | None = None) -> Callable[[Tick], bool]:
    def holds(tick: Tick) -> bool:
        message = command(tick)
        return (
            message is not None
            and message["reportingHosts"] == n
            and (requests is None or message["requestCount"] == requests)
        )

    return holds


def test_the_fleet_stream_sums_both_nodes(fleet: Fleet, events: Events) -> None:
    for _ in range(3):
        assert fleet.a.ask(KEY, "ok") == "ok"
    for _ in range(5):
        assert fleet.b.ask(KEY, "ok") == "ok"
    assert fleet.b.ask(KEY, "fail") == "fallback"

    status, messages = events.until(hosts(2, requests=9))

    assert status == {"scope": "fleet", "node": "a", "connected": True, "nodes": 2}
    message = command((status, messages))
    assert message is not None
    assert (message["rollingCountSuccess"], message["rollingCountFailure"]) == (8, 1)
    assert message["errorPercentage"] / message["reportingHosts"] == 11  # 1 in 9, truncated
    assert message["isCircuitBreakerOpen"] is False
    pools = [m for m in messages if m["type"] == "HystrixThreadPool"]
    assert [(p["name"], p["reportingHosts"], p["rollingCountThreadsExecuted"]) for p in pools] == [
        (KEY, 2, 9)
    ]


def test_the_local_stream_of_a_fleet_node_is_unchanged(fleet: Fleet, served: HttpServer) -> None:
    fleet.a.ask(KEY, "ok")
    fleet.b.ask(KEY, "ok")
    local = Events(served, query="")
    try:
        status, messages = local.until(lambda tick: command(tick) is not None)
    finally:
        local.close()

    assert status is None  # no fleet event: exactly Hystrix's stream
    assert [(m["type"], m["reportingHosts"]) for m in messages] == [
        ("HystrixCommand", 1),
        ("HystrixThreadPool", 1),
    ]


def test_a_fleet_open_circuit_reads_open_on_the_fleet_stream(fleet: Fleet, events: Events) -> None:
    """Two failures on each node: neither reaches 4 calls alone, the fleet's window does."""
    for registry in (fleet.a, fleet.b):
        assert [registry.ask(KEY, "fail") for _ in range(2)] == ["fallback"] * 2

    def both_open(tick: Tick) -> bool:
        message = command(tick) or {}
        return message.get("circuitState") == "open" and message.get("openHosts") == 2

    message = command(events.until(both_open))  # both nodes adopted the fleet's circuit

    assert message is not None
    assert message["isCircuitBreakerOpen"] is True
    assert message["reportingHosts"] == 2
    assert fleet.a.health(KEY).state == CircuitState.OPEN


def put_snapshot(server: RedisServer, node: str, value: bytes, age_ms: int) -> None:
    """What a node would write (or anything else), with its last report ``age_ms`` ago."""
    client = server.client()
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    prefix = f"hx:{{{NAMESPACE}:{KEY}}}"
    client.zadd(f"{prefix}:nodes", {node: now_ms - age_ms})
    client.hset(f"{prefix}:snap", node, value)
    client.sadd(f"hx:{{{NAMESPACE}}}:keys", KEY)


def written(server: RedisServer, node: str) -> bytes:
    def value() -> bytes | None:
        raw: bytes | None = server.client().hget(f"hx:{{{NAMESPACE}:{KEY}}}:snap", node)
        return raw

    deadline = time.monotonic() + WAIT
    while (raw := value()) is None:
        assert time.monotonic() < deadline, f"node {node} never wrote its snapshot"
        time.sleep(0.02)
    return raw


def test_only_nodes_live_within_live_ms_are_summed(
    fleet: Fleet, events: Events, redis_server: RedisServer
) -> None:
    fleet.a.ask(KEY, "ok")
    live_ms = fleet.fleets["a"].live_ms
    value = written(redis_server, "a")

    put_snapshot(redis_server, "gone", value, age_ms=live_ms + 1000)
    put_snapshot(redis_server, "young", value, age_ms=100)

    status, _ = events.until(hosts(2))
    assert status is not None
    assert status["nodes"] == 2  # a and young: b asked nothing, gone is gone


def test_garbage_from_a_node_is_ignored_and_reported(
    fleet: Fleet,
    events: Events,
    redis_server: RedisServer,
    captured_logs: list[dict[str, Any]],
) -> None:
    fleet.a.ask(KEY, "ok")
    fleet.b.ask(KEY, "ok")
    events.until(hosts(2))
    fleet.fleets["b"].close()  # b stops writing; its last report stays live a while
    put_snapshot(redis_server, "b", b'{"command": {"requestCount": "DROP TABLE"}}', age_ms=0)

    status, _ = events.until(hosts(1))

    assert status is not None
    assert status["connected"] is True
    garbage = [e for e in captured_logs if e["event"] == "fleet.garbage"]
    assert garbage
    assert garbage[0]["command"] == KEY
    assert "node 'b'" in garbage[0]["detail"]


def test_a_garbage_fleet_state_reads_as_closed(
    fleet: Fleet, events: Events, redis_server: RedisServer
) -> None:
    fleet.a.ask(KEY, "ok")
    redis_server.client().hset(f"hx:{{{NAMESPACE}:{KEY}}}:state", "state", "exploded")

    _, messages = events.until(hosts(1))

    assert messages[0]["circuitState"] == "closed"


def test_without_redis_the_stream_says_so_shows_this_node_then_the_fleet_again(
    fleet: Fleet, events: Events, redis_server: RedisServer
) -> None:
    fleet.a.ask(KEY, "ok")
    fleet.b.ask(KEY, "ok")
    events.until(hosts(2))

    redis_server.kill()
    status, messages = events.until(lambda tick: (tick[0] or {}).get("connected") is False)
    events.until(lambda tick: not any(f.connected for f in fleet.fleets.values()))

    assert status is not None
    assert status["error"].startswith("Redis cannot be reached: ConnectionError")
    assert [(m["name"], m["reportingHosts"]) for m in messages] == [(KEY, 1), (KEY, 1)]

    redis_server.start()
    fleet.b.ask(KEY, "ok")
    status, _ = events.until(hosts(2))
    assert status is not None
    assert status["connected"] is True


def test_a_paused_redis_holds_a_tick_at_most_about_its_timeout(
    fleet: Fleet, events: Events, redis_server: RedisServer
) -> None:
    fleet.a.ask(KEY, "ok")
    events.until(hosts(1))

    redis_server.pause()
    try:
        started = time.monotonic()
        gaps = []
        for _ in range(10):
            events.tick()
            gaps.append(time.monotonic() - started)
            started = time.monotonic()
    finally:
        redis_server.resume()

    timeout = fleet.fleets["a"].timeout
    assert max(gaps) < 0.1 + 3 * timeout  # interval + connect, probe and a read at most
    assert sorted(gaps)[5] < 0.1 + 0.05  # one slow tick per retry, the rest on time


def test_every_fleet_stream_of_an_app_shares_one_read_of_redis(
    fleet: Fleet, served: HttpServer, redis_server: RedisServer
) -> None:
    fleet.a.ask(KEY, "ok")
    streams = [Events(served) for _ in range(4)]
    try:
        for stream in streams:
            stream.until(hosts(1))
        client = redis_server.client()
        client.config_resetstat()
        time.sleep(1.0)  # 10 ticks of each stream (their threads tick, read or not)
        reads = client.info("commandstats").get("cmdstat_smembers", {}).get("calls", 0)
    finally:
        for stream in streams:
            stream.close()

    assert 1 <= reads <= 1.0 / FRESH + 2  # one read per FRESH seconds, not one per tick (40)


def test_an_asgi_fleet_stream_reads_redis_off_the_event_loop(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader is wrapped to note its thread; Redis is the real one."""
    fleet.a.ask(KEY, "ok")
    fleet.b.ask(KEY, "ok")
    app = asgi_app(fleet.a, interval=0.05)
    loop_threads: set[int] = set()
    reads: set[int] = set()
    real_read = FleetReader.read

    def read(self: FleetReader, *args: Any) -> Any:
        reads.add(threading.get_ident())
        return real_read(self, *args)

    monkeypatch.setattr(FleetReader, "read", read)
    # on a thread of its own: an earlier test of the session may leave a loop set on this one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        body = pool.submit(
            asyncio.run, _stream_until(app, loop_threads, b'"reportingHosts":2')
        ).result(timeout=30)
    app.close()

    assert b"event: fleet\n" in body
    assert reads
    assert not reads & loop_threads


async def _stream_until(app: AsgiApp, loop_threads: set[int], wanted: bytes) -> bytes:
    """Plays an ASGI server: asks for the fleet stream, disconnects once ``wanted`` came."""
    loop_threads.add(threading.get_ident())
    received = bytearray()
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not received:
            received.extend(b" ")
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        chunks.append(message.get("body", b""))
        if wanted in b"".join(chunks):
            done.set()

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/hystrix.stream",
        "query_string": b"scope=fleet",
        "root_path": "",
        "headers": [],
    }
    await asyncio.wait_for(app(scope, receive, send), 4 * WAIT)
    return b"".join(chunks)


def test_the_page_of_a_fleet_node_offers_the_fleet(served: HttpServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", served.server_port, timeout=WAIT)
    try:
        connection.request("GET", "/")
        page = connection.getresponse().read()
    finally:
        connection.close()

    assert b'<meta name="hystrix-fleet" content="a">' in page


def test_closing_the_app_closes_its_reader(fleet: Fleet, served: HttpServer) -> None:
    fleet.a.ask(KEY, "ok")
    stream = Events(served)
    try:
        stream.until(hosts(1))
    finally:
        stream.close()
    reader = served.app._reader
    assert reader is not None

    served.app.close()

    assert served.app._reader is None
    assert reader.read().error == "the stream's app is closed"


def test_the_fleet_stream_reads_a_redis_cluster(redis_cluster: RedisClusterServers) -> None:
    """Each key's Redis keys share one slot; the key set has its own: a read spans masters."""
    keys = [f"{KEY}-{i}" for i in range(6)]
    registries = [
        CommandRegistry(
            fleet=RedisFleet(
                redis_cluster.url, namespace="cluster", node=node, snapshot_interval=0.1
            )
        )
        for node in ("a", "b")
    ]
    try:
        for registry in registries:
            for key in keys:
                assert registry.do(key, lambda: "ok") == "ok"
        app = asgi_app(registries[0], interval=0.05)
        ticks = 0
        while True:
            chunk = app.tick("fleet")
            assert chunk is not None
            summed = {
                message["name"]
                for line in chunk.split(b"\n")
                if line.startswith(b"data: ")
                for message in [json.loads(line[len(b"data: ") :])]
                if message.get("type") == "HystrixCommand" and message["reportingHosts"] == 2
            }
            if summed == set(keys):
                break
            ticks += 1
            assert ticks < 200, f"the fleet stream never summed both nodes: {chunk[:300]!r}"
            time.sleep(0.05)
        app.close()
    finally:
        for registry in registries:
            registry.shutdown()
