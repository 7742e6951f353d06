"""Reading the benchmark report's Markdown tables (the smoke tests of each section share it).

Test modules in this folder import it as ``from markdown_tables import table_after``.
"""

from __future__ import annotations

__all__ = ["table_after"]


def table_after(report: str, header_start: str) -> dict[str, dict[str, str]]:
    """The Markdown table whose header row starts with ``header_start``: row name -> cells."""
    lines = report.splitlines()
    top = next(n for n, line in enumerate(lines) if line.startswith(header_start))
    columns = [cell.strip() for cell in lines[top].strip("|").split("|")]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[top + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(columns, cells, strict=True))
    return rows
