"""One set of reconnect key names for every source (`reconnect_initial`, `reconnect_max`); Modbus's
old `backoff_initial`/`backoff_max` still load as deprecated old names, with a warning at their place."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.config.settings import GatewayConfig, load_config
from gateway.errors import ConfigError
from gateway.sources.can.config import CanSourceConfig
from gateway.sources.modbus.config import ModbusSourceConfig

ROOT = Path(__file__).resolve().parents[2]

SITE = f"""\
site:
  name: s1
  profiles_dir: {ROOT / "config" / "profiles"}
  dbc_dir: {ROOT / "dbc"}
sources:
  - type: modbus
    name: rack-01
    profile: modbus-generic-rack
    host: 127.0.0.1
"""
CAN = """\
  - type: can
    name: rack-02
    profile: can-example-rack
    interface: virtual
    channel: reconnect-test
    reconnect_initial: 0.25
    reconnect_max: 4
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_every_reconnecting_source_has_the_same_reconnect_keys() -> None:
    for model in (ModbusSourceConfig, CanSourceConfig):
        assert {"reconnect_initial", "reconnect_max"} <= set(model.model_fields)
        assert not {"backoff_initial", "backoff_max"} & set(model.model_fields)


def test_reconnect_config_new_names_load_without_warnings(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, SITE + "    reconnect_initial: 0.2\n    reconnect_max: 3\n" + CAN))
    modbus, can = loaded.config.sources
    assert isinstance(modbus, ModbusSourceConfig) and isinstance(can, CanSourceConfig)
    assert (modbus.reconnect_initial, modbus.reconnect_max) == (0.2, 3.0)
    assert (can.reconnect_initial, can.reconnect_max) == (0.25, 4.0)
    assert loaded.warnings == []


def test_reconnect_config_old_modbus_names_are_deprecated_aliases(tmp_path: Path) -> None:
    old = load_config(write(tmp_path, SITE + "    backoff_initial: 0.2\n    backoff_max: 3\n"))
    new = load_config(write(tmp_path, SITE + "    reconnect_initial: 0.2\n    reconnect_max: 3\n"))
    assert old.config.sources[0] == new.config.sources[0]  # the same meaning, the same behaviour
    path = tmp_path / "gateway.yaml"
    assert [str(w) for w in old.warnings] == [
        f"{path}:10:5: sources.0.backoff_initial: deprecated name: use reconnect_initial (same meaning)",
        f"{path}:11:5: sources.0.backoff_max: deprecated name: use reconnect_max (same meaning)",
    ]


def test_reconnect_config_validate_prints_the_deprecation_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, SITE + "    backoff_max: 3\n")
    assert main(["validate", "-c", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {path}:10:5: sources.0.backoff_max: deprecated name: use reconnect_max" in err


def test_reconnect_config_old_and_new_name_at_once_is_an_error_naming_the_place(tmp_path: Path) -> None:
    path = write(tmp_path, SITE + "    reconnect_max: 3\n    backoff_initial: 0.2\n    backoff_max: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [problem] = [str(p) for p in info.value.problems]
    assert problem.startswith(f"{path}:10:5: sources.0.reconnect_max: ")
    assert "given twice, as reconnect_max and as backoff_max (its deprecated old name)" in problem


def test_reconnect_config_old_names_are_not_taken_on_can(tmp_path: Path) -> None:
    path = write(tmp_path, SITE + CAN + "    backoff_max: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [p.line for p in info.value.problems] == [17]
    assert "unknown key" in str(info.value)


def test_reconnect_config_schema_marks_the_old_names_deprecated() -> None:
    defs = GatewayConfig.model_json_schema()["$defs"]
    modbus, can = defs["ModbusSourceConfig"]["properties"], defs["CanSourceConfig"]["properties"]
    for old, new in (("backoff_initial", "reconnect_initial"), ("backoff_max", "reconnect_max")):
        assert modbus[old]["deprecated"] is True and new in modbus[old]["description"]
        assert modbus[old]["type"] == modbus[new]["type"] == "number"
        assert "deprecated" not in modbus[new]
        assert old not in can
