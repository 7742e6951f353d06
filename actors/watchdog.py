"""The registry's one timer thread: deadlines of non-blocking calls, and delayed jobs.

A blocking ask is its own watchdog (the caller waits until its deadline, then answers TIMEOUT on
its own thread). A non-blocking ask (``block=False``, ``go``) has nobody waiting, so its ticket is
watched here: one heap and one thread per registry, not a thread per call. The same heap holds
the tree's delayed jobs (pykka has no timers): a supervisor restart after its backoff, a stuck
worker's check at the end of its grace period. Fallbacks and jobs run on a small pool of
threads, so a slow fallback never delays the timer.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from collections.abc import Callable

from .log import logger
from .ticket import Ticket

__all__ = ["Watchdog"]

_RUNNERS = 4

Job = Callable[[], object]


class Watchdog:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Ticket | Job]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._work: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._runners: list[threading.Thread] = []

    def watch(self, ticket: Ticket) -> None:
        """Answer ``ticket`` TIMEOUT at its deadline unless someone claims it first."""
        self._push(ticket.deadline, ticket)

    def call_at(self, when: float, job: Job) -> None:
        """Run ``job`` on a runner thread at monotonic time ``when`` (dropped once closed)."""
        self._push(when, job)

    def _push(self, when: float, item: Ticket | Job) -> None:
        with self._wake:
            if self._closed:
                return
            entry = (when, next(self._seq), item)
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._start()
            elif self._heap[0] is entry:
                self._wake.notify()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="hystrix-watchdog", daemon=True)
        self._thread.start()
        for n in range(_RUNNERS):
            runner = threading.Thread(target=self._run, name=f"hystrix-runner-{n}", daemon=True)
            runner.start()
            self._runners.append(runner)

    def _loop(self) -> None:
        heap = self._heap
        while True:
            with self._wake:
                while not self._closed and (not heap or heap[0][0] > time.monotonic()):
                    self._wake.wait(None if not heap else heap[0][0] - time.monotonic())
                if self._closed:
                    return
                _, _, item = heapq.heappop(heap)
            if not isinstance(item, Ticket):
                self._work.put(item)
            elif item.claim():  # the fallback and its log events see the caller's context
                self._work.put(lambda ticket=item: ticket.in_context(ticket.port.expire, ticket))  # type: ignore[misc]

    def _run(self) -> None:
        while (job := self._work.get()) is not None:
            try:
                job()
            except BaseException:  # the runner must survive anything
                logger.exception("watchdog.job_failed")

    def pending(self) -> int:
        with self._wake:
            return len(self._heap)

    def close(self, timeout: float = 1.0) -> list[Ticket]:
        """Stop the timer and the runners (waiting up to ``timeout`` for them); return the
        watched tickets nobody has answered yet. Pending jobs are dropped."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
            left = [item for _, _, item in self._heap if isinstance(item, Ticket)]
            self._heap.clear()
        left = [ticket for ticket in left if not ticket.settled]
        for _ in self._runners:
            self._work.put(None)
        deadline = time.monotonic() + timeout
        for thread in (self._thread, *self._runners):
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        return left
