"""The fleet actor: every ``publish_interval`` it flushes this node's counts and reads the fleet.

One round trip per tick for all keys (a pipeline of FLUSH scripts): counts go up, the fleet's
window and state come back, and the breakers follow the fleet's circuit. A probe's verdict is
sent at once (RESOLVE). The actor owns no timer thread: each tick is a job on the registry's
timer. Redis faults never reach a call: the tick fails, the breakers go back to their own rules
(``fleet.disconnected`` once), the counts wait for the next tick, and the actor tries again
with a growing backoff until Redis answers (``fleet.reconnected``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pykka

from supervision import CircuitState, FleetState, backoff_delay
from supervision.fleet import GarbageError, parse_state

from ..fleet_host import FleetHost
from ..log import Log
from ..port import CommandPort
from ..stream import command_message, pool_message
from .scripts import FLUSH, RESOLVE
from .seat import Seat, parse_flush
from .store import Call, Store, StoreError

if TYPE_CHECKING:
    from .settings import FleetSettings

__all__ = ["FleetActor", "Tick", "Verdict", "follow"]


def follow(seat: Seat, state: FleetState, node: str) -> None:
    """Bring a key's breaker in line with the fleet (from a flush or a broadcast): the gate
    adopts the state under its lock, the transitions are published like any other."""
    port = seat.port
    view = port.gate.fleet_view
    if view is not None and state.epoch > view.epoch:
        port.gate.fleet_view = dataclasses.replace(
            view,
            state=state.state,
            epoch=state.epoch,
            probe_holder=state.holder if state.state is CircuitState.HALF_OPEN else None,
        )
    moved = port.gate.fleet_follow(state, node)
    for transition in moved:
        if transition.to_state is CircuitState.HALF_OPEN:
            seat.granted = transition.fleet_epoch
    if moved:
        port.publish(moved)


@dataclasses.dataclass(frozen=True, slots=True)
class Tick:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """This node's probe at fleet epoch ``epoch`` ended: the fleet circuit is now ``outcome``."""

    key: str
    epoch: int
    outcome: str


