"""A chaos driver for hystrix-actors: many callers, several keys, faults injected mid-flight.

``Chaos(options).run()`` registers a few command keys with different configurations (small
bulkheads, 50-200 ms timeouts, queues, fallbacks that sometimes raise), starts caller threads
that ask them a seeded mix of calls (success, Exception, BaseException, bad request, short
sleep, a hang past the deadline, a hang until the end of the run), blocking and not, with and
without a per-ask timeout, and a chaos thread that crashes or stops workers and supervisors,
resizes pools, changes timeouts and thresholds, and revives keys that went down. It counts
everything and returns a ``ChaosResult`` whose ``invariants`` say whether:

* every ask was answered exactly once (by the caller's count and by a tap on ``Ticket.answer``),
  with a well-formed answer carrying its own ask id, and no call ran or fell back twice;
* every ask was answered within its timeout plus a slack (a hang dumps every thread's stack);
* the thread count stayed under the bound the supervision policy implies;
* no bulkhead slot leaked: every key's ``in_flight`` and ``zombies`` go back to 0 once the hung
  runs are released;
* memory stayed flat (RSS, and the Python heap with ``trace_memory``);
* no actor crashed except those crashed on purpose, and pykka never stopped every actor;
* every key serves again after the chaos stops, and ``shutdown`` leaves no library thread.

Importable by the tests (``from harness import ...``: pytest puts this folder on ``sys.path``)
and by the soak script (``tests.chaos.harness``). It only waits on events or polls with a bound.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import faulthandler
import gc
import itertools
import logging
import os
import random
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pykka
import structlog

from actors import (
    BadRequest,
    Command,
    CommandConfig,
    CommandError,
    CommandRegistry,
    EventType,
    Reply,
)
from supervision import SupervisionPolicy

__all__ = [
    "ACTIONS",
    "DEFAULT_KEYS",
    "Ask",
    "Chaos",
    "ChaosBaseException",
    "ChaosError",
    "ChaosOptions",
    "ChaosResult",
    "Invariant",
    "KeySpec",
    "Ledger",
    "PykkaTap",
    "Tally",
    "classify",
    "dump_threads",
    "rss_bytes",
]

#: What a ``run`` can be told to do.
ACTIONS = ("ok", "sleep", "error", "base", "bad", "hang", "stuck")

#: Library log events that can only mean a bug (a worker's own handling broke, a timer job died).
BUG_EVENTS = frozenset({"worker.internal_error", "watchdog.fallback_crashed", "listener.failed"})


class ChaosError(RuntimeError):
    """What a run told to fail with an ``Exception`` raises."""


class ChaosBaseException(BaseException):
    """Neither an Exception nor one of Python's own BaseExceptions."""


_BASE_EXCEPTIONS: tuple[Callable[[], BaseException], ...] = (
    lambda: SystemExit(3),
    KeyboardInterrupt,
    GeneratorExit,
    lambda: ChaosBaseException("chaos"),
)


# -- what is driven -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class KeySpec:
    """One command key: its starting configuration, its fallback, its fault mix, and the ranges
    the chaos thread may reconfigure it within."""

    name: str
    config: CommandConfig
    #: "value" (returns at once), "flaky" (sometimes raises, an Exception or a BaseException, or
    #: is a little slow) or "none" (no fallback: FALLBACK_MISSING).
    fallback: str
    #: Weight of each action in this key's asks.
    mix: dict[str, int]
    #: Timeouts the chaos thread may set (the longest bounds how long an ask may take).
    timeouts: tuple[float, ...]
    pool: tuple[int, int]
    queue: tuple[int, int]
    #: Asks that hang until the end of the run, at most, over the whole run.
    stuck_budget: int = 1
    #: Share of asks whose fallback fails ("flaky" only).
    fallback_fault_rate: float = 0.3

    @property
    def max_timeout(self) -> float:
        return max((*self.timeouts, self.config.timeout))

    @property
    def max_zombies(self) -> int:
        cap = self.config.supervision.max_zombies
        assert cap is not None, "chaos keys set max_zombies explicitly: the thread bound uses it"
        return cap


#: Restarts are cheap and frequent under chaos: a key whose workers are killed or replaced
#: several times a second must not escalate because of it.
SOAKING = SupervisionPolicy(
    max_restarts=100_000,
    restart_period=10.0,
    max_supervisor_restarts=100_000,
    supervisor_restart_period=60.0,
    min_backoff=0.01,
    max_backoff=0.2,
    random_factor=0.2,
    max_zombies=3,
)

#: A key that does escalate and goes down: the chaos thread revives it with ``restart(key)``.
FRAGILE = SupervisionPolicy(
    max_restarts=30,
    restart_period=2.0,
    max_supervisor_restarts=2,
    supervisor_restart_period=60.0,
    min_backoff=0.02,
    max_backoff=0.2,
    random_factor=0.2,
    max_zombies=2,
)

DEFAULT_KEYS: tuple[KeySpec, ...] = (
    KeySpec(
        name="chaos-alpha",
        config=CommandConfig(
            timeout=0.05,
            max_concurrent_requests=4,
            queue_size=0,
            request_volume_threshold=20,
            error_percent_threshold=60,
            sleep_window=0.3,
            rolling_window=2.0,
            fallback_max_concurrent=4,
            supervision=SOAKING,
        ),
        fallback="value",
        mix={"ok": 60, "sleep": 10, "error": 12, "base": 4, "bad": 4, "hang": 6, "stuck": 1},
        timeouts=(0.05, 0.1),
        pool=(1, 5),
        queue=(0, 1),
    ),
    KeySpec(
        name="chaos-beta",
        config=CommandConfig(
            timeout=0.1,
            max_concurrent_requests=2,
            queue_size=2,
            request_volume_threshold=10,
            error_percent_threshold=80,
            sleep_window=0.2,
            rolling_window=2.0,
            fallback_max_concurrent=2,
            supervision=SOAKING,
        ),
        fallback="flaky",
        mix={"ok": 50, "sleep": 15, "error": 10, "base": 10, "bad": 3, "hang": 8, "stuck": 1},
        timeouts=(0.05, 0.1, 0.2),
        pool=(1, 4),
        queue=(0, 3),
    ),
    KeySpec(
        name="chaos-gamma",
        config=CommandConfig(
            timeout=0.2,
            max_concurrent_requests=3,
            queue_size=1,
            request_volume_threshold=20,
            error_percent_threshold=50,
            sleep_window=0.5,
            rolling_window=2.0,
            fallback_max_concurrent=3,
            supervision=SOAKING,
        ),
        fallback="none",
        mix={"ok": 60, "sleep": 20, "error": 8, "base": 3, "bad": 3, "hang": 5, "stuck": 1},
        timeouts=(0.1, 0.2),
        pool=(1, 4),
        queue=(0, 2),
    ),
    KeySpec(
        name="chaos-delta",
        config=CommandConfig(
            timeout=0.08,
            max_concurrent_requests=2,
            queue_size=0,
            request_volume_threshold=10,
            error_percent_threshold=50,
            sleep_window=0.3,
            rolling_window=2.0,
            fallback_max_concurrent=2,
            supervision=FRAGILE,
        ),
        fallback="value",
        mix={"ok": 40, "sleep": 10, "error": 15, "base": 15, "bad": 5, "hang": 10, "stuck": 1},
        timeouts=(0.05, 0.08, 0.15),
        pool=(1, 3),
        queue=(0, 1),
    ),
)

#: Kinds of fault the chaos thread injects, with their weights.
FAULTS: dict[str, int] = {
    "kill_worker:crash": 30,
    "kill_worker:stop": 20,
    "kill_supervisor:crash": 6,
    "kill_supervisor:stop": 4,
    "resize": 15,
    "retime": 10,
    "rethreshold": 8,
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChaosOptions:
    seconds: float = 10.0
    seed: int | None = None
    callers: int = 16
    keys: tuple[KeySpec, ...] = DEFAULT_KEYS
    #: Mean seconds between two faults of the chaos thread (exponentially distributed).
    fault_interval: float = 0.05
    #: Share of caller rounds that issue a batch of non-blocking asks rather than one blocking ask.
    nonblocking_share: float = 0.35
    #: Share of asks given a per-ask ``timeout`` shorter than the key's.
    per_ask_timeout_share: float = 0.2
    #: An ask must be answered within the longest timeout it may get plus this many seconds.
    slack: float = 2.0
    #: Seconds of load before memory is first measured (default: 20 % of the run, 1-30 s).
    warmup: float | None = None
    #: Seconds between RSS checkpoints.
    checkpoint_every: float = 1.0
    #: Also measure the Python heap with tracemalloc from the end of warm-up (slows the run).
    trace_memory: bool = False
    rss_growth_bound: int = 32 * 2**20
    heap_growth_bound: int = 8 * 2**20
    #: Threads per key beyond its workers and zombies (its supervisor, a starting replacement).
    threads_per_key: int = 3
    #: Threads per registry: its actor, the watchdog and its fallback runners, and some slack.
    threads_per_registry: int = 8
    #: Seconds a key may stay "down" before the chaos thread revives it with ``restart(key)``.
    revive_after: float = 0.3
    #: Bound on every wait for the system to settle once the load stops.
    settle: float = 10.0
    shutdown_timeout: float = 2.0

    def resolved_seed(self) -> int:
        return self.seed if self.seed is not None else random.SystemRandom().randrange(2**32)

    def resolved_warmup(self) -> float:
        if self.warmup is not None:
            return self.warmup
        return min(30.0, max(1.0, 0.2 * self.seconds))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Ask:
    """One ask's payload: it carries its id, so an answer names the ask it belongs to."""

    token: int  # which Chaos run issued it
    ask_id: int
    key: str
    action: str
    seconds: float = 0.0
    variant: int = 0
    fallback_fault: str | None = None
    timeout: float | None = None
    block: bool = True


# -- bookkeeping ----------------------------------------------------------------------------------


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

    def get(self, ask_id: int) -> int:
        with self._lock:
            return self._counts[ask_id] if ask_id < len(self._counts) else 0

    def ids_over(self, limit: int) -> list[int]:
        with self._lock:
            return [i for i, n in enumerate(self._counts) if n > limit]

    def ids_missing(self, issued: int) -> list[int]:
        """Ids below ``issued`` with a zero count."""
        with self._lock:
            counts = self._counts
            return [i for i in range(issued) if i >= len(counts) or counts[i] == 0]


class Ledger:
    """What the command instances see, shared by every instance of every chaos key."""

    def __init__(self, token: int, run_until: float) -> None:
        self.token = token
        self.runs = Tally()
        self.fallbacks = Tally()
        #: Set at the end of the run: every hung ``run`` returns.
        self.release = threading.Event()
        #: A "stuck" run waits for ``release`` at most until then (a safety net, never reached
        #: in a healthy run: the harness releases them first).
        self.stuck_limit = run_until
        self._lock = threading.Lock()
        self.stuck_running = 0

    def stuck(self, delta: int) -> None:
        with self._lock:
            self.stuck_running += delta


class ChaosCommand(Command):
    """Does what its payload says. Subclassed once per key (``key``, ``config``, ``spec``)."""

    spec: KeySpec

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def run(self, payload: Ask) -> Any:
        ledger = self.ledger
        ledger.runs.bump(payload.ask_id)
        action = payload.action
        if action == "ok":
            return ("ok", payload.ask_id)
        if action == "sleep":
            time.sleep(payload.seconds)  # the dependency's latency
            return ("slept", payload.ask_id)
        if action == "error":
            raise ChaosError(f"ask {payload.ask_id}")
        if action == "base":
            raise _BASE_EXCEPTIONS[payload.variant % len(_BASE_EXCEPTIONS)]()
        if action == "bad":
            raise BadRequest(f"ask {payload.ask_id}: bad payload", key=payload.key)
        if action == "hang":  # past the deadline, then returns (or at once when released)
            ledger.release.wait(payload.seconds)
            return ("hung", payload.ask_id)
        if action == "stuck":  # until the harness releases it at the end of the run
            ledger.stuck(+1)
            try:
                ledger.release.wait(max(0.0, ledger.stuck_limit - time.monotonic()))
            finally:
                ledger.stuck(-1)
            return ("stuck", payload.ask_id)
        msg = f"unknown action {action!r}"
        raise AssertionError(msg)

    def has_fallback(self, payload: Any) -> bool:
        return self.spec.fallback != "none"

    def fallback(self, payload: Ask, error: BaseException) -> Any:
        self.ledger.fallbacks.bump(payload.ask_id)
        fault = payload.fallback_fault
        if fault == "error":
            raise ChaosError(f"fallback of ask {payload.ask_id}")
        if fault == "base":
            raise ChaosBaseException(f"fallback of ask {payload.ask_id}")
        if fault == "slow":
            time.sleep(0.005)
        return ("fb", payload.ask_id)


def command_class_for(spec: KeySpec) -> type[ChaosCommand]:
    name = "Chaos_" + spec.name.replace("-", "_")
    return type(name, (ChaosCommand,), {"key": spec.name, "config": spec.config, "spec": spec})


# -- classifying answers --------------------------------------------------------------------------


def _reason(error: BaseException | None) -> str:
    if error is None:
        return "-"
    if isinstance(error, CommandError):
        return str(error.reason)
    return type(error).__name__


_TRIGGERS = {
    EventType.FAILURE,
    EventType.TIMEOUT,
    EventType.SHORT_CIRCUITED,
    EventType.THREAD_POOL_REJECTED,
    EventType.SEMAPHORE_REJECTED,
}


def classify(reply: Reply) -> str:
    """A short name for what an answer is: "success", "bad request", "fallback(TIMEOUT)",
    "fallback failed(FAILURE)", "error(unavailable)", ..."""
    events = tuple(str(e) for e in reply.events)
    if events == ("SUCCESS",):
        return "success"
    if events == ("BAD_REQUEST",):
        return "bad request"
    cause = events[0] if events and events[0] in _TRIGGERS else _reason(reply.error)
    if EventType.FALLBACK_SUCCESS in reply.events:
        return f"fallback({cause})"
    if EventType.FALLBACK_MISSING in reply.events:
        return f"no fallback({cause})"
    if EventType.FALLBACK_REJECTION in reply.events:
        return f"fallback rejected({cause})"
    if EventType.FALLBACK_FAILURE in reply.events:
        return f"fallback failed({cause})"
    return f"error({cause})"


_SUCCESS_TAGS = {"ok": "ok", "sleep": "slept", "hang": "hung", "stuck": "stuck"}


def wrong_answer(ask: Ask, reply: Reply) -> str | None:
    """Why this reply cannot be the answer to this ask, or None."""
    if not isinstance(reply, Reply):
        return f"not a Reply: {reply!r:.120}"
    if reply.key != ask.key:
        return f"reply for key {reply.key!r}"
    first = str(reply.events[0]) if reply.events else ""
    if first == "SUCCESS":
        expected = _SUCCESS_TAGS.get(ask.action)
        if expected is None or reply.value != (expected, ask.ask_id):
            return f"SUCCESS with value {reply.value!r:.80}"
    if first == "FAILURE" and ask.action not in ("error", "base"):
        return f"FAILURE for a run told to {ask.action!r}: {reply.error!r:.120}"
    if first == "BAD_REQUEST" and ask.action != "bad":
        return "BAD_REQUEST for a good request"
    if EventType.FALLBACK_SUCCESS in reply.events and reply.value != ("fb", ask.ask_id):
        return f"fallback value {reply.value!r:.80}"
    if not reply.events:
        return f"no events, error {reply.error!r:.160}"
    return None


# -- observing the process ------------------------------------------------------------------------


def rss_bytes() -> int:
    """This process's resident set size (VmRSS), 0 where /proc is missing."""
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
                self.tap.unexpected_crashes.append(f"{message} {exc!r}")


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

    saved = structlog.get_config()
    structlog.configure(processors=[count], cache_logger_on_first_use=False)
    try:
        yield
    finally:
        structlog.configure(**saved)


class _AnswerTap:
    """Counts, per ask id, how often the library answers a ticket (``Ticket.answer``): a call
    answered twice is seen even when its caller only ever reads one answer."""

    def __init__(self, token: int) -> None:
        self.token = token
        self.answers = Tally()
        self.installed = False

    @contextlib.contextmanager
    def install(self) -> Iterator[None]:
        try:
            from actors.ticket import Ticket  # noqa: PLC0415 (an internal, probed at run time)
        except ImportError:
            yield
            return
        original = getattr(Ticket, "answer", None)
        if original is None:
            yield
            return
        tap = self

        def answer(ticket: Any, *args: Any, **kwargs: Any) -> Any:
            payload = getattr(ticket, "payload", None)
            if isinstance(payload, Ask) and payload.token == tap.token:
                tap.answers.bump(payload.ask_id)
            return original(ticket, *args, **kwargs)

        Ticket.answer = answer  # type: ignore[method-assign]
        self.installed = True
        try:
            yield
        finally:
            Ticket.answer = original  # type: ignore[method-assign]


# -- the result -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Invariant:
    name: str
    ok: bool
    detail: str


@dataclasses.dataclass(slots=True)
class ChaosResult:
    seed: int
    options: ChaosOptions
    wall: float = 0.0
    issued: int = 0
    answered: int = 0
    answers: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    answers_by_key: dict[str, collections.Counter[str]] = dataclasses.field(default_factory=dict)
    actions: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    faults: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    fault_misses: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter
    )
    duplicates: list[int] = dataclasses.field(default_factory=list)
    library_duplicates: list[int] = dataclasses.field(default_factory=list)
    answer_tap: bool = False
    lost: list[int] = dataclasses.field(default_factory=list)
    run_twice: list[int] = dataclasses.field(default_factory=list)
    fell_back_twice: list[int] = dataclasses.field(default_factory=list)
    overdue: int = 0
    late: int = 0
    worst_latency: float = 0.0
    raised: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    wrong: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    examples: list[str] = dataclasses.field(default_factory=list)
    chaos_errors: list[str] = dataclasses.field(default_factory=list)
    threads_baseline: int = 0
    threads_max: int = 0
    threads_bound: int = 0
    threads_at_max: str = ""
    rss: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    rss_warm: int = 0
    rss_end: int = 0
    heap_growth: int | None = None
    heap_top: list[str] = dataclasses.field(default_factory=list)
    zombies_max: dict[str, int] = dataclasses.field(default_factory=dict)
    statuses_seen: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter
    )
    states_seen: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    leaked: dict[str, str] = dataclasses.field(default_factory=dict)
    not_serving: dict[str, str] = dataclasses.field(default_factory=dict)
    shutdown_zombies: int | None = None
    shutdown_report: str = ""
    threads_left: list[str] = dataclasses.field(default_factory=list)
    after_shutdown: str = ""
    stuck_callers: int = 0
    log_counts: collections.Counter[tuple[str, str]] = dataclasses.field(
        default_factory=collections.Counter
    )
    pykka: PykkaTap = dataclasses.field(default_factory=PykkaTap)
    dumps: list[str] = dataclasses.field(default_factory=list)
    invariants: list[Invariant] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.invariants) and all(check.ok for check in self.invariants)

    @property
    def rss_growth(self) -> int:
        return self.rss_end - self.rss_warm

    def note(self, text: str) -> None:
        if len(self.examples) < 40:
            self.examples.append(text)

    def judge(self) -> None:
        opts = self.options
        bug_logs = {k: n for k, n in self.log_counts.items() if k[1] in BUG_EVENTS}
        checks = [
            Invariant(
                "every ask answered exactly once",
                not self.lost
                and not self.duplicates
                and not self.library_duplicates
                and self.answered == self.issued,
                f"issued {self.issued}, answered {self.answered}, lost {len(self.lost)}"
                f" {self.lost[:10]}, duplicates {len(self.duplicates)} {self.duplicates[:10]},"
                f" answered twice by the library {len(self.library_duplicates)}"
                f" {self.library_duplicates[:10]}"
                + ("" if self.answer_tap else " (Ticket.answer tap not installed)"),
            ),
            Invariant(
                "every answer is a well-formed Reply for its own ask",
                not self.raised and not self.wrong,
                f"raised {dict(self.raised)}, wrong {dict(self.wrong)}",
            ),
            Invariant(
                "no call ran or fell back twice",
                not self.run_twice and not self.fell_back_twice,
                f"run twice {len(self.run_twice)} {self.run_twice[:10]},"
                f" fell back twice {len(self.fell_back_twice)} {self.fell_back_twice[:10]}",
            ),
            Invariant(
                "no deadlock: every ask answered within its timeout + slack",
                self.overdue == 0 and self.stuck_callers == 0,
                f"overdue {self.overdue} (of which answered late {self.late}), callers stuck"
                f" at the end {self.stuck_callers}, worst latency {self.worst_latency:.3f}s,"
                f" slack {opts.slack}s",
            ),
            Invariant(
                "thread count bounded",
                self.threads_max <= self.threads_bound,
                f"max {self.threads_max} <= bound {self.threads_bound}"
                f" (baseline {self.threads_baseline})"
                + (f"; at the max: {self.threads_at_max}" if self.threads_at_max else ""),
            ),
            Invariant(
                "no slot leak: in_flight and zombies back to 0 once hung runs are released",
                not self.leaked,
                f"leaked {self.leaked}" if self.leaked else "every key drained",
            ),
            Invariant(
                "memory flat",
                self.rss_growth <= opts.rss_growth_bound
                and (self.heap_growth is None or self.heap_growth <= opts.heap_growth_bound),
                f"RSS {self.rss_warm / 2**20:.1f} MiB after warm-up -> {self.rss_end / 2**20:.1f}"
                f" MiB ({self.rss_growth / 2**20:+.1f} MiB, bound"
                f" {opts.rss_growth_bound / 2**20:.0f} MiB)"
                + (
                    ""
                    if self.heap_growth is None
                    else f"; Python heap {self.heap_growth / 2**20:+.2f} MiB"
                    f" (bound {opts.heap_growth_bound / 2**20:.0f} MiB)"
                ),
            ),
            Invariant(
                "no actor crashed unless crashed on purpose; pykka never stopped every actor",
                not self.pykka.unexpected_crashes and not self.pykka.stop_all and not bug_logs,
                f"unexpected crashes {self.pykka.unexpected_crashes[:5]}, stop_all"
                f" {self.pykka.stop_all[:3]}, bug log events {bug_logs}"
                f" (injected crashes seen {self.pykka.injected_crashes})",
            ),
            Invariant(
                "chaos actions accepted",
                not self.chaos_errors,
                f"{self.chaos_errors[:5]}" if self.chaos_errors else "none raised",
            ),
            Invariant(
                "every key serves again once the chaos stops",
                not self.not_serving,
                f"{self.not_serving}" if self.not_serving else "every key answered SUCCESS",
            ),
            Invariant(
                "clean shutdown: no zombie and no library thread left, later asks refused",
                self.shutdown_zombies == 0 and not self.threads_left and self.after_shutdown == "",
                f"report {self.shutdown_report or None}, threads left {self.threads_left[:10]}"
                + (f", {self.after_shutdown}" if self.after_shutdown else ""),
            ),
        ]
        self.invariants = checks

    def summary(self) -> str:
        lines = [
            f"seed {self.seed}: {self.issued} asks in {self.wall:.1f}s,"
            f" {'PASS' if self.passed else 'FAIL'}",
            f"answers: {dict(self.answers.most_common())}",
            f"faults: {dict(self.faults)} (missed: {dict(self.fault_misses)})",
        ]
        lines += [f"  {'PASS' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in self.invariants]
        if self.examples:
            lines.append("examples:")
            lines += [f"  {e}" for e in self.examples[:20]]
        for dump in self.dumps[:1]:
            lines.append("thread dump at the first overdue ask:")
            lines.append(dump)
        return "\n".join(lines)


# -- the driver -----------------------------------------------------------------------------------

_tokens = itertools.count(1)


def _weighted(rnd: random.Random, weights: dict[str, int]) -> str:
    names = list(weights)
    return rnd.choices(names, weights=[weights[n] for n in names])[0]


class Chaos:
    """One chaos run: ``Chaos(ChaosOptions(seconds=10, seed=1)).run()``."""

    def __init__(self, options: ChaosOptions, *, log: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.seed = options.resolved_seed()
        self.token = next(_tokens)
        self.result = ChaosResult(seed=self.seed, options=options)
        self._say = log or (lambda _line: None)
        self._specs = {spec.name: spec for spec in options.keys}
        self._configs = {spec.name: spec.config for spec in options.keys}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._outstanding: dict[int, tuple[Ask, float, float]] = {}  # id -> ask, issued, bound
        self._overdue_ids: set[int] = set()
        self._late_futures: list[tuple[Ask, float, pykka.Future[Any]]] = []
        self._answered = Tally()
        self._stuck_left = {spec.name: spec.stuck_budget for spec in options.keys}
        self._stop = threading.Event()
        self._threads_max = 0
        self._down_since: dict[str, float] = {}
        self._registry: CommandRegistry | None = None
        self._ledger: Ledger | None = None
        self._tap = _AnswerTap(self.token)

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> ChaosResult:
        opts, result = self.options, self.result
        self._say(f"chaos: seed {self.seed}, {opts.seconds:g}s, {opts.callers} callers")
        gc.collect()
        baseline = {t.ident for t in threading.enumerate()}
        result.threads_baseline = len(baseline)
        extra = opts.callers + 1  # the callers and the chaos thread
        result.threads_bound = (
            result.threads_baseline
            + extra
            + opts.threads_per_registry
            + sum(s.pool[1] + s.max_zombies + opts.threads_per_key for s in opts.keys)
        )
        started = time.monotonic()
        self._ledger = ledger = Ledger(self.token, started + opts.seconds + 4 * opts.settle)
        registry = self._registry = CommandRegistry()
        counts: collections.Counter[tuple[str, str]] = result.log_counts
        traced = False
        try:
            with (
                counting_logs(counts),
                result.pykka.installed(),
                self._tap.install(),
            ):
                result.answer_tap = self._tap.installed
                for spec in opts.keys:
                    registry.register(command_class_for(spec), ledger)
                callers = [
                    threading.Thread(target=self._caller, args=(n,), name=f"chaos-caller-{n}")
                    for n in range(opts.callers)
                ]
                chaos = threading.Thread(target=self._chaos, name="chaos-monkey")
                for thread in [*callers, chaos]:
                    thread.start()
                traced = self._monitor(started)
                self._stop.set()
                self._finish_load(callers, chaos)
                ledger.release.set()
                self._settle(traced)
                self._serve_again()
                self._shutdown(baseline)
        finally:
            self._stop.set()
            ledger.release.set()
            if traced:
                tracemalloc.stop()
            with contextlib.suppress(BaseException):
                registry.shutdown(opts.shutdown_timeout)
        result.wall = time.monotonic() - started
        self._account()
        result.judge()
        self._say(result.summary())
        return result

    def _monitor(self, started: float) -> bool:
        """Watch the load until the run's end: threads, RSS, zombies, overdue asks."""
        opts, result = self.options, self.result
        assert self._registry is not None
        end = started + opts.seconds
        warm_at = started + opts.resolved_warmup()
        next_checkpoint = started
        next_health = started
        warm = False
        traced = False
        while (now := time.monotonic()) < end:
            self._sample_threads()
            if now >= next_checkpoint:
                rss = rss_bytes()
                result.rss.append((round(now - started, 1), rss))
                next_checkpoint = now + opts.checkpoint_every
            if not warm and now >= warm_at:
                warm = True
                gc.collect()
                result.rss_warm = rss_bytes()
                if opts.trace_memory:
                    tracemalloc.start()
                    traced = True
                    self._heap_start = tracemalloc.take_snapshot()
            if now >= next_health:
                self._sample_health()
                next_health = now + 0.05
            self._check_overdue(now)
            self._stop.wait(0.01)  # the monitor's sampling period
        if not warm:
            result.rss_warm = rss_bytes()
        return traced

    def _finish_load(self, callers: Sequence[threading.Thread], chaos: threading.Thread) -> None:
        """Join the callers (each finishes its current ask) and the chaos thread, within the
        bound on an ask; a caller still stuck after it is a hang."""
        longest = max(s.max_timeout for s in self.options.keys) + self.options.slack
        deadline = time.monotonic() + 2 * longest + 1.0
        for thread in [*callers, chaos]:
            while thread.is_alive() and time.monotonic() < deadline:
                thread.join(0.05)
                self._sample_threads()
                self._check_overdue(time.monotonic())
        stuck = [t for t in callers if t.is_alive()]
        self.result.stuck_callers = len(stuck)
        if stuck or chaos.is_alive():
            self._dump("callers or chaos thread still running after the load stopped")
        if chaos.is_alive():
            self.result.chaos_errors.append("the chaos thread did not stop (hung in a call)")

    def _settle(self, traced: bool) -> None:
        """Hung runs are released: every slot must come back, late futures resolve."""
        opts, result = self.options, self.result
        registry = self._registry
        assert registry is not None
        deadline = time.monotonic() + opts.settle
        for spec in opts.keys:
            while True:
                try:
                    health = registry.health(spec.name)
                    state = (health.in_flight, getattr(health, "zombies", 0))
                except Exception as exc:
                    state = (-1, -1)
                    detail = f"health raised {exc!r}"
                else:
                    detail = f"in_flight {state[0]}, zombies {state[1]}, status" + (
                        f" {getattr(health, 'status', '?')}"
                    )
                if state == (0, 0):
                    break
                if time.monotonic() > deadline:
                    result.leaked[spec.name] = detail
                    break
                self._stop.wait(0.01)  # polling the key's health, bounded by `deadline`
        for ask, issued, future in self._late_futures:
            try:
                reply = future.get(timeout=max(0.0, deadline - time.monotonic()))
            except pykka.Timeout:
                continue  # never answered: counted lost
            except BaseException as exc:
                self._record(ask, issued, None, exc)
            else:
                self._record(ask, issued, reply, None)
            result.late += 1
        gc.collect()
        result.rss_end = rss_bytes()
        if traced:
            current = tracemalloc.take_snapshot()
            stats = current.compare_to(self._heap_start, "lineno")
            result.heap_growth = sum(stat.size_diff for stat in stats)
            result.heap_top = [str(stat) for stat in stats[:8]]
            tracemalloc.stop()

    def _serve_again(self) -> None:
        """Each key answers SUCCESS again (reviving a key that is down, waiting out an open
        circuit's sleep window), within the settle bound."""
        registry = self._registry
        assert registry is not None
        for spec in self.options.keys:
            deadline = time.monotonic() + self.options.settle
            last = "never asked"
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    if getattr(registry.health(spec.name), "status", "up") == "down":
                        registry.restart(spec.name)  # type: ignore[attr-defined]
                ask = self._new_ask_for(spec, "ok", random.Random(0), block=True)
                ask = dataclasses.replace(ask, timeout=None)
                issued = time.monotonic()
                with self._lock:
                    self._outstanding[ask.ask_id] = (ask, issued, issued + spec.max_timeout + 2)
                try:
                    reply = registry.ask_reply(spec.name, ask)
                except BaseException as exc:
                    self._record(ask, issued, None, exc)
                    last = repr(exc)
                else:
                    self._record(ask, issued, reply, None)
                    last = classify(reply)
                    if last == "success":
                        break
                self._stop.wait(0.02)  # waiting out a restart backoff or a sleep window
            else:
                self.result.not_serving[spec.name] = f"last answer: {last}"

    def _shutdown(self, baseline: set[int | None]) -> None:
        opts, result = self.options, self.result
        registry = self._registry
        assert registry is not None
        report = registry.shutdown(opts.shutdown_timeout)
        result.shutdown_report = repr(report)
        zombies = getattr(report, "zombies", None)
        result.shutdown_zombies = zombies if isinstance(zombies, int) else None
        deadline = time.monotonic() + opts.settle
        while True:
            left = [t for t in threading.enumerate() if t.ident not in baseline]
            if not left or time.monotonic() > deadline:
                break
            self._stop.wait(0.01)  # library threads finishing after stop(): bounded poll
        result.threads_left = [t.name for t in left]
        spec = opts.keys[0]
        ask = self._new_ask_for(spec, "ok", random.Random(0), block=True)
        try:
            reply = registry.ask_reply(spec.name, ask)
        except CommandError as exc:
            if exc.reason != "shutdown":
                result.after_shutdown = f"ask after shutdown raised reason {exc.reason!r}"
        except BaseException as exc:
            result.after_shutdown = f"ask after shutdown raised {exc!r}"
        else:
            result.after_shutdown = f"ask after shutdown answered {classify(reply)}"

    # -- callers ------------------------------------------------------------------------------

    def _new_ask_for(
        self, spec: KeySpec, action: str, rnd: random.Random, *, block: bool
    ) -> Ask:
        base = spec.config.timeout
        seconds = 0.0
        if action == "sleep":
            seconds = rnd.uniform(0.001, 0.01)
        elif action == "hang":
            seconds = rnd.uniform(1.5, 4.0) * base
        fallback_fault = None
        if spec.fallback == "flaky" and rnd.random() < spec.fallback_fault_rate:
            fallback_fault = rnd.choice(("error", "error", "base", "slow"))
        timeout = None
        if rnd.random() < self.options.per_ask_timeout_share:
            timeout = round(rnd.uniform(0.3, 1.0) * base, 4)
        return Ask(
            token=self.token,
            ask_id=next(self._ids),
            key=spec.name,
            action=action,
            seconds=seconds,
            variant=rnd.randrange(len(_BASE_EXCEPTIONS)),
            fallback_fault=fallback_fault,
            timeout=timeout,
            block=block,
        )

    def _new_ask(self, rnd: random.Random, block: bool) -> Ask:
        spec = rnd.choice(self.options.keys)
        action = _weighted(rnd, spec.mix)
        if action == "stuck":
            with self._lock:
                if self._stuck_left[spec.name] > 0:
                    self._stuck_left[spec.name] -= 1
                else:
                    action = "hang"
        return self._new_ask_for(spec, action, rnd, block=block)

    def _bound(self, ask: Ask) -> float:
        spec = self._specs[ask.key]
        return (ask.timeout or spec.max_timeout) + self.options.slack

    def _issue(self, ask: Ask) -> tuple[float, float]:
        issued = time.monotonic()
        bound = issued + self._bound(ask)
        with self._lock:
            self.result.issued += 1
            self.result.actions[ask.action] += 1
            self._outstanding[ask.ask_id] = (ask, issued, bound)
        return issued, bound

    def _caller(self, n: int) -> None:
        registry = self._registry
        assert registry is not None
        rnd = random.Random(f"{self.seed}/caller/{n}")
        opts = self.options
        while not self._stop.is_set():
            if rnd.random() < opts.nonblocking_share:
                pending = []
                for _ in range(rnd.randint(1, 4)):
                    ask = self._new_ask(rnd, block=False)
                    issued, bound = self._issue(ask)
                    try:
                        future = registry.ask_reply(
                            ask.key, ask, block=False, timeout=ask.timeout
                        )
                    except BaseException as exc:
                        self._record(ask, issued, None, exc)
                        continue
                    pending.append((ask, issued, bound, future))
                for ask, issued, bound, future in pending:
                    try:
                        reply = future.get(timeout=max(0.0, bound - time.monotonic()))
                    except pykka.Timeout:
                        self._mark_overdue(ask, "a future not resolved within its bound")
                        with self._lock:
                            self._late_futures.append((ask, issued, future))
                        continue
                    except BaseException as exc:
                        self._record(ask, issued, None, exc)
                        continue
                    self._record(ask, issued, reply, None)
            else:
                ask = self._new_ask(rnd, block=True)
                issued, _ = self._issue(ask)
                try:
                    reply = registry.ask_reply(ask.key, ask, timeout=ask.timeout)
                except BaseException as exc:
                    self._record(ask, issued, None, exc)
                else:
                    self._record(ask, issued, reply, None)
            self._sample_threads()

    def _record(
        self, ask: Ask, issued: float, reply: Reply | None, raised: BaseException | None
    ) -> None:
        latency = time.monotonic() - issued
        result = self.result
        count = self._answered.bump(ask.ask_id)
        with self._lock:
            entry = self._outstanding.pop(ask.ask_id, None)
            if count > 1:
                result.duplicates.append(ask.ask_id)
                result.note(f"ask {ask.ask_id} answered {count} times ({ask})")
                return
            result.answered += 1
            if entry is not None and time.monotonic() > entry[2]:
                if ask.ask_id not in self._overdue_ids:
                    self._overdue_ids.add(ask.ask_id)
                    result.overdue += 1
                    result.note(f"ask {ask.ask_id} answered after {latency:.3f}s: {ask}")
            result.worst_latency = max(result.worst_latency, latency)
            by_key = result.answers_by_key.setdefault(ask.key, collections.Counter())
            if raised is not None:
                reason = getattr(raised, "reason", None)
                kind = f"raised({reason or type(raised).__name__})"
                result.answers[kind] += 1
                by_key[kind] += 1
                if not (isinstance(raised, CommandError) and reason == "unavailable"):
                    result.raised[kind] += 1
                    result.note(f"ask {ask.ask_id} raised {raised!r} ({ask})")
                return
            assert reply is not None
            kind = classify(reply) if isinstance(reply, Reply) else "not a Reply"
            result.answers[kind] += 1
            by_key[kind] += 1
            why = wrong_answer(ask, reply)
            if why is not None:
                result.wrong[why.split(":")[0]] += 1
                result.note(f"ask {ask.ask_id} ({ask.action} on {ask.key}): {why}")

    def _mark_overdue(self, ask: Ask, what: str) -> None:
        with self._lock:
            if ask.ask_id in self._overdue_ids:
                return
            self._overdue_ids.add(ask.ask_id)
            self.result.overdue += 1
            self.result.note(f"ask {ask.ask_id} overdue: {what} ({ask})")
            first = self.result.overdue == 1
        if first:
            self._dump(f"ask {ask.ask_id} overdue: {what}")

    def _check_overdue(self, now: float) -> None:
        with self._lock:
            late = [
                ask
                for ask, _, bound in self._outstanding.values()
                if now > bound and ask.ask_id not in self._overdue_ids
            ]
        for ask in late:
            self._mark_overdue(ask, "not answered within its timeout + slack")

    def _dump(self, why: str) -> None:
        if len(self.result.dumps) >= 3:
            return
        text = f"--- {why} ---\n{dump_threads()}"
        self.result.dumps.append(text)
        print(text, file=sys.stderr)

    def _sample_threads(self) -> None:
        count = threading.active_count()
        if count > self._threads_max:
            with self._lock:
                if count <= self._threads_max:
                    return
                self._threads_max = count
                self.result.threads_max = count
                if count > self.result.threads_bound:
                    names = collections.Counter(
                        t.name.rstrip("0123456789-() ").split(" ")[0]
                        for t in threading.enumerate()
                    )
                    self.result.threads_at_max = ", ".join(
                        f"{name} x{n}" for name, n in names.most_common(8)
                    )

    def _sample_health(self) -> None:
        registry = self._registry
        assert registry is not None
        result = self.result
        for spec in self.options.keys:
            try:
                health = registry.health(spec.name)
            except Exception:  # a key not used yet, or a health() bug: seen elsewhere
                continue
            zombies = getattr(health, "zombies", 0)
            result.zombies_max[spec.name] = max(result.zombies_max.get(spec.name, 0), zombies)
            result.statuses_seen[str(getattr(health, "status", "up"))] += 1
            result.states_seen[str(health.state)] += 1

    # -- the chaos thread ---------------------------------------------------------------------

    def _chaos(self) -> None:
        registry = self._registry
        assert registry is not None
        rnd = random.Random(f"{self.seed}/chaos")
        opts = self.options
        while not self._stop.wait(rnd.expovariate(1.0 / opts.fault_interval)):
            spec = rnd.choice(opts.keys)
            fault = _weighted(rnd, FAULTS)
            try:
                hit = self._inject(registry, spec, fault, rnd)
                self._revive_down_keys(registry)
            except BaseException as exc:
                self.result.chaos_errors.append(f"{fault} on {spec.name}: {exc!r}")
                continue
            with self._lock:
                self.result.faults[fault] += 1
                if not hit:
                    self.result.fault_misses[fault] += 1

    def _inject(
        self, registry: CommandRegistry, spec: KeySpec, fault: str, rnd: random.Random
    ) -> bool:
        from actors.testing import kill_supervisor, kill_worker  # noqa: PLC0415

        what, _, how = fault.partition(":")
        if what == "kill_worker":
            return bool(kill_worker(registry, spec.name, how=how))  # type: ignore[arg-type]
        if what == "kill_supervisor":
            return bool(kill_supervisor(registry, spec.name, how=how))  # type: ignore[arg-type]
        config = self._configs[spec.name]
        if what == "resize":
            config = config.replace(
                max_concurrent_requests=rnd.randint(*spec.pool),
                queue_size=rnd.randint(*spec.queue),
            )
        elif what == "retime":
            config = config.replace(timeout=rnd.choice(spec.timeouts))
        elif what == "rethreshold":
            config = config.replace(
                error_percent_threshold=rnd.choice((30, 50, 70, 90)),
                request_volume_threshold=rnd.choice((5, 10, 20)),
                sleep_window=rnd.choice((0.1, 0.3, 0.5)),
            )
        self._configs[spec.name] = config
        registry.configure(spec.name, config)
        return True

    def _revive_down_keys(self, registry: CommandRegistry) -> None:
        now = time.monotonic()
        for spec in self.options.keys:
            try:
                status = getattr(registry.health(spec.name), "status", "up")
            except Exception:
                continue
            if status != "down":
                self._down_since.pop(spec.name, None)
                continue
            since = self._down_since.setdefault(spec.name, now)
            if now - since >= self.options.revive_after:
                registry.restart(spec.name)  # type: ignore[attr-defined]
                self._down_since.pop(spec.name, None)
                with self._lock:
                    self.result.faults["restart(down key)"] += 1

    # -- the books ----------------------------------------------------------------------------

    def _account(self) -> None:
        result = self.result
        issued = next(self._ids)  # every id ever handed out, post-run asks included
        ledger = self._ledger
        assert ledger is not None
        with self._lock:
            never = sorted(self._outstanding)
            result.issued = issued
        result.lost = never
        for ask_id in never[:10]:
            ask = self._outstanding[ask_id][0]
            result.note(f"ask {ask_id} never answered ({ask})")
        result.library_duplicates = self._tap.answers.ids_over(1)
        result.run_twice = ledger.runs.ids_over(1)
        result.fell_back_twice = ledger.fallbacks.ids_over(1)
        # Post-run asks (serving again, after shutdown) were recorded in the same books.
        result.answered = issued - len(never) - 1  # the ask after shutdown is refused, not lost
        for ask_id in result.run_twice[:5]:
            result.note(f"ask {ask_id} ran {ledger.runs.get(ask_id)} times")


def run_chaos(options: ChaosOptions, log: Callable[[str], None] | None = None) -> ChaosResult:
    return Chaos(options, log=log).run()


def environment() -> dict[str, str]:
    """What the run was driven on."""
    import platform  # noqa: PLC0415

    return {
        "nproc": str(os.cpu_count()),
        "python": platform.python_version(),
        "pykka": pykka.__version__,
        "structlog": structlog.__version__ if hasattr(structlog, "__version__") else "?",
        "platform": platform.platform(),
    }
