"""The type variables of typed commands: ``Command[PayloadT, ResultT]`` and ``Reply[ResultT]``.

Both default to ``Any`` (PEP 696), so a bare ``Command`` or ``Reply`` stays valid in strictly
typed code.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import TypeVar

__all__ = ["PayloadT", "ResultT"]

#: What ``run`` takes.
PayloadT = TypeVar("PayloadT", default=Any)
#: What ``run`` (and ``fallback``) return.
ResultT = TypeVar("ResultT", default=Any)
