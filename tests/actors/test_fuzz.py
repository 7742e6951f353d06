"""Hypothesis fuzzes the public face: odd configs, keys, payloads, registrations and shutdown.

Whatever is passed, each call either works or raises promptly a clear error naming what was
wrong; nothing hangs, and the registry keeps serving the keys that were used properly.
Every call into the registry runs on its own thread and must return within ``WAIT`` seconds.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from probe import WAIT

from actors import (
    Command,
    CommandConfig,
    CommandError,
    CommandRegistry,
    EventType,
    Reply,
    UnknownCommandError,
)
from supervision import AdaptiveLimit, FleetPolicy, HedgePolicy, RetryPolicy, SupervisionPolicy
from supervision.checks import MAX_SECONDS

HUGE = 10**400  # an int no float can hold


def fuzz(examples: int = 40) -> Any:
    """Hypothesis settings for these tests: few examples, no deadline, fixtures allowed."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# -- running a call with a bound ------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None


def promptly(call: Callable[[], Any], what: str) -> Outcome:
    """Run ``call`` on its own thread; fail the test if it has not returned within WAIT."""
    outcome = Outcome()

    def target() -> None:
        try:
            outcome.value = call()
        except BaseException as exc:
            outcome.error = exc

    thread = threading.Thread(target=target, name=f"fuzz: {what}", daemon=True)
    thread.start()
    thread.join(WAIT)
    if thread.is_alive():
        pytest.fail(f"{what} did not return within {WAIT}s")
    return outcome


def raised(call: Callable[[], Any], what: str) -> BaseException:
    """The exception ``call`` raised promptly (failing the test if it returned a value)."""
    outcome = promptly(call, what)
    if outcome.error is None:
        pytest.fail(f"{what} returned {outcome.value!r:.80} instead of raising")
    return outcome.error


def _show(value: object) -> str:
    try:
        return f"{type(value).__name__} {value!r:.60}"
    except Exception:
        return type(value).__name__


# -- commands -------------------------------------------------------------------------------

FALLBACK = object()


class Echo(Command):
    """Answers the payload itself."""

    key = "echo"
    config = CommandConfig(timeout=2.0, force_closed=True)

    def run(self, payload: Any) -> Any:
        return payload

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return FALLBACK


class Describe(Command):
    """Answers the payload's repr: a payload whose repr raises makes ``run`` fail."""

    key = "describe"
    config = CommandConfig(timeout=2.0, force_closed=True)

    def run(self, payload: Any) -> Any:
        return repr(payload)

    def fallback(self, payload: Any, error: BaseException) -> Any:
        return FALLBACK


GOOD_KEY = Echo.key


@pytest.fixture
def serving(registry: CommandRegistry) -> Iterator[CommandRegistry]:
    """The isolated registry with Echo and Describe registered and Echo already used."""
    registry.register(Echo)
    registry.register(Describe)
    assert registry.ask(GOOD_KEY, "warm-up") == "warm-up"
    yield registry
    still = promptly(lambda: registry.ask(GOOD_KEY, "still serving"), "ask after the fuzzing")
    assert still.error is None, still.error
    assert still.value == "still serving"


# -- odd objects ----------------------------------------------------------------------------


class Hostile:
    """An object whose dunder methods raise: nothing may depend on them."""

    def __repr__(self) -> str:
        raise RuntimeError("repr boom")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq boom")

    def __hash__(self) -> int:
        raise RuntimeError("hash boom")

    def __bool__(self) -> bool:
        raise RuntimeError("bool boom")


class HashBoom:
    """A non-str key whose hash raises, but whose repr is fine."""

    def __hash__(self) -> int:
        raise RuntimeError("hash boom")

    def __repr__(self) -> str:
        return "HashBoom()"


class ReprBoom:
    """A non-str key whose repr raises, but whose hash is fine."""

    def __repr__(self) -> str:
        raise RuntimeError("repr boom")


def _self_referential() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


