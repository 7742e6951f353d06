"""Refuse to start when the import name ``supervision`` is not ours.

hystrix-actors ships two import packages, ``actors`` and ``supervision``. Roboflow's
computer-vision distribution, also called ``supervision``, uses the same import name: installed
in one environment, whichever came second overwrote the other's files, and both then fail with
obscure ``ImportError``s. This module finds that out before anything is imported from
``supervision`` and raises an ``ImportError`` that says what happened and how to fix it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from types import ModuleType

__all__ = ["check_found", "check_imported"]

_FIX = (
    "hystrix-actors and that package both install a top-level package named 'supervision', so"
    " one overwrote the other's files and neither can work in this environment. Install"
    " hystrix-actors in a separate virtual environment (python -m venv), without the other"
    " 'supervision' package."
)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_found() -> None:
    """Before importing ``supervision``: refuse when another distribution owns the package
    that would be imported (found by name, without running its code)."""
    spec = importlib.util.find_spec("supervision")
    if spec is None or spec.origin is None:
        msg = (
            "hystrix-actors: its package 'supervision' is missing; reinstall hystrix-actors"
            " (pip install --force-reinstall hystrix-actors)"
        )
        raise ImportError(msg, name="supervision")
    try:
        other = importlib.metadata.distribution("supervision")
    except importlib.metadata.PackageNotFoundError:
        return
    if _same_file(str(other.locate_file("supervision/__init__.py")), spec.origin):
        msg = (
            f"hystrix-actors: the package 'supervision' at {os.path.dirname(spec.origin)} belongs"
            f" to another distribution, {other.metadata['Name']} {other.version} (Roboflow's"
            f" computer-vision package). {_FIX}"
        )
        raise ImportError(msg, name="supervision", path=spec.origin)


def check_imported(module: ModuleType) -> None:
    """After importing ``supervision``: refuse a module that is not ours."""
    if getattr(module, "__distribution__", None) != "hystrix-actors":
        where = getattr(module, "__file__", None) or repr(module)
        msg = (
            f"hystrix-actors: the package 'supervision' imported from {where} is not the one"
            f" hystrix-actors ships (another package of that name, or a local folder, shadows"
            f" it). {_FIX}"
        )
        raise ImportError(msg, name="supervision", path=getattr(module, "__file__", None))
