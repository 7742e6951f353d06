"""Fleet fixtures: real Redis servers (Debian's ``redis-server``), nothing mocked.

A fresh server for each test (``redis_server``), one that wants passwords
(``redis_auth_server``), and a real three-node Redis Cluster shared by a module's tests
(``redis_cluster``). Without ``redis-server`` the tests are skipped, unless the run needs them
(``HYSTRIX_REDIS_REQUIRED=1`` or ``CI``, as ``.ci/run`` sets): then they fail.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis_servers import AuthRedisServer, RedisClusterServers, RedisServer

#: Passwords with characters a URL must quote, so the URLs are tested too.
PASSWORD = "default pass:w@rd/1%"
FLEET_USER = "fleet"
FLEET_PASSWORD = "fleet pass:w@rd/2%"


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh, empty Redis server with no password, stopped after the test."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_auth_server() -> Iterator[AuthRedisServer]:
    """A fresh Redis server whose default user has a password, with an ACL user "fleet"."""
    with RedisServer(password=PASSWORD, users={FLEET_USER: FLEET_PASSWORD}) as server:
        yield AuthRedisServer(
            server=server, password=PASSWORD, user=FLEET_USER, user_password=FLEET_PASSWORD
        )


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A real Redis Cluster of three masters, shared by the tests of a module."""
    with RedisClusterServers() as cluster:
        yield cluster
