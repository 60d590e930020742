"""The profile library ships with the package (one copy of each profile and DBC), and a source's
`profile:` name finds its file: the site's `profiles_dir` first, then the library; a shipped profile's
DBC resolves in the library, a site profile's in `site.dbc_dir` and then the library."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from importlib import resources
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.config.library import find_profile, library_dbc_dir, library_profiles_dir
from gateway.config.profiles import load_profile
from gateway.config.settings import load_config
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "gateway" / "data" / "profiles"
LIBRARY_DBC = ROOT / "gateway" / "data" / "dbc"
PYLON = (LIBRARY / "can-pylontech-sma.yaml").read_text(encoding="utf-8")


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def site(tmp_path: Path, sources: str, profiles: dict[str, str] | None = None) -> Path:
    pdir = tmp_path / "profiles"
    pdir.mkdir(parents=True, exist_ok=True)
    (tmp_path / "dbc").mkdir(exist_ok=True)
    for name, text in (profiles or {}).items():
        (pdir / f"{name}.yaml").write_text(text, encoding="utf-8")
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(
        f"site:\n  name: t\n  profiles_dir: profiles\n  dbc_dir: dbc\nsources:\n{sources}"
        f"store:\n  path: {tmp_path / 'store.db'}\n",
        encoding="utf-8",
    )
    return cfg


PYLON_SOURCE = "  - {type: can, name: pylon, profile: can-pylontech-sma, interface: virtual, channel: c1}\n"


def test_every_shipped_profile_and_its_dbc_are_package_resources() -> None:
    shipped = resources.files("gateway").joinpath("data", "profiles")
    names = sorted(t.name for t in shipped.iterdir() if t.name.endswith(".yaml"))
    assert names == sorted(p.name for p in LIBRARY.glob("*.yaml"))
    assert {"can-pylontech-sma.yaml", "can-victron-bms.yaml", "modbus-rtu-pace-bms.yaml",
            "modbus-byd-battery-box.yaml", "modbus-sunspec-battery.yaml", "can-foxbms.yaml"} <= set(names)  # fmt: skip
    assert library_profiles_dir() == LIBRARY and library_dbc_dir() == LIBRARY_DBC
    for name in names:
        profile = load_profile(library_profiles_dir() / name)
        dbc = getattr(profile, "dbc", None)
        if dbc is not None:  # a shipped CAN profile's DBC is in the library too
            assert resources.files("gateway").joinpath("data", "dbc", dbc).is_file(), (name, dbc)


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
    return [ROOT / p for p in out.decode().split("\0") if p and not p.startswith("tests/")]


def test_no_profile_or_dbc_file_exists_twice() -> None:
    files = [
        p for p in tracked_files()
        if p.exists() and (p.suffix == ".dbc" or (p.suffix == ".yaml" and p.parent.name == "profiles"))
    ]  # fmt: skip
    assert any(p.parent == LIBRARY for p in files) and any(p.parent == LIBRARY_DBC for p in files)
    by_name: dict[str, list[Path]] = {}
    by_content: dict[str, list[Path]] = {}
    for p in files:
        by_name.setdefault(p.name, []).append(p)
        by_content.setdefault(hashlib.sha256(p.read_bytes()).hexdigest(), []).append(p)
    assert [v for v in by_name.values() if len(v) > 1] == []
    assert [v for v in by_content.values() if len(v) > 1] == []


def test_a_profile_name_is_found_in_the_library(tmp_path: Path) -> None:
    cfg = site(tmp_path, PYLON_SOURCE)
    loaded = load_config(cfg)
    found = loaded.profile_paths["can-pylontech-sma"]
    assert found.path == LIBRARY / "can-pylontech-sma.yaml" and found.shipped
    assert loaded.dbc_file("can-pylontech-sma", "pylontech-sma-can.dbc") == LIBRARY_DBC / "pylontech-sma-can.dbc"
    code, out, _ = cli("validate", "-c", str(cfg))
    assert code == 0
    assert f"  profile can-pylontech-sma: {LIBRARY / 'can-pylontech-sma.yaml'} (library)" in out.splitlines()


def test_a_site_profile_of_the_same_name_overrides_the_shipped_one(tmp_path: Path) -> None:
    mine = PYLON.replace("description: ", "description: my site's ", 1)
    cfg = site(tmp_path, PYLON_SOURCE, {"can-pylontech-sma": mine})
    loaded = load_config(cfg)
    found = loaded.profile_paths["can-pylontech-sma"]
    assert found.path == tmp_path / "profiles" / "can-pylontech-sma.yaml" and not found.shipped
    assert str(getattr(loaded.profiles["can-pylontech-sma"], "description", "")).startswith("my site's")
    # the site's profile names the shipped DBC without a copy of it: found in the library
    assert loaded.dbc_file("can-pylontech-sma", "pylontech-sma-can.dbc") == LIBRARY_DBC / "pylontech-sma-can.dbc"
    code, out, _ = cli("validate", "-c", str(cfg))
    assert code == 0
    used = f"  profile can-pylontech-sma: {tmp_path / 'profiles' / 'can-pylontech-sma.yaml'}"
    assert f"{used} (site, overrides the shipped one)" in out.splitlines()


def test_dbc_lookup_site_profile_site_dir_first_shipped_profile_library_only(tmp_path: Path) -> None:
    (tmp_path / "dbc").mkdir()
    (tmp_path / "dbc" / "pylontech-sma-can.dbc").write_bytes((LIBRARY_DBC / "pylontech-sma-can.dbc").read_bytes())
    mine = PYLON.replace("can-pylontech-sma", "mine")
    sources = PYLON_SOURCE + "  - {type: can, name: m, profile: my-pylon, interface: virtual, channel: c2}\n"
    loaded = load_config(site(tmp_path, sources, {"my-pylon": mine}))
    assert loaded.dbc_file("my-pylon", "pylontech-sma-can.dbc") == tmp_path / "dbc" / "pylontech-sma-can.dbc"
    assert loaded.dbc_file("can-pylontech-sma", "pylontech-sma-can.dbc") == LIBRARY_DBC / "pylontech-sma-can.dbc"


def test_errors_name_the_places_searched(tmp_path: Path) -> None:
    src = "  - {type: can, name: x, profile: can-nowhere, interface: virtual, channel: c1}\n"
    with pytest.raises(ConfigError) as exc:
        load_config(site(tmp_path, src))
    (problem,) = exc.value.problems
    assert str(problem).startswith(f"{tmp_path / 'gateway.yaml'}:6:")
    assert str(tmp_path / "profiles" / "can-nowhere.yaml") in str(problem)
    assert str(LIBRARY / "can-nowhere.yaml") in str(problem)
    missing = PYLON.replace("dbc: pylontech-sma-can.dbc", "dbc: gone.dbc")
    src = "  - {type: can, name: x, profile: my-pylon, interface: virtual, channel: c1}\n"
    with pytest.raises(ConfigError) as exc:
        load_config(site(tmp_path / "b", src, {"my-pylon": missing}))
    (problem,) = exc.value.problems
    line = missing.splitlines().index("dbc: gone.dbc") + 1
    assert str(problem).startswith(f"{tmp_path / 'b' / 'profiles' / 'my-pylon.yaml'}:{line}:")
    assert str(tmp_path / "b" / "dbc" / "gone.dbc") in str(problem) and str(LIBRARY_DBC / "gone.dbc") in str(problem)


def test_find_profile_when_the_site_directory_is_the_library() -> None:
    found = find_profile("modbus-generic-rack", LIBRARY)
    assert found is not None and found.shipped and found.label() == "library"
    assert find_profile("modbus-nothing", LIBRARY) is None


def test_profiles_list_without_arguments_shows_the_whole_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONFIGURATION_DIRECTORY", str(tmp_path))  # no default configuration file there
    code, out, err = cli("profiles", "list", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["directories"] == [{"path": str(LIBRARY), "origin": "library"}]
    assert sorted(p["name"] for p in doc["profiles"]) == sorted(p.stem for p in LIBRARY.glob("*.yaml"))
    assert all(p["errors"] == [] and p["source"] for p in doc["profiles"])


def test_profiles_list_with_a_site_marks_its_overrides(tmp_path: Path) -> None:
    cfg = site(tmp_path, "", {"can-pylontech-sma": PYLON, "my-own": PYLON})
    code, out, _ = cli("profiles", "list", "-c", str(cfg), "--json")
    assert code == 0
    mine = {p["name"]: p for p in json.loads(out)["profiles"] if p["origin"] == "site"}
    assert mine["can-pylontech-sma"]["overrides"] == str(LIBRARY / "can-pylontech-sma.yaml")
    assert mine["my-own"]["overrides"] == ""
    code, out, _ = cli("profiles", "list", "-c", str(cfg))
    assert code == 0
    assert "can-pylontech-sma (overrides the shipped one) " in out and f"{LIBRARY} (library):" in out


def test_the_tools_take_a_shipped_profile_or_dbc_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no file of that name here: the library's
    code, out, _ = cli("modbus", "plan", "-p", "modbus-generic-rack")
    assert code == 0 and out.startswith(f"{LIBRARY / 'modbus-generic-rack.yaml'}: ")
    capture = str(ROOT / "gateway" / "data" / "can" / "bms-dump-60s.log")
    code, out, _ = cli("can", "decode", "--dbc", "BMS.dbc", "--profile", "can-redpesk-bms", capture)
    assert code == 0 and '"quantity":"rack_voltage"' in out
    (tmp_path / "modbus-generic-rack").write_text("protocol: modbus\n", encoding="utf-8")  # a file wins
    assert cli("modbus", "plan", "-p", "modbus-generic-rack")[0] == 2
