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

from .command import Command  # noqa: E402
from .decorator import AsyncCommandFunction, CommandFunction  # noqa: E402
from .messages import Reply, ShutdownReport  # noqa: E402
from .pipeline import FanOut, Pipeline, PipelineResult, Stage, StageTrace  # noqa: E402
from .registry import CommandRegistry  # noqa: E402

#: ``@command(key, config=..., fallback=...)``: a function made into a command of the default
#: registry (``registry.command`` for an isolated one).
command = CommandRegistry.command

try:
    __version__ = importlib.metadata.version("hystrix-actors")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
    __version__ = "0+unknown"

__all__ = [
    "AsyncCommandFunction",
    "BadRequest",
    "CircuitOpenError",
    "CircuitState",
    "Command",
    "CommandConfig",
    "CommandError",
    "CommandFunction",
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
    "__version__",
    "command",
]
