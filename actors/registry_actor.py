"""The registry actor: the root of the tree. It maps keys to ports and their supervisors.

Every change of the key map goes through its mailbox: registration, configuration, the first
route to a key (which builds the port and starts the key's supervisor), reset and stop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pykka

from supervision import (
    CircuitState,
    Clock,
    CommandConfig,
    CommandError,
    Health,
    UnknownCommandError,
    monotonic,
)

from .command import Command, FunctionCommand
from .messages import Reconfigure
from .port import CommandPort, TransitionListener
from .supervisor import CommandActor
from .watchdog import Watchdog

__all__ = [
    "Configure",
    "HealthOf",
    "Ports",
    "Register",
    "RegistryActor",
    "Reset",
    "Route",
    "largest_timeout",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Register:
    command_class: type[Command]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Configure:
    key: str
    config: CommandConfig


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    key: str
    function_style: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class HealthOf:
    key: str


@dataclasses.dataclass(frozen=True, slots=True)
class Ports:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Reset:
    reason: CommandError


class RegistryActor(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(
        self, breaker_clock: Clock, watchdog: Watchdog, listeners: Sequence[TransitionListener]
    ) -> None:
        super().__init__()
        self._breaker_clock = breaker_clock
        self._watchdog = watchdog
        self._listeners = listeners
        self._registrations: dict[str, Register] = {}
        self._configs: dict[str, CommandConfig] = {}
        self._ports: dict[str, CommandPort] = {}

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Route):
            return self._route(message.key, message.function_style)
        if isinstance(message, Register):
            return self._register(message)
        if isinstance(message, Configure):
            return self._configure(message.key, message.config)
        if isinstance(message, HealthOf):
            return self._health(message.key)
        if isinstance(message, Ports):
            return list(self._ports.values())
        if isinstance(message, Reset):
            self._stop_ports(message.reason)
            self._registrations.clear()
            self._configs.clear()
            return None
        msg = f"registry actor cannot handle {message!r}"
        raise TypeError(msg)

    def _register(self, registration: Register) -> None:
        key = registration.command_class.key
        known = self._registrations.get(key)
        if known is not None:
            msg = (
                f"command key {key!r} is already registered"
                f" (by {known.command_class.__qualname__}); reset() first to replace it"
            )
            raise ValueError(msg)
        self._registrations[key] = registration

    def _configure(self, key: str, config: CommandConfig) -> None:
        self._configs[key] = config
        port = self._ports.get(key)
        if port is not None:
            port.reconfigure(config)
            if port.supervisor is not None:
                port.supervisor.tell(Reconfigure(config))

    def _config_for(self, key: str, registration: Register) -> CommandConfig:
        config = self._configs.get(key)
        return config if config is not None else registration.command_class.config

    def _route(self, key: str, function_style: bool) -> CommandPort:
        port = self._ports.get(key)
        if port is None:
            registration = self._registrations.get(key)
            if registration is None:
                if not function_style:
                    msg = f"no command is registered under the key {key!r}"
                    raise UnknownCommandError(msg, key=key)
                registration = Register(FunctionCommand, (), {})
                self._registrations[key] = registration
            port = CommandPort(
                key=key,
                command_class=registration.command_class,
                args=registration.args,
                kwargs=registration.kwargs,
                config=self._config_for(key, registration),
                breaker_clock=self._breaker_clock,
                clock=monotonic,
                watchdog=self._watchdog,
                listeners=self._listeners,
            )
            port.supervisor = CommandActor.start(port)
            self._ports[key] = port
        if function_style and not issubclass(port.command_class, FunctionCommand):
            msg = (
                f"command key {key!r} is registered to {port.command_class.__qualname__};"
                " call it with ask(), not go() or do()"
            )
            raise ValueError(msg)
        return port

    def _health(self, key: str) -> Health:
        port = self._ports.get(key)
        if port is not None:
            return port.gate.health(key)
        registration = self._registrations.get(key)
        if registration is None:
            msg = f"no command is registered under the key {key!r}"
            raise UnknownCommandError(msg, key=key)
        # Registered, never used: report it without starting any actor.
        config = self._config_for(key, registration)
        state = CircuitState.OPEN if config.force_open else CircuitState.CLOSED
        return Health(
            key=key, state=state, requests=0, errors=0, error_percent=0.0, in_flight=0, workers=0
        )

    def _stop_ports(self, reason: CommandError) -> None:
        ports = list(self._ports.values())
        self._ports.clear()
        for port in ports:
            port.closed = reason
        for port in ports:
            if port.supervisor is not None:
                port.supervisor.stop(block=True)

    def on_stop(self) -> None:
        self._stop_ports(CommandError("the registry stopped", reason="shutdown"))


def largest_timeout(ports: Sequence[CommandPort]) -> float:
    """The longest any in-flight call of these ports can wait for its answer."""
    return max((port.config.timeout for port in ports), default=0.0)
