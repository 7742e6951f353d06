"""The fleet's pure side: policy, parsing untrusted values, the tally, and following the fleet."""

from __future__ import annotations

import json

import pytest

from supervision import (
    NORMAL,
    TRANSITIONS,
    CircuitBreaker,
    CircuitState,
    CommandConfig,
    EventType,
    FakeClock,
    FleetPolicy,
    FleetState,
    IllegalTransitionError,
)
from supervision.breaker import FLEET_TRANSITIONS
from supervision.fleet import (
    FleetTally,
    GarbageError,
    follow,
    parse_int,
    parse_message,
    parse_state,
)
from supervision.window import RollingCounts

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
S, F = EventType.SUCCESS, EventType.FAILURE


def breaker(clock: FakeClock, **changes: object) -> CircuitBreaker:
    settings: dict[str, object] = {"request_volume_threshold": 4, "sleep_window": 5.0}
    settings.update(changes)
    return CircuitBreaker(CommandConfig(**settings), clock)  # type: ignore[arg-type]


def trip(cb: CircuitBreaker) -> None:
    for _ in range(10):
        if cb.record(NORMAL, F):
            break
    assert cb.state is OPEN


# -- FleetPolicy -------------------------------------------------------------------------------


def test_the_default_policy_is_shared_with_a_quorum_of_two() -> None:
    assert FleetPolicy() == FleetPolicy(mode="shared", quorum=2)
    assert FleetPolicy().enabled
    assert not FleetPolicy(mode="off").enabled
    assert CommandConfig().fleet == FleetPolicy()


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({"mode": "fleet"}, ["mode", "'fleet'"]),
        ({"mode": None}, ["mode", "None"]),
        ({"quorum": 0}, ["quorum", "0"]),
        ({"quorum": 2.5}, ["quorum", "2.5"]),
        ({"quorum": True}, ["quorum", "True"]),
    ],
)
def test_a_bad_policy_is_refused_with_the_field_and_the_value(
    changes: dict[str, object], names: list[str]
) -> None:
    with pytest.raises(ValueError) as raised:
        FleetPolicy(**changes)  # type: ignore[arg-type]

    for name in names:
        assert name in str(raised.value)


def test_a_config_refuses_a_fleet_that_is_not_a_policy() -> None:
    with pytest.raises(ValueError, match="fleet must be a FleetPolicy, got 'shared'"):
        CommandConfig(fleet="shared")  # type: ignore[arg-type]


# -- parsing what the store holds --------------------------------------------------------------


def test_a_state_is_parsed_from_bytes() -> None:
    state = parse_state(
        {"state": b"half_open", "epoch": b"17", "at": b"1000", "by": b"n1", "holder": b"n2"}
    )

    assert state == FleetState(state=HALF_OPEN, epoch=17, at=1000, by="n1", holder="n2")


def test_no_state_at_all_reads_as_closed_at_epoch_zero() -> None:
    assert parse_state({}) == FleetState()
    assert parse_state({"state": None, "epoch": None}).state is CLOSED


@pytest.mark.parametrize(
    "fields",
    [
        {"state": b"ajar", "epoch": b"1"},
        {"state": b"open", "epoch": b"-1"},
        {"state": b"open", "epoch": b"1e3"},
        {"state": b"open", "epoch": b"99999999999999999999999"},
        {"state": b"open", "epoch": b"\xff"},
        {"state": b"open"},
        {"state": b"open", "epoch": b"1", "by": b"x" * 300},
        {"state": 3, "epoch": b"1"},
        {"state": b"open", "epoch": True},
    ],
)
def test_a_state_that_our_scripts_never_write_is_garbage(fields: dict[str, object]) -> None:
    with pytest.raises(GarbageError):
        parse_state(fields)


@pytest.mark.parametrize(
    "raw",
    [
        b"\x80\x04\x95pickle",
        b"not json",
        b"[1, 2]",
        b'{"key": 1, "state": "open", "epoch": "1"}',
        b'{"key": "k", "state": "open", "epoch": NaN}',
        b"{" * 5000,
        json.dumps({"key": "k", "state": "open", "epoch": "1", "pad": "x" * 5000}).encode(),
        12,
    ],
)
def test_a_broadcast_that_is_not_ours_is_garbage(raw: object) -> None:
    with pytest.raises(GarbageError):
        parse_message(raw)


def test_a_broadcast_names_its_key_and_state() -> None:
    raw = json.dumps({"key": "Get all Issues", "state": "open", "epoch": "9", "at": "5"})

    assert parse_message(raw.encode()) == ("Get all Issues", FleetState(OPEN, 9, 5))


def test_integers_are_read_from_text_or_int_and_nothing_else() -> None:
    assert parse_int(b" 42 ", "n") == 42
    assert parse_int(7, "n") == 7
    for bad in (b"4.2", "0x10", None, 1.0, [1], b""):
        with pytest.raises(GarbageError, match="n"):
            parse_int(bad, "n")


