"""Health: a frozen snapshot whose state compares equal to the plain string."""

from __future__ import annotations

import dataclasses

import pytest

from supervision import CircuitState, Health


def test_a_health_state_reads_as_its_plain_string() -> None:
    health = Health(
        key="jira",
        state=CircuitState.HALF_OPEN,
        requests=4,
        errors=1,
        error_percent=25.0,
        in_flight=2,
    )

    assert health.state == "half_open"
    assert health.workers == 0


def test_a_health_snapshot_is_frozen_and_keyword_only() -> None:
    health = Health(
        key="jira", state=CircuitState.CLOSED, requests=0, errors=0, error_percent=0.0, in_flight=0
    )

    with pytest.raises(dataclasses.FrozenInstanceError):
        health.requests = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        Health("jira", CircuitState.CLOSED, 0, 0, 0.0, 0)  # type: ignore[call-arg]
