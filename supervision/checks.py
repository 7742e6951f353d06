"""Validation helpers: every check names the field, the allowed range and the value received."""

from __future__ import annotations

import math

__all__ = [
    "MAX_SECONDS",
    "as_float",
    "check_int",
    "check_number",
    "check_seconds",
    "exception_classes",
    "show",
]

#: The longest duration a configuration accepts: one day. Longer ones are mistakes (a timeout
#: in milliseconds given as seconds) and would overflow the waits of the threads that keep time.
MAX_SECONDS = 86_400.0


def show(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters; a placeholder if ``__repr__`` raises."""
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} object with a broken __repr__>"
    return text if len(text) <= limit else text[:limit] + "..."


def as_float(value: float) -> float:
    """``float(value)``, with inf for an int too large for a float."""
    try:
        return float(value)
    except OverflowError:  # an int too large for a float
        return math.inf


def check_number(
    name: str,
    value: object,
    *,
    low: float = 0.0,
    allow_low: bool = False,
    high: float | None = None,
    unit: str = "",
    suffix: str = "",
) -> None:
    """A finite int or float (not a bool) above ``low`` (or at it, with ``allow_low``), and at
    most ``high`` (if given)."""
    bound = f">= {low:g}" if allow_low else f"> {low:g}"
    if high is not None:
        bound = f"{bound} and <= {high:g}"
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(as_float(value))
        or not (value >= low if allow_low else value > low)
        or (high is not None and value > high)
    ):
        kind = f"a finite number of {unit}" if unit else "a finite number"
        msg = f"{name} must be {kind} {bound}{suffix}, got {show(value)}"
        raise ValueError(msg)


def check_seconds(name: str, value: object, *, allow_zero: bool = False) -> None:
    """A duration: a finite number of seconds > 0 (or >= 0) and at most ``MAX_SECONDS``."""
    check_number(name, value, allow_low=allow_zero, high=MAX_SECONDS, unit="seconds")


def check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    """An int (not a bool) within ``low`` and ``high`` (no upper bound if None)."""
    allowed = f">= {low}" if high is None else f"between {low} and {high}"
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        msg = f"{name} must be an integer {allowed}, got {show(value)}"
        raise ValueError(msg)


def exception_classes(name: str, value: object) -> tuple[type[BaseException], ...]:
    """A tuple of exception classes, from a tuple, list, set or a single class."""
    items: object = (value,) if isinstance(value, type) else value
    if isinstance(items, tuple | list | set | frozenset):
        classes = tuple(items)
        if all(isinstance(c, type) and issubclass(c, BaseException) for c in classes):
            return classes
    msg = f"{name} must be a tuple of exception classes, got {show(value)}"
    raise ValueError(msg)
