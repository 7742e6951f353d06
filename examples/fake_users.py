"""A local fake user service for the examples: healthy, slow or down at the flip of a switch.

Standard library only, like ``fake_jira.py``: 127.0.0.1, an ephemeral port, a daemon thread,
one thread per request::

    with FakeUsers() as users:
        urllib.request.urlopen(users.user_url("alice"))  # {"name": ..., "email": ..., "team": ...}
        users.set_mode("slow")  # now every answer takes ``slow_delay`` seconds
        users.set_mode("down")  # now every answer is an immediate 503

Two resources are served, and the switch applies to both:

* ``GET /users/<name>``: that user's record (404 for a name it does not know);
* ``GET /users?names=alice,bob``: the batch endpoint (``users.batch_url(["alice", "bob"])``):
  ``{"users": [...]}``, one entry per name asked, in the order asked (a name asked twice is
  answered twice), ``null`` for a name it does not know; 400 without ``names``. Names are split
  on commas (a name cannot hold one); ``names=`` may also be repeated.

``requests`` counts every request served, whatever the resource and the answer. A slow answer
waits on an event that ``stop()`` sets, so the server shuts down promptly even while requests
wait.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from typing import Any, ClassVar

from fake_service import FakeService, Mode

__all__ = ["BATCH_PATH", "DEFAULT_USERS", "USERS_PATH", "FakeUsers", "Mode"]

USERS_PATH = "/users/"
BATCH_PATH = "/users"

DEFAULT_USERS: tuple[dict[str, str], ...] = (
    {"name": "alice", "email": "alice@example.com", "team": "platform"},
    {"name": "bob", "email": "bob@example.com", "team": "web"},
    {"name": "carol", "email": "carol@example.com", "team": "platform"},
    {"name": "dave", "email": "dave@example.com", "team": "mobile"},
)


class FakeUsers(FakeService):
    """A fake user service on 127.0.0.1; ``start()``/``stop()`` or use it as a context manager."""

    thread_name = "fake-users"
    down_body: ClassVar[dict[str, Any]] = {"error": "the user service is down for maintenance"}

    def __init__(
        self,
        *,
        mode: Mode | str = Mode.HEALTHY,
        slow_delay: float = 2.0,
        users: Iterable[dict[str, str]] = DEFAULT_USERS,
    ) -> None:
        super().__init__(mode=mode, slow_delay=slow_delay)
        self.users = {user["name"]: dict(user) for user in users}

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if path == BATCH_PATH:
            names = [name for value in query.get("names", []) for name in value.split(",")]
            if not names:
                return 400, {"error": "give the names to look up: /users?names=alice,bob"}
            return 200, {"users": [self.users.get(name) for name in names]}
        name = urllib.parse.unquote(path[len(USERS_PATH) :]) if path.startswith(USERS_PATH) else ""
        user = self.users.get(name) if name and "/" not in name else None
        if user is None:
            return 404, {"error": f"no such user: {path}"}
        return 200, user

    def user_url(self, name: str) -> str:
        """The URL of ``name``'s record."""
        return f"{self.url}{USERS_PATH}{urllib.parse.quote(name, safe='')}"

    def batch_url(self, names: Iterable[str]) -> str:
        """The URL of the records of ``names``, in that order (the batch endpoint)."""
        return f"{self.url}{BATCH_PATH}?{urllib.parse.urlencode({'names': ','.join(names)})}"
