"""Event types and the sets that decide health, as the reference spells them out."""

from __future__ import annotations

from supervision import ERROR_EVENTS, FALLBACK_TRIGGERS, HEALTH_EVENTS, EventType


def test_event_types_are_the_names_dashboards_show() -> None:
    assert {e.value for e in EventType} == {
        "SUCCESS",
        "FAILURE",
        "TIMEOUT",
        "BAD_REQUEST",
        "SHORT_CIRCUITED",
        "THREAD_POOL_REJECTED",
        "SEMAPHORE_REJECTED",
        "FALLBACK_SUCCESS",
        "FALLBACK_FAILURE",
        "FALLBACK_REJECTION",
        "FALLBACK_MISSING",
        "EXCEPTION_THROWN",
        "RESPONSE_FROM_CACHE",
        "COLLAPSED",
        # beyond Hystrix: retries and hedged runs (issue 13)
        "RETRY",
        "RETRY_BUDGET_EXHAUSTED",
        "HEDGE",
    }


def test_an_event_type_equals_its_plain_string() -> None:
    assert EventType.SHORT_CIRCUITED == "SHORT_CIRCUITED"
    assert str(EventType.TIMEOUT) == "TIMEOUT"


def test_the_health_total_counts_successes_failures_timeouts_and_rejections() -> None:
    assert {e.value for e in HEALTH_EVENTS} == {
        "SUCCESS",
        "FAILURE",
        "TIMEOUT",
        "THREAD_POOL_REJECTED",
        "SEMAPHORE_REJECTED",
    }


def test_errors_are_failures_timeouts_and_rejections() -> None:
    assert {e.value for e in ERROR_EVENTS} == {
        "FAILURE",
        "TIMEOUT",
        "THREAD_POOL_REJECTED",
        "SEMAPHORE_REJECTED",
    }


def test_short_circuits_and_bad_requests_count_in_neither_total_nor_errors() -> None:
    for event in (EventType.SHORT_CIRCUITED, EventType.BAD_REQUEST):
        assert event not in HEALTH_EVENTS
        assert event not in ERROR_EVENTS


def test_a_fallback_runs_on_errors_and_short_circuits_but_not_on_a_bad_request() -> None:
    assert {e.value for e in FALLBACK_TRIGGERS} == {
        "FAILURE",
        "TIMEOUT",
        "THREAD_POOL_REJECTED",
        "SEMAPHORE_REJECTED",
        "SHORT_CIRCUITED",
    }
    assert EventType.BAD_REQUEST not in FALLBACK_TRIGGERS
