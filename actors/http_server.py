"""The standalone HTTP server of ``actors.http.start_http_server``: the standard library's
``wsgiref`` on a daemon thread, supervised.

The thread runs the server's loop (``serve_forever``) under a supervisor: an exception escaping
the loop (anything: a bug, a ``BaseException``) is logged (``http.restarted``, with the
traceback) and the loop started again on the same socket after a backoff (0.05 s doubling up to
1 s; back to 0.05 s once a loop has served a minute), until ``shutdown()``. A request's fault
stays in its own thread: the app raising, the handler raising, even a ``BaseException``, is
logged (``http.request_failed``) and its connection closed; the loop and the other connections
go on. Nothing is written to stderr: every event goes through the library's logger.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any, Protocol
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from supervision.restart import backoff_delay

from .log import logger

__all__ = ["SupervisedWsgiServer", "WsgiCloseable", "serve"]

#: Seconds between the server loop's checks for ``shutdown()``: how long shutting down takes.
POLL_INTERVAL = 0.05
#: The backoff before a restart of the loop: the first one, and the longest.
MIN_BACKOFF = 0.05
MAX_BACKOFF = 1.0
#: A loop that served this long before it failed starts the backoff over.
HEALTHY = 60.0
#: How long ``shutdown()`` waits for the loop's thread to end.
STOP_TIMEOUT = 10.0


class WsgiCloseable(Protocol):
    """What the server serves: a WSGI app that ``close()`` ends the streams of."""

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]: ...

    def close(self) -> None: ...


_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


class _LoggingServerHandler(ServerHandler):
    """wsgiref's handler, logging what the app raised instead of printing it."""

    def log_exception(self, exc_info: _ExcInfo) -> None:  # type: ignore[override]
        # called by handle_error, within the except clause of the fault: logged with it
        logger.exception("http.request_failed", error=repr(exc_info[1]), where="app")


class _QuietHandler(WSGIRequestHandler):
    """Logs requests through the library's logger at debug instead of writing them to stderr,
    and the app's faults at error."""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http.request", request=format % args, client=self.client_address[0])

    def handle(self) -> None:
        """``WSGIRequestHandler.handle``, with a handler that logs the app's faults."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = ""
            self.request_version = ""
            self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():  # an error was sent
            return
        handler = _LoggingServerHandler(
            self.rfile,
            self.wfile,  # type: ignore[arg-type] # as WSGIRequestHandler passes it
            self.get_stderr(),
            self.get_environ(),
            multithread=False,
        )
        handler.request_handler = self  # type: ignore[attr-defined] # wsgiref's back pointer
        handler.run(self.server.get_app())  # type: ignore[attr-defined]


class SupervisedWsgiServer(ThreadingMixIn, WSGIServer):
    """``wsgiref``'s server, one daemon thread per connection, serving a WSGI app; its loop runs
    under ``supervise`` (``serve`` starts it on a daemon thread)."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], app: WsgiCloseable, family: socket.AddressFamily
    ) -> None:
        self.address_family = family
        super().__init__(address, _QuietHandler)
        self.app = app
        self.set_app(app)
        self._stopping = threading.Event()
        #: The thread running ``supervise`` (set by ``serve``).
        self.thread: threading.Thread | None = None
        #: How many times the loop was started again after a fault.
        self.restarts = 0

    def shutdown(self) -> None:
        """End the open streams at once, stop serving and close the socket."""
        self.app.close()
        self._stopping.set()
        thread = self.thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            super().shutdown()  # the loop notices within POLL_INTERVAL
            thread.join(STOP_TIMEOUT)
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request failed past its handler (called with the exception being handled)."""
        logger.exception(
            "http.request_failed",
            error=repr(sys.exc_info()[1]),
            where="server",
            client=_client(client_address),
        )

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """A connection's thread: as ``ThreadingMixIn``'s, and a ``BaseException`` is logged
        too (the thread ends, the connection is closed; the server goes on)."""
        try:
            self.finish_request(request, client_address)
        except BaseException:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def supervise(self) -> None:
        """Serve until ``shutdown()``: the loop is started again after any exception escaping
        it (logged as ``http.restarted``), after a backoff."""
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                # Entered even when shutdown() came first: it waits for a loop to end.
                self.serve_forever(poll_interval=POLL_INTERVAL)
            except BaseException as error:
                if self._stopping.is_set():
                    return
                if time.monotonic() - started >= HEALTHY:
                    attempt = 0
                delay = backoff_delay(attempt, MIN_BACKOFF, MAX_BACKOFF, 0.0, 0.0)
                attempt += 1
                self.restarts += 1
                logger.exception(
                    "http.restarted",
                    port=self.server_port,
                    error=repr(error),
                    restarts=self.restarts,
                    delay_ms=round(delay * 1000.0, 3),
                )
                if self._stopping.wait(delay):
                    return
                continue
            return  # shutdown() asked (serve_forever ends no other way)


def _client(address: Any) -> Any:
    return address[0] if isinstance(address, tuple) and address else address


def serve(server: SupervisedWsgiServer) -> threading.Thread:
    """Run ``server.supervise()`` on a daemon thread (started, returned)."""
    thread = threading.Thread(
        target=server.supervise, name=f"hystrix-http:{server.server_port}", daemon=True
    )
    server.thread = thread
    thread.start()
    return thread
