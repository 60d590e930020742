"""Every example site under config/examples passes `bms-gateway validate`, and every profile of the
shipped library and of the example site's own directory (config/profiles) is used by at least one of
them (new examples and profiles are picked up by themselves)."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.config.library import find_profile
from gateway.config.yamlpos import load_yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "config" / "examples").glob("*.yaml"))
PROFILES = ROOT / "config" / "profiles"  # the example site's own
LIBRARY = ROOT / "gateway" / "data" / "profiles"  # the shipped library, found by name from any site


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_validate_passes_on_the_example(path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["validate", "-c", str(path)])
    assert code == 0, err.getvalue()
    assert out.getvalue().startswith(f"{path}: valid (")


def test_every_shipped_profile_has_an_example_site() -> None:
    used: set[Path] = set()  # the files the examples' profile names find
    for path in EXAMPLES:
        data = load_yaml(path)
        pdir = path.parent / str((data.get("site") or {}).get("profiles_dir", "profiles"))
        for src in data.get("sources") or []:
            found = find_profile(str(src["profile"]), pdir) if "profile" in src else None
            if found is not None:
                used.add(found.path.resolve())
    assert {p.resolve() for p in [*PROFILES.glob("*.yaml"), *LIBRARY.glob("*.yaml")]} - used == set()
