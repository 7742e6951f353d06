"""The fleet's link to Redis: one client, the scripts, and nothing on any call's path.

Every method runs on the fleet's own threads with short socket timeouts and no retries of
redis-py's own (the fleet retries on its next tick): a slow, paused or dead Redis costs the
fleet a tick, never a caller a wait. Any Redis fault comes out as ``StoreError``. A Redis
Cluster is recognised by itself (``INFO cluster``); ``rediss://`` URLs (TLS) and credentials in
the URL go to redis-py as they are.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.retry import Retry

from .scripts import FLUSH, RESOLVE

__all__ = ["Call", "Store", "StoreError"]

#: One script run: (script, keys, args).
Call = tuple[str, Sequence[str], Sequence[Any]]


class StoreError(Exception):
    """Redis could not be reached, or did not answer in time."""


def _sha(source: str) -> str:
    return hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()


_SHAS = {FLUSH: _sha(FLUSH), RESOLVE: _sha(RESOLVE)}


class Store:
    """A Redis (or Redis Cluster) client for the fleet, connected lazily."""

    def __init__(
        self, url: str, *, timeout: float, cluster: bool | None = None, **options: Any
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._cluster_wanted = cluster
        self._options = options
        self.client: redis.Redis | RedisCluster | None = None
        self.cluster = False

    def _kwargs(self) -> dict[str, Any]:
        return {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "health_check_interval": 0,
            **self._options,
        }

    def connect(self) -> redis.Redis | RedisCluster:
        """The client, connected (and the scripts loaded) if it was not."""
        if self.client is not None:
            return self.client
        try:
            cluster = self._cluster_wanted
            if cluster is None:
                probe = redis.Redis.from_url(
                    self.url, retry=Retry(NoBackoff(), 0), **self._kwargs()
                )
                try:
                    info = probe.info("cluster")
                finally:
                    probe.close()
                cluster = bool(info.get("cluster_enabled"))
            client: redis.Redis | RedisCluster
            if cluster:
                client = RedisCluster.from_url(
                    self.url, retry=Retry(NoBackoff(), 0), **self._kwargs()
                )
            else:
                client = redis.Redis.from_url(
                    self.url, retry=Retry(NoBackoff(), 0), **self._kwargs()
                )
            self._load(client)
        except RedisError as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc
        self.client, self.cluster = client, cluster
        return client

    def _load(self, client: redis.Redis | RedisCluster) -> None:
        for source in _SHAS:
            client.script_load(source)

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a broken client must not raise
                client.close()

    def broken(self) -> None:
        """A fault was seen: drop the client; the next ``connect`` starts afresh."""
        self.close()

    def run(self, calls: Sequence[Call]) -> list[Any]:
        """Run the scripts in one round trip (one per cluster node), in order. Each result is
        the script's reply, or the ``ResponseError`` it raised (a key holding garbage the
        script could not repair); a lost connection raises ``StoreError``."""
        if not calls:
            return []
        client = self.connect()
        try:
            results = self._pipeline(client, calls)
            if any(isinstance(r, NoScriptError) for r in results):  # Redis restarted: reload
                self._load(client)
                results = self._pipeline(client, calls)
        except RedisError as exc:
            self.broken()
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc
        for result in results:
            if isinstance(result, RedisError) and not isinstance(result, ResponseError):
                self.broken()
                raise StoreError(f"{type(result).__name__}: {result}")
        return results

    def _pipeline(self, client: redis.Redis | RedisCluster, calls: Sequence[Call]) -> list[Any]:
        if isinstance(client, RedisCluster):
            return self._cluster_pipelines(client, calls)
        pipe = client.pipeline(transaction=False)
        for source, keys, args in calls:
            pipe.evalsha(_SHAS[source], len(keys), *keys, *args)
        return list(pipe.execute(raise_on_error=False))

    def _cluster_pipelines(self, client: RedisCluster, calls: Sequence[Call]) -> list[Any]:
        """redis-py's cluster pipeline refuses scripts: one plain pipeline per master, each
        with the calls whose keys it serves (a call's keys share one hash tag). A key that
        moved (resharding) answers MOVED: the topology is read again at the next tick."""
        groups: dict[str, list[int]] = {}
        nodes: dict[str, Any] = {}
        for i, (_, keys, _) in enumerate(calls):
            node = client.get_node_from_key(keys[0])  # type: ignore[no-untyped-call]
            groups.setdefault(node.name, []).append(i)
            nodes[node.name] = node
        results: list[Any] = [None] * len(calls)
        for name, indexes in groups.items():
            connection = client.get_redis_connection(nodes[name])
            pipe = connection.pipeline(transaction=False)
            for i in indexes:
                source, keys, args = calls[i]
                pipe.evalsha(_SHAS[source], len(keys), *keys, *args)
            for i, result in zip(indexes, pipe.execute(raise_on_error=False), strict=True):
                if isinstance(result, ResponseError) and str(result).startswith(("MOVED", "ASK")):
                    client.nodes_manager.initialize()
                    raise StoreError(f"the cluster moved a key: {result}")
                results[i] = result
        return results

    def write(self, commands: Sequence[tuple[Any, ...]]) -> None:
        """Plain commands in one round trip; a lost connection raises ``StoreError``."""
        if not commands:
            return
        client = self.connect()
        try:
            pipe = client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            pipe.execute(raise_on_error=False)
        except RedisError as exc:
            self.broken()
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    def command(self, *args: Any, **kwargs: Any) -> Any:
        """One plain command (``HSET``, ``HGETALL``, ...), with the same fault handling."""
        client = self.connect()
        try:
            return client.execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisError as exc:
            if not isinstance(exc, ResponseError):
                self.broken()
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    def pubsub(self) -> Any:
        """A new pub/sub connection (the listener's own)."""
        try:
            return self.connect().pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        except RedisError as exc:
            self.broken()
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc
