"""Shared fixtures: a fake clock, an isolated registry driven by it, and captured logs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from actors import CommandRegistry
from supervision import FakeClock


def pytest_configure(config: pytest.Config) -> None:
    """Tests configure structlog (the library never does): keep every level, so the
    ``captured_logs`` fixture sees debug events too, but write nothing to the terminal."""
    structlog.configure(
        logger_factory=structlog.WriteLoggerFactory(file=open(os.devnull, "w")),  # noqa: SIM115
        cache_logger_on_first_use=False,
    )


@pytest.fixture
def clock() -> FakeClock:
    """Time for circuit breakers and rolling windows: moves only on ``clock.advance()``."""
    return FakeClock()


@pytest.fixture
def registry(clock: FakeClock) -> Iterator[CommandRegistry]:
    """An isolated registry whose breakers run on ``clock`` (call deadlines use real time)."""
    registry = CommandRegistry(clock=clock)
    try:
        yield registry
    finally:
        registry.shutdown()


@pytest.fixture
def captured_logs() -> Iterator[list[dict[str, Any]]]:
    """Every structlog event emitted during the test, as dicts."""
    with structlog.testing.capture_logs() as logs:
        yield logs


@pytest.fixture
def eventually() -> Callable[..., None]:
    """Wait, within a bound, for a condition that another thread is about to make true.

    Spins on the predicate (which reads state under the library's locks): no fixed sleeps.
    """

    def wait(predicate: Callable[[], bool], within: float = 2.0, what: str = "") -> None:
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                pytest.fail(f"not true within {within}s: {what or predicate}")

    return wait
