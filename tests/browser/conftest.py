"""Browser fixtures: Debian's headless Chromium driven by Playwright for Python.

The browser is the system's ``chromium`` (``executable_path``), never one Playwright downloads.
When it cannot run (no chromium, no Playwright, or it does not start), the tests fail if a CI
run needs them (``CI`` or ``HYSTRIX_BROWSER_REQUIRED`` set; ``.ci/run`` sets the latter and
installs chromium) and are skipped, loudly, everywhere else.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

#: Beyond what Playwright passes already (headless, --no-sandbox, no background networking,
#: no component updates, no sync...): no GPU, and no QUIC on a machine with no network.
CHROMIUM_ARGS = ["--disable-gpu", "--disable-quic"]


def browser_required() -> bool:
    """Whether a run must fail, not skip, when the browser tests cannot run."""
    names = ("CI", "HYSTRIX_BROWSER_REQUIRED")
    return any(os.environ.get(name, "").lower() not in ("", "0", "false", "no") for name in names)


def unavailable(reason: str) -> NoReturn:
    if browser_required():
        pytest.fail(
            f"the browser tests cannot run: {reason}."
            " CI needs them: .ci/run installs chromium (apt-get install chromium).",
            pytrace=False,
        )
    pytest.skip(
        f"BROWSER TESTS NOT RUN: {reason}."
        " Install Debian's chromium (apt-get install chromium) and the dev extra."
    )


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("HYSTRIX_CHROMIUM") or shutil.which("chromium")
    if not path:
        unavailable("no chromium on PATH")
    return path


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Browser]:
    try:
        from playwright.sync_api import Error, sync_playwright  # noqa: PLC0415 (optional)
    except ImportError as error:
        unavailable(f"Playwright for Python is missing ({error}); pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True
            )
        except Error as error:
            unavailable(f"{chromium_path} does not start: {error.message.splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()


class PageLog:
    """Every request the page made and every console error or page error it raised."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.errors: list[str] = []

    def request(self, request: Any) -> None:
        self.urls.append(request.url)

    def console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def page_error(self, error: Any) -> None:
        self.errors.append(f"page error: {error}")

    def remote(self) -> list[str]:
        """Requests that went anywhere but this machine's loopback."""
        return [
            url
            for url in self.urls
            if urllib.parse.urlsplit(url).hostname not in ("127.0.0.1", "localhost")
        ]


@pytest.fixture
def page_log() -> PageLog:
    return PageLog()


@pytest.fixture
def page(browser: Browser, page_log: PageLog) -> Iterator[Page]:
    """A fresh page (1280x800, a laptop screen) that records its requests and errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.on("request", page_log.request)
    page.on("console", page_log.console)
    page.on("pageerror", page_log.page_error)
    try:
        yield page
    finally:
        context.close()
