"""Does the installed pybreaker let two threads through one breaker at once? Probed, not assumed."""

from __future__ import annotations

import importlib.metadata
import inspect
import threading

import pybreaker

__all__ = ["describe_pybreaker"]


def _second_call_overlaps(wait: float = 0.2) -> bool:
    """True if a second ``breaker.call`` runs while a first one is still inside the breaker."""
    breaker = pybreaker.CircuitBreaker()
    inside = threading.Event()
    release = threading.Event()
    second_ran = threading.Event()

    def first() -> None:
        inside.set()
        release.wait(5.0)

    def second() -> None:
        second_ran.set()

    one = threading.Thread(target=breaker.call, args=(first,), daemon=True)
    one.start()
    inside.wait(5.0)
    two = threading.Thread(target=breaker.call, args=(second,), daemon=True)
    two.start()
    overlapped = second_ran.wait(wait)
    release.set()
    one.join()
    two.join()
    return overlapped


def _holds_lock_in_call() -> bool:
    try:
        source = inspect.getsource(pybreaker.CircuitBreaker.call)
    except (OSError, TypeError):
        return False
    return "with self._lock" in source


def describe_pybreaker() -> str:
    """One sentence on what the installed pybreaker did with two concurrent calls."""
    version = importlib.metadata.version("pybreaker")
    if _second_call_overlaps():
        return (
            f"pybreaker {version}: while one call was inside `CircuitBreaker.call`, a second"
            " call from another thread ran at once (probed in this run): it does not serialise."
        )
    why = (
        ", because its `CircuitBreaker.call` holds the breaker's lock (`with self._lock:`)"
        " while the wrapped function runs"
        if _holds_lock_in_call()
        else ""
    )
    return (
        f"pybreaker {version}: while one call was inside `CircuitBreaker.call`, a second call"
        f" from another thread waited until the first returned (probed in this run){why}; so"
        " the calls of one breaker run one at a time."
    )
