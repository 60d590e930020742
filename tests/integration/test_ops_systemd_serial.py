"""Modbus RTU under the shipped systemd unit: the stock unit hides serial ports (PrivateDevices=yes), so the
serial-port drop-in opens the ports an RS485 line needs, and no others, with the unit still hardened."""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.test_ops_systemd_unit import ROOT, UNIT, directives, unit_dir, with_drop_in  # noqa: F401
from tests.support.manual import manual_text

SERIAL = ROOT / "systemd" / "serial-port.conf.example"


def test_the_stock_unit_hides_serial_ports() -> None:
    one = {k: v[-1] for k, v in directives(UNIT.read_text()).items()}
    assert one["PrivateDevices"] == "yes" and one["DevicePolicy"] == "closed"
    assert "DeviceAllow" not in one and "SupplementaryGroups" not in one


def test_the_serial_port_drop_in_opens_rs485_adapters_and_keeps_the_unit_hardened(unit_dir: Path) -> None:  # noqa: F811
    text = SERIAL.read_text()
    d = directives(text)
    assert d["PrivateDevices"] == ["no"] and d["DevicePolicy"] == ["closed"]
    assert d["DeviceAllow"] == ["char-ttyUSB rw", "char-ttyACM rw"]
    assert d["SupplementaryGroups"] == ["dialout"]
    verified, score = with_drop_in(unit_dir, text)
    ours = [line for line in (verified.stdout + verified.stderr).splitlines() if "bms-gateway" in line]
    assert verified.returncode == 0 and not ours, verified.stdout + verified.stderr
    assert score <= 2.0
    # the on-board UARTs enabled as well: still at most 2.0
    everything = re.sub(r"^#(DeviceAllow)=", r"\1=", text, flags=re.MULTILINE)
    allowed = directives(everything)["DeviceAllow"]
    assert allowed == ["char-ttyUSB rw", "char-ttyACM rw", "char-ttyS rw", "char-ttyAMA rw"]
    verified, score = with_drop_in(unit_dir, everything)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert score <= 2.0


def test_the_manual_shows_how_to_install_it() -> None:
    manual = manual_text()
    assert "systemd/serial-port.conf.example" in manual
    assert "/etc/systemd/system/bms-gateway.service.d/serial-port.conf" in manual
    assert "/dev/serial/by-id/" in manual and "dialout" in manual
