"""The dashboard page served at ``/``: one self-contained HTML file shipped as package data.

The page carries its CSS and script inline and fetches nothing but ``hystrix.stream`` (a URL
relative to the page, so it works mounted under a prefix): it works offline. It shows one tile
per command key and one per worker pool, updated live through ``EventSource``.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["page"]


def page() -> bytes:
    """The page's bytes (UTF-8 HTML)."""
    return resources.files(__name__).joinpath("index.html").read_bytes()