# -- the tally ---------------------------------------------------------------------------------


def test_the_tally_sends_each_count_once_with_its_age(clock: FakeClock) -> None:
    window = RollingCounts(10.0, 10, clock)
    tally = FleetTally()
    window.add(S, 3)
    window.add(F, 1)
    clock.advance(0.25)

    assert tally.take(window) == [(0.25, 4, 1)]
    assert tally.take(window) == []

    clock.advance(1.0)
    window.add(F, 2)

    assert tally.take(window) == [(0.25, 2, 2)]


def test_counts_put_back_ride_along_with_the_next_take(clock: FakeClock) -> None:
    window = RollingCounts(10.0, 10, clock)
    tally = FleetTally()
    window.add(F, 2)
    assert tally.take(window) == [(0.0, 2, 2)]
    tally.put_back()
    clock.advance(1.0)
    window.add(S, 1)

    assert tally.take(window) == [(1.0, 2, 2), (0.0, 1, 0)]


def test_counts_put_back_are_dropped_once_out_of_the_window(clock: FakeClock) -> None:
    window = RollingCounts(10.0, 10, clock)
    tally = FleetTally()
    window.add(F, 2)
    tally.take(window)
    tally.put_back()
    clock.advance(11.0)

    assert tally.take(window) == []


def test_a_reset_window_starts_the_tally_afresh(clock: FakeClock) -> None:
    window = RollingCounts(10.0, 10, clock)
    tally = FleetTally()
    window.add(S, 5)
    tally.take(window)
    window.reset()
    window.add(S, 2)

    assert tally.take(window) == [(0.0, 2, 0)]


def test_only_health_events_are_tallied(clock: FakeClock) -> None:
    window = RollingCounts(10.0, 10, clock)
    window.add(EventType.BAD_REQUEST, 3)
    window.add(EventType.TIMEOUT, 1)

    assert FleetTally().take(window) == [(0.0, 1, 1)]


# -- the breaker held by the fleet -------------------------------------------------------------


def test_an_adopted_open_short_circuits_past_the_sleep_window(clock: FakeClock) -> None:
    cb = breaker(clock)

    (moved,) = cb.adopt_open(100)
    clock.advance(60.0)

    assert (moved.from_state, moved.to_state, moved.scope) == (CLOSED, OPEN, "fleet")
    assert moved.fleet_epoch == 100
    assert cb.held == 100
    assert cb.try_acquire() == (None, ())
    assert not cb.tripped


def test_a_granted_probe_admits_the_half_open_probes_and_its_success_closes(
    clock: FakeClock,
) -> None:
    cb = breaker(clock, half_open_probes=2)
    cb.adopt_open(100)

    (moved,) = cb.grant_probe(101)
    first, _ = cb.try_acquire()
    second, _ = cb.try_acquire()
    third, _ = cb.try_acquire()

    assert (moved.to_state, moved.scope, moved.fleet_epoch) == (HALF_OPEN, "fleet", 101)
    assert first is not None and first.probe
    assert second is not None and second.probe
    assert third is None
    assert cb.record(first, S) == ()
    (closed,) = cb.record(second, S)
    assert (closed.from_state, closed.to_state, closed.scope) == (HALF_OPEN, CLOSED, "fleet")
    assert closed.fleet_epoch == 101
    assert cb.held is None


def test_a_failed_granted_probe_reopens_and_keeps_waiting_for_the_fleet(clock: FakeClock) -> None:
    cb = breaker(clock)
    cb.adopt_open(100)
    cb.grant_probe(101)
    permit, _ = cb.try_acquire()
    assert permit is not None

    (moved,) = cb.record(permit, F)
    clock.advance(60.0)

    assert (moved.to_state, moved.scope, moved.fleet_epoch) == (OPEN, "fleet", 101)
    assert cb.held == 101
    assert cb.try_acquire() == (None, ())


def test_a_probe_is_granted_only_to_a_circuit_the_fleet_holds_open(clock: FakeClock) -> None:
    cb = breaker(clock)

    assert cb.grant_probe(5) == ()
    assert cb.state is CLOSED


def test_an_adopted_close_moves_open_to_closed_and_restarts_the_window(clock: FakeClock) -> None:
    cb = breaker(clock)
    trip(cb)
    cb.adopt_open(7)

    (moved,) = cb.adopt_closed()

    assert (moved.from_state, moved.to_state, moved.scope) == (OPEN, CLOSED, "fleet")
    assert cb.requests() == 0
    assert cb.held is None


def test_open_to_closed_is_legal_only_as_a_fleet_adoption() -> None:
    assert (OPEN, CLOSED) not in TRANSITIONS
    assert TRANSITIONS | {(OPEN, CLOSED)} == FLEET_TRANSITIONS


