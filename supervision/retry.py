"""Retries under a budget: the policy (attempts, jittered backoff, what may be retried) and the
budget's rolling arithmetic (Finagle's retry budget), pure and clock-injected.

A budget keeps, per bucket of a rolling window, the calls made (first attempts: deposits) and the
retries granted (withdrawals). It has ``BUCKETS`` buckets of ``window / BUCKETS`` seconds: a count
leaves the window when its bucket does, between ``window - window / BUCKETS`` and ``window``
seconds after it was made, as ``RollingCounts`` counts.

A retry is granted only if it fits every window it will count in: for each run of the window's
buckets that ends with the current one, the retries already granted in the run plus this one are
at most ``ratio`` x the calls made in the run plus the floor, ``min_per_second`` x ``window``. So
in any run of at most ``BUCKETS`` consecutive buckets (any ``window`` seconds aligned to a
bucket boundary, and any stretch of up to ``window - window / BUCKETS`` seconds lies in one),
retries <= ``ratio`` x calls + floor, whenever it is read, not only when a retry was granted.
Finagle checks the trailing window only, so calls made earlier can fund a burst of retries
later, which then count in windows that start after those calls and hold few calls of their own
(a lull, then an outage); here such a burst gets the later windows' floor only. The arithmetic
is exact: ``ratio`` and the floor are taken as the decimals they were written as (0.2 is 1/5),
and compared as integers.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

from .checks import check_int, check_number, exception_classes, show
from .checks import check_seconds as _check_seconds
from .clock import Clock
from .errors import CommandError

__all__ = ["BUCKETS", "RetryBudget", "RetryPolicy", "RetryTokens", "TokenWindow"]

#: Buckets of a retry (or hedge) budget's window: its counts expire a tenth of it at a time.
BUCKETS = 10
#: The bucket id of a slot no bucket has used yet (no clock reading gives it).
_UNUSED = -(1 << 62)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RetryBudget:
    """Finagle's retry budget: the retries over any ``window`` seconds (aligned to the budget's
    buckets, ``window / 10`` wide) are at most ``ratio`` x the calls (first attempts) made in
    them plus ``min_per_second`` x ``window``.

    The floor lets a key that makes few calls retry at all; the ratio caps what retries add to
    the load on a failing dependency (0.2: at most 20 % more runs, plus the floor).
    """

    #: Retries allowed per call made in the window (0: only the floor).
    ratio: float = 0.2
    #: Retries allowed per second of the window whatever the calls (a floor: ``min_per_second``
    #: x ``window`` retries in each window, all at once if need be).
    min_per_second: float = 10.0
    #: Seconds the budget looks back: calls and retries leave it after this long.
    window: float = 10.0

    def __post_init__(self) -> None:
        check_number("ratio", self.ratio, allow_low=True, high=1_000)
        check_number("min_per_second", self.min_per_second, allow_low=True, high=1e6)
        _check_seconds("window", self.window)

    @property
    def floor(self) -> float:
        """Retries each window allows whatever the calls: ``min_per_second`` x ``window``."""
        return float(_decimal(self.min_per_second) * _decimal(self.window))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How a call's failed runs are retried: how many runs in all, the jittered backoff between
    them, which errors are worth another run, and the budget every retry draws on.

    Never retried whatever ``retry_on`` says: a ``BadRequest`` and every other ``CommandError``
    (a short-circuit, a rejection, our own timeout).
    """

    #: Runs in all, the first included (1: never retry).
    attempts: int = 3
    #: Seconds before the first retry, before jitter.
    backoff: float = 0.025
    #: Cap on the grown delay (before jitter), seconds.
    max_backoff: float = 1.0
    #: Growth of the delay per retry: retry ``n`` waits ``backoff * multiplier ** (n - 1)``.
    multiplier: float = 2.0
    #: Share of each delay drawn at random: ``delay * (1 - jitter * u)``, ``u`` uniform in
    #: [0, 1). 1.0 is "full jitter" (a delay anywhere up to the grown one), 0 none.
    jitter: float = 1.0
    #: Exceptions worth another run (subclasses match too). A list, set or a single class is
    #: accepted and stored as a tuple.
    retry_on: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    #: The key's retry budget; None: no budget, every retryable failure is retried (dangerous:
    #: a failing dependency then takes up to ``attempts`` times its load).
    budget: RetryBudget | None = dataclasses.field(default_factory=RetryBudget)

    def __post_init__(self) -> None:
        check_int("attempts", self.attempts, 1, 100)
        _check_seconds("backoff", self.backoff, allow_zero=True)
        _check_seconds("max_backoff", self.max_backoff, allow_zero=True)
        if self.max_backoff < self.backoff:
            msg = (
                f"max_backoff must be >= backoff ({self.backoff!r}) and <= 86400,"
                f" got {self.max_backoff!r}"
            )
            raise ValueError(msg)
        check_number("multiplier", self.multiplier, low=1, allow_low=True, high=100)
        check_number("jitter", self.jitter, allow_low=True, high=1)
        object.__setattr__(self, "retry_on", exception_classes("retry_on", self.retry_on))
        if self.budget is not None and not isinstance(self.budget, RetryBudget):
            msg = f"budget must be a RetryBudget or None, got {show(self.budget)}"
            raise ValueError(msg)

    def delay(self, retry: int, u: float) -> float:
        """Seconds to wait before retry number ``retry`` (1 = the first retry), ``u`` drawn
        uniformly from [0, 1): ``min(max_backoff, backoff * multiplier ** (retry - 1))`` times
        ``1 - jitter * u``."""
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 1:
            msg = f"retry must be an integer >= 1, got {show(retry)}"
            raise ValueError(msg)
        if isinstance(u, bool) or not isinstance(u, int | float) or not 0 <= u <= 1:
            msg = f"u must be a number in [0, 1), got {show(u)}"
            raise ValueError(msg)
        try:
            grown = self.backoff * self.multiplier ** (retry - 1)
        except OverflowError:
            grown = math.inf if self.backoff else 0.0
        return min(self.max_backoff, grown) * (1.0 - self.jitter * u)

    def retries(self, error: BaseException) -> bool:
        """Whether ``error`` may be retried: an instance of ``retry_on`` and never a
        ``BadRequest`` nor any other ``CommandError`` (short-circuit, rejection, timeout of
        our own). Whether the key ignores it (``CommandConfig.ignore``) is its caller's to
        check."""
        return isinstance(error, self.retry_on) and not isinstance(error, CommandError)


