"""SupervisionPolicy: Erlang's restart vocabulary as frozen data, every bad value refused."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervision import CommandConfig, RestartStrategy, SupervisionPolicy

NAN = math.nan
INF = math.inf
HUGE = 10**400  # an int no float can hold


def test_the_defaults_are_the_documented_ones() -> None:
    policy = SupervisionPolicy()

    assert policy.strategy is RestartStrategy.ONE_FOR_ONE
    assert policy.max_restarts == 10
    assert policy.restart_period == 10.0
    assert policy.max_supervisor_restarts == 3
    assert policy.supervisor_restart_period == 60.0
    assert policy.min_backoff == 0.1
    assert policy.max_backoff == 10.0
    assert policy.random_factor == 0.2
    assert policy.zombie_grace is None
    assert policy.max_zombies is None
    assert policy.passivate_after == 60.0


def test_the_defaults_cover_every_field() -> None:
    names = {field.name for field in dataclasses.fields(SupervisionPolicy)}

    assert names == {
        "strategy",
        "max_restarts",
        "restart_period",
        "max_supervisor_restarts",
        "supervisor_restart_period",
        "min_backoff",
        "max_backoff",
        "random_factor",
        "zombie_grace",
        "max_zombies",
        "passivate_after",
    }


def test_a_command_config_carries_the_default_policy() -> None:
    assert CommandConfig().supervision == SupervisionPolicy()


def test_a_policy_is_frozen() -> None:
    policy = SupervisionPolicy()

    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_restarts = 5  # type: ignore[misc]


def test_a_policy_is_slotted() -> None:
    assert not hasattr(SupervisionPolicy(), "__dict__")


def test_a_policy_takes_keywords_only() -> None:
    with pytest.raises(TypeError):
        SupervisionPolicy(RestartStrategy.ONE_FOR_ALL)  # type: ignore[misc]


def test_two_policies_with_the_same_values_are_equal() -> None:
    assert SupervisionPolicy(max_restarts=2) == SupervisionPolicy(max_restarts=2)
    assert SupervisionPolicy(max_restarts=2) != SupervisionPolicy(max_restarts=3)


# -- the strategy ----------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", list(RestartStrategy))
def test_the_strategy_accepts_the_enum_member(strategy: RestartStrategy) -> None:
    assert SupervisionPolicy(strategy=strategy).strategy is strategy


@pytest.mark.parametrize(
    ("value", "strategy"),
    [("one_for_one", RestartStrategy.ONE_FOR_ONE), ("one_for_all", RestartStrategy.ONE_FOR_ALL)],
)
def test_the_strategy_accepts_its_string_value_and_stores_the_enum_member(
    value: str, strategy: RestartStrategy
) -> None:
    policy = SupervisionPolicy(strategy=value)  # type: ignore[arg-type]

    assert policy.strategy is strategy


BAD_STRATEGIES: list[Any] = [
    "ONE_FOR_ONE",
    "one-for-one",
    "rest_for_one",
    "",
    None,
    0,
    True,
    1.5,
    ["one_for_one"],
    {"one_for_one": 1},
]


@pytest.mark.parametrize("value", BAD_STRATEGIES, ids=repr)
def test_an_unknown_strategy_raises_a_value_error_listing_the_allowed_ones(value: Any) -> None:
    with pytest.raises(ValueError) as raised:
        SupervisionPolicy(strategy=value)

    message = str(raised.value)
    assert "strategy" in message
    assert "'one_for_one'" in message
    assert "'one_for_all'" in message
    assert repr(value) in message


# -- every other field -----------------------------------------------------------------------

#: field -> (the allowed range as the message words it, bad values)
_COUNT_BAD: list[Any] = [-1, -1_000, 1_000_001, HUGE, 1.0, 2.5, NAN, INF, True, False, "3", None]
_PERIOD_BAD: list[Any] = [0, 0.0, -0.0, -1, -1e-9, NAN, INF, -INF, HUGE, True, False, "10", None]
_BACKOFF_BAD: list[Any] = [-1, -1e-9, NAN, INF, -INF, HUGE, True, False, "0.1", None]

BAD_VALUES: dict[str, tuple[str, list[Any]]] = {
    "max_restarts": ("between 0 and 1000000", _COUNT_BAD),
    "restart_period": ("> 0", _PERIOD_BAD),
    "max_supervisor_restarts": ("between 0 and 1000000", _COUNT_BAD),
    "supervisor_restart_period": ("> 0", _PERIOD_BAD),
    "min_backoff": (">= 0", _BACKOFF_BAD),
    "max_backoff": (">= 0", _BACKOFF_BAD),
    "random_factor": (">= 0", _BACKOFF_BAD),
    "zombie_grace": (">= 0", [-1, -1e-9, NAN, INF, -INF, HUGE, True, False, "1"]),
    "max_zombies": (
        "between 0 and 100000",
        [-1, 100_001, HUGE, 1.0, NAN, INF, True, False, "2"],
    ),
}

INVALID: list[tuple[str, str, Any]] = [
    (field, allowed, value) for field, (allowed, values) in BAD_VALUES.items() for value in values
]


def _id(field: str, value: Any) -> str:
    shown = "10**400" if value == HUGE else repr(value)
    return f"{field}={shown}"


@pytest.mark.parametrize(
    ("field", "allowed", "value"), INVALID, ids=[_id(f, v) for f, _, v in INVALID]
)
def test_an_invalid_value_raises_a_value_error_naming_the_field_the_range_and_the_value(
    field: str, allowed: str, value: Any
) -> None:
    with pytest.raises(ValueError) as raised:
        SupervisionPolicy(**{field: value})

    message = str(raised.value)
    assert field in message
    assert allowed in message
    assert repr(value)[:80] in message  # a long value may be cut short


@pytest.mark.parametrize(
    ("field", "allowed", "value"), INVALID, ids=[_id(f, v) for f, _, v in INVALID]
)
def test_replace_validates_like_the_constructor(field: str, allowed: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        SupervisionPolicy().replace(**{field: value})


class ReprBoom:
    """A value whose repr raises: the error about it must still be a ValueError."""

    def __repr__(self) -> str:
        raise RuntimeError("repr boom")


@pytest.mark.parametrize("field", [*sorted(BAD_VALUES), "strategy"])
def test_a_value_whose_repr_raises_is_still_refused_naming_the_field(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SupervisionPolicy(**{field: ReprBoom()})


VALID_EDGES: list[tuple[str, Any]] = [
    ("max_restarts", 0),
    ("max_restarts", 1_000_000),
    ("restart_period", 1e-9),
    ("restart_period", 3),
    ("max_supervisor_restarts", 0),
    ("max_supervisor_restarts", 1_000_000),
    ("supervisor_restart_period", 1e-9),
    ("min_backoff", 0),
    ("min_backoff", 10.0),  # equal to the default max_backoff
    ("max_backoff", 0.1),  # equal to the default min_backoff
    ("max_backoff", 86_400.0),  # one day: the longest duration accepted
    ("random_factor", 0),
    ("random_factor", 5.0),
    ("zombie_grace", None),
    ("zombie_grace", 0),
    ("zombie_grace", 0.5),
    ("max_zombies", None),
    ("max_zombies", 0),
    ("max_zombies", 100_000),
]


@pytest.mark.parametrize(("field", "value"), VALID_EDGES, ids=[_id(f, v) for f, v in VALID_EDGES])
def test_a_value_at_the_edge_of_its_range_is_accepted(field: str, value: Any) -> None:
    assert getattr(SupervisionPolicy(**{field: value}), field) == value


@pytest.mark.parametrize(("min_backoff", "max_backoff"), [(1.0, 0.5), (0.1, 0.0), (10.0, 9.999)])
def test_a_max_backoff_below_the_min_backoff_is_refused_naming_both(
    min_backoff: float, max_backoff: float
) -> None:
    with pytest.raises(ValueError) as raised:
        SupervisionPolicy(min_backoff=min_backoff, max_backoff=max_backoff)

    message = str(raised.value)
    assert "max_backoff" in message
    assert "min_backoff" in message
    assert repr(min_backoff) in message
    assert repr(max_backoff) in message


def test_a_max_backoff_equal_to_the_min_backoff_is_accepted() -> None:
    policy = SupervisionPolicy(min_backoff=2.0, max_backoff=2.0)

    assert policy.min_backoff == policy.max_backoff == 2.0


_ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([HUGE, -HUGE]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.sampled_from(list(RestartStrategy) + [s.value for s in RestartStrategy]),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from([*sorted(BAD_VALUES), "strategy"]), value=_ANYTHING)
def test_any_value_is_either_accepted_within_its_range_or_refused_naming_the_field(
    field: str, value: Any
) -> None:
    try:
        policy = SupervisionPolicy(**{field: value})
    except ValueError as error:
        assert field in str(error)
        return
    stored = getattr(policy, field)
    if field == "strategy":
        assert isinstance(stored, RestartStrategy)
    elif stored is not None:
        assert not isinstance(stored, bool)
        assert isinstance(stored, int | float)
        assert math.isfinite(stored)
        assert stored >= 0
        assert policy.min_backoff <= policy.max_backoff


# -- derived values --------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0.001, 0.5, 1.0, 30.0])
def test_the_grace_defaults_to_twice_the_commands_timeout(timeout: float) -> None:
    assert SupervisionPolicy().grace_for(timeout) == 2.0 * timeout


@pytest.mark.parametrize("grace", [0.0, 0.25, 7.0])
def test_a_grace_given_wins_over_the_commands_timeout(grace: float) -> None:
    policy = SupervisionPolicy(zombie_grace=grace)

    assert policy.grace_for(1.0) == grace
    assert policy.grace_for(100.0) == grace


@pytest.mark.parametrize("size", [1, 10, 10_000])
def test_the_zombie_cap_defaults_to_the_bulkhead_size(size: int) -> None:
    assert SupervisionPolicy().zombie_cap(size) == size


@pytest.mark.parametrize("cap", [0, 3, 100_000])
def test_a_zombie_cap_given_wins_over_the_bulkhead_size(cap: int) -> None:
    policy = SupervisionPolicy(max_zombies=cap)

    assert policy.zombie_cap(1) == cap
    assert policy.zombie_cap(10_000) == cap


# -- replace and the config ------------------------------------------------------------------


def test_replace_returns_a_changed_copy_and_leaves_the_original_alone() -> None:
    policy = SupervisionPolicy()

    changed = policy.replace(max_restarts=2, strategy="one_for_all")

    assert changed.max_restarts == 2
    assert changed.strategy is RestartStrategy.ONE_FOR_ALL
    assert changed.restart_period == policy.restart_period
    assert policy == SupervisionPolicy()


def test_replace_checks_the_backoffs_against_each_other() -> None:
    with pytest.raises(ValueError, match="max_backoff"):
        SupervisionPolicy(min_backoff=1.0, max_backoff=2.0).replace(max_backoff=0.5)


def test_replace_refuses_an_unknown_field() -> None:
    with pytest.raises(TypeError):
        SupervisionPolicy().replace(max_restart=2)


def test_a_command_config_takes_a_policy() -> None:
    policy = SupervisionPolicy(max_restarts=1)

    assert CommandConfig(supervision=policy).supervision is policy


@pytest.mark.parametrize(
    "value",
    [None, {"max_restarts": 1}, "one_for_one", RestartStrategy.ONE_FOR_ONE, 3, CommandConfig()],
    ids=repr,
)
def test_a_command_config_refuses_a_supervision_that_is_not_a_policy_naming_the_field(
    value: Any,
) -> None:
    with pytest.raises(ValueError) as raised:
        CommandConfig(supervision=value)

    message = str(raised.value)
    assert "supervision" in message
    assert "SupervisionPolicy" in message


# -- durations are at most one day -------------------------------------------------------------

#: Every duration of a policy (float seconds, at most a day: longer ones are mistakes, and
#: would overflow the timer's waits: a backoff or a grace of 1e10 s used to kill it).
DURATIONS = [
    "restart_period",
    "supervisor_restart_period",
    "min_backoff",
    "max_backoff",
    "zombie_grace",
    "passivate_after",
]


def _policy(field: str, value: Any) -> SupervisionPolicy:
    # min_backoff may not exceed max_backoff: raise the cap with it
    extra = {"max_backoff": 86_400.0} if field == "min_backoff" else {}
    return SupervisionPolicy(**{field: value}, **extra)


@pytest.mark.parametrize("field", DURATIONS)
def test_a_duration_of_exactly_one_day_is_accepted(field: str) -> None:
    assert getattr(_policy(field, 86_400.0), field) == 86_400.0


@pytest.mark.parametrize("value", [86_400.5, 86_401, 1e10, 1e12, 10**20], ids=repr)
@pytest.mark.parametrize("field", DURATIONS)
def test_a_duration_over_one_day_is_refused_naming_the_field_the_range_and_the_value(
    field: str, value: float
) -> None:
    with pytest.raises(ValueError) as raised:
        _policy(field, value)

    message = str(raised.value)
    assert message.startswith(f"{field} must be a finite number of seconds")
    assert "<= 86400" in message
    assert message.endswith(f"got {value!r}")


@pytest.mark.parametrize("field", DURATIONS)
def test_replace_refuses_a_duration_over_one_day_too(field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field} .*<= 86400, got 1000000000000\.0$"):
        SupervisionPolicy().replace(**{field: 1e12})
