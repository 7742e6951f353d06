"""hystrix-actors: Hystrix-style fault tolerance as supervised pykka actors.

A registry actor routes each command key to its supervising actor, which owns a pool of worker
actors, a bulkhead, a timeout watchdog and a circuit breaker. Whatever goes wrong, the caller
receives a reply carrying the fallback's value.
"""

import importlib.metadata

from . import import_check

import_check.check_found()  # before anything runs from a 'supervision' that may not be ours
import supervision  # noqa: E402

import_check.check_imported(supervision)

from supervision import (  # noqa: E402
    AdaptiveLimit,
    BadRequest,
    CircuitOpenError,
    CircuitState,
    CommandConfig,
    CommandError,
    CommandTimeoutError,
    EventType,
    FallbackFailedError,
    FaultPlan,
    FleetPolicy,
    FleetView,
    Health,
    HedgePolicy,
    InjectionDisabledError,
    Isolation,
    LimitAlgorithm,
    MaxConcurrencyError,
    PoolConfig,
    RetryBudget,
    RetryPolicy,
    UnknownCommandError,
)

from .collapser import Collapser, CollapserMetrics  # noqa: E402
from .commands import Command  # noqa: E402
from .decorator import AsyncCommandFunction, CommandFunction  # noqa: E402
from .injection import Injection  # noqa: E402
from .messages import Reply, ShutdownReport  # noqa: E402
from .pipeline import FanOut, Pipeline, PipelineResult, Stage, StageTrace  # noqa: E402
from .registry import CommandRegistry  # noqa: E402
from .request_cache import RequestScope  # noqa: E402

command = CommandRegistry.command
"""``@command(key, *, config=None, fallback=None, group=None, cache_key=None)``: a function
``f(payload)`` made into a command registered on the default registry
(``registry.command(...)`` for an isolated one). Calling the decorated function asks and returns
the value, or the fallback's; an ``async def`` function gives an awaitable. See
``CommandRegistry.command``."""

try:
    __version__ = importlib.metadata.version("hystrix-actors")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
    __version__ = "0+unknown"

__all__ = [
    "AdaptiveLimit",
    "AsyncCommandFunction",
    "BadRequest",
    "CircuitOpenError",
    "CircuitState",
    "Collapser",
    "CollapserMetrics",
    "Command",
    "CommandConfig",
    "CommandError",
    "CommandFunction",
    "CommandRegistry",
    "CommandTimeoutError",
    "EventType",
    "FanOut",
    "FallbackFailedError",
    "FaultPlan",
    "FleetPolicy",
    "FleetView",
    "Health",
    "HedgePolicy",
    "Injection",
    "InjectionDisabledError",
    "Isolation",
    "LimitAlgorithm",
    "MaxConcurrencyError",
    "Pipeline",
    "PipelineResult",
    "PoolConfig",
    "RetryBudget",
    "RetryPolicy",
    "Reply",
    "RequestScope",
    "ShutdownReport",
    "Stage",
    "StageTrace",
    "UnknownCommandError",
    "__version__",
    "command",
]
