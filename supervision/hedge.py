"""Hedged requests ("The Tail at Scale"): when a call's run has not answered after a high
percentile of the key's recent run latencies (or a fixed delay), start one more run; the first
answer wins. Pure and clock-injected: the policy, when to hedge, and the budget that caps the
extra runs at a share of the calls.

The budget counts calls (deposits) and extra runs (withdrawals) per bucket over a rolling
window of ``BUCKETS`` buckets (``window / 10`` seconds each; a count leaves it between
``window - window / 10`` and ``window`` seconds after it was made). An extra run is granted while
the extra runs over the window, this one included, are at most ``budget`` x the calls over it,
as Finagle checks its retry budget: the whole trailing window, no floor. Over any ``window``
seconds aligned to the buckets the extra runs are then at most ``budget`` x the calls made in
them and in the ``window`` seconds before (twice the share at worst, after a lull; the share
itself under steady load).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from .checks import check_int, check_number, show
from .checks import check_seconds as _check_seconds
from .clock import Clock
from .retry import TokenWindow

__all__ = ["HedgeBudget", "HedgePolicy", "LatencyWindow", "hedge_delay"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HedgePolicy:
    """When a call's run is hedged: after the ``percentile`` of the key's recent run latencies
    (``HedgePolicy(percentile=95.0)``) or after a fixed ``delay`` (``HedgePolicy(delay=0.05)``),
    with at most ``max_extra`` extra runs per call and ``budget`` x the calls in all."""

    #: Hedge after this percentile (0-100, exclusive) of the key's recent run latencies.
    percentile: float = 95.0
    #: Fixed seconds after which to hedge; given, it replaces the percentile.
    delay: float | None = None
    #: Extra runs per call at most.
    max_extra: int = 1
    #: Extra runs allowed as a share of the calls over ``window`` (0.05: 5 % more runs).
    budget: float = 0.05
    #: Seconds over which the budget counts calls and extra runs.
    window: float = 10.0
    #: Runs the key must have timed (in its latency window) before a percentile delay applies;
    #: until then calls are not hedged. A fixed ``delay`` needs none.
    min_samples: int = 20
    #: A percentile delay is never shorter than this many seconds.
    min_delay: float = 0.001

    def __post_init__(self) -> None:
        p = self.percentile
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p < 100:
            msg = f"percentile must be a finite number > 0 and < 100, got {show(self.percentile)}"
            raise ValueError(msg)
        if self.delay is not None:
            _check_seconds("delay", self.delay)
        check_int("max_extra", self.max_extra, 1, 10)
        check_number("budget", self.budget, high=1)
        _check_seconds("window", self.window)
        check_int("min_samples", self.min_samples, 1, 1_000_000)
        _check_seconds("min_delay", self.min_delay, allow_zero=True)


class LatencyWindow(Protocol):
    """What hedging reads of a key's recent run latencies (``metrics.RollingLatency``)."""

    def count(self) -> int:
        """Latencies the window holds now."""
        ...

    def percentile(self, p: float) -> float | None:
        """The ``p``th percentile of the window's latencies (seconds); None if it holds none."""
        ...


def hedge_delay(policy: HedgePolicy, latency: LatencyWindow) -> float | None:
    """Seconds after which to start an extra run; None: do not hedge (a percentile delay and
    fewer than ``min_samples`` latencies in the window). A fixed ``delay`` wins; a percentile
    one is never below ``min_delay``."""
    if policy.delay is not None:
        return float(policy.delay)
    if latency.count() < policy.min_samples:
        return None
    seconds = latency.percentile(policy.percentile)
    if seconds is None:
        return None
    return max(float(policy.min_delay), seconds)


class HedgeBudget:
    """One key's hedge budget state: calls and extra runs over a rolling window, like
    ``RetryTokens`` without a floor (injected clock, no threads: its owner serialises access).
    """

    __slots__ = ("_policy", "_window")

    def __init__(self, policy: HedgePolicy, clock: Clock) -> None:
        self._policy = policy
        self._window = TokenWindow(
            policy.window, clock, ratio=policy.budget, per_second=0, every_run=False
        )

    @property
    def policy(self) -> HedgePolicy:
        return self._policy

    def called(self) -> None:
        """A call's first run started: a deposit of ``budget`` extra runs."""
        self._window.deposit()

    def try_hedge(self) -> bool:
        """Count one extra run now if the budget allows it; False (nothing counted) if not."""
        return self._window.withdraw()

    def balance(self) -> float:
        """Extra runs still allowed now: a fraction, ``try_hedge`` grants one while it is >= 1."""
        return self._window.balance()

    def reconfigure(self, policy: HedgePolicy) -> None:
        """Take a new policy. The calls and extra runs counted are kept: with the same
        ``window``, in their buckets; with another, each at its old bucket's start time in the
        new buckets (those older than the new window are dropped). The new share applies at
        once."""
        self._window.reconfigure(policy.window, policy.budget, 0)
        self._policy = policy
