"""A screenshot of the dashboard page at a chosen moment, for the demo's ``--screenshot``.

Debian's headless ``chromium`` driven by Playwright for Python (the ``dev`` extra); Playwright
downloads no browser here. Its sync API keeps to the thread that started it, so the camera
runs in a thread of its own: ``start()`` opens the page and waits for the command's tile,
``shoot()`` asks for the picture (taken once the tile shows ``state``), ``finish()`` waits for
it and says what went wrong, if anything.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

#: Playwright passes headless, --no-sandbox and no background networking already.
CHROMIUM_ARGS = ["--disable-gpu", "--disable-quic"]


class Camera:
    def __init__(self, url: str, path: Path, key: str, state: str = "open") -> None:
        self.url = url
        self.path = path
        self.key = key
        self.state = state
        self.error: str | None = None
        self._ready = threading.Event()
        self._go = threading.Event()
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name="camera", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        """Open the page; returns once the key's tile is on it (or the camera failed)."""
        self._thread.start()
        if not self._ready.wait(timeout) and self.error is None:
            self.error = f"the dashboard showed no tile for {self.key!r} within {timeout:.0f} s"

    def shoot(self) -> None:
        self._go.set()

    def finish(self, timeout: float = 15.0) -> str | None:
        """Wait for the picture; why there is none, or None once it is saved."""
        if not self._go.is_set():
            self._cancelled = True
            self._go.set()
            self.error = self.error or "no screenshot was asked for"
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.error = self.error or f"the screenshot took more than {timeout:.0f} s"
        return self.error

    def _run(self) -> None:
        try:
            self._session()
        except Exception as error:  # reported by finish(); the demo goes on meanwhile
            first = str(error).strip().splitlines()
            self.error = f"{type(error).__name__}: {first[0] if first else ''}"
        finally:
            self._ready.set()

    def _session(self) -> None:
        from playwright.sync_api import expect, sync_playwright  # noqa: PLC0415 (optional)

        chromium = shutil.which("chromium")
        if chromium is None:
            self.error = "no chromium on PATH (apt-get install chromium)"
            return
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 480, "height": 720})
                page.goto(self.url)
                tile = page.locator(f'[data-command="{self.key}"]')
                tile.wait_for(timeout=20_000)
                self._ready.set()
                self._go.wait()
                if self._cancelled:
                    return
                state = tile.locator('[data-field="circuit-state"]')
                expect(state).to_have_text(self.state, timeout=3_000)
                self.path.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(self.path), full_page=True)
            finally:
                browser.close()
