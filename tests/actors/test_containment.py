"""Whatever ``run`` raises, BaseException included, is contained and answered.

pykka's default for a BaseException escaping an actor is to stop every actor in the process;
these tests check that a command's failure never reaches pykka.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
import structlog
from probe import WAIT

from actors import (
    Command,
    CommandConfig,
    CommandError,
    CommandRegistry,
    FallbackFailedError,
)
from actors.registry_actor import RegistryActor
from actors.supervisor import CommandActor


class CustomBaseException(BaseException):
    """Neither an Exception nor one of Python's own BaseExceptions."""


def base_exceptions() -> list[Any]:
    return [
        pytest.param(lambda: SystemExit(3), id="SystemExit"),
        pytest.param(KeyboardInterrupt, id="KeyboardInterrupt"),
        pytest.param(GeneratorExit, id="GeneratorExit"),
        pytest.param(CustomBaseException, id="CustomBaseException"),
    ]


class Raiser(Command):
    """Raises the exception it is given as payload."""

    key = "raiser"
    config = CommandConfig(timeout=1.0)

    def run(self, payload: Any) -> Any:
        if payload == "ok":
            return "ok"
        raise payload


class RaiserWithFallback(Raiser):
    key = "raiser-fb"

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return ("fallback", type(error).__name__)


class FallbackRaises(Command):
    """``run`` fails (or hangs on the payload's event); the fallback raises ``self.exc``."""

    key = "fallback-raises"
    config = CommandConfig(timeout=0.05)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def run(self, payload: Any) -> Any:
        if isinstance(payload, threading.Event):
            payload.wait(WAIT)
            return "late"
        raise RuntimeError("run boom")

    def fallback(self, payload: Any, error: BaseException) -> Any:
        raise self.exc


class Echo(Command):
    key = "echo"

    def run(self, payload: Any) -> Any:
        return ("echo", payload)


@pytest.fixture
def live(registry: CommandRegistry) -> Iterator[list[pykka.ActorRef[Any]]]:
    """The registry's commands, each asked once: the actors a contained failure must spare
    (the registry and the supervisors; a worker whose ``run`` raised a BaseException is
    replaced, see test_supervision_tree.py)."""
    for command_class in (Raiser, RaiserWithFallback, Echo):
        registry.register(command_class)
    assert registry.ask("raiser", "ok") == "ok"
    assert registry.ask("raiser-fb", "ok") == "ok"
    assert registry.ask("echo", 1) == ("echo", 1)
    actors = [
        *pykka.ActorRegistry.get_by_class(RegistryActor),
        *pykka.ActorRegistry.get_by_class(CommandActor),
    ]
    assert len(actors) == 4
    yield actors


def assert_still_serving(registry: CommandRegistry, actors: list[pykka.ActorRef[Any]]) -> None:
    assert all(ref.is_alive() for ref in actors), "an actor was stopped"
    assert registry.ask_reply("echo", 2, block=False).get(timeout=WAIT).value == ("echo", 2)
    assert registry.ask_reply("raiser", "ok", block=False).get(timeout=WAIT).value == "ok"


@pytest.mark.parametrize("make", base_exceptions())
def test_a_base_exception_from_run_is_answered_with_the_fallback(
    registry: CommandRegistry, live: list[pykka.ActorRef[Any]], make: Any
) -> None:
    exc = make()

    reply = registry.ask_reply("raiser-fb", exc, block=False).get(timeout=WAIT)

    assert reply.events == ("FAILURE", "FALLBACK_SUCCESS")
    assert reply.value == ("fallback", type(exc).__name__)
    assert reply.error is exc
    assert_still_serving(registry, live)


@pytest.mark.parametrize("make", base_exceptions())
def test_a_base_exception_from_run_without_fallback_is_re_raised_to_the_caller(
    registry: CommandRegistry, live: list[pykka.ActorRef[Any]], make: Any
) -> None:
    exc = make()
    reply = registry.ask_reply("raiser", exc, block=False).get(timeout=WAIT)
    assert reply.events == ("FAILURE", "FALLBACK_MISSING")

    with pytest.raises(type(exc)) as caught:
        registry.ask("raiser", exc)

    assert caught.value is exc
    assert_still_serving(registry, live)


@pytest.mark.parametrize("make", base_exceptions())
def test_a_base_exception_counts_as_a_failure(
    registry: CommandRegistry, live: list[pykka.ActorRef[Any]], make: Any
) -> None:
    registry.ask_reply("raiser-fb", make(), block=False).get(timeout=WAIT)

    health = registry.health("raiser-fb")
    assert (health.requests, health.errors, health.in_flight) == (2, 1, 0)


