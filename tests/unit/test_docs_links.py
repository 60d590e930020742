"""Every relative link of the manual (README.md and docs/*.md) points to a file of the repository, and a
link with an anchor (`page.md#section`, `#section`) to a heading of that page, as GitHub names it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from tests.support.manual import ROOT, manual_pages

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # the text may wrap onto the next line


class Link(NamedTuple):
    page: Path
    line: int
    target: str


def prose(text: str) -> str:
    """The text without code (fenced blocks and inline spans blanked, line numbers kept)."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return CODE.sub(lambda m: " " * len(m.group(0)), text)


def links(page: Path) -> list[Link]:
    text = prose(page.read_text(encoding="utf-8"))
    return [Link(page, text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in LINK.finditer(text)]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings_raw(page: Path) -> list[str]:
    """Headings as written (inline code kept: GitHub slugs its text without the backticks)."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), page.read_text(encoding="utf-8"))
    return [m.group(1) for m in re.finditer(r"^#{1,6} (.+)$", text, re.MULTILINE)]


def page_anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for heading in headings_raw(page):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def problem(link: Link) -> str | None:
    target = link.target
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not a file of the repository
        return None
    path_part, _, anchor = target.partition("#")
    path = (link.page.parent / path_part).resolve() if path_part else link.page
    where = f"{link.page.relative_to(ROOT)}:{link.line}: {target}"
    if not path.is_relative_to(ROOT):
        return f"{where}: outside the repository"
    if not path.exists():
        return f"{where}: no such file"
    if anchor and path.suffix == ".md" and anchor not in page_anchors(path):
        return f"{where}: no heading #{anchor} in {path.relative_to(ROOT)}"
    return None


def test_slugs_are_githubs() -> None:
    assert slug("InfluxDB (`type: influxdb`)") == "influxdb-type-influxdb"
    assert slug("The gateway's own record") == "the-gateways-own-record"
    assert slug("HTTP: health, readiness, metrics, status") == "http-health-readiness-metrics-status"


def test_every_relative_link_of_the_manual_resolves() -> None:
    found = [link for page in manual_pages() for link in links(page)]
    assert len({link.page for link in found}) == len(manual_pages())  # every page links (back to the README)
    broken = [p for link in found if (p := problem(link)) is not None]
    assert broken == []


def test_every_docs_page_is_in_the_readmes_table_of_contents() -> None:
    readme, *docs = manual_pages()
    targets = {link.target.partition("#")[0] for link in links(readme)}
    assert [p.name for p in docs if f"docs/{p.name}" not in targets] == []
