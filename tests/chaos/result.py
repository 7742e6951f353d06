"""What a chaos run found: its figures, the invariants judged from them, and a summary."""

from __future__ import annotations

import collections
import dataclasses
import os
import platform
import sys
from importlib.metadata import version

from .options import ChaosOptions
from .probes import PykkaTap, dump_threads

__all__ = ["ChaosResult", "Invariant", "environment"]

#: Library log events that can only mean a bug (a worker's own handling broke, a timer job died).
BUG_EVENTS = frozenset(
    {
        "worker.internal_error",
        "watchdog.job_failed",
        "watchdog.fallback_crashed",
        "watchdog.restarted",
        "event_loop.failed",
        "listener.failed",
    }
)


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
    fault_misses: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
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
    #: Bytes the harness's own books (per-ask tallies) grew by from rss_warm to rss_end.
    books_growth: int = 0
    #: Bytes tracemalloc's own bookkeeping grew by over that span (with ``trace_memory``).
    tracer_growth: int = 0
    heap_growth: int | None = None
    heap_top: list[str] = dataclasses.field(default_factory=list)
    zombies_max: dict[str, int] = dataclasses.field(default_factory=dict)
    statuses_seen: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
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
        """RSS growth from the end of warm-up to the end, less what the measuring tools grew
        by themselves (the harness's books, tracemalloc's traces)."""
        return self.rss_end - self.rss_warm - self.books_growth - self.tracer_growth

    def note(self, text: str) -> None:
        if len(self.examples) < 40:
            self.examples.append(text)

    def dump(self, why: str) -> None:
        """Keep every thread's stack (the first three times), printed at once too: a hang may
        never let the run end."""
        if len(self.dumps) >= 3:
            return
        text = f"--- {why} ---\n{dump_threads()}"
        self.dumps.append(text)
        print(text, file=sys.stderr)

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
                f" MiB ({self.rss_growth / 2**20:+.1f} MiB net of the measuring tools' own growth,"
                f" bound"
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


def environment() -> dict[str, str]:
    """What the run was driven on."""
    return {
        "nproc": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else ""),
        "python": platform.python_version(),
        "pykka": version("pykka"),
        "structlog": version("structlog"),
        "platform": platform.platform(),
    }