def _decimal(value: float) -> Fraction:
    """``value`` as the decimal it reads as (``0.2`` is 1/5, not the float nearest it)."""
    return Fraction(repr(float(value)))


class TokenWindow:
    """Calls (deposits) and extra runs (withdrawals) per bucket over a rolling window of
    ``BUCKETS`` buckets: the bookkeeping of a retry or a hedge budget.

    An extra run is allowed when the runs counted plus this one are at most ``ratio`` x the
    calls + ``per_second`` x ``window`` over every run of buckets ending with the current one
    (``every_run``: the retry budget), or over the whole window only (Finagle's check: the hedge
    budget). The ratio and the floor are read as decimals and compared as integers: exact.
    """

    __slots__ = ("_a", "_b", "_calls", "_clock", "_d", "_every_run", "_ids", "_runs", "_width")

    def __init__(
        self, window: float, clock: Clock, *, ratio: float, per_second: float, every_run: bool
    ) -> None:
        self._clock = clock
        self._every_run = every_run
        self._width = window / BUCKETS
        self._ids = [_UNUSED] * BUCKETS
        self._calls = [0] * BUCKETS
        self._runs = [0] * BUCKETS
        self._a = self._b = self._d = 1
        self._rates(window, ratio, per_second)

    def _rates(self, window: float, ratio: float, per_second: float) -> None:
        """Keep ``ratio`` as a / d and the floor as b / d, over one denominator."""
        r = _decimal(ratio)
        floor = _decimal(per_second) * _decimal(window)
        d = math.lcm(r.denominator, floor.denominator)
        self._a = r.numerator * (d // r.denominator)
        self._b = floor.numerator * (d // floor.denominator)
        self._d = d

    @property
    def width(self) -> float:
        """Seconds per bucket."""
        return self._width

    def _slot(self, bucket: int) -> int:
        slot = bucket % BUCKETS
        if self._ids[slot] != bucket:
            self._ids[slot] = bucket
            self._calls[slot] = 0
            self._runs[slot] = 0
        return slot

    def deposit(self) -> None:
        self._calls[self._slot(int(self._clock() // self._width))] += 1

    def _margin(self, bucket: int) -> int:
        """``calls * a + b - runs * d`` at its least over the runs of buckets ending with
        ``bucket`` (or over the whole window only)."""
        ids, calls, runs, a, d = self._ids, self._calls, self._runs, self._a, self._d
        total_calls = total_runs = 0
        least: int | None = None
        for back in range(BUCKETS):
            slot = (bucket - back) % BUCKETS
            if ids[slot] == bucket - back:
                total_calls += calls[slot]
                total_runs += runs[slot]
            if self._every_run:
                margin = total_calls * a - total_runs * d
                if least is None or margin < least:
                    least = margin
        if least is None:
            least = total_calls * a - total_runs * d
        return least + self._b

    def withdraw(self) -> bool:
        """Count one extra run now if the margin allows it; False (nothing counted) if not."""
        bucket = int(self._clock() // self._width)
        if self._margin(bucket) < self._d:
            return False
        self._runs[self._slot(bucket)] += 1
        return True

    def balance(self) -> float:
        """Extra runs still allowed now (a fraction: one is granted while it is >= 1)."""
        return max(0.0, self._margin(int(self._clock() // self._width)) / self._d)

    def reconfigure(self, window: float, ratio: float, per_second: float) -> None:
        """New rates, applied at once. The counts are kept: with the same ``window``, in their
        buckets; with another, each at its old bucket's start time in the new buckets (those
        older than the new window are dropped)."""
        width = window / BUCKETS
        if width != self._width:
            now = self._clock()
            old = list(zip(self._ids, self._calls, self._runs, strict=True))
            old_width, self._width = self._width, width
            old_current = int(now // old_width)
            self._ids = [_UNUSED] * BUCKETS
            self._calls = [0] * BUCKETS
            self._runs = [0] * BUCKETS
            current = int(now // width)
            for bucket, calls, runs in old:
                if bucket <= old_current - BUCKETS:  # unused, or already out of the window
                    continue
                target = min(int(bucket * old_width // width), current)
                if target > current - BUCKETS:
                    slot = self._slot(target)
                    self._calls[slot] += calls
                    self._runs[slot] += runs
        self._rates(window, ratio, per_second)


class RetryTokens:
    """One key's retry budget state: calls and retries over a rolling window (``BUCKETS``
    buckets, injected clock, no threads: its owner serialises access).

    A retry is granted only if, for every run of buckets ending now, the retries granted in it
    plus this one are at most ``ratio`` x its calls + ``floor`` (see the module's docstring).
    """

    __slots__ = ("_budget", "_window")

    def __init__(self, budget: RetryBudget, clock: Clock) -> None:
        self._budget = budget
        self._window = TokenWindow(
            budget.window,
            clock,
            ratio=budget.ratio,
            per_second=budget.min_per_second,
            every_run=True,
        )

    @property
    def budget(self) -> RetryBudget:
        return self._budget

    def called(self) -> None:
        """A call's first attempt ran: a deposit of ``ratio`` retries."""
        self._window.deposit()

    def try_retry(self) -> bool:
        """Count one retry now if the budget allows it; False (nothing counted) if not."""
        return self._window.withdraw()

    def balance(self) -> float:
        """Retries still allowed now: a fraction, ``try_retry`` grants one while it is >= 1."""
        return self._window.balance()

    def reconfigure(self, budget: RetryBudget) -> None:
        """Take a new budget. The calls and retries counted are kept: with the same ``window``,
        in their buckets; with another, each at its old bucket's start time in the new buckets
        (those older than the new window are dropped). The new ratio and floor apply at once."""
        self._window.reconfigure(budget.window, budget.ratio, budget.min_per_second)
        self._budget = budget
