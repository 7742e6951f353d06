"""What a pybreaker / tenacity / resilience4j user reaches for first: a decorator, exceptions
that do not count, typed results, and mistakes refused at registration."""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from probe import WAIT

import actors
from actors import (
    AsyncCommandFunction,
    BadRequest,
    Command,
    CommandConfig,
    CommandFunction,
    CommandRegistry,
    UnknownCommandError,
)

# -- the decorator ---------------------------------------------------------------------------


def test_a_decorated_function_asks_through_the_registry(registry: CommandRegistry) -> None:
    calls: list[Any] = []

    @registry.command("Get user", config=CommandConfig(timeout=2.0))
    def get_user(user_id: int) -> dict[str, Any]:
        """Look a user up."""
        calls.append(user_id)
        return {"id": user_id}

    assert isinstance(get_user, CommandFunction)
    assert get_user(42) == {"id": 42}
    assert calls == [42]
    assert get_user.key == "Get user"
    assert get_user.__name__ == "get_user"
    assert get_user.__doc__ == "Look a user up."
    assert registry.health("Get user").requests == 1
    assert registry.ask("Get user", 7) == {"id": 7}  # the string-key API sees it too
    assert registry.metrics("Get user").config.timeout == 2.0
    reply = get_user.ask_reply(1)
    assert reply.events == ("SUCCESS",)


def test_a_decorated_functions_failure_gets_its_fallback_with_payload_and_error(
    registry: CommandRegistry,
) -> None:
    seen: list[tuple[Any, BaseException]] = []

    def empty(payload: Any, error: BaseException) -> list[Any]:
        seen.append((payload, error))
        return []

    @registry.command("Search", fallback=empty)
    def search(query: str) -> list[str]:
        raise ConnectionError(query)

    assert search("bugs") == []
    [(payload, error)] = seen
    assert payload == "bugs"
    assert isinstance(error, ConnectionError)
    assert search.ask_reply("x").events == ("FAILURE", "FALLBACK_SUCCESS")


def test_without_a_fallback_the_decorated_function_raises_what_run_raised(
    registry: CommandRegistry,
) -> None:
    @registry.command("Boom")
    def boom(payload: Any) -> None:
        raise KeyError(payload)

    with pytest.raises(KeyError):
        boom(1)


def test_an_async_function_gives_an_awaitable_that_never_blocks_the_loop(
    registry: CommandRegistry,
) -> None:
    @registry.command("Fetch", fallback=lambda payload, error: "degraded")
    async def fetch(payload: str) -> str:
        await asyncio.sleep(0)
        if payload == "bad":
            raise ConnectionError
        return payload.upper()

    assert isinstance(fetch, AsyncCommandFunction)

    async def main() -> list[str]:
        return await asyncio.gather(fetch("a"), fetch("bad"), fetch("c"))

    assert asyncio.run(main()) == ["A", "degraded", "C"]


def test_the_module_level_decorator_uses_the_default_registry() -> None:
    try:

        @actors.command("default-decorated")
        def double(n: int) -> int:
            return 2 * n

        assert double(21) == 42
        assert CommandRegistry.ask("default-decorated", 1) == 2
        CommandRegistry.reset()  # forgets registrations: the function registers itself again
        assert double(2) == 4
    finally:
        CommandRegistry.reset()


@pytest.mark.parametrize(
    ("function", "complaint"),
    [
        pytest.param(lambda: 1, r"must take \(payload\)", id="no-argument"),
        pytest.param(lambda a, b: 1, r"must take \(payload\)", id="two-arguments"),
        pytest.param("not callable", "must be a callable", id="not-callable"),
    ],
)
def test_the_decorator_refuses_a_function_it_could_not_call(
    registry: CommandRegistry, function: Any, complaint: str
) -> None:
    with pytest.raises(TypeError, match=complaint):
        registry.command("bad")(function)


def test_the_decorator_refuses_a_generator_function_and_a_wrong_fallback(
    registry: CommandRegistry,
) -> None:
    def numbers(payload: Any) -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator function"):
        registry.command("gen")(numbers)
    with pytest.raises(TypeError, match=r"fallback must take \(payload, error\)"):
        registry.command("fb", fallback=lambda payload: [])
    with pytest.raises(TypeError, match="config must be a CommandConfig"):
        registry.command("cfg", config={"timeout": 1})  # type: ignore[arg-type]


