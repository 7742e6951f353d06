"""The command line every section of the benchmark has when run alone:
``python -m benchmarks.<section> [--quick] [--output PATH]`` prints the section's markdown and,
with ``--output``, writes it there too."""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Callable

__all__ = ["section_main"]


def section_main(
    argv: list[str] | None,
    *,
    prog: str,
    description: str,
    quick_help: str,
    report: Callable[[bool], list[str]],
) -> int:
    """Parse ``argv``, run ``report(quick)`` (the section's lines), print and maybe write them."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--output", type=pathlib.Path, help="also write the section here")
    args = parser.parse_args(argv)
    text = "\n".join(report(args.quick))
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n", encoding="utf-8")
        print(f"written to {args.output}")
    return 0
