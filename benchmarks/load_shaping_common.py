"""What the load-shaping scenarios share (``benchmarks.load_shaping``): a command calling a
simulated dependency, caller threads (paced or closed-loop), a thread-safe counter, nearest-rank
percentiles and the quiet logging every scenario runs under."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import structlog

from actors import Command, CommandConfig

__all__ = ["Counter", "calling", "ms", "paced", "percentile", "quiet_logging", "run_threads"]


def calling(key: str, config: CommandConfig) -> type[Command[Any, Any]]:
    """A command class under ``key`` whose ``run`` calls the dependency it is registered with
    (``registry.register(cls, dependency)``): a simulated dependency, as a user's command
    calls a real one."""
    command_key, command_config = key, config

    class Calling(Command[Any, Any]):
        key = command_key
        config = command_config

        def __init__(self, dependency: Callable[[Any], Any]) -> None:
            self._dependency = dependency

        def run(self, payload: Any) -> Any:
            return self._dependency(payload)

    Calling.__qualname__ = Calling.__name__ = "Calling_" + key.replace(".", "_").replace("-", "_")
    return Calling


class Counter:
    """An integer many threads add to."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, n: int = 1) -> int:
        """Add ``n``; the new value."""
        with self._lock:
            self.value += n
            return self.value


def run_threads(count: int, target: Callable[[int], None], name: str) -> None:
    """Run ``target(index)`` on ``count`` threads at once and wait for them all; the first
    exception one raised is raised here (a benchmark that broke must not report figures)."""
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)
        except BaseException as exc:  # reported below, on the benchmark's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=guarded, args=(n,), name=f"{name}-{n}", daemon=True)
        for n in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def paced(rate: float, count: int, offset: float, call: Callable[[int], None]) -> None:
    """Make ``count`` calls at ``rate`` a second from ``time.monotonic() + offset``: each one at
    its tick, or at once if the previous ones ran late (every caller makes the same calls, so
    variants compare call for call)."""
    start = time.monotonic() + offset
    for n in range(count):
        wait = start + n / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        call(n)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (``q`` in 0..1); NaN if none."""
    if not sorted_values:
        return math.nan
    return sorted_values[max(1, math.ceil(q * len(sorted_values))) - 1]


def ms(seconds: float) -> str:
    """Seconds as milliseconds in a table cell."""
    if math.isnan(seconds):
        return "n/a"
    value = seconds * 1000
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


@contextlib.contextmanager
def quiet_logging() -> Iterator[None]:
    """What an application that configured neither structlog nor ``logging`` has (the
    library's events go to ``logging.getLogger("actors")`` at WARNING), with a
    ``NullHandler`` keeping the scenarios' throttled failure and rejection lines out of the
    report."""
    structlog.reset_defaults()
    actors_logger = logging.getLogger("actors")
    sink = logging.NullHandler()
    propagate = actors_logger.propagate
    actors_logger.addHandler(sink)
    actors_logger.propagate = False
    try:
        yield
    finally:
        actors_logger.removeHandler(sink)
        actors_logger.propagate = propagate
