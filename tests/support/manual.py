"""The user's manual as the tests read it: README.md (the entry point) and every page under docs/.

Tests that hold the manual to the code (documented defaults, metrics, limits, fields) read it here, so
a section can move between pages without a test losing track of it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def manual_pages() -> list[Path]:
    """README.md first, then the docs pages in name order."""
    return [README, *sorted(DOCS.glob("*.md"))]


def manual_text() -> str:
    """The whole manual as one text: README.md, then every docs page (each starting on its own line)."""
    return "\n\n".join(page.read_text(encoding="utf-8") for page in manual_pages())
