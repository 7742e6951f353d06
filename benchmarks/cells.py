"""What the report's tables are made of: a target and its verdict, numbers as table cells."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Target", "ratio", "span", "targets_cell", "us", "x"]


@dataclass(frozen=True, slots=True)
class Target:
    """One target of the issue: ``reached`` must be <= ``limit`` (or >= with ``at_least``)."""

    label: str
    reached: float
    limit: float
    at_least: bool = False

    @property
    def passed(self) -> bool:
        return self.reached >= self.limit if self.at_least else self.reached <= self.limit

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "MISS"


def targets_cell(targets: Sequence[Target]) -> tuple[str, str]:
    """The "Target" and "Result" cells of a row."""
    if not targets:
        return "", ""
    labels = "; ".join(t.label for t in targets)
    verdicts = "; ".join(f"**{t.verdict}**" for t in targets)
    return labels, verdicts


def ratio(top: float, bottom: float) -> float:
    return top / bottom if bottom > 0 else float("inf")


def us(value: float) -> str:
    """Microseconds under about 1,000."""
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def x(value: float) -> str:
    """A ratio."""
    if value >= 100:
        return f"{value:,.0f}x"
    if value < 0.001:
        return "<0.001x"
    return f"{value:.3f}x" if value < 0.1 else f"{value:.2f}x"


def span(value: float) -> str:
    """Microseconds from 0.1 to 1,000,000."""
    return f"{value:,.0f}" if value >= 1000 else us(value)
