"""What a registry lends its fleet (``CommandRegistry(fleet=...)``), and what a fleet is to it.

The registry knows a fleet only through ``Fleet``: ``actors.fleet.RedisFleet`` is one (and needs
the ``redis`` extra, so the registry never imports it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Protocol

from .port import CommandPort, TransitionListener
from .watchdog import Watchdog

__all__ = ["Fleet", "FleetHost"]


@dataclasses.dataclass(frozen=True, slots=True)
class FleetHost:
    """A registry, as its fleet sees it."""

    #: The ports of the keys used so far (an ask to the registry actor).
    ports: Callable[[], Sequence[CommandPort]]
    #: The registry's timer: the fleet's ticks are jobs on it.
    timer: Watchdog
    #: Adds a listener of every circuit transition of the registry.
    subscribe: Callable[[TransitionListener], None]


class Fleet(Protocol):
    """A registry's fleet: started by the registry, stopped with it."""

    #: This node's name in the fleet.
    node: str

    def attach(self, host: FleetHost) -> None:
        """Start serving this registry (once: a fleet belongs to one registry)."""

    def close(self) -> None:
        """Stop every thread and connection of the fleet (idempotent)."""
