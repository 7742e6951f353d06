"""The command supervisor: one actor per key, owning that key's worker actors.

It is not on the hot path: a caller hands its call straight to a parked worker when the gate has
one. The supervisor receives only the calls no parked worker could take; it starts workers lazily
up to ``max_concurrent_requests`` or lets the call wait in the gate (at most ``queue_size`` of
them: the gate bounded admission). It resizes the pool on reconfiguration and, when it stops,
answers every call that can no longer run and stops its workers.
"""

from __future__ import annotations

from typing import Any

import pykka

from supervision import CommandError

from .gate import START
from .log import logger
from .messages import Reconfigure, Retired
from .port import CommandPort
from .ticket import Ticket
from .worker import WorkerActor

__all__ = ["CommandActor"]


class CommandActor(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(self, port: CommandPort) -> None:
        super().__init__()
        self._port = port
        self._workers: list[pykka.ActorRef[Any]] = []
        self._log: Any = logger

    def on_start(self) -> None:
        self._log = self._port.log.bind(actor=self.actor_urn)
        self._log.debug("supervisor.started")

    def on_receive(self, message: Any) -> None:
        if isinstance(message, Ticket):
            self._place(message)
        elif isinstance(message, Retired):
            self._forget(message.worker)
        elif isinstance(message, Reconfigure):
            self._resize()

    def _place(self, ticket: Ticket) -> None:
        gate = self._port.gate
        if ticket.settled:  # timed out before it got here
            gate.release()
            return
        placed = gate.place(ticket)
        if placed is START:
            self._start_worker(ticket)
        elif isinstance(placed, pykka.ActorRef):
            placed.tell(ticket)

    def _start_worker(self, ticket: Ticket) -> None:
        worker = WorkerActor.start(self._port, self.actor_ref)
        self._workers.append(worker)
        self._log.debug("worker.started", workers=len(self._workers))
        worker.tell(ticket)

    def _forget(self, worker: pykka.ActorRef[Any]) -> None:
        if worker in self._workers:
            self._workers.remove(worker)

    def _resize(self) -> None:
        """Stop parked workers beyond the new limit (busy ones retire when they finish), and
        start workers for calls waiting if the limit grew."""
        gate = self._port.gate
        for worker in gate.take_surplus():
            self._forget(worker)
            worker.stop(block=False)
        while (ticket := gate.next_waiting_for_new_worker()) is not None:
            self._start_worker(ticket)

    def on_stop(self) -> None:
        port = self._port
        error = port.closed or CommandError(f"command {port.key!r} stopped", key=port.key)
        stranded = port.gate.close()  # calls waiting for a worker
        while not self.actor_inbox.empty():  # calls told to us after the stop message
            message = self.actor_inbox.get().message
            if isinstance(message, Ticket):
                stranded.append(message)
        for ticket in stranded:
            port.drop(ticket, error)
        for worker in self._workers:
            worker.stop(block=False)
        self._workers.clear()
        self._log.debug("supervisor.stopped")