def _deeply_nested(depth: int) -> list[Any]:
    nested: list[Any] = []
    for _ in range(depth):
        nested = [nested]
    return nested


_WHITESPACE = st.text(alphabet=" \t\n\r\x0b\x0c\x1c\u00a0\u2003\u3000", min_size=1, max_size=20)

#: Keys the registry must refuse: not a str, blank, or longer than 256 characters.
BAD_KEYS = st.one_of(
    st.just(""),
    _WHITESPACE,
    st.integers(257, 5_000).map(lambda n: "k" * n),
    st.text(min_size=257, max_size=400),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
    st.binary(max_size=10),
    st.tuples(st.text(max_size=5)),
    st.lists(st.text(max_size=5), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.frozensets(st.integers(), max_size=2),
    st.sampled_from([object(), int, Echo(), b"echo", ("echo",), ["echo"], GOOD_KEY.encode()]),
)

#: Keys that are fine as keys but that nobody registered.
UNKNOWN_KEYS = st.text(min_size=1, max_size=256).filter(
    lambda key: bool(key.strip()) and key not in {Echo.key, Describe.key}
)

#: Payloads: anything at all.
PAYLOADS = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.text(),
    st.binary(),
    st.sampled_from([1_000_000, 10_000_000]).map(lambda n: "x" * n),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.text(max_size=4), inner, max_size=4)
            | st.tuples(inner, inner)
        ),
        max_leaves=30,
    ),
    st.builds(Hostile),
    st.builds(HashBoom),
    st.builds(ReprBoom),
    st.builds(_self_referential),
    st.sampled_from([10, 10_000, 100_000]).map(_deeply_nested),
    st.sampled_from([ValueError("a payload"), KeyboardInterrupt(), object(), Echo, len]),
)


# -- CommandConfig ---------------------------------------------------------------------------


def _number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def _seconds(value: object, *, zero: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too big for a float
        return False
    return finite and (value >= 0 if zero else value > 0) and value <= MAX_SECONDS


def _percent(value: object) -> bool:
    return _number(value) and 0 <= value <= 100  # type: ignore[operator]


def _count(value: object, low: int, high: float) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and low <= value <= high


def _exception_classes(value: object) -> bool:
    items = (value,) if isinstance(value, type) else value
    return isinstance(items, tuple | list | set | frozenset) and all(
        isinstance(c, type) and issubclass(c, BaseException) for c in items
    )


#: Each field's documented range.
IN_RANGE: dict[str, Callable[[object], bool]] = {
    "timeout": lambda v: _seconds(v, zero=False),
    "max_concurrent_requests": lambda v: _count(v, 1, 10_000),
    "request_volume_threshold": lambda v: _count(v, 0, math.inf),
    "sleep_window": lambda v: _seconds(v, zero=True),
    "error_percent_threshold": _percent,
    "queue_size": lambda v: _count(v, 0, 100_000),
    "rolling_window": lambda v: _seconds(v, zero=False),
    "rolling_buckets": lambda v: _count(v, 1, 1_000),
    "half_open_probes": lambda v: _count(v, 1, 10_000),
    "fallback_max_concurrent": lambda v: _count(v, 1, 10_000),
    "force_open": lambda v: isinstance(v, bool),
    "force_closed": lambda v: isinstance(v, bool),
    "supervision": lambda v: isinstance(v, SupervisionPolicy),
    "ignore": _exception_classes,
    "fleet": lambda v: isinstance(v, FleetPolicy),
    "isolation": lambda v: isinstance(v, str) and v in ("thread", "semaphore"),
    "pool": lambda v: v is None or (isinstance(v, str) and bool(v.strip()) and len(v) <= 200),
    "retry": lambda v: v is None or isinstance(v, RetryPolicy),
    "hedge": lambda v: v is None or isinstance(v, HedgePolicy),
    "limit": lambda v: v is None or isinstance(v, AdaptiveLimit),
}


def cross_field_faults(changes: dict[str, Any]) -> list[str]:
    """Fields refused for what another field says: a shared pool is for thread isolation."""
    faults = []
    semaphore = changes.get("isolation") == "semaphore"
    for field in ("pool", "hedge"):
        value = changes.get(field)
        if semaphore and value is not None and IN_RANGE[field](value):
            faults.append(field)
    return faults


ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-5, 120),
    st.sampled_from([HUGE, -HUGE, 2**63, 2**64 + 1]),
    st.floats(),
    st.floats(-1.0, 150.0),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.just(SupervisionPolicy()),
    st.just(FleetPolicy(mode="quorum")),
    st.just(CommandConfig()),
    st.builds(object),
    st.sampled_from([KeyError, (KeyError, ValueError), [LookupError], (KeyError, int)]),
)


