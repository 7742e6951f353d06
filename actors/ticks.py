"""The stream's ticks, made once for all the streams of an app (``actors.http``).

A stream asks for the tick after the one it sent last. The latest tick is handed out if it is
not that one and is at most the stream's interval old; otherwise the stream makes the next
tick (``registry.all_metrics()`` read once, rendered by the app's ``actors.stream.Renderer``),
and streams asking meanwhile wait for it instead of making their own. A stream then sleeps
until an interval after its tick was made, so streams of one interval fall into step and share
every tick: ticks are made at most once per the shortest interval, whatever the number of
streams, and a stream never sends a tick older than its interval.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection

from supervision.errors import UnknownCommandError
from supervision.snapshot import CommandMetrics

from .stream import MetricsSource, Renderer, Tick, collapser_snapshots, resolve, snapshots

__all__ = ["FEW_KEYS", "Ticks", "tick_of_keys"]

#: A stream naming at most this many keys (``?keys=``) reads them one by one when no tick
#: shared by the app is fresh, rather than make a tick of every key.
FEW_KEYS = 32


class Ticks:
    """An app's ticks: the latest one, and the renderer that keeps each key's messages (what
    ``forget`` drops, when no stream is left). Thread-safe."""

    def __init__(self, source: MetricsSource | None) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._made = threading.Condition(self._lock)
        self._making = False
        self._forgotten = False
        self._latest: Tick | None = None
        self._renderer: Renderer | None = None
        #: Ticks made so far (every stream of the app shares them).
        self.made = 0

    def next(self, after: Tick | None, max_age: float) -> Tick:
        """The tick to send after ``after`` (None: the stream has sent none yet): the latest if
        it is another one at most ``max_age`` seconds old, else a new one. Raises what reading
        the metrics raised."""
        with self._lock:
            while True:
                latest = self._latest
                if (
                    latest is not None
                    and latest is not after
                    and time.monotonic() - latest.at <= max_age
                ):
                    return latest
                if not self._making:
                    break
                self._made.wait()  # the maker always notifies (below, finally)
            self._making = True
            self._forgotten = False
            renderer = self._renderer if self._renderer is not None else Renderer()
        tick: Tick | None = None
        try:
            started = time.monotonic()
            tick = renderer.tick(
                snapshots(self._source), started, collapser_snapshots(self._source)
            )
            return tick
        finally:
            with self._lock:
                self._making = False
                if tick is not None:
                    self.made += 1
                    if not self._forgotten:
                        self._latest, self._renderer = tick, renderer
                self._made.notify_all()

    def fresh(self, after: Tick | None, max_age: float) -> Tick | None:
        """The latest tick if another stream made it and it is at most ``max_age`` seconds
        old (as ``next`` would give it); None otherwise. Makes none."""
        with self._lock:
            latest = self._latest
            if (
                latest is not None
                and latest is not after
                and time.monotonic() - latest.at <= max_age
            ):
                return latest
            return None

    def forget(self) -> None:
        """Drop the latest tick and the rendered messages (also the ones being made): the next
        tick renders every key afresh."""
        with self._lock:
            self._latest = self._renderer = None
            self._forgotten = True


def tick_of_keys(
    source: MetricsSource | None, keys: Collection[str], renderer: Renderer
) -> Tick | None:
    """A tick of ``keys`` alone, read one by one (``source.metrics(key)``: a
    ``CommandRegistry``'s), in key order, and of the collapsers among them; None when the
    source reads no single key or there are more than ``FEW_KEYS``. A key not asked yet is
    left out."""
    read: Callable[[str], CommandMetrics] | None = getattr(resolve(source), "metrics", None)
    if not callable(read) or len(keys) > FEW_KEYS:
        return None
    started = time.monotonic()
    metrics = []
    for key in sorted(keys):
        try:
            metrics.append(read(key))
        except UnknownCommandError:  # never asked (yet), or not registered
            continue
    collapsers = [c for c in collapser_snapshots(source) if c.key in keys]
    return renderer.tick(metrics, started, collapsers)
