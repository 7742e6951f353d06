"""A fleet on a real redis-server, seen from registries in one process (each its own node).

The multi-process suite (test_fleet_processes.py) checks the fleet's promises across OS
processes; this one checks the pieces a process can see by itself: health's fleet view, the keys
in Redis, garbage, credentials, a Redis Cluster, and what is logged when Redis goes away.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis_servers import AuthRedisServer, RedisClusterServers, RedisServer

from actors import Command, CommandConfig, CommandRegistry, FleetPolicy
from actors.fleet import RedisFleet, key_prefix
from actors.fleet.scripts import RESOLVE
from actors.fleet.store import Store
from supervision import CircuitState

Eventually = Callable[..., None]
KEY = "Get all Issues"


class Dependency:
    """A dependency every node of the test shares: up or down."""

    down = False


class GetAllIssues(Command):
    key = KEY
    config = CommandConfig(timeout=1.0, request_volume_threshold=6, sleep_window=0.5)

    def run(self, payload: Any) -> str:
        if Dependency.down:
            raise ConnectionError("JIRA is down")
        return "issues"

    def fallback(self, payload: Any, error: BaseException) -> str:
        return "no issues"


@pytest.fixture(autouse=True)
def dependency_up() -> Iterator[None]:
    Dependency.down = False
    yield
    Dependency.down = False


def fleet(url: str, node: str, **options: Any) -> RedisFleet:
    return RedisFleet(url, namespace="test", node=node, publish_interval=0.05, **options)


@pytest.fixture
def nodes(redis_server: RedisServer) -> Iterator[list[CommandRegistry]]:
    """Two registries, two nodes of one fleet, with GetAllIssues registered."""
    registries = [CommandRegistry(fleet=fleet(redis_server.url, f"node-{i}")) for i in (1, 2)]
    for registry in registries:
        registry.register(GetAllIssues)
    try:
        yield registries
    finally:
        for registry in registries:
            registry.shutdown()


def fleet_view_of(registry: CommandRegistry) -> Any:
    return registry.health(KEY).fleet


def test_health_shows_the_fleets_view_of_a_key(
    nodes: list[CommandRegistry], eventually: Eventually
) -> None:
    for registry in nodes:
        assert registry.ask(KEY) == "issues"

    eventually(lambda: all((v := fleet_view_of(r)) and v.nodes == 2 for r in nodes), 3.0)

    view = fleet_view_of(nodes[0])
    assert view.state is CircuitState.CLOSED
    assert view.error_percent == 0.0
    assert view.probe_holder is None
    assert view.connected


def test_a_fleet_trip_opens_every_node_and_one_probe_closes_them(
    nodes: list[CommandRegistry], eventually: Eventually, captured_logs: list[dict[str, Any]]
) -> None:
    first, second = nodes
    second.ask(KEY)  # the second node knows the key: it takes part
    Dependency.down = True
    for _ in range(4):  # 4 failures per node: under each node's own threshold of 6
        for registry in nodes:
            registry.ask(KEY)
    assert first.health(KEY).requests == 4  # neither node opened on its own

    eventually(lambda: all(r.health(KEY).state == "open" for r in nodes), 3.0, "fleet open")
    opened = [e for e in captured_logs if e["event"] == "circuit.opened"]
    assert {e["scope"] for e in opened} == {"fleet"}
    # the opener's own listener may adopt the broadcast before its actor logs the open
    eventually(lambda: any(e["event"] == "fleet.opened" for e in captured_logs), 2.0)
    assert sum(e["event"] == "fleet.opened" for e in captured_logs) == 1

    Dependency.down = False
    deadline = time.monotonic() + 5.0
    while not all(r.health(KEY).state == "closed" for r in nodes):
        assert time.monotonic() < deadline, "the fleet never closed"
        for registry in nodes:
            registry.ask(KEY)
    verdicts = [e for e in captured_logs if e["event"] == "fleet.verdict"]
    assert [(e["outcome"], e["stale"]) for e in verdicts] == [("closed", False)]
    eventually(lambda: all(fleet_view_of(r).state == "closed" for r in nodes), 3.0)


def test_a_key_with_the_fleet_off_stays_local_and_writes_nothing(
    redis_server: RedisServer, eventually: Eventually
) -> None:
    class Local(Command):
        key = "local"
        config = CommandConfig(fleet=FleetPolicy(mode="off"))

        def run(self, payload: Any) -> str:
            return "ok"

    with CommandRegistry(fleet=fleet(redis_server.url, "solo")) as registry:
        registry.register(Local)
        registry.register(GetAllIssues)
        registry.ask("local")
        registry.ask(KEY)
        eventually(lambda: fleet_view_of(registry) is not None, 3.0)

        assert registry.health("local").fleet is None
    client = redis_server.client()
    assert client.keys(key_prefix("test", "local") + "*") == []
    assert client.keys(key_prefix("test", KEY) + "*") != []


def test_every_key_of_a_command_shares_one_hash_tag_and_buckets_expire(
    nodes: list[CommandRegistry], redis_server: RedisServer, eventually: Eventually
) -> None:
    nodes[0].ask(KEY)
    client = redis_server.client()
    prefix = key_prefix("test", KEY).encode()
    eventually(lambda: any(b":b:" in k for k in client.keys(prefix + b"*")), 3.0)

    keys = client.keys(prefix + b"*")
    assert {k.split(b"}")[0] for k in keys} == {b"hx:{test:" + KEY.encode()}
    for bucket in (k for k in keys if b":b:" in k):
        ttl = client.pttl(bucket)
        assert 0 < ttl <= (10.0 + 2 * 1.0 + 1.0) * 1000  # window + two buckets + 1 s


# -- garbage -----------------------------------------------------------------------------------


def test_garbage_in_the_fleets_keys_is_ignored_logged_and_repaired(
    nodes: list[CommandRegistry],
    redis_server: RedisServer,
    eventually: Eventually,
    captured_logs: list[dict[str, Any]],
) -> None:
    for registry in nodes:
        registry.ask(KEY)
    eventually(lambda: all(fleet_view_of(r) is not None for r in nodes), 3.0)
    client = redis_server.client()
    prefix = key_prefix("test", KEY)
    pickled = b"\x80\x04\x95\x1c\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94"
    client.delete(prefix + ":state", prefix + ":nodes")
    client.hset(prefix + ":state", mapping={"state": pickled, "epoch": "not a number"})
    client.set(prefix + ":nodes", pickled)
    now = int(client.time()[0])
    for bucket in range(now - 12, now + 2):  # every bucket the window can reach
        client.set(f"{prefix}:b:{bucket}", pickled)
    client.publish(nodes[0].fleet.channel, pickled)  # type: ignore[union-attr]
    client.publish(nodes[0].fleet.channel, b'{"key": "Get all Issues", "state": "ajar"}')  # type: ignore[union-attr]

    eventually(lambda: any(e["event"] == "fleet.garbage" for e in captured_logs), 3.0)
    for registry in nodes:
        assert registry.ask(KEY) == "issues"

    # the fleet still works: the scripts repaired what they write
    Dependency.down = True
    for _ in range(4):
        for registry in nodes:
            registry.ask(KEY)
    eventually(lambda: all(r.health(KEY).state == "open" for r in nodes), 3.0, "fleet open")
    assert not any(e["event"] == "fleet.failed" for e in captured_logs)


# -- the probe's verdict is fenced by its epoch ------------------------------------------------


def test_a_verdict_from_a_stale_epoch_changes_nothing(redis_server: RedisServer) -> None:
    store = Store(redis_server.url, timeout=1.0)
    prefix = key_prefix("test", KEY)
    client = redis_server.client()
    client.hset(prefix + ":state", mapping={"state": "half_open", "epoch": "20", "at": "1"})
    client.set(prefix + ":probe", "node-2|20")
    args = ("test-channel", KEY)

    stale_epoch, stale_node = store.run(
        [
            (RESOLVE, (prefix + ":state",), ("node-2", 19, "closed", 10000, 10, *args)),
            (RESOLVE, (prefix + ":state",), ("node-1", 20, "closed", 10000, 10, *args)),
        ]
    )
    assert stale_epoch[0] == stale_node[0] == b"stale"
    assert client.hget(prefix + ":state", "state") == b"half_open"

    (ok,) = store.run([(RESOLVE, (prefix + ":state",), ("node-2", 20, "open", 10000, 10, *args))])
    assert ok[0] == b"ok"
    assert client.hget(prefix + ":state", "state") == b"open"
    assert int(client.hget(prefix + ":state", "epoch") or 0) > 20
    assert client.get(prefix + ":probe") is None
    store.close()


# -- credentials, TLS settings, cluster --------------------------------------------------------


@pytest.mark.parametrize("which", ["password", "acl user"])
def test_a_fleet_connects_with_credentials_in_the_url(
    redis_auth_server: AuthRedisServer, which: str, eventually: Eventually
) -> None:
    url = redis_auth_server.password_url if which == "password" else redis_auth_server.user_url
    with CommandRegistry(fleet=fleet(url, "auth")) as registry:
        registry.register(GetAllIssues)
        registry.ask(KEY)

        eventually(lambda: (v := fleet_view_of(registry)) is not None and v.connected, 3.0)
        assert registry.fleet is not None
        assert redis_auth_server.user_password not in repr(registry.fleet)
        assert redis_auth_server.password not in repr(registry.fleet)


def test_a_wrong_password_is_a_disconnected_fleet_not_a_failed_call(
    redis_auth_server: AuthRedisServer,
    eventually: Eventually,
    captured_logs: list[dict[str, Any]],
) -> None:
    url = redis_auth_server.server.url_for("fleet", "wrong")
    with CommandRegistry(fleet=fleet(url, "intruder")) as registry:
        registry.register(GetAllIssues)
        assert registry.ask(KEY) == "issues"

        eventually(lambda: any(e["event"] == "fleet.disconnected" for e in captured_logs), 3.0)
        assert registry.ask(KEY) == "issues"
        assert registry.health(KEY).fleet is None
        assert "wrong" not in str([e for e in captured_logs if e["event"] == "fleet.disconnected"])


def test_the_fleet_runs_unchanged_on_a_redis_cluster(
    redis_cluster: RedisClusterServers, eventually: Eventually
) -> None:
    registries = [
        CommandRegistry(fleet=RedisFleet(redis_cluster.url, namespace="cluster", node=f"c{i}"))
        for i in (1, 2)
    ]
    try:
        for registry in registries:
            registry.register(GetAllIssues)
            registry.ask(KEY)
        eventually(lambda: all((v := fleet_view_of(r)) and v.nodes == 2 for r in registries), 5.0)
        assert registries[0].fleet is not None
        assert registries[0].fleet.subscribed.wait(5.0)
        assert registries[1].fleet is not None
        assert registries[1].fleet.subscribed.wait(5.0)

        Dependency.down = True
        for _ in range(4):
            for registry in registries:
                registry.ask(KEY)
        eventually(lambda: all(r.health(KEY).state == "open" for r in registries), 5.0)
        assert all(fleet_view_of(r).state == "open" for r in registries)
    finally:
        for registry in registries:
            registry.shutdown()


# -- Redis going away --------------------------------------------------------------------------


def test_losing_redis_is_logged_once_and_finding_it_again_too(
    nodes: list[CommandRegistry],
    redis_server: RedisServer,
    eventually: Eventually,
    captured_logs: list[dict[str, Any]],
) -> None:
    def count(event: str) -> int:
        return sum(e["event"] == event for e in captured_logs)

    for registry in nodes:
        registry.ask(KEY)
    eventually(lambda: all(fleet_view_of(r) is not None for r in nodes), 3.0)

    redis_server.kill()
    for registry in nodes:  # calls keep being answered by the local breakers
        started = time.monotonic()
        assert registry.ask(KEY) == "issues"
        assert time.monotonic() - started < 0.1
    eventually(lambda: count("fleet.disconnected") == 2, 3.0, "each node logs it")
    eventually(lambda: not any(fleet_view_of(r).connected for r in nodes), 3.0)
    time.sleep(0.5)  # several failed ticks: still one line per node
    assert count("fleet.disconnected") == 2
    assert all(
        e["log_level"] == "warning" for e in captured_logs if e["event"] == "fleet.disconnected"
    )

    redis_server.start()
    eventually(lambda: count("fleet.reconnected") == 2, 5.0, "each node logs it")
    for registry in nodes:
        registry.ask(KEY)
    eventually(lambda: all(fleet_view_of(r).connected for r in nodes), 5.0)
