"""One benchmark run: set everything up, measure side by side, tear everything down."""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import importlib.metadata
import logging
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pybreaker
import pykka
import structlog

from actors import CommandRegistry, EventType, Reply
from actors.pipeline import Pipeline, Stage
from supervision.metrics import MAX_ACTIVE, MAX_IN_FLIGHT

from .collapsing import CollapsingPlan, collapsing_report
from .fleet import fleet_report
from .fleet_plan import FleetPlan
from .latency import (
    Case,
    Latency,
    measure_latencies,
    percentile,
    pinned_to_one_cpu,
    timer_overhead_ns,
)
from .load_shaping import LoadShapingPlan, load_shaping_report
from .overload import Load, Overload, measure_overload
from .overload_report import (
    CONSTANT_RETURNED,
    FALLBACK_REJECTED,
    OVERLOAD_CALLERS,
    OVERLOAD_CROWD,
    OVERLOAD_CROWD_HAND,
    OVERLOAD_CROWD_NULL,
    OVERLOAD_CROWD_QUIET,
    OVERLOAD_CROWD_WIDE,
    OVERLOAD_SOLO,
    OVERLOAD_SOLO_HAND,
    OVERLOAD_SOLO_QUIET,
    REJECTED_SERVED,
)
from .pipeline_report import (
    ASK_ASYNC,
    BLOCKING_ASK_IN_LOOP,
    PIPELINE_RUN,
    SEQUENTIAL_ASKS,
    PipelineFigures,
)
from .pipelines import MapThroughput, has_ask_async, measure_ask_async, measure_map
from .pybreaker_probe import describe_pybreaker
from .report import (
    BARE_ASK,
    BARE_FUNCTION,
    HAND_ROLLED,
    OURS_CACHE_HIT,
    OURS_CONTEXT,
    OURS_INJECTION_READY,
    OURS_METRICS,
    OURS_REJECTED,
    OURS_SEMAPHORE,
    OURS_SHORT_CIRCUIT,
    OURS_SUCCESS,
    OURS_THROUGHPUT,
    POOL_ALONE,
    PYBREAKER_CALL,
    UNPINNED,
    RunInfo,
    render,
)
from .scale import ScalePlan, scale_report
from .stream_scale import StreamPlan, stream_report
from .subjects import (
    DEPENDENCY_SPANS,
    FALLBACK,
    BulkheadResult,
    CachedEchoCommand,
    EchoActor,
    EchoCommand,
    ForcedOpenCommand,
    HandRolled,
    HandRolledBulkhead,
    Hold,
    OverloadedCommand,
    ParkedCommand,
    QuietOverloadedCommand,
    SemaphoreEchoCommand,
    SlowDependencyCommand,
    WideFallbackOverloadedCommand,
    call_dependency,
    constant_fallback,
    null_call,
)
from .throughput import Throughput, Variant, measure_throughput

__all__ = ["Plan", "run"]


@dataclass(frozen=True, slots=True)
class Plan:
    """How much to measure."""

    mode: str
    rounds: int
    samples: int
    chunk: int
    warmup: int
    slices: int
    slice_seconds: float
    warmup_seconds: float
    callers: int = 10
    #: Overload: phases, and the seconds of each run per phase, for each load: 200 callers
    #: (each of our three keys, the hand-rolled bulkhead, the null call), one caller alone.
    overload_phases: int = 3
    overload_seconds: float = 1.0
    overload_solo_seconds: float = 0.25
    overload_warmup_seconds: float = 0.25
    #: Fleet-wide circuits against a redis-server of the benchmark's own (``benchmarks.fleet``).
    fleet: FleetPlan = field(default_factory=FleetPlan.full)
    #: Thousands of keys and passivation, each row in a process of its own (``benchmarks.scale``).
    scale: ScalePlan = field(default_factory=ScalePlan.full)
    #: The stream's tick at 100 / 2,000 / 10,000 keys, beside the landed code's.
    stream: StreamPlan = field(default_factory=StreamPlan.full)
    #: Retries, hedging and adaptive limits against simulated dependencies (issue 13).
    load_shaping: LoadShapingPlan = field(default_factory=LoadShapingPlan.full)
    #: 50 callers with and without a request collapser (issue 14).
    collapsing: CollapsingPlan = field(default_factory=CollapsingPlan.full)

    @classmethod
    def full(cls) -> Plan:
        return cls(
            "full",
            rounds=21,
            samples=2000,
            chunk=100,
            warmup=1000,
            slices=3,
            slice_seconds=1.0,
            warmup_seconds=0.3,
        )

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            "quick (--quick)",
            rounds=5,
            samples=400,
            chunk=100,
            warmup=300,
            slices=2,
            slice_seconds=0.5,
            warmup_seconds=0.1,
            overload_phases=2,
            overload_seconds=0.3,
            overload_solo_seconds=0.1,
            overload_warmup_seconds=0.1,
            fleet=FleetPlan.quick(),
            scale=ScalePlan.quick(),
            stream=StreamPlan.quick(),
            load_shaping=LoadShapingPlan.quick(),
            collapsing=CollapsingPlan.quick(),
        )


