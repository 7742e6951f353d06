"""``show``: how error messages quote a value, whatever the value does."""

from __future__ import annotations

__all__ = ["show"]


def show(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters; a placeholder if ``__repr__`` raises."""
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} object with a broken __repr__>"
    return text if len(text) <= limit else text[:limit] + "..."