def test_every_config_field_has_a_documented_range() -> None:
    assert set(IN_RANGE) == {field.name for field in dataclasses.fields(CommandConfig)}


@fuzz(300)
@example(field="timeout", value=HUGE)
@given(field=st.sampled_from(sorted(IN_RANGE)), value=ANY_VALUE)
def test_a_config_field_is_either_in_its_range_or_refused_naming_the_field(
    field: str, value: Any
) -> None:
    try:
        config = CommandConfig(**{field: value})
    except ValueError as error:
        assert field in str(error)
        assert not IN_RANGE[field](value), f"{value!r:.80} is in range, yet refused: {error}"
        return
    assert IN_RANGE[field](getattr(config, field))


@fuzz(200)
@given(changes=st.dictionaries(st.sampled_from(sorted(IN_RANGE)), ANY_VALUE, max_size=6))
def test_a_config_of_many_odd_fields_is_either_valid_or_names_one_bad_field(
    changes: dict[str, Any],
) -> None:
    bad = [field for field, value in changes.items() if not IN_RANGE[field](value)]
    bad += cross_field_faults(changes)
    try:
        config = CommandConfig(**changes)
    except ValueError as error:
        assert any(field in str(error) for field in bad), (error, bad)
        return
    assert not bad
    for field, in_range in IN_RANGE.items():
        assert in_range(getattr(config, field)), field


