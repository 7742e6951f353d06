"""Fault injection's pure core: the plan's validation and its faults, the injector's expiry and
its seeded draws (a fake clock: nothing sleeps)."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from supervision import FakeClock, FaultPlan, Injector
from supervision.injection import UNSET


class RefusedError(Exception):
    pass


class NeedsAnArgumentError(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)


def ran() -> str:
    return "ran"


# -- the plan -------------------------------------------------------------------------------------


def test_a_plan_s_defaults_fault_every_run_for_thirty_seconds() -> None:
    plan = FaultPlan(error=RefusedError)

    assert plan.rate == 1.0
    assert plan.duration == 30.0
    assert plan.latency is None
    assert plan.outcome is UNSET
    assert plan.seed is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"latency": -0.1}, "latency must be a finite number of seconds >= 0 and <= 86400 or None"),
        ({"latency": float("nan")}, "latency must be a finite number of seconds"),
        ({"latency": 86_400.5}, "got 86400.5"),
        ({"latency": "1"}, "got '1'"),
        ({"error": RefusedError, "rate": 1.5}, "rate must be a finite number >= 0 and <= 1"),
        ({"error": RefusedError, "rate": -0.1}, "got -0.1"),
        ({"error": RefusedError, "rate": True}, "got True"),
        ({"error": RefusedError, "duration": 0}, "duration must be a finite number of seconds > 0"),
        ({"error": RefusedError, "duration": 86_401}, "<= 86400, got 86401"),
        ({"error": RefusedError, "duration": float("inf")}, "got inf"),
        ({"error": RefusedError, "seed": 1.5}, "seed must be an int or None, got 1.5"),
        ({"error": RefusedError, "seed": True}, "seed must be an int or None, got True"),
        ({"error": "boom"}, "error must be an Exception instance or subclass, or None, got 'boom'"),
        ({"error": KeyboardInterrupt}, "error must be an Exception instance or subclass"),
        ({"error": NeedsAnArgumentError}, "an Exception subclass that takes no arguments"),
        ({"error": RefusedError, "outcome": 1}, "error and outcome cannot be combined"),
        ({"error": RefusedError(), "outcome": None}, "got error=RefusedError() and outcome=None"),
        ({}, "an injection needs latency, error or outcome, got none of them"),
        ({"rate": 0.5, "seed": 3}, "an injection needs latency, error or outcome"),
    ],
)
def test_every_bad_value_is_refused_naming_the_field_the_range_and_the_value(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FaultPlan(**fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"latency": 0.0},
        {"latency": 86_400},
        {"latency": 0.2, "error": RefusedError},
        {"latency": 0.2, "outcome": []},
        {"outcome": None},
        {"error": RefusedError(), "rate": 0, "duration": 0.001, "seed": 0},
    ],
)
def test_good_values_and_the_combinations_that_make_sense_are_accepted(
    fields: dict[str, Any],
) -> None:
    FaultPlan(**fields)


def test_a_plan_is_frozen() -> None:
    plan = FaultPlan(error=RefusedError)

    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.rate = 0.5  # type: ignore[misc]


def test_an_error_class_is_raised_anew_for_each_faulted_run() -> None:
    plan = FaultPlan(error=RefusedError)

    raised = []
    for _ in range(2):
        with pytest.raises(RefusedError) as caught:
            plan.instead(ran)
        raised.append(caught.value)

    assert raised[0] is not raised[1]


def test_an_error_instance_is_raised_as_is_without_a_growing_traceback() -> None:
    error = RefusedError("the dependency is down")
    plan = FaultPlan(error=error)

    depths = []
    for _ in range(3):
        with pytest.raises(RefusedError) as caught:
            plan.instead(ran)
        assert caught.value is error
        depth, tb = 0, caught.value.__traceback__
        while tb is not None:
            depth, tb = depth + 1, tb.tb_next
        depths.append(depth)

    assert depths[0] == depths[1] == depths[2]


def test_an_outcome_is_returned_instead_of_running_none_included() -> None:
    assert FaultPlan(outcome={"id": 7}).instead(ran) == {"id": 7}
    assert FaultPlan(outcome=None).instead(ran) is None


def test_latency_alone_then_runs() -> None:
    assert FaultPlan(latency=0.2).instead(ran) == "ran"


@pytest.mark.parametrize(
    ("latency", "time_left", "wait"),
    [
        (None, 1.0, (0.0, False)),
        (0.2, 1.0, (0.2, False)),
        (1.0, 1.0, (1.0, True)),  # reaching the deadline is a timeout
        (5.0, 1.0, (1.0, True)),  # cut at the deadline
        (5.0, -0.5, (0.0, True)),  # no time left at all
    ],
)
def test_the_wait_is_the_latency_cut_at_the_deadline(
    latency: float | None, time_left: float, wait: tuple[float, bool]
) -> None:
    plan = FaultPlan(latency=latency, outcome="x")

    assert plan.wait(time_left) == wait


def test_a_plan_describes_itself_in_one_short_line() -> None:
    assert FaultPlan(error=ConnectionError).describe() == (
        "error=ConnectionError, rate=1, duration=30s"
    )
    assert FaultPlan(latency=0.25, outcome=[1, 2], rate=0.5, duration=60, seed=7).describe() == (
        "latency=0.25s, outcome=[1, 2], rate=0.5, duration=60s, seed=7"
    )
    assert FaultPlan(error=RefusedError("down")).describe() == (
        "error=RefusedError('down'), rate=1, duration=30s"
    )


# -- the injector ---------------------------------------------------------------------------------


def test_an_injector_faults_every_run_until_its_duration_is_over() -> None:
    clock = FakeClock()
    plan = FaultPlan(error=RefusedError, duration=10.0)
    injector = Injector(plan, clock)

    assert injector.draw() is plan
    clock.advance(9.999)
    assert injector.draw() is plan
    assert not injector.expired()
    assert injector.remaining() == pytest.approx(0.001)
    clock.advance(0.001)

    assert injector.expired()
    assert injector.remaining() == 0.0
    assert injector.draw() is None
    assert (injector.runs, injector.faulted) == (2, 2)  # runs after the end are not counted


def test_a_seeded_rate_faults_the_runs_random_random_picks_reproducibly() -> None:
    plan = FaultPlan(error=RefusedError, rate=0.3, seed=42)
    dice = random.Random(42)
    expected = [dice.random() < 0.3 for _ in range(200)]

    injector, again = Injector(plan, FakeClock()), Injector(plan, FakeClock())
    pattern = [injector.draw() is plan for _ in range(200)]
    repeated = [again.draw() is plan for _ in range(200)]

    assert pattern == expected == repeated
    assert 40 <= sum(pattern) <= 80  # about 30 % of 200
    assert (injector.runs, injector.faulted) == (200, sum(pattern))


def test_another_seed_gives_another_pattern() -> None:
    patterns = []
    for seed in (1, 2):
        plan = FaultPlan(outcome=0, rate=0.5, seed=seed)
        injector = Injector(plan, FakeClock())
        patterns.append([injector.draw() is plan for _ in range(64)])

    assert patterns[0] != patterns[1]


@pytest.mark.parametrize(("rate", "faulted"), [(0.0, 0), (1.0, 50)])
def test_rates_zero_and_one_fault_no_run_or_every_run(rate: float, faulted: int) -> None:
    plan = FaultPlan(error=RefusedError, rate=rate, seed=5)
    injector = Injector(plan, FakeClock())

    results = [injector.draw() for _ in range(50)]

    assert sum(result is plan for result in results) == faulted
    assert injector.runs == 50