@pytest.mark.parametrize("make", [*base_exceptions(), pytest.param(ValueError, id="ValueError")])
@pytest.mark.parametrize("path", ["failure", "timeout", "short-circuit", "rejection"])
def test_a_fallback_raising_anything_gives_fallback_failed_error(
    registry: CommandRegistry, live: list[pykka.ActorRef[Any]], make: Any, path: str
) -> None:
    exc = make()
    registry.register(FallbackRaises, exc)
    hung = threading.Event()
    try:
        if path == "short-circuit":
            registry.configure("fallback-raises", CommandConfig(force_open=True))
        if path == "rejection":
            registry.configure(
                "fallback-raises", CommandConfig(max_concurrent_requests=1, timeout=1.0)
            )
            registry.ask_reply("fallback-raises", hung, block=False)
        payload = hung if path == "timeout" else "fail"

        reply = registry.ask_reply("fallback-raises", payload, block=False).get(timeout=WAIT)

        assert reply.events[-1] == "FALLBACK_FAILURE"
        error = reply.error
        assert isinstance(error, FallbackFailedError)
        assert error.__cause__ is exc
        assert error.key == "fallback-raises"
        with pytest.raises(FallbackFailedError):
            registry.ask("fallback-raises", payload)
    finally:
        hung.set()
    assert_still_serving(registry, live)


class Unbuildable(Command):
    """Its constructor raises the exception it is given."""

    key = "unbuildable"
    config = CommandConfig(timeout=1.0)

    def __init__(self, exc: BaseException) -> None:
        raise exc

    def run(self, payload: Any) -> Any:  # pragma: no cover - never built
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:  # pragma: no cover
        return "fallback"


@pytest.mark.parametrize("make", [lambda: RuntimeError("no config"), lambda: TypeError("args")])
def test_a_command_whose_constructor_raises_is_answered_and_others_keep_serving(
    registry: CommandRegistry, live: list[pykka.ActorRef[Any]], make: Any
) -> None:
    exc = make()
    registry.register(Unbuildable, exc)

    reply = registry.ask_reply("unbuildable", 1, block=False).get(timeout=WAIT)

    assert reply.events[0] == "FAILURE"
    assert reply.events[-1] in ("FALLBACK_FAILURE", "FALLBACK_MISSING")
    assert reply.error is not None
    assert reply.error is exc or reply.error.__cause__ is exc
    assert registry.health("unbuildable").in_flight == 0
    assert_still_serving(registry, live)
    # and again: the next call tries to build the command anew
    assert registry.ask_reply("unbuildable", 2, block=False).get(timeout=WAIT).events[0] == (
        "FAILURE"
    )


CONSTRUCTOR_RAISES_BASE_EXCEPTION = textwrap.dedent(
    """
    import logging
    import pykka
    import structlog
    from actors import Command, CommandConfig, CommandRegistry

    # the script's own output is its verdict: keep the library's log lines out of it
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))

    class Unbuildable(Command):
        key = "unbuildable"
        config = CommandConfig(timeout=0.2)
        def __init__(self):
            raise SystemExit(3)
        def run(self, payload):
            return payload

    class Echo(Command):
        key = "echo"
        def run(self, payload):
            return ("echo", payload)

    registry = CommandRegistry()
    registry.register(Unbuildable)
    registry.register(Echo)
    assert registry.ask("echo", 1) == ("echo", 1)
    reply = registry.ask_reply("unbuildable", 1, block=False).get(timeout=1)
    assert reply.events[0] == "FAILURE", reply
    assert all(ref.is_alive() for ref in pykka.ActorRegistry.get_all()), "actors were stopped"
    assert registry.ask_reply("echo", 2, block=False).get(timeout=1).value == ("echo", 2)
    print("contained")
    """
)


def test_a_command_whose_constructor_raises_a_base_exception_is_contained() -> None:
    # In a subprocess: when the bug is present pykka stops every actor in the process.
    done = subprocess.run(
        [sys.executable, "-c", CONSTRUCTOR_RAISES_BASE_EXCEPTION],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert "contained" in done.stdout.splitlines()


def test_a_logging_setup_that_raises_inside_a_worker_still_gets_the_call_answered(
    registry: CommandRegistry,
) -> None:
    class Fails(Command):
        key = "fails-while-logging-is-broken"

        def run(self, payload: object) -> object:
            raise RuntimeError("dependency down")

    def broken_processor(logger: object, method: str, event: dict[str, object]) -> object:
        if event.get("event") == "command.failed":
            raise RuntimeError("the log pipeline is broken")
        raise structlog.DropEvent

    registry.register(Fails)
    registry.register(Echo)
    old = structlog.get_config()
    structlog.configure(processors=[broken_processor])
    try:
        reply = registry.ask_reply(Fails.key, None)
    finally:
        structlog.configure(**old)

    assert isinstance(reply.error, CommandError)
    assert reply.error.reason == "internal error"
    assert registry.ask("echo", 1) == ("echo", 1)
