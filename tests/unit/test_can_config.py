"""CAN profiles and DBCs at `validate`: problems name file:line:col; --lenient loads imperfect DBCs."""

from __future__ import annotations

import io
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.config.settings import load_config
from gateway.errors import ConfigError
from gateway.sources.base import build_sources
from tests.can_support import FIX, make_site

RACK = "  - {type: can, name: rack-1, profile: can-example-rack, interface: virtual, channel: t}\n"


def validate(cfg: Path, *extra: str) -> tuple[int, str]:
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = main(["validate", "-c", str(cfg), *extra])
    return code, err.getvalue()


def problems(cfg: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    return [str(p) for p in info.value.problems]


def test_example_profiles_validate_and_share_one_bus(tmp_path: Path) -> None:
    cfg = make_site(
        tmp_path,
        RACK
        + "  - {type: can, name: rack-2, profile: can-example-rack, interface: virtual, channel: t, id_offset: 0x20}\n"
        + "  - {type: can, name: pack, profile: can-redpesk-bms, interface: virtual, channel: other}\n",
    )
    assert validate(cfg) == (0, "")
    sources = build_sources(load_config(cfg))
    assert sorted(s.name for s in sources) == ["can:virtual:t", "pack"]  # two racks, one bus object


def test_signal_missing_in_dbc_names_the_profile_line(tmp_path: Path) -> None:
    profile = (
        "protocol: can\ndbc: can-example-rack.dbc\npoints:\n"
        "  - {signal: SoC, quantity: soc}\n  - {signal: Soc2, quantity: soh}\n"
    )
    cfg = make_site(tmp_path, RACK.replace("can-example-rack", "can-mine"), profiles={"can-mine": profile})
    (only,) = problems(cfg)
    assert only == f"{tmp_path / 'profiles' / 'can-mine.yaml'}:5:6: points.1.signal: signal 'Soc2' is not in the DBC"


def test_typo_in_profile_key_and_bad_quantity(tmp_path: Path) -> None:
    profile = (
        "protocol: can\ndbc: can-example-rack.dbc\nlenent: true\npoints:\n"
        "  - {signal: SoC, quantity: state_of_charge}\n"
    )
    cfg = make_site(tmp_path, RACK.replace("can-example-rack", "can-mine"), profiles={"can-mine": profile})
    found = problems(cfg)
    assert any(":3:1: lenent: unknown key" in p for p in found)
    assert any(":5:5: points.0: quantity " in p and "maps nowhere" in p for p in found), found


def test_broken_dbc_is_a_validate_error_and_lenient_loads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BMS_GATEWAY_LENIENT", raising=False)
    # the defect of a real community DBC (a mux overlapping a multiplexed signal), reproduced in a small file
    profile = "protocol: can\ndbc: overlap-mux.dbc\npoints:\n  - {signal: Voltage, quantity: rack_voltage}\n"
    cfg = make_site(tmp_path, RACK.replace("can-example-rack", "can-m3"), profiles={"can-m3": profile})
    shutil.copy(FIX / "overlap-mux.dbc", tmp_path / "dbc")
    code, err = validate(cfg)
    assert code == 2
    dbc = tmp_path / "dbc" / "overlap-mux.dbc"
    assert f"error: {dbc}:12:1: message BatteryStatus: signal SegmentFlag: overlaps signal Mux" in err
    assert f"error: {dbc}:14:1: message BatteryStatus: signal Segments: duplicate signal name" in err
    assert validate(cfg, "--lenient")[0] == 0
    monkeypatch.delenv("BMS_GATEWAY_LENIENT", raising=False)
    (tmp_path / "profiles" / "can-m3.yaml").write_text(profile + "lenient: true\n")
    assert validate(cfg)[0] == 0


def test_dbc_value_tables_of_no_message_strict_error_lenient_repair_and_unloadable_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BMS_GATEWAY_LENIENT", raising=False)
    profile = "protocol: can\ndbc: zero.dbc\npoints:\n  - {signal: HvBatterySOC, quantity: soc}\n"
    cfg = make_site(tmp_path, RACK.replace("can-example-rack", "can-zero"), profiles={"can-zero": profile})
    shutil.copy(FIX / "ZeroEvDBC(onlyBMS&DU).dbc", tmp_path / "dbc" / "zero.dbc")
    code, err = validate(cfg)
    assert code == 2 and "Traceback" not in err
    zero = tmp_path / "dbc" / "zero.dbc"
    assert f"{zero}:386:1: message VECTOR__INDEPENDENT_SIG_MSG: signal DCDC_Control_Command: value table (VAL_)" in err
    (tmp_path / "profiles" / "can-zero.yaml").write_text(profile + "lenient: true\n")
    assert validate(cfg)[0] == 0  # the 38 VAL_ lines dropped, one warning each
    (tmp_path / "dbc" / "zero.dbc").write_text('VERSION ""\nBO_ 1 X 8 Y\n')
    code, err = validate(cfg)
    assert code == 2 and "Traceback" not in err and f"{zero}:2:" in err and "cannot load DBC: Invalid syntax" in err
    profile2 = profile.replace("zero.dbc", "missing.dbc")
    (tmp_path / "profiles" / "can-zero.yaml").write_text(profile2)
    code, err = validate(cfg)
    assert code == 2 and f"{tmp_path / 'profiles' / 'can-zero.yaml'}:2:" in err  # at the profile's dbc: line
    assert "DBC file 'missing.dbc' not found: searched " in err and str(tmp_path / "dbc" / "missing.dbc") in err


def test_two_racks_decoding_the_same_ids_on_one_bus_is_an_error(tmp_path: Path) -> None:
    cfg = make_site(tmp_path, RACK + RACK.replace("rack-1", "rack-2"))
    found = problems(cfg)
    assert any("gateway.yaml:7:" in p and "give each rack its own id_offset" in p for p in found), found


def test_unknown_interface_is_named(tmp_path: Path) -> None:
    cfg = make_site(tmp_path, RACK.replace("interface: virtual", "interface: sockcan"))
    (only,) = problems(cfg)
    assert "gateway.yaml:6:" in only and "unknown CAN interface 'sockcan': expected one of" in only
    assert "socketcan" in only


def test_two_j1939_racks_need_their_own_source_address(tmp_path: Path) -> None:
    profile = "protocol: can\ndbc: j.dbc\nj1939: true\npoints:\n  - {signal: Soc, quantity: soc}\n"
    line = "  - {type: can, name: NAME, profile: can-j, interface: virtual, channel: t, source_address: SA}\n"
    cfg = make_site(
        tmp_path,
        line.replace("NAME", "a").replace("SA", "0x21") + line.replace("NAME", "b").replace("SA", "0x21"),
        profiles={"can-j": profile},
    )
    (tmp_path / "dbc" / "j.dbc").write_text(
        'VERSION ""\nBO_ 2566913790 B: 8 X\n SG_ Soc : 0|8@1+ (0.4,0) [0|100] "%" X\n'
    )
    (only,) = problems(cfg)
    assert "gateway.yaml:7:" in only and "give each rack its own source_address" in only
    head, _, tail = cfg.read_text().rpartition("source_address: 0x21")
    cfg.write_text(head + "source_address: 0x22" + tail)  # rack b: its own source address
    assert load_config(cfg).config.sources[1].name == "b"


def test_racks_on_one_bus_must_agree_on_its_settings(tmp_path: Path) -> None:
    cfg = make_site(tmp_path, RACK + RACK.replace("rack-1", "rack-2").replace("}", ", id_offset: 0x20, fd: true}"))
    (only,) = problems(cfg)
    assert "gateway.yaml:7:" in only and "fd of 'rack-2' differs from 'rack-1' on the same bus virtual:t" in only


def test_the_can_source_never_transmits() -> None:
    """Read-only toward the BMS: no module of the CAN source calls a python-can send (replay is a tool)."""
    import ast

    root = Path(__file__).resolve().parents[2] / "gateway" / "sources" / "can"
    source_modules = [p for p in root.glob("*.py") if p.stem not in ("replay", "cli")]
    assert {p.stem for p in source_modules} >= {"source", "reader", "rack", "plan", "decode"}
    for path in source_modules:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("send", "send_periodic"), f"{path.name}:{node.lineno} transmits"
