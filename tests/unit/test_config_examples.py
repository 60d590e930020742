"""Every example site under config/examples passes `bms-gateway validate`, and every shipped profile
is used by at least one of them (new examples and profiles are picked up by themselves)."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.config.yamlpos import load_yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "config" / "examples").glob("*.yaml"))
PROFILES = ROOT / "config" / "profiles"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_validate_passes_on_the_example(path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["validate", "-c", str(path)])
    assert code == 0, err.getvalue()
    assert out.getvalue().startswith(f"{path}: valid (")


def test_every_shipped_profile_has_an_example_site() -> None:
    used: set[str] = set()
    for path in EXAMPLES:
        data = load_yaml(path)
        if (data.get("site") or {}).get("profiles_dir", "profiles") != "../profiles":
            continue  # an example with profiles of its own
        used |= {str(s["profile"]) for s in data.get("sources") or [] if "profile" in s}
    assert {p.stem for p in PROFILES.glob("*.yaml")} - used == set()