def _identity(value: object) -> object:
    return value


def _fallback_expected(_: int) -> str:
    return FALLBACK


def _zero(_: int) -> int:
    return 0


@contextlib.contextmanager
def _quiet_structlog(drop_command: str) -> Iterator[None]:
    """Debug events are no-ops; warnings are rendered, but to /dev/null, not the table; the
    events of the key ``drop_command`` are dropped by a first processor (never rendered)."""

    def drop(_: Any, __: str, event: Any) -> Any:
        if event.get("command") == drop_command:
            raise structlog.DropEvent
        return event

    structlog.reset_defaults()
    defaults = structlog.get_config()["processors"]
    with open(os.devnull, "w") as sink:
        structlog.configure(
            processors=[drop, *defaults],
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
            logger_factory=structlog.PrintLoggerFactory(file=sink),
            cache_logger_on_first_use=False,
        )
        try:
            yield
        finally:
            structlog.reset_defaults()


@contextlib.contextmanager
def _default_logging() -> Iterator[None]:
    """What an application that configured neither structlog nor ``logging`` has: the
    library's events go to ``logging.getLogger("actors")`` at the default WARNING level. A
    ``NullHandler`` (not propagated) keeps the few warnings out of the report's output."""
    structlog.reset_defaults()
    actors_logger = logging.getLogger("actors")
    sink = logging.NullHandler()
    actors_logger.addHandler(sink)
    actors_logger.propagate = False
    try:
        yield
    finally:
        actors_logger.removeHandler(sink)
        actors_logger.propagate = True


@dataclass(frozen=True, slots=True)
class _Measured:
    latencies: dict[str, Latency]
    throughputs: dict[str, Throughput]
    spans: list[int]
    map_throughput: MapThroughput
    ask_async: dict[str, Latency] | None


