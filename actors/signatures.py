"""What the type checker sees of the asking methods: a key or a typed command class.

``registry.ask(GetAllIssues, payload)`` is typed by the class's ``Command[PayloadT, ResultT]``
parameters; ``registry.ask("Get all Issues", payload)`` stays ``Any``. The methods are
``_DefaultBound`` descriptors at run time (class-level calls use the default registry); these
protocols give them overloaded signatures, which a ``ParamSpec`` cannot carry.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Literal, Protocol, TypeVar, overload

import pykka

from .commands import Command
from .generics import PayloadT, ResultT
from .messages import Reply

__all__ = ["Ask", "AskAsync", "AskReply", "AskReplyAsync", "Key", "Method"]

#: A command key, or the ``Command`` subclass registered under it.
Key = str | type[Command[Any, Any]]

F_co = TypeVar("F_co", covariant=True)


class Method(Protocol[F_co]):
    """A descriptor that gives ``F_co`` on the class and on instances."""

    def __get__(self, obj: object, owner: type | None = None, /) -> F_co: ...


class Ask(Protocol):
    @overload
    def __call__(
        self,
        key: type[Command[PayloadT, ResultT]],
        payload: PayloadT = ...,
        *,
        block: Literal[True] = True,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> ResultT: ...
    @overload
    def __call__(
        self,
        key: type[Command[PayloadT, ResultT]],
        payload: PayloadT = ...,
        *,
        block: Literal[False],
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> pykka.Future[ResultT]: ...
    @overload
    def __call__(
        self,
        key: Key,
        payload: Any = None,
        *,
        block: bool = True,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> Any: ...


class AskReply(Protocol):
    @overload
    def __call__(
        self,
        key: type[Command[PayloadT, ResultT]],
        payload: PayloadT = ...,
        *,
        block: Literal[True] = True,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> Reply[ResultT]: ...
    @overload
    def __call__(
        self,
        key: type[Command[PayloadT, ResultT]],
        payload: PayloadT = ...,
        *,
        block: Literal[False],
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> pykka.Future[Reply[ResultT]]: ...
    @overload
    def __call__(
        self,
        key: Key,
        payload: Any = None,
        *,
        block: bool = True,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> Any: ...


class AskAsync(Protocol):
    @overload
    def __call__(
        self,
        key: type[Command[PayloadT, ResultT]],
        payload: PayloadT = ...,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> Coroutine[Any, Any, ResultT]: ...
    @overload
    def __call__(
        self,
        key: Key,
        payload: Any = None,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> Coroutine[Any, Any, Any]: ...


class AskReplyAsync(Protocol):
    @overload
    def __call__(
        self,
        key: type[Command[PayloadT, ResultT]],
        payload: PayloadT = ...,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> Coroutine[Any, Any, Reply[ResultT]]: ...
    @overload
    def __call__(
        self,
        key: Key,
        payload: Any = None,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> Coroutine[Any, Any, Reply[Any]]: ...
