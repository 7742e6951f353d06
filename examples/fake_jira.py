"""A local fake JIRA server for the examples: healthy, slow or down at the flip of a switch.

Standard library only. The server listens on 127.0.0.1 on an ephemeral port and serves from a
daemon thread, one thread per request::

    with FakeJira() as jira:
        urllib.request.urlopen(f"{jira.url}/rest/api/2/search?jql=project=ACME")
        jira.set_mode("slow")  # now every answer takes ``slow_delay`` seconds
        jira.set_mode("down")  # now every answer is an immediate 503

Only ``GET /rest/api/2/search?jql=project=<KEY>`` is served; it answers ``{"issues": [...]}``
with the issues of that project. A slow answer waits on an event that ``stop()`` sets, so the
server shuts down promptly even while requests are sleeping.
"""

from __future__ import annotations

import enum
import http.server
import json
import re
import threading
import urllib.parse
from collections.abc import Iterable
from types import TracebackType
from typing import Any

__all__ = ["DEFAULT_ISSUES", "SEARCH_PATH", "FakeJira", "Mode"]

SEARCH_PATH = "/rest/api/2/search"

DEFAULT_ISSUES: tuple[dict[str, Any], ...] = (
    {"key": "ACME-1", "fields": {"summary": "Login page times out", "status": "Open"}},
    {"key": "ACME-2", "fields": {"summary": "Export to CSV drops rows", "status": "In Progress"}},
    {"key": "ACME-3", "fields": {"summary": "Dark mode for the dashboard", "status": "Done"}},
    {"key": "WIDGET-1", "fields": {"summary": "Widgets are not blue enough", "status": "Open"}},
)

_PROJECT = re.compile(r"project\s*=\s*\"?([A-Za-z][A-Za-z0-9_]*)\"?")


class Mode(enum.StrEnum):
    """How the fake server behaves."""

    HEALTHY = "healthy"  # answers at once with the project's issues
    SLOW = "slow"  # answers after ``slow_delay`` seconds (or at shutdown, whichever is first)
    DOWN = "down"  # answers 503 Service Unavailable at once


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        jira = self.server.jira
        jira._count()
        mode = jira.mode
        if mode is Mode.DOWN:
            self._send(503, {"errorMessages": ["JIRA is down for maintenance"]})
            return
        if mode is Mode.SLOW and jira._stopping.wait(jira.slow_delay):
            return  # shutting down: hang up without an answer
        url = urllib.parse.urlsplit(self.path)
        if url.path != SEARCH_PATH:
            self._send(404, {"errorMessages": [f"no such resource: {url.path}"]})
            return
        jql = urllib.parse.parse_qs(url.query).get("jql", [""])[0]
        match = _PROJECT.search(jql)
        if match is None:
            self._send(400, {"errorMessages": [f"unsupported jql: {jql!r}"]})
            return
        project = match.group(1).upper()
        issues = [issue for issue in jira.issues if issue["key"].startswith(f"{project}-")]
        self._send(200, {"startAt": 0, "total": len(issues), "issues": issues})

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
    jira: FakeJira

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-request is business as usual here


class FakeJira:
    """A fake JIRA on 127.0.0.1; ``start()``/``stop()`` or use it as a context manager."""

    def __init__(
        self,
        *,
        mode: Mode | str = Mode.HEALTHY,
        slow_delay: float = 2.0,
        issues: Iterable[dict[str, Any]] = DEFAULT_ISSUES,
    ) -> None:
        self.slow_delay = slow_delay
        self.issues = list(issues)
        self._mode = Mode(mode)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._requests = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

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
            msg = "FakeJira is not running: call start() or use it in a with block"
            raise RuntimeError(msg)
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def search_url(self, project: str) -> str:
        """The URL that lists ``project``'s issues."""
        query = urllib.parse.urlencode({"jql": f"project={project}"})
        return f"{self.url}{SEARCH_PATH}?{query}"

    def start(self) -> FakeJira:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.jira = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-jira",
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

    def __enter__(self) -> FakeJira:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
