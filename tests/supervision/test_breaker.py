"""CircuitBreaker: closed / open / half_open over a rolling window, on a fake clock."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest

from supervision import (
    ERROR_EVENTS,
    NORMAL,
    TRANSITIONS,
    CircuitBreaker,
    CircuitState,
    CommandConfig,
    EventType,
    FakeClock,
    IllegalTransitionError,
    Permit,
    Transition,
)

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
S = EventType.SUCCESS
F = EventType.FAILURE


def breaker(clock: FakeClock, **changes: object) -> CircuitBreaker:
    """A breaker that trips on 4 calls at 50 % errors and sleeps 5 s."""
    settings: dict[str, object] = {"request_volume_threshold": 4, "sleep_window": 5.0}
    settings.update(changes)
    return CircuitBreaker(CommandConfig(**settings), clock)  # type: ignore[arg-type]


def moves(transitions: Iterable[Transition]) -> list[tuple[CircuitState, CircuitState]]:
    return [(t.from_state, t.to_state) for t in transitions]


def record_all(cb: CircuitBreaker, events: Iterable[EventType]) -> list[Transition]:
    return [t for event in events for t in cb.record(NORMAL, event)]


def trip(cb: CircuitBreaker) -> None:
    """Fail normal calls until the circuit opens."""
    for _ in range(cb.config.request_volume_threshold + 1):
        if cb.record(NORMAL, F):
            break
    assert cb.state is OPEN


def probe(cb: CircuitBreaker) -> Permit:
    """Admit one call that must be a probe."""
    permit, _ = cb.try_acquire()
    assert permit is not None
    assert permit.probe
    return permit


def half_open(cb: CircuitBreaker, clock: FakeClock) -> Permit:
    """From open, let the sleep window pass and admit the first probe."""
    assert cb.state is OPEN
    clock.advance(cb.config.sleep_window)
    permit = probe(cb)
    assert cb.state is HALF_OPEN
    return permit


# -- closed ------------------------------------------------------------------------------------


def test_a_new_breaker_is_closed_and_admits_normal_calls(clock: FakeClock) -> None:
    cb = breaker(clock)

    assert cb.state is CLOSED
    assert cb.state == "closed"
    assert cb.try_acquire() == (NORMAL, ())
    assert not NORMAL.probe


def test_a_new_breaker_has_an_empty_window(clock: FakeClock) -> None:
    cb = breaker(clock)

    assert (cb.requests(), cb.errors(), cb.error_percent()) == (0, 0, 0.0)


def test_errors_below_the_request_volume_threshold_do_not_trip(clock: FakeClock) -> None:
    cb = breaker(clock, request_volume_threshold=4)

    assert record_all(cb, [F, F, F]) == []

    assert cb.state is CLOSED
    assert cb.error_percent() == 100.0


def test_the_call_that_reaches_the_volume_threshold_trips(clock: FakeClock) -> None:
    cb = breaker(clock, request_volume_threshold=4)
    record_all(cb, [F, F, F])

    transitions = cb.record(NORMAL, F)

    assert moves(transitions) == [(CLOSED, OPEN)]
    assert cb.state is OPEN


def test_an_error_rate_below_the_threshold_does_not_trip(clock: FakeClock) -> None:
    cb = breaker(clock, request_volume_threshold=4, error_percent_threshold=50)

    assert record_all(cb, [S, S, S, F, F]) == []  # 2 of 5: 40 %

    assert cb.state is CLOSED


def test_an_error_rate_exactly_at_the_threshold_trips(clock: FakeClock) -> None:
    cb = breaker(clock, request_volume_threshold=4, error_percent_threshold=50)

    transitions = record_all(cb, [S, S, F, F])  # 2 of 4: 50 %

    assert moves(transitions) == [(CLOSED, OPEN)]


def test_the_threshold_is_a_percentage_not_a_count(clock: FakeClock) -> None:
    cb = breaker(clock, request_volume_threshold=4, error_percent_threshold=75)

    assert record_all(cb, [S, S, F, F, F, F, F]) == []  # at most 5 of 7: 71 %
    assert cb.errors() == 5
    assert moves(cb.record(NORMAL, F)) == [(CLOSED, OPEN)]  # 6 of 8: 75 %


def test_a_success_that_brings_the_window_to_the_volume_threshold_trips(
    clock: FakeClock,
) -> None:
    cb = breaker(clock, request_volume_threshold=2, error_percent_threshold=50)
    assert cb.record(NORMAL, F) == ()  # 1 call: below the volume threshold

    transitions = cb.record(NORMAL, S)  # 2 calls, 50 % errors: both conditions hold

    assert moves(transitions) == [(CLOSED, OPEN)]
    assert cb.state is OPEN


def test_a_zero_error_threshold_trips_as_soon_as_the_volume_is_reached(clock: FakeClock) -> None:
    cb = breaker(clock, request_volume_threshold=3, error_percent_threshold=0)

    assert record_all(cb, [S, S]) == []
    assert moves(cb.record(NORMAL, S)) == [(CLOSED, OPEN)]


def test_a_hundred_percent_threshold_needs_every_call_to_fail(clock: FakeClock) -> None:
    cb = breaker(clock, request_volume_threshold=2, error_percent_threshold=100)

    assert record_all(cb, [F, S, F, F, F]) == []  # 4 of 5
    cb.window.reset()
    assert moves(record_all(cb, [F, F])) == [(CLOSED, OPEN)]


@pytest.mark.parametrize("error", sorted(ERROR_EVENTS))
def test_every_kind_of_error_counts_towards_tripping(clock: FakeClock, error: EventType) -> None:
    cb = breaker(clock, request_volume_threshold=3)

    transitions = record_all(cb, [error, error, error])

    assert moves(transitions) == [(CLOSED, OPEN)]


def test_a_thread_pool_rejection_counts_as_an_error(clock: FakeClock) -> None:
    cb = breaker(clock, request_volume_threshold=2)
    cb.record(NORMAL, S)

    transitions = cb.record(NORMAL, EventType.THREAD_POOL_REJECTED)

    assert (cb.requests(), cb.errors()) == (2, 1)
    assert moves(transitions) == [(CLOSED, OPEN)]


@pytest.mark.parametrize("neutral", [EventType.SHORT_CIRCUITED, EventType.BAD_REQUEST])
def test_short_circuits_and_bad_requests_count_in_neither_total_nor_errors(
    clock: FakeClock, neutral: EventType
) -> None:
    cb = breaker(clock, request_volume_threshold=2, error_percent_threshold=50)
    cb.record(NORMAL, F)

    assert record_all(cb, [neutral] * 10) == []

    assert (cb.requests(), cb.errors()) == (1, 1)
    assert cb.state is CLOSED
    # Had the neutral events counted, 2 errors of 12 calls would be far below 50 %.
    assert moves(cb.record(NORMAL, F)) == [(CLOSED, OPEN)]


def test_errors_that_left_the_window_do_not_trip(clock: FakeClock) -> None:
    cb = breaker(clock, request_volume_threshold=4, rolling_window=10.0, rolling_buckets=10)
    record_all(cb, [F, F, F])

    clock.advance(10.0)

    assert cb.record(NORMAL, F) == ()
    assert (cb.requests(), cb.errors()) == (1, 1)
    assert cb.state is CLOSED


def test_errors_still_inside_the_window_trip(clock: FakeClock) -> None:
    cb = breaker(clock, request_volume_threshold=4, rolling_window=10.0, rolling_buckets=10)
    record_all(cb, [F, F, F])

    clock.advance(9.0)

    assert moves(cb.record(NORMAL, F)) == [(CLOSED, OPEN)]


def test_a_trip_reports_when_and_on_what_numbers(clock: FakeClock) -> None:
    cb = breaker(clock, request_volume_threshold=4, error_percent_threshold=50)
    record_all(cb, [S, S, F])
    clock.advance(0.5)

    (transition,) = cb.record(NORMAL, F)

    assert transition == Transition(
        from_state=CLOSED, to_state=OPEN, at=clock(), requests=4, error_percent=50.0
    )


# -- open --------------------------------------------------------------------------------------


def test_an_open_circuit_short_circuits_until_the_sleep_window_has_passed(
    clock: FakeClock,
) -> None:
    cb = breaker(clock, sleep_window=5.0)
    trip(cb)

    decisions = []
    for _ in range(4):
        clock.advance(1.2)  # up to 4.8 s after opening
        decisions.append(cb.try_acquire())
    clock.advance(0.19)  # 4.99 s
    decisions.append(cb.try_acquire())

    assert decisions == [(None, ())] * 5
    assert cb.state is OPEN


def test_once_the_sleep_window_has_passed_one_call_is_admitted_as_a_probe(
    clock: FakeClock,
) -> None:
    cb = breaker(clock, sleep_window=5.0)
    trip(cb)
    clock.advance(5.0)

    permit, transitions = cb.try_acquire()

    assert permit is not None
    assert permit.probe
    assert moves(transitions) == [(OPEN, HALF_OPEN)]
    assert transitions[0].at == clock()
    assert cb.state is HALF_OPEN
    assert cb.state == "half_open"


def test_the_move_to_half_open_is_reported_once(clock: FakeClock) -> None:
    cb = breaker(clock, half_open_probes=1)
    trip(cb)
    clock.advance(5.0)

    first = cb.try_acquire()
    later = [cb.try_acquire() for _ in range(3)]

    assert moves(first[1]) == [(OPEN, HALF_OPEN)]
    assert later == [(None, ())] * 3


def test_a_zero_sleep_window_probes_at_once(clock: FakeClock) -> None:
    cb = breaker(clock, sleep_window=0.0)
    trip(cb)

    permit, transitions = cb.try_acquire()

    assert permit is not None
    assert permit.probe
    assert moves(transitions) == [(OPEN, HALF_OPEN)]


def test_failures_of_normal_calls_while_open_do_not_move_the_circuit(clock: FakeClock) -> None:
    cb = breaker(clock)
    trip(cb)

    assert record_all(cb, [F, EventType.TIMEOUT, S, EventType.BAD_REQUEST]) == []
    assert cb.state is OPEN


# -- half open ---------------------------------------------------------------------------------


def test_a_probe_success_closes_the_circuit(clock: FakeClock) -> None:
    cb = breaker(clock)
    trip(cb)
    permit = half_open(cb, clock)

    transitions = cb.record(permit, S)

    assert moves(transitions) == [(HALF_OPEN, CLOSED)]
    assert cb.state is CLOSED
    assert cb.try_acquire() == (NORMAL, ())


def test_closing_resets_the_window(clock: FakeClock) -> None:
    cb = breaker(clock, request_volume_threshold=4)
    trip(cb)
    permit = half_open(cb, clock)

    cb.record(permit, S)

    assert (cb.requests(), cb.errors()) == (0, 0)
    # A fresh window needs the full volume again before it trips.
    assert record_all(cb, [F, F, F]) == []
    assert moves(cb.record(NORMAL, F)) == [(CLOSED, OPEN)]


@pytest.mark.parametrize("error", [F, EventType.TIMEOUT, EventType.THREAD_POOL_REJECTED])
def test_a_probe_error_reopens_the_circuit(clock: FakeClock, error: EventType) -> None:
    cb = breaker(clock)
    trip(cb)
    permit = half_open(cb, clock)

    transitions = cb.record(permit, error)

    assert moves(transitions) == [(HALF_OPEN, OPEN)]
    assert cb.state is OPEN


def test_a_probe_failure_restarts_the_sleep_window(clock: FakeClock) -> None:
    cb = breaker(clock, sleep_window=5.0)
    trip(cb)
    clock.advance(7.0)  # well past the first sleep window
    permit = probe(cb)
    clock.advance(0.5)
    cb.record(permit, F)  # reopened at this instant

    clock.advance(4.75)
    assert cb.try_acquire() == (None, ())
    clock.advance(0.25)  # exactly 5 s after the re-opening
    again, transitions = cb.try_acquire()
    assert again is not None
    assert again.probe
    assert moves(transitions) == [(OPEN, HALF_OPEN)]


def test_a_success_from_before_the_circuit_opened_does_not_close_it(clock: FakeClock) -> None:
    cb = breaker(clock)
    early, _ = cb.try_acquire()
    assert early is NORMAL
    trip(cb)

    assert cb.record(early, S) == ()
    assert cb.state is OPEN


def test_a_normal_success_does_not_close_a_half_open_circuit(clock: FakeClock) -> None:
    cb = breaker(clock)
    early, _ = cb.try_acquire()
    assert early is not None
    trip(cb)
    permit = half_open(cb, clock)

    assert cb.record(early, S) == ()
    assert cb.state is HALF_OPEN
    assert moves(cb.record(permit, S)) == [(HALF_OPEN, CLOSED)]


def test_a_normal_failure_does_not_reopen_a_half_open_circuit(clock: FakeClock) -> None:
    cb = breaker(clock)
    trip(cb)
    permit = half_open(cb, clock)

    assert record_all(cb, [F, F, F, F, F]) == []
    assert cb.state is HALF_OPEN
    assert moves(cb.record(permit, S)) == [(HALF_OPEN, CLOSED)]


def test_half_open_admits_no_more_than_the_configured_probes(clock: FakeClock) -> None:
    cb = breaker(clock, half_open_probes=1)
    trip(cb)
    half_open(cb, clock)

    clock.advance(100.0)

    assert cb.try_acquire() == (None, ())


def test_a_bad_request_on_a_probe_neither_opens_nor_closes(clock: FakeClock) -> None:
    cb = breaker(clock)
    trip(cb)
    permit = half_open(cb, clock)

    assert cb.record(permit, EventType.BAD_REQUEST) == ()
    assert cb.state is HALF_OPEN


def test_a_bad_request_on_a_probe_gives_its_slot_back(clock: FakeClock) -> None:
    cb = breaker(clock, half_open_probes=1)
    trip(cb)
    first = half_open(cb, clock)
    assert cb.try_acquire() == (None, ())

    cb.record(first, EventType.BAD_REQUEST)
    second, transitions = cb.try_acquire()

    assert second is not None
    assert second.probe
    assert transitions == ()
    assert cb.try_acquire() == (None, ())
    assert moves(cb.record(second, S)) == [(HALF_OPEN, CLOSED)]


def test_all_three_probes_must_succeed_to_close(clock: FakeClock) -> None:
    cb = breaker(clock, half_open_probes=3)
    trip(cb)
    probes = [half_open(cb, clock), probe(cb), probe(cb)]
    assert cb.try_acquire() == (None, ())

    assert cb.record(probes[0], S) == ()
    assert cb.record(probes[1], S) == ()
    assert cb.state is HALF_OPEN
    assert moves(cb.record(probes[2], S)) == [(HALF_OPEN, CLOSED)]


def test_one_failed_probe_of_three_reopens(clock: FakeClock) -> None:
    cb = breaker(clock, half_open_probes=3)
    trip(cb)
    probes = [half_open(cb, clock), probe(cb), probe(cb)]

    cb.record(probes[0], S)
    cb.record(probes[1], S)

    assert moves(cb.record(probes[2], EventType.TIMEOUT)) == [(HALF_OPEN, OPEN)]


def test_a_bad_request_among_three_probes_needs_a_replacement_probe(clock: FakeClock) -> None:
    cb = breaker(clock, half_open_probes=3)
    trip(cb)
    probes = [half_open(cb, clock), probe(cb), probe(cb)]

    cb.record(probes[0], S)
    cb.record(probes[1], EventType.BAD_REQUEST)
    cb.record(probes[2], S)
    assert cb.state is HALF_OPEN
    replacement = probe(cb)

    assert moves(cb.record(replacement, S)) == [(HALF_OPEN, CLOSED)]


def reopened_with_a_stale_probe(cb: CircuitBreaker, clock: FakeClock) -> tuple[Permit, Permit]:
    """Two probes out; the first fails; the circuit half-opens again.

    Returns the second probe of the first period (stale) and the first of the new one.
    """
    first = half_open(cb, clock)
    stale = probe(cb)
    cb.record(first, F)
    current = half_open(cb, clock)
    return stale, current


def test_a_stale_probe_success_does_not_count_towards_closing(clock: FakeClock) -> None:
    cb = breaker(clock, half_open_probes=2)
    trip(cb)
    stale, current = reopened_with_a_stale_probe(cb, clock)

    assert cb.record(stale, S) == ()
    assert cb.record(current, S) == ()
    assert cb.state is HALF_OPEN


def test_a_stale_probe_failure_does_not_reopen(clock: FakeClock) -> None:
    cb = breaker(clock, half_open_probes=2)
    trip(cb)
    stale, _ = reopened_with_a_stale_probe(cb, clock)

    assert cb.record(stale, F) == ()
    assert cb.state is HALF_OPEN


def test_a_stale_probe_outcome_counts_in_the_window_of_a_closed_circuit(
    clock: FakeClock,
) -> None:
    cb = breaker(clock, half_open_probes=2, request_volume_threshold=1)
    trip(cb)
    stale, current = reopened_with_a_stale_probe(cb, clock)
    cb.record(current, S)
    cb.record(probe(cb), S)
    assert cb.state is CLOSED

    transitions = cb.record(stale, F)  # a real call that failed: it counts, and it trips

    assert moves(transitions) == [(CLOSED, OPEN)]


def test_a_stale_probe_bad_request_gives_no_slot_back(clock: FakeClock) -> None:
    cb = breaker(clock, half_open_probes=2)
    trip(cb)
    stale, _ = reopened_with_a_stale_probe(cb, clock)
    probe(cb)
    assert cb.try_acquire() == (None, ())

    cb.record(stale, EventType.BAD_REQUEST)

    assert cb.try_acquire() == (None, ())


def test_a_stale_probe_success_does_not_close_an_open_circuit(clock: FakeClock) -> None:
    cb = breaker(clock, half_open_probes=2)
    trip(cb)
    first = half_open(cb, clock)
    stale = probe(cb)
    cb.record(first, F)

    assert cb.record(stale, S) == ()
    assert cb.state is OPEN


def test_probes_of_successive_half_open_periods_carry_different_epochs(clock: FakeClock) -> None:
    cb = breaker(clock, half_open_probes=2)
    trip(cb)
    first = half_open(cb, clock)
    same_period = probe(cb)
    cb.record(first, F)
    next_period = half_open(cb, clock)

    assert first.epoch == same_period.epoch
    assert next_period.epoch != first.epoch


# -- forced ------------------------------------------------------------------------------------


def test_force_open_rejects_every_call_and_reads_open(clock: FakeClock) -> None:
    cb = breaker(clock, force_open=True)

    assert cb.state is OPEN
    assert cb.state == "open"
    clock.advance(1_000.0)
    assert [cb.try_acquire() for _ in range(3)] == [(None, ())] * 3


def test_force_open_wins_over_force_closed(clock: FakeClock) -> None:
    cb = breaker(clock, force_open=True, force_closed=True)

    assert cb.state is OPEN
    assert cb.try_acquire() == (None, ())


def test_force_closed_admits_every_call_and_never_trips(clock: FakeClock) -> None:
    cb = breaker(clock, force_closed=True, request_volume_threshold=1)

    transitions = record_all(cb, [F] * 50)

    assert transitions == []
    assert cb.state is CLOSED
    assert [cb.try_acquire() for _ in range(3)] == [(NORMAL, ())] * 3


def test_force_closed_still_keeps_statistics(clock: FakeClock) -> None:
    cb = breaker(clock, force_closed=True)

    record_all(cb, [F, F, S, EventType.TIMEOUT])

    assert (cb.requests(), cb.errors(), cb.error_percent()) == (4, 3, 75.0)


def test_lifting_force_open_returns_to_the_underlying_state(clock: FakeClock) -> None:
    cb = breaker(clock)

    cb.reconfigure(cb.config.replace(force_open=True))
    assert cb.state is OPEN
    cb.reconfigure(cb.config.replace(force_open=False))

    assert cb.state is CLOSED
    assert cb.try_acquire() == (NORMAL, ())


# -- transitions -------------------------------------------------------------------------------


def test_the_legal_transitions_are_exactly_the_four_of_the_diagram() -> None:
    assert (
        frozenset({(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (HALF_OPEN, CLOSED)})
        == TRANSITIONS
    )


def test_every_transition_a_full_cycle_makes_is_legal(clock: FakeClock) -> None:
    cb = breaker(clock, half_open_probes=2)
    seen: list[Transition] = []
    seen += record_all(cb, [F] * 4)  # closed -> open
    clock.advance(5.0)
    first, moved = cb.try_acquire()  # open -> half_open
    seen += moved
    assert first is not None
    seen += cb.record(first, F)  # half_open -> open
    clock.advance(5.0)
    a, moved = cb.try_acquire()
    seen += moved
    b, moved = cb.try_acquire()
    seen += moved
    assert a is not None
    assert b is not None
    seen += cb.record(a, S)
    seen += cb.record(b, S)  # half_open -> closed

    assert moves(seen) == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]
    assert all(move in TRANSITIONS for move in moves(seen))


def into(cb: CircuitBreaker, clock: FakeClock, state: CircuitState) -> None:
    if state is not CLOSED:
        trip(cb)
    if state is HALF_OPEN:
        half_open(cb, clock)
    assert cb.state is state


ILLEGAL = [pair for pair in itertools.product(CircuitState, repeat=2) if pair not in TRANSITIONS]


@pytest.mark.parametrize(
    ("from_state", "to_state"), ILLEGAL, ids=[f"{a.value}->{b.value}" for a, b in ILLEGAL]
)
def test_an_illegal_transition_raises_and_changes_nothing(
    clock: FakeClock, from_state: CircuitState, to_state: CircuitState
) -> None:
    cb = breaker(clock)
    into(cb, clock, from_state)

    with pytest.raises(IllegalTransitionError, match=f"{from_state.value} -> {to_state.value}"):
        cb._transition(to_state)

    assert cb.state is from_state


@pytest.mark.parametrize(
    ("from_state", "to_state"), sorted(TRANSITIONS), ids=lambda s: str(s.value)
)
def test_a_legal_transition_performed_directly_is_reported(
    clock: FakeClock, from_state: CircuitState, to_state: CircuitState
) -> None:
    cb = breaker(clock)
    into(cb, clock, from_state)

    transition = cb._transition(to_state)

    assert (transition.from_state, transition.to_state) == (from_state, to_state)
    assert transition.at == clock()
    assert cb.state is to_state


def test_an_illegal_transition_is_a_runtime_error() -> None:
    assert issubclass(IllegalTransitionError, RuntimeError)


# -- reconfigure -------------------------------------------------------------------------------


def test_reconfigure_keeps_an_open_circuit_open(clock: FakeClock) -> None:
    cb = breaker(clock, sleep_window=5.0)
    trip(cb)

    cb.reconfigure(cb.config.replace(request_volume_threshold=100, error_percent_threshold=99))

    assert cb.state is OPEN
    assert cb.try_acquire() == (None, ())
    clock.advance(5.0)
    assert moves(cb.try_acquire()[1]) == [(OPEN, HALF_OPEN)]


def test_reconfigure_keeps_a_half_open_circuit_and_its_probes(clock: FakeClock) -> None:
    cb = breaker(clock)
    trip(cb)
    permit = half_open(cb, clock)

    cb.reconfigure(cb.config.replace(timeout=3.0))

    assert cb.state is HALF_OPEN
    assert cb.try_acquire() == (None, ())
    assert moves(cb.record(permit, S)) == [(HALF_OPEN, CLOSED)]


def test_reconfigure_applies_a_new_sleep_window_to_an_open_circuit(clock: FakeClock) -> None:
    cb = breaker(clock, sleep_window=5.0)
    trip(cb)

    cb.reconfigure(cb.config.replace(sleep_window=1.0))
    clock.advance(1.0)

    permit, _ = cb.try_acquire()
    assert permit is not None
    assert permit.probe


def test_reconfigure_keeps_the_counts_and_applies_new_thresholds(clock: FakeClock) -> None:
    cb = breaker(clock, request_volume_threshold=10)
    record_all(cb, [F, F, F])

    cb.reconfigure(cb.config.replace(request_volume_threshold=4))

    assert (cb.requests(), cb.errors()) == (3, 3)
    assert moves(cb.record(NORMAL, F)) == [(CLOSED, OPEN)]


def test_reconfigure_returns_the_new_config(clock: FakeClock) -> None:
    cb = breaker(clock)
    new = cb.config.replace(sleep_window=2.0)

    cb.reconfigure(new)

    assert cb.config is new


def test_reconfigure_with_a_new_window_shape_keeps_the_counts(clock: FakeClock) -> None:
    cb = breaker(clock, request_volume_threshold=10)
    record_all(cb, [F, F, S])

    cb.reconfigure(cb.config.replace(rolling_buckets=5))

    assert (cb.requests(), cb.errors()) == (3, 2)


def test_reconfigure_with_a_shorter_window_drops_counts_older_than_it(clock: FakeClock) -> None:
    cb = breaker(clock, request_volume_threshold=10)
    record_all(cb, [F, F])
    clock.advance(6.0)
    record_all(cb, [S])

    cb.reconfigure(cb.config.replace(rolling_window=5.0, rolling_buckets=5))

    assert (cb.requests(), cb.errors()) == (1, 0)


def test_reconfigure_with_a_longer_window_does_not_bring_back_expired_failures(
    clock: FakeClock,
) -> None:
    cb = breaker(clock, request_volume_threshold=3)
    record_all(cb, [F, F])
    clock.advance(15.0)  # both failures left the 10 s window; no call since

    cb.reconfigure(cb.config.replace(rolling_window=20.0))

    assert (cb.requests(), cb.errors()) == (0, 0)
    assert cb.record(NORMAL, F) == ()  # one failure is far below the volume threshold


def test_an_open_circuit_forced_closed_reads_closed_and_reopens_when_released(
    clock: FakeClock,
) -> None:
    cb = breaker(clock)
    trip(cb)
    cb.reconfigure(cb.config.replace(force_closed=True))
    assert cb.state is CircuitState.CLOSED
    assert cb.try_acquire() == (NORMAL, ())
    cb.reconfigure(cb.config.replace(force_closed=False))
    assert cb.state is CircuitState.OPEN


def test_a_bad_request_finds_a_window_made_trippable_by_expired_successes(
    clock: FakeClock,
) -> None:
    cb = breaker(clock, request_volume_threshold=4)  # 10 s window in 1 s buckets, 50 %
    record_all(cb, [S] * 5)
    clock.advance(5.0)
    assert record_all(cb, [F] * 4) == []  # 4 of 9 failed: 44 %
    clock.advance(5.5)  # the successes leave the window: 4 of 4 failed

    assert moves(cb.record(NORMAL, EventType.BAD_REQUEST)) == [(CLOSED, OPEN)]


def test_a_probe_that_never_ran_gives_its_slot_back_for_another_probe(clock: FakeClock) -> None:
    cb = breaker(clock)
    trip(cb)
    clock.advance(5.0)
    probe, _ = cb.try_acquire()
    assert probe is not None and probe.probe
    assert cb.try_acquire() == (None, ())  # the one probe is out

    cb.release(probe)

    again, moved = cb.try_acquire()
    assert again is not None and again.probe and moved == ()
    assert cb.state is HALF_OPEN


def test_releasing_a_stale_probe_or_a_normal_permit_changes_nothing(clock: FakeClock) -> None:
    cb = breaker(clock)
    trip(cb)
    clock.advance(5.0)
    stale, _ = cb.try_acquire()
    assert stale is not None
    cb.record(stale, F)  # re-opens: a new period
    clock.advance(5.0)
    probe, _ = cb.try_acquire()
    assert probe is not None

    cb.release(stale)
    cb.release(NORMAL)

    assert cb.try_acquire() == (None, ())  # still exactly one probe out
