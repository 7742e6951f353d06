"""What the fleet's actor and its stream reader need from a ``RedisFleet``.

A Protocol, so the modules below the package's face name the fleet without importing it (the
face starts them: imports run one way).
"""

from __future__ import annotations

from typing import Protocol

from .seat import Seat
from .store import Store

__all__ = ["FleetSettings"]


class FleetSettings(Protocol):
    """A ``RedisFleet`` as its actor and its stream reader see it."""

    namespace: str
    node: str
    publish_interval: float
    heartbeat: float
    lease_margin: float
    snapshot_interval: float
    snapshot_ttl: float
    live_ms: int
    channel: str
    keys_set: str
    #: True while Redis answers, False after a failure, None before the first try.
    connected: bool | None
    #: This node's seats by command key (swapped whole, never mutated).
    seats: dict[str, Seat]

    @property
    def safe_url(self) -> str: ...

    def new_store(self) -> Store: ...

    def garbage_found(self, key: str, detail: str) -> None: ...
