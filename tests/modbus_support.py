"""Helpers for the Modbus tests: profiles from text, configs, a simulator on a free loopback port."""

from __future__ import annotations

import textwrap
from pathlib import Path

from gateway.modbus.profile import ModbusProfile
from gateway.modbus.validate import load_modbus_profile

ROOT = Path(__file__).resolve().parent.parent
GENERIC = ROOT / "config" / "profiles" / "modbus-generic-rack.yaml"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def profile_from(tmp_path: Path, text: str, name: str = "p") -> ModbusProfile:
    return load_modbus_profile(write(tmp_path / f"{name}.yaml", text))
