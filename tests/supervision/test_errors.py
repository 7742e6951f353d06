"""The error hierarchy: one base, stable reasons callers match on, and the command key."""

from __future__ import annotations

import pytest

from supervision import (
    BadRequest,
    CircuitOpenError,
    CommandError,
    CommandTimeoutError,
    FallbackFailedError,
    MaxConcurrencyError,
    UnknownCommandError,
)


@pytest.mark.parametrize(
    ("error_type", "reason"),
    [
        (CommandTimeoutError, "timeout"),
        (MaxConcurrencyError, "max concurrency"),
        (CircuitOpenError, "circuit open"),
    ],
)
def test_each_error_carries_hystrix_go_s_reason_string(
    error_type: type[CommandError], reason: str
) -> None:
    error = error_type(key="jira")

    assert error.reason == reason
    assert str(error) == reason
    assert error.key == "jira"


@pytest.mark.parametrize(
    "error_type",
    [
        CircuitOpenError,
        MaxConcurrencyError,
        CommandTimeoutError,
        FallbackFailedError,
        UnknownCommandError,
        BadRequest,
    ],
)
def test_every_error_is_a_command_error(error_type: type[CommandError]) -> None:
    assert issubclass(error_type, CommandError)
    assert issubclass(error_type, Exception)


def test_a_message_given_replaces_the_reason_in_str_but_not_the_reason() -> None:
    error = CommandTimeoutError("jira took longer than 1.0 s", key="jira")

    assert str(error) == "jira took longer than 1.0 s"
    assert error.reason == "timeout"


def test_a_reason_given_overrides_the_default() -> None:
    error = CommandError(key="jira", reason="custom")

    assert error.reason == "custom"
    assert str(error) == "custom"


def test_the_key_defaults_to_none() -> None:
    assert CircuitOpenError().key is None


def test_an_unknown_command_is_a_lookup_error() -> None:
    error = UnknownCommandError(key="nope")

    assert isinstance(error, LookupError)
    assert isinstance(error, CommandError)
    with pytest.raises(LookupError):
        raise error


def test_a_failed_fallback_keeps_the_run_error() -> None:
    run_error = CommandTimeoutError(key="jira")

    error = FallbackFailedError(key="jira", run_error=run_error)

    assert error.run_error is run_error
    assert error.key == "jira"
    assert error.reason == "fallback failed"


def test_a_failed_fallback_keeps_its_own_cause() -> None:
    run_error = MaxConcurrencyError(key="jira")
    fallback_error = KeyError("cache miss")

    with pytest.raises(FallbackFailedError) as raised:
        try:
            raise fallback_error
        except KeyError as exc:
            raise FallbackFailedError(key="jira", run_error=run_error) from exc

    assert raised.value.__cause__ is fallback_error
    assert raised.value.run_error is run_error


def test_a_failed_fallback_without_a_run_error_has_none() -> None:
    assert FallbackFailedError().run_error is None


def test_a_bad_request_is_not_one_of_the_fallback_triggering_errors() -> None:
    error = BadRequest("missing issue id", key="jira")

    assert error.reason == "bad request"
    assert not isinstance(error, CircuitOpenError | MaxConcurrencyError | CommandTimeoutError)
