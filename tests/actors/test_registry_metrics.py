"""``registry.metrics(key)`` and ``all_metrics()``: a key driven through known outcomes reports
exactly those events, its pool, its circuit's transitions and its latencies."""

from __future__ import annotations

import dataclasses
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from probe import WAIT, Probe

from actors import (
    BadRequest,
    CircuitState,
    Command,
    CommandConfig,
    CommandError,
    CommandRegistry,
    EventType,
    UnknownCommandError,
)
from supervision import FakeClock
from supervision.snapshot import PERCENTILES, PoolMetrics

SUCCESS = EventType.SUCCESS
FAILURE = EventType.FAILURE
TIMEOUT = EventType.TIMEOUT
BAD_REQUEST = EventType.BAD_REQUEST
SHORT_CIRCUITED = EventType.SHORT_CIRCUITED
REJECTED = EventType.THREAD_POOL_REJECTED
FALLBACK_SUCCESS = EventType.FALLBACK_SUCCESS
FALLBACK_MISSING = EventType.FALLBACK_MISSING

#: How long a "slow" run's dependency takes.
SLOW = 0.02


class Tracker(Command):
    """The payload says what ``run`` does; every payload but "fail-bare" has a fallback."""

    key = "tracker"
    group = "jira"
    config = CommandConfig(timeout=2.0, max_concurrent_requests=1)

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def run(self, payload: Any) -> Any:
        if payload == "ok":
            return "ok"
        if payload == "slow":
            threading.Event().wait(SLOW)  # the dependency's duration
            return "slow"
        if payload in ("fail", "fail-bare"):
            raise RuntimeError("boom")
        if payload == "bad":
            raise BadRequest("no such issue")
        if payload == "hang":
            self.probe.entered.release()
            self.probe.release.wait(WAIT)
            return "released"
        raise AssertionError(payload)

    def has_fallback(self, payload: Any) -> bool:
        return bool(payload != "fail-bare")

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return "fallback"


class Plain(Command):
    """No group set: its group is its module's name."""

    key = "plain"

    def run(self, payload: Any) -> Any:
        return payload


@pytest.fixture
def probe(registry: CommandRegistry) -> Iterator[Probe]:
    """Depends on ``registry`` so its teardown (releasing hung runs) comes before shutdown."""
    probe = Probe()
    registry.register(Tracker, probe)
    registry.register(Plain)
    yield probe
    probe.release.set()


def configure(registry: CommandRegistry, **changes: Any) -> None:
    registry.configure("tracker", Tracker.config.replace(**changes))


def counts(**nonzero: int) -> dict[EventType, int]:
    """Every event type at 0 but those named (``SUCCESS=3``)."""
    return dict.fromkeys(EventType, 0) | {EventType[name]: n for name, n in nonzero.items()}


def drive_every_outcome(
    registry: CommandRegistry, probe: Probe, eventually: Callable[..., None]
) -> None:
    """3 successes, a failure with fallback, a failure without, a bad request, a timeout, a
    rejection and a short-circuit: 9 answers, 7 runs."""
    for _ in range(3):
        assert registry.ask("tracker", "ok") == "ok"
    assert registry.ask_reply("tracker", "fail").events == (FAILURE, FALLBACK_SUCCESS)
    assert registry.ask_reply("tracker", "fail-bare").events == (FAILURE, FALLBACK_MISSING)
    with pytest.raises(BadRequest):
        registry.ask("tracker", "bad")

    timed_out = registry.ask_reply("tracker", "hang", timeout=0.05)
    assert timed_out.events == (TIMEOUT, FALLBACK_SUCCESS)
    probe.wait_entered()
    # the timed-out run still holds the only slot: the next call is rejected
    assert registry.ask_reply("tracker", "ok").events == (REJECTED, FALLBACK_SUCCESS)
    held = registry.metrics("tracker")
    assert (held.in_flight, held.pool.active, held.pool.completed) == (1, 1, 6)
    probe.release.set()
    eventually(lambda: registry.metrics("tracker").in_flight == 0, what="the hung run returned")

    configure(registry, force_open=True)
    assert registry.ask_reply("tracker", "ok").events == (SHORT_CIRCUITED, FALLBACK_SUCCESS)
    configure(registry)


