"""The error hierarchy: one base, a few subclasses named for what happened.

Failures travel as reply messages; they become these exceptions only at the edge where a caller
asked for a plain value. Every error carries the command ``key`` and a stable ``reason`` string
that fallbacks and callers may match on (``error.reason == "max concurrency"``).
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "CircuitOpenError",
    "CommandError",
    "CommandTimeoutError",
    "FallbackFailedError",
    "MaxConcurrencyError",
    "UnknownCommandError",
]


class CommandError(Exception):
    """Base of every error the library raises about a command."""

    default_reason = "error"

    def __init__(
        self, message: str = "", *, key: str | None = None, reason: str | None = None
    ) -> None:
        self.key = key
        self.reason = reason if reason is not None else self.default_reason
        Exception.__init__(self, message or self.reason)


class CircuitOpenError(CommandError):
    """The circuit is open: the call was short-circuited without running."""

    default_reason = "circuit open"


class MaxConcurrencyError(CommandError):
    """The bulkhead was full: the call was rejected without running."""

    default_reason = "max concurrency"


class CommandTimeoutError(CommandError):
    """The call did not finish before its deadline."""

    default_reason = "timeout"


class FallbackFailedError(CommandError):
    """The fallback raised (its exception is ``__cause__``) or was rejected.

    ``run_error`` is the error that made the command fall back in the first place.
    """

    default_reason = "fallback failed"

    def __init__(
        self,
        message: str = "",
        *,
        key: str | None = None,
        reason: str | None = None,
        run_error: BaseException | None = None,
    ) -> None:
        self.run_error = run_error
        super().__init__(message, key=key, reason=reason)


class UnknownCommandError(CommandError, LookupError):
    """No command is registered under the key that was asked for."""

    default_reason = "unknown command"


class BadRequest(CommandError):  # noqa: N818 (the issue's public name)
    """Raised by ``run`` when the payload itself is wrong.

    It reaches the caller as is: no fallback, not counted as a failure, and it neither opens nor
    closes the circuit (Hystrix's ``HystrixBadRequestException``).
    """

    default_reason = "bad request"
