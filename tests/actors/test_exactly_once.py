"""Every ask gets exactly one answer under concurrent load, and what happens is logged once.

Sixteen callers start together and ask one key a mix of calls that succeed, fail, run past
their deadline or are rejected by the bulkhead, blocking and not. Each ask has an id carried in
its payload, so a reply delivered to the wrong caller, a late result delivered after a timeout, a
fallback run twice or an outcome counted twice is seen.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka
import pytest
from probe import WAIT

from actors import Command, CommandConfig, CommandRegistry, Reply
from supervision import FakeClock

CALLERS = 16
ASKS_PER_CALLER = 50
KINDS = ("ok", "fail", "slow", "ok", "fail", "ok", "ok", "fail")


class Ledger:
    """Per ask id: how often ``run`` and ``fallback`` were entered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs: collections.Counter[int] = collections.Counter()
        self.fallbacks: collections.Counter[int] = collections.Counter()
        self.never = threading.Event()

    def count(self, counter: collections.Counter[int], ask_id: int) -> None:
        with self._lock:
            counter[ask_id] += 1


class Mixed(Command):
    """The payload is ``(ask_id, kind)``; every value names the ask it answers."""

    key = "mixed"

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def run(self, payload: tuple[int, str]) -> Any:
        ask_id, kind = payload
        self.ledger.count(self.ledger.runs, ask_id)
        if kind == "ok":
            return ("ok", ask_id)
        if kind == "fail":
            raise RuntimeError(ask_id)
        # slow: a dependency that answers only after the call has been timed out
        give_up = time.monotonic() + WAIT
        while not self.cancelled and time.monotonic() < give_up:
            self.ledger.never.wait(0.002)
        return ("late", ask_id)

    def fallback(self, payload: tuple[int, str], error: BaseException) -> Any:
        ask_id, _ = payload
        self.ledger.count(self.ledger.fallbacks, ask_id)
        return ("fallback", ask_id, getattr(error, "reason", type(error).__name__))


def ask_once(registry: CommandRegistry, ask_id: int, kind: str, mode: int) -> Any:
    """One ask, in one of four styles: Reply or value, blocking or through a future."""
    payload = (ask_id, kind)
    if mode == 0:
        return registry.ask_reply("mixed", payload)
    if mode == 1:
        return registry.ask_reply("mixed", payload, block=False).get(timeout=WAIT)
    if mode == 2:
        return registry.ask("mixed", payload)
    return registry.ask("mixed", payload, block=False).get(timeout=WAIT)


def outcome_of(answer: Any) -> str:
    """The health event an answer stands for."""
    if isinstance(answer, Reply):
        return str(answer.events[0])
    tag, *rest = answer
    if tag == "ok":
        return "SUCCESS"
    reason = rest[1]
    return {
        "RuntimeError": "FAILURE",
        "timeout": "TIMEOUT",
        "max concurrency": "THREAD_POOL_REJECTED",
    }[reason]


@pytest.mark.parametrize("queue_size", [0, 2])
def test_every_ask_gets_exactly_one_answer_under_sixteen_concurrent_callers(
    registry: CommandRegistry,
    captured_logs: list[dict[str, Any]],
    eventually: Callable[..., None],
    queue_size: int,
) -> None:
    ledger = Ledger()
    registry.register(Mixed, ledger)
    registry.configure(
        "mixed",
        CommandConfig(
            timeout=0.05, max_concurrent_requests=12, queue_size=queue_size, force_closed=True
        ),
    )
    answers: dict[int, list[Any]] = collections.defaultdict(list)
    kinds: dict[int, str] = {}
    crashes: list[BaseException] = []
    barrier = threading.Barrier(CALLERS)

    def caller(n: int) -> None:
        try:
            barrier.wait(WAIT)
            for i in range(ASKS_PER_CALLER):
                ask_id = n * 1000 + i
                kinds[ask_id] = kind = KINDS[(n + i) % len(KINDS)]
                answers[ask_id].append(ask_once(registry, ask_id, kind, (n + i) % 4))
        except BaseException as exc:
            crashes.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "an ask never returned"
    assert crashes == []

    total = CALLERS * ASKS_PER_CALLER
    assert len(answers) == total
    assert all(len(got) == 1 for got in answers.values())
    outcomes: collections.Counter[str] = collections.Counter()
    for ask_id, [answer] in answers.items():
        outcome = outcome_of(answer)
        outcomes[outcome] += 1
        value = answer.value if isinstance(answer, Reply) else answer
        assert value[1] == ask_id, f"ask {ask_id} got the answer of ask {value[1]}"
        assert value[0] != "late", f"the late result of ask {ask_id} was delivered"
        if outcome == "SUCCESS":
            assert kinds[ask_id] == "ok"
            assert value == ("ok", ask_id)
        else:
            assert value[0] == "fallback"
        if kinds[ask_id] == "fail":
            assert outcome in ("FAILURE", "TIMEOUT", "THREAD_POOL_REJECTED")
        if kinds[ask_id] == "slow":
            assert outcome in ("TIMEOUT", "THREAD_POOL_REJECTED")
        if isinstance(answer, Reply):
            fallback_event = () if outcome == "SUCCESS" else ("FALLBACK_SUCCESS",)
            assert answer.events == (outcome, *fallback_event)
        assert ledger.runs[ask_id] <= 1
        if outcome == "THREAD_POOL_REJECTED":
            assert ledger.runs[ask_id] == 0
    assert set(outcomes) == {"SUCCESS", "FAILURE", "TIMEOUT", "THREAD_POOL_REJECTED"}

    # Late results of timed-out runs arrive after their callers were answered: let them land.
    eventually(lambda: registry.health("mixed").in_flight == 0, within=10.0, what="drained")
    for ask_id, [answer] in answers.items():
        expected = 0 if outcome_of(answer) == "SUCCESS" else 1
        assert ledger.fallbacks[ask_id] == expected, f"ask {ask_id}: fallback count"
    health = registry.health("mixed")
    assert health.requests == total  # every ask counted once: no TIMEOUT plus a late SUCCESS
    assert health.errors == total - outcomes["SUCCESS"]

    # Timeouts and rejections are logged at most once a second per key, each line counting
    # those held back since the last one.
    for event, outcome in (
        ("command.timed_out", "TIMEOUT"),
        ("command.rejected", "THREAD_POOL_REJECTED"),
    ):
        lines = [e for e in captured_logs if e["event"] == event]
        assert 1 <= len(lines) < outcomes[outcome]
        assert sum(1 + e["held_back"] for e in lines) <= outcomes[outcome]
    errors = {e["event"] for e in captured_logs if e["log_level"] in ("error", "critical")}
    assert errors <= {"command.failed"}
    assert all(ref.is_alive() for ref in pykka.ActorRegistry.get_all())