EVERY_OUTCOME = counts(
    SUCCESS=3,
    FAILURE=2,
    BAD_REQUEST=1,
    TIMEOUT=1,
    THREAD_POOL_REJECTED=1,
    SHORT_CIRCUITED=1,
    FALLBACK_SUCCESS=4,
    FALLBACK_MISSING=1,
    EXCEPTION_THROWN=2,  # the failure with no fallback, and the bad request: errors, no value
)


# -- counts, health and the pool ------------------------------------------------------------------


def test_metrics_count_every_outcome_by_event_type(
    registry: CommandRegistry, probe: Probe, eventually: Callable[..., None]
) -> None:
    before = time.time()
    drive_every_outcome(registry, probe, eventually)

    metrics = registry.metrics("tracker")

    assert metrics.counts == EVERY_OUTCOME
    assert metrics.totals == EVERY_OUTCOME
    assert (metrics.key, metrics.state, metrics.status) == ("tracker", CircuitState.CLOSED, "up")
    assert metrics.config == Tracker.config
    assert before <= metrics.time <= time.time()
    assert metrics.transitions == {}  # forced open is not a transition
    assert metrics.zombies == 0


def test_health_counts_in_metrics_are_successes_and_errors_only(
    registry: CommandRegistry, probe: Probe, eventually: Callable[..., None]
) -> None:
    drive_every_outcome(registry, probe, eventually)

    metrics = registry.metrics("tracker")

    # SUCCESS 3; errors: FAILURE 2, TIMEOUT 1, THREAD_POOL_REJECTED 1 (not BAD_REQUEST, not
    # SHORT_CIRCUITED)
    assert (metrics.requests, metrics.errors) == (7, 4)
    assert metrics.error_percent == pytest.approx(100 * 4 / 7)
    health = registry.health("tracker")
    assert (health.requests, health.errors) == (metrics.requests, metrics.errors)


def test_metrics_report_the_pool_and_concurrency_of_a_key(
    registry: CommandRegistry, probe: Probe, eventually: Callable[..., None]
) -> None:
    drive_every_outcome(registry, probe, eventually)

    metrics = registry.metrics("tracker")

    assert metrics.in_flight == 0
    assert metrics.rolling_max_in_flight == 1
    assert metrics.pool == PoolMetrics(
        name="tracker",
        active=0,
        queued=0,
        pool_size=1,
        largest_pool_size=1,
        max_pool_size=1,
        completed=7,  # every run that returned, the timed-out one included
        rolling_executed=7,
        rolling_max_active=1,
        rolling_rejected=1,
        queue_size=0,
        rolling_window=10.0,
    )
    assert metrics.latency_execute.count == 7
    assert metrics.latency_total.count == 9  # every answer


def test_metrics_see_calls_running_queued_and_rejected(
    registry: CommandRegistry, probe: Probe, eventually: Callable[..., None]
) -> None:
    configure(registry, max_concurrent_requests=2, queue_size=1)
    futures = [registry.ask_reply("tracker", "hang", block=False) for _ in range(3)]
    probe.wait_entered(2)
    assert registry.ask_reply("tracker", "ok").events == (REJECTED, FALLBACK_SUCCESS)

    busy = registry.metrics("tracker")

    assert busy.in_flight == 3
    assert busy.rolling_max_in_flight == 3
    assert busy.pool == PoolMetrics(
        name="tracker",
        active=2,
        queued=1,
        pool_size=2,
        largest_pool_size=2,
        max_pool_size=2,
        completed=0,
        rolling_executed=0,
        rolling_max_active=2,
        rolling_rejected=1,
        queue_size=1,
        rolling_window=10.0,
    )

    probe.release.set()
    assert [future.get(timeout=WAIT).value for future in futures] == ["released"] * 3
    eventually(lambda: registry.metrics("tracker").in_flight == 0, what="every run returned")
    done = registry.metrics("tracker")
    assert (done.pool.active, done.pool.queued, done.pool.pool_size) == (0, 0, 2)
    assert (done.pool.completed, done.pool.rolling_executed) == (3, 3)
    assert (done.rolling_max_in_flight, done.pool.rolling_max_active) == (3, 2)
    assert done.counts == counts(SUCCESS=3, THREAD_POOL_REJECTED=1, FALLBACK_SUCCESS=1)


