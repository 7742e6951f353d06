"""The fleet-wide dashboard stream's source: every live node's snapshot of each key, read from
Redis and summed, as Netflix's Turbine summed the streams of a cluster's hosts.

Every node's fleet actor writes, every ``snapshot_interval``, each key's two dashboard messages
(``actors.stream``) to ``hx:{ns:key}:snap`` (a hash: field the node, value the JSON
``{"command": ..., "pool": ...}``) and the key to ``hx:{ns}:keys``. A ``FleetReader`` reads them
back for ``/hystrix.stream?scope=fleet``: the nodes live within the fleet's ``live_ms`` (their
last report in ``hx:{ns:key}:nodes`` against Redis's ``TIME``), their snapshots, and the fleet
circuit's state (``hx:{ns:key}:state``).

Nothing read is trusted: a snapshot must be JSON of at most ``MAX_SNAPSHOT_BYTES``, an object
holding a command message named after its key and a pool message, whose figures are numbers
(finite, >= 0) and whose other fields have the types ``actors.stream`` writes. Anything else is
ignored (the node does not count) and reported through ``fleet.garbage_found`` (the throttled
``fleet.garbage`` warning). Only the fields the local stream sends come out.

How nodes add up (Turbine's rules, Hystrix's meanings):

* the figures of ``COMMAND_SUMS``, ``LATENCIES`` (percentile by percentile) and ``POOL_SUMS``
  are summed: the dashboard divides the latencies by ``reportingHosts`` to show a per-host mean;
* ``reportingHosts`` is the number of live nodes summed;
* ``errorPercentage`` is recomputed from the summed ``errorCount`` / ``requestCount`` (truncated,
  as Hystrix does), not the sum of the nodes' percentages, then multiplied by ``reportingHosts``
  because the Hystrix Dashboard (and ours) divides it by ``reportingHosts``, as it must for
  Turbine's sums: divided, it reads the fleet's true error percentage;
* ``isCircuitBreakerOpen`` and ``circuitState`` are the fleet circuit's (its state in Redis:
  closed when it has none), ``status`` the worst of the nodes' ("down" > "restarting" > "up"),
  and ``openHosts`` (an extension) counts the nodes whose own circuit is open;
* ``faultInjected`` is true when a node has a fault injection on the key (``registry.inject``),
  and ``faultInjection`` the first such node's description (else null);
* ``group``, ``threadPool`` and every ``propertyValue_*`` come from one node (the first by
  name); ``currentTime`` is Redis's time of the read.

Reads happen off every call's path, on the thread of the stream that asks (a WSGI connection's
thread, an ASGI app's worker thread), with the fleet's short Redis timeouts. One reader serves
every stream of an app: at most one read per ``fresh`` seconds; after a failure, none for
``retry_after`` seconds. ``fleet_events`` makes a tick of the stream: a named ``fleet`` event
saying whether Redis could be read, then the sums, or this node's own messages when it could not.
A key with ``FleetPolicy(mode="off")`` writes no snapshot, so it is not in the fleet's stream.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError, ResponseError

from supervision import CircuitState, FleetState
from supervision.checks import show
from supervision.fleet import GarbageError, parse_int, parse_state
from supervision.snapshot import PERCENTILES, CommandMetrics

from ..log import logger
from ..stream import COMMAND_SUMS, LATENCIES, POOL_SUMS, batch, sse_event
from .seat import key_prefix
from .store import Store, StoreError

if TYPE_CHECKING:
    from .settings import FleetSettings

__all__ = [
    "FRESH",
    "MAX_KEYS",
    "MAX_NODES",
    "MAX_SNAPSHOT_BYTES",
    "RETRY_AFTER",
    "FleetBatch",
    "FleetReader",
    "Snapshot",
    "fleet_events",
    "parse_snapshot",
    "sum_command",
    "sum_pool",
]

#: The longest snapshot value read (a key's two messages take about 2.5 KB).
MAX_SNAPSHOT_BYTES = 32 * 1024
#: At most this many keys are read (the first by name), and this many live nodes per key.
MAX_KEYS = 1000
MAX_NODES = 1000
#: Seconds a read serves every stream before the next one (a node rewrites its snapshots
#: every second; a read of 100 keys on 3 nodes takes about 25-40 ms of this process's time).
FRESH = 0.5
#: Seconds without a try after a failed read.
RETRY_AFTER = 1.0

#: Statuses, from the best to the worst.
STATUSES: tuple[str, ...] = ("up", "restarting", "down")
_STATES = frozenset(state.value for state in CircuitState)
_STATE_FIELDS = ("state", "epoch", "at", "by", "holder")
_MAX_NUMBER = 2**53  # the largest integer a browser's JSON keeps exact
_MAX_TEXT = 1024
#: The command message's fields beyond the summed ones (the local stream's, no others).
_COMMAND_FIELDS = frozenset(
    {
        "type",
        "name",
        "group",
        "currentTime",
        "isCircuitBreakerOpen",
        "errorPercentage",
        "reportingHosts",
        "threadPool",
        "circuitState",
        "status",
        "faultInjected",
        "faultInjection",
        *COMMAND_SUMS,
        *LATENCIES,
    }
)
_POOL_FIELDS = frozenset({"type", "name", "currentTime", "reportingHosts", *POOL_SUMS})


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """One node's messages for one key, validated."""

    node: str
    command: Mapping[str, Any]
    pool: Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class FleetBatch:
    """One read of the fleet."""

    #: A summed ``HystrixCommand`` message per key (sorted by key), then one
    #: ``HystrixThreadPool`` message per pool.
    messages: tuple[Mapping[str, Any], ...] = ()
    #: The live nodes whose snapshots were summed, for any key.
    nodes: tuple[str, ...] = ()
    #: Why the fleet could not be read; None when it was.
    error: str | None = None
    #: Redis's time of the read (ms).
    now_ms: int = 0