def _measure(plan: Plan) -> _Measured:
    echo = EchoActor.start()
    registry = CommandRegistry()
    injecting = CommandRegistry(allow_injection=True)  # allowed, never used
    hand_rolled_echo = HandRolled(_identity)
    hand_rolled = HandRolled(call_dependency)
    pool_alone = HandRolled(call_dependency, breaker=False)
    parked, release = threading.Event(), threading.Event()
    try:
        registry.register(EchoCommand)
        injecting.register(EchoCommand)
        registry.register(SemaphoreEchoCommand)
        registry.register(CachedEchoCommand)
        # a request scope's context, its cache holding payload 0: asking 0 in it is a hit
        request = contextvars.copy_context()
        request.run(registry.request_scope().__enter__)
        request.run(registry.ask, CachedEchoCommand.key, 0)

        def cache_hit(i: int) -> object:
            return request.run(registry.ask, CachedEchoCommand.key, 0)

        registry.register(ForcedOpenCommand)
        registry.register(ParkedCommand, parked, release)
        registry.register(SlowDependencyCommand)
        holder = registry.ask(ParkedCommand.key, -1, block=False)
        if not parked.wait(10.0):
            msg = "the parked call never reached run()"
            raise RuntimeError(msg)

        def ask_echo(i: int) -> object:
            return echo.ask(i)

        registry.ask(EchoCommand.key, 0)
        gate = registry._live_port(EchoCommand.key).gate  # type: ignore[union-attr]
        stats = gate.stats
        success = (EventType.SUCCESS,)

        def record_metrics(i: int) -> object:
            gate.replied(success, 1e-4, False)  # takes the gate's lock, as Ticket.answer does
            stats.ran(1e-4)  # under the lock gate.finish already holds
            stats.counters.peak(MAX_IN_FLIGHT, 1)
            stats.counters.peak(MAX_ACTIVE, 1)
            return i

        def propagate_context(i: int) -> object:
            context = contextvars.copy_context()  # CommandPort.submit
            return context.copy().run(_identity, i)  # Ticket.in_context, on the worker

        def asking(key: str) -> Callable[[int], object]:
            def call(i: int) -> object:
                return registry.ask(key, i)

            return call

        def asking_injecting(key: str) -> Callable[[int], object]:
            def call(i: int) -> object:
                return injecting.ask(key, i)

            return call

        three_stages = Pipeline(*[Stage(EchoCommand.key)] * 3, registry=registry)

        def pipeline_run(i: int) -> object:
            return three_stages.run(i).value

        def three_asks(i: int) -> object:
            ask, key = registry.ask, EchoCommand.key
            return ask(key, ask(key, ask(key, i)))

        breaker = pybreaker.CircuitBreaker()

        def pybreaker_call(i: int) -> object:
            return breaker.call(_identity, i)

        cases = [
            Case(BARE_FUNCTION, _identity, _identity),
            Case(BARE_ASK, ask_echo, _identity),
            Case(HAND_ROLLED, hand_rolled_echo, _identity),
            Case(OURS_SUCCESS, asking(EchoCommand.key), _identity),
            Case(OURS_INJECTION_READY, asking_injecting(EchoCommand.key), _identity),
            Case(OURS_SEMAPHORE, asking(SemaphoreEchoCommand.key), _identity),
            Case(OURS_CACHE_HIT, cache_hit, _zero),
            Case(PYBREAKER_CALL, pybreaker_call, _identity),
            Case(OURS_SHORT_CIRCUIT, asking(ForcedOpenCommand.key), _fallback_expected),
            Case(OURS_REJECTED, asking(ParkedCommand.key), _fallback_expected),
            Case(OURS_METRICS, record_metrics, _identity),
            Case(OURS_CONTEXT, propagate_context, _identity),
            Case(PIPELINE_RUN, pipeline_run, _identity),
            Case(SEQUENTIAL_ASKS, three_asks, _identity),
        ]
        with pinned_to_one_cpu():
            latencies = measure_latencies(
                cases,
                rounds=plan.rounds,
                samples=plan.samples,
                chunk=plan.chunk,
                warmup=plan.warmup,
            )
        latencies.update(
            measure_latencies(
                [
                    Case(BARE_ASK + UNPINNED, ask_echo, _identity),
                    Case(OURS_SUCCESS + UNPINNED, asking(EchoCommand.key), _identity),
                ],
                rounds=plan.rounds,
                samples=plan.samples,
                chunk=plan.chunk,
                warmup=plan.warmup,
            )
        )

        variants = [
            Variant(OURS_THROUGHPUT, asking(SlowDependencyCommand.key)),
            Variant(HAND_ROLLED, hand_rolled),
            Variant(POOL_ALONE, pool_alone),
        ]
        DEPENDENCY_SPANS.clear()
        throughputs = measure_throughput(
            variants,
            callers=plan.callers,
            slices=plan.slices,
            slice_seconds=plan.slice_seconds,
            warmup_seconds=plan.warmup_seconds,
        )
        spans = sorted(DEPENDENCY_SPANS)
        map_throughput = measure_map(
            Pipeline(Stage(SlowDependencyCommand.key), registry=registry),
            max_in_flight=plan.callers,
            seconds=plan.slices * plan.slice_seconds,
            warmup_seconds=plan.warmup_seconds,
        )
        ask_async = None
        if has_ask_async():
            ask_async = measure_ask_async(
                registry,
                EchoCommand.key,
                (ASK_ASYNC, BLOCKING_ASK_IN_LOOP),
                rounds=plan.rounds,
                samples=plan.samples,
                chunk=plan.chunk,
                warmup=plan.warmup,
            )
        release.set()
        holder.get(timeout=10.0)
    finally:
        release.set()
        registry.shutdown(timeout=5.0)
        injecting.shutdown(timeout=5.0)
        for pool in (hand_rolled_echo, hand_rolled, pool_alone):
            pool.close()
        echo.stop()
    return _Measured(latencies, throughputs, spans, map_throughput, ask_async)


