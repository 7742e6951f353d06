"""The site and PyPI's page: every docs page is in the site's nav, and the README (PyPI's page,
and the site's home) links only to absolute addresses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
REPOSITORY = "https://github.com/hystrix-actors/hystrix-actors"


class _Loader(yaml.SafeLoader):
    """mkdocs.yml's own tags (``!relative``, ``!!python/name:``) read as plain strings."""


_Loader.add_multi_constructor("", lambda loader, suffix, node: str(node.value))
_Loader.add_multi_constructor(
    "tag:yaml.org,2002:python/", lambda loader, suffix, node: str(node.value)
)


def nav_pages() -> list[str]:
    config: dict[str, Any] = yaml.load(  # a SafeLoader underneath
        (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_Loader
    )
    pages: list[str] = []

    def walk(entry: object) -> None:
        if isinstance(entry, str):
            pages.append(entry)
        elif isinstance(entry, list):
            for item in entry:
                walk(item)
        elif isinstance(entry, dict):
            for item in entry.values():
                walk(item)

    walk(config["nav"])
    return pages


def test_every_docs_page_is_in_the_nav_and_every_nav_page_exists() -> None:
    pages = nav_pages()
    on_disk = sorted(path.name for path in (ROOT / "docs").glob("*.md"))
    assert sorted(pages) == on_disk
    assert len(pages) == len(set(pages))


def test_the_home_page_and_the_changelog_are_the_repository_files() -> None:
    assert '--8<-- "README.md"' in (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert '--8<-- "CHANGELOG.md"' in (ROOT / "docs" / "changelog.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "target",
    re.findall(r"\]\(([^)\s]+)", README) + re.findall(r"""(?:src|href)=["']([^"']+)""", README),
)
def test_the_readme_links_only_to_absolute_addresses(target: str) -> None:
    """PyPI shows the README without the repository: a relative link or image breaks there."""
    assert re.match(r"https?://|mailto:", target), f"relative in README.md: {target}"
    if target.startswith(REPOSITORY + "/"):
        assert target.startswith(REPOSITORY + "/blob/main/"), target
        path = target.removeprefix(REPOSITORY + "/blob/main/").split("#")[0]
        assert (ROOT / path).exists(), f"README.md links to {path}, which does not exist"
    raw = "https://raw.githubusercontent.com/hystrix-actors/hystrix-actors/main/"
    if target.startswith(raw):
        assert (ROOT / target.removeprefix(raw)).exists(), target
