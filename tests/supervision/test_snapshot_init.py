"""``CommandMetrics`` and ``PoolMetrics`` are built by a quicker ``__init__`` than the one
dataclasses generates for a frozen class: the same signature, the same objects, still frozen."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from typing import Any

import pytest

from supervision import CircuitState, CommandConfig, EventType
from supervision.snapshot import CommandMetrics, Latency, PoolMetrics

POOL = {
    "name": "p",
    "active": 1,
    "queued": 2,
    "pool_size": 3,
    "largest_pool_size": 4,
    "max_pool_size": 5,
    "completed": 6,
    "rolling_executed": 7,
    "rolling_max_active": 8,
    "rolling_rejected": 9,
    "queue_size": 10,
    "rolling_window": 11.0,
}


def metrics(**changes: Any) -> CommandMetrics:
    latency = Latency(0, 0.0, {})
    fields: dict[str, Any] = {
        "key": "k",
        "group": "g",
        "time": 1.5,
        "state": CircuitState.CLOSED,
        "status": "up",
        "counts": {EventType.SUCCESS: 1},
        "totals": {EventType.SUCCESS: 2},
        "transitions": {},
        "requests": 1,
        "errors": 0,
        "error_percent": 0.0,
        "in_flight": 0,
        "rolling_max_in_flight": 1,
        "zombies": 0,
        "latency_execute": latency,
        "latency_total": latency,
        "pool": PoolMetrics(**POOL),
        "config": CommandConfig(),
        "limit": 10,
        "injection": None,
        "cache_enabled": False,
    }
    return CommandMetrics(**{**fields, **changes})


def generated(cls: type[Any]) -> type[Any]:
    """The same dataclass with the ``__init__`` dataclasses generates."""
    return dataclasses.make_dataclass(
        cls.__name__,
        [(f.name, f.type) for f in dataclasses.fields(cls)],
        frozen=True,
        slots=True,
    )


@pytest.mark.parametrize("cls", [CommandMetrics, PoolMetrics])
def test_the_quick_init_takes_what_the_generated_one_takes(cls: type[Any]) -> None:
    ours = inspect.signature(cls)
    theirs = inspect.signature(generated(cls))

    assert list(ours.parameters) == list(theirs.parameters)
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in ours.parameters.values())
    assert all(p.default is inspect.Parameter.empty for p in ours.parameters.values())


def test_every_field_is_set_by_keyword_or_by_position() -> None:
    by_keyword = PoolMetrics(**POOL)
    by_position = PoolMetrics(*POOL.values())

    assert dataclasses.asdict(by_keyword) == POOL
    assert by_position == by_keyword
    assert hash(by_position) == hash(by_keyword)


def test_a_missing_or_unknown_field_is_refused() -> None:
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'queue_size'"):
        PoolMetrics(**{k: v for k, v in POOL.items() if k != "queue_size"})
    with pytest.raises(TypeError, match="unexpected keyword argument 'extra'"):
        PoolMetrics(**POOL, extra=1)


def test_the_objects_stay_frozen_and_copy_replace_and_pickle_as_before() -> None:
    m = metrics()

    with pytest.raises(dataclasses.FrozenInstanceError):
        m.key = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.pool.active = 0  # type: ignore[misc]
    assert dataclasses.replace(m, key="other") == metrics(key="other")
    assert pickle.loads(pickle.dumps(m)) == m
    assert copy.deepcopy(m) == m
    assert repr(m.pool) == repr(generated(PoolMetrics)(**POOL))
