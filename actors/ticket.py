"""A ticket: one admitted call, answered exactly once.

Whoever claims the ticket first (the worker with the result, the caller or the watchdog at the
deadline, the supervisor when it stops) is the only one who answers it; the others let go.
"""

from __future__ import annotations

import threading
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
        "answered",
        "deadline",
        "future",
        "payload",
        "permit",
        "port",
        "started",
        "timed_out",
    )

    def __init__(
        self, port: CommandPort, payload: Any, started: float, deadline: float, permit: Permit
    ) -> None:
        self.port = port
        self.payload = payload
        self.started = started
        self.deadline = deadline
        self.permit = permit
        self.timed_out = False
        self.answered = False
        self.future: pykka.ThreadingFuture[Reply] = pykka.ThreadingFuture()
        self._claim = threading.Lock()

    def claim(self) -> bool:
        """Take the right to answer; True for exactly one caller."""
        return self._claim.acquire(blocking=False)

    @property
    def settled(self) -> bool:
        """True once someone has claimed the ticket."""
        return self._claim.locked()

    def answer(self, reply: Reply) -> None:
        """Deliver the reply (only the claimer calls this)."""
        self.answered = True
        self.future.set(reply)
