"""The docs runner itself: what it collects, what it runs, and that it fails when it should."""

from __future__ import annotations

from pathlib import Path

import pytest
from markdown_blocks import Session, parse, problems, shell_commands

PAGE = """# A page

<!-- docs-test: setup
greeting = "hello"
-->

```python
words = [greeting, "world"]
```
<!-- docs-test: teardown
assert words == ["hello", "world"]
-->

* A list item with a block:

    ```python
    words.append("again")
    ```

<!-- docs-test: skip (a signature, not a call) -->
```python
def ask(key, payload, *, timeout=None): ...
```

```bash
$ make test   # not a console block: the dollar is a word
```

```
a diagram
```
"""


def page(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(text, encoding="utf-8")
    return path


def test_blocks_come_with_their_setup_teardown_and_skip(tmp_path: Path) -> None:
    blocks = parse(page(tmp_path, PAGE))
    assert [(block.line, block.language) for block in blocks] == [
        (7, "python"),
        (16, "python"),
        (21, "python"),
        (25, "bash"),
        (29, ""),
    ]
    first, indented, skipped = blocks[:3]
    assert first.setup is not None and first.setup.code == 'greeting = "hello"\n'
    assert first.teardown is not None and "assert words" in first.teardown.code
    assert indented.body.code == 'words.append("again")\n' and indented.body.line == 17
    assert skipped.skip == "a signature, not a call"
    assert first.name == "page.md:7"


def test_a_page_runs_in_one_namespace_with_top_level_await(tmp_path: Path) -> None:
    path = page(
        tmp_path,
        "```python\nimport asyncio\nx = 1\n```\n\n"
        "```python\nawait asyncio.sleep(0)\ny = x + 1\n```\n",
    )
    session = Session(path)
    try:
        for block in parse(path):
            session.run(block)
        assert session.module.y == 2
    finally:
        assert session.close() == []


def test_a_block_that_raises_fails_with_its_own_line_and_stops_the_page(tmp_path: Path) -> None:
    path = page(tmp_path, "```python\nx = 1\n\nraise LookupError(x)\n```\n\n```python\nx\n```\n")
    first, second = parse(path)
    session = Session(path)
    try:
        with pytest.raises(LookupError) as raised:
            session.run(first)
        assert raised.traceback[-1].lineno + 1 == 4  # the page's own line (1-based)
        assert str(raised.traceback[-1].path) == str(path)
        with pytest.raises(RuntimeError, match=r"page\.md:1 failed first"):
            session.run(second)
    finally:
        session.close()


def test_a_failing_teardown_fails_the_block_and_a_failed_block_keeps_its_own_error(
    tmp_path: Path,
) -> None:
    text = (
        "```python\nx = 1\n```\n<!-- docs-test: teardown\nassert x == 2\n-->\n\n"
        "```python\nraise KeyError('the block')\n```\n<!-- docs-test: teardown\nundefined\n-->\n"
    )
    first, second = parse(page(tmp_path, text))
    for block, error in [(first, AssertionError), (second, KeyError)]:
        session = Session(block.path)
        try:
            with pytest.raises(error):
                session.run(block)
        finally:
            session.close()


@pytest.mark.parametrize(
    "text",
    [
        "<!-- docs-test: setup\nx = 1\n-->\n\nSome prose.\n\n```python\nx\n```\n",
        "Prose.\n\n<!-- docs-test: teardown\nx = 1\n-->\n",
        "<!-- docs-test: skip -->\n```python\nx\n```\n",
        "<!-- docs-test: setup\nx = 1\n-->\n```bash\nmake test\n```\n",
        "<!-- docs-test: setup\nx = 1\n",
    ],
    ids=[
        "setup-away-from-its-block",
        "teardown-after-no-block",
        "skip-without-reason",
        "setup-on-a-shell-block",
        "unclosed-comment",
    ],
)
def test_a_misplaced_or_incomplete_directive_is_an_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValueError, match=r"page\.md"):
        parse(page(tmp_path, text))


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("make test", []),
        ("make demo SOAK_SECONDS=5", []),
        ("make deploy", ["no make target 'deploy'"]),
        ("python -m benchmarks", []),
        ("python -m venv .venv", []),
        ("python -m no_such_module", ["no module 'no_such_module' to run"]),
        ("python -m actors", ["no module 'actors' to run"]),
        ("python examples/jira_issues.py --quick", []),
        ("python examples/nowhere.py", ["no script 'examples/nowhere.py'"]),
        ("pip install hystrix-actors", []),
        ("pip install 'hystrix-actors[prometheus,docs]'", []),
        ("pip install 'hystrix_actors[mongo]'", ["hystrix-actors has no extra 'mongo'"]),
        ("pip install 'supervision[whatever]'", []),
        ("rm -rf /", []),
    ],
)
def test_a_shell_command_is_checked_for_what_it_names(command: str, expected: list[str]) -> None:
    assert problems(command.split() if "'" not in command else _words(command)) == expected


def test_console_blocks_keep_only_prompted_lines(tmp_path: Path) -> None:
    text = "```console\n$ make test  # all of it\nok\n$ FOO=1 make demo\n```\n"
    (block,) = parse(page(tmp_path, text))
    assert list(shell_commands(block)) == [["make", "test"], ["make", "demo"]]


def _words(command: str) -> list[str]:
    import shlex  # noqa: PLC0415

    return shlex.split(command)
