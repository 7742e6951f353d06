"""Tests that need a program from outside the venv (Debian's ``chromium``, ``promtool``).

When the program is missing, such tests fail if the run needs them (``CI`` or the tests' own
variable set, e.g. ``HYSTRIX_PROMTOOL_REQUIRED=1``; ``.ci/run`` sets them and installs the
programs) and are skipped, loudly, everywhere else. Test modules import it as
``from tools import Requirement`` (pytest puts ``tests/``, the folder of the top conftest, on
``sys.path``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import NoReturn

import pytest

#: Values of a variable that leave it unset.
FALSE = frozenset({"", "0", "false", "no"})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Requirement:
    """What some tests need, the variable that makes them mandatory, and how to install it."""

    #: The tests, for messages: "promtool tests".
    tests: str
    #: Set (to anything but "", "0", "false", "no"): the tests fail, never skip. So does ``CI``.
    variable: str
    #: How to get it: "apt-get install prometheus (Debian's package; it brings promtool)".
    install: str

    def required(self) -> bool:
        """Whether this run must fail, not skip, when the tests cannot run."""
        names = ("CI", self.variable)
        return any(os.environ.get(name, "").lower() not in FALSE for name in names)

    def unavailable(self, reason: str) -> NoReturn:
        """Fail (a run that needs the tests) or skip, loudly, saying why and what to install."""
        if self.required():
            pytest.fail(
                f"the {self.tests} cannot run: {reason}. This run needs them"
                f" ({self.variable} or CI is set): {self.install}.",
                pytrace=False,
            )
        pytest.skip(f"{self.tests.upper()} NOT RUN: {reason}. {self.install}.")

    def program(self, name: str) -> str:
        """The path of ``name`` on ``PATH``; fails or skips when there is none."""
        path = shutil.which(name)
        if path is None:
            self.unavailable(f"no {name} on PATH")
        return path
