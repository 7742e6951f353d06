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

The keys and their command are in ``keys``, the run's options in ``options``, the chaos thread in
``faults``, the books on every ask in ``books``, the measuring instruments in ``probes`` and the
figures and invariants in ``result``. This folder is a package: the tests import it relatively
and the soak script runs as ``python -m tests.chaos.soak``. It only waits on events or polls
with a bound.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import gc
import itertools
import os
import random
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import pykka

from actors import CommandError, CommandRegistry, Reply

from .books import Books
from .faults import Monkey
from .keys import Ask, KeySpec, Ledger, classify, command_class_for, draw_ask, weighted
from .options import ChaosOptions
from .probes import counting_logs, rss_bytes, thread_family
from .result import ChaosResult

__all__ = ["Chaos"]

_tokens = itertools.count(1)

#: The harness's own modules: what they allocate (its books, a byte per ask and tally) is not the
#: library's growth.
_HARNESS_FILES = os.path.join(os.path.dirname(__file__), "*")


class Chaos:
    """One chaos run: ``Chaos(ChaosOptions(seconds=10, seed=1)).run()``."""

    def __init__(self, options: ChaosOptions, *, log: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.seed = options.resolved_seed()
        self.token = next(_tokens)
        self.result = ChaosResult(seed=self.seed, options=options)
        self._say = log or (lambda _line: None)
        self._books = Books(self.result, self.token)
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._late_futures: list[tuple[Ask, float, pykka.Future[Any]]] = []
        self._stuck_left = {spec.name: spec.stuck_budget for spec in options.keys}
        self._stop = threading.Event()
        #: Never set: what bounded polls wait on once ``_stop`` is set.
        self._pace = threading.Event()
        self._threads_max = 0
        self._books_warm = 0
        self._tracer_warm = 0

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
        ledger = Ledger(started + opts.seconds + 4 * opts.settle)
        registry = CommandRegistry()
        traced = False
        try:
            with (
                counting_logs(result.log_counts),
                result.pykka.installed(),
                self._books.tap.install(),
            ):
                result.answer_tap = self._books.tap.installed
                for name, pool_config in opts.pools:
                    registry.configure_pool(name, pool_config)
                for spec in opts.keys:
                    registry.register(command_class_for(spec), ledger)
                callers = [
                    threading.Thread(
                        target=self._caller, args=(registry, n), name=f"chaos-caller-{n}"
                    )
                    for n in range(opts.callers)
                ]
                monkey = Monkey(registry, opts, result, self.seed, self._stop)
                chaos = threading.Thread(target=monkey.run, name="chaos-monkey")
                for thread in [*callers, chaos]:
                    thread.start()
                traced = self._monitor(registry, ledger, started)
                self._stop.set()
                self._finish_load(callers, chaos)
                ledger.release.set()
                self._settle(registry, ledger, traced)
                self._serve_again(registry)
                self._shutdown(registry, baseline)
        finally:
            self._stop.set()
            ledger.release.set()
            if traced:
                tracemalloc.stop()
            with contextlib.suppress(BaseException):
                registry.shutdown(opts.shutdown_timeout)
        result.wall = time.monotonic() - started
        self._books.close(ledger)
        result.judge()
        self._say(result.summary())
        return result

    def _monitor(self, registry: CommandRegistry, ledger: Ledger, started: float) -> bool:
        """Watch the load until the run's end: threads, RSS, zombies, overdue asks."""
        opts, result = self.options, self.result
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
                self._books_warm = self._tally_bytes(ledger)
                if opts.trace_memory:
                    tracemalloc.start()
                    traced = True
                    self._heap_start = tracemalloc.take_snapshot()
                    self._tracer_warm = tracemalloc.get_tracemalloc_memory()
            if now >= next_health:
                self._sample_health(registry)
                next_health = now + 0.05
            self._books.check_overdue(now)
            self._stop.wait(0.01)  # the monitor's sampling period
        if not warm:
            result.rss_warm = rss_bytes()
            self._books_warm = self._tally_bytes(ledger)
        return traced

    def _tally_bytes(self, ledger: Ledger) -> int:
        return ledger.runs.nbytes + ledger.fallbacks.nbytes + self._books.nbytes

    def _finish_load(self, callers: Sequence[threading.Thread], chaos: threading.Thread) -> None:
        """Join the callers (each finishes its current ask) and the chaos thread, within the
        bound on an ask; a caller still stuck after it is a hang."""
        longest = max(s.max_timeout for s in self.options.keys) + self.options.slack
        deadline = time.monotonic() + 2 * longest + 1.0
        for thread in [*callers, chaos]:
            while thread.is_alive() and time.monotonic() < deadline:
                thread.join(0.05)
                self._sample_threads()
                self._books.check_overdue(time.monotonic())
        stuck = [t for t in callers if t.is_alive()]
        self.result.stuck_callers = len(stuck)
        if stuck or chaos.is_alive():
            self.result.dump("callers or chaos thread still running after the load stopped")
        if chaos.is_alive():
            self.result.chaos_errors.append("the chaos thread did not stop (hung in a call)")

    def _settle(self, registry: CommandRegistry, ledger: Ledger, traced: bool) -> None:
        """Hung runs are released: every slot must come back, late futures resolve."""
        opts, result = self.options, self.result
        deadline = time.monotonic() + opts.settle
        for spec in opts.keys:
            while True:
                try:
                    health = registry.health(spec.name)
                    state = (health.in_flight, health.zombies)
                except Exception as exc:
                    state = (-1, -1)
                    detail = f"health raised {exc!r}"
                else:
                    detail = f"in_flight {state[0]}, zombies {state[1]}, status {health.status}"
                if state == (0, 0):
                    break
                if time.monotonic() > deadline:
                    result.leaked[spec.name] = detail
                    break
                self._pace.wait(0.01)  # polling the key's health, bounded by `deadline`
        for ask, issued, future in self._late_futures:
            if self._await(ask, issued, future, deadline):  # else never answered: counted lost
                result.late += 1
        gc.collect()
        result.rss_end = rss_bytes()
        result.books_growth = self._tally_bytes(ledger) - self._books_warm
        if traced:
            result.tracer_growth = tracemalloc.get_tracemalloc_memory() - self._tracer_warm
            current = tracemalloc.take_snapshot()
            mine = tracemalloc.Filter(False, _HARNESS_FILES)
            stats = current.filter_traces([mine]).compare_to(
                self._heap_start.filter_traces([mine]), "lineno"
            )
            result.heap_growth = sum(stat.size_diff for stat in stats)
            result.heap_top = [str(stat) for stat in stats[:8]]
            tracemalloc.stop()

    def _serve_again(self, registry: CommandRegistry) -> None:
        """Each key answers SUCCESS again (reviving a key that is down, waiting out an open
        circuit's sleep window), within the settle bound."""
        for spec in self.options.keys:
            deadline = time.monotonic() + self.options.settle
            last = "never asked"
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    if registry.health(spec.name).status == "down":
                        registry.restart(spec.name)
                ask = self._new_ask_for(spec, "ok", random.Random(0), block=True)
                ask = dataclasses.replace(ask, timeout=None)
                issued, _ = self._books.issue(ask)
                call = functools.partial(registry.ask_reply, ask.key, ask)
                answer = self._answer(ask, issued, call)
                last = repr(answer) if isinstance(answer, BaseException) else classify(answer)
                if last == "success":
                    break
                self._pace.wait(0.02)  # waiting out a restart backoff or a sleep window
            else:
                self.result.not_serving[spec.name] = f"last answer: {last}"

    def _shutdown(self, registry: CommandRegistry, baseline: set[int | None]) -> None:
        opts, result = self.options, self.result
        report = registry.shutdown(opts.shutdown_timeout)
        result.shutdown_report = repr(report)
        result.shutdown_zombies = report.zombies
        deadline = time.monotonic() + opts.settle
        while True:
            left = [
                t
                for t in threading.enumerate()
                if t.ident not in baseline and not t.name.startswith("chaos-")
            ]
            if not left or time.monotonic() > deadline:
                break
            self._pace.wait(0.01)  # library threads finishing after stop(): bounded poll
        result.threads_left = [t.name for t in left]
        spec = opts.keys[0]
        refusals = []
        for block in (True, False):
            ask = self._new_ask_for(spec, "ok", random.Random(0), block=block)
            try:
                reply = registry.ask_reply(spec.name, ask, block=block)
            except CommandError as exc:
                if exc.reason != "shutdown":
                    refusals.append(f"an ask (block={block}) after shutdown: reason {exc.reason!r}")
            except BaseException as exc:
                refusals.append(f"an ask (block={block}) after shutdown raised {exc!r}")
            else:
                refusals.append(
                    f"an ask (block={block}) after shutdown was accepted: {reply!r:.80}"
                )
        result.after_shutdown = "; ".join(refusals)

    # -- callers ------------------------------------------------------------------------------

    def _new_ask_for(self, spec: KeySpec, action: str, rnd: random.Random, *, block: bool) -> Ask:
        return draw_ask(
            spec,
            action,
            rnd,
            token=self.token,
            ask_id=next(self._ids),
            timeout_share=self.options.per_ask_timeout_share,
            block=block,
        )

    def _new_ask(self, rnd: random.Random, block: bool) -> Ask:
        spec = rnd.choice(self.options.keys)
        action = weighted(rnd, spec.mix)
        if action == "stuck":
            with self._lock:
                if self._stuck_left[spec.name] > 0:
                    self._stuck_left[spec.name] -= 1
                else:
                    action = "hang"
        return self._new_ask_for(spec, action, rnd, block=block)

    def _answer(self, ask: Ask, issued: float, call: Callable[[], Reply]) -> Reply | BaseException:
        """Ask with ``call`` and book its answer: the reply, or what it raised."""
        try:
            reply = call()
        except BaseException as exc:
            self._books.record(ask, issued, None, exc)
            return exc
        self._books.record(ask, issued, reply, None)
        return reply

    def _await(self, ask: Ask, issued: float, future: pykka.Future[Any], until: float) -> bool:
        """Wait for a future's answer until ``until`` and book it; False if it did not come."""
        try:
            reply = future.get(timeout=max(0.0, until - time.monotonic()))
        except pykka.Timeout:
            return False
        except BaseException as exc:
            self._books.record(ask, issued, None, exc)
        else:
            self._books.record(ask, issued, reply, None)
        return True

    def _caller(self, registry: CommandRegistry, n: int) -> None:
        rnd = random.Random(f"{self.seed}/caller/{n}")
        opts = self.options
        while not self._stop.is_set():
            if rnd.random() < opts.nonblocking_share:
                pending = []
                for _ in range(rnd.randint(1, 4)):
                    ask = self._new_ask(rnd, block=False)
                    issued, bound = self._books.issue(ask)
                    try:
                        future = registry.ask_reply(ask.key, ask, block=False, timeout=ask.timeout)
                    except BaseException as exc:
                        self._books.record(ask, issued, None, exc)
                        continue
                    pending.append((ask, issued, bound, future))
                for ask, issued, bound, future in pending:
                    if not self._await(ask, issued, future, bound):
                        self._books.mark_overdue(ask, "a future not resolved within its bound")
                        with self._lock:
                            self._late_futures.append((ask, issued, future))
            else:
                ask = self._new_ask(rnd, block=True)
                issued, _ = self._books.issue(ask)
                call = functools.partial(registry.ask_reply, ask.key, ask, timeout=ask.timeout)
                self._answer(ask, issued, call)
            self._sample_threads()
            self._pace.wait(rnd.uniform(0.0, 2 * opts.think))  # the caller's think time

    # -- sampling -----------------------------------------------------------------------------

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
                        thread_family(t.name) for t in threading.enumerate()
                    )
                    self.result.threads_at_max = ", ".join(
                        f"{name} x{n}" for name, n in names.most_common(8)
                    )

    def _sample_health(self, registry: CommandRegistry) -> None:
        result = self.result
        for spec in self.options.keys:
            try:
                health = registry.health(spec.name)
            except Exception:  # a key not used yet, or a health() bug: seen elsewhere
                continue
            result.zombies_max[spec.name] = max(
                result.zombies_max.get(spec.name, 0), health.zombies
            )
            result.statuses_seen[health.status] += 1
            result.states_seen[str(health.state)] += 1
