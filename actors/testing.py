"""Fault injection for tests and chaos drills: crash or stop a key's actors on purpose.

A crash makes the actor's message handler raise (pykka's failure path: ``on_failure`` runs, the
actor stops); a stop is pykka's clean ``stop()`` (``on_stop`` runs). Either way the tree must
notice and recover: a worker is replaced by its supervisor, a supervisor by the registry.
A busy worker handles the crash or stop only when its current ``run`` returns (a Python thread
cannot be interrupted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import pykka

from .messages import Crash, InjectedCrash

if TYPE_CHECKING:
    from .registry import CommandRegistry

__all__ = [
    "Crash",
    "InjectedCrash",
    "crash",
    "kill_supervisor",
    "kill_worker",
    "supervisor_of",
    "workers_of",
]

How = Literal["crash", "stop"]


def crash(ref: pykka.ActorRef[Any], how: How = "crash") -> bool:
    """Crash (or stop) one actor; False if it was already dead."""
    try:
        if how == "crash":
            ref.tell(Crash())
        elif how == "stop":
            ref.stop(block=False)
        else:
            msg = f"how must be 'crash' or 'stop', got {how!r}"
            raise ValueError(msg)
    except pykka.ActorDeadError:
        return False
    return True


def workers_of(registry: CommandRegistry, key: str) -> list[pykka.ActorRef[Any]]:
    """The live worker actors of the key's pool (empty if the key was never used)."""
    port = registry._live_port(key)
    return [] if port is None else port.live_workers()


def supervisor_of(registry: CommandRegistry, key: str) -> pykka.ActorRef[Any] | None:
    """The current supervisor of the key's pool (None if the key was never used or its pool is
    passivated)."""
    port = registry._live_port(key)
    return None if port is None else port.supervisor


def kill_worker(registry: CommandRegistry, key: str, how: How = "crash") -> bool:
    """Crash (or stop) one of the workers of the key's pool, an idle one if there is one."""
    port = registry._live_port(key)
    if port is None:
        return False
    workers = port.live_workers()
    idle = set(port.pool.idle_workers())
    workers.sort(key=lambda ref: ref not in idle)
    return any(crash(ref, how) for ref in workers)


def kill_supervisor(registry: CommandRegistry, key: str, how: How = "crash") -> bool:
    """Crash (or stop) the supervisor of the key's pool."""
    port = registry._live_port(key)
    if port is None or port.supervisor is None:
        return False
    return crash(port.supervisor, how)
