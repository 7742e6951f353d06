"""The dashboard page served at ``/``: one self-contained HTML file shipped as package data.

The page carries its CSS and script inline and fetches nothing but its stream (a URL relative to
the page, so it works mounted under a prefix): it works offline. It shows one tile per command
key and one per worker pool, updated live through ``EventSource``.

Served for a registry with a fleet, the page is told this node's name (``page(fleet=node)``
fills its ``<meta name="hystrix-fleet">``): it then offers a "this node / fleet" toggle, which
switches its stream between ``hystrix.stream`` and ``hystrix.stream?scope=fleet`` and shows how
many hosts each tile sums. ``?scope=fleet`` in the page's own URL opens it on the fleet.
"""

from __future__ import annotations

import html
from importlib import resources

__all__ = ["page"]

#: The page's fleet marker, empty: no fleet.
_FLEET_META = b'<meta name="hystrix-fleet" content="">'


def page(*, fleet: str | None = None) -> bytes:
    """The page's bytes (UTF-8 HTML); ``fleet``: this node's name in its fleet, if it has one
    (the page then offers the fleet-wide view)."""
    body = resources.files(__name__).joinpath("index.html").read_bytes()
    if not fleet:
        return body
    content = html.escape(fleet, quote=True).encode("utf-8")
    return body.replace(_FLEET_META, b'<meta name="hystrix-fleet" content="' + content + b'">', 1)
