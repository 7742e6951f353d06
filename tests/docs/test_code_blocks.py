"""Every code block of the documentation runs, so no snippet rots.

Collected from README.md, CHANGELOG.md and docs/*.md; one test per block, named
``<page>:<line of the opening fence>``.

* ```` ```python ```` blocks run. A page's blocks run in order in one namespace of their own
  (a fresh module), like a doctest session: a block sees what the blocks above it defined. Top-
  level ``await`` works, as in ``python -m asyncio``. When the page's last block has run, the
  servers, registries and generators left in its namespace are stopped, the default registry is
  reset (``CommandRegistry.reset()``) and structlog's and logging's configuration restored;
  a thread the page started that is still running then fails its last block. A block fails its
  test when it raises; the blocks after it in its page are then not run.
* ```` ```bash ````, ```` ```sh ````, ```` ```shell ```` and ```` ```console ```` blocks are
  checked, not run (no network, no side effects): every ``make X`` names a target of the
  Makefile, every ``python -m X`` a module that can run, every ``python path.py`` a file, and
  every ``pip install 'hystrix-actors[x]'`` an extra of pyproject.toml.
* Other blocks (diagrams, output, untagged text) are not code.

A block that needs context gets it from an HTML comment, which GitHub, PyPI and the site do not
show. Right before the block (blank lines between are fine)::

    <!-- docs-test: setup
    from actors import Command, CommandRegistry
    CommandRegistry.register(SomeCommand)
    -->

runs first, in the page's namespace. Right after the block's closing fence::

    <!-- docs-test: teardown
    server.shutdown()
    -->

runs after it, also when the block failed: stop what the block started, or assert what it
produced. The comment's last line is ``-->`` alone. Only a fragment that cannot run at all (a
signature, a sketch with holes) is marked, with a reason, right before it::

    <!-- docs-test: skip (shows a signature, not a call) -->

Prefer a hidden setup to a skip: a skipped block can rot.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from markdown_blocks import PYTHON, SHELL, Block, Session, documentation, parse, problems
from markdown_blocks import shell_commands as commands_of

BLOCKS = [block for page in documentation() for block in parse(page)]
PYTHON_BLOCKS = [block for block in BLOCKS if block.language in PYTHON]
SHELL_BLOCKS = [block for block in BLOCKS if block.language in SHELL]
LAST_BLOCK = {block.path: block.line for block in PYTHON_BLOCKS}


@pytest.fixture(scope="module")
def sessions() -> Iterator[dict[Path, Session]]:
    """One session per page, closed after the page's last block (or at the end, when a
    selection ran only part of a page)."""
    open_sessions: dict[Path, Session] = {}
    try:
        yield open_sessions
    finally:
        for session in open_sessions.values():
            session.close()  # a partial run: its leaks are not reported


#: Pages whose hidden setup skipped them (``pytest.importorskip`` of an optional extra, such
#: as OpenTelemetry's SDK): their later blocks are skipped too, with the same reason.
SKIPPED_PAGES: dict[Path, str] = {}


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda block: block.name)
def test_python_block_runs(block: Block, sessions: dict[Path, Session]) -> None:
    if block.skip is not None:
        pytest.skip(f"marked not executable: {block.skip}")
    if block.path in SKIPPED_PAGES:
        pytest.skip(SKIPPED_PAGES[block.path])
    try:
        _run_in_page_order(block, sessions)
    except pytest.skip.Exception as skipped:
        SKIPPED_PAGES[block.path] = str(skipped)
        raise


def _run_in_page_order(block: Block, sessions: dict[Path, Session]) -> None:
    session = sessions.get(block.path)
    if session is None:
        session = sessions[block.path] = Session(block.path)
    try:
        # The blocks above this one first, when a selection (-k) left them out.
        earlier = [
            other
            for other in PYTHON_BLOCKS
            if other.path == block.path and other.line < block.line and other.skip is None
        ]
        for other in earlier:
            if other.line not in session.ran:
                session.run(other)
        if session.failed is not None:
            pytest.fail(f"not run: {session.failed} failed first, in the same namespace")
        session.run(block)
    finally:
        leaked = sessions.pop(block.path).close() if block.line == LAST_BLOCK[block.path] else []
    assert not leaked, f"threads the page's blocks left running: {leaked}"


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda block: block.name)
def test_shell_block_names_only_what_exists(block: Block) -> None:
    found = [
        f"{' '.join(words)}: {problem}"
        for words in commands_of(block)
        for problem in problems(words)
    ]
    assert not found, "\n".join(found)


def test_there_are_blocks_to_run() -> None:
    assert len(PYTHON_BLOCKS) >= 10 and SHELL_BLOCKS
