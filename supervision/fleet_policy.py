"""``FleetPolicy``: how one command key takes part in its fleet's circuit."""

from __future__ import annotations

import dataclasses
from typing import Literal

from .checks import check_int, show

__all__ = ["FLEET_MODES", "FleetMode", "FleetPolicy"]

FleetMode = Literal["shared", "quorum", "off"]

#: ``shared``: the fleet's summed window trips the fleet circuit. ``quorum``: it trips when at
#: least ``quorum`` nodes trip on their own windows. ``off``: the key's circuit is the node's own.
FLEET_MODES: frozenset[str] = frozenset({"shared", "quorum", "off"})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FleetPolicy:
    """How one command key takes part in its fleet's circuit (with a fleet configured)."""

    #: "shared", "quorum" or "off".
    mode: FleetMode = "shared"
    #: In quorum mode: nodes that must each be tripped on their own window to open the fleet.
    quorum: int = 2

    def __post_init__(self) -> None:
        if self.mode not in FLEET_MODES:
            msg = f"mode must be one of 'off', 'quorum', 'shared', got {show(self.mode)}"
            raise ValueError(msg)
        check_int("quorum", self.quorum, 1, 10_000)

    @property
    def enabled(self) -> bool:
        return self.mode != "off"
