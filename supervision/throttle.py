"""A log throttle: let one event through per interval and count the ones held back.

Under overload a key may reject thousands of calls a second; logging each one would make the
rejection path as slow as the work it protects. Pure and clock-injected; its owner serialises
access (a lost update under a race costs one miscounted line, never a call).
"""

from __future__ import annotations

from .clock import Clock

__all__ = ["Throttle"]


class Throttle:
    __slots__ = ("_clock", "_next", "_suppressed", "interval")

    def __init__(self, interval: float, clock: Clock) -> None:
        if not interval >= 0:
            msg = f"interval must be a number of seconds >= 0, got {interval!r}"
            raise ValueError(msg)
        self.interval = interval
        self._clock = clock
        self._next = float("-inf")
        self._suppressed = 0

    def allow(self) -> int | None:
        """None to hold this event back; else how many were held back since the last one."""
        now = self._clock()
        if now < self._next:
            self._suppressed += 1
            return None
        self._next = now + self.interval
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed
