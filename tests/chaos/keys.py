"""The command keys a chaos run drives: their specs, the asks sent to them, the command that does
what an ask says, and what makes an answer right or wrong for its ask."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from actors import (
    BadRequest,
    Command,
    CommandConfig,
    CommandError,
    EventType,
    PoolConfig,
    Reply,
)
from supervision import SupervisionPolicy

from .probes import Tally

__all__ = [
    "DEFAULT_KEYS",
    "Ask",
    "ChaosBaseException",
    "ChaosCommand",
    "ChaosError",
    "KeySpec",
    "Ledger",
    "classify",
    "command_class_for",
    "draw_ask",
    "weighted",
    "wrong_answer",
]


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
            error_percent_threshold=90,
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
            error_percent_threshold=95,
            sleep_window=0.2,
            rolling_window=2.0,
            fallback_max_concurrent=3,
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
            error_percent_threshold=80,
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
            error_percent_threshold=85,
            sleep_window=0.3,
            rolling_window=2.0,
            fallback_max_concurrent=3,
            supervision=FRAGILE,
        ),
        fallback="value",
        mix={"ok": 40, "sleep": 10, "error": 15, "base": 15, "bad": 5, "hang": 10, "stuck": 1},
        timeouts=(0.05, 0.08, 0.15),
        pool=(1, 3),
        queue=(0, 1),
    ),
)


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


def weighted(rnd: random.Random, weights: dict[str, int]) -> str:
    """A name drawn by weight: an action from a key's mix, a fault from the chaos thread's."""
    names = list(weights)
    return rnd.choices(names, weights=[weights[n] for n in names])[0]


def draw_ask(
    spec: KeySpec,
    action: str,
    rnd: random.Random,
    *,
    token: int,
    ask_id: int,
    timeout_share: float,
    block: bool,
) -> Ask:
    """An ask for ``spec``'s key told to do ``action``; ``timeout_share`` of them get a per-ask
    timeout shorter than the key's."""
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
    if rnd.random() < timeout_share:
        timeout = round(rnd.uniform(0.3, 1.0) * base, 4)
    return Ask(
        token=token,
        ask_id=ask_id,
        key=spec.name,
        action=action,
        seconds=seconds,
        variant=rnd.randrange(len(_BASE_EXCEPTIONS)),
        fallback_fault=fallback_fault,
        timeout=timeout,
        block=block,
    )


class Ledger:
    """What the command instances see, shared by every instance of every chaos key."""

    def __init__(self, run_until: float) -> None:
        self.runs = Tally()
        self.fallbacks = Tally()
        #: Set at the end of the run: every hung ``run`` returns.
        self.release = threading.Event()
        #: A "stuck" run waits for ``release`` at most until then (a safety net, never reached
        #: in a healthy run: the harness releases them first).
        self.stuck_limit = run_until


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
            ledger.release.wait(max(0.0, ledger.stuck_limit - time.monotonic()))
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

#: What became of the fallback, in the order ``classify`` looks for it, and the answer's name.
_FALLBACK_KINDS = (
    (EventType.FALLBACK_SUCCESS, "fallback"),
    (EventType.FALLBACK_MISSING, "no fallback"),
    (EventType.FALLBACK_REJECTION, "fallback rejected"),
    (EventType.FALLBACK_FAILURE, "fallback failed"),
)


def classify(reply: Reply) -> str:
    """A short name for what an answer is: "success", "bad request", "fallback(TIMEOUT)",
    "fallback failed(FAILURE)", "error(unavailable)", ..."""
    events = tuple(str(e) for e in reply.events)
    if events == ("SUCCESS",):
        return "success"
    if events == ("BAD_REQUEST",):
        return "bad request"
    cause = events[0] if events and events[0] in _TRIGGERS else _reason(reply.error)
    for event, name in _FALLBACK_KINDS:
        if event in reply.events:
            return f"{name}({cause})"
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


#: The pool the first three keys share in ``SHARED_KEYS`` (configured by ``SHARED_POOLS``).
SHARED_POOL = "chaos-shared"

#: The default keys, the first three of them on one shared pool (the fourth on its own): their
#: calls compete for the pool's workers and bulkhead while each keeps its own breaker.
SHARED_KEYS: tuple[KeySpec, ...] = (
    *(
        dataclasses.replace(spec, config=spec.config.replace(pool=SHARED_POOL))
        for spec in DEFAULT_KEYS[:3]
    ),
    *DEFAULT_KEYS[3:],
)

#: The shared pool: smaller than the three keys' own pools together, queueing a little.
SHARED_POOLS: tuple[tuple[str, PoolConfig], ...] = (
    (SHARED_POOL, PoolConfig(max_concurrent_requests=6, queue_size=2, supervision=SOAKING)),
)
