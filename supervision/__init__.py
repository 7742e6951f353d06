"""The pure core of hystrix-actors: configuration, errors, breaker, windows and clocks.

Nothing here owns a thread or knows about pykka; time comes from an injected clock.
"""

from .breaker import (
    NORMAL,
    TRANSITIONS,
    CircuitBreaker,
    CircuitState,
    IllegalTransitionError,
    Permit,
    Transition,
)
from .bulkhead import Bulkhead
from .clock import Clock, FakeClock, monotonic
from .config import CommandConfig, Isolation, PoolConfig
from .errors import (
    BadRequest,
    CircuitOpenError,
    CommandError,
    CommandTimeoutError,
    FallbackFailedError,
    MaxConcurrencyError,
    UnknownCommandError,
)
from .events import ERROR_EVENTS, FALLBACK_TRIGGERS, HEALTH_EVENTS, EventType
from .fleet import FleetPolicy, FleetState, FleetView
from .health import Health
from .hedge import HedgePolicy
from .injection import FaultPlan, InjectionDisabledError, Injector
from .limit import AdaptiveLimit, LimitAlgorithm, Limiter
from .policy import RestartStrategy, SupervisionPolicy
from .restart import DECISIONS, Child, Decision, Directive, Restarts, backoff_delay, decide
from .retry import RetryBudget, RetryPolicy
from .throttle import Throttle
from .window import RollingCounts

#: Which distribution this package belongs to (``actors`` checks it: another package is also
#: called ``supervision``).
__distribution__ = "hystrix-actors"

__all__ = [
    "DECISIONS",
    "ERROR_EVENTS",
    "FALLBACK_TRIGGERS",
    "HEALTH_EVENTS",
    "NORMAL",
    "TRANSITIONS",
    "AdaptiveLimit",
    "BadRequest",
    "Bulkhead",
    "Child",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "Clock",
    "CommandConfig",
    "CommandError",
    "CommandTimeoutError",
    "Decision",
    "Directive",
    "EventType",
    "FakeClock",
    "FallbackFailedError",
    "FaultPlan",
    "FleetPolicy",
    "FleetState",
    "FleetView",
    "Health",
    "HedgePolicy",
    "Isolation",
    "IllegalTransitionError",
    "InjectionDisabledError",
    "Injector",
    "LimitAlgorithm",
    "Limiter",
    "MaxConcurrencyError",
    "Permit",
    "PoolConfig",
    "RestartStrategy",
    "Restarts",
    "RetryBudget",
    "RetryPolicy",
    "RollingCounts",
    "SupervisionPolicy",
    "Throttle",
    "Transition",
    "UnknownCommandError",
    "backoff_delay",
    "decide",
    "monotonic",
]
