"""Hystrix's event types and which of them count towards a circuit's health."""

from __future__ import annotations

import enum

__all__ = ["ERROR_EVENTS", "EventType", "FALLBACK_TRIGGERS", "HEALTH_EVENTS"]


class EventType(enum.StrEnum):
    """The names users see on dashboards; equal to their plain strings."""

    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    TIMEOUT = "TIMEOUT"
    BAD_REQUEST = "BAD_REQUEST"
    SHORT_CIRCUITED = "SHORT_CIRCUITED"
    THREAD_POOL_REJECTED = "THREAD_POOL_REJECTED"
    SEMAPHORE_REJECTED = "SEMAPHORE_REJECTED"
    FALLBACK_SUCCESS = "FALLBACK_SUCCESS"
    FALLBACK_FAILURE = "FALLBACK_FAILURE"
    FALLBACK_REJECTION = "FALLBACK_REJECTION"
    FALLBACK_MISSING = "FALLBACK_MISSING"
    EXCEPTION_THROWN = "EXCEPTION_THROWN"
    RESPONSE_FROM_CACHE = "RESPONSE_FROM_CACHE"
    COLLAPSED = "COLLAPSED"
    # Beyond Hystrix (issue 13): load shaping.
    #: A failed run was retried (``CommandConfig(retry=RetryPolicy(...))``): one per retry.
    RETRY = "RETRY"
    #: A retry was denied by the key's retry budget: the call ended with its last error.
    RETRY_BUDGET_EXHAUSTED = "RETRY_BUDGET_EXHAUSTED"
    #: An extra run was started for a slow call (``CommandConfig(hedge=HedgePolicy(...))``).
    HEDGE = "HEDGE"


#: Events that count in a circuit's request total (SHORT_CIRCUITED and BAD_REQUEST do not).
HEALTH_EVENTS: frozenset[EventType] = frozenset(
    {
        EventType.SUCCESS,
        EventType.FAILURE,
        EventType.TIMEOUT,
        EventType.THREAD_POOL_REJECTED,
        EventType.SEMAPHORE_REJECTED,
    }
)

#: Events that count as errors towards the error percentage.
ERROR_EVENTS: frozenset[EventType] = HEALTH_EVENTS - {EventType.SUCCESS}

#: Outcomes that send a call to its fallback.
FALLBACK_TRIGGERS: frozenset[EventType] = ERROR_EVENTS | {EventType.SHORT_CIRCUITED}
