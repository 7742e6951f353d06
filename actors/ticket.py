"""A ticket: one admitted call, answered exactly once.

Whoever claims the ticket first (the worker with the result, the caller or the watchdog at the
deadline, the supervisor when it stops) is the only one who answers it; the others let go.
A blocking caller waits on a plain lock (the cheapest hand-off Python has); a non-blocking one
gets a pykka future, made only for it, or (an ``await``) an ``on_answer`` callback that wakes its
event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pykka

from supervision import Permit

if TYPE_CHECKING:
    from .messages import Reply
    from .port import CommandPort

__all__ = ["Ticket"]


class Ticket:
    __slots__ = (
        "_claim",
        "_done",
        "abandoned",
        "answered",
        "deadline",
        "future",
        "holds_slot",
        "on_answer",
        "payload",
        "permit",
        "port",
        "reply",
        "runner",
        "started",
        "timed_out",
    )

    def __init__(
        self,
        port: CommandPort,
        payload: Any,
        started: float,
        deadline: float,
        permit: Permit,
        *,
        block: bool = True,
        on_answer: Callable[[Reply], object] | None = None,
    ) -> None:
        self.port = port
        self.payload = payload
        self.started = started
        self.deadline = deadline
        self.permit = permit
        self.timed_out = False
        #: True until the call's bulkhead slot is given back (changed under the gate's lock).
        self.holds_slot = True
        #: The worker running it, once one has begun (set under the gate's lock).
        self.runner: pykka.ActorRef[Any] | None = None
        #: Its worker was abandoned while stuck in ``run`` (set under the gate's lock).
        self.abandoned = False
        self.answered = False
        self.reply: Reply | None = None
        self.future: pykka.ThreadingFuture[Reply] | None = (
            None if block or on_answer is not None else pykka.ThreadingFuture()
        )
        #: Called with the reply by whoever answers (set before the ticket is sent anywhere).
        self.on_answer = on_answer
        self._claim = threading.Lock()
        self._done = threading.Lock()
        self._done.acquire()  # released once, by answer()

    def claim(self) -> bool:
        """Take the right to answer; True for exactly one caller."""
        return self._claim.acquire(blocking=False)

    @property
    def settled(self) -> bool:
        """True once someone has claimed the ticket."""
        return self._claim.locked()

    def answer(self, reply: Reply) -> None:
        """Deliver the reply (only the claimer calls this)."""
        self.reply = reply
        self.answered = True
        port = self.port
        port.tracked.discard(self)
        try:
            port.replied(reply)  # counted before the caller wakes, so it sees its own call
        finally:  # whatever happens, the caller is answered
            try:
                if self.future is not None:
                    self.future.set(reply)
                elif self.on_answer is not None:
                    self.on_answer(reply)  # must not raise: see event_loop.wake
            finally:
                self._done.release()

    def wait(self, timeout: float | None) -> Reply | None:
        """The reply, waiting up to ``timeout`` seconds (None: as long as it takes)."""
        if self._done.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            self._done.release()  # stays answered for any later wait
            return self.reply
        return None
