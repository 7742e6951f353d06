"""The breaker against a small reference model, step by step (hypothesis stateful testing).

The model keeps every outcome with its bucket id (the window is bucketed exactly as the real one:
bucket id = floor(now / width), kept while id > current - buckets) and decides with plain lists
and integer arithmetic. Both run on the same fake clock; after every step their states, window
counts, admission decisions and reported transitions must agree.

A closed circuit is judged after every outcome that counts towards health (a normal call's, or a
stale probe's: both are real calls); SHORT_CIRCUITED and BAD_REQUEST change no count.
"""

from __future__ import annotations

import dataclasses

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from supervision import CircuitBreaker, CommandConfig, EventType, FakeClock, Permit, Transition

S = EventType.SUCCESS
F = EventType.FAILURE
TIMEOUT = EventType.TIMEOUT
BAD = EventType.BAD_REQUEST
REJECTED = EventType.THREAD_POOL_REJECTED
SHORT = EventType.SHORT_CIRCUITED

# The model's own vocabulary, written out rather than imported.
MODEL_ERRORS = frozenset({F, TIMEOUT, REJECTED})
MODEL_COUNTED = MODEL_ERRORS | {S}
OUTCOMES = [S, F, TIMEOUT, BAD, REJECTED]

Move = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class ModelPermit:
    probe: bool
    epoch: int


