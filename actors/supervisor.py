"""The command supervisor: one actor per key, owning that key's worker actors.

It receives admitted calls (tickets) from callers, hands each to an idle worker, starts workers
lazily up to ``max_concurrent_requests``, and holds at most ``queue_size`` calls while every
worker is busy. The gate already bounded admission, so its queue cannot grow past that.
"""

from __future__ import annotations

import collections
from typing import Any

import pykka

from supervision import CommandConfig, CommandError

from .log import logger
from .messages import Reconfigure, WorkerIdle
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
        self._idle: list[pykka.ActorRef[Any]] = []
        self._waiting: collections.deque[Ticket] = collections.deque()
        self._log: Any = logger

    def on_start(self) -> None:
        self._log = self._port.log.bind(actor=self.actor_urn)
        self._log.debug("supervisor.started")

    def on_receive(self, message: Any) -> None:
        if isinstance(message, Ticket):
            self._dispatch(message)
        elif isinstance(message, WorkerIdle):
            self._worker_idle(message.worker)
        elif isinstance(message, Reconfigure):
            self._reconfigure(message.config)

    def _dispatch(self, ticket: Ticket) -> None:
        if ticket.settled:
            self._port.gate.release()
            return
        worker = self._take_worker()
        if worker is None:
            self._waiting.append(ticket)
        else:
            worker.tell(ticket)

    def _take_worker(self) -> pykka.ActorRef[Any] | None:
        if self._idle:
            return self._idle.pop()
        if len(self._workers) < self._port.config.max_concurrent_requests:
            worker = WorkerActor.start(self._port, self.actor_ref)
            self._workers.append(worker)
            self._port.workers = len(self._workers)
            return worker
        return None

    def _worker_idle(self, worker: pykka.ActorRef[Any]) -> None:
        if len(self._workers) > self._port.config.max_concurrent_requests:
            self._retire(worker)
        else:
            self._idle.append(worker)
        while self._waiting and self._idle:
            self._dispatch(self._waiting.popleft())

    def _retire(self, worker: pykka.ActorRef[Any]) -> None:
        if worker in self._workers:
            self._workers.remove(worker)
            self._port.workers = len(self._workers)
        worker.stop(block=False)

    def _reconfigure(self, config: CommandConfig) -> None:
        """Resize the pool: surplus idle workers stop now, busy ones when they finish."""
        while len(self._workers) > config.max_concurrent_requests and self._idle:
            self._retire(self._idle.pop())
        while self._waiting:
            worker = self._take_worker()
            if worker is None:
                break
            self._dispatch_to(worker, self._waiting.popleft())

    def _dispatch_to(self, worker: pykka.ActorRef[Any], ticket: Ticket) -> None:
        if ticket.settled:
            self._port.gate.release()
            self._idle.append(worker)
        else:
            worker.tell(ticket)

    def on_stop(self) -> None:
        port = self._port
        error = port.closed or CommandError(f"command {port.key!r} stopped", key=port.key)
        stranded = list(self._waiting)
        self._waiting.clear()
        while not self.actor_inbox.empty():  # calls told to us after the stop message
            message = self.actor_inbox.get().message
            if isinstance(message, Ticket):
                stranded.append(message)
        for ticket in stranded:
            port.gate.release()
            if ticket.claim():
                port.abandon(ticket, error)
        for worker in self._workers:
            worker.stop(block=False)
        self._workers.clear()
        self._idle.clear()
        port.workers = 0
        self._log.debug("supervisor.stopped")
