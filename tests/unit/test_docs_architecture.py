"""The README's Architecture section shows the package's folders as they are: every folder of
gateway/ is in its tree, and every folder the tree names exists."""

from __future__ import annotations

import re

from tests.support.manual import README, ROOT


def tree_folders() -> set[str]:
    """The folders of the tree (nested by two spaces a level), as paths relative to the repository."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Architecture\n") :]
    block = section[section.index("```\n") + 4 :]
    block = block[: block.index("```")]
    parents: list[str] = []
    out: set[str] = set()
    for line in block.splitlines():
        m = re.match(r"^( *)([\w.-]+)/(?:\s|$)", line)
        if m is None:
            continue  # a description carried onto the next line
        depth = len(m.group(1)) // 2
        parents = [*parents[:depth], m.group(2)]
        out.add("/".join(parents))
    return out


def package_folders() -> set[str]:
    """The folders of gateway/ that hold a file (what a checkout has; left-over `__pycache__` is not)."""
    files = [f for f in (ROOT / "gateway").rglob("*") if f.is_file() and "__pycache__" not in f.parts]
    return {str(parent) for f in files for parent in f.relative_to(ROOT).parents[:-1]}


def test_the_readme_tree_is_the_package() -> None:
    tree = tree_folders()
    assert len(tree) > 10
    assert sorted(package_folders() - tree) == [], "folders missing from the README's Architecture tree"
    assert sorted(tree - package_folders()) == [], "folders the README's Architecture tree names that do not exist"
