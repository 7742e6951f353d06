"""The Hystrix stream's messages, field by field, from hand-made ``CommandMetrics``."""

from __future__ import annotations

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
    batch,
    command_message,
    pool_message,
    snapshots,
    sse_event,
)
from actors.stream import LATENCIES as SUMMED_LATENCIES
from supervision import CircuitState, EventType
from supervision.snapshot import PERCENTILES, Latency

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
EXTENSIONS = ("circuitState", "status", "zombieCount")

BOOLEANS = {
    "isCircuitBreakerOpen",
    "propertyValue_circuitBreakerForceOpen",
    "propertyValue_circuitBreakerForceClosed",
    "propertyValue_circuitBreakerEnabled",
    "propertyValue_executionIsolationThreadInterruptOnTimeout",
    "propertyValue_requestCacheEnabled",
    "propertyValue_requestLogEnabled",
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
NULLS = {"propertyValue_executionIsolationThreadPoolKeyOverride"}


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return type(value).__name__


def test_a_command_message_has_every_field_the_dashboard_reads_and_our_three() -> None:
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
