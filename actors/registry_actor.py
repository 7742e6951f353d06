"""The registry actor: the root of the tree. It maps keys to ports and their supervisors.

Every change of the key map goes through its mailbox: registration, configuration, the first
route to a key (which builds the port and starts the key's supervisor), reset and stop.

A port outlives its supervisor: the registry gives the key's worker pool a way to start one, so
a pool that passivated (idle for ``passivate_after``) is started again by its next caller without
a hop through this actor. A key whose calls run on their callers' threads (semaphore isolation)
starts passivated: its supervisor is started only if its configuration turns to thread
isolation. A shared pool (``CommandConfig(pool=...)``) is made by the first key naming it, sized
by ``ConfigurePool`` (else ``PoolConfig()``), and starts passivated: its first call starts it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import pykka

from supervision import (
    Child,
    CircuitState,
    Clock,
    CommandConfig,
    CommandError,
    Directive,
    Health,
    Isolation,
    PoolConfig,
    Restarts,
    UnknownCommandError,
    monotonic,
)

from .commands import Command, FunctionCommand
from .log import logger, ms
from .messages import Reconfigure, SupervisorExited
from .pool import Pool
from .port import CommandPort, TransitionListener
from .supervisor import CommandActor
from .tracing import Tracer
from .watchdog import Watchdog

__all__ = [
    "Configure",
    "ConfigurePool",
    "HealthOf",
    "Ports",
    "Register",
    "ReserveCollapser",
    "RegistryActor",
    "Reset",
    "Restart",
    "Revive",
    "Route",
    "largest_timeout",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Register:
    command_class: type[Command]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class ReserveCollapser:
    """Claim ``key`` for a collapser (``name``: its class), refused if a command or another
    collapser has it (docs/collapsing.md)."""

    key: str
    name: str
    batch_command: str


@dataclasses.dataclass(frozen=True, slots=True)
class Configure:
    key: str
    config: CommandConfig


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigurePool:
    name: str
    config: PoolConfig


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
    """Stop every key; with ``sweep``, answer the calls still running at once (shutdown), else
    let them finish within their deadlines (reset)."""

    reason: CommandError
    sweep: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Restart:
    """An operator revives a key that is down (``CommandRegistry.restart``)."""

    key: str


@dataclasses.dataclass(frozen=True, slots=True)
class Revive:
    """A supervisor's backoff is over: start it again (if the key is still the same)."""

    key: str
    port: CommandPort


