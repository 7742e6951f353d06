"""What a collapser shows and refuses (docs/collapsing.md): the stream's ``HystrixCollapser``
message, the batch command's COLLAPSED count, Prometheus and OpenTelemetry, the request cache
for collapsed asks, the key clashes refused at registration, and batches sent in a context of
their own."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from collections.abc import Hashable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families

from actors import (
    Collapser,
    Command,
    CommandConfig,
    CommandRegistry,
    CommandTimeoutError,
    EventType,
)
from actors.otel import register_metrics
from actors.prometheus import collector_registry, exposition
from actors.stream import Renderer, batch, collapser_snapshots
from supervision import FakeClock

WAIT = 5.0


class GetUsers(Command[list[int], list[str]]):
    key = "Get users"
    config = CommandConfig(timeout=WAIT, max_concurrent_requests=20)

    def __init__(self, runs: list[list[int]], hold: threading.Event | None = None) -> None:
        self.runs = runs
        self.hold = hold

    def run(self, ids: list[int]) -> list[str]:
        self.runs.append(list(ids))
        if self.hold is not None:
            assert self.hold.wait(WAIT)
        return [f"user {i}" for i in ids]


class GetUser(Collapser):
    key = "Get user"
    batch_command = "Get users"
    window = 5.0  # long: a batch is sent when it is full
    max_batch = 4
    group = "People"


class CachedUser(GetUser):
    def cache_key(self, payload: Any) -> Hashable | None:
        return payload


@pytest.fixture
def runs() -> list[list[int]]:
    return []


@pytest.fixture
def users(registry: CommandRegistry, runs: list[list[int]]) -> CommandRegistry:
    registry.register(GetUsers, runs)
    registry.register(GetUser)
    return registry


def ask_all(
    registry: CommandRegistry, payloads: range | list[int], key: str = "Get user"
) -> list[Any]:
    futures = [registry.ask(key, payload, block=False) for payload in payloads]
    return [future.get(timeout=WAIT) for future in futures]


def messages(registry: CommandRegistry) -> list[dict[str, Any]]:
    body = batch(registry.all_metrics(), collapser_snapshots(registry))
    return [json.loads(event[len(b"data: ") :]) for event in body.split(b"\n\n") if event]


def message(registry: CommandRegistry, kind: str, name: str) -> dict[str, Any]:
    (found,) = [m for m in messages(registry) if m["type"] == kind and m["name"] == name]
    return found


# -- the stream ----------------------------------------------------------------------------------


def test_the_stream_sends_a_hystrix_collapser_message_with_hystrix_s_fields(
    users: CommandRegistry,
) -> None:
    assert ask_all(users, range(8)) == [f"user {i}" for i in range(8)]  # two batches of 4

    sent = message(users, "HystrixCollapser", "Get user")

    assert sent == {
        "type": "HystrixCollapser",
        "name": "Get user",
        "currentTime": sent["currentTime"],
        "rollingCountRequestsBatched": 8,
        "rollingCountBatches": 2,
        "rollingCountResponsesFromCache": 0,
        "batchSize_mean": 4,
        "batchSize": dict.fromkeys(("25", "50", "75", "90", "95", "99", "99.5", "100"), 4),
        "shardSize_mean": 4,
        "shardSize": dict.fromkeys(("25", "50", "75", "90", "95", "99", "99.5", "100"), 4),
        "propertyValue_rollingStatisticalWindowInMilliseconds": 10000,
        "propertyValue_requestCacheEnabled": False,
        "propertyValue_maxRequestsInBatch": 4,
        "propertyValue_timerDelayInMilliseconds": 5000,
        "reportingHosts": 1,
        "batchCommand": "Get users",
        "group": "People",
    }
    assert isinstance(sent["currentTime"], int) and sent["currentTime"] > 1_600_000_000_000


def test_the_collapser_messages_come_after_the_commands_and_pools(users: CommandRegistry) -> None:
    ask_all(users, range(4))

    kinds = [m["type"] for m in messages(users)]

    assert kinds == ["HystrixCommand", "HystrixThreadPool", "HystrixCollapser"]


def test_the_batch_command_counts_each_request_collapsed_into_it(users: CommandRegistry) -> None:
    ask_all(users, range(8))

    sent = message(users, "HystrixCommand", "Get users")

    assert sent["rollingCountCollapsedRequests"] == 8
    assert sent["rollingCountSuccess"] == 2  # two batches: two calls
    assert users.metrics("Get users").totals[EventType.COLLAPSED] == 8


def test_a_collapser_without_max_batch_says_unbounded_as_hystrix_does(
    registry: CommandRegistry, runs: list[list[int]]
) -> None:
    class Unbounded(Collapser):
        key = "Get any user"
        batch_command = "Get users"
        window = 0.01

    registry.register(GetUsers, runs)
    registry.register(Unbounded)
    assert registry.ask("Get any user", 1) == "user 1"

    sent = message(registry, "HystrixCollapser", "Get any user")
    assert sent["propertyValue_maxRequestsInBatch"] == 2**31 - 1
    assert sent["propertyValue_timerDelayInMilliseconds"] == 10
    assert sent["group"] is None


def test_a_registered_collapser_is_in_the_stream_before_it_is_asked(
    users: CommandRegistry,
) -> None:
    sent = message(users, "HystrixCollapser", "Get user")

    assert sent["rollingCountBatches"] == sent["batchSize_mean"] == 0
    assert sent["batchSize"]["100"] == 0


def test_the_stream_s_filters_keep_a_collapser_by_its_key_or_group(
    users: CommandRegistry,
) -> None:
    ask_all(users, range(4))
    tick = Renderer().tick(users.all_metrics(), 0.0, collapser_snapshots(users))

    def kinds(body: bytes) -> list[str]:
        return [json.loads(e[6:])["type"] for e in body.split(b"\n\n") if e.startswith(b"data")]

    assert kinds(tick.body(keys={"Get user"})) == ["HystrixCollapser"]
    assert kinds(tick.body(keys={"Get users"})) == ["HystrixCommand", "HystrixThreadPool"]
    assert kinds(tick.body(groups={"People"})) == ["HystrixCollapser"]
    assert kinds(tick.body(keys={"Get user"}, groups={"Other"})) == []


def test_the_rolling_counts_follow_the_registry_s_clock(
    users: CommandRegistry, clock: FakeClock
) -> None:
    ask_all(users, range(4))
    assert users.collapser_metrics("Get user").batches == 1

    clock.advance(11.0)  # past the 10 s window

    metrics = users.collapser_metrics("Get user")
    assert (metrics.batches, metrics.requests_collapsed, metrics.batch_size_mean) == (0, 0, 0.0)
    assert (metrics.batches_total, metrics.requests_collapsed_total) == (1, 4)


# -- Prometheus and OpenTelemetry ----------------------------------------------------------------


def test_prometheus_has_the_batch_sizes_as_a_histogram_and_the_cache_hits(
    users: CommandRegistry,
) -> None:
    ask_all(users, range(8))
    text, _ = exposition(collector_registry(users))

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
        if s.labels.get("collapser") == "Get user"
    }

    assert samples[("hystrix_collapser_batch_size_count", (("collapser", "Get user"),))] == 2
    assert samples[("hystrix_collapser_batch_size_sum", (("collapser", "Get user"),))] == 8
    bucket = "hystrix_collapser_batch_size_bucket"
    assert samples[(bucket, (("collapser", "Get user"), ("le", "2")))] == 0
    assert samples[(bucket, (("collapser", "Get user"), ("le", "5")))] == 2
    cached = "hystrix_collapser_responses_from_cache_total"
    assert samples[(cached, (("collapser", "Get user"),))] == 0
    info = (("batch_command", "Get users"), ("collapser", "Get user"), ("group", "People"))
    assert samples[("hystrix_collapser_info", info)] == 1


def test_opentelemetry_reports_batches_requests_and_batch_size_buckets(
    users: CommandRegistry,
) -> None:
    ask_all(users, range(8))
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        register_metrics(users, meter_provider=provider)
        data = reader.get_metrics_data()
    finally:
        provider.shutdown()
    assert data is not None
    points: dict[tuple[str, frozenset[tuple[str, Any]]], Any] = {}
    for scope in data.resource_metrics[0].scope_metrics:
        for metric in scope.metrics:
            for point in metric.data.data_points:
                points[metric.name, frozenset((point.attributes or {}).items())] = point.value

    common = {"hystrix.collapser.key": "Get user", "hystrix.collapser.batch_command": "Get users"}

    def value(name: str, **more: str) -> Any:
        return points[name, frozenset({**common, **more}.items())]

    assert value("hystrix.collapser.batches") == 2
    assert value("hystrix.collapser.requests") == 8
    assert value("hystrix.collapser.responses_from_cache") == 0
    assert value("hystrix.collapser.batch_size.bucket", **{"hystrix.bucket.le": "5"}) == 2
    assert value("hystrix.collapser.batch_size.bucket", **{"hystrix.bucket.le": "+Inf"}) == 2


# -- the request cache ---------------------------------------------------------------------------


@pytest.fixture
def cached(registry: CommandRegistry, runs: list[list[int]]) -> CommandRegistry:
    registry.register(GetUsers, runs)
    registry.register(CachedUser)
    return registry


def test_in_a_request_scope_an_equal_cache_key_joins_no_batch(
    cached: CommandRegistry, runs: list[list[int]]
) -> None:
    with cached.request_scope():
        futures = [cached.ask_reply("Get user", i % 4, block=False) for i in range(12)]
        replies = [future.get(timeout=WAIT) for future in futures]

    assert runs == [[0, 1, 2, 3]]  # the first ask of each key filled one batch
    assert [reply.value for reply in replies] == [f"user {i % 4}" for i in range(12)]
    assert [reply.events for reply in replies[:4]] == [(EventType.COLLAPSED, EventType.SUCCESS)] * 4
    hit = (EventType.RESPONSE_FROM_CACHE, EventType.COLLAPSED, EventType.SUCCESS)
    assert [reply.events for reply in replies[4:]] == [hit] * 8
    metrics = cached.collapser_metrics("Get user")
    assert (metrics.requests_collapsed, metrics.responses_from_cache) == (4, 8)
    assert metrics.cache_enabled
    sent = message(cached, "HystrixCollapser", "Get user")
    assert sent["rollingCountResponsesFromCache"] == 8
    assert sent["propertyValue_requestCacheEnabled"] is True


def test_two_scopes_never_share_and_no_scope_caches_nothing(
    cached: CommandRegistry, runs: list[list[int]]
) -> None:
    for _ in range(2):
        with cached.request_scope():
            assert ask_all(cached, [1, 2, 3, 4]) == ["user 1", "user 2", "user 3", "user 4"]
    assert ask_all(cached, [1, 1, 1, 1]) == ["user 1"] * 4  # outside a scope

    assert runs == [[1, 2, 3, 4], [1, 2, 3, 4], [1, 1, 1, 1]]
    assert cached.collapser_metrics("Get user").responses_from_cache == 0


def test_the_tasks_of_one_scope_share_a_cached_item(
    cached: CommandRegistry, runs: list[list[int]]
) -> None:
    async def main() -> list[Any]:
        async with cached.request_scope():
            return await asyncio.gather(*(cached.ask_async("Get user", i % 4) for i in range(8)))

    assert asyncio.run(main()) == [f"user {i % 4}" for i in range(8)]
    assert runs == [[0, 1, 2, 3]]


def test_a_cache_waiter_is_answered_timeout_at_its_own_deadline(
    registry: CommandRegistry, runs: list[list[int]]
) -> None:
    class One(CachedUser):
        max_batch = 1  # each first ask is sent at once

    hold = threading.Event()
    registry.register(GetUsers, runs, hold)
    registry.register(One)
    try:
        with registry.request_scope():
            first = registry.ask_reply("Get user", 7, block=False)
            waiter = registry.ask_reply("Get user", 7, timeout=0.05)
            assert waiter.events == (EventType.COLLAPSED, EventType.TIMEOUT)
            assert isinstance(waiter.error, CommandTimeoutError)
            hold.set()
            assert first.get(timeout=WAIT).value == "user 7"
            later = registry.ask_reply("Get user", 7)
    finally:
        hold.set()
    assert later.events[0] is EventType.RESPONSE_FROM_CACHE and later.value == "user 7"
    assert runs == [[7]]


def test_a_cache_key_that_cannot_be_hashed_is_refused_naming_the_collapser(
    registry: CommandRegistry, runs: list[list[int]]
) -> None:
    class Unhashable(CachedUser):
        def cache_key(self, payload: Any) -> Any:
            return [payload]

    registry.register(GetUsers, runs)
    registry.register(Unhashable)
    with registry.request_scope(), pytest.raises(TypeError, match=r"Unhashable\.cache_key\(\)"):
        registry.ask("Get user", 1)


# -- batches in a context of their own ----------------------------------------------------------


REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def test_a_batch_sees_no_caller_s_context_variables_nor_its_request_scope(
    registry: CommandRegistry,
) -> None:
    seen: list[str | None] = []
    runs: list[list[int]] = []

    class Batch(GetUsers):
        def run(self, ids: list[int]) -> list[str]:
            seen.append(REQUEST_ID.get())
            return super().run(ids)

        def cache_key(self, payload: Any) -> Hashable | None:
            return tuple(payload)  # would cache an equal batch within one scope

    class Pair(GetUser):
        max_batch = 2

    registry.register(Batch, runs)
    registry.register(Pair)
    REQUEST_ID.set("caller's request")
    with registry.request_scope():  # the filling caller's scope: the batch is not in it
        assert ask_all(registry, [1, 2]) == ["user 1", "user 2"]
        assert ask_all(registry, [1, 2]) == ["user 1", "user 2"]

    assert runs == [[1, 2], [1, 2]]
    assert seen == [None, None]


# -- keys refused --------------------------------------------------------------------------------


def test_a_collapser_cannot_take_a_command_s_key(
    registry: CommandRegistry, runs: list[list[int]]
) -> None:
    registry.register(GetUsers, runs)

    class Clash(Collapser):
        key = "Get users"
        batch_command = "Other"

    with pytest.raises(
        ValueError, match=r"Clash\.key 'Get users' is already the key of the command"
    ):
        registry.register(Clash)


def test_a_collapser_cannot_take_a_function_command_s_key(registry: CommandRegistry) -> None:
    assert registry.do("lookup", lambda: 1) == 1  # hystrix-go style: registered on first use

    class Clash(Collapser):
        key = "lookup"
        batch_command = "Other"

    with pytest.raises(ValueError, match="already a function command's key"):
        registry.register(Clash)


def test_a_command_cannot_take_a_collapser_s_key(users: CommandRegistry) -> None:
    class Clash(Command):
        key = "Get user"

        def run(self, payload: Any) -> Any:
            return payload

    with pytest.raises(
        ValueError, match=r"'Get user' is a collapser's key \(registered by GetUser\)"
    ):
        users.register(Clash)


def test_a_collapser_key_is_registered_once_until_reset(
    users: CommandRegistry, runs: list[list[int]]
) -> None:
    with pytest.raises(ValueError, match="collapser key 'Get user' is already registered"):
        users.register(CachedUser)

    users.reset()
    users.register(GetUsers, runs)
    users.register(CachedUser)
    assert users.collapser_metrics("Get user").cache_enabled


def test_a_batch_command_must_be_a_command_not_a_collapser(users: CommandRegistry) -> None:
    class OnCollapser(Collapser):
        key = "Get user twice"
        batch_command = "Get user"

    with pytest.raises(ValueError, match="is the key of the collapser GetUser"):
        users.register(OnCollapser)

    class TakesBatchKey(Collapser):
        key = "Get users"  # GetUser's batch command (also a command's key here)
        batch_command = "Somewhere"

    with pytest.raises(ValueError, match="Get users"):
        users.register(TakesBatchKey)


def test_a_collapser_key_cannot_be_another_collapser_s_batch_command(
    registry: CommandRegistry,
) -> None:
    registry.register(GetUser)  # its batch command "Get users" is not registered yet

    class Squatter(Collapser):
        key = "Get users"
        batch_command = "Get people"

    with pytest.raises(ValueError, match="is the batch command of the collapser GetUser"):
        registry.register(Squatter)


@pytest.fixture(autouse=True)
def _no_leftover_context() -> Iterator[None]:
    token = REQUEST_ID.set(None)
    yield
    REQUEST_ID.reset(token)
