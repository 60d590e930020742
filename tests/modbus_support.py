"""Helpers for the Modbus tests: profiles from text, configs, a simulator on a free loopback port."""

from __future__ import annotations

import textwrap
from pathlib import Path

from gateway.model import Batch
from gateway.runtime.core import Runtime
from gateway.sources.modbus.profile import ModbusProfile
from gateway.sources.modbus.validate import load_modbus_profile
from tests.support.store import runtime_batches

ROOT = Path(__file__).resolve().parent.parent
GENERIC = ROOT / "gateway" / "data" / "profiles" / "modbus-generic-rack.yaml"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def profile_from(tmp_path: Path, text: str, name: str = "p") -> ModbusProfile:
    return load_modbus_profile(write(tmp_path / f"{name}.yaml", text))


TINY = """\
protocol: modbus
description: a small rack for tests, every data type and order
table: input
interval: 0.1
max_gap: 4
unreadable: [{table: input, start: 40, end: 49}]
points:
  - {quantity: rack_voltage, address: 0, scale: 0.1}
  - {quantity: rack_current, address: 1, type: int16, scale: 0.1}
  - {quantity: soc, address: 2, scale: 0.01}
  - {quantity: rack_power, address: 4, type: float32, byte_order: CDAB}
  - {quantity: energy_charged, address: 6, type: uint64, byte_order: DCBA, scale: 0.1}
  - {quantity: cell_voltage_max, address: 10, type: int32, byte_order: BADC, scale: 0.0001}
  - {quantity: insulation_resistance, address: 12, type: float64}
  - {quantity: contactor_positive, table: holding, address: 0, type: bit, bit: 0, states: {0: open, 1: closed}}
  - {quantity: alarm_word, table: holding, address: 1, flags: {0: alarm.cell_overvoltage, 3: alarm.insulation_fault}}
  - {quantity: interlock_door, table: discrete, address: 0, type: bool}
  - {quantity: raw.cooling_fan, table: coil, address: 0, type: bool, states: {0: "off", 1: "on"}}
  - {quantity: serial_number, table: holding, address: 10, type: string, registers: 6}
  - quantity: cell_voltage
    address: 20
    scale: 0.001
    range: [2.0, 4.0]
    array: {count: 8, per_module: 4}
  - quantity: cell_temperature
    address: 50
    type: int16
    scale: 0.1
    array: {count: 4, per_module: 2}
"""


def site(tmp_path: Path, sources: str, profile: str = TINY, name: str = "tiny") -> Path:
    """A gateway.yaml with the given `sources:` entries and the profile as profiles/<name>.yaml."""
    write(tmp_path / "profiles" / f"{name}.yaml", profile)
    text = (
        "site:\n  name: t\n  profiles_dir: profiles\n"
        f"store:\n  path: {tmp_path / 'store.db'}\n  commit_interval: 0.02\n"
        "http:\n  enabled: false\nalarms:\n  enabled: false\n"
        "sources:\n" + textwrap.indent(textwrap.dedent(sources), "  ")
    )
    return write(tmp_path / "gateway.yaml", text)


def source(name: str, port: int, unit: int = 1, **extra: object) -> str:
    lines = [f"- type: modbus\n  name: {name}\n  profile: tiny\n  host: 127.0.0.1\n  port: {port}\n  unit_id: {unit}\n"]
    lines += [f"  {k}: {v}\n" for k, v in extra.items()]
    return "".join(lines)


def of(rt: Runtime, device: str) -> list[Batch]:
    return [b for b in runtime_batches(rt) if b.source == device]
