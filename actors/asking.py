"""What the registry facade does around every ask: check its arguments, make its call, and
wait for its outcome (a reply at once, a ticket of the key's workers, or a future: a collapsed
ask, an ask answered from a request scope's cache)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pykka

from supervision import Isolation
from supervision.checks import MAX_SECONDS, as_float, check_number, show

from .caller import call_here
from .commands import Command
from .messages import Reply
from .port import CommandPort
from .ticket import Ticket

__all__ = [
    "MAX_KEY_LENGTH",
    "check_deadline",
    "check_key",
    "check_timeout",
    "class_key",
    "dispatch",
    "future_of",
    "reply_of",
    "unwrap",
]

#: The longest command key accepted.
MAX_KEY_LENGTH = 256
_SEMAPHORE = Isolation.SEMAPHORE


def check_key(key: object) -> str:
    if not isinstance(key, str):
        msg = f"a command key must be a str, got {type(key).__name__} {show(key)}"
        raise TypeError(msg)
    if not key.strip():
        msg = f"a command key must be a non-empty str, got {key!r}"
        raise ValueError(msg)
    if len(key) > MAX_KEY_LENGTH:
        msg = f"a command key must be at most {MAX_KEY_LENGTH} characters, got {len(key)}"
        raise ValueError(msg)
    return key


def check_timeout(timeout: object) -> None:
    check_number("timeout", timeout, unit="seconds", high=MAX_SECONDS, suffix=" or None")


def check_deadline(deadline: object) -> None:
    if (
        isinstance(deadline, bool)
        or not isinstance(deadline, int | float)
        or not math.isfinite(as_float(deadline))
    ):
        msg = f"deadline must be a finite time.monotonic() instant or None, got {show(deadline)}"
        raise ValueError(msg)


def class_key(command_class: type[Command]) -> str:
    key = getattr(command_class, "key", None)
    if not isinstance(key, str):
        msg = f"{command_class.__qualname__} has no command key (set its 'key' to a str)"
        raise TypeError(msg)
    return key


def dispatch(
    port: CommandPort,
    payload: Any,
    limit: float | None,
    block: bool,
    on_answer: Callable[[Reply], object] | None,
) -> Ticket | Reply:
    """Make an admitted ask's call: on this thread under semaphore isolation, else on the
    key's workers (as ``CommandRegistry._submit`` does inline; a request scope's first ask
    calls this)."""
    if port.config.isolation is _SEMAPHORE:
        reply = call_here(port, payload, limit)  # on this thread, now
        if on_answer is not None:
            on_answer(reply)
        return reply
    return port.submit(payload, limit, block, on_answer)


def unwrap(reply: Reply) -> Any:
    return reply.unwrap()


def reply_of(outcome: Ticket | Reply | pykka.Future[Reply]) -> Reply:
    """Wait for the answer of a submitted call (one answered at once is already a Reply)."""
    if isinstance(outcome, Reply):
        return outcome
    if isinstance(outcome, Ticket):
        return outcome.port.wait(outcome)
    return outcome.get()  # a collapsed ask (its batch answers it) or a cache waiter


def future_of(outcome: Ticket | Reply | pykka.Future[Reply]) -> pykka.Future[Reply]:
    """A future of the answer of a submitted call."""
    if isinstance(outcome, Reply):
        future: pykka.ThreadingFuture[Reply] = pykka.ThreadingFuture()
        future.set(outcome)
        return future
    if isinstance(outcome, pykka.Future):  # answered from a request scope's cache
        return outcome
    assert outcome.future is not None, "a non-blocking call's ticket carries a future"
    return outcome.future