# -- validating a snapshot -----------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _object(raw: object, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise GarbageError(f"{what} is not a JSON object: {show(raw, 40)}")
    return raw


def _figure(message: Mapping[str, Any], name: str) -> None:
    value = message.get(name)
    if type(value) is int and 0 <= value <= _MAX_NUMBER:  # the common case, first
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GarbageError(f"{name} is not a number: {show(value, 40)}")
    if not 0 <= value <= _MAX_NUMBER:  # NaN compares false
        raise GarbageError(f"{name} is not a number in [0, 2**53]: {show(value, 40)}")


def _text(message: Mapping[str, Any], name: str) -> None:
    value = message.get(name)
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise GarbageError(f"{name} is not a short string: {show(value, 40)}")


def _properties(message: Mapping[str, Any]) -> None:
    for name, value in message.items():
        if not name.startswith("propertyValue_"):
            continue
        number = type(value) in (int, float) and math.isfinite(value)
        text = isinstance(value, str) and len(value) <= _MAX_TEXT
        if not (value is None or isinstance(value, bool) or number or text):
            raise GarbageError(f"{name} is not a number, a boolean or a string: {show(value, 40)}")


def _command(raw: object, key: str) -> dict[str, Any]:
    message = _object(raw, "the command message")
    if message.get("type") != "HystrixCommand":
        raise GarbageError(f"the command message's type is {show(message.get('type'), 40)}")
    if message.get("name") != key:
        raise GarbageError(f"the command message is named {show(message.get('name'), 40)}")
    for name in COMMAND_SUMS:
        _figure(message, name)
    for name in LATENCIES:
        latencies = _object(message.get(name), name)
        for percentile in PERCENTILES:
            _figure(latencies, percentile)
    _text(message, "group")
    _text(message, "threadPool")
    if not isinstance(message.get("isCircuitBreakerOpen"), bool):
        raise GarbageError("isCircuitBreakerOpen is not a boolean")
    if message.get("circuitState") not in _STATES:
        raise GarbageError(f"circuitState is {show(message.get('circuitState'), 40)}")
    if message.get("status") not in STATUSES:
        raise GarbageError(f"status is {show(message.get('status'), 40)}")
    if not isinstance(message.get("faultInjected", False), bool):
        raise GarbageError("faultInjected is not a boolean")
    if message.get("faultInjection") is not None:
        _text(message, "faultInjection")
    _properties(message)
    return message


