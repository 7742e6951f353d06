"""The standalone server's thread is supervised: a fault escaping its loop is logged and the
loop started again; a request's fault ends that request only. Faults are injected."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from probe import WAIT

from actors import CommandRegistry
from actors.http import HttpServer, start_http_server
from actors.http_server import _QuietHandler


@pytest.fixture
def server(registry: CommandRegistry) -> Iterator[HttpServer]:
    server, thread = start_http_server(0, registry=registry, interval=0.05)
    yield server
    server.shutdown()
    thread.join(WAIT)
    assert not thread.is_alive()


def status_of(server: HttpServer, path: str = "/nope") -> int:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=WAIT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [log for log in list(logs) if log["event"] == name]


class Fault:
    """Raises ``error`` from the server loop's ``service_actions`` the next ``times`` times."""

    def __init__(self, error: BaseException, times: int = 1) -> None:
        self.error = error
        self.left = times
        self.raised = threading.Event()

    def __call__(self) -> None:
        if self.left > 0:
            self.left -= 1
            if self.left == 0:
                self.raised.set()
            raise self.error


@pytest.mark.parametrize(
    "error", [RuntimeError("injected"), SystemExit(3), KeyboardInterrupt()], ids=repr
)
def test_a_fault_escaping_the_loop_is_logged_and_the_loop_started_again(
    server: HttpServer,
    captured_logs: list[dict[str, Any]],
    eventually: Callable[..., None],
    error: BaseException,
) -> None:
    assert status_of(server) == 404
    fault = Fault(error)
    server.service_actions = fault  # type: ignore[method-assign]

    assert fault.raised.wait(WAIT)
    eventually(lambda: server.restarts == 1, within=WAIT, what="the loop restarted")

    assert status_of(server) == 404  # served again, on the same socket
    assert server.thread is not None and server.thread.is_alive()
    (restarted,) = events(captured_logs, "http.restarted")
    assert restarted["log_level"] == "error"
    assert restarted["error"] == repr(error)
    assert restarted["restarts"] == 1
    assert restarted["port"] == server.server_port
    assert restarted["delay_ms"] == 50.0
    assert restarted["exc_info"] is True


def test_restarts_back_off_and_a_shutdown_during_the_backoff_ends_the_thread(
    registry: CommandRegistry, eventually: Callable[..., None]
) -> None:
    server, thread = start_http_server(0, registry=registry)
    fault = Fault(RuntimeError("again and again"), times=100)
    server.service_actions = fault  # type: ignore[method-assign]
    eventually(lambda: server.restarts >= 3, within=WAIT, what="three restarts")

    started = time.monotonic()
    server.shutdown()
    thread.join(WAIT)

    assert not thread.is_alive()
    assert time.monotonic() - started < WAIT
    assert fault.left > 90  # 50, 100, 200, 400 ms... not a busy loop


def test_a_shutdown_right_after_the_start_does_not_hang(registry: CommandRegistry) -> None:
    for _ in range(5):
        server, thread = start_http_server(0, registry=registry)
        server.shutdown()
        thread.join(WAIT)
        assert not thread.is_alive()


def test_an_app_that_raises_answers_500_and_is_logged_and_the_server_goes_on(
    server: HttpServer, captured_logs: list[dict[str, Any]]
) -> None:
    app = server.get_app()

    def broken(environ: dict[str, Any], start_response: Any) -> Any:
        raise ValueError("broken app")

    server.set_app(broken)
    try:
        assert status_of(server, "/metrics") == 500
    finally:
        server.set_app(app)

    assert status_of(server, "/nope") == 404
    (failed,) = events(captured_logs, "http.request_failed")
    assert (failed["where"], failed["error"]) == ("app", "ValueError('broken app')")
    assert failed["log_level"] == "error"
    assert failed["exc_info"] is True


@pytest.mark.parametrize("error", [RuntimeError("handler"), SystemExit(1)], ids=repr)
def test_a_handler_that_raises_ends_its_request_only(
    server: HttpServer,
    captured_logs: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    eventually: Callable[..., None],
    error: BaseException,
) -> None:
    handle = _QuietHandler.handle
    failing = threading.Event()

    def faulty(self: _QuietHandler) -> None:
        if not failing.is_set():
            failing.set()
            raise error
        handle(self)

    monkeypatch.setattr(_QuietHandler, "handle", faulty)

    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        status_of(server)
    assert status_of(server) == 404

    eventually(lambda: events(captured_logs, "http.request_failed"), within=WAIT, what="logged")
    (failed,) = events(captured_logs, "http.request_failed")
    assert (failed["where"], failed["error"]) == ("server", repr(error))
    assert failed["client"] == "127.0.0.1"
    assert server.restarts == 0
