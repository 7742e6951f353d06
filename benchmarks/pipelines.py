"""What a pipeline and an awaited ask cost, beside what they are built on.

* ``Pipeline.map`` throughput: one consumer draining ``map(itertools.count(), max_in_flight=10)``
  of a one-stage pipeline over the 10 ms dependency, for a fixed wall time after a warm-up.
* ``await registry.ask_async`` against a blocking ``registry.ask`` on the same echo key, timed
  call by call inside one ``asyncio.run``, in interleaved chunks (the blocking ask blocks that
  loop's thread, as it would any caller's).

(The 3-stage ``Pipeline.run`` against 3 sequential asks is two more cases of the latency
table: see ``suite.py``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import statistics
import time
from dataclasses import dataclass

from actors import CommandRegistry
from actors.pipeline import Pipeline

from .latency import Latency, percentile
from .subjects import DEPENDENCY_SPANS

__all__ = ["MapThroughput", "has_ask_async", "measure_ask_async", "measure_map"]


@dataclass(frozen=True, slots=True)
class MapThroughput:
    """What one consumer of ``Pipeline.map`` got in ``seconds`` of steady state."""

    max_in_flight: int
    successes: int
    fallbacks: int
    seconds: float
    #: What the dependency itself took per call meanwhile (``time.sleep`` overshoots).
    dependency_mean_ms: float

    @property
    def per_second(self) -> float:
        return self.successes / self.seconds if self.seconds > 0 else 0.0


def measure_map(
    pipeline: Pipeline, *, max_in_flight: int, seconds: float, warmup_seconds: float
) -> MapThroughput:
    """Drain ``pipeline.map(count())`` for ``warmup_seconds``, then count ``seconds`` of it."""
    successes = fallbacks = 0
    spans_from = 0
    started = end = 0.0
    results = pipeline.map(itertools.count(), max_in_flight=max_in_flight)
    with contextlib.closing(results):
        warm_until = time.perf_counter() + warmup_seconds
        for index, result in enumerate(results):  # the payloads are 0, 1, 2, ...
            now = time.perf_counter()
            if not started:
                if now < warm_until:
                    continue
                started, end = now, now + seconds
                spans_from = len(DEPENDENCY_SPANS)
                continue
            if result.complete and result.value == index:
                successes += 1
            else:
                fallbacks += 1
            if now >= end:
                break
        elapsed = time.perf_counter() - started
        spans = DEPENDENCY_SPANS[spans_from:]
    mean_ms = statistics.fmean(spans) / 1e6 if spans else 0.0
    return MapThroughput(max_in_flight, successes, fallbacks, elapsed, mean_ms)


def has_ask_async() -> bool:
    """Whether this build has ``CommandRegistry.ask_async`` (a row of its own when it has)."""
    return hasattr(CommandRegistry, "ask_async")


def measure_ask_async(
    registry: CommandRegistry,
    key: str,
    names: tuple[str, str],
    *,
    rounds: int,
    samples: int,
    chunk: int,
    warmup: int,
) -> dict[str, Latency]:
    """``names[0]``: ``await registry.ask_async(key, i)``; ``names[1]``: ``registry.ask(key, i)``;
    both timed call by call in the same rounds, inside one ``asyncio.run``. The key's command
    must answer its payload."""
    awaited, blocking = names

    async def main() -> dict[str, Latency]:
        clock = time.perf_counter_ns
        ask_async, ask = registry.ask_async, registry.ask

        async def timed_async(start: int, count: int, out: list[int]) -> None:
            for i in range(start, start + count):
                t0 = clock()
                value = await ask_async(key, i)
                out.append(clock() - t0)
                if value != i:
                    msg = f"{awaited}: ask_async({i}) returned {value!r}"
                    raise RuntimeError(msg)

        def timed_blocking(start: int, count: int, out: list[int]) -> None:
            for i in range(start, start + count):
                t0 = clock()
                value = ask(key, i)
                out.append(clock() - t0)
                if value != i:
                    msg = f"{blocking}: ask({i}) returned {value!r}"
                    raise RuntimeError(msg)

        await timed_async(0, warmup, [])
        timed_blocking(0, warmup, [])
        p50s: dict[str, list[float]] = {awaited: [], blocking: []}
        p99s: dict[str, list[float]] = {awaited: [], blocking: []}
        chunks = max(1, samples // chunk)
        for round_no in range(rounds):
            taken: dict[str, list[int]] = {awaited: [], blocking: []}
            gc.collect()
            gc.disable()
            try:
                for chunk_no in range(chunks):
                    start = chunk_no * chunk
                    if (round_no + chunk_no) % 2:
                        timed_blocking(start, chunk, taken[blocking])
                        await timed_async(start, chunk, taken[awaited])
                    else:
                        await timed_async(start, chunk, taken[awaited])
                        timed_blocking(start, chunk, taken[blocking])
            finally:
                gc.enable()
            for name, spans in taken.items():
                spans.sort()
                p50s[name].append(percentile(spans, 0.50) / 1000)
                p99s[name].append(percentile(spans, 0.99) / 1000)
        return {
            name: Latency(
                name=name,
                p50_us=statistics.median(p50s[name]),
                p99_us=statistics.median(p99s[name]),
                rounds=rounds,
                samples_per_round=chunks * chunk,
            )
            for name in (awaited, blocking)
        }

    return asyncio.run(main())