class RegistryActor(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(
        self,
        breaker_clock: Clock,
        watchdog: Watchdog,
        listeners: Sequence[TransitionListener],
        tracer: Tracer | None = None,
    ) -> None:
        super().__init__()
        self._tracer = tracer
        self._breaker_clock = breaker_clock
        self._watchdog = watchdog
        self._listeners = listeners
        self._registrations: dict[str, Register] = {}
        #: The keys of registered collapsers: their class's name and their batch command.
        self._collapser_keys: dict[str, tuple[str, str]] = {}
        self._configs: dict[str, CommandConfig] = {}
        self._ports: dict[str, CommandPort] = {}
        #: Shared pools by name, and their configurations (set before or after first use).
        self._pools: dict[str, Pool] = {}
        self._pool_configs: dict[str, PoolConfig] = {}
        #: Supervisor restarts, per pool.
        self._restarts: dict[Pool, Restarts] = {}

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Route):
            return self._route(message.key, message.function_style)
        if isinstance(message, Register):
            return self._register(message)
        if isinstance(message, ReserveCollapser):
            return self._reserve_collapser(message)
        if isinstance(message, Configure):
            return self._configure(message.key, message.config)
        if isinstance(message, ConfigurePool):
            return self._configure_pool(message.name, message.config)
        if isinstance(message, HealthOf):
            return self._health(message.key)
        if isinstance(message, Ports):
            return list(self._ports.values())
        if isinstance(message, SupervisorExited):
            return self._supervisor_exited(message)
        if isinstance(message, Revive):
            return self._revive(message.key, message.port)
        if isinstance(message, Restart):
            return self._restart(message.key)
        if isinstance(message, Reset):
            self._stop_ports(message.reason, sweep=message.sweep)
            self._registrations.clear()
            self._collapser_keys.clear()
            self._configs.clear()
            self._pools.clear()
            self._pool_configs.clear()
            self._restarts.clear()
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
        collapser = self._collapser_keys.get(key)
        if collapser is not None:
            msg = (
                f"{key!r} is a collapser's key (registered by {collapser[0]}): a command cannot be"
                " registered under it"
            )
            raise ValueError(msg)
        self._registrations[key] = registration

    def _reserve_collapser(self, reserve: ReserveCollapser) -> None:
        key, name, batch_command = reserve.key, reserve.name, reserve.batch_command
        known = self._registrations.get(key)
        if known is not None:
            what = (
                "a function command's key (asked through @command or go/do)"
                if known.command_class is FunctionCommand
                else f"the key of the command {known.command_class.__qualname__}"
            )
            msg = f"{name}.key {key!r} is already {what}: a collapser needs a key of its own"
            raise ValueError(msg)
        collapser = self._collapser_keys.get(key)
        if collapser is not None:
            msg = (
                f"collapser key {key!r} is already registered (by {collapser[0]}); reset() first"
                " to replace it"
            )
            raise ValueError(msg)
        other = self._collapser_keys.get(batch_command)
        if other is not None:
            msg = (
                f"{name}.batch_command {batch_command!r} is the key of the collapser {other[0]}:"
                " a batch command must be a command"
            )
            raise ValueError(msg)
        batching = [n for n, command in self._collapser_keys.values() if command == key]
        if batching:
            msg = (
                f"{name}.key {key!r} is the batch command of the collapser {batching[0]}:"
                " a collapser needs a key of its own"
            )
            raise ValueError(msg)
        self._collapser_keys[key] = (name, batch_command)

    def _configure(self, key: str, config: CommandConfig) -> None:
        port = self._ports.get(key)
        if port is not None and config.pool != port.config.pool:
            msg = (
                f"command key {key!r} runs on {port.pool.label()}: its pool cannot change once"
                f" it has been used (got pool={config.pool!r}); reset() first"
            )
            raise ValueError(msg)
        self._configs[key] = config
        if port is not None:
            pool = port.pool
            passivate_after = pool.policy.passivate_after
            port.reconfigure(config)
            if pool.name is not None:  # a shared pool keeps its own size and policy
                return
            restarts = self._restarts.get(pool)
            if restarts is not None:
                restarts.policy = config.supervision
            # none while restarting or passivated: the next one reads the pool
            port.tell_supervisor(Reconfigure(config.supervision))
            if config.supervision.passivate_after != passivate_after:
                port.watch_idle(renew=True)

    def _configure_pool(self, name: str, config: PoolConfig) -> None:
        self._pool_configs[name] = config
        pool = self._pools.get(name)
        if pool is None:
            return
        passivate_after = pool.policy.passivate_after
        pool.resize(config, self._breaker_clock)
        restarts = self._restarts.get(pool)
        if restarts is not None:
            restarts.policy = config.supervision
        if pool.ports:
            port = pool.ports[0]
            port.tell_supervisor(Reconfigure(config.supervision))
            if config.supervision.passivate_after != passivate_after:
                port.watch_idle(renew=True)

    def _pool_for(self, config: CommandConfig) -> Pool | None:
        """The shared pool a key's configuration names (made on first use), or None."""
        name = config.pool
        if name is None:
            return None
        pool = self._pools.get(name)
        if pool is None:
            pool_config = self._pool_configs.get(name, PoolConfig())
            pool = Pool.shared(name, pool_config, self._breaker_clock)
            pool.log = logger.bind(pool=name)
            pool.start = functools.partial(CommandActor.start, pool, self.actor_ref)
            pool.asleep = True  # its first call starts its supervisor
            self._pools[name] = pool
        return pool

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
            config = self._config_for(key, registration)
            shared = self._pool_for(config)
            port = CommandPort(
                key=key,
                command_class=registration.command_class,
                args=registration.args,
                kwargs=registration.kwargs,
                config=config,
                breaker_clock=self._breaker_clock,
                clock=monotonic,
                watchdog=self._watchdog,
                listeners=self._listeners,
                tracer=self._tracer,
                pool=shared,
            )
            pool = port.pool
            if shared is None:  # the key's own pool
                start = functools.partial(CommandActor.start, pool, self.actor_ref)
                pool.start = start
                if config.isolation is Isolation.SEMAPHORE:
                    pool.asleep = True  # no worker needed: started only if that changes
                else:
                    pool.supervisor = start()
                    port.watch_idle()
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
            return port.gate.health(key, port.status)
        registration = self._registrations.get(key)
        if registration is None:
            msg = f"no command is registered under the key {key!r}"
            raise UnknownCommandError(msg, key=key)
        # Registered, never used: report it without starting any actor.
        config = self._config_for(key, registration)
        state = CircuitState.OPEN if config.force_open else CircuitState.CLOSED
        limit = config.max_concurrent_requests if config.limit is None else config.limit.start
        return Health(
            key=key,
            state=state,
            requests=0,
            errors=0,
            error_percent=0.0,
            in_flight=0,
            workers=0,
            limit=limit,
        )

    # -- the tree ------------------------------------------------------------------------------

    def _supervisor_exited(self, message: SupervisorExited) -> None:
        pool: Pool = message.pool
        supervisor = pool.supervisor
        if (
            pool.closed is not None
            or not pool.ports
            or supervisor is None
            or supervisor.actor_urn != message.supervisor.actor_urn
        ):
            return  # stopped on purpose, or a past incarnation
        port = pool.ports[0]
        restarts = self._restarts.get(pool)
        if restarts is None:
            restarts = Restarts(Child.SUPERVISOR, pool.policy, monotonic)
            self._restarts[pool] = restarts
        decision = restarts.died()
        log = pool.log
        if decision.directive is Directive.RESTART_AFTER:
            pool.status = "restarting"
            log.warning(
                "supervisor.restarting",
                delay_ms=ms(decision.delay),
                restarts=decision.restarts,
                max_restarts=decision.max_restarts,
                escalated=message.escalated,
            )
            revive = functools.partial(self._tell, Revive(port.key, port))
            self._watchdog.call_at(monotonic() + decision.delay, revive)
            return
        pool.status = "down"
        pool.down = CommandError(
            f"{pool.label()} is down: its supervisor died {decision.restarts} times within"
            f" {decision.period:g}s; restart({port.key!r}) revives it",
            key=None if pool.name is not None else port.key,
            reason="unavailable",
        )
        log.error(
            "command.down",
            restarts=decision.restarts,
            max_restarts=decision.max_restarts,
            period_ms=ms(decision.period),
        )

    def _tell(self, message: Any) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(message)

    def _revive(self, key: str, port: CommandPort) -> None:
        if self._ports.get(key) is not port:
            return
        if port.revive():  # False: closed, passivated (its next call starts it), or alive
            port.pool.log.info("supervisor.restarted", generation=port.pool.generation)

    def _restart(self, key: str) -> str:
        """Revive a key (and its pool) that is down; the status it has afterwards."""
        port = self._ports.get(key)
        if port is None:
            if key not in self._registrations:
                msg = f"no command is registered under the key {key!r}"
                raise UnknownCommandError(msg, key=key)
            return "up"  # never started: nothing to revive
        if port.status == "down":
            restarts = self._restarts.get(port.pool)
            if restarts is not None:
                restarts.reset()
            self._revive(key, port)
        return port.status

    def _stop_ports(self, reason: CommandError, *, sweep: bool) -> None:
        ports = list(self._ports.values())
        self._ports.clear()
        for port in ports:
            port.closed = reason
            port.pool.closed = reason
        for port in ports:
            supervisor = port.current_supervisor()  # a caller waking it now finds it closed
            if supervisor is not None and supervisor.is_alive():  # a shared one: stopped once
                supervisor.stop(block=True)
            if sweep:
                port.swept += port.sweep(reason)

    def on_stop(self) -> None:
        self._stop_ports(CommandError("the registry stopped", reason="shutdown"), sweep=True)


def largest_timeout(ports: Sequence[CommandPort]) -> float:
    """The longest any in-flight call of these ports can wait for its answer."""
    return max((port.config.timeout for port in ports), default=0.0)
