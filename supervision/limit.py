"""Adaptive concurrency limits: the bulkhead's size follows measured latency and drops.

The algorithms are Netflix's concurrency-limits (https://github.com/Netflix/concurrency-limits:
``AIMDLimit``, ``VegasLimit``, ``Gradient2Limit``), written anew from their published update
rules; where ours differ, the docstrings say how and why. Each answered call is one sample: how
long it ran, how many calls were in flight when it was admitted, and whether it was a drop (it
timed out, or the dependency rejected it). The limit moves as TCP's congestion window does: up
while the dependency keeps pace, down when latency says calls queue inside it, or on drops.

Pure: no threads, no clock. A :class:`Limiter` holds one key's state and is not thread-safe
(its owner, the key's gate, serialises access); :class:`AdaptiveLimit` is its frozen
configuration and makes a fresh one with :meth:`AdaptiveLimit.limiter`.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import math
import random
from typing import Any, ClassVar

from .checks import check_int, check_number, check_seconds, show

__all__ = [
    "MAX_LIMIT",
    "MIN_RTT",
    "MOVED",
    "QUICK_PROBE",
    "WINDOW",
    "AdaptiveLimit",
    "AimdLimiter",
    "GradientLimiter",
    "LimitAlgorithm",
    "Limiter",
    "VegasLimiter",
    "log10_step",
]

#: The highest limit (and ``max``) accepted: the bulkhead's own bound.
MAX_LIMIT = 10_000

#: The fewest samples a window (and a probe) of gradient and vegas reads.
WINDOW = 10

#: A probe that moves the baseline by more than this factor (either way) is followed by
#: another after ``QUICK_PROBE`` windows instead of the usual interval.
MOVED = 1.25
QUICK_PROBE = 4

#: gradient and vegas read an rtt below this many seconds as this (they divide by it).
MIN_RTT = 1e-6


class LimitAlgorithm(enum.StrEnum):
    """How a :class:`Limiter` moves the limit (concurrency-limits' class in brackets)."""

    #: Latency gradient (``Gradient2Limit``): shrink in proportion when latency rises above
    #: ``rtt_tolerance`` times the baseline, grow by ``queue_size`` while it does not.
    GRADIENT = "gradient"
    #: TCP Vegas (``VegasLimit``): estimate the calls queued inside the dependency as
    #: ``limit * (1 - baseline / rtt)`` and keep them between ``alpha`` and ``beta``.
    VEGAS = "vegas"
    #: Additive increase, multiplicative decrease (``AIMDLimit``): +1 per call while the limit
    #: is in use, ``* backoff_ratio`` per drop. It sees drops, not latency.
    AIMD = "aimd"


@dataclasses.dataclass(frozen=True, slots=True)
class AdaptiveLimit:
    """How a key's bulkhead limit adapts: ``AdaptiveLimit("gradient", min=1, max=200)``.

    ``algorithm`` may be given by position, as a :class:`LimitAlgorithm` or its string value;
    the other fields are keyword-only. A knob that belongs to other algorithms must keep its
    default (``AdaptiveLimit("aimd", rtt_tolerance=2.0)`` is a ``ValueError``: it would be
    ignored). Each invalid value raises ``ValueError`` naming the field, the allowed range and
    the value received.
    """

    algorithm: LimitAlgorithm = LimitAlgorithm.GRADIENT
    _: dataclasses.KW_ONLY
    #: The lowest limit. concurrency-limits' Gradient2 (and later AIMD) default to 20, above
    #: Hystrix's whole default bulkhead (10): a dependency that takes one call at a time must
    #: be allowed to get one.
    min: int = 1
    #: The highest limit (Gradient2's default; Vegas's is 1,000). A thread-isolated key runs a
    #: worker actor, a thread, per call in flight.
    max: int = 200
    #: The limit a fresh limiter starts at, clamped into [min, max] when the limiter is made
    #: (``AdaptiveLimit(min=20)`` starts at 20). Hystrix's default bulkhead size, where
    #: concurrency-limits starts Vegas and Gradient2 at 20.
    initial: int = 10
    #: How far one update moves the limit toward its new estimate, in (0, 1]. None: the
    #: algorithm's default (gradient 0.2, vegas 1.0, as in concurrency-limits).
    smoothing: float | None = None
    #: gradient: latency up to this multiple of the baseline does not count as queueing.
    rtt_tolerance: float = 1.5
    #: gradient: calls the limit grows by (before smoothing) while latency is within tolerance.
    queue_size: int = 4
    #: vegas: grow while fewer than ``alpha * log10(limit)`` calls queue in the dependency.
    alpha: int = 3
    #: vegas: shrink while more than ``beta * log10(limit)`` calls queue in the dependency.
    beta: int = 6
    #: gradient and vegas: re-measure the baseline about every ``probe_multiplier`` windows
    #: (times a jitter drawn from [0.5, 1), as Vegas's probe does).
    probe_multiplier: int = 30
    #: aimd: the limit is multiplied by this on a drop; in [0.5, 1).
    backoff_ratio: float = 0.9
    #: aimd: a call that ran longer than this many seconds counts as a drop. None: only the
    #: samples marked dropped. (concurrency-limits' 5 s would never fire behind Hystrix's 1 s
    #: timeout: a call that slow has already timed out, which is a drop.)
    timeout: float | None = None

    #: Which algorithms read each knob; the others require its default.
    KNOBS: ClassVar[dict[str, frozenset[LimitAlgorithm]]] = {
        "smoothing": frozenset({LimitAlgorithm.GRADIENT, LimitAlgorithm.VEGAS}),
        "rtt_tolerance": frozenset({LimitAlgorithm.GRADIENT}),
        "queue_size": frozenset({LimitAlgorithm.GRADIENT}),
        "alpha": frozenset({LimitAlgorithm.VEGAS}),
        "beta": frozenset({LimitAlgorithm.VEGAS}),
        "probe_multiplier": frozenset({LimitAlgorithm.GRADIENT, LimitAlgorithm.VEGAS}),
        "backoff_ratio": frozenset({LimitAlgorithm.AIMD}),
        "timeout": frozenset({LimitAlgorithm.AIMD}),
    }

    def __post_init__(self) -> None:
        if not isinstance(self.algorithm, LimitAlgorithm):
            try:
                object.__setattr__(self, "algorithm", LimitAlgorithm(self.algorithm))
            except Exception:  # not an algorithm (even one whose __repr__ or __eq__ raises)
                allowed = ", ".join(repr(a.value) for a in LimitAlgorithm)
                msg = f"algorithm must be one of {allowed}, got {show(self.algorithm)}"
                raise ValueError(msg) from None
        check_int("min", self.min, 1, MAX_LIMIT)
        check_int("max", self.max, self.min, MAX_LIMIT)
        check_int("initial", self.initial, 1, MAX_LIMIT)
        if self.smoothing is not None:
            check_number("smoothing", self.smoothing, high=1.0)
        check_number("rtt_tolerance", self.rtt_tolerance, low=1.0, allow_low=True, high=100.0)
        check_int("queue_size", self.queue_size, 1, MAX_LIMIT)
        check_int("alpha", self.alpha, 1, 1_000)
        check_int("beta", self.beta, self.alpha, 1_000)
        check_int("probe_multiplier", self.probe_multiplier, 1, 1_000_000)
        ratio = self.backoff_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0.5 <= ratio < 1:
            msg = f"backoff_ratio must be a number >= 0.5 and < 1, got {show(ratio)}"
            raise ValueError(msg)
        if self.timeout is not None:
            check_seconds("timeout", self.timeout)
        for name, users in self.KNOBS.items():
            value = getattr(self, name)
            if self.algorithm not in users and value != _DEFAULTS[name]:
                uses = " and ".join(sorted(users))
                msg = (
                    f"{name} is read by {uses} only, not {self.algorithm.value!r}:"
                    f" got {name}={show(value)}"
                )
                raise ValueError(msg)

    @property
    def start(self) -> int:
        """The limit a fresh limiter starts at: ``initial`` clamped into [min, max]."""
        return max(self.min, min(self.max, self.initial))

    def limiter(self, *, rng: random.Random | None = None) -> Limiter:
        """A fresh limiter: one key's mutable state. ``rng`` draws the probes' jitter
        (default: a new ``random.Random()``); a seeded one makes a run repeatable."""
        return _LIMITERS[self.algorithm](self, rng if rng is not None else random.Random())

    def replace(self, **changes: Any) -> AdaptiveLimit:
        """A copy with some fields changed (validated like the original)."""
        return dataclasses.replace(self, **changes)


_DEFAULTS: dict[str, object] = {
    f.name: f.default for f in dataclasses.fields(AdaptiveLimit) if f.name in AdaptiveLimit.KNOBS
}


class Limiter(abc.ABC):
    """One key's adaptive limit. Not thread-safe: its owner serialises access.

    ``limit``: the calls allowed in flight now, an int within [config.min, config.max].
    """

    __slots__ = ("config", "limit")

    #: The algorithm this class implements.
    algorithm: ClassVar[LimitAlgorithm]

    def __init__(self, config: AdaptiveLimit, rng: random.Random) -> None:
        self.config = config
        self.limit = config.start

    @abc.abstractmethod
    def sample(self, rtt: float, inflight: int, dropped: bool) -> int:
        """Record one answered call and return the new limit.

        ``rtt``: seconds the call ran (a timed-out call: until its deadline). ``inflight``: the
        calls in flight when it was admitted, itself included (concurrency-limits' count).
        ``dropped``: it timed out or the dependency rejected it (concurrency-limits' drop).
        A negative or non-finite ``rtt`` or a negative ``inflight`` is a ``ValueError``.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(limit={self.limit})"

    @staticmethod
    def _check(rtt: float, inflight: int) -> None:
        if not 0.0 <= rtt < math.inf:
            msg = f"rtt must be a finite number of seconds >= 0, got {show(rtt)}"
            raise ValueError(msg)
        if inflight < 0:
            msg = f"inflight must be an integer >= 0, got {show(inflight)}"
            raise ValueError(msg)

    def _clamp(self, estimate: float) -> float:
        return max(float(self.config.min), min(float(self.config.max), estimate))


class AimdLimiter(Limiter):
    """concurrency-limits' ``AIMDLimit``, per sample: on a drop (or an ``rtt`` above
    ``timeout``) the limit becomes ``int(limit * backoff_ratio)``; else, if at least half the
    limit was in use (``inflight * 2 >= limit``), it grows by 1; else (app-limited: the limit is
    not what holds the caller back) it stays. Clamped into [min, max].

    One difference: a drop from a call admitted with more calls in flight than the limit now
    allows (``inflight > limit``) does not cut again. It was admitted under a limit already
    cut, so its news has been acted on (TCP cuts its window once per round trip for the same
    reason; Camunda Zeebe's ``StabilizingAIMDLimit`` has this rule). Without it, the round of
    calls in flight when a dependency slows down cuts the limit once each, down to ``min``.
    """

    __slots__ = ()
    algorithm = LimitAlgorithm.AIMD

    def sample(self, rtt: float, inflight: int, dropped: bool) -> int:
        self._check(rtt, inflight)
        config, limit = self.config, self.limit
        if dropped or (config.timeout is not None and rtt > config.timeout):
            if inflight <= limit:
                limit = int(limit * config.backoff_ratio)
        elif inflight * 2 >= limit:
            limit += 1
        self.limit = max(config.min, min(config.max, limit))
        return self.limit


def log10_step(limit: float) -> int:
    """Vegas's step: ``max(1, int(log10(limit)))``. concurrency-limits' ``Log10RootFunction``
    tabulates this below 1,000 and returns a square root above (where its own comment says
    log10); we keep the log throughout."""
    return max(1, int(math.log10(limit))) if limit >= 1 else 1


class _Windowed(Limiter):
    """Gradient and Vegas: one update per window of samples, against a probed baseline.

    Windows: Gradient2 and Vegas are meant to update once per sampling window
    (concurrency-limits' ``WindowedLimit``). A sample reports on a call admitted a round trip
    ago, so updating on every sample lets a whole round of calls cut (or grow) the limit for the
    same news, and the limit swings. A window here closes when it holds ``max(limit, WINDOW)``
    samples, about one round (``WindowedLimit`` closes its windows by time, 1 s by default,
    which needs a clock), or at once on a drop; the update reads the window's mean rtt, its
    highest ``inflight`` and whether it held a drop. A sample admitted with more calls in flight
    than the limit now allows is stale (admitted under a limit since cut) and left out.

    Probes: a baseline read from calls made under load is itself loaded. Vegas's probe takes
    the next sample, however loaded, as its new no-load rtt, and Gradient2 averages every sample
    into its long rtt; under sustained overload both let the baseline follow the queue upward
    and the limit climbs to ``max`` (concurrency-limits issue #137, PR #134). So, like BBR's
    ProbeRTT, a probe lowers the limit to half (at least ``min``) and takes the mean rtt of the
    next ``max(level, WINDOW)`` calls admitted with at most ``level`` calls in flight, then
    restores the limit. The probe's calls still running then are added as they answer (the slow
    ones answer last: leaving them out would bias the baseline low). A drop cuts the limit at
    once, during a probe too. The limiter starts with a probe, lowering the limit only once a
    call runs with more in flight than the probe allows. The next probe comes after
    ``probe_multiplier * U[0.5, 1)`` windows, or sooner: after ``QUICK_PROBE`` windows if this
    one moved the baseline by more than ``MOVED`` either way, and at once when the limit falls
    to half what it was after the last probe or a window runs in under half the baseline (the
    baseline may be stale). Probes cost a few per cent of the calls a saturated dependency
    could have served.
    """

    __slots__ = (
        "_after_probe",
        "_countdown",
        "_dropped",
        "_estimate",
        "_peak",
        "_probe_n",
        "_probe_total",
        "_rng",
        "_samples",
        "_tail",
        "_total",
        "baseline",
        "level",
        "probing",
    )

    def __init__(self, config: AdaptiveLimit, rng: random.Random) -> None:
        super().__init__(config, rng)
        self._rng = rng
        self._estimate = float(self.limit)
        #: The no-load latency the algorithm compares against (None until first measured).
        self.baseline: float | None = None
        #: True while a probe measures the baseline; ``level`` is its limit.
        self.probing = True
        self.level = max(config.min, self.limit // 2)
        self._probe_n = 0
        self._probe_total = 0.0
        self._tail = 0
        self._countdown = 0
        self._after_probe = self.limit
        self._samples = 0
        self._total = 0.0
        self._peak = 0
        self._dropped = False

    def sample(self, rtt: float, inflight: int, dropped: bool) -> int:
        self._check(rtt, inflight)
        rtt = max(rtt, MIN_RTT)
        if self.probing:
            if dropped and inflight <= int(self._estimate):  # a drop cuts at once, even now
                self._estimate = self._drop()
                self.limit = min(self.limit, int(self._estimate))
            if inflight <= self.level:
                self._probe_n += 1
                self._probe_total += rtt
                if self._probe_n >= max(self.level, WINDOW):
                    self._end_probe()
            else:  # the start's probe: more calls run than the probe allows
                self.limit = min(self.level, int(self._estimate))
            return self.limit
        if self._tail and inflight <= self.level:  # a probe's call, answered after it ended
            self._tail -= 1
            self._probe_n += 1
            self._probe_total += rtt
            self.baseline = self._probe_total / self._probe_n
            return self.limit
        if inflight > self.limit:  # stale
            return self.limit
        self._samples += 1
        self._total += rtt
        self._peak = max(self._peak, inflight)
        self._dropped = self._dropped or dropped
        self._countdown -= 1
        if self._samples < max(self.limit, WINDOW) and not self._dropped:
            return self.limit
        assert self.baseline is not None
        mean = self._total / self._samples
        self._estimate = self._update(self.baseline, mean, self._peak, self._dropped)
        self.limit = int(self._estimate)
        self._tail = 0
        self._clear_window()
        if self._countdown <= 0 or self.limit * 2 <= self._after_probe or mean * 2 < self.baseline:
            self._start_probe()
        return self.limit

    @abc.abstractmethod
    def _update(self, baseline: float, rtt: float, inflight: int, dropped: bool) -> float:
        """The new limit estimate after a window: its mean ``rtt``, its highest ``inflight``,
        whether it held a drop."""

    @abc.abstractmethod
    def _drop(self) -> float:
        """The new limit estimate after a drop (it needs no baseline)."""

    def _clear_window(self) -> None:
        self._samples = 0
        self._total = 0.0
        self._peak = 0
        self._dropped = False

    def _start_probe(self) -> None:
        self.probing = True
        self.level = max(self.config.min, int(self._estimate) // 2)
        self._probe_n = 0
        self._probe_total = 0.0
        self.limit = self.level

    def _end_probe(self) -> None:
        measured = self._probe_total / self._probe_n
        old = self.baseline
        moved = old is None or not old / MOVED <= measured <= old * MOVED
        self.baseline = measured
        self.probing = False
        self._tail = self.level
        self._clear_window()
        self.limit = self._after_probe = int(self._estimate)
        windows = QUICK_PROBE if moved else self.config.probe_multiplier * self._rng.uniform(0.5, 1)
        self._countdown = max(1, math.ceil(windows * max(self.limit, WINDOW)))


class VegasLimiter(_Windowed):
    """concurrency-limits' ``VegasLimit``, once per window. The calls queued inside the
    dependency are estimated as ``queue = ceil(limit * (1 - baseline / rtt))``, with the
    baseline the lowest rtt seen (a window's mean below it becomes the baseline, and the limit
    stays). Then, with ``L = log10_step(limit)``:

    - a drop: ``limit - L``;
    - less than half the limit in use (app-limited): unchanged;
    - ``queue <= L``: ``limit + beta * L`` (no queueing: grow fast);
    - ``queue < alpha * L``: ``limit + L``;
    - ``queue > beta * L``: ``limit - L``;
    - otherwise unchanged;

    clamped into [min, max], then smoothed: ``limit + smoothing * (new - limit)``. The baseline
    comes from probes (see :class:`_Windowed`). Vegas reads the fastest calls: under very noisy
    latency its baseline is low and its limit too; prefer gradient there.
    """

    __slots__ = ("_smoothing",)
    algorithm = LimitAlgorithm.VEGAS

    def __init__(self, config: AdaptiveLimit, rng: random.Random) -> None:
        super().__init__(config, rng)
        self._smoothing = 1.0 if config.smoothing is None else config.smoothing

    def _drop(self) -> float:
        estimate = self._estimate
        new = self._clamp(estimate - log10_step(estimate))
        return estimate + self._smoothing * (new - estimate)

    def _update(self, baseline: float, rtt: float, inflight: int, dropped: bool) -> float:
        estimate, config = self._estimate, self.config
        if dropped:
            return self._drop()
        if rtt < baseline:
            self.baseline = rtt
            return estimate
        if inflight * 2 < estimate:
            return estimate
        step = log10_step(estimate)
        queue = math.ceil(estimate * (1.0 - baseline / rtt))
        if queue <= step:
            new = estimate + config.beta * step
        elif queue < config.alpha * step:
            new = estimate + step
        elif queue > config.beta * step:
            new = estimate - step
        else:
            return estimate
        return estimate + self._smoothing * (self._clamp(new) - estimate)


class GradientLimiter(_Windowed):
    """concurrency-limits' ``Gradient2Limit``, once per window:
    ``gradient = clamp(rtt_tolerance * baseline / rtt, 0.5, 1)``, then

    - less than half the limit in use (app-limited) and no drop: unchanged;
    - ``new = limit * gradient``, plus ``queue_size`` only while ``gradient == 1``;
    - ``limit + smoothing * (new - limit)``, clamped into [min, max].

    Besides windows and probes (see :class:`_Windowed`; Gradient2's baseline, its "long rtt",
    is an exponential average of every sample over 600), two changes from its open PR #134:
    a drop sets the gradient to 0.5 (Gradient2 ignores drops, so a dependency timing out every
    call at the same latency kept its limit, issue #137), and ``queue_size`` is added only while
    latency is within tolerance (always adding it holds the limit up under steady overload).
    """

    __slots__ = ("_smoothing",)
    algorithm = LimitAlgorithm.GRADIENT

    def __init__(self, config: AdaptiveLimit, rng: random.Random) -> None:
        super().__init__(config, rng)
        self._smoothing = 0.2 if config.smoothing is None else config.smoothing

    def _drop(self) -> float:
        return self._step(0.5)

    def _update(self, baseline: float, rtt: float, inflight: int, dropped: bool) -> float:
        if dropped:
            return self._drop()
        if inflight * 2 < self._estimate:
            return self._estimate
        return self._step(max(0.5, min(1.0, self.config.rtt_tolerance * baseline / rtt)))

    def _step(self, gradient: float) -> float:
        estimate, config = self._estimate, self.config
        new = estimate * gradient + (config.queue_size if gradient == 1.0 else 0.0)
        return self._clamp(estimate + self._smoothing * (new - estimate))


_LIMITERS: dict[LimitAlgorithm, type[Limiter]] = {
    LimitAlgorithm.GRADIENT: GradientLimiter,
    LimitAlgorithm.VEGAS: VegasLimiter,
    LimitAlgorithm.AIMD: AimdLimiter,
}