# -- exceptions that do not count ------------------------------------------------------------


class NotFound(Exception):  # noqa: N818 - named as users name theirs
    pass


class NoSuchIssue(NotFound):
    pass


class Lookup(Command):
    key = "lookup"
    config = CommandConfig(ignore=(NotFound,), request_volume_threshold=1)
    fallbacks = 0

    def run(self, payload: Any) -> Any:
        if payload == "missing":
            raise NoSuchIssue(payload)
        if payload == "down":
            raise ConnectionError(payload)
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:
        type(self).fallbacks += 1
        return "fallback"


def test_an_ignored_exception_reaches_the_caller_without_fallback_and_is_not_counted(
    registry: CommandRegistry,
) -> None:
    Lookup.fallbacks = 0
    registry.register(Lookup)
    for _ in range(5):
        with pytest.raises(NoSuchIssue):
            registry.ask("lookup", "missing")
    reply = registry.ask_reply("lookup", "missing")
    assert reply.events == ("BAD_REQUEST",)
    assert isinstance(reply.error, NoSuchIssue)
    assert Lookup.fallbacks == 0
    health = registry.health("lookup")
    assert (health.requests, health.errors, health.state) == (0, 0, "closed")
    assert registry.ask("lookup", "down") == "fallback"  # other exceptions still count
    assert registry.health("lookup").errors == 1


def test_ignore_accepts_a_list_or_a_class_and_refuses_anything_else() -> None:
    assert CommandConfig(ignore=[KeyError]).ignore == (KeyError,)  # type: ignore[arg-type]
    assert CommandConfig(ignore=KeyError).ignore == (KeyError,)  # type: ignore[arg-type]
    for bad in ("KeyError", (KeyError, 1), (int,)):
        with pytest.raises(ValueError, match="ignore must be a tuple of exception classes"):
            CommandConfig(ignore=bad)  # type: ignore[arg-type]


# -- typed results: the class in place of the key ------------------------------------------


class Square(Command[int, int]):
    key = "square"

    def run(self, payload: int) -> int:
        return payload * payload


class OtherSquare(Square):
    key = "square"


def test_the_command_class_can_stand_for_its_key(registry: CommandRegistry) -> None:
    registry.register(Square)
    assert registry.ask(Square, 3) == 9
    assert registry.ask_reply(Square, 4).value == 16
    assert registry.ask(Square, 5, block=False).get(timeout=WAIT) == 25
    assert asyncio.run(registry.ask_async(Square, 6)) == 36
    assert asyncio.run(registry.ask_reply_async(Square, 7)).value == 49


def test_a_class_not_registered_under_its_key_is_refused(registry: CommandRegistry) -> None:
    with pytest.raises(UnknownCommandError):
        registry.ask(Square, 3)
    registry.register(Square)
    with pytest.raises(UnknownCommandError, match="registered as Square, not OtherSquare"):
        registry.ask(OtherSquare, 3)


TYPED_USER_CODE = """
    from typing import Any
    from actors import Command, CommandRegistry, Reply, command

    class Issues(Command[dict[str, str], list[str]]):
        key = "issues"
        def run(self, payload: dict[str, str]) -> list[str]:
            return [payload["project"]]

    @command("user")
    def get_user(user_id: int) -> str:
        return str(user_id)

    @command("user async")
    async def get_user_async(user_id: int) -> str:
        return str(user_id)

    registry = CommandRegistry()
    reveal_type(registry.ask(Issues, {"project": "A"}))
    reveal_type(CommandRegistry.ask(Issues, {"project": "A"}))
    reveal_type(registry.ask_reply(Issues, {"project": "A"}))
    reveal_type(registry.ask(Issues, {"project": "A"}, block=False))
    reveal_type(registry.ask("issues", {}))
    reveal_type(get_user(1))

    async def main() -> None:
        reveal_type(await registry.ask_async(Issues, {"project": "A"}))
        reveal_type(await get_user_async(1))
"""


def test_mypy_strict_gives_user_code_the_result_type_without_casts(tmp_path: Path) -> None:
    source = tmp_path / "user_code.py"
    source.write_text(textwrap.dedent(TYPED_USER_CODE))
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    revealed = [
        line.split("Revealed type is ")[1]
        for line in done.stdout.splitlines()
        if "Revealed" in line
    ]
    assert revealed == [
        '"list[str]"',
        '"list[str]"',
        '"actors.messages.Reply[list[str]]"',
        '"pykka._future.Future[list[str]]"',
        '"Any"',
        '"str"',
        '"list[str]"',
        '"str"',
    ], done.stdout
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert errors == [], done.stdout


