"""Instruments a chaos run reads the process with: per-ask tallies, RSS, thread stacks and
families, pykka's log records and the library's structlog events."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import faulthandler
import logging
import os
import re
import tempfile
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import structlog

__all__ = ["PykkaTap", "Tally", "counting_logs", "dump_threads", "rss_bytes", "thread_family"]


class Tally:
    """A count per ask id, in a compact growing bytearray (saturating at 255)."""

    _CHUNK = 1 << 16

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = bytearray()

    def bump(self, ask_id: int) -> int:
        with self._lock:
            counts = self._counts
            if ask_id >= len(counts):
                counts.extend(bytes(max(self._CHUNK, ask_id + 1 - len(counts))))
            value = min(255, counts[ask_id] + 1)
            counts[ask_id] = value
            return value

    @property
    def nbytes(self) -> int:
        return len(self._counts)

    def get(self, ask_id: int) -> int:
        with self._lock:
            return self._counts[ask_id] if ask_id < len(self._counts) else 0

    def ids_over(self, limit: int) -> list[int]:
        with self._lock:
            return [i for i, n in enumerate(self._counts) if n > limit]


def _malloc_trim() -> None:
    """Hand the C allocator's free pages back to the system (glibc only), so RSS measures memory
    in use rather than what freed threads' arenas still hold."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_bytes(trim: bool = True) -> int:
    """This process's resident set size (VmRSS), 0 where /proc is missing; ``trim`` first
    returns the allocator's free pages (glibc's ``malloc_trim``)."""
    if trim:
        _malloc_trim()
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def dump_threads() -> str:
    """Every thread's stack, as ``faulthandler`` prints it (works with a hung GIL holder too)."""
    with tempfile.TemporaryFile("w+") as out:
        faulthandler.dump_traceback(file=out, all_threads=True)
        out.seek(0)
        return out.read()


def thread_family(thread_name: str) -> str:
    """A thread's family: WorkerActor-12 (_actor_loop) -> WorkerActor, chaos-caller-3 ->
    chaos-caller."""
    match = re.match(r"[A-Za-z_-]*[A-Za-z_]", thread_name)
    return match.group(0) if match else thread_name


class _PykkaHandler(logging.Handler):
    def __init__(self, tap: PykkaTap) -> None:
        super().__init__(logging.DEBUG)
        self.tap = tap

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "Stopping all actors" in message:
            self.tap.stop_all.append(message)
        elif record.levelno >= logging.ERROR and message.startswith("Unhandled exception"):
            exc = record.exc_info[1] if record.exc_info else None
            if type(exc).__name__ == "InjectedCrash":
                self.tap.injected_crashes += 1
            else:
                frames = traceback.extract_tb(exc.__traceback__) if exc is not None else []
                where = " <- ".join(
                    f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in frames[::-1][:4]
                )
                self.tap.unexpected_crashes.append(f"{message} {exc!r} at {where}")


class PykkaTap:
    """Counts actors that died of an exception and pykka's "stop every actor" (a BaseException
    that escaped an actor), from pykka's own log records."""

    def __init__(self) -> None:
        self.injected_crashes = 0
        self.unexpected_crashes: list[str] = []
        self.stop_all: list[str] = []

    @contextlib.contextmanager
    def installed(self) -> Iterator[PykkaTap]:
        log = logging.getLogger("pykka")
        handler = _PykkaHandler(self)
        saved = (log.level, log.propagate)
        log.setLevel(logging.DEBUG)
        log.propagate = False  # pykka's debug records must not pile up in a test's log capture
        log.addHandler(handler)
        try:
            yield self
        finally:
            log.removeHandler(handler)
            log.setLevel(saved[0])
            log.propagate = saved[1]


@contextlib.contextmanager
def counting_logs(counts: collections.Counter[tuple[str, str]]) -> Iterator[None]:
    """Count the library's structlog events by (level, event) and drop them (a soak must not
    keep them), restoring the previous structlog configuration afterwards."""

    def count(_logger: Any, method: str, event: Any) -> Any:
        counts[method, str(event.get("event"))] += 1
        raise structlog.DropEvent

    # Keep the processors list itself: loggers bound before now hold a reference to it.
    configured = structlog.get_config()["processors"]
    saved = list(configured)
    configured.clear()
    configured.append(count)
    structlog.configure(processors=configured)
    try:
        yield
    finally:
        configured.clear()
        configured.extend(saved)
        structlog.configure(processors=configured)
