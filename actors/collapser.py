"""Request collapsing (Hystrix's ``HystrixCollapser``): many concurrent asks for single items
become one ask of a batch command with the list of their payloads (docs/collapsing.md).

The registry keeps one ``Batcher`` per registered ``Collapser`` and routes an ask of its key
here before any port lookup. A batch is a list under a lock: its first request schedules its
flush ``window`` seconds later on the registry's timer; reaching ``max_batch`` flushes it at
once, on the caller's thread. A flush makes ONE non-blocking ask of the batch command through
the registry's own submit path; its answer is mapped to one answer per caller. Each caller's
own deadline is on the timer too: at it, that caller alone is answered TIMEOUT. Every request
is answered exactly once (a claim lock per request).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, ClassVar, Protocol

from supervision import CommandError, CommandTimeoutError, EventType
from supervision.checks import check_number, show
from supervision.collapsing import CollapserMetrics, CollapserStats

from .log import logger
from .messages import Reply

__all__ = ["Batcher", "Collapser", "CollapserMetrics", "Shared", "check_collapser_class"]

#: Called with the reply of a call answered later.
OnAnswer = Callable[[Reply], object]
#: ``submit(batch_command, payloads, timeout, on_answer)``: the registry's non-blocking ask.
Submit = Callable[[str, list[Any], float, OnAnswer], object]
#: ``call_at(when, job)``: the registry's timer.
CallAt = Callable[[float, Callable[[], object]], None]
#: The default seconds a caller waits when it gives no ``timeout=`` / ``deadline=``.
DefaultTimeout = Callable[[], float]


class Shared(Protocol):
    """One cache key's answer in a request scope (``actors.request_cache``'s entry)."""

    reply: Reply | None

    def set(self, reply: Reply) -> None: ...
    def then(self, callback: OnAnswer) -> None: ...


#: Upper bound of ``Collapser.window`` (seconds).
MAX_WINDOW = 10.0

_COLLAPSED = EventType.COLLAPSED


class Collapser:
    """Collapse concurrent asks of ``key`` into one ask of ``batch_command``.

    Subclass it, set ``key`` and ``batch_command`` (the key of a registered command whose
    ``run`` receives the list of payloads), and register it: ``registry.register(GetUser)``.
    Callers ask the collapser's key with one payload and get their own item.
    """

    #: The key callers ask.
    key: ClassVar[str]
    #: The key of the command that runs one batch: its ``run`` receives the list of payloads.
    batch_command: ClassVar[str]
    #: Seconds a batch stays open after its first request.
    window: ClassVar[float] = 0.01
    #: A batch this large is flushed at once; None: unbounded.
    max_batch: ClassVar[int | None] = None
    #: A name grouping collapsers on dashboards (free text).
    group: ClassVar[str | None] = None

    def cache_key(self, payload: Any) -> Hashable | None:
        """The request-cache key of an ask (None: not cached). Override it to answer asks of an
        equal key within one request scope with the first one's item (docs/collapsing.md)."""
        return None

    def map_results(self, payloads: list[Any], result: Any) -> Sequence[Any]:
        """One answer per payload, in order, from the batch command's value ``result``: a
        value, or an exception instance (that caller's error). Default: ``list(result)``."""
        return list(result)


def check_collapser_class(cls: type[Collapser]) -> None:
    """Refuse a ``Collapser`` subclass whose settings are wrong (``ValueError``/``TypeError``
    naming the attribute, what is allowed and what it got)."""
    name = cls.__qualname__
    batch = getattr(cls, "batch_command", None)
    if not isinstance(batch, str) or not batch.strip():
        msg = f"{name}.batch_command must be a registered command key (a str), got {show(batch)}"
        raise ValueError(msg)
    try:
        check_number("window", cls.window, high=MAX_WINDOW, unit="seconds")
    except ValueError as exc:
        raise ValueError(f"{name}.{exc}") from None
    limit = cls.max_batch
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        msg = f"{name}.max_batch must be an int >= 1 or None, got {show(limit)}"
        raise ValueError(msg)
    group = cls.group
    if group is not None and not isinstance(group, str):
        msg = f"{name}.group must be a str or None, got {show(group)}"
        raise ValueError(msg)
    for method in ("map_results", "cache_key"):
        if not callable(getattr(cls, method, None)):
            msg = f"{name}.{method} must be a method"
            raise TypeError(msg)


