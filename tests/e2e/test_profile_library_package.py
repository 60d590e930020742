"""The package as pip installs it (the wheel, which the container image installs too) carries the whole
profile library: `profiles list` without arguments shows it from the installed files, and a site that
names a shipped CAN profile validates with the profile and its DBC taken from the installed package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "gateway" / "data" / "profiles"
LIBRARY_DBC = ROOT / "gateway" / "data" / "dbc"


def build_wheel(tmp_path: Path) -> Path:
    """A wheel built offline from a copy of what the image's build stage copies (pyproject, README, gateway/)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "gateway", src / "gateway", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(dist), str(src)],
        check=True, capture_output=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = dist.glob("bms_gateway-*.whl")
    return wheel


def installed(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`bms-gateway ARGV` running from the unpacked wheel (ahead of the checkout's editable install)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path / "site-packages"),
        "CONFIGURATION_DIRECTORY": str(tmp_path / "etc"),  # no default configuration file
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "gateway", *argv], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


def test_the_installed_package_carries_the_profile_library(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(tmp_path / "site-packages")
    library = [*LIBRARY.glob("*.yaml"), *LIBRARY_DBC.glob("*.dbc")]
    assert len(library) >= 12
    assert {p.relative_to(ROOT).as_posix() for p in library} <= names
    assert {"gateway/data/dbc/foxbms-BSD-3-Clause.txt", "gateway/data/dbc/SOURCES.md"} <= names
    (tmp_path / "etc").mkdir()

    listed = installed(tmp_path, "profiles", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    here = tmp_path / "site-packages" / "gateway" / "data" / "profiles"
    assert doc["directories"] == [{"path": str(here), "origin": "library"}]
    assert sorted(p["name"] for p in doc["profiles"]) == sorted(p.stem for p in LIBRARY.glob("*.yaml"))
    assert all(p["errors"] == [] for p in doc["profiles"])

    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(
        "site: {name: t}\nsources:\n"
        "  - {type: can, name: pylon, profile: can-pylontech-sma, interface: virtual, channel: c1}\n"
        "  - {type: can, name: fox, profile: can-foxbms, interface: virtual, channel: c2}\n"
        "  - {type: modbus, name: pack-1, profile: modbus-rtu-pace-bms, transport: rtu, port: /dev/null, unit_id: 1}\n"
        f"store: {{path: {tmp_path / 'store.db'}}}\n",
        encoding="utf-8",
    )
    valid = installed(tmp_path, "validate", "-c", str(cfg))
    assert valid.returncode == 0, valid.stderr
    for name in ("can-pylontech-sma", "can-foxbms", "modbus-rtu-pace-bms"):
        assert f"  profile {name}: {here / (name + '.yaml')} (library)" in valid.stdout.splitlines(), valid.stdout
