"""A run that gives up at its own deadline is a TIMEOUT, whoever notices first."""

from __future__ import annotations

import time
from typing import Any

from actors import Command, CommandConfig, CommandRegistry, CommandTimeoutError


class GivesUpAtDeadline(Command):
    """Like an HTTP client given ``time_left()``: raises its own timeout right at the deadline."""

    key = "gives up at deadline"
    config = CommandConfig(timeout=0.02, request_volume_threshold=1000)

    def run(self, payload: Any) -> Any:
        time.sleep(max(0.0, self.time_left() - 0.002))  # the dependency hangs...
        while self.time_left() > 0:  # ...until the client's socket timeout fires
            pass
        raise TimeoutError("socket timed out")

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return "degraded"


def test_a_run_raising_its_own_timeout_at_the_deadline_is_answered_as_timeout(
    registry: CommandRegistry,
) -> None:
    registry.register(GivesUpAtDeadline)
    for _ in range(20):
        reply = registry.ask_reply(GivesUpAtDeadline.key, None)
        assert reply.events == ("TIMEOUT", "FALLBACK_SUCCESS")
        assert isinstance(reply.error, CommandTimeoutError)
        assert reply.value == "degraded"
    health = registry.health(GivesUpAtDeadline.key)
    assert health.requests == health.errors == 20
