"""The Redis test infrastructure itself, against real servers: they answer, crash and come back
on the same port, hang and recover, check passwords, and form a real cluster."""

from __future__ import annotations

import os
import time

import pytest
import redis
import redis.cluster
from redis_servers import (
    AuthRedisServer,
    RedisClusterServers,
    RedisServer,
    RedisServerError,
    no_retry,
)


def gone(pid: int) -> bool:
    """Whether no process has id ``pid`` (it exited and was reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# -- one server -------------------------------------------------------------------------------


def test_a_fresh_server_answers_ping_through_its_client_and_its_url(
    redis_server: RedisServer,
) -> None:
    assert redis_server.client().ping() is True
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    with redis.Redis.from_url(redis_server.url) as client:
        assert client.ping() is True


def test_a_client_gets_bytes(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.set("key", "value")
    assert client.get("key") == b"value"


def test_a_killed_server_refuses_connections_then_restarts_on_the_same_port_empty(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client(retry=no_retry())
    client.set("key", b"value")
    port, pid = redis_server.port, redis_server.pid

    redis_server.kill()
    assert gone(pid)
    with pytest.raises(redis.ConnectionError):
        client.ping()

    redis_server.start()
    assert (redis_server.port, redis_server.running) == (port, True)
    assert redis_server.pid != pid
    assert client.ping() is True  # the same client reconnects to the same port
    assert client.get("key") is None  # nothing was saved


def test_restart_replaces_a_running_server_on_the_same_port(redis_server: RedisServer) -> None:
    port, pid = redis_server.port, redis_server.pid
    redis_server.restart()
    assert redis_server.port == port
    assert redis_server.pid != pid
    assert gone(pid)
    assert redis_server.client().ping() is True


def test_a_paused_server_times_clients_out_and_answers_again_once_resumed(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client(socket_timeout=0.2, retry=no_retry())
    assert client.ping() is True

    redis_server.pause()
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        client.ping()
    assert time.monotonic() - started < 2.0
    assert redis_server.running  # hung, not dead

    redis_server.resume()
    assert client.ping() is True


def test_stop_ends_a_paused_server_and_may_be_called_again() -> None:
    server = RedisServer().start()
    pid, directory = server.pid, server.directory
    server.pause()

    server.stop()
    server.stop()

    assert gone(pid)
    assert not server.running
    assert not directory.exists()  # the temporary directory it made


def test_a_server_that_cannot_start_says_why_with_the_end_of_its_log() -> None:
    server = RedisServer(args=["--no-such-directive", "1"])
    try:
        with pytest.raises(RedisServerError, match=r"(?s)exited with status 1.*no-such-directive"):
            server.start()
        assert not server.running
    finally:
        server.stop()


# -- passwords --------------------------------------------------------------------------------


def test_a_client_without_the_password_is_refused(redis_auth_server: AuthRedisServer) -> None:
    url = redis_auth_server.server.url_for(None, None)
    with (
        redis.Redis.from_url(url, retry=no_retry()) as client,
        pytest.raises((redis.AuthenticationError, redis.ResponseError)),  # NOAUTH
    ):
        client.ping()


def test_a_wrong_password_is_refused(redis_auth_server: AuthRedisServer) -> None:
    url = redis_auth_server.server.url_for(redis_auth_server.user, "wrong")
    with (
        redis.Redis.from_url(url, retry=no_retry()) as client,
        pytest.raises(redis.AuthenticationError),
    ):
        client.ping()


def test_the_password_url_logs_in_as_the_default_user(redis_auth_server: AuthRedisServer) -> None:
    assert redis_auth_server.password_url == redis_auth_server.server.url
    with redis.Redis.from_url(redis_auth_server.password_url) as client:
        assert client.acl_whoami() == "default"


def test_the_user_url_logs_in_as_the_acl_user(redis_auth_server: AuthRedisServer) -> None:
    assert redis_auth_server.user_url.startswith("redis://fleet:")
    with redis.Redis.from_url(redis_auth_server.user_url) as client:
        assert client.acl_whoami() == "fleet"
        client.set("key", b"value")
        assert client.get("key") == b"value"


def test_the_servers_own_client_logs_in(redis_auth_server: AuthRedisServer) -> None:
    assert redis_auth_server.server.client().ping() is True


# -- a cluster --------------------------------------------------------------------------------


def test_every_node_of_the_cluster_is_a_master_of_a_third_of_the_slots(
    redis_cluster: RedisClusterServers,
) -> None:
    client = redis_cluster.client()
    masters = {node.port for node in client.get_primaries()}
    assert masters == set(redis_cluster.ports)
    assert client.cluster_info()["cluster_state"] == "ok"


def test_keys_in_different_slots_live_on_their_own_nodes(
    redis_cluster: RedisClusterServers,
) -> None:
    client = redis_cluster.client()
    by_port = {node.port: node for node in redis_cluster}
    owners: dict[int, str] = {}  # a key for each node
    for index in range(1000):
        key = f"fleet:key:{index}"
        owners.setdefault(client.get_node_from_key(key).port, key)
        if len(owners) == len(by_port):
            break
    assert len({client.keyslot(key) for key in owners.values()}) == len(by_port)

    for key in owners.values():
        client.set(key, key.encode())
    for port, key in owners.items():
        assert client.get(key) == key.encode()
        # The node that owns the key's slot holds it: the cluster really shards.
        assert by_port[port].client().get(key) == key.encode()


SWAP = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return {redis.call('GET', KEYS[2]), redis.call('GET', KEYS[1])}
"""


def test_a_script_touches_two_keys_that_share_a_hash_tag(
    redis_cluster: RedisClusterServers,
) -> None:
    client = redis_cluster.client()
    first, second = "{ns:key}a", "{ns:key}b"
    assert client.keyslot(first) == client.keyslot(second)

    assert client.eval(SWAP, 2, first, second, "one", "two") == [b"two", b"one"]
    assert client.mget(first, second) == [b"one", b"two"]