# -- mistakes refused at registration ------------------------------------------------------


class GeneratorRun(Command):
    key = "gen-run"

    def run(self, payload: Any) -> Any:
        yield payload


class AsyncGeneratorRun(Command):
    key = "agen-run"

    async def run(self, payload: Any) -> Any:
        yield payload


class NeedsClient(Command):
    key = "needs-client"

    def __init__(self, client: Any, *, retries: int = 3) -> None:
        self.client = client

    def run(self, payload: Any) -> Any:
        return self.client


class ShortFallback(Command):
    key = "short-fallback"

    def run(self, payload: Any) -> Any:
        return payload

    def fallback(self, payload: Any) -> Any:  # type: ignore[override]
        return None


class NoPayload(Command):
    key = "no-payload"

    def run(self) -> Any:  # type: ignore[override]
        return None


class NoRun(Command):
    key = "no-run"


@pytest.mark.parametrize(
    ("command_class", "args", "kwargs", "complaint"),
    [
        (GeneratorRun, (), {}, "GeneratorRun.run is a generator function"),
        (AsyncGeneratorRun, (), {}, "AsyncGeneratorRun.run is a generator function"),
        (NeedsClient, (), {}, "missing a required argument: 'client'"),
        (NeedsClient, ("c",), {"retry": 2}, "unexpected keyword argument 'retry'"),
        (NeedsClient, ("c", 2), {}, "too many positional arguments"),
        (ShortFallback, (), {}, r"ShortFallback.fallback\(self, payload\) cannot be called"),
        (NoPayload, (), {}, r"NoPayload.run\(self\) cannot be called as run\(payload\)"),
        (NoRun, (), {}, "NoRun does not implement run"),
    ],
)
def test_register_refuses_what_would_fail_at_the_first_call(
    registry: CommandRegistry,
    command_class: type[Command],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    complaint: str,
) -> None:
    with pytest.raises(TypeError, match=complaint):
        registry.register(command_class, *args, **kwargs)
    with pytest.raises(UnknownCommandError):  # nothing was registered
        registry.ask(command_class.key, None)


def test_constructor_arguments_that_bind_are_accepted(registry: CommandRegistry) -> None:
    registry.register(NeedsClient, "client", retries=1)
    assert registry.ask("needs-client", None) == "client"


# -- a blocking ask inside an event loop -----------------------------------------------------


class Echo(Command):
    key = "echo"

    def run(self, payload: Any) -> Any:
        return payload


def test_a_blocking_ask_in_a_running_loop_warns_once_per_key_naming_ask_async(
    registry: CommandRegistry, captured_logs: list[dict[str, Any]]
) -> None:
    registry.register(Echo)
    registry.ask("echo", "warm-up off the loop")

    async def handler() -> list[Any]:
        return [registry.ask("echo", n) for n in range(3)]

    assert asyncio.run(handler()) == [0, 1, 2]  # the call still works
    warnings = [e for e in captured_logs if e["event"] == "command.blocking_ask_in_event_loop"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["command"] == "echo"
    assert "ask_async" in warnings[0]["hint"]

    async def awaiting() -> Any:
        return await registry.ask_async("echo", "fine")

    assert asyncio.run(awaiting()) == "fine"
    still = [e for e in captured_logs if e["event"] == "command.blocking_ask_in_event_loop"]
    assert len(still) == 1


def test_bad_request_still_passes_untouched(registry: CommandRegistry) -> None:
    class Strict(Command):
        key = "strict"

        def run(self, payload: Any) -> Any:
            raise BadRequest("no")

    registry.register(Strict)
    with pytest.raises(BadRequest):
        registry.ask("strict", None)


def test_a_decorated_function_keeps_functools_metadata(registry: CommandRegistry) -> None:
    def original(payload: Any) -> Any:
        return payload

    wrapped = registry.command("meta")(original)
    assert wrapped.__wrapped__ is original  # type: ignore[attr-defined]
    assert functools.WRAPPER_ASSIGNMENTS  # update_wrapper copied these
    assert wrapped.__qualname__ == original.__qualname__
