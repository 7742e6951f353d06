"""The base of the examples' fake dependencies: a JSON service that is healthy, slow or down.

Standard library only. A service listens on 127.0.0.1 on an ephemeral port and serves from a
daemon thread, one thread per request. A subclass says how it answers a healthy GET
(``answer(path, query) -> (status, body)``) and what it says when it is down. A slow answer
waits on an event that ``stop()`` sets, so the server shuts down promptly even while requests
are sleeping.
"""

from __future__ import annotations

import enum
import http.server
import json
import threading
import urllib.parse
from types import TracebackType
from typing import Any, ClassVar, Self

__all__ = ["FakeService", "Mode"]


class Mode(enum.StrEnum):
    """How a fake service behaves."""

    HEALTHY = "healthy"  # answers at once
    SLOW = "slow"  # answers after ``slow_delay`` seconds (or at shutdown, whichever is first)
    DOWN = "down"  # answers 503 Service Unavailable at once


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        service = self.server.service
        service._count()
        mode = service.mode
        if mode is Mode.DOWN:
            self._send(503, service.down_body)
            return
        if mode is Mode.SLOW and service._stopping.wait(service.slow_delay):
            return  # shutting down: hang up without an answer
        url = urllib.parse.urlsplit(self.path)
        self._send(*service.answer(url.path, urllib.parse.parse_qs(url.query)))

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (its timeout passed): nobody is listening any more

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the examples print their own story


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # the callers connect in bursts: a full backlog drops SYNs
    service: FakeService

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-request is business as usual here


class FakeService:
    """A fake JSON service on 127.0.0.1; ``start()``/``stop()`` or use it as a context manager."""

    #: The serving thread's name.
    thread_name: ClassVar[str] = "fake-service"
    #: The body of a 503 while the service is down.
    down_body: ClassVar[dict[str, Any]] = {"error": "down for maintenance"}

    def __init__(self, *, mode: Mode | str = Mode.HEALTHY, slow_delay: float = 2.0) -> None:
        self.slow_delay = slow_delay
        self._mode = Mode(mode)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._requests = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """The healthy answer to ``GET path?query``: (status, JSON body)."""
        raise NotImplementedError

    # -- the switch ----------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    def set_mode(self, mode: Mode | str) -> None:
        """Switch to "healthy", "slow" or "down"; takes effect for the next request."""
        self._mode = Mode(mode)

    @property
    def requests(self) -> int:
        """Requests received since the server started, whatever the answer."""
        return self._requests

    def _count(self) -> None:
        with self._lock:
            self._requests += 1

    # -- where and when ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's base URL, e.g. ``http://127.0.0.1:50123``."""
        if self._server is None:
            msg = f"{type(self).__name__} is not running: call start() or use it in a with block"
            raise RuntimeError(msg)
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.service = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests sleeping in slow mode hang up at once."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