class Model:
    """What the breaker should do, in the plainest terms."""

    def __init__(self, config: CommandConfig) -> None:
        self.config = config
        self.width = config.rolling_window / config.rolling_buckets
        self.state = "closed"
        self.outcomes: list[tuple[int, EventType]] = []
        self.opened_at = 0.0
        self.epoch = 0
        self.probes_admitted = 0
        self.probe_successes = 0

    def window(self, now: float) -> list[EventType]:
        current = int(now // self.width)
        oldest_kept = current - self.config.rolling_buckets
        return [event for bucket, event in self.outcomes if bucket > oldest_kept]

    def requests(self, now: float) -> int:
        return sum(event in MODEL_COUNTED for event in self.window(now))

    def errors(self, now: float) -> int:
        return sum(event in MODEL_ERRORS for event in self.window(now))

    def _move(self, to: str, now: float) -> Move:
        move = (self.state, to)
        self.state = to
        self.epoch += 1
        self.probes_admitted = 0
        self.probe_successes = 0
        if to == "open":
            self.opened_at = now
        if to == "closed":
            self.outcomes.clear()
        return move

    def acquire(self, now: float) -> tuple[ModelPermit | None, list[Move]]:
        if self.state == "closed":
            return ModelPermit(probe=False, epoch=-1), []
        if self.state == "open":
            if now - self.opened_at < self.config.sleep_window:
                return None, []
            moved = self._move("half_open", now)
            self.probes_admitted = 1
            return ModelPermit(probe=True, epoch=self.epoch), [moved]
        if self.probes_admitted < self.config.half_open_probes:
            self.probes_admitted += 1
            return ModelPermit(probe=True, epoch=self.epoch), []
        return None, []

    def record(self, permit: ModelPermit, event: EventType, now: float) -> list[Move]:
        self.outcomes.append((int(now // self.width), event))
        if permit.probe and permit.epoch == self.epoch and self.state == "half_open":
            if event is S:
                self.probe_successes += 1
                if self.probe_successes == self.config.half_open_probes:
                    return [self._move("closed", now)]
            elif event in MODEL_ERRORS:
                return [self._move("open", now)]
            else:
                self.probes_admitted -= 1  # a bad request says nothing: the slot goes back
            return []
        # Any outcome, a neutral one too, evaluates the window: old buckets may have expired
        # since the last one, leaving it trippable.
        if self.state == "closed":
            total, errors = self.requests(now), self.errors(now)
            if (
                total > 0
                and total >= self.config.request_volume_threshold
                and 100 * errors >= self.config.error_percent_threshold * total
            ):
                return [self._move("open", now)]
        return []


def moves(transitions: tuple[Transition, ...]) -> list[Move]:
    return [(t.from_state.value, t.to_state.value) for t in transitions]


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(1000.0)
        self.breaker: CircuitBreaker
        self.model: Model
        self.outstanding: list[tuple[Permit, ModelPermit]] = []

    @initialize(
        request_volume_threshold=st.integers(1, 5),
        sleep_window=st.sampled_from([1.0, 2.0, 2.5, 3.0, 5.0]),
        half_open_probes=st.integers(1, 3),
        error_percent_threshold=st.sampled_from([0, 1, 30, 50, 67, 100]),
    )
    def configure(
        self,
        request_volume_threshold: int,
        sleep_window: float,
        half_open_probes: int,
        error_percent_threshold: int,
    ) -> None:
        config = CommandConfig(
            request_volume_threshold=request_volume_threshold,
            sleep_window=sleep_window,
            half_open_probes=half_open_probes,
            error_percent_threshold=error_percent_threshold,
            rolling_window=10.0,
            rolling_buckets=10,
        )
        self.breaker = CircuitBreaker(config, self.clock)
        self.model = Model(config)

    @rule()
    def acquire(self) -> None:
        self._acquire()

    @rule(event=st.sampled_from(OUTCOMES))
    def call(self, event: EventType) -> None:
        """A call admitted and answered before anything else happens."""
        if self._acquire():
            self._complete(len(self.outstanding) - 1, event)

    def _acquire(self) -> bool:
        now = self.clock()
        permit, transitions = self.breaker.try_acquire()
        expected, expected_moves = self.model.acquire(now)

        assert moves(transitions) == expected_moves
        assert all(t.at == now for t in transitions)
        if expected is None:
            assert permit is None
            # The caller records the short circuit; it must change nothing.
            assert self.breaker.record(Permit(), SHORT) == ()
            assert self.model.record(ModelPermit(probe=False, epoch=-1), SHORT, now) == []
        else:
            assert permit is not None
            assert permit.probe == expected.probe
            self.outstanding.append((permit, expected))
        return permit is not None

    def _complete(self, index: int, event: EventType) -> None:
        now = self.clock()
        permit, expected = self.outstanding.pop(index)

        transitions = self.breaker.record(permit, event)

        assert moves(transitions) == self.model.record(expected, event, now)
        assert all(t.at == now for t in transitions)

    @precondition(lambda self: bool(self.outstanding))
    @rule(which=st.integers(0, 100), event=st.sampled_from(OUTCOMES))
    def complete_a_call(self, which: int, event: EventType) -> None:
        self._complete(which % len(self.outstanding), event)

    @precondition(lambda self: any(permit.probe for permit, _ in self.outstanding))
    @rule(which=st.integers(0, 100), event=st.sampled_from(OUTCOMES))
    def complete_a_probe(self, which: int, event: EventType) -> None:
        probes = [i for i, (permit, _) in enumerate(self.outstanding) if permit.probe]
        self._complete(probes[which % len(probes)], event)

    # Quarter seconds keep the clock exact, so "exactly sleep_window later" really happens.
    @rule(
        seconds=st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.5, 5.0, 9.75, 10.0, 12.0])
        | st.integers(min_value=0, max_value=60).map(lambda quarters: quarters / 4)
    )
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(early=st.sampled_from([0.0, 0.25]))
    def advance_by_the_sleep_window(self, early: float) -> None:
        self.clock.advance(self.breaker.config.sleep_window - early)

    @invariant()
    def the_states_agree(self) -> None:
        assert self.breaker.state.value == self.model.state

    @invariant()
    def the_window_counts_agree(self) -> None:
        now = self.clock()
        assert self.breaker.requests() == self.model.requests(now)
        assert self.breaker.errors() == self.model.errors(now)

    @invariant()
    def half_open_never_has_more_probes_than_configured(self) -> None:
        assert self.model.probes_admitted <= self.breaker.config.half_open_probes


def test_the_breaker_behaves_like_its_model() -> None:
    run_state_machine_as_test(
        BreakerMachine,
        settings=settings(max_examples=200, stateful_step_count=50, deadline=None),
    )
