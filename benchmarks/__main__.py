"""``python -m benchmarks [--quick] [--output PATH]``: measure, print the table, write it."""

from __future__ import annotations

import argparse
import pathlib
import sys

from .suite import Plan, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure hystrix-actors against a bare pykka ask and a hand-rolled "
        "ThreadPoolExecutor + pybreaker equivalent, and fleet-wide circuits against a"
        " redis-server it starts itself (skipped, saying so, without redis-server on PATH;"
        " that section alone: python -m benchmarks.fleet); print the tables and write them"
        " as Markdown.",
    )
    parser.add_argument("--quick", action="store_true", help="a short run (about 10 s)")
    parser.add_argument(
        "--output",
        type=pathlib.Path,
        default=pathlib.Path("docs/performance.md"),
        help="where to write the Markdown report (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    report = run(Plan.quick() if args.quick else Plan.full())
    print(report)
    output: pathlib.Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report, encoding="utf-8")
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