class FleetActor(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(self, fleet: FleetSettings, host: FleetHost, store: Store, log: Log) -> None:
        super().__init__()
        self.fleet = fleet
        self.host = host
        self.store = store
        self.log = log
        self.seats: dict[str, Seat] = {}
        self.connected: bool | None = None  # None: never tried
        self.failures = 0
        #: Keys not yet added to the fleet's set of keys.
        self._unlisted: list[str] = []
        self._stopped = False

    def on_start(self) -> None:
        self._schedule(0.0)

    def on_stop(self) -> None:
        self._stopped = True
        self.store.close()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Tick):
            try:
                delay = self._tick()
            except pykka.ActorDeadError:  # the registry stopped: so do we
                self.actor_ref.stop(block=False)
                return None
            except BaseException as exc:  # a bug must not stop the fleet (pykka would stop
                # every actor of the process on a BaseException): log, tick again
                self.log.exception("fleet.failed", error=repr(exc))
                delay = self.fleet.publish_interval
            self._schedule(delay)
        elif isinstance(message, Verdict):
            try:
                self._resolve(message)
            except BaseException as exc:  # the lease expires and another node probes
                self.log.exception("fleet.failed", error=repr(exc))
        return None

    def _schedule(self, delay: float) -> None:
        if self._stopped:
            return
        ref = self.actor_ref

        def tick() -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(Tick())

        self.host.timer.call_at(time.monotonic() + delay, tick)

    # -- the tick ------------------------------------------------------------------------------

    def _tick(self) -> float:
        """One flush; the delay before the next tick."""
        fleet = self.fleet
        now = time.monotonic()
        seats = self._seats(self.host.ports())
        calls: list[Call] = []
        flushed: list[Seat] = []
        for seat in seats:
            port = seat.port
            deltas, tripped, held, shorts = port.gate.fleet_take(seat.tally)
            demand = shorts > seat.shorts
            seat.shorts = shorts
            if not (deltas or held is not None or tripped != seat.tripped) and (
                now < seat.next_heartbeat
            ):
                continue
            seat.tripped = tripped
            seat.next_heartbeat = now + fleet.heartbeat
            snapshot = ""
            if now >= seat.next_snapshot:
                seat.next_snapshot = now + fleet.snapshot_interval
                snapshot = _snapshot(port)
                self._unlisted.append(port.key)  # Redis may have restarted empty unnoticed
            config = port.config
            counts = ";".join(f"{round(age * 1000)}:{r}:{e}" for age, r, e in deltas)
            args = (
                fleet.node,
                counts,
                int(tripped),
                config.fleet.mode,
                config.request_volume_threshold,
                repr(float(config.error_percent_threshold)),
                config.fleet.quorum,
                max(1, round(config.rolling_window * 1000)),
                config.rolling_buckets,
                fleet.live_ms,
                round(config.sleep_window * 1000),
                round((config.timeout + fleet.lease_margin) * 1000),
                int(held is not None and demand),
                fleet.channel,
                port.key,
                snapshot,
                round(fleet.snapshot_ttl * 1000),
            )
            calls.append((FLUSH, (seat.prefix + ":state",), args))
            flushed.append(seat)
        try:
            if self._unlisted:
                self.store.write([("SADD", fleet.keys_set, *self._unlisted)])
                self._unlisted = []
            results = self.store.run(calls)
        except StoreError as exc:
            for seat in flushed:
                seat.port.gate.fleet_put_back(seat.tally)
                seat.next_heartbeat = 0.0
            return self._lost(exc, seats)
        self._found()
        for seat, result in zip(flushed, results, strict=True):
            self._apply(seat, result)
        return fleet.publish_interval

    def _seats(self, ports: Sequence[CommandPort]) -> list[Seat]:
        """The seats of the used keys that take part in the fleet (new ones made, gone ones
        dropped; a key turned off lets go of its breaker)."""
        seats: dict[str, Seat] = {}
        for port in ports:
            if port.closed is not None:
                continue
            seat = self.seats.get(port.key)
            if not port.config.fleet.enabled:
                if seat is not None and seat.port is port:
                    port.gate.fleet_release()
                    port.gate.fleet_view = None
                continue
            if seat is None or seat.port is not port:
                seat = Seat(port, self.fleet.namespace)
                self._unlisted.append(port.key)
            seats[port.key] = seat
        self.seats = seats
        self.fleet.seats = seats  # the listener reads it (swapped whole, never mutated)
        return list(seats.values())

    def _apply(self, seat: Seat, result: Any) -> None:
        port = seat.port
        if isinstance(result, Exception):
            self._garbage_found(port.key, f"the flush script failed: {result}")
            return
        try:
            flushed = parse_flush(result)
        except GarbageError as exc:
            self._garbage_found(port.key, str(exc))
            return
        if flushed.garbage:
            self._garbage_found(port.key, "a fleet key held a value our scripts do not write")
        port.gate.fleet_view = flushed.view
        if flushed.action == "opened":
            self.log.info(
                "fleet.opened",
                command=port.key,
                epoch=flushed.state.epoch,
                requests=flushed.view.requests,
                error_percent=round(flushed.view.error_percent, 1),
                nodes=flushed.view.nodes,
            )
        elif flushed.action == "probe":
            self.log.info("fleet.probe_granted", command=port.key, epoch=flushed.state.epoch)
        self.follow(seat, flushed.state)

    def follow(self, seat: Seat, state: FleetState) -> None:
        follow(seat, state, self.fleet.node)

    # -- faults --------------------------------------------------------------------------------

    def _lost(self, exc: StoreError, seats: Sequence[Seat]) -> float:
        """Redis could not be reached: every breaker on its own again; retry with backoff."""
        self._unlisted = [seat.port.key for seat in seats]  # Redis may come back empty
        for seat in seats:
            seat.next_heartbeat = 0.0  # every key flushes at the first tick that works
            seat.port.gate.fleet_release()
            view = seat.port.gate.fleet_view
            if view is not None and view.connected:
                seat.port.gate.fleet_view = dataclasses.replace(view, connected=False)
        if self.connected is not False:
            self.log.warning("fleet.disconnected", error=str(exc), url=self.fleet.safe_url)
        self.connected = False
        self.fleet.connected = False
        delay = backoff_delay(self.failures, self.fleet.publish_interval, 2.0, 0.2, random.random())
        self.failures += 1
        return delay

    def _found(self) -> None:
        if self.connected is False:
            self.log.info("fleet.reconnected", url=self.fleet.safe_url, attempts=self.failures)
        self.connected = True
        self.fleet.connected = True
        self.failures = 0

    def _garbage_found(self, key: str, detail: str) -> None:
        self.fleet.garbage_found(key, detail)

    # -- the probe's verdict -------------------------------------------------------------------

    def _resolve(self, verdict: Verdict) -> None:
        seat = self.seats.get(verdict.key)
        if seat is None or seat.granted != verdict.epoch:
            return
        seat.granted = -1
        config = seat.port.config
        args = (
            self.fleet.node,
            verdict.epoch,
            verdict.outcome,
            max(1, round(config.rolling_window * 1000)),
            config.rolling_buckets,
            self.fleet.channel,
            verdict.key,
        )
        try:
            (result,) = self.store.run([(RESOLVE, (seat.prefix + ":state",), args)])
        except StoreError as exc:  # the lease expires; another node probes
            self.log.info("fleet.verdict_lost", command=verdict.key, error=str(exc))
            return
        if isinstance(result, Exception) or not isinstance(result, list) or len(result) != 6:
            self._garbage_found(verdict.key, f"the verdict script failed: {result!r:.80}")
            return
        status = result[0].decode() if isinstance(result[0], bytes) else str(result[0])
        try:
            state = parse_state(
                dict(zip(("state", "epoch", "at", "by", "holder"), result[1:], strict=True))
            )
        except GarbageError as exc:
            self._garbage_found(verdict.key, str(exc))
            return
        self.log.info(
            "fleet.verdict",
            command=verdict.key,
            outcome=verdict.outcome,
            epoch=verdict.epoch,
            stale=status != "ok",
        )
        self.follow(seat, state)


def _snapshot(port: CommandPort) -> str:
    """The key's dashboard messages on this node, for ``/hystrix.stream?scope=fleet``."""
    metrics = port.metrics()
    return json.dumps(
        {"command": command_message(metrics), "pool": pool_message(metrics)},
        separators=(",", ":"),
    )
