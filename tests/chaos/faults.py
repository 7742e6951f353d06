"""The chaos thread: faults injected into a registry under load, drawn by weight, and keys that
went down revived with ``restart(key)``."""

from __future__ import annotations

import random
import threading
import time

from actors import CommandRegistry
from actors.testing import crash, kill_supervisor, kill_worker, workers_of

from .keys import KeySpec, weighted
from .options import ChaosOptions
from .result import ChaosResult

__all__ = ["FAULTS", "Monkey"]

#: Kinds of fault the chaos thread injects, with their weights.
FAULTS: dict[str, int] = {
    "kill_worker:crash": 30,
    "kill_worker:stop": 20,
    "kill_every_worker": 4,
    "kill_supervisor:crash": 6,
    "kill_supervisor:stop": 4,
    "restart": 2,
    "resize": 15,
    "retime": 10,
    "rethreshold": 8,
}


class Monkey:
    """Injects a fault on a random key every ``options.fault_interval`` seconds on average until
    ``stop`` is set, counting them in ``result``; ``run`` is the chaos thread's target."""

    def __init__(
        self,
        registry: CommandRegistry,
        options: ChaosOptions,
        result: ChaosResult,
        seed: int,
        stop: threading.Event,
    ) -> None:
        self.registry = registry
        self.options = options
        self.result = result
        self.seed = seed
        self.stop = stop
        self._configs = {spec.name: spec.config for spec in options.keys}
        self._down_since: dict[str, float] = {}

    def run(self) -> None:
        rnd = random.Random(f"{self.seed}/chaos")
        opts, result = self.options, self.result
        while not self.stop.wait(rnd.expovariate(1.0 / opts.fault_interval)):
            spec = rnd.choice(opts.keys)
            fault = weighted(rnd, FAULTS)
            try:
                hit = self._inject(spec, fault, rnd)
                self._revive_down_keys()
            except BaseException as exc:
                result.chaos_errors.append(f"{fault} on {spec.name}: {exc!r}")
                continue
            result.faults[fault] += 1
            if not hit:
                result.fault_misses[fault] += 1

    def _inject(self, spec: KeySpec, fault: str, rnd: random.Random) -> bool:
        """Inject ``fault`` on ``spec``'s key; False if it found nothing to hit."""
        registry = self.registry
        what, _, how = fault.partition(":")
        if what == "kill_every_worker":  # the whole pool at once, crashed or stopped by turns
            workers = workers_of(registry, spec.name)
            hits = [crash(ref, "crash" if n % 2 else "stop") for n, ref in enumerate(workers)]
            return any(hits)
        if what == "restart":  # an operator's restart(key), whatever the key's status
            return registry.restart(spec.name) in ("up", "restarting")
        if what == "kill_worker":
            return bool(kill_worker(registry, spec.name, how=how))  # type: ignore[arg-type]
        if what == "kill_supervisor":
            return bool(kill_supervisor(registry, spec.name, how=how))  # type: ignore[arg-type]
        config = self._configs[spec.name]
        if what == "resize":
            config = config.replace(
                max_concurrent_requests=rnd.randint(*spec.pool),
                queue_size=rnd.randint(*spec.queue),
            )
        elif what == "retime":
            config = config.replace(timeout=rnd.choice(spec.timeouts))
        elif what == "rethreshold":
            config = config.replace(
                error_percent_threshold=rnd.choice((50, 80, 90, 95, 100)),
                request_volume_threshold=rnd.choice((5, 10, 20)),
                sleep_window=rnd.choice((0.1, 0.3, 0.5)),
            )
        self._configs[spec.name] = config
        registry.configure(spec.name, config)
        return True

    def _revive_down_keys(self) -> None:
        now = time.monotonic()
        for spec in self.options.keys:
            try:
                status = self.registry.health(spec.name).status
            except Exception:
                continue
            if status != "down":
                self._down_since.pop(spec.name, None)
                continue
            since = self._down_since.setdefault(spec.name, now)
            if now - since >= self.options.revive_after:
                self.registry.restart(spec.name)
                self._down_since.pop(spec.name, None)
                self.result.faults["restart(down key)"] += 1
