"""What a chaos run is told: how long, how many callers, how hard the faults, and the bounds its
invariants are judged by. Durations are float seconds, sizes bytes."""

from __future__ import annotations

import dataclasses
import random

from actors import PoolConfig

from .keys import DEFAULT_KEYS, KeySpec

__all__ = ["ChaosOptions"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChaosOptions:
    seconds: float = 10.0
    seed: int | None = None
    callers: int = 16
    keys: tuple[KeySpec, ...] = DEFAULT_KEYS
    #: Shared pools (``CommandConfig(pool=...)``) to configure before the keys are registered.
    pools: tuple[tuple[str, PoolConfig], ...] = ()
    #: Mean seconds between two faults of the chaos thread (exponentially distributed).
    fault_interval: float = 0.05
    #: Share of caller rounds that issue a batch of non-blocking asks rather than one blocking ask.
    nonblocking_share: float = 0.35
    #: Mean seconds a caller thinks between two rounds (uniform in [0, 2x]): without it, callers
    #: answered at once (rejected, short-circuited) would spin and crowd out the workers.
    think: float = 0.004
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
    rss_growth_bound: int = 8 * 2**20
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
