"""A local fake user service for the examples: healthy, slow or down at the flip of a switch.

Standard library only, like ``fake_jira.py``: 127.0.0.1, an ephemeral port, a daemon thread,
one thread per request::

    with FakeUsers() as users:
        urllib.request.urlopen(users.user_url("alice"))  # {"name": ..., "email": ..., "team": ...}
        users.set_mode("slow")  # now every answer takes ``slow_delay`` seconds
        users.set_mode("down")  # now every answer is an immediate 503

Only ``GET /users/<name>`` is served (404 for a name it does not know). A slow answer waits on
an event that ``stop()`` sets, so the server shuts down promptly even while requests wait.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from fake_jira import Mode

__all__ = ["DEFAULT_USERS", "USERS_PATH", "FakeUsers", "Mode"]

USERS_PATH = "/users/"

DEFAULT_USERS: tuple[dict[str, str], ...] = (
    {"name": "alice", "email": "alice@example.com", "team": "platform"},
    {"name": "bob", "email": "bob@example.com", "team": "web"},
    {"name": "carol", "email": "carol@example.com", "team": "platform"},
    {"name": "dave", "email": "dave@example.com", "team": "mobile"},
)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        users = self.server.users
        users._count()
        mode = users.mode
        if mode is Mode.DOWN:
            self._send(503, {"error": "the user service is down for maintenance"})
            return
        if mode is Mode.SLOW and users._stopping.wait(users.slow_delay):
            return  # shutting down: hang up without an answer
        path = urllib.parse.urlsplit(self.path).path
        name = urllib.parse.unquote(path[len(USERS_PATH) :]) if path.startswith(USERS_PATH) else ""
        user = users.users.get(name) if name and "/" not in name else None
        if user is None:
            self._send(404, {"error": f"no such user: {path}"})
            return
        self._send(200, user)

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
    request_queue_size = 128
    users: FakeUsers

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-request is business as usual here


class FakeUsers:
    """A fake user service on 127.0.0.1; ``start()``/``stop()`` or use it as a context manager."""

    def __init__(
        self,
        *,
        mode: Mode | str = Mode.HEALTHY,
        slow_delay: float = 2.0,
        users: Iterable[dict[str, str]] = DEFAULT_USERS,
    ) -> None:
        self.slow_delay = slow_delay
        self.users = {user["name"]: dict(user) for user in users}
        self._mode = Mode(mode)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._requests = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

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

    @property
    def url(self) -> str:
        """The server's base URL, e.g. ``http://127.0.0.1:50123``."""
        if self._server is None:
            msg = "FakeUsers is not running: call start() or use it in a with block"
            raise RuntimeError(msg)
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def user_url(self, name: str) -> str:
        """The URL of ``name``'s record."""
        return f"{self.url}{USERS_PATH}{urllib.parse.quote(name, safe='')}"

    def start(self) -> FakeUsers:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.users = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-users",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests waiting in slow mode hang up at once."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)
        self._server = self._thread = None

    def __enter__(self) -> FakeUsers:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
