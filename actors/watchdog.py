"""The registry's one timer thread: deadlines of non-blocking calls, and delayed jobs.

A blocking ask is its own watchdog (the caller waits until its deadline, then answers TIMEOUT on
its own thread). A non-blocking ask (``block=False``, ``go``) has nobody waiting, so its ticket is
watched here: one heap and one thread per registry, not a thread per call. The same heap holds
the tree's delayed jobs (pykka has no timers): a supervisor restart after its backoff, a stuck
worker's check at the end of its grace period. Fallbacks and jobs run on a small pool of
threads, so a slow fallback never delays the timer; while every runner is busy (fallbacks that
hang, say) an extra one starts for the next job, so they cannot hold back the other keys'
timeouts and restarts either (an extra runner ends after a second without a job).

Every key of the registry depends on these threads, so they are supervised like the workers: a
job that raises (``BaseException`` included) is logged and its runner serves the next one; a
fault escaping the timer's own loop (or a runner's) is logged (``watchdog.restarted``) and the
loop starts again after a short backoff, with the heap as it was; a timer thread found dead is
started again by the next ``watch`` or ``call_at``. Every wait is clamped to
``threading.TIMEOUT_MAX``, so no instant, however far away, can overflow one.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import math
import queue
import threading
import time
from collections.abc import Callable

from supervision import backoff_delay

from .log import logger
from .ticket import Ticket

__all__ = ["Watchdog"]

#: Runners always there (once the watchdog has started).
_RUNNERS = 4
#: Extra runners started while every runner is busy, at most this many at once.
MAX_EXTRA_RUNNERS = 64
#: Seconds an extra runner waits for a job before it ends.
EXTRA_RUNNER_IDLE = 1.0

#: Backoff between restarts of a loop that keeps failing (seconds): from the first to the cap.
RESTART_BACKOFF = (0.001, 1.0)

Job = Callable[[], object]


def bounded(seconds: float) -> float:
    """``seconds`` as a wait the threading primitives accept: 0 to ``threading.TIMEOUT_MAX``
    (NaN: 0). A wait cut short wakes up and looks again."""
    return min(seconds, threading.TIMEOUT_MAX) if seconds > 0.0 else 0.0


def _expire(ticket: Ticket) -> None:
    # the fallback and its log events see the caller's context
    ticket.in_context(ticket.port.expire, ticket)


class Watchdog:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Ticket | Job]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._work: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._runners: list[threading.Thread] = []
        #: Runners waiting for a job less the jobs waiting for a runner (under ``_count``):
        #: below 0, a job has nobody to run it.
        self._spare = 0
        self._count = threading.Lock()

    def watch(self, ticket: Ticket) -> None:
        """Answer ``ticket`` TIMEOUT at its deadline unless someone claims it first."""
        self._push(ticket.deadline, ticket)

    def call_at(self, when: float, job: Job) -> None:
        """Run ``job`` on a runner thread at monotonic time ``when`` (dropped once closed)."""
        self._push(when, job)

    def _push(self, when: float, item: Ticket | Job) -> None:
        when = float(when)  # a TypeError for the caller, not a fault in the timer's loop
        if math.isnan(when):  # would break the heap's order: treat it as due now
            when = -math.inf
        with self._wake:
            if self._closed:
                return
            entry = (when, next(self._seq), item)
            heapq.heappush(self._heap, entry)
            thread = self._thread
            if thread is None:
                self._start()
            elif not thread.is_alive():  # ended by something its supervision could not catch
                logger.error("watchdog.restarted", thread=thread.name, error="the thread ended")
                self._start_timer()
            elif self._heap[0] is entry:
                self._wake.notify()

    def _start(self) -> None:
        self._start_timer()
        for _ in range(_RUNNERS):
            self._start_runner(extra=False)

    def _start_runner(self, *, extra: bool) -> None:
        """One more runner (under ``_wake``), counted as waiting from the start; an extra one
        ends once it has waited ``EXTRA_RUNNER_IDLE`` seconds for a job."""
        taken = {runner.name for runner in self._runners if runner.is_alive()}
        name = next(name for n in itertools.count() if (name := f"hystrix-runner-{n}") not in taken)
        runner = threading.Thread(
            target=self._supervised,
            args=(functools.partial(self._run, EXTRA_RUNNER_IDLE if extra else None),),
            name=name,  # the lowest number free: an extra takes the name of one that ended
            daemon=True,
        )
        runner.start()
        self._runners.append(runner)
        with self._count:
            self._spare += 1

    def _start_timer(self) -> None:
        self._thread = threading.Thread(
            target=self._supervised, args=(self._loop,), name="hystrix-watchdog", daemon=True
        )
        self._thread.start()

    def _supervised(self, body: Callable[[], None]) -> None:
        """Run ``body`` (the timer's loop or a runner's) until it returns, which it does once
        the watchdog is closed. Any fault escaping it is logged and it starts again after a
        backoff that grows while the faults keep coming (the heap and the queue are kept)."""
        attempt = 0
        last = -math.inf
        while True:
            try:
                body()
                return
            except BaseException as exc:  # the thread must survive anything
                now = time.monotonic()
                attempt = attempt + 1 if now - last < RESTART_BACKOFF[1] * 2 else 0
                last = now
                with contextlib.suppress(BaseException):  # logging that fails cannot stop it
                    logger.exception(
                        "watchdog.restarted",
                        thread=threading.current_thread().name,
                        error=repr(exc),
                    )
            delay = backoff_delay(min(attempt, 30), *RESTART_BACKOFF, 0.0, 0.0)
            with self._wake:
                if self._closed:
                    return
                self._wake.wait(delay)

    def _loop(self) -> None:
        heap = self._heap
        wake = self._wake
        while True:
            with wake:
                while True:
                    if self._closed:
                        return
                    if not heap:
                        wake.wait()
                        continue
                    left = heap[0][0] - time.monotonic()
                    if left <= 0.0:
                        break
                    wake.wait(bounded(left))
                _, _, item = heapq.heappop(heap)
            if not isinstance(item, Ticket):
                self._dispatch(item)
            elif item.claim():
                self._dispatch(functools.partial(_expire, item))

    def _dispatch(self, job: Job) -> None:
        with self._count:
            self._spare -= 1
            short = self._spare < 0
        self._work.put(job)
        if short:  # every runner is busy (fallbacks that hang?): one more, for a while
            with self._wake:
                if self._closed:
                    return
                self._runners = [runner for runner in self._runners if runner.is_alive()]
                if len(self._runners) < _RUNNERS + MAX_EXTRA_RUNNERS:
                    self._start_runner(extra=True)

    def _run(self, idle: float | None) -> None:
        """Run jobs until closed; with ``idle`` (an extra runner), end once no job came for
        that many seconds and no job waits."""
        work = self._work
        count = self._count
        while True:
            try:
                job = work.get(timeout=idle)
            except queue.Empty:
                with count:
                    if self._spare > 0:  # the others can take every job waiting
                        self._spare -= 1
                        return
                continue  # a job waits for this runner: it is being put now
            if job is None:
                return
            try:
                job()
            except BaseException:  # the runner must survive anything
                with contextlib.suppress(BaseException):
                    logger.exception("watchdog.job_failed")
            with count:
                self._spare += 1

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
            runners = list(self._runners)
        left = [ticket for ticket in left if not ticket.settled]
        for _ in runners:
            self._work.put(None)
        threads = [self._thread, *runners]
        deadline = time.monotonic() + bounded(timeout)
        for thread in threads:
            if thread is not None and thread is not threading.current_thread():
                thread.join(bounded(deadline - time.monotonic()))
        return left
