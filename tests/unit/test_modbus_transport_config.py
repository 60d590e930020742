"""The `transport` key of Modbus sources: each transport's keys, errors naming file:line, and how the
devices of one serial port or endpoint are grouped onto one link."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.settings import load_config
from gateway.errors import ConfigError
from gateway.sources.modbus.source import endpoints
from gateway.sources.modbus.transport import LinkSettings
from tests.modbus_support import site


def problems_of(tmp_path: Path, sources: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(site(tmp_path, sources))
    return [f"{p.line}: {p.message}" for p in err.value.problems]


def rtu(name: str, unit: int, port: str = "/dev/ttyUSB0", **extra: object) -> str:
    lines = [f"- {{type: modbus, name: {name}, profile: tiny, transport: rtu, port: {port}, unit_id: {unit}"]
    lines += [f", {k}: {v}" for k, v in extra.items()]
    return "".join(lines) + "}\n"


def test_devices_on_one_serial_port_share_one_link(tmp_path: Path) -> None:
    text = (
        rtu("a", 1, baudrate=9600, parity="N")
        + rtu("b", 2, baudrate=9600, parity="N")
        + rtu("c", 1, port="/dev/ttyUSB1")
        + "- {type: modbus, name: d, profile: tiny, transport: rtu_over_tcp, host: 10.0.0.5, port: 4001, unit_id: 7}\n"
        + "- {type: modbus, name: e, profile: tiny, host: 10.0.0.6}\n"
        + "- {type: modbus, name: f, profile: tiny, transport: tls, host: bms.example, ca_file: ca.pem}\n"
    )
    (tmp_path / "ca.pem").write_text("not read at validate\n")
    loaded = load_config(site(tmp_path, text))
    eps = endpoints([s for s in loaded.config.sources], loaded.profiles, base_dir=loaded.base_dir)  # type: ignore[misc]
    assert [(ep.settings.transport, ep.label, [d.name for d in ep.devices]) for ep in eps] == [
        ("rtu", "/dev/ttyUSB0", ["a", "b"]),
        ("rtu", "/dev/ttyUSB1", ["c"]),
        ("rtu_over_tcp", "10.0.0.5:4001", ["d"]),
        ("tcp", "10.0.0.6:502", ["e"]),
        ("tls", "bms.example:802", ["f"]),  # Modbus/TCP Security's port by default
    ]
    line = eps[0].settings.line
    assert (line.baudrate, line.parity, line.stopbits, line.bytesize) == (9600, "N", 1, 8)
    assert line.gap == pytest.approx(3.5 * 10 / 9600)
    assert eps[1].settings.line.parity == "E" and eps[1].settings.line.baudrate == 19200  # the serial line defaults
    assert eps[4].settings.tls.check_server_name and eps[4].settings.base_dir == tmp_path


def test_keys_of_another_transport_are_errors_at_their_line(tmp_path: Path) -> None:
    text = (
        "- type: modbus\n  name: a\n  profile: tiny\n  host: 10.0.0.1\n  baudrate: 9600\n"  # lines 12-16
        "- type: modbus\n  name: b\n  profile: tiny\n  transport: rtu\n  host: 10.0.0.2\n  port: /dev/ttyS0\n"
        "- type: modbus\n  name: c\n  profile: tiny\n  transport: rtu\n  port: 502\n"
        "- type: modbus\n  name: d\n  profile: tiny\n  host: 10.0.0.3\n  cert_file: client.pem\n"
        "- type: modbus\n  name: e\n  profile: tiny\n  transport: tls\n  host: 10.0.0.4\n  parity: E\n"
        "- type: modbus\n  name: f\n  profile: tiny\n  transport: rtu\n"
        "- type: modbus\n  name: g\n  profile: tiny\n  transport: rtu_over_tcp\n"
    )
    got = problems_of(tmp_path, text)
    assert any(p.startswith("16: ") and "baudrate" in p and "only with transport rtu" in p for p in got), got
    assert any(p.startswith("21: ") and "host" in p and "serial port" in p for p in got), got
    assert any(p.startswith("27: ") and "port" in p and "serial device" in p for p in got), got
    assert any(p.startswith("32: ") and "cert_file" in p and "only with transport tls" in p for p in got), got
    assert any(p.startswith("38: ") and "parity" in p and "only with transport rtu" in p for p in got), got
    assert any(p.startswith("39: ") and "serial device is required" in p for p in got), got
    assert any(p.startswith("43: ") and "host: required with transport rtu_over_tcp" in p for p in got), got
    assert len(got) == 7, got


def test_the_devices_of_one_bus_agree_on_its_settings(tmp_path: Path) -> None:
    text = (
        rtu("a", 1, baudrate=9600)
        + rtu("b", 2, baudrate=19200)  # line 13
        + rtu("c", 1)  # line 14: unit 1 twice on the port
        + "- {type: modbus, name: d, profile: tiny, transport: tls, host: h, port: 502, cert_file: nowhere.pem}\n"
        + "- {type: modbus, name: e, profile: tiny, host: h, port: 502, unit_id: 2}\n"  # line 16
    )
    got = problems_of(tmp_path, text)
    assert any(p.startswith("13: ") and "baudrate: 19200" in p and "'a'" in p for p in got), got
    assert any(p.startswith("14: ") and "unit id 1 at /dev/ttyUSB0 is already polled by source 'a'" in p for p in got)
    assert any(p.startswith("15: ") and "cert_file: no such file" in p for p in got), got
    assert any(p.startswith("16: ") and "transport: 'tcp'" in p and "'d'" in p for p in got), got


def test_a_tcp_source_is_what_it_was(tmp_path: Path) -> None:
    loaded = load_config(site(tmp_path, "- {type: modbus, name: a, profile: tiny, host: 10.0.0.1, port: '5020'}\n"))
    src = loaded.config.sources[0]
    assert LinkSettings.of(src) == LinkSettings("tcp", "10.0.0.1", 5020)  # type: ignore[arg-type]
