"""The fleet benchmarks against a redis-server of their own: the report's "Fleet-wide circuits
(Redis)" section. Part of ``python -m benchmarks``; alone: ``python -m benchmarks.fleet
[--quick] [--output PATH]`` (prints the section, and writes it to PATH if given).

Without ``redis-server`` on PATH (or without redis-py) the section says so, a warning goes to
stderr, and nothing fails.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys

from .fleet_plan import FleetPlan
from .section import section_main

__all__ = ["FLEET_HEADING", "FleetPlan", "find_redis_server", "fleet_report", "main"]

FLEET_HEADING = "## Fleet-wide circuits (Redis)"


def find_redis_server() -> tuple[str | None, str]:
    """The ``redis-server`` program, or None and why the fleet benchmarks cannot run."""
    if importlib.util.find_spec("redis") is None:
        return None, "redis-py is not installed (pip install 'hystrix-actors[redis]')"
    program = shutil.which("redis-server")
    if program is None:
        return None, "redis-server was not found on PATH (on Debian: apt-get install redis-server)"
    return program, ""


def skipped_section(reason: str) -> list[str]:
    return [
        FLEET_HEADING,
        "",
        f"**Not measured in this run: {reason}.** The fleet benchmarks start a redis-server of"
        " their own: install one and run `make bench` (or `python -m benchmarks.fleet`) again.",
    ]


def fleet_report(plan: FleetPlan) -> list[str]:
    """Measure the fleet and render its section; without redis-server, a section saying so
    (and a warning on stderr)."""
    program, reason = find_redis_server()
    if program is None:
        print(f"warning: the fleet benchmarks are skipped: {reason}", file=sys.stderr)
        return skipped_section(reason)
    from .fleet_run import measure_fleet  # noqa: PLC0415 - needs redis-py, checked just above

    return [FLEET_HEADING, "", *measure_fleet(program, plan)]


def main(argv: list[str] | None = None) -> int:
    return section_main(
        argv,
        prog="python -m benchmarks.fleet",
        description="Only the fleet-wide circuits section of the benchmark (needs redis-server).",
        quick_help="a short run (about 40 s)",
        report=lambda quick: fleet_report(FleetPlan.quick() if quick else FleetPlan.full()),
    )


if __name__ == "__main__":
    sys.exit(main())
