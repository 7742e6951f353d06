"""A worker pool: the workers, the bulkhead they serve and the supervisor that owns them.

Every key runs its calls on one pool: its own (``CommandConfig(pool=None)``, sized by the key's
``max_concurrent_requests``) or a shared one (``pool="jira"``, Hystrix's ``threadPoolKey``),
whose workers run the calls of every key naming it and whose bulkhead caps their sum
(``PoolConfig``). Each key keeps its own breaker, windows and counts in its gate; the gates of
one pool share the pool's lock, so admission takes one lock whichever pool it is.

The pool also holds its lifecycle: the current supervisor (None while passivated), whether it
is restarting or down, and how a supervisor is started again. Worker membership is a set of
refs, so every way a worker can leave (retired, died, abandoned, orphaned) is counted once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

import pykka

from supervision import Bulkhead, Clock, CommandError, PoolConfig, SupervisionPolicy
from supervision.metrics import CommandStats

if TYPE_CHECKING:
    from .ticket import Ticket

__all__ = ["RETIRE", "START", "Pool", "Running"]

Worker = pykka.ActorRef[Any]

#: ``place`` says: start a new worker for this call.
START: Final = "start"
#: ``park`` says: this worker is surplus (or of a past generation) and must stop.
RETIRE: Final = "retire"


class Running(Protocol):
    """A worker as the rest of the shell sees it (named here: nothing below the worker imports
    it)."""

    #: True while inside ``run``.
    busy: bool
    #: True while ``run``'s coroutine runs on its key's loop.
    awaiting: bool
    #: The worker's thread, once started.
    thread: threading.Thread | None


class Pool:
    __slots__ = (
        "actors",
        "armed",
        "asleep",
        "bulkhead",
        "capacity",
        "closed",
        "down",
        "drain_waiters",
        "drained",
        "generation",
        "idle",
        "idle_since",
        "life",
        "lock",
        "log",
        "members",
        "name",
        "policy",
        "ports",
        "queue_size",
        "reserved",
        "running",
        "shape",
        "start",
        "stats",
        "status",
        "supervisor",
        "token",
        "waiting",
        "worker_limit",
        "zombies",
    )

    def __init__(
        self,
        *,
        name: str | None,
        bulkhead: Bulkhead,
        stats: CommandStats,
        capacity: int,
        queue_size: int,
        policy: SupervisionPolicy,
    ) -> None:
        #: The shared pool's name; None for a key's own pool (its key names it).
        self.name = name
        #: Admission's lock: every gate of the pool takes this one.
        self.lock = threading.Lock()
        #: The pool's bulkhead (a key's own pool: the key's bulkhead itself).
        self.bulkhead = bulkhead
        #: The pool's rolling figures for the dashboard (a key's own pool: the key's stats).
        self.stats = stats
        #: Workers allowed (``max_concurrent_requests``) and calls that may wait for one.
        self.capacity = capacity
        self.queue_size = queue_size
        #: Restart intensity, zombie cap and passivation of the pool's actors.
        self.policy = policy
        #: A shared pool's rolling window and buckets (a key's own pool: unused).
        self.shape: tuple[float, int] = (0.0, 0)
        #: Calls inside ``run`` now, across the pool (a zombie's call no longer counts).
        self.running = 0
        self.idle: list[Worker] = []
        #: Calls waiting for a worker, oldest first: a list, not a deque (a few calls at most,
        #: bounded by the bulkhead; an empty deque costs about 600 bytes per key).
        self.waiting: list[Ticket] = []
        self.worker_limit = capacity
        self.members: set[Worker] = set()
        self.reserved = 0  # workers being started, not yet members
        #: Bumped when the pool's workers are replaced as a whole (supervisor restart,
        #: one_for_all, passivation): a worker of an older generation retires when its call ends.
        self.generation = 0
        #: Workers abandoned in ``run`` that have not returned yet.
        self.zombies = 0
        #: Made by the first ``Gate.wait_drained`` (shutdown): most pools never need one.
        self.drained: threading.Condition | None = None
        self.drain_waiters = 0
        #: Live worker actors (any generation), for shutdown and fault injection.
        self.actors: dict[Worker, Running] = {}
        #: The ports of the keys running on this pool (the registry actor appends).
        self.ports: list[Any] = []
        self.log: Any = None
        # -- lifecycle (changed under ``life``) --
        #: The pool's supervisor; None while passivated (or never started).
        self.supervisor: Worker | None = None
        #: Starts a supervisor for the pool (given by the registry actor); None: never started.
        self.start: Callable[[], Worker] | None = None
        #: Serialises passivation and the start of a supervisor (wake, revive).
        self.life = threading.Lock()
        #: The idle check that is current (an older one ends), and whether one is due.
        self.token = 0
        self.armed = False
        #: True while passivated: no supervisor, no worker (see ``passivate``).
        self.asleep = False
        #: When (``time.monotonic()``) the last call in flight ended: the pool is idle since.
        self.idle_since = time.monotonic()
        #: Set by the registry when it stops the pool's keys (reset, shutdown).
        self.closed: CommandError | None = None
        #: Set while the supervisor is dead ("restarting") or given up on ("down").
        self.down: CommandError | None = None
        self.status = "up"

    @classmethod
    def shared(cls, name: str, config: PoolConfig, clock: Clock) -> Pool:
        """A pool several keys share, with its own bulkhead and figures."""
        pool = cls(
            name=name,
            bulkhead=Bulkhead(config.max_concurrent_requests, config.queue_size),
            stats=CommandStats(config.rolling_window, config.rolling_buckets, clock),
            capacity=config.max_concurrent_requests,
            queue_size=config.queue_size,
            policy=config.supervision,
        )
        pool.shape = (config.rolling_window, config.rolling_buckets)
        return pool

    @property
    def is_shared(self) -> bool:
        return self.name is not None

    def label(self) -> str:
        """How errors and logs name the pool: "pool 'jira'" or "command 'key'"."""
        if self.name is not None:
            return f"pool {self.name!r}"
        key = self.ports[0].key if self.ports else "?"
        return f"command {key!r}"

    @property
    def workers(self) -> int:
        """Worker actors counted against the limit (started or starting, not yet gone)."""
        return len(self.members) + self.reserved

    def zombie_cap(self) -> int:
        return self.policy.zombie_cap(self.capacity)

    # -- the supervisor's side -----------------------------------------------------------------

    def reserve(self) -> bool:
        """Count one more worker about to start, if the limit allows (a replacement)."""
        with self.lock:
            if self.workers >= self.worker_limit:
                return False
            self.reserved += 1
            return True

    def unreserve(self) -> None:
        """A reserved worker could not be started."""
        with self.lock:
            self.reserved -= 1

    def next_waiting_for_new_worker(self) -> Ticket | None:
        """A waiting call, if the limit allows one more worker for it (a resize, a death)."""
        with self.lock:
            waiting = self.waiting
            while waiting and self.workers < self.worker_limit:
                ticket = waiting.pop(0)
                if ticket.settled:
                    ticket.port.gate.free(ticket)
                    continue
                self.reserved += 1
                return ticket
            return None

    def take_surplus(self) -> list[Worker]:
        """Parked workers beyond the limit, removed from the pool (to be stopped)."""
        with self.lock:
            surplus = []
            while self.idle and self.workers > self.worker_limit:
                worker = self.idle.pop()
                self.members.discard(worker)
                surplus.append(worker)
            return surplus

    def renew(self) -> list[Worker]:
        """Start a new generation: parked workers leave now (returned, to be stopped); busy
        ones retire when their call ends."""
        with self.lock:
            self.generation += 1
            idle, self.idle = self.idle, []
            self.members.difference_update(idle)
            return idle

    def orphan(self) -> tuple[list[Ticket], list[Worker]]:
        """The supervisor died: a new generation; the waiting calls (still holding their slots,
        to be dropped) and the parked workers (gone from the pool, to be stopped)."""
        idle = self.renew()
        with self.lock:
            waiting = list(self.waiting)
            self.waiting.clear()
            return waiting, idle

    def close(self) -> tuple[list[Ticket], list[Worker]]:
        """Admit no more workers: like ``orphan``, and every busy worker retires."""
        waiting, idle = self.orphan()
        with self.lock:
            self.worker_limit = 0
        return waiting, idle

    def resize(self, config: PoolConfig, clock: Clock) -> None:
        """A shared pool's new configuration (``configure_pool``)."""
        with self.lock:
            shape = (config.rolling_window, config.rolling_buckets)
            if shape != self.shape:
                self.shape = shape
                self.stats.resized(config.rolling_window, config.rolling_buckets, clock)
            self.bulkhead.resize(config.max_concurrent_requests, config.queue_size)
            self.capacity = config.max_concurrent_requests
            self.queue_size = config.queue_size
            self.policy = config.supervision
            if self.worker_limit > 0:  # a closed pool stays closed
                self.worker_limit = config.max_concurrent_requests

    # -- the worker's side ---------------------------------------------------------------------

    def join(self, worker: Worker) -> None:
        """A reserved worker has started."""
        with self.lock:
            self.reserved -= 1
            self.members.add(worker)
            stats = self.stats
            stats.largest_pool = max(stats.largest_pool, self.workers)

    def leave(self, worker: Worker) -> None:
        """A worker is gone (whatever the way); idempotent."""
        with self.lock:
            self.members.discard(worker)
            if worker in self.idle:
                self.idle.remove(worker)

    def park(self, worker: Worker, generation: int) -> Ticket | str | None:
        """A worker is free: the next waiting call for it, ``RETIRE``, or None (parked)."""
        with self.lock:
            return self.park_locked(worker, generation)

    def park_locked(self, worker: Worker, generation: int) -> Ticket | str | None:
        """``park``, under the lock the caller holds."""
        if (
            generation != self.generation
            or worker not in self.members
            or self.workers > self.worker_limit
        ):
            self.members.discard(worker)
            return RETIRE
        waiting = self.waiting
        while waiting:
            ticket = waiting.pop(0)
            if not ticket.settled:
                return ticket
            ticket.port.gate.free(ticket)  # timed out while it waited
        self.idle.append(worker)
        return None

    def idle_workers(self) -> list[Worker]:
        with self.lock:
            return list(self.idle)

    # -- passivation (the registry's timer and the first caller after it) ----------------------

    def passivate(self, after: float) -> list[Worker] | float:
        """If the pool has been idle for ``after`` seconds (nothing in flight or waiting, no
        worker starting, no zombie), mark it asleep and take every worker out of it (a new
        generation: the parked ones are returned, to be retired; one still finishing its call
        retires when it parks); else the ``time.monotonic()`` instant to look again. Decided
        under the lock admission takes, so a call admitted afterwards finds the pool asleep."""
        with self.lock:
            now = time.monotonic()
            if self.bulkhead.in_flight or self.waiting or self.reserved or self.zombies:
                return now + after
            due = self.idle_since + after
            if now < due:
                return due
            self.asleep = True
            self.generation += 1
            idle, self.idle = self.idle, []
            self.members.clear()
            return idle

    def awaken(self) -> None:
        """The pool has a supervisor again (its first call after passivation started one)."""
        with self.lock:
            self.asleep = False
            self.idle_since = time.monotonic()
