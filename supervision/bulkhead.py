"""The bulkhead: how many calls a key has admitted, and whether one more fits.

A call holds its slot from admission until its ``run`` returns (honest accounting: a timed-out
call that is still running keeps its slot, unlike hystrix-go, which hands it back at the timeout).
Not thread-safe: its owner serialises access.
"""

from __future__ import annotations

__all__ = ["Bulkhead"]


class Bulkhead:
    """At most ``max_concurrent`` running plus ``queue_size`` waiting; the rest are rejected."""

    __slots__ = ("_capacity", "in_flight", "max_concurrent", "max_in_flight", "queue_size")

    def __init__(self, max_concurrent: int, queue_size: int = 0) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.max_concurrent = max_concurrent
        self.queue_size = queue_size
        self._capacity = max_concurrent + queue_size

    def try_acquire(self, *, queue: bool = True) -> bool:
        """Take a slot if one is free; with ``queue=False`` only a running slot counts (a call
        run by its caller cannot wait)."""
        if self.in_flight >= (self._capacity if queue else self.max_concurrent):
            return False
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return True

    def release(self) -> None:
        if self.in_flight <= 0:
            msg = "bulkhead released more often than acquired"
            raise RuntimeError(msg)
        self.in_flight -= 1

    def resize(self, max_concurrent: int, queue_size: int) -> None:
        """Change the limits; calls already admitted keep their slots."""
        self.max_concurrent = max_concurrent
        self.queue_size = queue_size
        self._capacity = max_concurrent + queue_size
