"""A rolling window of event counts in buckets, over an injected clock.

The window covers ``window`` seconds in ``buckets`` equal buckets; a bucket older than the window
drops out as time moves on. Running totals make every read O(1) amortised.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .clock import Clock
from .events import ERROR_EVENTS, EventType

__all__ = ["RollingCounts"]

_INDEX = {event: i for i, event in enumerate(EventType)}
_ERRORS = tuple(sorted(_INDEX[event] for event in ERROR_EVENTS))
_SUCCESS = _INDEX[EventType.SUCCESS]
#: Every bucket's row until its first count: shared, never written (an idle key of thousands
#: keeps no empty rows).
_NO_COUNTS: list[int] = [0] * len(_INDEX)


class RollingCounts:
    """Counts of each ``EventType`` over the last ``window`` seconds."""

    __slots__ = (
        "_bucket_ids",
        "_buckets",
        "_clock",
        "_latest",
        "_n",
        "_totals",
        "_width",
        "resets",
    )

    def __init__(self, window: float, buckets: int, clock: Clock) -> None:
        if window <= 0 or buckets < 1:
            msg = f"a rolling window needs window > 0 and buckets >= 1, got {window!r}, {buckets!r}"
            raise ValueError(msg)
        self._clock = clock
        self._n = buckets
        self._width = window / buckets
        self._buckets = [_NO_COUNTS] * buckets
        self._bucket_ids = [-1] * buckets
        self._totals = [0] * len(_INDEX)
        self._latest = -1
        #: How many times ``reset`` has emptied the window (readers of buckets notice it).
        self.resets = 0

    def _advance(self) -> int:
        """Drop buckets that fell out of the window; return the current bucket's id."""
        current = int(self._clock() // self._width)
        if current != self._latest:
            oldest_kept = current - self._n + 1
            for slot in range(self._n):
                if -1 < self._bucket_ids[slot] < oldest_kept:
                    self._clear(slot)
            self._latest = current
        return current

    def _clear(self, slot: int) -> None:
        counts = self._buckets[slot]
        totals = self._totals
        for i, n in enumerate(counts):
            if n:
                totals[i] -= n
                counts[i] = 0
        self._bucket_ids[slot] = -1

    def add(self, event: EventType, n: int = 1) -> None:
        self._add_to(self._advance(), _INDEX[event], n)

    def count(self, event: EventType) -> int:
        self._advance()
        return self._totals[_INDEX[event]]

    def total(self, events: Iterable[EventType]) -> int:
        self._advance()
        totals = self._totals
        return sum(totals[_INDEX[e]] for e in events)

    def health(self) -> tuple[int, int]:
        """Hystrix's health counts over the window: (requests, errors), where requests are
        SUCCESS plus the errors (FAILURE, TIMEOUT and the rejections)."""
        self._advance()
        totals = self._totals
        errors = sum(map(totals.__getitem__, _ERRORS))
        return totals[_SUCCESS] + errors, errors

    def snapshot(self) -> Mapping[EventType, int]:
        """Every event type's count over the window (zeros included)."""
        self._advance()
        return dict(zip(_INDEX, self._totals, strict=True))

    def now(self) -> float:
        """The window's clock now."""
        return self._clock()

    @property
    def bucket_width(self) -> float:
        return self._width

    @property
    def bucket_count(self) -> int:
        return self._n

    def bucket_health(self) -> list[tuple[int, int, int]]:
        """Each live bucket's (id, requests, errors), as ``health`` counts them; a bucket's id
        times ``bucket_width`` is when it began on the window's clock."""
        self._advance()
        rows = []
        for slot, bucket_id in enumerate(self._bucket_ids):
            if bucket_id < 0:
                continue
            counts = self._buckets[slot]
            errors = sum(map(counts.__getitem__, _ERRORS))
            rows.append((bucket_id, counts[_SUCCESS] + errors, errors))
        return rows

    def resized(self, window: float, buckets: int) -> RollingCounts:
        """A window of another shape holding these counts, each at its bucket's start time
        (counts older than the new window are dropped)."""
        self._advance()  # drop what has already left this window
        resized = RollingCounts(window, buckets, self._clock)
        current = resized._advance()
        for slot, bucket_id in enumerate(self._bucket_ids):
            if bucket_id < 0:
                continue
            target = int(bucket_id * self._width // resized._width)
            if target <= current - resized._n:
                continue
            for i, n in enumerate(self._buckets[slot]):
                if n:
                    resized._add_to(min(target, current), i, n)
        return resized

    def _add_to(self, bucket_id: int, index: int, n: int) -> None:
        slot = bucket_id % self._n
        if self._bucket_ids[slot] != bucket_id:
            self._clear(slot)
            self._bucket_ids[slot] = bucket_id
        row = self._buckets[slot]
        if row is _NO_COUNTS:
            row = self._buckets[slot] = [0] * len(_INDEX)
        row[index] += n
        self._totals[index] += n

    def reset(self) -> None:
        for slot in range(self._n):
            self._clear(slot)
        self.resets += 1