def _pool(raw: object) -> dict[str, Any]:
    message = _object(raw, "the pool message")
    if message.get("type") != "HystrixThreadPool":
        raise GarbageError(f"the pool message's type is {show(message.get('type'), 40)}")
    _text(message, "name")
    for name in POOL_SUMS:
        _figure(message, name)
    _properties(message)
    return message


def parse_snapshot(key: str, node: str, raw: object) -> Snapshot:
    """A node's snapshot of ``key`` as Redis holds it (bytes or str), checked field by field;
    ``GarbageError`` says what is wrong."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if not isinstance(raw, bytes):
        raise GarbageError(f"a snapshot that is not text: {show(raw, 40)}")
    if len(raw) > MAX_SNAPSHOT_BYTES:
        raise GarbageError(f"a snapshot of {len(raw)} bytes (at most {MAX_SNAPSHOT_BYTES})")
    try:
        decoded: Any = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise GarbageError(f"a snapshot that is not JSON: {show(raw, 40)}") from None
    snapshot = _object(decoded, "the snapshot")
    return Snapshot(node, _command(snapshot.get("command"), key), _pool(snapshot.get("pool")))


# -- summing -------------------------------------------------------------------------------------


def _kept(message: Mapping[str, Any], fields: frozenset[str]) -> dict[str, Any]:
    """The fields of one node's message that come out (in its order), others dropped."""
    return {k: v for k, v in message.items() if k in fields or k.startswith("propertyValue_")}


def sum_command(
    key: str, snapshots: Sequence[Snapshot], state: FleetState, now_ms: int
) -> dict[str, Any]:
    """The fleet's ``HystrixCommand`` message for ``key`` (see the module's doc)."""
    commands = [s.command for s in snapshots]
    hosts = len(commands)
    message = _kept(commands[0], _COMMAND_FIELDS)
    for name in COMMAND_SUMS:
        message[name] = sum(c[name] for c in commands)
    for name in LATENCIES:
        message[name] = {p: sum(c[name][p] for c in commands) for p in PERCENTILES}
    requests, errors = message["requestCount"], message["errorCount"]
    percent = min(100, int(100 * errors / requests)) if requests > 0 else 0
    message.update(
        type="HystrixCommand",
        name=key,
        currentTime=now_ms,
        isCircuitBreakerOpen=state.state is CircuitState.OPEN,
        errorPercentage=percent * hosts,
        reportingHosts=hosts,
        circuitState=state.state.value,
        status=max((c["status"] for c in commands), key=STATUSES.index),
        openHosts=sum(c["circuitState"] == CircuitState.OPEN.value for c in commands),
        faultInjected=any(c.get("faultInjected") is True for c in commands),
        faultInjection=next(
            (c.get("faultInjection") for c in commands if c.get("faultInjected") is True), None
        ),
    )
    return message


def sum_pool(snapshots: Sequence[Snapshot], now_ms: int) -> dict[str, Any]:
    """The fleet's ``HystrixThreadPool`` message for one key's pools (see the module's doc)."""
    pools = [s.pool for s in snapshots]
    message = _kept(pools[0], _POOL_FIELDS)
    for name in POOL_SUMS:
        message[name] = sum(p[name] for p in pools)
    message.update(type="HystrixThreadPool", currentTime=now_ms, reportingHosts=len(pools))
    return message


# -- reading -------------------------------------------------------------------------------------


def _decoded(raw: object) -> str | None:
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return raw if isinstance(raw, str) else None