@pytest.mark.parametrize("field", ["timeout", "sleep_window", "rolling_window"])
@pytest.mark.parametrize("value", [HUGE, -HUGE], ids=["10**400", "-10**400"])
def test_an_integer_too_big_for_a_float_is_refused_as_a_value_error(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        CommandConfig(**{field: value})


@pytest.mark.parametrize("field", sorted(IN_RANGE))
def test_a_config_value_whose_repr_raises_is_still_refused_naming_the_field(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        CommandConfig(**{field: ReprBoom()})


# -- keys ------------------------------------------------------------------------------------

METHODS: dict[str, Callable[[CommandRegistry, Any], Any]] = {
    "ask": lambda registry, key: registry.ask(key, "payload"),
    "ask(block=False)": lambda registry, key: registry.ask(key, "payload", block=False),
    "ask_reply": lambda registry, key: registry.ask_reply(key, "payload"),
    "health": lambda registry, key: registry.health(key),
    "configure": lambda registry, key: registry.configure(key, CommandConfig()),
    "go": lambda registry, key: registry.go(key, lambda: "ran"),
    "do": lambda registry, key: registry.do(key, lambda: "ran"),
}


@fuzz()
@given(key=BAD_KEYS, method=st.sampled_from(sorted(METHODS)))
@example(key="", method="ask")
@example(key=" \t\n", method="health")
@example(key="k" * 257, method="configure")
@example(key=None, method="do")
def test_a_bad_key_is_refused_promptly_naming_the_key_problem(
    serving: CommandRegistry, key: Any, method: str
) -> None:
    error = raised(lambda: METHODS[method](serving, key), f"{method}({_show(key)})")

    assert isinstance(error, TypeError | ValueError), repr(error)
    message = str(error)
    assert "key" in message
    if isinstance(key, str):
        assert isinstance(error, ValueError)
        assert "non-empty" in message or "256" in message
    else:
        assert isinstance(error, TypeError)
        assert "str" in message
        assert type(key).__name__ in message
    assert serving.ask(GOOD_KEY, 1) == 1


@pytest.mark.parametrize(
    "key", [HashBoom(), ReprBoom(), Hostile()], ids=["HashBoom", "ReprBoom", "Hostile"]
)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_key_with_a_broken_hash_or_repr_is_still_refused_as_not_a_str(
    serving: CommandRegistry, key: object, method: str
) -> None:
    error = raised(lambda: METHODS[method](serving, key), f"{method}({type(key).__name__})")

    assert isinstance(error, TypeError), repr(error)
    assert "key" in str(error)
    assert type(key).__name__ in str(error)


@fuzz(25)
@given(key=UNKNOWN_KEYS)
@example(key="ключ 🔑")
@example(key="k" * 256)
@example(key=" padded ")
def test_a_well_formed_key_nobody_registered_is_unknown_to_ask_and_health(
    serving: CommandRegistry, key: str
) -> None:
    for method in ("ask", "ask(block=False)", "ask_reply", "health"):
        error = raised(lambda: METHODS[method](serving, key), f"{method}({key!r:.40})")  # noqa: B023

        assert isinstance(error, UnknownCommandError), repr(error)
        assert isinstance(error, LookupError)
        assert error.key == key
        assert repr(key) in str(error)
    assert serving.ask(GOOD_KEY, key) == key


@fuzz(15)
@given(key=UNKNOWN_KEYS)
def test_a_well_formed_key_nobody_registered_runs_functions_and_takes_a_config(
    key: str,
) -> None:
    with CommandRegistry() as registry:
        assert promptly(lambda: registry.configure(key, CommandConfig()), "configure").error is None
        assert promptly(lambda: registry.do(key, lambda: "done"), "do").value == "done"
        future = promptly(lambda: registry.go(key, lambda: "gone"), "go").value
        assert future.get(timeout=WAIT) == "gone"


def test_a_command_key_cannot_be_called_as_a_function(serving: CommandRegistry) -> None:
    for method in ("go", "do"):
        error = raised(lambda: METHODS[method](serving, GOOD_KEY), method)  # noqa: B023

        assert isinstance(error, ValueError)
        assert repr(GOOD_KEY) in str(error)
        assert "ask()" in str(error)


@fuzz()
@given(
    timeout=st.one_of(
        st.floats(max_value=0.0),
        st.just(math.nan),
        st.integers(max_value=0),
        st.booleans(),
        st.text(max_size=3),
        st.lists(st.integers(), max_size=1),
        st.builds(ReprBoom),
    ),
    method=st.sampled_from(["ask", "ask_reply"]),
)
def test_a_bad_timeout_is_refused_naming_the_timeout(
    serving: CommandRegistry, timeout: Any, method: str
) -> None:
    ask = getattr(serving, method)

    error = raised(lambda: ask(GOOD_KEY, 1, timeout=timeout), f"{method}(timeout={_show(timeout)})")

    assert isinstance(error, ValueError), repr(error)
    assert "timeout" in str(error)


HUGE_TIMEOUTS = [2**64, 1e308, math.inf, HUGE]


@pytest.mark.parametrize("timeout", HUGE_TIMEOUTS, ids=["2**64", "1e308", "inf", "10**400"])
@pytest.mark.parametrize("method", ["ask", "ask_reply"])
def test_a_huge_timeout_leaves_the_deadline_alone_or_is_refused_naming_it(
    serving: CommandRegistry, timeout: Any, method: str
) -> None:
    ask = getattr(serving, method)

    outcome = promptly(lambda: ask(GOOD_KEY, 1, timeout=timeout), f"{method}(timeout=huge)")

    if outcome.error is not None:
        assert isinstance(outcome.error, ValueError), repr(outcome.error)
        assert "timeout" in str(outcome.error)
    else:
        answer = outcome.value.value if method == "ask_reply" else outcome.value
        assert answer == 1


@pytest.mark.parametrize("timeout", HUGE_TIMEOUTS, ids=["2**64", "1e308", "inf", "10**400"])
def test_shutdown_with_a_huge_timeout_returns_at_once_or_refuses_it(timeout: Any) -> None:
    registry = CommandRegistry()
    registry.register(Echo)
    assert registry.ask(GOOD_KEY, 1) == 1

    outcome = promptly(lambda: registry.shutdown(timeout=timeout), "shutdown(timeout=huge)")

    if outcome.error is not None:
        assert isinstance(outcome.error, ValueError), repr(outcome.error)
        assert "timeout" in str(outcome.error)
        assert promptly(registry.shutdown, "shutdown()").error is None
    error = raised(lambda: registry.ask(GOOD_KEY, 1), "ask after shutdown")
    assert isinstance(error, CommandError)
    assert error.reason == "shutdown"


NOT_CALLABLE = st.one_of(
    st.none(), st.integers(), st.text(max_size=5), st.lists(st.none()), st.builds(ReprBoom)
)

#: What configure() and a Command's ``config`` must refuse.
NOT_CONFIGS = (ANY_VALUE | st.builds(ReprBoom) | st.builds(Hostile)).filter(
    lambda value: not isinstance(value, CommandConfig)
)


@fuzz()
@given(run=NOT_CALLABLE, method=st.sampled_from(["go", "do"]))
def test_go_and_do_refuse_a_run_that_is_not_callable(
    serving: CommandRegistry, run: Any, method: str
) -> None:
    call = getattr(serving, method)

    error = raised(lambda: call("fn", run), method)

    assert isinstance(error, TypeError), repr(error)
    assert "run" in str(error)


@fuzz()
@given(fallback=NOT_CALLABLE.filter(lambda value: value is not None))
def test_go_and_do_refuse_a_fallback_that_is_not_callable(
    serving: CommandRegistry, fallback: Any
) -> None:
    for method in ("go", "do"):
        call = getattr(serving, method)

        error = raised(lambda: call("fn", lambda: 1, fallback), method)  # noqa: B023

        assert isinstance(error, TypeError), repr(error)
        assert "fallback" in str(error)


@fuzz()
@given(listener=NOT_CALLABLE)
def test_subscribe_refuses_a_listener_that_is_not_callable(
    serving: CommandRegistry, listener: Any
) -> None:
    error = raised(lambda: serving.subscribe(listener), "subscribe")

    assert isinstance(error, TypeError), repr(error)
    assert "callable" in str(error)


@fuzz()
@given(config=NOT_CONFIGS)
def test_configure_refuses_what_is_not_a_command_config(
    serving: CommandRegistry, config: Any
) -> None:
    error = raised(lambda: serving.configure(GOOD_KEY, config), "configure")

    assert isinstance(error, TypeError), repr(error)
    assert "CommandConfig" in str(error)


# -- payloads --------------------------------------------------------------------------------


def _expected_description(payload: Any) -> Any:
    try:
        return repr(payload)
    except Exception:
        return FALLBACK


def _check_echo(reply: Reply, payload: Any) -> None:
    assert isinstance(reply, Reply)
    assert reply.ok, reply
    assert reply.value is payload or (EventType.TIMEOUT in reply.events and reply.fell_back)


@fuzz()
@given(payload=PAYLOADS)
def test_any_payload_is_answered_with_the_commands_result(
    serving: CommandRegistry, payload: Any
) -> None:
    reply = promptly(lambda: serving.ask_reply(GOOD_KEY, payload), "ask_reply")
    assert reply.error is None, reply.error
    _check_echo(reply.value, payload)

    future = promptly(lambda: serving.ask_reply(GOOD_KEY, payload, block=False), "future")
    assert future.error is None, future.error
    _check_echo(future.value.get(timeout=WAIT), payload)

    asked = promptly(lambda: serving.ask(GOOD_KEY, payload), "ask")
    assert asked.error is None, asked.error
    assert asked.value is payload or asked.value is FALLBACK

    done = promptly(lambda: serving.do("fn", lambda: payload), "do")
    assert done.error is None, done.error
    assert done.value is payload


def _check_description(reply: Reply, payload: Any) -> None:
    expected = _expected_description(payload)
    assert isinstance(reply, Reply)
    assert reply.ok, reply
    if expected is FALLBACK:
        assert reply.fell_back
        assert reply.value is FALLBACK
        assert reply.events == (EventType.FAILURE, EventType.FALLBACK_SUCCESS)
    else:
        assert reply.value == expected or (reply.fell_back and EventType.TIMEOUT in reply.events)


@fuzz()
@given(payload=PAYLOADS)
def test_a_payload_that_breaks_run_is_answered_with_the_fallback(
    serving: CommandRegistry, payload: Any
) -> None:
    outcome = promptly(lambda: serving.ask_reply(Describe.key, payload), "ask_reply")

    assert outcome.error is None, outcome.error
    _check_description(outcome.value, payload)


#: The worst of PAYLOADS, tried on every run (hypothesis could not print them as examples).
HOSTILE_PAYLOADS = {
    "hostile dunders": Hostile(),
    "raising hash": HashBoom(),
    "raising repr": ReprBoom(),
    "self-referential list": _self_referential(),
    "list nested 100_000 deep": _deeply_nested(100_000),
    "10 MB string": "x" * 10_000_000,
}


@pytest.mark.parametrize("payload", list(HOSTILE_PAYLOADS.values()), ids=list(HOSTILE_PAYLOADS))
def test_a_hostile_payload_is_answered_with_the_result_or_the_fallback(
    serving: CommandRegistry, payload: Any
) -> None:
    echoed = promptly(lambda: serving.ask_reply(GOOD_KEY, payload), "echo")
    described = promptly(lambda: serving.ask_reply(Describe.key, payload), "describe")
    done = promptly(lambda: serving.do("fn", lambda: payload), "do")

    assert echoed.error is None, echoed.error
    _check_echo(echoed.value, payload)
    assert described.error is None, described.error
    _check_description(described.value, payload)
    assert done.error is None, done.error
    assert done.value is payload


# -- registration ----------------------------------------------------------------------------


class NotACommand:
    key = "not-a-command"

    def run(self, payload: Any) -> Any:
        return payload


NOT_COMMAND_CLASSES = st.one_of(
    st.builds(ReprBoom),
    st.builds(Hostile),
    st.integers(),
    st.text(max_size=5),
    st.none(),
    st.builds(object),
    st.sampled_from(
        [
            len,
            lambda payload: payload,
            Echo(),
            Echo.run,
            NotACommand,
            NotACommand(),
            int,
            str,
            Exception,
            type,
            object,
            CommandConfig,
            CommandRegistry,
            "echo",
        ]
    ),
)


@fuzz()
@given(thing=NOT_COMMAND_CLASSES)
def test_register_refuses_what_is_not_a_command_subclass(
    serving: CommandRegistry, thing: Any
) -> None:
    error = raised(lambda: serving.register(thing), f"register({_show(thing)})")

    assert isinstance(error, TypeError), repr(error)
    assert "Command subclass" in str(error)
    if isinstance(thing, type):
        assert thing.__qualname__ in str(error)


def _command_class(name: str, **attributes: Any) -> type[Command]:
    def run(self: Command, payload: Any) -> Any:
        return (name, payload)

    return type(name, (Command,), {"run": run, **attributes})


@fuzz()
@given(key=BAD_KEYS)
def test_register_refuses_a_command_with_a_bad_key_naming_the_class_and_the_key(
    serving: CommandRegistry, key: Any
) -> None:
    odd = _command_class("OddKey", key=key)

    error = raised(lambda: serving.register(odd), f"register(key={_show(key)})")

    assert isinstance(error, TypeError | ValueError), repr(error)
    assert "OddKey.key" in str(error)


def test_register_refuses_a_command_without_a_key_naming_the_class(
    serving: CommandRegistry,
) -> None:
    keyless = _command_class("Keyless")

    error = raised(lambda: serving.register(keyless), "register(Keyless)")

    assert isinstance(error, TypeError), repr(error)
    assert "Keyless.key" in str(error)


@fuzz()
@given(config=NOT_CONFIGS)
@example(config=CommandConfig)  # the class, not an instance
@example(config={"timeout": 1.0})
def test_register_refuses_a_command_whose_config_is_not_a_command_config(
    serving: CommandRegistry, config: Any
) -> None:
    odd = _command_class("OddConfig", key="odd-config", config=config)

    error = raised(lambda: serving.register(odd), f"register(config={_show(config)})")

    assert isinstance(error, TypeError), repr(error)
    assert "OddConfig.config" in str(error)
    assert "CommandConfig" in str(error)


@fuzz(20)
@given(key=UNKNOWN_KEYS, twice_the_same_class=st.booleans())
@example(key="echo", twice_the_same_class=False)
def test_registering_a_key_twice_is_refused_naming_the_key_and_the_first_stands(
    key: str, twice_the_same_class: bool
) -> None:
    first = _command_class("First", key=key)
    second = first if twice_the_same_class else _command_class("Second", key=key)
    with CommandRegistry() as registry:
        assert promptly(lambda: registry.register(first), "first register").error is None

        error = raised(lambda: registry.register(second), "second register")

        assert isinstance(error, ValueError), repr(error)
        assert repr(key) in str(error)
        assert "already registered" in str(error)
        assert promptly(lambda: registry.ask(key, 1), "ask").value == ("First", 1)


# -- after shutdown --------------------------------------------------------------------------

AFTER_SHUTDOWN: dict[str, Callable[[CommandRegistry, str], Any]] = {
    **METHODS,
    "ask_reply(block=False)": lambda registry, key: registry.ask_reply(key, 1, block=False),
    "register": lambda registry, key: registry.register(_command_class("Late", key=key)),
}


@pytest.mark.parametrize("method", sorted(AFTER_SHUTDOWN))
@pytest.mark.parametrize("key", [GOOD_KEY, Describe.key, "never-used", "fn"])
def test_after_shutdown_every_method_raises_command_error_shutdown_promptly(
    registry: CommandRegistry, method: str, key: str
) -> None:
    registry.register(Echo)
    registry.register(Describe)
    assert registry.ask(GOOD_KEY, 1) == 1  # Echo's port is cached; Describe's never built
    assert registry.do("fn", lambda: 1) == 1
    assert promptly(registry.shutdown, "shutdown").error is None

    error = raised(lambda: AFTER_SHUTDOWN[method](registry, key), f"{method}({key!r})")

    assert isinstance(error, CommandError), repr(error)
    assert error.reason == "shutdown"


@fuzz(20)
@given(key=BAD_KEYS | UNKNOWN_KEYS, method=st.sampled_from(sorted(AFTER_SHUTDOWN)))
def test_after_shutdown_no_call_hangs_whatever_the_key(key: Any, method: str) -> None:
    registry = CommandRegistry()
    registry.register(Echo)
    registry.ask(GOOD_KEY, 1)
    assert promptly(registry.shutdown, "shutdown").error is None

    error = raised(lambda: AFTER_SHUTDOWN[method](registry, key), f"{method}({_show(key)})")

    assert isinstance(error, CommandError | TypeError | ValueError), repr(error)
    if isinstance(error, CommandError):
        assert error.reason == "shutdown"


@fuzz()
@given(
    timeout=st.one_of(
        st.floats(max_value=0.0), st.just(math.nan), st.text(max_size=3), st.builds(ReprBoom)
    )
)
def test_shutdown_refuses_a_bad_timeout_naming_it(timeout: Any) -> None:
    with CommandRegistry() as registry:
        error = raised(lambda: registry.shutdown(timeout=timeout), "shutdown")

        assert isinstance(error, ValueError), repr(error)
        assert "timeout" in str(error)
