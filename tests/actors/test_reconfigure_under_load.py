"""Resizing a live key under load loses no call: every ask is answered exactly once."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from probe import WAIT

from actors import Command, CommandConfig, CommandRegistry, Reply
from supervision import SupervisionPolicy

CALLERS = 12
SECONDS = 2.0


class Mixed(Command):
    """Succeeds, fails, raises a BaseException or runs past its deadline, by payload."""

    key = "mixed"
    config = CommandConfig(
        timeout=0.03,
        max_concurrent_requests=4,
        queue_size=2,
        force_closed=True,  # keep every call flowing to the workers being resized
        # every SystemExit replaces a worker: allow them all (escalation is tested elsewhere)
        supervision=SupervisionPolicy(max_restarts=1_000_000),
    )

    def run(self, payload: int) -> Any:
        kind = payload % 6
        if kind == 0:
            raise RuntimeError("dependency error")
        if kind == 1:
            raise SystemExit(1)
        if kind == 2:
            time.sleep(0.05)  # the dependency is slower than the deadline
        return payload

    def fallback(self, payload: int, error: BaseException) -> Any:
        return -payload


def test_every_ask_is_answered_once_while_the_key_is_resized(registry: CommandRegistry) -> None:
    registry.register(Mixed)
    stop = time.monotonic() + SECONDS
    answers: dict[tuple[int, int], Reply] = {}
    problems: list[BaseException] = []
    lock = threading.Lock()

    def caller(n: int) -> None:
        rnd = random.Random(n)
        i = 0
        while time.monotonic() < stop:
            payload = rnd.randrange(1000)
            try:
                if rnd.random() < 0.3:
                    reply = registry.ask_reply(Mixed.key, payload, block=False).get(timeout=WAIT)
                else:
                    reply = registry.ask_reply(Mixed.key, payload)
            except BaseException as error:
                with lock:
                    problems.append(error)
                return
            assert reply.value in (payload, -payload) or not reply.ok
            with lock:
                assert (n, i) not in answers
                answers[n, i] = reply
            i += 1

    def resizer() -> None:
        rnd = random.Random(0)
        while time.monotonic() < stop:
            registry.configure(
                Mixed.key,
                Mixed.config.replace(
                    max_concurrent_requests=rnd.randint(1, 6), queue_size=rnd.randint(0, 3)
                ),
            )
            time.sleep(0.02)  # pacing the resizes, not waiting for anything

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(CALLERS)]
    threads.append(threading.Thread(target=resizer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=SECONDS + 2 * WAIT)
        assert not thread.is_alive(), "a caller hung"

    assert problems == []
    assert len(answers) > CALLERS * 10
    kinds = {reply.events[0] for reply in answers.values()}
    assert {"SUCCESS", "FAILURE", "TIMEOUT", "THREAD_POOL_REJECTED"} <= kinds
    bad = [reply for reply in answers.values() if not reply.ok]
    assert bad == []  # every answer had the fallback's value
