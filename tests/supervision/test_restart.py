"""Restart decisions: the flat table, Akka's backoff, and restart intensity on a fake clock."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from supervision import (
    DECISIONS,
    Child,
    Decision,
    Directive,
    FakeClock,
    Restarts,
    RestartStrategy,
    SupervisionPolicy,
    backoff_delay,
    decide,
)

W = Child.WORKER
SUP = Child.SUPERVISOR
ONE = RestartStrategy.ONE_FOR_ONE
ALL = RestartStrategy.ONE_FOR_ALL


class Jitter:
    """Hands out the given draws in turn and counts how many were taken."""

    def __init__(self, *draws: float) -> None:
        self._draws: Iterator[float] = itertools.cycle(draws or (0.0,))
        self.taken = 0

    def __call__(self) -> float:
        self.taken += 1
        return next(self._draws)


# -- the table -------------------------------------------------------------------------------

#: The table written out again, as the module docstring describes it.
EXPECTED_TABLE = {
    (W, ONE, True): Directive.RESTART,
    (W, ALL, True): Directive.RESTART_ALL,
    (W, ONE, False): Directive.ESCALATE,
    (W, ALL, False): Directive.ESCALATE,
    (SUP, ONE, True): Directive.RESTART_AFTER,
    (SUP, ALL, True): Directive.RESTART_AFTER,
    (SUP, ONE, False): Directive.GIVE_UP,
    (SUP, ALL, False): Directive.GIVE_UP,
}


def test_the_table_covers_every_child_strategy_and_intensity_exactly_once() -> None:
    every = set(itertools.product(Child, RestartStrategy, (True, False)))

    assert set(DECISIONS) == every
    assert len(DECISIONS) == len(every)


def test_the_table_says_what_the_policy_says() -> None:
    assert DECISIONS == EXPECTED_TABLE


def test_every_directive_is_reachable_from_the_table() -> None:
    assert set(DECISIONS.values()) == set(Directive)


@pytest.mark.parametrize(
    ("case", "directive"),
    list(EXPECTED_TABLE.items()),
    ids=[f"{c}-{s}-{'within' if w else 'past'}" for c, s, w in EXPECTED_TABLE],
)
def test_decide_reads_the_table(
    case: tuple[Child, RestartStrategy, bool], directive: Directive
) -> None:
    assert decide(*case) is directive


# -- backoff ---------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", range(10))
def test_the_backoff_doubles_from_the_min_backoff(attempt: int) -> None:
    assert backoff_delay(attempt, 0.1, 1_000.0, 0.2, 0.0) == 0.1 * 2**attempt


def test_the_backoff_is_capped_at_the_max_backoff() -> None:
    delays = [backoff_delay(attempt, 1.0, 5.0, 0.0, 0.0) for attempt in range(6)]

    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


@pytest.mark.parametrize(
    ("random_factor", "jitter", "stretch"),
    [(0.5, 0.0, 1.0), (0.5, 0.5, 1.25), (0.5, 0.999, 1.4995), (0.0, 0.9, 1.0), (2.0, 0.5, 2.0)],
)
def test_the_jitter_stretches_the_delay_by_up_to_the_random_factor(
    random_factor: float, jitter: float, stretch: float
) -> None:
    assert backoff_delay(2, 1.0, 100.0, random_factor, jitter) == pytest.approx(4.0 * stretch)


def test_the_jitter_stretches_a_capped_delay_too() -> None:
    assert backoff_delay(10, 1.0, 5.0, 0.5, 0.5) == pytest.approx(6.25)


@pytest.mark.parametrize("attempt", [-1, -2, -1_000])
def test_a_negative_attempt_raises_a_value_error_naming_it(attempt: int) -> None:
    with pytest.raises(ValueError) as raised:
        backoff_delay(attempt, 0.1, 10.0, 0.2, 0.5)

    assert "attempt" in str(raised.value)
    assert repr(attempt) in str(raised.value)


@pytest.mark.parametrize("attempt", [63, 64, 65, 1_023, 1_024, 1_025, 10**6, 10**30])
def test_a_huge_attempt_gives_the_max_backoff_without_overflowing(attempt: int) -> None:
    assert backoff_delay(attempt, 0.1, 10.0, 0.2, 0.5) == pytest.approx(11.0)


@pytest.mark.parametrize("attempt", [0, 1, 63, 64, 1_000, 10**6, 10**30])
def test_a_zero_min_backoff_stays_zero_however_many_attempts(attempt: int) -> None:
    assert backoff_delay(attempt, 0.0, 10.0, 0.2, 0.5) == 0.0


def _reference_backoff(
    attempt: int, min_backoff: float, max_backoff: float, random_factor: float, jitter: float
) -> float:
    base = min(Fraction(max_backoff), Fraction(min_backoff) * 2**attempt)  # exact, no overflow
    return float(base) * (1.0 + random_factor * jitter)


@settings(max_examples=300, deadline=None)
@given(
    attempt=st.integers(0, 3_000),
    min_backoff=st.floats(0.0, 100.0),
    extra=st.floats(0.0, 1_000.0),
    random_factor=st.floats(0.0, 5.0),
    jitter=st.floats(0.0, 1.0, exclude_max=True),
)
def test_the_backoff_is_the_min_doubled_per_attempt_capped_and_stretched(
    attempt: int, min_backoff: float, extra: float, random_factor: float, jitter: float
) -> None:
    max_backoff = min_backoff + extra

    delay = backoff_delay(attempt, min_backoff, max_backoff, random_factor, jitter)

    assert math.isfinite(delay)
    assert delay == pytest.approx(
        _reference_backoff(attempt, min_backoff, max_backoff, random_factor, jitter)
    )
    assert delay <= max_backoff * (1.0 + random_factor) or delay == pytest.approx(
        max_backoff * (1.0 + random_factor)
    )


# -- restart intensity: workers --------------------------------------------------------------


def _workers(clock: FakeClock, **policy: object) -> Restarts:
    return Restarts(W, SupervisionPolicy(**policy), clock, Jitter(0.5))  # type: ignore[arg-type]


def _supervisors(clock: FakeClock, jitter: Jitter, **policy: object) -> Restarts:
    return Restarts(SUP, SupervisionPolicy(**policy), clock, jitter)  # type: ignore[arg-type]


def test_a_worker_death_within_the_intensity_restarts_that_worker(clock: FakeClock) -> None:
    restarts = _workers(clock, max_restarts=3, restart_period=10.0)

    decision = restarts.died()

    assert decision == Decision(Directive.RESTART, 0.0, 1, 3, 10.0)


def test_worker_deaths_up_to_max_restarts_are_each_restarted(clock: FakeClock) -> None:
    restarts = _workers(clock, max_restarts=3, restart_period=10.0)

    decisions = [restarts.died() for _ in range(3)]

    assert [d.directive for d in decisions] == [Directive.RESTART] * 3
    assert [d.restarts for d in decisions] == [1, 2, 3]
    assert all(d.delay == 0.0 for d in decisions)


def test_under_one_for_all_a_worker_death_restarts_every_worker(clock: FakeClock) -> None:
    restarts = _workers(clock, strategy=ALL, max_restarts=2)

    assert [restarts.died().directive for _ in range(2)] == [Directive.RESTART_ALL] * 2


@pytest.mark.parametrize("strategy", list(RestartStrategy))
def test_one_death_more_than_max_restarts_within_the_period_escalates(
    clock: FakeClock, strategy: RestartStrategy
) -> None:
    restarts = _workers(clock, strategy=strategy, max_restarts=3, restart_period=10.0)
    for _ in range(3):
        restarts.died()
        clock.advance(3.0)  # the fourth death comes 9 s after the first

    decision = restarts.died()

    assert decision == Decision(Directive.ESCALATE, 0.0, 4, 3, 10.0)


@pytest.mark.parametrize("strategy", list(RestartStrategy))
def test_with_max_restarts_zero_the_first_death_escalates(
    clock: FakeClock, strategy: RestartStrategy
) -> None:
    restarts = _workers(clock, strategy=strategy, max_restarts=0)

    assert restarts.died().directive is Directive.ESCALATE


def test_deaths_older_than_the_period_are_forgotten(clock: FakeClock) -> None:
    restarts = _workers(clock, max_restarts=2, restart_period=10.0)
    restarts.died()
    restarts.died()
    clock.advance(10.001)

    decision = restarts.died()

    assert decision.directive is Directive.RESTART
    assert decision.restarts == 1


def test_a_death_just_inside_the_period_still_counts(clock: FakeClock) -> None:
    restarts = _workers(clock, max_restarts=2, restart_period=10.0)
    restarts.died()
    restarts.died()
    clock.advance(9.999)

    decision = restarts.died()

    assert decision.directive is Directive.ESCALATE
    assert decision.restarts == 3


def test_only_the_deaths_that_left_the_period_are_forgotten(clock: FakeClock) -> None:
    restarts = _workers(clock, max_restarts=2, restart_period=10.0)
    restarts.died()  # t=0
    clock.advance(6.0)
    restarts.died()  # t=6
    clock.advance(5.0)  # t=11: the first has left, the second has not

    assert restarts.died() == Decision(Directive.RESTART, 0.0, 2, 2, 10.0)
    assert restarts.died() == Decision(Directive.ESCALATE, 0.0, 3, 2, 10.0)


def test_a_worker_is_judged_on_the_restart_period_not_the_supervisors(
    clock: FakeClock,
) -> None:
    restarts = _workers(clock, max_restarts=1, restart_period=1.0, supervisor_restart_period=100.0)
    restarts.died()
    clock.advance(2.0)

    assert restarts.died().directive is Directive.RESTART


def test_a_worker_death_draws_no_backoff(clock: FakeClock) -> None:
    jitter = Jitter(0.9)
    restarts = Restarts(W, SupervisionPolicy(max_restarts=1), clock, jitter)

    assert restarts.died().delay == 0.0
    assert restarts.died().delay == 0.0  # escalated: no delay either


# -- restart intensity: supervisors ----------------------------------------------------------


def test_a_supervisor_is_restarted_after_a_backoff_that_doubles_per_restart(
    clock: FakeClock,
) -> None:
    restarts = _supervisors(
        clock,
        Jitter(0.0),
        max_supervisor_restarts=4,
        min_backoff=0.5,
        max_backoff=100.0,
        random_factor=0.2,
    )

    decisions = [restarts.died() for _ in range(4)]

    assert [d.directive for d in decisions] == [Directive.RESTART_AFTER] * 4
    assert [d.delay for d in decisions] == [0.5, 1.0, 2.0, 4.0]
    assert [d.restarts for d in decisions] == [1, 2, 3, 4]


def test_a_supervisors_backoff_is_stretched_by_the_injected_jitter(clock: FakeClock) -> None:
    jitter = Jitter(0.5, 0.25)
    restarts = _supervisors(clock, jitter, min_backoff=1.0, max_backoff=10.0, random_factor=0.4)

    first = restarts.died()
    second = restarts.died()

    assert first.delay == pytest.approx(1.0 * 1.2)
    assert second.delay == pytest.approx(2.0 * 1.1)
    assert jitter.taken == 2


def test_a_supervisors_backoff_stops_growing_at_the_max_backoff(clock: FakeClock) -> None:
    restarts = _supervisors(
        clock,
        Jitter(0.0),
        max_supervisor_restarts=6,
        min_backoff=1.0,
        max_backoff=5.0,
        random_factor=0.0,
    )

    assert [restarts.died().delay for _ in range(6)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


@pytest.mark.parametrize("strategy", list(RestartStrategy))
def test_past_max_supervisor_restarts_within_the_period_the_key_gives_up(
    clock: FakeClock, strategy: RestartStrategy
) -> None:
    restarts = _supervisors(
        clock,
        Jitter(0.5),
        strategy=strategy,
        max_supervisor_restarts=2,
        supervisor_restart_period=60.0,
    )
    restarts.died()
    clock.advance(30.0)
    restarts.died()
    clock.advance(29.0)

    decision = restarts.died()

    assert decision == Decision(Directive.GIVE_UP, 0.0, 3, 2, 60.0)


def test_with_max_supervisor_restarts_zero_the_first_supervisor_death_gives_up(
    clock: FakeClock,
) -> None:
    restarts = _supervisors(clock, Jitter(0.5), max_supervisor_restarts=0)

    assert restarts.died().directive is Directive.GIVE_UP


def test_a_supervisor_is_judged_on_the_supervisor_restart_period(clock: FakeClock) -> None:
    restarts = _supervisors(
        clock,
        Jitter(0.0),
        max_supervisor_restarts=1,
        restart_period=1.0,
        supervisor_restart_period=60.0,
    )
    restarts.died()
    clock.advance(30.0)  # long past restart_period, well within supervisor_restart_period

    assert restarts.died().directive is Directive.GIVE_UP


def test_once_old_supervisor_deaths_are_forgotten_the_backoff_starts_small_again(
    clock: FakeClock,
) -> None:
    restarts = _supervisors(
        clock,
        Jitter(0.0),
        max_supervisor_restarts=3,
        supervisor_restart_period=60.0,
        min_backoff=1.0,
        max_backoff=100.0,
    )
    restarts.died()
    restarts.died()
    clock.advance(61.0)

    decision = restarts.died()

    assert decision.directive is Directive.RESTART_AFTER
    assert decision.delay == 1.0


# -- recent and reset ------------------------------------------------------------------------


def test_recent_counts_the_deaths_within_the_period(clock: FakeClock) -> None:
    restarts = _workers(clock, restart_period=10.0)
    assert restarts.recent() == 0

    restarts.died()
    clock.advance(4.0)
    restarts.died()
    assert restarts.recent() == 2

    clock.advance(6.5)
    assert restarts.recent() == 1

    clock.advance(4.0)
    assert restarts.recent() == 0


def test_recent_records_nothing(clock: FakeClock) -> None:
    restarts = _workers(clock, max_restarts=1)
    for _ in range(5):
        restarts.recent()

    assert restarts.died().directive is Directive.RESTART


def test_reset_forgets_every_death(clock: FakeClock) -> None:
    restarts = _workers(clock, max_restarts=2)
    for _ in range(3):
        restarts.died()

    restarts.reset()

    assert restarts.recent() == 0
    assert restarts.died() == Decision(Directive.RESTART, 0.0, 1, 2, 10.0)


def test_after_reset_a_supervisors_backoff_starts_from_the_min_again(clock: FakeClock) -> None:
    restarts = _supervisors(
        clock, Jitter(0.0), max_supervisor_restarts=5, min_backoff=1.0, max_backoff=100.0
    )
    for _ in range(4):
        restarts.died()

    restarts.reset()

    assert restarts.died().delay == 1.0


def test_the_default_jitter_keeps_the_delay_within_the_random_factor(clock: FakeClock) -> None:
    restarts = Restarts(
        SUP, SupervisionPolicy(min_backoff=1.0, max_backoff=1.0, random_factor=0.5), clock
    )

    delays = [restarts.died().delay for _ in range(3)]

    assert all(1.0 <= delay < 1.5 for delay in delays)


# -- against a reference model ---------------------------------------------------------------


class Model:
    """Deaths as a plain list of instants; a death counts while less than a period old."""

    def __init__(self, child: Child, policy: SupervisionPolicy) -> None:
        self.child = child
        self.policy = policy
        self.deaths: list[float] = []
        if child is W:
            self.max, self.period = policy.max_restarts, policy.restart_period
        else:
            self.max, self.period = policy.max_supervisor_restarts, policy.supervisor_restart_period

    def recent(self, now: float) -> int:
        self.deaths = [t for t in self.deaths if t > now - self.period]
        return len(self.deaths)

    def died(self, now: float, jitter: float) -> Decision:
        count = self.recent(now) + 1
        self.deaths.append(now)
        within = count <= self.max
        if self.child is W:
            if not within:
                directive = Directive.ESCALATE
            elif self.policy.strategy is ONE:
                directive = Directive.RESTART
            else:
                directive = Directive.RESTART_ALL
            delay = 0.0
        elif within:
            directive = Directive.RESTART_AFTER
            policy = self.policy
            base = min(policy.max_backoff, policy.min_backoff * 2 ** (count - 1))
            delay = base * (1.0 + policy.random_factor * jitter)
        else:
            directive, delay = Directive.GIVE_UP, 0.0
        return Decision(directive, delay, count, self.max, self.period)


_DIE = st.tuples(st.just("die"), st.floats(0.0, 1.0, exclude_max=True))
_STEP = st.one_of(
    st.tuples(st.just("advance"), st.integers(0, 8).map(lambda quarters: quarters / 4)),
    _DIE,
    _DIE,  # deaths twice as often as the rest, so the intensity is often exceeded
    st.tuples(st.just("recent"), st.just(0.0)),
    st.tuples(st.just("reset"), st.just(0.0)),
)


@settings(max_examples=300, deadline=None)
@example(  # a death exactly one period old has left the period
    child=W,
    strategy=ONE,
    max_restarts=1,
    period=1.0,
    steps=[("die", 0.0), ("advance", 0.5), ("advance", 0.5), ("recent", 0.0), ("die", 0.0)],
)
@given(
    child=st.sampled_from(list(Child)),
    strategy=st.sampled_from(list(RestartStrategy)),
    max_restarts=st.integers(0, 5),
    period=st.sampled_from([0.25, 0.5, 1.0, 1.75]),
    steps=st.lists(_STEP, max_size=40),
)
def test_restarts_decide_as_a_list_of_timestamps_would(
    child: Child,
    strategy: RestartStrategy,
    max_restarts: int,
    period: float,
    steps: list[tuple[str, float]],
) -> None:
    policy = SupervisionPolicy(
        strategy=strategy,
        max_restarts=max_restarts,
        restart_period=period,
        max_supervisor_restarts=max_restarts,
        supervisor_restart_period=period,
        min_backoff=0.25,
        max_backoff=3.0,
        random_factor=0.5,
    )
    clock = FakeClock(0.0)
    draws: list[float] = []
    restarts = Restarts(child, policy, clock, draws.pop)
    model = Model(child, policy)

    for action, value in steps:
        if action == "advance":
            clock.advance(value)
        elif action == "die":
            draws.append(value)
            assert restarts.died() == model.died(clock(), value)
        elif action == "recent":
            assert restarts.recent() == model.recent(clock())
        else:
            restarts.reset()
            model.deaths.clear()
