"""What actor tests share with the commands they drive: counters, events, and one wait bound.

Test modules in this folder import it as ``from probe import WAIT, Probe`` (pytest puts a test
module's folder on ``sys.path``).
"""

from __future__ import annotations

import threading
from typing import Any

from actors import Command, CommandConfig
from supervision import SupervisionPolicy

#: Upper bound on any wait for another thread: reached only when something is broken.
WAIT = 5.0


class Probe:
    """Shared by a test and every instance of its command."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs = 0
        self.fallbacks = 0
        self.fallback_errors: list[BaseException] = []
        #: Released by the test (or its teardown): lets every hung ``run`` return.
        self.release = threading.Event()
        #: One permit per ``run`` that has started to hang.
        self.entered = threading.Semaphore(0)
        #: One permit per fallback that has started to hang.
        self.in_fallback = threading.Semaphore(0)
        #: Set when a hung ``run`` has returned.
        self.finished = threading.Event()
        #: Whatever a command wants the test to see.
        self.seen: dict[str, Any] = {}

    def ran(self) -> None:
        with self._lock:
            self.runs += 1

    def fell_back(self, error: BaseException | None = None) -> None:
        with self._lock:
            self.fallbacks += 1
            if error is not None:
                self.fallback_errors.append(error)

    def wait_entered(self, n: int = 1) -> None:
        for _ in range(n):
            assert self.entered.acquire(timeout=WAIT), "run never started"


class Dependency(Command):
    """A dependency a test steers by payload: "fail" raises, "hang" waits for
    ``probe.release`` (after releasing ``probe.entered``), anything else answers "ok"."""

    key = "ok"
    group = "Issues"

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def run(self, payload: Any) -> Any:
        if payload == "fail":
            raise RuntimeError("boom")
        if payload == "hang":
            self.probe.entered.release()
            self.probe.release.wait(WAIT)
            return "released"
        return "ok"

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return "fallback"


class Slow(Dependency):
    key = "slow"
    # A long grace: the stuck worker is not abandoned (and its slot freed) during the test.
    config = CommandConfig(timeout=0.05, supervision=SupervisionPolicy(zombie_grace=60.0))


class Busy(Dependency):
    key = "busy"
    config = CommandConfig(max_concurrent_requests=1, timeout=WAIT)
