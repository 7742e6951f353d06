"""The fleet's listener: a thread subscribed to the namespace's channel, so that a fleet-open
reaches every node in milliseconds, not at its next tick.

It applies each broadcast to the key's breaker itself (under the key's gate lock): no hop
through the fleet actor, which may be busy in a flush. The thread never dies of a fault: a lost
connection is retried with backoff (the flushes carry the state meanwhile), a garbage message
is logged and dropped, and any other exception (``BaseException`` included) is logged and the
loop goes on.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable
from typing import Any

from supervision import FleetState, backoff_delay
from supervision.fleet import GarbageError, parse_message

from ..log import Log
from .store import Store, StoreError

__all__ = ["Listener"]

#: Seconds each wait for a message may block (the thread notices ``close`` within this).
POLL = 0.2


class Listener:
    def __init__(
        self,
        store: Store,
        channel: str,
        on_state: Callable[[str, FleetState], None],
        on_garbage: Callable[[str, str], None],
        log: Log,
        *,
        name: str,
    ) -> None:
        self._store = store
        self._channel = channel
        self._on_state = on_state
        self._on_garbage = on_garbage
        self._log = log
        self._stop = threading.Event()
        #: Set while subscribed (tests and health wait on it).
        self.subscribed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(min(timeout, threading.TIMEOUT_MAX) if timeout > 0.0 else 0.0)
        self._store.close()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._listen()
                failures = 0
            except StoreError as exc:
                self._log.debug("fleet.listener_disconnected", error=str(exc))
            except BaseException as exc:  # the thread must survive anything (a SystemExit
                # from a callback too): log, start again
                with contextlib.suppress(BaseException):
                    self._log.exception("fleet.listener_failed", error=repr(exc))
            self.subscribed.clear()
            with contextlib.suppress(Exception):
                self._store.broken()
            delay = backoff_delay(failures, 0.1, 2.0, 0.2, random.random())
            failures += 1
            self._stop.wait(delay)

    def _listen(self) -> None:
        pubsub: Any = self._store.pubsub()
        try:
            try:
                pubsub.subscribe(self._channel)
            except Exception as exc:
                raise StoreError(f"{type(exc).__name__}: {exc}") from exc
            self.subscribed.set()
            while not self._stop.is_set():
                try:
                    message = pubsub.get_message(timeout=POLL)
                except Exception as exc:
                    raise StoreError(f"{type(exc).__name__}: {exc}") from exc
                if message is None or message.get("type") != "message":
                    continue
                self._deliver(message.get("data"))
        finally:
            with contextlib.suppress(Exception):  # closing a broken connection must not raise
                pubsub.close()

    def _deliver(self, data: Any) -> None:
        try:
            key, state = parse_message(data)
        except GarbageError as exc:
            self._on_garbage("", f"a broadcast was dropped: {exc}")
            return
        self._on_state(key, state)
