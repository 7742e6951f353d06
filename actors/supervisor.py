"""The command supervisor: one actor per worker pool (a key's own, or a shared one), owning
that pool's worker actors.

It is not on the hot path: a caller hands its call straight to a parked worker when the pool has
one. The supervisor receives only the calls no parked worker could take; it starts workers lazily
up to the pool's ``max_concurrent_requests`` or lets the call wait in the pool (at most
``queue_size`` of them: the gates bounded admission). It resizes the pool on reconfiguration,
replaces workers that die (per the pool's ``SupervisionPolicy``: one_for_one or one_for_all,
within the restart intensity) and stuck workers that were abandoned. Past the intensity it
escalates: it stops itself and the registry decides. When it stops for any reason it answers
every call of its pool's keys still in flight and stops its workers (a busy one ends when its
``run`` returns).

When its pool passivates (idle for ``passivate_after``), a port stops it as planned: it retires
its workers and tells nobody; the pool's next call starts a new supervisor through its port.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pykka

from supervision import Child, CommandError, Decision, Directive, Restarts, monotonic

from .lifecycle import SupervisedActor
from .log import Log, logger, ms
from .messages import Crash, Reconfigure, Refill, Retire, Retired, SupervisorExited, WorkerExited
from .pool import START, Pool
from .port import port_of
from .ticket import Ticket
from .worker import WorkerActor

__all__ = ["CommandActor"]


class CommandActor(SupervisedActor):
    def __init__(self, pool: Pool, parent: pykka.ActorRef[Any]) -> None:
        super().__init__()
        self._pool = pool
        self._parent = parent
        self._generation = pool.generation
        self._workers: list[pykka.ActorRef[Any]] = []
        self._restarts = Restarts(Child.WORKER, pool.policy, monotonic)
        self._escalation: Decision | None = None
        self._error: BaseException | None = None
        self._log: Log = logger

    def on_start(self) -> None:
        self._log = self._pool.log.bind(actor=self.actor_urn)
        self._log.debug("supervisor.started", generation=self._generation)

    def on_receive(self, message: Any) -> None:
        if self._pool.supervisor is not self.actor_ref and self._pool.closed is None:
            self._superseded(message)
        elif isinstance(message, Ticket):
            self._place(message)
        elif isinstance(message, WorkerExited):
            self._worker_died(message)
        elif isinstance(message, Retired):
            self._forget(message.worker)
        elif isinstance(message, Refill):
            self._refill(replace=1)
        elif isinstance(message, Reconfigure):
            self._restarts.policy = message.supervision
            self._resize()
        elif isinstance(message, Crash):
            raise message.error

    def _superseded(self, message: Any) -> None:
        """Its pool passivated: the pool now belongs to the supervisor its next call starts (or
        to none). A call still sent here goes back to its port; a crash order is obeyed; the
        rest (its old workers' notices, a resize) is left to the successor."""
        if isinstance(message, Ticket):
            port = port_of(message)
            if message.settled:  # answered already: only its slot, if it still holds one
                port.gate.release(message)
            else:
                port.hand_back(message)
        elif isinstance(message, Crash):
            raise message.error

    # -- placing calls -------------------------------------------------------------------------

    def _place(self, ticket: Ticket) -> None:
        placed = port_of(ticket).gate.place(ticket)
        if placed is START:
            self._start_worker(ticket)
        elif isinstance(placed, pykka.ActorRef):
            try:
                placed.tell(ticket)
            except pykka.ActorDeadError:  # died while parked; its exit notice is on its way
                self._pool.leave(placed)
                self._place(ticket)

    def _start_worker(self, ticket: Ticket | None) -> None:
        """Start a worker the pool reserved; give it ``ticket``, or let it park."""
        pool = self._pool
        try:
            worker = WorkerActor.start(pool, self.actor_ref, self._generation, park=ticket is None)
        except BaseException:
            pool.unreserve()
            if ticket is not None:
                port = port_of(ticket)
                port.drop(ticket, port.unavailable())
            raise
        self._workers.append(worker)
        self._log.debug("worker.started", workers=len(self._workers))
        if ticket is not None:
            try:
                worker.tell(ticket)
            except pykka.ActorDeadError:  # killed as soon as it started; its exit notice follows
                pool.leave(worker)
                self._place(ticket)

    def _forget(self, worker: pykka.ActorRef[Any]) -> None:
        if worker in self._workers:
            self._workers.remove(worker)

    def _refill(self, replace: int = 0) -> None:
        """Start workers for calls waiting (the limit allows), then up to ``replace`` parked
        replacements so capacity is back before the next call needs it."""
        pool = self._pool
        while (ticket := pool.next_waiting_for_new_worker()) is not None:
            self._start_worker(ticket)
            replace -= 1
        for _ in range(replace):
            if not pool.reserve():
                break
            self._start_worker(None)

    def _resize(self) -> None:
        """Retire parked workers beyond the new limit (busy ones retire when they finish), and
        start workers for calls waiting if the limit grew."""
        for worker in self._pool.take_surplus():
            self._stop_worker(worker)
        self._refill()

    def _stop_worker(self, worker: pykka.ActorRef[Any]) -> None:
        self._forget(worker)
        with contextlib.suppress(pykka.ActorDeadError):
            worker.tell(Retire())

    # -- deaths --------------------------------------------------------------------------------

    def _worker_died(self, message: WorkerExited) -> None:
        self._forget(message.worker)
        pool = self._pool
        pool.leave(message.worker)  # idempotent: the worker left on its way out
        decision = self._restarts.died()
        if decision.directive is not Directive.ESCALATE:
            self._log.warning(
                "worker.restarting",
                directive=decision.directive.value,
                restarts=decision.restarts,
                max_restarts=decision.max_restarts,
                error=repr(message.error),
            )
        if decision.directive is Directive.RESTART:
            self._refill(replace=1)
        elif decision.directive is Directive.RESTART_ALL:
            for worker in pool.renew():
                self._stop_worker(worker)
            self._generation = pool.generation
            self._refill(replace=1)
        else:  # ESCALATE: too many deaths; the registry restarts this supervisor (or not)
            self._escalation = decision
            self._log.error(
                "supervisor.escalated",
                restarts=decision.restarts,
                max_restarts=decision.max_restarts,
                period_ms=ms(decision.period),
                error=repr(message.error),
            )
            self.stop()

    # -- ending --------------------------------------------------------------------------------

    def _passivated(self) -> None:
        """Stopped by its pool's passivation (the pool no longer names it): retire the workers,
        give calls told to it after the stop back to their ports (which start a successor for
        them); a planned stop, reported to nobody. The pool is the successor's: untouched."""
        stranded = []
        while not self.actor_inbox.empty():
            message = self.actor_inbox.get().message
            if isinstance(message, Ticket):
                stranded.append(message)
        for worker in self._workers:
            with contextlib.suppress(pykka.ActorDeadError):
                worker.tell(Retire())
        self._workers.clear()
        if self._error is not None:
            self._log.error("supervisor.died", error=repr(self._error))
        for ticket in stranded:
            self._superseded(ticket)

    def _exited(self) -> None:
        """Answer every call of the pool's keys still in flight, stop the workers; if the
        registry did not ask for this stop, tell it (it restarts this supervisor after a
        backoff)."""
        pool = self._pool
        planned = pool.closed is not None
        if not planned and pool.supervisor is not self.actor_ref:
            self._passivated()
            return
        if not planned:
            pool.status = "restarting"
            pool.down = CommandError(
                f"{pool.label()} is unavailable: its supervisor is restarting",
                key=None if pool.name is not None else pool.ports[0].key,
                reason="unavailable",
            )
        waiting, idle = pool.close() if planned else pool.orphan()
        while not self.actor_inbox.empty():  # calls told to us after the stop
            message = self.actor_inbox.get().message
            if isinstance(message, Ticket):
                waiting.append(message)
        for ticket in waiting:
            port = port_of(ticket)
            port.drop(ticket, port.unavailable())
        if not planned:  # its children die with it: their calls are answered now
            for port in list(pool.ports):
                port.swept += port.sweep(port.unavailable())
        for worker in (*idle, *self._workers):
            with contextlib.suppress(pykka.ActorDeadError):
                worker.tell(Retire())
        self._workers.clear()
        if planned:
            self._log.debug("supervisor.closed")
            return
        if self._error is not None:
            self._log.error("supervisor.died", error=repr(self._error))
        elif self._escalation is None:
            self._log.warning("supervisor.stopped")
        with contextlib.suppress(pykka.ActorDeadError):
            self._parent.tell(
                SupervisorExited(pool, self.actor_ref, self._error, self._escalation is not None)
            )
