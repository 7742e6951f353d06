"""CommandConfig: Hystrix's defaults, frozen, keyword-only, and every bad value refused."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from supervision import CommandConfig, FleetPolicy, PoolConfig, SupervisionPolicy


def test_the_defaults_are_hystrixs() -> None:
    config = CommandConfig()

    assert config.timeout == 1.0
    assert config.max_concurrent_requests == 10
    assert config.request_volume_threshold == 20
    assert config.sleep_window == 5.0
    assert config.error_percent_threshold == 50
    assert config.queue_size == 0
    assert config.rolling_window == 10.0
    assert config.rolling_buckets == 10
    assert config.half_open_probes == 1
    assert config.fallback_max_concurrent == 10
    assert config.force_open is False
    assert config.force_closed is False
    assert config.ignore == ()
    assert config.fleet == FleetPolicy(mode="shared", quorum=2)
    assert config.isolation == "thread"
    assert config.pool is None
    assert config.retry is None and config.hedge is None


def test_a_pool_config_has_hystrixs_thread_pool_defaults() -> None:
    config = PoolConfig()

    assert (config.max_concurrent_requests, config.queue_size) == (10, 0)
    assert (config.rolling_window, config.rolling_buckets) == (10.0, 10)
    assert config.supervision == SupervisionPolicy()


def test_the_defaults_cover_every_field() -> None:
    names = {field.name for field in dataclasses.fields(CommandConfig)}

    assert names == {
        "timeout",
        "max_concurrent_requests",
        "request_volume_threshold",
        "sleep_window",
        "error_percent_threshold",
        "queue_size",
        "rolling_window",
        "rolling_buckets",
        "half_open_probes",
        "fallback_max_concurrent",
        "force_open",
        "force_closed",
        "supervision",
        "ignore",
        "fleet",
        "isolation",
        "pool",
        "retry",
        "hedge",
        "limit",
    }


def test_a_config_is_frozen() -> None:
    config = CommandConfig()

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.timeout = 2.0  # type: ignore[misc]


def test_a_config_is_slotted() -> None:
    assert not hasattr(CommandConfig(), "__dict__")


def test_a_config_takes_keywords_only() -> None:
    with pytest.raises(TypeError):
        CommandConfig(2.0)  # type: ignore[call-arg]


def test_two_configs_with_the_same_values_are_equal() -> None:
    assert CommandConfig(timeout=2.0) == CommandConfig(timeout=2.0)
    assert CommandConfig(timeout=2.0) != CommandConfig(timeout=3.0)


NAN = math.nan
INF = math.inf

INVALID: list[tuple[str, Any]] = [
    # timeout: finite seconds > 0
    ("timeout", 0),
    ("timeout", 0.0),
    ("timeout", -1.0),
    ("timeout", NAN),
    ("timeout", INF),
    ("timeout", -INF),
    ("timeout", True),
    ("timeout", "1.0"),
    ("timeout", None),
    # max_concurrent_requests: int 1..10_000
    ("max_concurrent_requests", 0),
    ("max_concurrent_requests", -1),
    ("max_concurrent_requests", 10_001),
    ("max_concurrent_requests", 10.0),
    ("max_concurrent_requests", 1.5),
    ("max_concurrent_requests", NAN),
    ("max_concurrent_requests", True),
    ("max_concurrent_requests", "10"),
    # request_volume_threshold: int >= 0
    ("request_volume_threshold", -1),
    ("request_volume_threshold", 20.0),
    ("request_volume_threshold", INF),
    ("request_volume_threshold", True),
    ("request_volume_threshold", "20"),
    ("request_volume_threshold", None),
    # sleep_window: finite seconds >= 0
    ("sleep_window", -0.001),
    ("sleep_window", -5),
    ("sleep_window", NAN),
    ("sleep_window", INF),
    ("sleep_window", False),
    ("sleep_window", "5"),
    # error_percent_threshold: number 0..100
    ("error_percent_threshold", -1),
    ("error_percent_threshold", -0.5),
    ("error_percent_threshold", 100.5),
    ("error_percent_threshold", 101),
    ("error_percent_threshold", NAN),
    ("error_percent_threshold", INF),
    ("error_percent_threshold", True),
    ("error_percent_threshold", "50"),
    ("error_percent_threshold", None),
    # queue_size: int 0..100_000
    ("queue_size", -1),
    ("queue_size", 100_001),
    ("queue_size", 1.0),
    ("queue_size", False),
    ("queue_size", "0"),
    # rolling_window: finite seconds > 0
    ("rolling_window", 0),
    ("rolling_window", 0.0),
    ("rolling_window", -10.0),
    ("rolling_window", NAN),
    ("rolling_window", INF),
    ("rolling_window", True),
    ("rolling_window", "10"),
    # rolling_buckets: int 1..1_000
    ("rolling_buckets", 0),
    ("rolling_buckets", -1),
    ("rolling_buckets", 1_001),
    ("rolling_buckets", 10.0),
    ("rolling_buckets", True),
    ("rolling_buckets", "10"),
    # half_open_probes: int 1..10_000
    ("half_open_probes", 0),
    ("half_open_probes", -1),
    ("half_open_probes", 10_001),
    ("half_open_probes", 1.0),
    ("half_open_probes", True),
    ("half_open_probes", "1"),
    # fallback_max_concurrent: int 1..10_000
    ("fallback_max_concurrent", 0),
    ("fallback_max_concurrent", -1),
    ("fallback_max_concurrent", 10_001),
    ("fallback_max_concurrent", 2.5),
    ("fallback_max_concurrent", False),
    ("fallback_max_concurrent", "10"),
    # force_open / force_closed: bool only
    ("force_open", 1),
    ("force_open", 0),
    ("force_open", "yes"),
    ("force_open", None),
    ("force_closed", 1),
    ("force_closed", 0),
    ("force_closed", ""),
    ("force_closed", None),
]


@pytest.mark.parametrize(("field", "value"), INVALID, ids=[f"{f}={v!r}" for f, v in INVALID])
def test_an_invalid_value_raises_a_value_error_naming_the_field_and_the_value(
    field: str, value: Any
) -> None:
    with pytest.raises(ValueError) as raised:
        CommandConfig(**{field: value})

    message = str(raised.value)
    assert field in message
    assert repr(value) in message
    assert "must be" in message


@pytest.mark.parametrize(("field", "value"), INVALID, ids=[f"{f}={v!r}" for f, v in INVALID])
def test_replace_validates_like_the_constructor(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        CommandConfig().replace(**{field: value})


VALID_EDGES: list[tuple[str, Any]] = [
    ("timeout", 1e-9),
    ("timeout", 2),
    ("max_concurrent_requests", 1),
    ("max_concurrent_requests", 10_000),
    ("request_volume_threshold", 0),
    ("request_volume_threshold", 1_000_000),
    ("sleep_window", 0),
    ("sleep_window", 0.0),
    ("error_percent_threshold", 0),
    ("error_percent_threshold", 100),
    ("error_percent_threshold", 33.3),
    ("queue_size", 0),
    ("queue_size", 100_000),
    ("rolling_window", 0.001),
    ("rolling_buckets", 1),
    ("rolling_buckets", 1_000),
    ("half_open_probes", 1),
    ("half_open_probes", 10_000),
    ("fallback_max_concurrent", 1),
    ("force_open", True),
    ("force_closed", True),
]


@pytest.mark.parametrize(
    ("field", "value"), VALID_EDGES, ids=[f"{f}={v!r}" for f, v in VALID_EDGES]
)
def test_a_value_at_the_edge_of_its_range_is_accepted(field: str, value: Any) -> None:
    config = CommandConfig(**{field: value})

    assert getattr(config, field) == value


def test_a_bad_value_message_states_the_allowed_range() -> None:
    with pytest.raises(ValueError, match=r"between 1 and 10000"):
        CommandConfig(max_concurrent_requests=0)
    with pytest.raises(ValueError, match=r"> 0"):
        CommandConfig(timeout=0.0)
    with pytest.raises(ValueError, match=r">= 0"):
        CommandConfig(sleep_window=-1.0)
    with pytest.raises(ValueError, match=r"between 0 and 100"):
        CommandConfig(error_percent_threshold=150)


def test_a_value_of_the_wrong_type_is_told_the_allowed_range_too() -> None:
    with pytest.raises(ValueError, match=r"integer between 1 and 10000, got 2\.5"):
        CommandConfig(max_concurrent_requests=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"seconds > 0 and <= 86400, got '1'"):
        CommandConfig(timeout="1")  # type: ignore[arg-type]


def test_replace_changes_only_the_fields_named() -> None:
    config = CommandConfig(timeout=3.0, queue_size=4)

    changed = config.replace(sleep_window=1.5)

    assert changed.sleep_window == 1.5
    assert changed.timeout == 3.0
    assert changed.queue_size == 4
    assert config.sleep_window == 5.0
    assert changed is not config


def test_replace_refuses_a_field_that_does_not_exist() -> None:
    with pytest.raises(TypeError):
        CommandConfig().replace(timeout_ms=1000)


# -- durations are at most one day -------------------------------------------------------------

#: Every duration of a config (float seconds). Longer than a day is a mistake (milliseconds
#: given as seconds), and would overflow the waits of the threads that keep time.
DURATIONS = ["timeout", "sleep_window", "rolling_window"]


@pytest.mark.parametrize("field", DURATIONS)
def test_a_duration_of_exactly_one_day_is_accepted(field: str) -> None:
    assert getattr(CommandConfig(**{field: 86_400.0}), field) == 86_400.0
    assert getattr(CommandConfig(**{field: 86_400}), field) == 86_400


@pytest.mark.parametrize("value", [86_400.5, 86_401, 1e10, 1e12, 10**20], ids=repr)
@pytest.mark.parametrize("field", DURATIONS)
def test_a_duration_over_one_day_is_refused_naming_the_field_the_range_and_the_value(
    field: str, value: float
) -> None:
    with pytest.raises(ValueError) as raised:
        CommandConfig(**{field: value})

    message = str(raised.value)
    assert message.startswith(f"{field} must be a finite number of seconds")
    assert "<= 86400" in message
    assert message.endswith(f"got {value!r}")


@pytest.mark.parametrize("field", DURATIONS)
def test_replace_refuses_a_duration_over_one_day_too(field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field} .*<= 86400, got 1000000000000\.0$"):
        CommandConfig().replace(**{field: 1e12})
