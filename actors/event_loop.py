"""A key's own event loop: where the coroutines of ``async def run`` commands execute.

One daemon thread per key, started on the key's first coroutine and stopped with the key (reset,
shutdown). A worker hands its coroutine to the loop and waits for it like for a threaded
``run``; at the call's deadline it cancels the task, so ``CancelledError`` is raised inside
``run`` at its current ``await`` and its ``finally`` blocks run. The worker keeps the call's
bulkhead slot until the task has really ended. Also the bridge the other way: a ticket answered
on any thread wakes an ``asyncio.Future`` of the caller's loop.

The loop's thread is supervised: a ``BaseException`` a task lets out (``SystemExit``) fails only
that task's call, a task that stops the loop (``loop.stop()``) does not end it, and a thread that
ends all the same (a fault in the loop's own code) has its calls answered "unavailable" and is
replaced by a fresh loop at the key's next coroutine (``event_loop.restarted``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any

from supervision import CommandError

from .log import logger
from .messages import Reply

__all__ = ["AsyncCall", "KeyLoop", "wake"]

#: Seconds a stopping loop gives its cancelled tasks to end before it closes.
CLOSE_GRACE = 1.0


class AsyncCall:
    """One coroutine of ``run`` on a key's loop; ``ended`` is set once its task has ended."""

    __slots__ = ("_context", "_coro", "cancel_sent", "ended", "error", "task", "value")

    def __init__(
        self, coro: Coroutine[Any, Any, Any], context: contextvars.Context | None = None
    ) -> None:
        self._coro: Coroutine[Any, Any, Any] | None = coro
        #: The context the task runs in (the caller's, copied), or the loop thread's own.
        self._context = context
        self.task: asyncio.Task[Any] | None = None
        self.value: Any = None
        self.error: BaseException | None = None
        self.cancel_sent = False
        self.ended = threading.Event()

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value

    # -- on the loop's thread ------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, calls: set[AsyncCall]) -> None:
        coro, self._coro = self._coro, None
        assert coro is not None
        try:
            self.task = loop.create_task(coro, context=self._context)
        except BaseException as exc:  # pragma: no cover - create_task on a running loop
            coro.close()
            self.finish(exc)
            calls.discard(self)
            return
        self.task.add_done_callback(lambda task: self._done(task, calls))

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _done(self, task: asyncio.Task[Any], calls: set[AsyncCall]) -> None:
        calls.discard(self)
        try:
            self.value = task.result()
        except BaseException as exc:  # CancelledError included
            self.error = exc
        self.ended.set()

    # -- anywhere ------------------------------------------------------------------------------

    def finish(self, error: BaseException) -> None:
        """End a call whose task never ran or never ended (its loop is gone)."""
        coro, self._coro = self._coro, None
        if coro is not None:
            coro.close()
        if not self.ended.is_set():
            self.error = error
            self.ended.set()


