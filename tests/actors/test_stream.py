"""The Hystrix stream's messages, field by field, from hand-made ``CommandMetrics``."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from sample_metrics import COUNTS, TIME, Source, sample

from actors import CommandRegistry
from actors.stream import (
    COMMAND_SUMS,
    PING,
    POOL_SUMS,
    ROLLING_COUNTS,
    Renderer,
    Tick,
    batch,
    command_message,
    pool_message,
    snapshots,
    sse_event,
)
from actors.stream import LATENCIES as SUMMED_LATENCIES
from supervision import CircuitState, CommandConfig, EventType
from supervision.snapshot import PERCENTILES, CommandMetrics, Latency, PoolMetrics

#: Every field of a HystrixCommand message, as the reference lists them.
COMMAND_FIELDS = [
    "type",
    "name",
    "group",
    "currentTime",
    "isCircuitBreakerOpen",
    "errorPercentage",
    "errorCount",
    "requestCount",
    "rollingCountBadRequests",
    "rollingCountCollapsedRequests",
    "rollingCountEmit",
    "rollingCountExceptionsThrown",
    "rollingCountFailure",
    "rollingCountFallbackEmit",
    "rollingCountFallbackFailure",
    "rollingCountFallbackMissing",
    "rollingCountFallbackRejection",
    "rollingCountFallbackSuccess",
    "rollingCountResponsesFromCache",
    "rollingCountSemaphoreRejected",
    "rollingCountShortCircuited",
    "rollingCountSuccess",
    "rollingCountThreadPoolRejected",
    "rollingCountTimeout",
    "currentConcurrentExecutionCount",
    "rollingMaxConcurrentExecutionCount",
    "latencyExecute_mean",
    "latencyExecute",
    "latencyTotal_mean",
    "latencyTotal",
    "propertyValue_circuitBreakerRequestVolumeThreshold",
    "propertyValue_circuitBreakerSleepWindowInMilliseconds",
    "propertyValue_circuitBreakerErrorThresholdPercentage",
    "propertyValue_circuitBreakerForceOpen",
    "propertyValue_circuitBreakerForceClosed",
    "propertyValue_circuitBreakerEnabled",
    "propertyValue_executionIsolationStrategy",
    "propertyValue_executionIsolationThreadTimeoutInMilliseconds",
    "propertyValue_executionTimeoutInMilliseconds",
    "propertyValue_executionIsolationThreadInterruptOnTimeout",
    "propertyValue_executionIsolationThreadPoolKeyOverride",
    "propertyValue_executionIsolationSemaphoreMaxConcurrentRequests",
    "propertyValue_fallbackIsolationSemaphoreMaxConcurrentRequests",
    "propertyValue_metricsRollingStatisticalWindowInMilliseconds",
    "propertyValue_requestCacheEnabled",
    "propertyValue_requestLogEnabled",
    "reportingHosts",
    "threadPool",
]

#: Every field of a HystrixThreadPool message, as the reference lists them.
POOL_FIELDS = [
    "type",
    "name",
    "currentTime",
    "currentActiveCount",
    "currentCompletedTaskCount",
    "currentCorePoolSize",
    "currentLargestPoolSize",
    "currentMaximumPoolSize",
    "currentPoolSize",
    "currentQueueSize",
    "currentTaskCount",
    "rollingCountThreadsExecuted",
    "rollingMaxActiveThreads",
    "rollingCountCommandRejections",
    "propertyValue_queueSizeRejectionThreshold",
    "propertyValue_metricsRollingStatisticalWindowInMilliseconds",
    "reportingHosts",
]

#: Ours: what Hystrix's fields cannot say.
EXTENSIONS = (
    "circuitState",
    "status",
    "zombieCount",
    "rollingCountRetry",
    "rollingCountRetryBudgetExhausted",
    "rollingCountHedge",
    "concurrencyLimit",
    "faultInjected",
    "faultInjection",
)

BOOLEANS = {
    "isCircuitBreakerOpen",
    "propertyValue_circuitBreakerForceOpen",
    "propertyValue_circuitBreakerForceClosed",
    "propertyValue_circuitBreakerEnabled",
    "propertyValue_executionIsolationThreadInterruptOnTimeout",
    "propertyValue_requestCacheEnabled",
    "propertyValue_requestLogEnabled",
    "faultInjected",
}
STRINGS = {
    "type",
    "name",
    "group",
    "threadPool",
    "propertyValue_executionIsolationStrategy",
    "circuitState",
    "status",
}
LATENCIES = {"latencyExecute", "latencyTotal"}
NULLS = {"propertyValue_executionIsolationThreadPoolKeyOverride", "faultInjection"}  # none injected


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return type(value).__name__


def test_a_command_message_has_every_field_the_dashboard_reads_and_our_extensions() -> None:
    message = command_message(sample())

    assert set(message) == {*COMMAND_FIELDS, *EXTENSIONS}
    assert len(COMMAND_FIELDS) == len(set(COMMAND_FIELDS))


def test_a_command_message_s_fields_have_hystrix_s_types() -> None:
    message = command_message(sample())

    for field, value in message.items():
        if field in BOOLEANS:
            expected = "bool"
        elif field in STRINGS:
            expected = "str"
        elif field in LATENCIES:
            expected = "dict"
        elif field in NULLS:
            expected = "NoneType"
        else:
            expected = "int"  # counts and milliseconds: summable across hosts
        assert kind(value) == expected, field
    for field in LATENCIES:
        assert list(message[field]) == list(PERCENTILES)
        assert {kind(ms) for ms in message[field].values()} == {"int"}


def test_a_command_message_s_identity_and_health_come_from_the_metrics() -> None:
    message = command_message(sample("GetIssues"))

    assert message["type"] == "HystrixCommand"
    assert message["name"] == "GetIssues"
    assert message["group"] == "Issues"  # the group, not the key (hystrix-go sends the key)
    assert message["threadPool"] == "pool-of-GetIssues"
    assert message["currentTime"] == 1_767_225_600_250
    assert message["errorCount"] == 19
    assert message["requestCount"] == 29
    assert message["errorPercentage"] == 65  # 65.5 %, truncated as Hystrix does
    assert message["currentConcurrentExecutionCount"] == 3
    assert message["rollingMaxConcurrentExecutionCount"] == 7
    assert message["reportingHosts"] == 1
    assert message["status"] == "up"
    assert message["zombieCount"] == 2


def test_every_rolling_count_is_the_count_of_its_event_type() -> None:
    message = command_message(sample())

    for field, event in ROLLING_COUNTS.items():
        assert message[field] == COUNTS[event], field
    assert message["rollingCountExceptionsThrown"] == COUNTS[EventType.EXCEPTION_THROWN]
    assert message["rollingCountSuccess"] == COUNTS[EventType.SUCCESS]
    assert message["rollingCountTimeout"] == COUNTS[EventType.TIMEOUT]
    # Reactive emits do not exist here: a command answers one value.
    assert message["rollingCountEmit"] == 0
    assert message["rollingCountFallbackEmit"] == 0


def test_an_event_type_missing_from_the_counts_reads_zero() -> None:
    message = command_message(sample(counts={EventType.SUCCESS: 4}))

    assert message["rollingCountSuccess"] == 4
    assert message["rollingCountFailure"] == 0


def test_latencies_are_whole_milliseconds_keyed_by_hystrix_s_percentiles() -> None:
    message = command_message(sample())

    assert message["latencyExecute"] == {p: i + 1 for i, p in enumerate(PERCENTILES)}
    assert message["latencyTotal"] == {p: 10 * (i + 1) for i, p in enumerate(PERCENTILES)}
    assert message["latencyExecute_mean"] == 4  # 4.2 ms
    assert message["latencyTotal_mean"] == 14  # 13.7 ms


def test_an_empty_latency_window_reads_zero_everywhere() -> None:
    empty = Latency(count=0, mean=0.0, percentiles=dict.fromkeys(PERCENTILES, 0.0))
    message = command_message(sample(latency_execute=empty, latency_total=empty))

    assert message["latencyExecute"] == dict.fromkeys(PERCENTILES, 0)
    assert message["latencyTotal_mean"] == 0


def test_properties_are_the_key_s_configuration_in_hystrix_s_units() -> None:
    message = command_message(sample())

    assert message["propertyValue_executionTimeoutInMilliseconds"] == 1500
    assert message["propertyValue_executionIsolationThreadTimeoutInMilliseconds"] == 1500
    assert message["propertyValue_circuitBreakerSleepWindowInMilliseconds"] == 4250
    assert message["propertyValue_circuitBreakerErrorThresholdPercentage"] == 55
    assert message["propertyValue_circuitBreakerRequestVolumeThreshold"] == 21
    assert message["propertyValue_circuitBreakerForceOpen"] is False
    assert message["propertyValue_circuitBreakerForceClosed"] is True
    assert message["propertyValue_circuitBreakerEnabled"] is True
    assert message["propertyValue_executionIsolationStrategy"] == "THREAD"
    assert message["propertyValue_executionIsolationThreadInterruptOnTimeout"] is False
    assert message["propertyValue_executionIsolationThreadPoolKeyOverride"] is None
    assert message["propertyValue_executionIsolationSemaphoreMaxConcurrentRequests"] == 12
    assert message["propertyValue_fallbackIsolationSemaphoreMaxConcurrentRequests"] == 9
    assert message["propertyValue_metricsRollingStatisticalWindowInMilliseconds"] == 7000
    assert message["propertyValue_requestCacheEnabled"] is False
    assert message["propertyValue_requestLogEnabled"] is False


def test_a_fractional_error_threshold_is_sent_as_it_is() -> None:
    metrics = sample()
    config = metrics.config.replace(error_percent_threshold=33.5)
    message = command_message(sample(config=config))

    assert message["propertyValue_circuitBreakerErrorThresholdPercentage"] == 33.5


@pytest.mark.parametrize(
    ("state", "is_open"),
    [(CircuitState.CLOSED, False), (CircuitState.OPEN, True), (CircuitState.HALF_OPEN, False)],
)
def test_only_an_open_circuit_reads_open_and_circuit_state_tells_all_three(
    state: CircuitState, is_open: bool
) -> None:
    message = command_message(sample(state=state))

    assert message["isCircuitBreakerOpen"] is is_open
    assert message["circuitState"] == state.value


def test_a_pool_message_has_every_field_the_dashboard_reads() -> None:
    message = pool_message(sample())

    assert set(message) == set(POOL_FIELDS)
    assert {kind(v) for f, v in message.items() if f not in {"type", "name"}} == {"int"}


def test_a_pool_message_s_values_come_from_the_pool() -> None:
    message = pool_message(sample())

    assert message == {
        "type": "HystrixThreadPool",
        "name": "pool-of-a",
        "currentTime": round(TIME * 1000),
        "currentActiveCount": 2,
        "currentCompletedTaskCount": 30,
        "currentCorePoolSize": 12,
        "currentLargestPoolSize": 6,
        "currentMaximumPoolSize": 12,
        "currentPoolSize": 5,
        "currentQueueSize": 1,
        "currentTaskCount": 33,  # completed + active + queued, as ThreadPoolExecutor counts
        "rollingCountThreadsExecuted": 17,
        "rollingMaxActiveThreads": 4,
        "rollingCountCommandRejections": 8,
        "propertyValue_queueSizeRejectionThreshold": 3,
        "propertyValue_metricsRollingStatisticalWindowInMilliseconds": 7000,
        "reportingHosts": 1,
    }


def test_an_event_is_one_data_line_of_json_and_a_blank_line() -> None:
    message = command_message(sample())

    event = sse_event(message)

    assert event.startswith(b"data: ")
    assert event.endswith(b"\n\n")
    assert event.count(b"\n") == 2
    assert json.loads(event[len(b"data: ") :]) == message


def test_a_named_event_says_its_name_first() -> None:
    event = sse_event({"connected": True}, "fleet")

    assert event == b'event: fleet\ndata: {"connected":true}\n\n'


#: Numeric fields that are no per-host figure: a time, a ratio, the host count.
NOT_SUMMED = {"currentTime", "errorPercentage", "reportingHosts"}


def test_the_summed_fields_are_every_per_host_figure_of_a_command_message() -> None:
    """The fleet-wide stream sums COMMAND_SUMS and LATENCIES: a new figure must join them."""
    message = command_message(sample())

    numeric = {
        field
        for field, value in message.items()
        if kind(value) in ("int", "float", "dict") and not field.startswith("propertyValue_")
    }
    assert numeric - NOT_SUMMED == {*COMMAND_SUMS, *SUMMED_LATENCIES}
    assert len(COMMAND_SUMS) == len(set(COMMAND_SUMS))


def test_the_summed_fields_are_every_per_host_figure_of_a_pool_message() -> None:
    message = pool_message(sample())

    numeric = {
        field
        for field, value in message.items()
        if kind(value) in ("int", "float") and not field.startswith("propertyValue_")
    }
    assert numeric - NOT_SUMMED == set(POOL_SUMS)


def test_the_ping_is_an_sse_comment_line() -> None:
    assert PING == b"ping: \n\n"


def test_a_batch_sends_every_command_then_every_pool_once() -> None:
    shared = sample("c").pool
    metrics = [sample("a"), sample("b"), sample("c"), sample("d", pool=shared)]

    lines = [json.loads(line[6:]) for line in batch(metrics).split(b"\n\n") if line]

    assert [(m["type"], m["name"]) for m in lines] == [
        ("HystrixCommand", "a"),
        ("HystrixCommand", "b"),
        ("HystrixCommand", "c"),
        ("HystrixCommand", "d"),
        ("HystrixThreadPool", "pool-of-a"),
        ("HystrixThreadPool", "pool-of-b"),
        ("HystrixThreadPool", "pool-of-c"),
    ]


def test_a_batch_of_nothing_is_empty() -> None:
    assert batch([]) == b""


def test_snapshots_read_the_source_given() -> None:
    source = Source(sample("a"), sample("b"))

    assert [m.key for m in snapshots(source)] == ["a", "b"]
    assert source.reads == 1


def test_snapshots_of_none_read_the_default_registry() -> None:
    CommandRegistry.reset()
    try:
        CommandRegistry.do("stream-default", lambda: "ok")
        assert [m.key for m in snapshots(None)] == ["stream-default"]
    finally:
        CommandRegistry.reset()


# -- ticks: rendered once, kept from one tick to the next, picked by key or group ----------------


def events_of(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in body.split(b"\n\n") if line.startswith(b"data: ")]


def fresh(m: CommandMetrics) -> bytes:
    """``m`` rendered by a renderer that kept nothing."""
    return Renderer().tick([m]).body()


def test_a_tick_is_the_same_bytes_as_a_batch() -> None:
    shared = sample("c").pool
    metrics = [sample("a"), sample("b", group='q"uo\u00e9'), sample("c"), sample("d", pool=shared)]
    tricky = sample('k","currentTime":5', group='"currentTime":1')  # the field's name, quoted

    assert Renderer().tick(metrics).body() == batch(metrics)
    later = Renderer()
    later.tick([tricky])
    body = later.tick([dataclasses.replace(tricky, time=TIME + 2)]).body()
    assert [m["currentTime"] for m in events_of(body)] == [round((TIME + 2) * 1000)] * 2
    assert events_of(body)[0]["name"] == 'k","currentTime":5'


def test_a_key_that_did_not_change_gets_only_its_time_written_anew() -> None:
    renderer = Renderer()
    renderer.tick([sample("a")])

    later = sample("a", time=TIME + 1.5)
    body = renderer.tick([later]).body()

    assert body == fresh(later)
    assert [m["currentTime"] for m in events_of(body)] == [round((TIME + 1.5) * 1000)] * 2


def changed(value: Any) -> Any:
    """Another value of the same kind."""
    if value is None:  # an optional description (CommandMetrics.injection)
        return "latency=1s, rate=1, duration=30s"
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, CircuitState):  # a str too
        return CircuitState.HALF_OPEN if value is not CircuitState.HALF_OPEN else CircuitState.OPEN
    if isinstance(value, str):
        return value + "-x"
    if isinstance(value, Latency):
        return dataclasses.replace(
            value, mean=value.mean + 0.001, percentiles={**value.percentiles, "99": 0.5}
        )
    if isinstance(value, dict):
        first = next(iter(value))
        return {**value, first: value[first] + 1}
    if isinstance(value, CommandConfig):
        return dataclasses.replace(value, sleep_window=value.sleep_window + 1)
    raise AssertionError(f"no other value for {value!r}")


#: Fields the stream's messages do not show.
UNSHOWN = {"key", "time", "totals", "transitions"}
SHOWN = [f.name for f in dataclasses.fields(CommandMetrics) if f.name not in UNSHOWN | {"pool"}]
POOL_FIELDS_SHOWN = [f.name for f in dataclasses.fields(PoolMetrics)]


@pytest.mark.parametrize("field", SHOWN)
def test_a_key_whose_metrics_changed_is_rendered_again(field: str) -> None:
    renderer = Renderer()
    before = sample("a")
    renderer.tick([before])

    after = dataclasses.replace(before, **{field: changed(getattr(before, field))})
    body = renderer.tick([after]).body()

    assert body == fresh(after)
    assert body != fresh(before)


@pytest.mark.parametrize("field", POOL_FIELDS_SHOWN)
def test_a_pool_whose_figures_changed_is_rendered_again(field: str) -> None:
    renderer = Renderer()
    before = sample("a")
    renderer.tick([before])

    pool = dataclasses.replace(before.pool, **{field: changed(getattr(before.pool, field))})
    after = dataclasses.replace(before, pool=pool)
    body = renderer.tick([after]).body()

    assert body == fresh(after)
    assert body != fresh(before)


def test_a_key_gone_from_the_source_is_forgotten_and_rendered_afresh_when_back() -> None:
    renderer = Renderer()
    renderer.tick([sample("a"), sample("b")])
    assert events_of(renderer.tick([sample("b")]).body())[0]["name"] == "b"

    back = sample("a", errors=1)
    assert renderer.tick([back, sample("b")]).body() == batch([back, sample("b")])


GROUPED = [
    sample("a", group="Issues"),
    sample("b", group="Users"),
    sample("c", group="Issues", pool=sample("a").pool),
    sample("d", group="Users"),
]


def names(body: bytes) -> list[tuple[str, str]]:
    return [(m["type"][7:], m["name"]) for m in events_of(body)]


def test_a_tick_picks_the_keys_asked_for_in_the_source_s_order_with_their_pools() -> None:
    tick = Renderer().tick(GROUPED)

    assert names(tick.body(keys={"d", "c", "unknown"})) == [
        ("Command", "c"),
        ("Command", "d"),
        ("ThreadPool", "pool-of-a"),
        ("ThreadPool", "pool-of-d"),
    ]
    assert tick.body(keys=set()) == b""


def test_a_tick_picks_the_groups_asked_for_and_both_filters_must_match() -> None:
    tick = Renderer().tick(GROUPED)

    assert names(tick.body(groups={"Issues"})) == [
        ("Command", "a"),
        ("Command", "c"),
        ("ThreadPool", "pool-of-a"),
    ]
    assert names(tick.body(keys={"a", "b"}, groups={"Users"})) == [
        ("Command", "b"),
        ("ThreadPool", "pool-of-b"),
    ]
    assert tick.body(groups={"nobody"}) == b""


def test_a_tick_ends_with_what_it_is_asked_to_and_joins_the_whole_once() -> None:
    tick = Renderer().tick(GROUPED)

    whole = tick.body(end=PING)

    assert whole == batch(GROUPED) + PING
    assert tick.body(end=PING) is whole
    assert tick.body(keys={"a"}, end=PING).endswith(PING)
    assert tick.keys == ["a", "b", "c", "d"]


def test_a_tick_of_ready_made_messages_picks_them_the_same_way() -> None:
    pools = [pool_message(GROUPED[n]) for n in (0, 1, 3)]  # c shares a's pool
    messages = [command_message(m) for m in GROUPED] + pools

    tick = Tick.of_messages(messages, head=b"event: x\ndata: {}\n\n")

    assert tick.body() == b"event: x\ndata: {}\n\n" + batch(GROUPED)
    assert names(tick.body(groups={"Users"})) == [
        ("Command", "b"),
        ("Command", "d"),
        ("ThreadPool", "pool-of-b"),
        ("ThreadPool", "pool-of-d"),
    ]
    assert tick.body(keys={"a"}).startswith(b"event: x\n")