class _Request:
    """One caller's ask: answered once, by its batch or by the timer at its deadline."""

    __slots__ = ("_claim", "deadline", "deliver", "payload", "started")

    def __init__(self, payload: Any, started: float, deadline: float, deliver: OnAnswer) -> None:
        self.payload = payload
        self.started = started
        self.deadline = deadline
        self.deliver = deliver
        self._claim = threading.Lock()

    @property
    def answered(self) -> bool:
        """Whether it has been answered (then its deadline job has nothing to do)."""
        return self._claim.locked()

    def answer(self, reply: Reply) -> None:
        if self._claim.acquire(blocking=False):
            self.deliver(reply)


class Batcher:
    """A registered collapser's batches (owned by the registry facade)."""

    def __init__(
        self,
        collapser: Collapser,
        *,
        submit: Submit,
        call_at: CallAt,
        default_timeout: DefaultTimeout,
        clock: Callable[[], float] = time.monotonic,
        stats_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.collapser = collapser
        cls = type(collapser)
        self.key: str = cls.key
        self.batch_command: str = cls.batch_command
        self.window = float(cls.window)
        self.max_batch = cls.max_batch
        self._submit = submit
        self._call_at = call_at
        self._default_timeout = default_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._batch: list[_Request] = []
        self.group: str | None = cls.group
        #: Whether the collapser defines ``cache_key`` (docs/collapsing.md, request cache).
        self.cache_enabled = cls.cache_key is not Collapser.cache_key
        #: The collapser's class name (for errors).
        self.owner = cls.__qualname__
        #: The rolling counts (guarded by ``_stats_lock``; timed by the registry's clock).
        self._stats = CollapserStats(stats_clock)
        self._stats_lock = threading.Lock()
        self.log = logger.bind(collapser=self.key, batch_command=self.batch_command)

    # -- asking ----------------------------------------------------------------------------

    def ask(self, payload: Any, limit: float | None, deliver: OnAnswer) -> None:
        """Queue one caller's ``payload``; ``deliver`` gets its reply once, within ``limit``
        seconds (default: the window plus the batch command's timeout)."""
        now = self._clock()
        if limit is None:
            limit = self.window + self._default_timeout()
        request = _Request(payload, now, now + limit, deliver)
        with self._lock:
            batch = self._batch
            batch.append(request)
            first = len(batch) == 1
            full = self.max_batch is not None and len(batch) >= self.max_batch
            if full:
                self._batch = []
        self._call_at(request.deadline, lambda: self._expire(request))
        if full:
            self._flush(batch)
        elif first:
            self._call_at(now + self.window, lambda: self._flush_if_current(batch))

    def cache_key(self, payload: Any) -> Hashable | None:
        """The collapser's request-cache key of an ask (None: not cached)."""
        return self.collapser.cache_key(payload)

    def ask_shared(
        self, shared: Shared, first: bool, payload: Any, limit: float | None, deliver: OnAnswer
    ) -> None:
        """An ask in a request scope whose cache key another ask of the scope may share: the
        first one joins a batch and sets ``shared``; the others get its reply with
        RESPONSE_FROM_CACHE first, each within its own deadline."""
        if first:
            self.ask(payload, limit, shared.set)
            shared.then(deliver)
            return
        now = self._clock()
        reply = shared.reply
        if reply is not None:
            deliver(self._from_cache(reply, now))
            return
        if limit is None:
            limit = self.window + self._default_timeout()
        request = _Request(payload, now, now + limit, deliver)
        shared.then(lambda reply: request.answer(self._from_cache(reply, now)))
        if shared.reply is None:
            self._call_at(request.deadline, lambda: self._expire(request))

    def _from_cache(self, reply: Reply, started: float) -> Reply:
        with self._stats_lock:
            self._stats.from_cache()
        events = (EventType.RESPONSE_FROM_CACHE, *reply.events)
        return Reply(self.key, reply.value, reply.error, events, self._clock() - started)

    def _expire(self, request: _Request) -> None:
        if request.answered:  # the common case: its batch answered it long ago
            return
        error = CommandTimeoutError(
            f"collapser {self.key!r}: timeout after {request.deadline - request.started:.3f}s"
            f" waiting for the batch answer for payload {show(request.payload)}",
            key=self.key,
        )
        self._answer_one(request, None, error, (_COLLAPSED, EventType.TIMEOUT))

    # -- flushing ----------------------------------------------------------------------------

    def _flush_if_current(self, batch: list[_Request]) -> None:
        with self._lock:
            if self._batch is not batch:  # flushed already (it filled up)
                return
            self._batch = []
        self._flush(batch)

    def _flush(self, batch: list[_Request]) -> None:
        now = self._clock()
        # a caller whose deadline passed already is answered by its own timer, not sent
        live = [request for request in batch if request.deadline > now]
        if not live:
            return
        with self._stats_lock:
            self._stats.batched(len(live))
        payloads = [request.payload for request in live]
        left = max(request.deadline for request in live) - now
        self.log.debug("collapser.flushed", size=len(live))
        answered = _Once(lambda reply: self._answer_batch(live, payloads, reply))
        try:
            outcome = self._submit(self.batch_command, payloads, left, answered)
        except Exception as exc:  # every caller gets it (unknown key, shut down)
            self._answer_all(live, None, exc, (_COLLAPSED, EventType.FAILURE))
            return
        if isinstance(outcome, Reply):  # answered at once (rejected, short-circuited, ...)
            answered(outcome)

    # -- answering ---------------------------------------------------------------------------

    def _answer_batch(self, batch: list[_Request], payloads: list[Any], reply: Reply) -> None:
        events = (_COLLAPSED, *reply.events)
        if not reply.ok:
            self._answer_all(batch, reply.value, reply.error, events)
            return
        try:
            items = list(self.collapser.map_results(payloads, reply.value))
        except Exception as exc:  # a bug in map_results: every caller gets it
            self.log.warning("collapser.map_results_failed", error=repr(exc))
            self._answer_all(batch, None, exc, (*events, EventType.FAILURE))
            return
        failed = (*events, EventType.FAILURE)
        for index, request in enumerate(batch):
            if index >= len(items):
                error = CommandError(
                    f"collapser {self.key!r}: payload {show(request.payload)} is missing from"
                    f" the batch result of {self.batch_command!r} ({len(items)} items for"
                    f" {len(payloads)} payloads)",
                    key=self.key,
                    reason="missing from batch",
                )
                self._answer_one(request, None, error, failed)
                continue
            item = items[index]
            if isinstance(item, BaseException):
                self._answer_one(request, None, item, failed)
            else:
                self._answer_one(request, item, reply.error, events)

    def _answer_all(
        self,
        batch: list[_Request],
        value: Any,
        error: BaseException | None,
        events: tuple[EventType, ...],
    ) -> None:
        for request in batch:
            self._answer_one(request, value, error, events)

    def _answer_one(
        self,
        request: _Request,
        value: Any,
        error: BaseException | None,
        events: tuple[EventType, ...],
    ) -> None:
        latency = self._clock() - request.started
        request.answer(Reply(self.key, value, error, events, latency))

    def close(self, error: CommandError) -> None:
        """Answer the requests of the batch not yet flushed with ``error`` (shutdown, reset)."""
        with self._lock:
            batch, self._batch = self._batch, []
        self._answer_all(batch, None, error, (_COLLAPSED, EventType.FAILURE))

    # -- looking -----------------------------------------------------------------------------

    def metrics(self) -> CollapserMetrics:
        """The rolling counts and batch sizes, and the totals since registration."""
        with self._stats_lock:
            requests, batches, cached, mean, percentiles = self._stats.read()
            requests_total, batches_total, cached_total, sizes = self._stats.totals()
        return CollapserMetrics(
            key=self.key,
            batch_command=self.batch_command,
            group=self.group,
            time=time.time(),
            requests_collapsed=requests,
            batches=batches,
            responses_from_cache=cached,
            batch_size_mean=mean,
            batch_size_percentiles=percentiles,
            requests_collapsed_total=requests_total,
            batches_total=batches_total,
            responses_from_cache_total=cached_total,
            batch_sizes=sizes,
            collapse_window=self.window,
            max_batch=self.max_batch,
            cache_enabled=self.cache_enabled,
        )


class _Once:
    """A batch's answer callback that acts on the first reply only (the submit path may both
    call it and return the reply)."""

    __slots__ = ("_callback", "_claim")

    def __init__(self, callback: OnAnswer) -> None:
        self._callback = callback
        self._claim = threading.Lock()

    def __call__(self, reply: Reply) -> None:
        if self._claim.acquire(blocking=False):
            self._callback(reply)