def _pipeline(store: Store, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Plain commands in one round trip (one per cluster node), with their replies: a command
    refused (``WRONGTYPE``: garbage) comes back as its ``ResponseError``; a lost connection
    raises ``StoreError``, as ``Store.run`` does for scripts."""
    if not commands:
        return []
    client = store.connect()
    try:
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        replies = list(pipe.execute(raise_on_error=False))
    except RedisError as exc:
        store.broken()
        raise StoreError(f"{type(exc).__name__}: {exc}") from exc
    for reply in replies:
        if isinstance(reply, RedisError) and not isinstance(reply, ResponseError):
            store.broken()
            raise StoreError(f"{type(reply).__name__}: {reply}")
    return replies


class FleetReader:
    """Reads and sums the fleet's snapshots for every fleet-wide stream of one app.

    ``read()`` never raises: a Redis fault gives a ``FleetBatch`` with its ``error``. It holds a
    lock while it reads, so streams asking at once share one read."""

    def __init__(
        self,
        fleet: FleetSettings,
        *,
        fresh: float = FRESH,
        retry_after: float = RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fleet = fleet
        self._fresh = fresh
        self._retry_after = retry_after
        self._clock = clock
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._batch: FleetBatch | None = None
        #: (key, node) -> the raw snapshot last parsed and what it gave (a node rewrites its
        #: snapshot once a second; reads come more often).
        self._parsed: dict[tuple[str, str], tuple[object, Snapshot]] = {}
        self._until = 0.0
        self._closed = False
        self._log = logger.bind(component="fleet", node=fleet.node, namespace=fleet.namespace)

    def read(self, also: Iterable[str] = ()) -> FleetBatch:
        """The fleet's summed messages, at most ``fresh`` seconds old. ``also``: keys to read
        even if the fleet's key set does not list them (this node's own: a Redis that lost its
        data lists them again only as nodes notice)."""
        with self._lock:
            if self._closed:
                return FleetBatch(error="the stream's app is closed")
            now = self._clock()
            if self._batch is not None and now < self._until:
                return self._batch
            if self._store is None:
                self._store = self.fleet.new_store()
            failed = self._batch is not None and self._batch.error is not None
            try:
                batch = self._read(self._store, also)
            except StoreError as exc:
                batch = FleetBatch(error=f"Redis cannot be reached: {exc}"[:200])
            except Exception as exc:  # a bug must not end the stream: say so, try again later
                self._log.exception("stream.fleet_failed", error=repr(exc))
                batch = FleetBatch(error=f"the fleet could not be read: {exc!r}"[:200])
            if batch.error is None:
                self._until = now + self._fresh
                if failed:
                    self._log.info("stream.fleet_available")
            else:
                self._until = now + self._retry_after
                if not failed:
                    self._log.warning("stream.fleet_unavailable", error=batch.error)
            self._batch = batch
            if self._closed:  # closed during the read
                self._close_store()
            return batch

    def close(self) -> None:
        """Close the reader's connection (now, or when the read in progress ends); later reads
        answer at once with an error."""
        self._closed = True
        if self._lock.acquire(blocking=False):
            try:
                self._close_store()
            finally:
                self._lock.release()

    def _close_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def _read(self, store: Store, also: Iterable[str]) -> FleetBatch:
        fleet = self.fleet
        now_ms = _time_ms(store.command("TIME"))
        (members,) = _pipeline(store, [("SMEMBERS", fleet.keys_set)])
        keys = self._keys(members, also)
        prefixes = [key_prefix(fleet.namespace, key) for key in keys]
        since = now_ms - fleet.live_ms
        replies = _pipeline(
            store,
            [
                command
                for prefix in prefixes
                for command in (
                    ("ZRANGEBYSCORE", f"{prefix}:nodes", since, "+inf"),
                    ("HMGET", f"{prefix}:state", *_STATE_FIELDS),
                )
            ],
        )
        wanted: list[tuple[str, str, list[str], FleetState]] = []
        for i, (key, prefix) in enumerate(zip(keys, prefixes, strict=True)):
            nodes = self._nodes(key, replies[2 * i])
            if nodes:
                wanted.append((key, prefix, nodes, self._state(key, replies[2 * i + 1])))
        values = _pipeline(store, [("HMGET", f"{p}:snap", *nodes) for _, p, nodes, _ in wanted])
        commands: list[Mapping[str, Any]] = []
        pools: dict[str, Mapping[str, Any]] = {}
        seen: set[str] = set()
        parsed, self._parsed = self._parsed, {}
        for (key, _, nodes, state), raw in zip(wanted, values, strict=True):
            snapshots = self._snapshots(key, nodes, raw, parsed)
            if not snapshots:
                continue
            commands.append(sum_command(key, snapshots, state, now_ms))
            pool = sum_pool(snapshots, now_ms)
            pools.setdefault(pool["name"], pool)
            seen.update(s.node for s in snapshots)
        return FleetBatch((*commands, *pools.values()), tuple(sorted(seen)), None, now_ms)

    def _garbage(self, key: str, detail: str) -> None:
        self.fleet.garbage_found(key, detail)

    def _keys(self, reply: object, also: Iterable[str]) -> list[str]:
        if not isinstance(reply, set | list | tuple):
            self._garbage("", f"{self.fleet.keys_set} is not a set: {show(reply, 60)}")
            reply = ()
        listed = {k for k in map(_decoded, reply) if k and len(k) <= _MAX_TEXT}
        keys = sorted(listed.union(also))
        if len(keys) > MAX_KEYS:
            self._garbage("", f"{self.fleet.keys_set} lists {len(keys)} keys: read {MAX_KEYS}")
            keys = keys[:MAX_KEYS]
        return keys

    def _nodes(self, key: str, reply: object) -> list[str]:
        if isinstance(reply, ResponseError) or not isinstance(reply, list):
            self._garbage(key, f"the key's nodes are not a sorted set: {show(reply, 60)}")
            return []
        nodes = sorted({n for n in map(_decoded, reply) if n and len(n) <= _MAX_TEXT})
        if len(nodes) > MAX_NODES:
            self._garbage(key, f"{len(nodes)} live nodes: read {MAX_NODES}")
            nodes = nodes[:MAX_NODES]
        return nodes

    def _state(self, key: str, reply: object) -> FleetState:
        try:
            if isinstance(reply, ResponseError) or not isinstance(reply, list):
                raise GarbageError(f"not a hash: {show(reply, 60)}")
            return parse_state(dict(zip(_STATE_FIELDS, reply, strict=False)))
        except GarbageError as exc:
            self._garbage(key, f"the fleet state was read as closed: {exc}")
            return FleetState()

    def _snapshots(
        self,
        key: str,
        nodes: Sequence[str],
        reply: object,
        parsed: Mapping[tuple[str, str], tuple[object, Snapshot]],
    ) -> list[Snapshot]:
        if isinstance(reply, ResponseError) or not isinstance(reply, list):
            self._garbage(key, f"the key's snapshots are not a hash: {show(reply, 60)}")
            return []
        snapshots = []
        for node, raw in zip(nodes, reply, strict=False):
            if raw is None:  # live, but its snapshot is not written yet (or expired)
                continue
            before = parsed.get((key, node))
            if before is not None and before[0] == raw:
                snapshot = before[1]
            else:
                try:
                    snapshot = parse_snapshot(key, node, raw)
                except GarbageError as exc:
                    detail = f"the dashboard snapshot of node {node!r} was ignored: {exc}"
                    self._garbage(key, detail)
                    continue
            self._parsed[key, node] = (raw, snapshot)
            snapshots.append(snapshot)
        return snapshots


def fleet_events(reader: FleetReader, metrics: Sequence[CommandMetrics]) -> bytes:
    """One tick of ``/hystrix.stream?scope=fleet``: the ``fleet`` event (``{"scope": "fleet",
    "node", "connected", "nodes"}``, or ``"connected": false`` and the ``"error"``), then the
    fleet's summed messages, or this node's own (``metrics``) when Redis cannot be read."""
    status: dict[str, Any] = {"scope": "fleet", "node": reader.fleet.node}
    try:
        read = reader.read(m.key for m in metrics)
        error = read.error
    except Exception as exc:  # a bug: this node's stream rather than none
        logger.exception("stream.fleet_failed", error=repr(exc))
        error = f"the fleet could not be read: {exc!r}"[:200]
    if error is None:
        status.update(connected=True, nodes=len(read.nodes))
        return sse_event(status, "fleet") + b"".join(sse_event(m) for m in read.messages)
    status.update(connected=False, error=error)
    return sse_event(status, "fleet") + batch(metrics)


def _time_ms(reply: object) -> int:
    """Redis's ``TIME`` (seconds and microseconds) in milliseconds."""
    if not isinstance(reply, list | tuple) or len(reply) != 2:
        raise StoreError(f"TIME answered {show(reply, 60)}")
    try:
        seconds, micros = parse_int(reply[0], "seconds"), parse_int(reply[1], "microseconds")
    except GarbageError as exc:
        raise StoreError(f"TIME answered {exc}") from None
    return seconds * 1000 + micros // 1000