def test_a_snapshot_is_a_copy_that_later_calls_do_not_change(
    registry: CommandRegistry, probe: Probe
) -> None:
    registry.ask("tracker", "ok")
    first = registry.metrics("tracker")

    registry.ask("tracker", "ok")

    assert first.counts[SUCCESS] == first.totals[SUCCESS] == 1
    assert first.pool.completed == 1
    assert registry.metrics("tracker").counts[SUCCESS] == 2


# -- the circuit ----------------------------------------------------------------------------------


def test_transitions_count_each_state_entered_and_health_restarts_when_the_circuit_closes(
    registry: CommandRegistry, probe: Probe, clock: FakeClock
) -> None:
    configure(registry, request_volume_threshold=2, sleep_window=1.0)
    registry.ask("tracker", "fail")
    registry.ask("tracker", "fail")
    tripped = registry.metrics("tracker")
    assert tripped.state is CircuitState.OPEN
    assert tripped.transitions == {"open": 1}
    assert (tripped.requests, tripped.errors, tripped.error_percent) == (2, 2, 100.0)
    assert registry.ask_reply("tracker", "ok").events == (SHORT_CIRCUITED, FALLBACK_SUCCESS)

    clock.advance(1.0)
    registry.ask("tracker", "fail")  # the half-open probe fails
    assert registry.metrics("tracker").transitions == {"open": 2, "half_open": 1}
    clock.advance(1.0)
    assert registry.ask("tracker", "ok") == "ok"  # this probe succeeds

    closed = registry.metrics("tracker")
    assert closed.state is CircuitState.CLOSED
    assert closed.transitions == {"open": 2, "half_open": 2, "closed": 1}
    assert (closed.requests, closed.errors, closed.error_percent) == (0, 0, 0.0)
    expected = counts(SUCCESS=1, FAILURE=3, SHORT_CIRCUITED=1, FALLBACK_SUCCESS=4)
    assert closed.counts == expected  # the rolling counts do not restart
    assert closed.totals == expected


# -- groups ---------------------------------------------------------------------------------------


def test_a_keys_group_is_its_commands_group_or_module(
    registry: CommandRegistry, probe: Probe
) -> None:
    registry.ask("tracker", "ok")
    registry.ask("plain", 1)
    registry.do("do-key", lambda: 1)
    registry.go("go-key", lambda: 2).get(timeout=WAIT)

    assert registry.metrics("tracker").group == "jira"
    assert registry.metrics("plain").group == Plain.__module__ == __name__
    assert registry.metrics("do-key").group == "functions"
    assert registry.metrics("go-key").group == "functions"


# -- latencies and the windows --------------------------------------------------------------------


def test_latency_percentiles_are_ordered_and_a_20_ms_run_reads_near_20_ms(
    registry: CommandRegistry, probe: Probe
) -> None:
    for _ in range(5):
        assert registry.ask("tracker", "slow") == "slow"

    metrics = registry.metrics("tracker")

    execute, total = metrics.latency_execute, metrics.latency_total
    assert (execute.count, total.count) == (5, 5)
    for latency in (execute, total):
        values = [latency.percentiles[name] for name in PERCENTILES]
        assert values[0] >= 0
        assert values == sorted(values)
    assert SLOW * 0.97 <= execute.percentiles["0"] <= 0.05
    assert SLOW * 0.97 <= execute.percentiles["50"] <= 0.1
    assert execute.mean >= SLOW * 0.99
    # the whole ask contains the run
    assert all(total.percentiles[name] >= execute.percentiles[name] for name in PERCENTILES)
    assert total.mean >= execute.mean


