"""The fenced code blocks of the documentation, and how each one is run or checked.

``test_code_blocks.py`` documents the convention; this module parses Markdown into blocks, runs
a page's Python blocks in one namespace, and checks what a shell block names.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import importlib.util
import logging
import re
import shlex
import socketserver
import sys
import threading
import time
import tomllib
import types
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import structlog

ROOT = Path(__file__).resolve().parents[2]

PYTHON = frozenset({"python", "py", "python3"})
SHELL = frozenset({"bash", "sh", "shell", "console"})

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<kind>setup|teardown|skip)\b(?P<rest>.*)$")
_HIDDEN = ("setup", "teardown")


def documentation() -> list[Path]:
    """The pages whose blocks are run: the README, the changelog and every page in docs/."""
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Snippet:
    """Code at a place in a page: ``line`` is the 1-based line of its first line of code."""

    path: Path
    line: int
    code: str

    def compiled(self) -> types.CodeType:
        """Compiled so that tracebacks name the page and its own line numbers; top-level
        ``await`` is allowed (as in ``python -m asyncio``)."""
        padded = "\n" * (self.line - 1) + self.code
        return compile(padded, str(self.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """One fenced block; ``line`` is its opening fence's. Python blocks may carry a hidden
    ``setup`` and ``teardown`` and a ``skip`` reason."""

    path: Path
    line: int
    language: str
    body: Snippet
    setup: Snippet | None = None
    teardown: Snippet | None = None
    skip: str | None = None

    @property
    def name(self) -> str:
        """``README.md:24``: the page relative to the repository, and the fence's line."""
        return f"{_page(self.path)}:{self.line}"