def test_releasing_the_hold_lets_the_breaker_probe_on_its_own(clock: FakeClock) -> None:
    cb = breaker(clock)
    cb.adopt_open(7)
    clock.advance(5.0)
    assert cb.try_acquire() == (None, ())

    cb.release_hold()
    permit, (moved,) = cb.try_acquire()

    assert permit is not None and permit.probe
    assert (moved.to_state, moved.scope) == (HALF_OPEN, "local")


def test_a_local_trip_is_tripped_and_an_adopted_one_is_not(clock: FakeClock) -> None:
    cb = breaker(clock)
    trip(cb)
    assert cb.tripped

    assert cb.adopt_open(3) == ()  # already open: no second transition
    assert not cb.tripped


def test_an_illegal_transition_still_raises() -> None:
    cb = breaker(FakeClock())
    with pytest.raises(IllegalTransitionError):
        cb._transition(CLOSED)


# -- following the fleet -----------------------------------------------------------------------


def test_following_an_open_fleet_opens_and_a_newer_close_closes(clock: FakeClock) -> None:
    cb = breaker(clock)

    opened = follow(cb, FleetState(OPEN, 10, 0, "n2"), "n1")
    again = follow(cb, FleetState(OPEN, 10, 0, "n2"), "n1")
    stale = follow(cb, FleetState(CLOSED, 9), "n1")
    closed = follow(cb, FleetState(CLOSED, 11), "n1")

    assert [m.to_state for m in opened] == [OPEN]
    assert again == ()
    assert stale == ()
    assert [m.to_state for m in closed] == [CLOSED]


def test_only_the_lease_holder_is_granted_the_probe(clock: FakeClock) -> None:
    mine, theirs = breaker(clock), breaker(clock)
    for cb in (mine, theirs):
        follow(cb, FleetState(OPEN, 10), "x")

    granted = follow(mine, FleetState(HALF_OPEN, 11, holder="me"), "me")
    waiting = follow(theirs, FleetState(HALF_OPEN, 11, holder="me"), "them")

    assert [m.to_state for m in granted] == [HALF_OPEN]
    assert waiting == ()
    assert theirs.state is OPEN and theirs.held == 11
    assert follow(mine, FleetState(HALF_OPEN, 11, holder="me"), "me") == ()  # an echo


def test_a_newer_lease_holder_fences_an_old_probe(clock: FakeClock) -> None:
    cb = breaker(clock)
    follow(cb, FleetState(OPEN, 10), "me")
    follow(cb, FleetState(HALF_OPEN, 11, holder="me"), "me")

    (moved,) = follow(cb, FleetState(HALF_OPEN, 12, holder="other"), "me")
    late, _ = cb.try_acquire()

    assert (moved.from_state, moved.to_state) == (HALF_OPEN, OPEN)
    assert late is None


def test_no_fleet_state_at_all_means_the_store_forgot(clock: FakeClock) -> None:
    cb = breaker(clock)
    follow(cb, FleetState(OPEN, 10), "me")

    assert follow(cb, FleetState(), "me") == ()

    assert cb.held is None
    assert cb.state is OPEN  # on its own rules now: it probes after its own sleep window


def test_a_closed_fleet_leaves_a_locally_tripped_breaker_alone(clock: FakeClock) -> None:
    cb = breaker(clock)
    trip(cb)

    assert follow(cb, FleetState(CLOSED, 50), "me") == ()
    assert cb.state is OPEN and cb.tripped


def test_a_state_older_than_one_followed_is_stale_even_after_a_close(clock: FakeClock) -> None:
    cb = breaker(clock)
    follow(cb, FleetState(OPEN, 10), "me")
    follow(cb, FleetState(CLOSED, 11), "me")

    assert follow(cb, FleetState(OPEN, 10), "me") == ()  # a flush's reply read before the close
    assert cb.state is CLOSED
    assert [m.to_state for m in follow(cb, FleetState(OPEN, 12), "me")] == [OPEN]


def test_counts_put_back_are_void_once_the_breaker_restarts_its_window(clock: FakeClock) -> None:
    window = RollingCounts(10.0, 10, clock)
    tally = FleetTally()
    window.add(F, 20)
    tally.take(window)
    tally.put_back()  # Redis was down
    window.reset()  # the node's probe closed its circuit
    window.add(S, 1)

    assert tally.take(window) == [(0.0, 1, 0)]


def test_a_resized_window_does_not_send_its_counts_twice(clock: FakeClock) -> None:
    window = RollingCounts(10.0, 10, clock)
    tally = FleetTally()
    window.add(S, 30)
    tally.take(window)

    resized = window.resized(20.0, 20)

    assert tally.take(resized) == []  # what was carried over is not sent again
    resized.add(F, 1)
    assert tally.take(resized) == [(0.0, 1, 1)]