class KeyLoop:
    """An event loop on its own daemon thread, started on the first ``submit`` (and started
    afresh by a later ``submit`` if its thread has ended without ``close``)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        #: The current loop's calls submitted and not ended (touched under the lock or on that
        #: loop's thread). Each loop has a set of its own: a loop that ends answers only its own.
        self._calls: set[AsyncCall] = set()
        #: Why the last loop's thread ended without ``close`` (for the restart's log line).
        self._fault: str | None = None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def submit(
        self,
        coro: Coroutine[Any, Any, Any],
        error: CommandError,
        context: contextvars.Context | None = None,
    ) -> AsyncCall:
        """Start ``coro`` as a task on this loop, inside ``context`` if given; if the loop is
        closed, the call ends at once with ``error``."""
        call = AsyncCall(coro, context)
        with self._lock:
            if self._closed:
                call.finish(error)
                return call
            loop, calls = self._serving()
            calls.add(call)
            try:
                loop.call_soon_threadsafe(call.start, loop, calls)
            except RuntimeError:  # its thread closed it a moment ago: start a fresh one
                calls.discard(call)
                self._fault = self._fault or "the loop was closed"
                loop, calls = self._serving()
                calls.add(call)
                loop.call_soon_threadsafe(call.start, loop, calls)
        return call

    def _serving(self) -> tuple[asyncio.AbstractEventLoop, set[AsyncCall]]:
        """The running loop and its calls; a new loop and thread if there is none (under the
        lock)."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive() and not loop.is_closed():
            return loop, self._calls
        if loop is not None:  # its thread ended, and nobody closed it: a fault
            logger.warning("event_loop.restarted", thread=self._name, error=self._fault)
        self._fault = None
        loop = self._loop = asyncio.new_event_loop()
        calls: set[AsyncCall] = set()
        self._calls = calls
        thread = self._thread = threading.Thread(
            target=self._serve, args=(loop, calls), name=self._name, daemon=True
        )
        thread.start()
        return loop, calls

    def cancel(self, call: AsyncCall) -> None:
        """Cancel the call's task: ``CancelledError`` is raised inside it at its next await."""
        call.cancel_sent = True
        with self._lock:
            loop = self._loop
            if loop is None or self._closed:
                return  # closing cancels every task anyway
            with contextlib.suppress(RuntimeError):  # closed a moment ago
                loop.call_soon_threadsafe(call.cancel)

    def close(self, timeout: float = CLOSE_GRACE + 1.0) -> None:
        """Cancel every task, let them end (up to ``CLOSE_GRACE``), stop and join the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        thread.join(min(timeout, threading.TIMEOUT_MAX) if timeout > 0.0 else 0.0)

    def suspend(self) -> bool:
        """Stop the loop's thread if no call runs on it (its key passivates); the next
        ``submit`` starts a new one. True if a running thread was told to stop."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if self._closed or loop is None or self._calls:
                return False
            self._loop = self._thread = None
            with contextlib.suppress(RuntimeError):  # its thread closed it a moment ago
                loop.call_soon_threadsafe(loop.stop)
        return thread is not None and thread.is_alive()

    def _serve(self, loop: asyncio.AbstractEventLoop, calls: set[AsyncCall]) -> None:
        fault: str | None = None
        try:
            asyncio.set_event_loop(loop)
            while True:
                try:
                    loop.run_forever()
                except BaseException:  # SystemExit etc. from a task: its done callback fails
                    continue  # its call (the worker dies and is replaced); the loop lives on
                with self._lock:
                    if self._closed or self._loop is not loop:
                        break  # stopped by close(), or by suspend()
                # stopped by a task (``loop.stop()``), not by close(): serve on
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            # a stop from close() still queued (a task stopped the loop as close() did) ends
            # the first run early: the tasks that ignore it are answered below
            with contextlib.suppress(RuntimeError):
                if tasks:
                    loop.run_until_complete(asyncio.wait(tasks, timeout=CLOSE_GRACE))
                loop.run_until_complete(loop.shutdown_asyncgens())
        except BaseException as exc:  # a fault in the loop's own code: the next submit restarts
            fault = repr(exc)
            with contextlib.suppress(BaseException):  # logging that fails cannot stop the cleanup
                logger.exception("event_loop.failed", thread=self._name, error=repr(exc))
        finally:
            loop.close()
            with self._lock:
                left = list(calls)
                calls.clear()
                if fault is not None and self._loop is loop:  # not replaced already
                    self._fault = fault
            gone = CommandError("the key's event loop was stopped", reason="unavailable")
            for call in left:  # tasks that ignored their cancellation: their workers go on
                call.finish(gone)


def wake(loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[Reply], reply: Reply) -> None:
    """Called on the thread that answered a ticket: resolve the awaiting caller's future."""
    with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody awaits
        loop.call_soon_threadsafe(_settle, waiter, reply)


def _settle(waiter: asyncio.Future[Reply], reply: Reply) -> None:
    if not waiter.done():  # the awaiting task may have been cancelled
        waiter.set_result(reply)
