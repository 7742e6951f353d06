"""``@command``: a plain function made into a registered command.

```python
@command("Get all Issues", config=CommandConfig(timeout=2.0), fallback=lambda p, e: [])
def get_all_issues(payload): ...

issues = get_all_issues({"project": "ACME"})     # asks through the registry
```

The decorator builds a ``Command`` subclass whose ``run`` calls the function and whose
``fallback`` calls ``fallback(payload, error)``, registers it, and returns a ``CommandFunction``:
calling it asks (an ``async def`` function gives an ``AsyncCommandFunction``, whose call is
awaited and asks with ``ask_async``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, Protocol, overload

from supervision import CommandConfig, UnknownCommandError

from .commands import Command
from .generics import PayloadT, ResultT
from .messages import Reply

__all__ = ["AsyncCommandFunction", "CommandDecorator", "CommandFunction", "Registrar"]

#: ``fallback(payload, error)``, as ``Command.fallback`` takes them.
Fallback = Callable[[Any, BaseException], Any]


class Registrar(Protocol):
    """What the decorator needs of a registry."""

    def register(self, command_class: type[Command], /) -> type[Command]: ...
    def ask_reply(self, key: Any, payload: Any = None) -> Any: ...
    async def ask_reply_async(self, key: Any, payload: Any = None) -> Any: ...


class _Bound(Generic[PayloadT, ResultT]):
    """What the sync and async forms share: the command class and its registry."""

    def __init__(self, registry: Registrar, command: type[Command[PayloadT, ResultT]]) -> None:
        self.registry = registry
        #: The generated ``Command`` subclass (registered under ``key``).
        self.command = command
        #: The command key.
        self.key: str = command.key

    def _known(self, error: BaseException) -> bool:
        """True when ``error`` says the key is not registered (the registry was reset since):
        the command is registered again and the ask retried once."""
        if isinstance(error, UnknownCommandError) and error.key == self.key:
            self.registry.register(self.command)
            return False
        return True


class CommandFunction(_Bound[PayloadT, ResultT]):
    """A function turned into a command: calling it asks through the registry and returns
    the value of the function, or of the fallback (or raises as ``ask`` does)."""

    def __call__(self, payload: PayloadT) -> ResultT:
        return self.ask_reply(payload).unwrap()

    def ask_reply(self, payload: PayloadT) -> Reply[ResultT]:
        """The ``Reply`` itself (events, latency, whether it fell back)."""
        try:
            reply: Reply[ResultT] = self.registry.ask_reply(self.command, payload)
        except UnknownCommandError as exc:
            if self._known(exc):
                raise
            reply = self.registry.ask_reply(self.command, payload)
        return reply


class AsyncCommandFunction(_Bound[PayloadT, ResultT]):
    """An ``async def`` function turned into a command: ``await f(payload)`` asks with
    ``ask_async`` (the event loop is never blocked); the function runs on the key's loop and
    is cancelled at its deadline."""

    async def __call__(self, payload: PayloadT) -> ResultT:
        reply = await self.ask_reply(payload)
        return reply.unwrap()

    async def ask_reply(self, payload: PayloadT) -> Reply[ResultT]:
        """The ``Reply`` itself, awaited."""
        try:
            reply: Reply[ResultT] = await self.registry.ask_reply_async(self.command, payload)
        except UnknownCommandError as exc:
            if self._known(exc):
                raise
            reply = await self.registry.ask_reply_async(self.command, payload)
        return reply


def _check_callable(key: str, what: str, function: object, *args: str) -> None:
    """Refuse ``function`` unless it can be called with ``args``, and returns its value."""
    if not callable(function):
        msg = f"@command({key!r}): {what} must be a callable, got {function!r}"
        raise TypeError(msg)
    if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
        msg = (
            f"@command({key!r}): {what} is a generator function: its body would run later,"
            " outside the command's protection; return a list (or another value) instead"
        )
        raise TypeError(msg)
    try:
        inspect.signature(function).bind(*args)
    except TypeError as exc:
        msg = f"@command({key!r}): {what} must take ({', '.join(args)}): {exc}"
        raise TypeError(msg) from None
    except ValueError:  # no signature to check: left to the call
        pass


class CommandDecorator:
    """The decorator ``command(key, ...)`` returns."""

    def __init__(
        self,
        registry: Registrar,
        key: str,
        config: CommandConfig | None,
        fallback: Fallback | None,
        group: str | None,
        *,
        cache_key: Callable[[Any], Hashable | None] | None = None,
    ) -> None:
        if fallback is not None:
            _check_callable(key, "fallback", fallback, "payload", "error")
        if cache_key is not None:
            _check_callable(key, "cache_key", cache_key, "payload")
        if config is not None and not isinstance(config, CommandConfig):
            msg = f"@command({key!r}): config must be a CommandConfig, got {config!r}"
            raise TypeError(msg)
        self._registry = registry
        self._key = key
        self._config = config
        self._fallback = fallback
        self._group = group
        self._cache_key = cache_key

    @overload
    def __call__(  # type: ignore[overload-overlap]  # a coroutine function: the async form
        self, function: Callable[[PayloadT], Coroutine[Any, Any, ResultT]]
    ) -> AsyncCommandFunction[PayloadT, ResultT]: ...
    @overload
    def __call__(
        self, function: Callable[[PayloadT], ResultT]
    ) -> CommandFunction[PayloadT, ResultT]: ...
    def __call__(
        self, function: Callable[[Any], Any]
    ) -> CommandFunction[Any, Any] | AsyncCommandFunction[Any, Any]:
        _check_callable(self._key, "the decorated function", function, "payload")
        command = self._command_class(function)
        self._registry.register(command)
        made: CommandFunction[Any, Any] | AsyncCommandFunction[Any, Any]
        if inspect.iscoroutinefunction(function):
            made = AsyncCommandFunction(self._registry, command)
        else:
            made = CommandFunction(self._registry, command)
        functools.update_wrapper(made, function)
        return made

    def _command_class(self, function: Callable[[Any], Any]) -> type[Command]:
        namespace: dict[str, Any] = {
            "key": self._key,
            "group": self._group,
            "__module__": getattr(function, "__module__", __name__),
            "__doc__": getattr(function, "__doc__", None),
        }
        if self._config is not None:
            namespace["config"] = self._config
        if inspect.iscoroutinefunction(function):

            async def run_async(self: Command, payload: Any) -> Any:
                return await function(payload)

            namespace["run"] = run_async
        else:

            def run(self: Command, payload: Any) -> Any:
                return function(payload)

            namespace["run"] = run
        fallback = self._fallback
        if fallback is not None:

            def fallback_method(self: Command, payload: Any, error: BaseException) -> Any:
                return fallback(payload, error)

            namespace["fallback"] = fallback_method
        cache_key = self._cache_key
        if cache_key is not None:

            def cache_key_method(self: Command, payload: Any) -> Hashable | None:
                return cache_key(payload)

            namespace["cache_key"] = cache_key_method
        name = getattr(function, "__name__", "function")
        return type(f"{name}_command", (Command,), namespace)
