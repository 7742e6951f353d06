"""Clocks: the only source of time for the pure core, injected so tests never sleep."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "monotonic"]


class Clock(Protocol):
    """Anything that returns monotonic seconds when called."""

    def __call__(self) -> float: ...


monotonic: Clock = time.monotonic


class FakeClock:
    """A clock that moves only when told to: ``clock.advance(5.0)``."""

    __slots__ = ("now",)

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            msg = f"a clock cannot go back: advance(seconds={seconds!r})"
            raise ValueError(msg)
        self.now += seconds
