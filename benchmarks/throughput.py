"""Calls per second against a slow dependency, with many caller threads.

Variants run in alternating slices (ours, theirs, ours, theirs, ...) and each variant's calls
and seconds are summed over its slices, so a noisy neighbour hits every variant alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Throughput", "Variant", "measure_throughput"]


@dataclass(frozen=True, slots=True)
class Variant:
    """One way to call the dependency: ``call(payload)`` returns the payload on success."""

    name: str
    call: Callable[[int], Any]


@dataclass(frozen=True, slots=True)
class Throughput:
    name: str
    #: Calls answered with the dependency's value.
    successes: int
    #: Calls answered with anything else (a fallback).
    fallbacks: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.successes / self.seconds if self.seconds > 0 else 0.0


def _slice(variant: Variant, callers: int, seconds: float) -> tuple[int, int, float]:
    """Run ``callers`` threads calling the variant for ``seconds``; (successes, fallbacks, s)."""
    counts = [[0, 0] for _ in range(callers)]
    barrier = threading.Barrier(callers + 1)
    stop_at = [0.0]

    def caller(slot: int) -> None:
        mine = counts[slot]
        call = variant.call
        payload = slot * 1_000_000
        barrier.wait()
        end = stop_at[0]
        while time.perf_counter() < end:
            payload += 1
            if call(payload) == payload:
                mine[0] += 1
            else:
                mine[1] += 1

    threads = [
        threading.Thread(target=caller, args=(n,), name=f"bench-caller-{n}", daemon=True)
        for n in range(callers)
    ]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    stop_at[0] = started + seconds
    barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return sum(c[0] for c in counts), sum(c[1] for c in counts), elapsed


def measure_throughput(
    variants: Sequence[Variant],
    *,
    callers: int,
    slices: int,
    slice_seconds: float,
    warmup_seconds: float,
) -> dict[str, Throughput]:
    for variant in variants:
        _slice(variant, callers, warmup_seconds)
    totals = {variant.name: [0, 0, 0.0] for variant in variants}
    for slice_no in range(slices):
        order = [variants[(slice_no + k) % len(variants)] for k in range(len(variants))]
        for variant in order:
            ok, fell_back, elapsed = _slice(variant, callers, slice_seconds)
            total = totals[variant.name]
            total[0] += ok
            total[1] += fell_back
            total[2] += elapsed
    return {
        name: Throughput(name, int(total[0]), int(total[1]), float(total[2]))
        for name, total in totals.items()
    }