def _rejection(reply: Reply) -> str:
    """What our overload answer was: a bulkhead rejection that fell back, or whose fallback
    was refused for want of a fallback slot; anything else is listed by its events."""
    events = reply.events
    if events == (EventType.THREAD_POOL_REJECTED, EventType.FALLBACK_SUCCESS):
        if reply.value == FALLBACK:
            return REJECTED_SERVED
    elif events == (EventType.THREAD_POOL_REJECTED, EventType.FALLBACK_REJECTION):
        return FALLBACK_REJECTED
    return "unexpected: " + " + ".join(events)


def _hand_rolled_rejection(result: BulkheadResult) -> str:
    """What the hand-rolled bulkhead answered (the same labels as ours)."""
    if result.rejected and result.value == FALLBACK:
        return REJECTED_SERVED
    return f"unexpected: rejected={result.rejected}, value={result.value!r}"


def _constant(value: object) -> str:
    return CONSTANT_RETURNED if value == FALLBACK else f"unexpected: {value!r}"


def _wait_in_flight(registry: CommandRegistry, key: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (in_flight := registry.health(key).in_flight) != count:
        if time.monotonic() > deadline:
            msg = f"{key}: {in_flight} calls in flight after {timeout:g} s, expected {count}"
            raise RuntimeError(msg)
        time.sleep(0.001)


def _measure_overload(plan: Plan) -> Overload:
    """Fill three keys' bulkheads with held calls and the hand-rolled bulkhead's semaphore, then
    ask each from many threads (and ours and the hand-rolled one from one thread too), with a
    null call from many threads beside them as the floor."""
    hold = Hold()
    registry = CommandRegistry()
    logged, quiet = OverloadedCommand.key, QuietOverloadedCommand.key
    wide = WideFallbackOverloadedCommand.key
    slots = OverloadedCommand.config.max_concurrent_requests
    hand_rolled = HandRolledBulkhead(null_call, constant_fallback, slots=slots)
    held: list[pykka.Future[Any]] = []
    try:
        registry.register(OverloadedCommand, hold)
        registry.register(QuietOverloadedCommand, hold)
        registry.register(WideFallbackOverloadedCommand, hold)
        held += [registry.ask(logged, n, block=False) for n in range(slots)]
        held += [registry.ask(quiet, n, block=False) for n in range(slots)]
        held += [registry.ask(wide, n, block=False) for n in range(slots)]
        for key in (logged, quiet, wide):
            _wait_in_flight(registry, key, slots, 10.0)
        if not hold.wait_entered(len(held), 10.0):
            msg = "the held calls never all reached run()"
            raise RuntimeError(msg)
        hand_rolled.fill()

        def ours(name: str, key: str, callers: int, seconds: float) -> Load:
            ask_reply = registry.ask_reply

            def call(payload: int) -> Any:
                return ask_reply(key, payload)

            def in_flight() -> int:
                return registry.health(key).in_flight

            return Load(name, callers, seconds, call, _rejection, in_flight)

        crowd, solo = plan.overload_seconds, plan.overload_solo_seconds
        overload = measure_overload(
            [
                ours(OVERLOAD_CROWD, logged, OVERLOAD_CALLERS, crowd),
                Load(
                    OVERLOAD_CROWD_HAND,
                    OVERLOAD_CALLERS,
                    crowd,
                    hand_rolled,
                    _hand_rolled_rejection,
                ),
                Load(OVERLOAD_CROWD_NULL, OVERLOAD_CALLERS, crowd, null_call, _constant),
                ours(OVERLOAD_CROWD_QUIET, quiet, OVERLOAD_CALLERS, crowd),
                ours(OVERLOAD_CROWD_WIDE, wide, OVERLOAD_CALLERS, crowd),
                ours(OVERLOAD_SOLO, logged, 1, solo),
                Load(OVERLOAD_SOLO_HAND, 1, solo, hand_rolled, _hand_rolled_rejection),
                ours(OVERLOAD_SOLO_QUIET, quiet, 1, solo),
            ],
            phases=plan.overload_phases,
            warmup_seconds=plan.overload_warmup_seconds,
        )
        hold.release.set()
        answers = [future.get(timeout=10.0) for future in held]
        if answers != [*range(slots)] * 3:
            msg = f"the held calls answered {answers}, expected their payloads"
            raise RuntimeError(msg)
    finally:
        hold.release.set()
        registry.shutdown(timeout=5.0)
    return overload


def _join_leftover_threads(timeout: float) -> list[str]:
    """Wait for threads still stopping (everything was told to stop); the names of any left."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in threading.enumerate() if t is not threading.current_thread()]


def run(plan: Plan) -> str:
    """Measure everything once; the Markdown report."""
    started = time.perf_counter()
    with _default_logging():
        measured = _measure(plan)
    with _quiet_structlog(drop_command=QuietOverloadedCommand.key):
        overload = _measure_overload(plan)
    with _default_logging():
        fleet = fleet_report(plan.fleet)
    scale = scale_report(plan.scale)
    with _default_logging():
        stream = stream_report(plan.stream)
    load_shaping = load_shaping_report(plan.load_shaping)
    collapsing = collapsing_report(plan.collapsing)
    pybreaker_note = describe_pybreaker()
    leftover = _join_leftover_threads(5.0)
    if leftover:
        print(f"warning: threads still alive after the run: {leftover}", file=sys.stderr)
    spans = measured.spans
    info = RunInfo(
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        python=platform.python_version(),
        pykka=importlib.metadata.version("pykka"),
        pybreaker=importlib.metadata.version("pybreaker"),
        structlog=importlib.metadata.version("structlog"),
        cores=os.cpu_count() or 0,
        platform=f"{platform.system()} {platform.machine()}",
        mode=plan.mode,
        latency_plan=(
            f"{plan.rounds} rounds x {plan.samples} calls per path, interleaved in chunks of"
            f" {plan.chunk}, after {plan.warmup} warm-up calls per path"
        ),
        throughput_plan=(
            f"{plan.callers} caller threads, {plan.slices} alternating slices of"
            f" {plan.slice_seconds:g} s per variant, after {plan.warmup_seconds:g} s warm-up each"
        ),
        overload_plan=(
            f"{OVERLOAD_CALLERS} caller threads and 1, against a full bulkhead of"
            f" {OverloadedCommand.config.max_concurrent_requests} (three keys of ours, a"
            " hand-rolled semaphore) and a null call; every load interleaved in"
            f" {plan.overload_phases} phases, each with a run of {plan.overload_seconds:g} s"
            f" ({OVERLOAD_CALLERS} callers) or {plan.overload_solo_seconds:g} s (1 caller) per"
            f" load, after {plan.overload_warmup_seconds:g} s warm-up each"
        ),
        switch_interval_ms=sys.getswitchinterval() * 1000,
        timer_overhead_ns=timer_overhead_ns(),
        pybreaker_note=pybreaker_note,
        dependency_mean_ms=statistics.fmean(spans) / 1e6 if spans else 0.0,
        dependency_p99_ms=percentile(spans, 0.99) / 1e6 if spans else 0.0,
        seconds=time.perf_counter() - started,
    )
    pipelines = PipelineFigures(
        map_throughput=measured.map_throughput,
        ask_async=measured.ask_async,
        map_plan=(
            f"1 consumer thread, {plan.slices * plan.slice_seconds:g} s counted after"
            f" {plan.warmup_seconds:g} s warm-up, {plan.callers} in flight"
        ),
        ask_async_plan=(
            f"{plan.rounds} rounds x {plan.samples} calls per path inside one `asyncio.run`,"
            f" alternating chunks of {plan.chunk} (which goes first alternates too), after"
            f" {plan.warmup} warm-up calls per path, garbage collector off during the rounds"
        ),
    )
    return render(
        info,
        measured.latencies,
        measured.throughputs,
        overload,
        pipelines,
        fleet,
        scale,
        stream,
        load_shaping,
        collapsing,
    )
