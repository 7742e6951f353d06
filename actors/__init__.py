"""hystrix-actors: Hystrix-style fault tolerance as supervised pykka actors.

A registry actor routes each command key to its supervising actor, which owns a pool of worker
actors, a bulkhead, a timeout watchdog and a circuit breaker. Whatever goes wrong, the caller
receives a reply carrying the fallback's value.
"""

from supervision import (
    BadRequest,
    CircuitOpenError,
    CircuitState,
    CommandConfig,
    CommandError,
    CommandTimeoutError,
    EventType,
    FallbackFailedError,
    Health,
    MaxConcurrencyError,
    UnknownCommandError,
)

from .command import Command
from .messages import Reply, ShutdownReport
from .pipeline import FanOut, Pipeline, PipelineResult, Stage, StageTrace
from .registry import CommandRegistry

__all__ = [
    "BadRequest",
    "CircuitOpenError",
    "CircuitState",
    "Command",
    "CommandConfig",
    "CommandError",
    "CommandRegistry",
    "CommandTimeoutError",
    "EventType",
    "FanOut",
    "FallbackFailedError",
    "Health",
    "MaxConcurrencyError",
    "Pipeline",
    "PipelineResult",
    "Reply",
    "ShutdownReport",
    "Stage",
    "StageTrace",
    "UnknownCommandError",
]
