"""The books on every ask of a chaos run: issued, answered exactly once (by the caller's count and
by the library's, tapped on ``Ticket.answer``), within its bound, with the right answer."""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from actors import CommandError, Reply

from .keys import Ask, Ledger, classify, wrong_answer
from .probes import Tally
from .result import ChaosResult

__all__ = ["AnswerTap", "Books"]


class AnswerTap:
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

        Ticket.answer = answer  # type: ignore[method-assign, assignment]
        self.installed = True
        try:
            yield
        finally:
            Ticket.answer = original  # type: ignore[method-assign]


class Books:
    """What the callers issued and were answered, written into ``result`` as it happens."""

    def __init__(self, result: ChaosResult, token: int) -> None:
        self.result = result
        #: The callers' count of answers per ask, and the library's.
        self.answered = Tally()
        self.tap = AnswerTap(token)
        self._longest = {spec.name: spec.max_timeout for spec in result.options.keys}
        self._lock = threading.Lock()
        self._outstanding: dict[int, tuple[Ask, float, float]] = {}  # id -> ask, issued, bound
        self._overdue_ids: set[int] = set()

    @property
    def nbytes(self) -> int:
        return self.answered.nbytes + self.tap.answers.nbytes

    def issue(self, ask: Ask) -> tuple[float, float]:
        """Book an ask about to be sent: when it was issued and when it must be answered by."""
        issued = time.monotonic()
        bound = issued + (ask.timeout or self._longest[ask.key]) + self.result.options.slack
        with self._lock:
            self.result.issued += 1
            self.result.actions[ask.action] += 1
            self._outstanding[ask.ask_id] = (ask, issued, bound)
        return issued, bound

    def record(
        self, ask: Ask, issued: float, reply: Reply | None, raised: BaseException | None
    ) -> None:
        """Book an ask's answer: the reply, or what the ask raised."""
        latency = time.monotonic() - issued
        result = self.result
        count = self.answered.bump(ask.ask_id)
        with self._lock:
            entry = self._outstanding.pop(ask.ask_id, None)
            if count > 1:
                result.duplicates.append(ask.ask_id)
                result.note(f"ask {ask.ask_id} answered {count} times ({ask})")
                return
            result.answered += 1
            overdue = entry is not None and time.monotonic() > entry[2]
            if overdue and ask.ask_id not in self._overdue_ids:
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

    def mark_overdue(self, ask: Ask, what: str) -> None:
        """Count an ask as overdue once; the first one overdue dumps every thread's stack."""
        with self._lock:
            if ask.ask_id in self._overdue_ids:
                return
            self._overdue_ids.add(ask.ask_id)
            self.result.overdue += 1
            self.result.note(f"ask {ask.ask_id} overdue: {what} ({ask})")
            first = self.result.overdue == 1
        if first:
            self.result.dump(f"ask {ask.ask_id} overdue: {what}")

    def check_overdue(self, now: float) -> None:
        with self._lock:
            late = [
                ask
                for ask, _, bound in self._outstanding.values()
                if now > bound and ask.ask_id not in self._overdue_ids
            ]
        for ask in late:
            self.mark_overdue(ask, "not answered within its timeout + slack")

    def close(self, ledger: Ledger) -> None:
        """Once the run is over: the asks never answered, and those answered, run or fallen back
        more than once."""
        result = self.result
        with self._lock:
            never = sorted(self._outstanding)
            for ask_id in never[:10]:
                result.note(f"ask {ask_id} never answered ({self._outstanding[ask_id][0]})")
        result.lost = never
        result.library_duplicates = self.tap.answers.ids_over(1)
        result.run_twice = ledger.runs.ids_over(1)
        result.fell_back_twice = ledger.fallbacks.ids_over(1)
        for ask_id in result.run_twice[:5]:
            result.note(f"ask {ask_id} ran {ledger.runs.get(ask_id)} times")
