"""`bms-gateway profiles list`: every profile file of the shipped library, the site and --dir, with its kind,
transport, source document and quantities; a broken file is listed with file:line, never a crash."""

from __future__ import annotations

import io
import json
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.main import main
from gateway.cli.profiles import header_fields, quantities_of
from gateway.config.library import library_profiles_dir

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "gateway" / "data" / "profiles"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["profiles", "list", *argv])
    return code, out.getvalue(), err.getvalue()


def site(tmp_path: Path, profiles: dict[str, str] | None = None) -> Path:
    pdir = tmp_path / "site-profiles"
    pdir.mkdir()
    for f in SHIPPED.glob("*.yaml"):
        shutil.copy(f, pdir / f.name)
    for name, text in (profiles or {}).items():
        (pdir / name).write_text(text, encoding="utf-8")
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text("site:\n  name: t\n  profiles_dir: site-profiles\nsources: []\n", encoding="utf-8")
    return cfg


def by_name(doc: dict[str, Any], origin: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in doc["profiles"] if p["origin"] == origin}


def test_json_lists_every_site_and_library_profile(tmp_path: Path) -> None:
    code, out, _ = run("-c", str(site(tmp_path)), "--json")
    assert code == 0
    doc = json.loads(out)
    shipped = by_name(doc, "site")
    copied = {p.stem for p in (tmp_path / "site-profiles").glob("*.yaml")}
    assert set(shipped) == copied and {"can-pylontech-sma", "can-victron-bms"} <= copied  # found by themselves
    assert set(by_name(doc, "library")) == {p.stem for p in library_profiles_dir().glob("*.yaml")}
    assert all(p["overrides"] for p in shipped.values())  # copies of the shipped files: each overrides one
    pylon = shipped["can-pylontech-sma"]
    assert pylon["kind"] == "CAN" and pylon["errors"] == []
    assert "V1.2" in pylon["source"] and "2018-04-08" in pylon["source"]
    assert pylon["transport"].startswith("CAN 2.0A, 500 kbit/s")
    assert {"soc", "rack_voltage", "alarm.cell_overvoltage", "warning.internal_communication",
            "raw.charge_enable"} <= set(pylon["quantities"])  # fmt: skip
    victron = shipped["can-victron-bms"]
    assert {"alarm.general", "warning.cell_imbalance", "raw.system_status", "cell_voltage_min"} <= set(
        victron["quantities"]
    )
    sunspec = shipped["modbus-sunspec-battery"]
    assert sunspec["kind"] == "Modbus" and sunspec["discovered"] is True
    for name, p in shipped.items():  # every shipped profile names its source document
        assert p["source"], name


def test_table_shows_kind_yields_transport_and_source(tmp_path: Path) -> None:
    code, out, err = run("-c", str(site(tmp_path)))
    assert code == 0 and err == ""
    line = next(x for x in out.splitlines() if x.strip().startswith("can-pylontech-sma (overrides the shipped one) "))
    cols = line.split()
    assert cols[5] == "CAN" and cols[7] == "quantities" and int(cols[6]) > 20
    assert "500 kbit/s" in line and "Pylon Technologies" in line
    assert "discovered (SunSpec models)" in out
    assert "(library)" in out and "(site)" in out


BROKEN_SYNTAX = "protocol: can\ndbc: x.dbc\npoints: [\n"
BROKEN_KEY = "# source: a test\nprotocol: can\ndbc: x.dbc\npoints:\n  - {signal: A, quantity: soc, colour: red}\n"
BROKEN_PROTOCOL = "protocol: profibus\npoints: []\n"


def test_a_broken_profile_is_listed_with_its_place_not_a_crash(tmp_path: Path) -> None:
    cfg = site(
        tmp_path,
        {"zz-syntax.yaml": BROKEN_SYNTAX, "zz-key.yaml": BROKEN_KEY, "zz-protocol.yaml": BROKEN_PROTOCOL},
    )
    pdir = tmp_path / "site-profiles"
    code, out, err = run("-c", str(cfg))
    assert code == 2
    assert "can-victron-bms" in out  # the good ones are still listed
    assert f"zz-key  BROKEN: {pdir / 'zz-key.yaml'}:5:" in out and "colour" in out
    assert f"zz-syntax  BROKEN: {pdir / 'zz-syntax.yaml'}:" in out and "YAML syntax error" in out
    assert f"zz-protocol  BROKEN: {pdir / 'zz-protocol.yaml'}:1:" in out and "profibus" in out
    assert "3 profile(s) do not load" in err and "Traceback" not in err
    code, out, _ = run("-c", str(cfg), "--json")
    assert code == 2
    broken = by_name(json.loads(out), "site")
    assert broken["zz-key"]["errors"][0].startswith(f"{pdir / 'zz-key.yaml'}:5:")
    assert broken["zz-key"]["source"] == "a test" and broken["zz-key"]["quantities"] == []
    assert broken["can-pylontech-sma"]["errors"] == []


def test_extra_directories_and_a_missing_one(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    text = (SHIPPED / "can-pylontech-sma.yaml").read_text(encoding="utf-8")
    (extra / "my-battery.yaml").write_text(text, encoding="utf-8")
    (extra / "notes.txt").write_text("not a profile", encoding="utf-8")
    code, out, err = run("--dir", str(extra), "--dir", str(tmp_path / "nowhere"), "--json")
    doc = json.loads(out)
    assert [p["name"] for p in doc["profiles"] if p["origin"] == "dir"] == ["my-battery"]
    assert code == 2 and "nowhere: cannot list the profiles directory" in err
    assert doc["problems"] and "nowhere" in doc["problems"][0]


def test_a_missing_configuration_is_an_error(tmp_path: Path) -> None:
    code, _, err = run("-c", str(tmp_path / "absent.yaml"))
    assert code == 2 and "no configuration file" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("# source: Doc, V1\n# transport: CAN\nprotocol: can\n", {"source": "Doc, V1", "transport": "CAN"}),
        ("# A profile.\n#\n# Source: Doc: part 2\nprotocol: can\n", {"source": "Doc: part 2"}),
        ("protocol: can\n# source: too late\n", {}),
        (
            "# source: a long\n#   title\n# transport: RTU\n#   9600 8N1\n# Notes\n#   indented\n",
            {"source": "a long title", "transport": "RTU 9600 8N1"},
        ),
    ],
)
def test_header_fields(text: str, expected: dict[str, str]) -> None:
    assert header_fields(text) == expected


def test_quantities_of_points_bits_and_flags() -> None:
    points = [
        {"quantity": "alarm_word", "bits": {0: "cell_overvoltage", 1: "warning.cell_low"}},
        {"quantity": "warning_word", "flags": {0: "warning.a", 1: "alarm.b"}},
        {"quantity": "soc", "array": None},
    ]
    assert quantities_of(points) == {
        "alarm_word", "alarm.cell_overvoltage", "warning.cell_low", "warning_word", "warning.a", "alarm.b", "soc",
    }  # fmt: skip
