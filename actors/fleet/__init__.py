"""Fleet-wide circuits on Redis: every replica learns of an outage together, one probe per fleet.

``CommandRegistry(fleet=RedisFleet("redis://127.0.0.1:6379/0", namespace="checkout"))``. Needs
the ``redis`` extra (``pip install "hystrix-actors[redis]"``). See docs/fleet.md for the
protocol and its failure modes.

Nothing here is on a call's path: admission, short-circuits and answers stay local. A fleet actor
flushes this node's counts every ``publish_interval`` and reads the fleet's back in the same
round trip; a listener thread adopts broadcasts the moment they are published.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import urllib.parse
from typing import Any

try:
    import redis  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    msg = (
        "actors.fleet needs redis-py: install the 'redis' extra"
        ' (pip install "hystrix-actors[redis]")'
    )
    raise ImportError(msg) from exc

import pykka

from supervision import FleetPolicy, FleetState, FleetView, Throttle
from supervision.checks import MAX_SECONDS, check_number, show

from ..fleet_host import FleetHost
from ..log import logger
from .actor import FleetActor, Verdict, follow
from .listener import Listener
from .seat import Seat, key_prefix
from .store import Store

__all__ = ["FleetPolicy", "FleetView", "RedisFleet", "key_prefix"]

_MAX_NAME = 200

#: At most one ``fleet.garbage`` line per key per this many seconds.
GARBAGE_LOG_INTERVAL = 10.0


def _check_name(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_NAME:
        msg = f"{name} must be a non-empty str of at most {_MAX_NAME} characters, got {show(value)}"
        raise ValueError(msg)
    if any(c in value for c in "{}|\r\n"):
        msg = f"{name} must not contain '{{', '}}', '|' or a line break, got {show(value)}"
        raise ValueError(msg)
    return value


class RedisFleet:
    """This node's membership of a fleet sharing circuits through Redis.

    ``url``: a redis-py URL (``redis://``, ``rediss://`` for TLS, ``unix://``; a password or an
    ACL user and password go in it: ``redis://user:secret@host:6379/0``). A Redis Cluster is
    recognised by itself. ``namespace``: the fleet (one service); nodes of different namespaces
    never share anything. ``node``: this node's name, unique in the fleet (default
    ``"<hostname>:<pid>"``). ``publish_interval``: seconds between flushes of this node's
    counts. ``timeout``: seconds any Redis operation may take before the fleet gives up on it
    (it never delays a call). Other keyword arguments go to redis-py's client.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "hystrix",
        node: str | None = None,
        publish_interval: float = 0.1,
        timeout: float = 0.25,
        heartbeat: float = 1.0,
        lease_margin: float = 1.0,
        snapshot_interval: float = 1.0,
        cluster: bool | None = None,
        **redis_options: Any,
    ) -> None:
        if not isinstance(url, str) or "://" not in url:
            msg = f"url must be a redis URL such as 'redis://127.0.0.1:6379/0', got {show(url)}"
            raise ValueError(msg)
        self.url = url
        self.namespace = _check_name("namespace", namespace)
        self.node = _check_name(
            "node", f"{socket.gethostname()}:{os.getpid()}" if node is None else node
        )
        check_number(
            "publish_interval", publish_interval, low=0.001, unit="seconds", high=MAX_SECONDS
        )
        if publish_interval > 10:
            msg = f"publish_interval must be at most 10 seconds, got {publish_interval!r}"
            raise ValueError(msg)
        check_number("timeout", timeout, unit="seconds", high=MAX_SECONDS)
        check_number("heartbeat", heartbeat, unit="seconds", high=MAX_SECONDS)
        check_number("lease_margin", lease_margin, unit="seconds", allow_low=True, high=MAX_SECONDS)
        check_number("snapshot_interval", snapshot_interval, unit="seconds", high=MAX_SECONDS)
        if cluster is not None and not isinstance(cluster, bool):
            msg = f"cluster must be True, False or None (detect), got {show(cluster)}"
            raise ValueError(msg)
        self.publish_interval = float(publish_interval)
        self.timeout = float(timeout)
        self.heartbeat = max(float(heartbeat), self.publish_interval)
        self.lease_margin = float(lease_margin)
        self.snapshot_interval = float(snapshot_interval)
        #: Milliseconds a node counts as live after its last report (3 heartbeats).
        self.live_ms = round(3000 * self.heartbeat)
        #: Seconds a node's dashboard snapshot outlives its last write.
        self.snapshot_ttl = 3 * max(self.snapshot_interval, self.heartbeat)
        #: The channel fleet states are published on.
        self.channel = f"hx:fleet:{self.namespace}"
        #: The set of the fleet's command keys (for the fleet-wide stream).
        self.keys_set = f"hx:{{{self.namespace}}}:keys"
        self._cluster = cluster
        self._options = redis_options
        #: False while Redis cannot be reached (None before the first try).
        self.connected: bool | None = None
        self._lock = threading.Lock()
        self._actor: pykka.ActorRef[Any] | None = None
        self._listener: Listener | None = None
        self._store: Store | None = None
        self._attached = False
        #: Each key's seat, as the fleet actor last swapped it in (read by the listener).
        self.seats: dict[str, Seat] = {}
        self._garbage: dict[str, Throttle] = {}
        self._log = logger.bind(component="fleet", node=self.node, namespace=self.namespace)

    @property
    def safe_url(self) -> str:
        """The URL without its password (for logs)."""
        parts = urllib.parse.urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return urllib.parse.urlunsplit(parts._replace(netloc=user + netloc))

    def new_store(self) -> Store:
        return Store(self.url, timeout=self.timeout, cluster=self._cluster, **self._options)

    def attach(self, host: FleetHost) -> None:
        with self._lock:
            if self._attached:
                msg = "this RedisFleet already serves a registry: make one RedisFleet per registry"
                raise ValueError(msg)
            self._attached = True
            self._store = self.new_store()
            actor = FleetActor.start(self, host, self._store, self._log)
            self._actor = actor
            host.subscribe(self._on_transition)
            self._listener = Listener(
                self.new_store(),
                self.channel,
                self._on_broadcast,
                self.garbage_found,
                self._log,
                name=f"hystrix-fleet-{self.namespace}",
            )
            self._listener.start()

    def _on_broadcast(self, key: str, state: FleetState) -> None:
        seat = self.seats.get(key)
        if seat is not None:
            follow(seat, state, self.node)

    def garbage_found(self, key: str, detail: str) -> None:
        """Log a value read from Redis that our protocol never writes (at most one line per
        key per ``GARBAGE_LOG_INTERVAL``): it was ignored."""
        with self._lock:
            throttle = self._garbage.get(key)
            if throttle is None:
                throttle = self._garbage[key] = Throttle(GARBAGE_LOG_INTERVAL, time.monotonic)
            held_back = throttle.allow()
        if held_back is not None:
            self._log.warning(
                "fleet.garbage", command=key or None, detail=detail, held_back=held_back
            )

    def _on_transition(self, key: str, moved: Any) -> None:
        """A probe this node was granted ended: tell the fleet at once."""
        if moved.scope != "fleet" or moved.from_state.value != "half_open":
            return
        actor = self._actor
        if actor is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                actor.tell(Verdict(key, moved.fleet_epoch, moved.to_state.value))

    @property
    def subscribed(self) -> threading.Event:
        """Set while the listener is subscribed to the fleet's channel."""
        listener = self._listener
        if listener is None:
            return threading.Event()
        return listener.subscribed

    def close(self) -> None:
        """Stop the fleet's actor, its listener and their connections (idempotent). A registry
        shut down closes its fleet; one started afresh (``reset()`` after ``shutdown()``)
        attaches it again."""
        with self._lock:
            actor, self._actor = self._actor, None
            listener, self._listener = self._listener, None
            self._attached = False
            self.seats = {}
        if listener is not None:
            listener.close()
        if actor is not None:
            try:
                actor.stop(block=True, timeout=5.0)
            except pykka.ActorDeadError:
                pass
            except pykka.Timeout:
                self._log.warning("fleet.stop_timed_out")

    def __repr__(self) -> str:
        return (
            f"RedisFleet({self.safe_url!r}, namespace={self.namespace!r}, node={self.node!r},"
            f" publish_interval={self.publish_interval!r})"
        )
