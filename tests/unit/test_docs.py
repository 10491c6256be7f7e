"""The README and docs/ stay a short front door with pages that point at things that exist.

No engine and no file written: the README's length, every relative markdown link of README.md and
docs/**/*.md, and every backticked repository path in them (``lib/...``, ``tests/...``, ...) are
checked against the working tree, so a moved module or a renamed page fails here, not in a reader's
browser.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from smartcity.platform.params import project_root

ROOT = project_root()
README = ROOT / "README.md"
#: The README is a front door; the long sections live in docs/.
MAX_README_LINES = 250
#: Backticked tokens that start with one of these are repository paths and must exist.
PATH_PREFIXES = ("lib/", "tests/", "params/", "notebooks/", "scripts/", "docs/", ".ci/")

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)


def _pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def _prose(page: Path) -> str:
    """The page without its fenced code blocks: links and inline code only count in the prose."""
    return _FENCE.sub("", page.read_text(encoding="utf-8"))


def _relative_links(text: str) -> list[str]:
    targets = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
            continue  # http(s), mailto: and anchors within the page
        targets.append(target.split("#", 1)[0])
    return targets


def _path_tokens(text: str) -> list[str]:
    tokens = []
    for _, code in _CODE.findall(text):
        words = code.split()
        token = words[0] if words else ""  # `scripts/measure.py --series` names scripts/measure.py
        if not token.startswith(PATH_PREFIXES) or "<" in token or "{" in token:
            continue  # not a path, or a placeholder such as lib/smartcity/fleet/schemas/<topic>.v<N>.schema.json
        tokens.append(token.rstrip(".,;:)"))
    return tokens


def _exists(token: str) -> bool:
    if any(ch in token for ch in "*?["):
        return next(ROOT.glob(token.rstrip("/")), None) is not None
    return (ROOT / token).exists()


def _page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move long sections to docs/"


@pytest.mark.parametrize("page", _pages(), ids=_page_id)
def test_relative_links_resolve(page: Path) -> None:
    broken = [t for t in _relative_links(_prose(page)) if t and not (page.parent / t).exists()]
    assert not broken, f"{_page_id(page)} links to missing files: {broken}"


@pytest.mark.parametrize("page", _pages(), ids=_page_id)
def test_backticked_paths_exist(page: Path) -> None:
    missing = [t for t in _path_tokens(_prose(page)) if not _exists(t)]
    assert not missing, f"{_page_id(page)} names paths that do not exist: {missing}"


def test_the_checks_see_links_and_paths() -> None:
    """The parsers find what they must, so an empty pass cannot hide a broken regex."""
    text = "See [a](docs/a.md#x), [b](https://x.org), [c](#top), `lib/x.py`, `lib/<n>.json`, `make run`.\n"
    assert _relative_links(text) == ["docs/a.md"]
    assert _path_tokens(text + "`scripts/m.py --series`") == ["lib/x.py", "scripts/m.py"]
    assert _path_tokens(_FENCE.sub("", "```\n`lib/in_a_fence.py`\n```\n")) == []