def test_counts_leave_with_the_rolling_window_and_latencies_after_60_seconds(
    registry: CommandRegistry, probe: Probe, clock: FakeClock
) -> None:
    for _ in range(5):
        registry.ask("tracker", "slow")
    registry.ask("tracker", "fail")

    clock.advance(Tracker.config.rolling_window)
    later = registry.metrics("tracker")

    assert later.counts == counts()
    assert later.totals == counts(SUCCESS=5, FAILURE=1, FALLBACK_SUCCESS=1)
    assert (later.requests, later.errors) == (0, 0)
    assert later.rolling_max_in_flight == 0
    assert (later.pool.rolling_executed, later.pool.rolling_max_active) == (0, 0)
    assert later.pool.completed == 6
    assert later.latency_execute.count == 6  # 60 s of latencies
    assert later.latency_total.count == 6

    clock.advance(61.0 - Tracker.config.rolling_window)
    gone = registry.metrics("tracker")

    for latency in (gone.latency_execute, gone.latency_total):
        assert (latency.count, latency.mean) == (0, 0.0)
        assert dict(latency.percentiles) == dict.fromkeys(PERCENTILES, 0.0)
    assert gone.totals == later.totals
    assert gone.pool.completed == 6


# -- which keys have metrics ----------------------------------------------------------------------


def test_metrics_of_a_key_never_asked_or_unknown_raise_unknown_command(
    registry: CommandRegistry, probe: Probe
) -> None:
    with pytest.raises(UnknownCommandError) as never_asked:
        registry.metrics("tracker")  # registered, never asked
    assert never_asked.value.key == "tracker"
    with pytest.raises(UnknownCommandError) as unknown:
        registry.metrics("no-such-key")
    assert unknown.value.key == "no-such-key"

    registry.ask("tracker", "ok")
    assert registry.metrics("tracker").counts[SUCCESS] == 1


def test_metrics_after_shutdown_raise_command_error_shutdown(
    registry: CommandRegistry, probe: Probe
) -> None:
    registry.ask("tracker", "ok")
    registry.shutdown()

    for look in (
        lambda: registry.metrics("tracker"),
        lambda: registry.metrics("no-such-key"),
        registry.all_metrics,
    ):
        with pytest.raises(CommandError) as refused:
            look()
        assert refused.value.reason == "shutdown"
        assert not isinstance(refused.value, UnknownCommandError)


def test_all_metrics_lists_every_asked_key_sorted(registry: CommandRegistry, probe: Probe) -> None:
    assert registry.all_metrics() == []

    registry.do("zeta", lambda: 1)
    registry.ask("tracker", "ok")
    registry.do("alpha", lambda: 2)

    every = registry.all_metrics()

    assert [metrics.key for metrics in every] == ["alpha", "tracker", "zeta"]  # not "plain"
    assert [metrics.counts[SUCCESS] for metrics in every] == [1, 1, 1]


def test_the_rolling_maxima_are_never_below_what_is_in_flight_now(
    registry: CommandRegistry, clock: FakeClock
) -> None:
    release = threading.Event()

    class Hangs(Command):
        key = "hangs-for-maxima"
        config = CommandConfig(timeout=WAIT, max_concurrent_requests=3)

        def run(self, payload: object) -> object:
            release.wait(WAIT)
            return payload

    registry.register(Hangs)
    futures = [registry.ask(Hangs.key, n, block=False) for n in range(3)]
    try:
        clock.advance(Hangs.config.rolling_window)  # the buckets that saw them start expire

        metrics = registry.metrics(Hangs.key)
        assert metrics.in_flight == 3
        assert metrics.rolling_max_in_flight >= metrics.in_flight
        assert metrics.pool.rolling_max_active >= metrics.pool.active
    finally:
        release.set()
    assert [f.get(timeout=WAIT) for f in futures] == [0, 1, 2]


def test_a_snapshot_pickles_and_converts_to_plain_data(
    registry: CommandRegistry, probe: Probe
) -> None:
    registry.ask("tracker", "ok")
    metrics = registry.metrics("tracker")

    assert pickle.loads(pickle.dumps(metrics)) == metrics
    assert dataclasses.asdict(metrics)["totals"][EventType.SUCCESS] == 1
    assert registry.metrics("tracker").totals == metrics.totals  # unchanged: shared, read only