# -- logging --------------------------------------------------------------------------------------


class Flaky(Command):
    key = "flaky"
    config = CommandConfig(
        timeout=0.05, request_volume_threshold=2, sleep_window=5.0, max_concurrent_requests=1
    )

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def run(self, payload: str) -> str:
        if payload == "fail":
            raise RuntimeError("flaky boom")
        if payload == "hang":
            self.release.wait(WAIT)
        return payload


def events_named(logs: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"].startswith(prefix)]


def test_circuit_transitions_are_logged_in_order_at_info(
    registry: CommandRegistry, clock: FakeClock, captured_logs: list[dict[str, Any]]
) -> None:
    registry.register(Flaky, threading.Event())

    for _ in range(2):
        registry.ask_reply("flaky", "fail")
    clock.advance(5.001)
    assert registry.ask("flaky", "ok") == "ok"

    transitions = [
        (entry["event"], entry["log_level"], entry["command"], entry["state"])
        for entry in events_named(captured_logs, "circuit.")
    ]
    assert transitions == [
        ("circuit.opened", "info", "flaky", "open"),
        ("circuit.half_opened", "info", "flaky", "half_open"),
        ("circuit.closed", "info", "flaky", "closed"),
    ]


def test_a_rejection_is_logged_at_warning(
    registry: CommandRegistry, captured_logs: list[dict[str, Any]]
) -> None:
    release = threading.Event()
    registry.register(Flaky, release)
    registry.configure("flaky", CommandConfig(max_concurrent_requests=1, timeout=1.0))
    try:
        holding = registry.ask("flaky", "hang", block=False)
        assert registry.ask_reply("flaky", "ok").events[0] == "THREAD_POOL_REJECTED"
    finally:
        release.set()
    assert holding.get(timeout=WAIT) == "hang"

    [rejected] = events_named(captured_logs, "command.rejected")
    assert rejected["log_level"] == "warning"
    assert rejected["command"] == "flaky"
    assert rejected["reason"] == "max concurrency"


def test_a_timeout_is_logged_at_warning(
    registry: CommandRegistry, captured_logs: list[dict[str, Any]]
) -> None:
    release = threading.Event()
    registry.register(Flaky, release)
    try:
        assert registry.ask_reply("flaky", "hang").events[0] == "TIMEOUT"
    finally:
        release.set()

    [timed_out] = events_named(captured_logs, "command.timed_out")
    assert timed_out["log_level"] == "warning"
    assert timed_out["command"] == "flaky"
    assert timed_out["reason"] == "timeout"


def test_a_failed_run_is_logged_at_error(
    registry: CommandRegistry, captured_logs: list[dict[str, Any]]
) -> None:
    registry.register(Flaky, threading.Event())

    registry.ask_reply("flaky", "fail")

    [failed] = events_named(captured_logs, "command.failed")
    assert failed["log_level"] == "error"
    assert failed["command"] == "flaky"
    assert "flaky boom" in failed["error"]


def test_a_successful_call_logs_nothing_above_debug(
    registry: CommandRegistry, captured_logs: list[dict[str, Any]]
) -> None:
    registry.register(Flaky, threading.Event())

    assert registry.ask("flaky", "ok") == "ok"

    assert [e for e in captured_logs if e["log_level"] != "debug"] == []
