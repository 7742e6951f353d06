"""A command's configuration: frozen, validated, Hystrix's defaults in float seconds."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from .checks import check_int, exception_classes, show
from .checks import check_seconds as _check_seconds
from .fleet_policy import FleetPolicy
from .hedge import HedgePolicy
from .limit import AdaptiveLimit
from .policy import SupervisionPolicy
from .retry import RetryPolicy

__all__ = ["CommandConfig", "Isolation", "PoolConfig"]

#: The longest pool name accepted.
MAX_POOL_NAME = 200


class Isolation(enum.StrEnum):
    """Where ``run`` executes (Hystrix's ``execution.isolation.strategy``)."""

    #: On one of the key's worker actors; the caller waits for its reply.
    THREAD = "thread"
    #: On the caller's own thread (or, for ``async def run`` awaited with ``ask_async``, in the
    #: caller's task); the bulkhead is a counter.
    SEMAPHORE = "semaphore"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CommandConfig:
    """How one command key is protected. Defaults are Hystrix's.

    Durations are float seconds. An invalid value raises ``ValueError`` naming the field, the
    allowed range and the value received.
    """

    #: Seconds a call may take, from admission to answer, before it is answered TIMEOUT.
    timeout: float = 1.0
    #: Bulkhead: calls allowed to run at once (one worker actor each, started lazily).
    max_concurrent_requests: int = 10
    #: Calls the rolling window must hold before the circuit may trip.
    request_volume_threshold: int = 20
    #: Seconds the circuit stays open before it admits half-open probes.
    sleep_window: float = 5.0
    #: Error percentage (0-100) at or above which the circuit trips.
    error_percent_threshold: float = 50
    #: Admitted calls that may wait for a free worker beyond ``max_concurrent_requests``.
    queue_size: int = 0
    #: Seconds covered by the rolling health window.
    rolling_window: float = 10.0
    #: Buckets the rolling window is divided into.
    rolling_buckets: int = 10
    #: Probes admitted while half-open; all must succeed to close the circuit.
    half_open_probes: int = 1
    #: Fallbacks allowed to run at once for this key; past it, FALLBACK_REJECTION.
    fallback_max_concurrent: int = 10
    #: Reject every call as if the circuit were open (wins over ``force_closed``).
    force_open: bool = False
    #: Admit every call whatever the error rate (statistics are still kept).
    force_closed: bool = False
    #: How the key's workers and supervisor are restarted, and when stuck workers are abandoned.
    supervision: SupervisionPolicy = dataclasses.field(default_factory=SupervisionPolicy)
    #: Exception classes that ``run`` may raise to the caller as they are, like ``BadRequest``:
    #: no fallback, counted neither for nor against the circuit (resilience4j's
    #: ``ignoreExceptions``). Subclasses match too. A list or a single class is accepted and
    #: stored as a tuple.
    ignore: tuple[type[BaseException], ...] = ()
    #: How the key takes part in a fleet-wide circuit when the registry has a fleet
    #: (``CommandRegistry(fleet=RedisFleet(...))``): shared (the default), quorum or off.
    #: Without a fleet it changes nothing.
    fleet: FleetPolicy = dataclasses.field(default_factory=FleetPolicy)
    #: Where ``run`` executes: "thread" (a worker actor) or "semaphore" (the caller's thread).
    isolation: Isolation = Isolation.THREAD
    #: The worker pool the key's calls run on (Hystrix's ``threadPoolKey``): None, the key's
    #: own pool; a name, the pool every key naming it shares (workers and bulkhead, sized by
    #: ``CommandRegistry.configure_pool``). ``max_concurrent_requests`` and ``queue_size``
    #: then cap this key's own share of the pool. Thread isolation only.
    pool: str | None = None
    #: Retries of a failed run within the call's one deadline, under a retry budget
    #: (``RetryPolicy``); None: never retried.
    retry: RetryPolicy | None = None
    #: Hedged requests: one more run when the first is slow (``HedgePolicy``); None: never.
    #: Thread isolation only.
    hedge: HedgePolicy | None = None
    #: An adaptive concurrency limit (``AdaptiveLimit``): the bulkhead's limit follows measured
    #: run latency and drops, between its ``min`` and ``max``, instead of
    #: ``max_concurrent_requests``; None: the fixed ``max_concurrent_requests``.
    limit: AdaptiveLimit | None = None

    def __post_init__(self) -> None:
        _check_seconds("timeout", self.timeout)
        check_int("max_concurrent_requests", self.max_concurrent_requests, 1, 10_000)
        check_int("request_volume_threshold", self.request_volume_threshold, 0)
        _check_seconds("sleep_window", self.sleep_window, allow_zero=True)
        ept = self.error_percent_threshold
        if isinstance(ept, bool) or not isinstance(ept, int | float) or not 0 <= ept <= 100:
            msg = f"error_percent_threshold must be a number between 0 and 100, got {show(ept)}"
            raise ValueError(msg)
        check_int("queue_size", self.queue_size, 0, 100_000)
        _check_seconds("rolling_window", self.rolling_window)
        check_int("rolling_buckets", self.rolling_buckets, 1, 1_000)
        check_int("half_open_probes", self.half_open_probes, 1, 10_000)
        check_int("fallback_max_concurrent", self.fallback_max_concurrent, 1, 10_000)
        for name in ("force_open", "force_closed"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                msg = f"{name} must be True or False, got {show(value)}"
                raise ValueError(msg)
        if not isinstance(self.supervision, SupervisionPolicy):
            msg = f"supervision must be a SupervisionPolicy, got {show(self.supervision)}"
            raise ValueError(msg)
        object.__setattr__(self, "ignore", exception_classes("ignore", self.ignore))
        if not isinstance(self.fleet, FleetPolicy):
            msg = f"fleet must be a FleetPolicy, got {show(self.fleet)}"
            raise ValueError(msg)
        if not isinstance(self.isolation, Isolation):
            try:
                object.__setattr__(self, "isolation", Isolation(self.isolation))
            except Exception:  # not an isolation (even one whose __repr__ or __eq__ raises)
                allowed = ", ".join(repr(i.value) for i in Isolation)
                msg = f"isolation must be one of {allowed}, got {show(self.isolation)}"
                raise ValueError(msg) from None
        for name, kind in (
            ("retry", RetryPolicy),
            ("hedge", HedgePolicy),
            ("limit", AdaptiveLimit),
        ):
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                article = "an" if kind.__name__[0] in "AEIOU" else "a"
                msg = f"{name} must be {article} {kind.__name__} or None, got {show(value)}"
                raise ValueError(msg)
        if self.hedge is not None and self.isolation is Isolation.SEMAPHORE:
            msg = (
                "hedge applies to thread isolation only (an extra run needs another worker):"
                " got a HedgePolicy with isolation='semaphore'"
            )
            raise ValueError(msg)
        if self.pool is not None:
            check_pool_name("pool", self.pool)
            if self.isolation is Isolation.SEMAPHORE:
                msg = (
                    f"pool applies to thread isolation only: got pool={self.pool!r} with"
                    " isolation='semaphore'"
                )
                raise ValueError(msg)

    def replace(self, **changes: Any) -> CommandConfig:
        """A copy with some fields changed (validated like the original)."""
        return dataclasses.replace(self, **changes)


def check_pool_name(name: str, value: object) -> str:
    """A pool's name: a non-empty string of at most ``MAX_POOL_NAME`` characters, not only
    blanks."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_POOL_NAME:
        msg = (
            f"{name} must be a non-empty string of at most {MAX_POOL_NAME} characters,"
            f" got {show(value)}"
        )
        raise ValueError(msg)
    return value


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PoolConfig:
    """How a shared worker pool (``CommandConfig(pool=...)``) is sized and supervised; the
    defaults are Hystrix's thread pool defaults (``coreSize`` 10, no queue).

    Keys naming the pool share its workers and its bulkhead: at most
    ``max_concurrent_requests`` of their calls run at once and ``queue_size`` more wait; the
    rest are rejected (THREAD_POOL_REJECTED), whichever key they belong to.
    """

    #: Workers (calls running at once) across every key of the pool.
    max_concurrent_requests: int = 10
    #: Admitted calls of the pool's keys that may wait for a free worker.
    queue_size: int = 0
    #: Seconds covered by the pool's rolling counts (the dashboard's thread pool figures).
    rolling_window: float = 10.0
    #: Buckets the pool's rolling window is divided into.
    rolling_buckets: int = 10
    #: How the pool's workers and supervisor are restarted, when stuck workers are abandoned
    #: (``max_zombies``) and when the idle pool passivates (``passivate_after``). A call's
    #: ``zombie_grace`` is its own key's.
    supervision: SupervisionPolicy = dataclasses.field(default_factory=SupervisionPolicy)

    def __post_init__(self) -> None:
        check_int("max_concurrent_requests", self.max_concurrent_requests, 1, 10_000)
        check_int("queue_size", self.queue_size, 0, 100_000)
        _check_seconds("rolling_window", self.rolling_window)
        check_int("rolling_buckets", self.rolling_buckets, 1, 1_000)
        if not isinstance(self.supervision, SupervisionPolicy):
            msg = f"supervision must be a SupervisionPolicy, got {show(self.supervision)}"
            raise ValueError(msg)

    def replace(self, **changes: Any) -> PoolConfig:
        """A copy with some fields changed (validated like the original)."""
        return dataclasses.replace(self, **changes)