def _page(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


@dataclasses.dataclass(slots=True)
class _Directive:
    kind: str
    line: int  # of the comment's first line
    end: int  # of its last line
    rest: str
    code: str = ""


def parse(path: Path) -> list[Block]:
    """Every fenced block of a page, in order, with the directives that belong to it: a
    ``setup`` or ``skip`` comment right before the block (blank lines between are fine), a
    ``teardown`` comment right after it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    pending: _Directive | None = None  # a setup or skip waiting for its block
    last_end = -1  # the index of the last block's closing fence
    i = 0
    while i < len(lines):
        text = lines[i]
        directive = _DIRECTIVE.match(text)
        if directive:
            found, i = _read_directive(path, lines, i, directive)
            if found.kind == "teardown":
                if not blocks or not _only_blank(lines, last_end + 1, found.line - 1):
                    raise ValueError(f"{path}:{found.line}: a teardown must follow a block")
                blocks[-1] = _attach(blocks[-1], found)
            else:
                pending = found
            continue
        fence = _FENCE.match(text)
        if not fence:
            i += 1
            continue
        indent, marker = fence["indent"], fence["fence"]
        end = i + 1
        while end < len(lines) and not _closes(lines[end], marker):
            end += 1
        body = "\n".join(_dedent(line, indent) for line in lines[i + 1 : end]) + "\n"
        block = Block(
            path=path,
            line=i + 1,
            language=fence["info"].lower(),
            body=Snippet(path=path, line=i + 2, code=body),
        )
        if pending is not None:
            if not _only_blank(lines, pending.end + 1, i):
                raise ValueError(f"{path}:{pending.line}: a {pending.kind} must precede a block")
            block = _attach(block, pending)
            pending = None
        blocks.append(block)
        last_end = end
        i = end + 1
    if pending is not None:
        raise ValueError(f"{path}:{pending.line}: a {pending.kind} with no block after it")
    return blocks


def _read_directive(
    path: Path, lines: list[str], start: int, match: re.Match[str]
) -> tuple[_Directive, int]:
    """The directive comment that starts at ``lines[start]``, and the index after it."""
    rest = match["rest"]
    if "-->" in rest:  # a one-line comment: `<!-- docs-test: skip (why) -->`
        head = rest.split("-->", 1)[0].strip()
        return _Directive(match["kind"], start + 1, start, head), start + 1
    end = start + 1
    while end < len(lines) and lines[end].strip() != "-->":
        end += 1
    if end == len(lines):
        raise ValueError(f"{path}:{start + 1}: a docs-test comment must end with a '-->' line")
    code = "\n".join(lines[start + 1 : end]) + "\n"
    return _Directive(match["kind"], start + 1, end, rest.strip(), code), end + 1


def _attach(block: Block, directive: _Directive) -> Block:
    if block.language not in PYTHON:
        raise ValueError(f"{block.name}: docs-test {directive.kind} applies to python blocks only")
    if directive.kind == "skip":
        reason = directive.rest.strip("() ") or directive.code.strip()
        if not reason:
            raise ValueError(f"{block.name}: docs-test skip needs a reason")
        return dataclasses.replace(block, skip=reason)
    if directive.kind in _HIDDEN and not directive.code.strip():
        raise ValueError(f"{block.name}: docs-test {directive.kind} has no code")
    hidden = Snippet(path=block.path, line=directive.line + 1, code=directive.code)
    return dataclasses.replace(block, **{directive.kind: hidden})


def _closes(line: str, marker: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(marker) and set(stripped) == {marker[0]}


def _dedent(line: str, indent: str) -> str:
    return line[len(indent) :] if line.startswith(indent) else line.lstrip()


def _only_blank(lines: list[str], start: int, stop: int) -> bool:
    return all(not line.strip() for line in lines[start:stop])


# -- running a page's Python blocks ---------------------------------------------------------------


#: Seconds the threads a page started have to end once it is closed (calls in flight included).
THREADS_GRACE = 5.0
#: A registry's timer threads, started on a key's first call (it watches the key's idleness):
#: the default registry keeps them after ``reset()``, and a registry the page left running is
#: found by its ``RegistryActor`` thread anyway.
_REGISTRY_TIMER = ("hystrix-watchdog", "hystrix-runner-")


class Session:
    """One page's Python blocks, run in order in one fresh module namespace, like a doctest
    session; ``close()`` stops what they left running and forgets the default registry."""

    def __init__(self, path: Path) -> None:
        from actors import CommandRegistry  # noqa: PLC0415 (not imported to collect blocks)

        CommandRegistry.default()  # its threads are not the page's
        self._threads = set(threading.enumerate())
        self.path = path
        name = "docs_" + re.sub(r"\W", "_", _page(path))
        self.module = types.ModuleType(name)
        self.module.__file__ = str(path)
        sys.modules[name] = self.module  # dataclasses and pickling look classes up here
        self.ran: set[int] = set()
        self.failed: str | None = None
        self._structlog = structlog.get_config()
        root = logging.getLogger()
        self._logging = (root.level, list(root.handlers))

    def run(self, block: Block) -> None:
        """Run the block's setup, the block and its teardown. When the block fails its
        teardown still runs, to stop what it can, but the block's error is the one raised. A
        failure is remembered: later blocks of the page are not run."""
        if self.failed is not None:
            raise RuntimeError(f"not run: {self.failed} failed first, in the same namespace")
        self.ran.add(block.line)
        try:
            if block.setup is not None:
                self._execute(block.setup)
            self._execute(block.body)
        except BaseException:
            self.failed = block.name
            if block.teardown is not None:
                with contextlib.suppress(Exception):
                    self._execute(block.teardown)
            raise
        if block.teardown is not None:
            try:
                self._execute(block.teardown)
            except BaseException:
                self.failed = block.name
                raise

    def _execute(self, snippet: Snippet) -> None:
        namespace = self.module.__dict__
        result = eval(snippet.compiled(), namespace)  # the docs are our own code
        if asyncio.iscoroutine(result):  # top-level await
            _run_on_a_loop_of_its_own(result)

    def close(self) -> list[str]:
        """Stop the servers, registries and generators the page left in its namespace, reset
        the default registry, and restore structlog's and logging's configuration; the names of
        the threads the page started that are still running (a leak: stop them in a teardown)."""
        from actors import CommandRegistry  # noqa: PLC0415

        try:
            for value in list(self.module.__dict__.values()):
                _stop(value)
            CommandRegistry.reset()
        finally:
            sys.modules.pop(self.module.__name__, None)
            structlog.configure(**self._structlog)
            root = logging.getLogger()
            root.setLevel(self._logging[0])
            root.handlers[:] = self._logging[1]
        deadline = time.monotonic() + THREADS_GRACE
        while True:
            left = [
                thread.name
                for thread in threading.enumerate()
                if thread not in self._threads and not thread.name.startswith(_REGISTRY_TIMER)
            ]
            if not left or time.monotonic() > deadline:
                return sorted(left)
            time.sleep(0.05)


def _run_on_a_loop_of_its_own(coroutine: Coroutine[Any, Any, Any]) -> None:
    """``asyncio.run`` on a thread of its own, as ``python -m asyncio`` does: the caller's
    thread may be inside a running loop (or have one left marked running)."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(coroutine)
        except BaseException as error:
            raised.append(error)

    thread = threading.Thread(target=run, name="docs-await", daemon=True)
    thread.start()
    thread.join()
    if raised:
        raise raised[0]


def _stop(value: object) -> None:
    from actors import CommandRegistry  # noqa: PLC0415

    if isinstance(value, socketserver.BaseServer):
        # shutdown() waits for serve_forever(), forever if it never ran: bound the wait.
        stopper = threading.Thread(target=value.shutdown, daemon=True)
        stopper.start()
        stopper.join(timeout=5.0)
        value.server_close()
    elif isinstance(value, CommandRegistry) and value is not CommandRegistry.default():
        value.shutdown()
    elif isinstance(value, types.GeneratorType):
        value.close()


# -- checking a shell block -----------------------------------------------------------------------


def shell_commands(block: Block) -> Iterator[list[str]]:
    """The block's commands as words: prompts (``$``), comments and output lines dropped."""
    prompt = block.language == "console"
    for raw in block.body.code.splitlines():
        line = raw.strip()
        if prompt:
            if not line.startswith("$ "):
                continue  # output
            line = line[2:]
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line, comments=True)
        while words and "=" in words[0] and not words[0].startswith("-"):
            words.pop(0)  # VAR=value before the command
        if words:
            yield words


