"""The registry's one timer thread: answers non-blocking calls whose deadline has passed.

A blocking ask is its own watchdog (the caller waits until its deadline, then answers TIMEOUT on
its own thread). A non-blocking ask (``block=False``, ``go``) has nobody waiting, so its ticket is
watched here: one heap and one thread per registry, not a thread per call. The timeout's
fallback runs on a small pool of fallback threads, so a slow fallback never delays the timer.
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

_FALLBACK_THREADS = 4


class Watchdog:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Ticket]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._work: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._runners: list[threading.Thread] = []

    def watch(self, ticket: Ticket) -> None:
        with self._wake:
            entry = (ticket.deadline, next(self._seq), ticket)
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._start()
            elif self._heap[0] is entry:
                self._wake.notify()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="hystrix-watchdog", daemon=True)
        self._thread.start()
        for n in range(_FALLBACK_THREADS):
            runner = threading.Thread(
                target=self._run_fallbacks, name=f"hystrix-fallback-{n}", daemon=True
            )
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
                _, _, ticket = heapq.heappop(heap)
            if ticket.claim():
                self._work.put(lambda ticket=ticket: ticket.port.expire(ticket))  # type: ignore[misc]

    def _run_fallbacks(self) -> None:
        while (job := self._work.get()) is not None:
            try:
                job()
            except BaseException:  # the runner must survive anything
                logger.exception("watchdog.fallback_crashed")

    def pending(self) -> int:
        with self._wake:
            return len(self._heap)

    def close(self) -> list[Ticket]:
        """Stop the timer; return the watched tickets nobody has answered yet."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
            left = [ticket for _, _, ticket in self._heap if not ticket.settled]
            self._heap.clear()
        for _ in self._runners:
            self._work.put(None)
        return left
