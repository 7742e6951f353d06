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

import re
import urllib.parse
from collections.abc import Iterable
from typing import Any, ClassVar

from fake_service import FakeService, Mode

__all__ = ["DEFAULT_ISSUES", "SEARCH_PATH", "FakeJira", "Mode"]

SEARCH_PATH = "/rest/api/2/search"

DEFAULT_ISSUES: tuple[dict[str, Any], ...] = (
    {"key": "ACME-1", "fields": {"summary": "Login page times out", "status": "Open"}},
    {"key": "ACME-2", "fields": {"summary": "Export to CSV drops rows", "status": "In Progress"}},
    {"key": "ACME-3", "fields": {"summary": "Dark mode for the dashboard", "status": "Done"}},
    {"key": "WIDGET-1", "fields": {"summary": "Widgets are not blue enough", "status": "Open"}},
)

_PROJECT = re.compile(r"project\s*=\s*\"?([A-Za-z][A-Za-z0-9_]*)\"?")


class FakeJira(FakeService):
    """A fake JIRA on 127.0.0.1; ``start()``/``stop()`` or use it as a context manager."""

    thread_name = "fake-jira"
    down_body: ClassVar[dict[str, Any]] = {"errorMessages": ["JIRA is down for maintenance"]}

    def __init__(
        self,
        *,
        mode: Mode | str = Mode.HEALTHY,
        slow_delay: float = 2.0,
        issues: Iterable[dict[str, Any]] = DEFAULT_ISSUES,
    ) -> None:
        super().__init__(mode=mode, slow_delay=slow_delay)
        self.issues = list(issues)

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if path != SEARCH_PATH:
            return 404, {"errorMessages": [f"no such resource: {path}"]}
        jql = query.get("jql", [""])[0]
        match = _PROJECT.search(jql)
        if match is None:
            return 400, {"errorMessages": [f"unsupported jql: {jql!r}"]}
        project = match.group(1).upper()
        issues = [issue for issue in self.issues if issue["key"].startswith(f"{project}-")]
        return 200, {"startAt": 0, "total": len(issues), "issues": issues}

    def search_url(self, project: str) -> str:
        """The URL that lists ``project``'s issues."""
        query = urllib.parse.urlencode({"jql": f"project={project}"})
        return f"{self.url}{SEARCH_PATH}?{query}"