def problems(words: list[str]) -> list[str]:
    """What a command names that does not exist, checked without running it nor the network:
    make targets, ``python -m`` modules, ``python`` scripts, and this project's extras in
    ``pip install``."""
    command, args = Path(words[0]).name, words[1:]
    if command == "make":
        targets = _make_targets()
        return [
            f"no make target {name!r}"
            for name in args
            if "=" not in name and not name.startswith("-") and name not in targets
        ]
    if re.fullmatch(r"python(3(\.\d+)?)?", command):
        if len(args) >= 2 and args[0] == "-m":
            return [] if _runnable_module(args[1]) else [f"no module {args[1]!r} to run"]
        if args and args[0].endswith(".py") and not (ROOT / args[0]).is_file():
            return [f"no script {args[0]!r}"]
        return []
    if command in ("pip", "pip3") and args[:1] == ["install"]:
        return [problem for arg in args[1:] for problem in _requirement_problems(arg)]
    return []


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, flags=re.MULTILINE))


def _runnable_module(name: str) -> bool:
    """Found, and a package runs only with a ``__main__``; nothing is imported but parents."""
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec(name)
        if spec is None:
            return False
        if spec.submodule_search_locations is None:
            return True
        return importlib.util.find_spec(f"{name}.__main__") is not None
    return False


def _project() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        project: dict[str, Any] = tomllib.load(file)["project"]
    return project


def _requirement_problems(arg: str) -> list[str]:
    match = re.fullmatch(r"(?P<name>[A-Za-z0-9._-]+)(\[(?P<extras>[^\]]*)\])?.*", arg)
    project = _project()
    if arg.startswith("-") or not match or _normal(match["name"]) != _normal(project["name"]):
        return []  # an option or another package: nothing to check here
    extras = {_normal(name) for name in project.get("optional-dependencies", {})}
    named = [name.strip() for name in (match["extras"] or "").split(",") if name.strip()]
    return [
        f"{project['name']} has no extra {name!r}" for name in named if _normal(name) not in extras
    ]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
