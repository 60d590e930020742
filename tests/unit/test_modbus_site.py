"""A 40-rack site from one profile validates and expands; config-level mistakes name their place."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.config.settings import load_config
from gateway.errors import ConfigError
from gateway.sources.base import build_sources
from gateway.sources.modbus.poller import ModbusEndpoint
from gateway.sources.modbus.source import endpoints
from tests.modbus_support import GENERIC, write


def forty_racks(tmp_path: Path) -> Path:
    write(tmp_path / "profiles" / "modbus-generic-rack.yaml", GENERIC.read_text())
    lines = ["site:\n  name: big\n  profiles_dir: profiles\nsources:\n"]
    for i in range(40):
        host, unit = f"10.0.{i // 4}.10", i % 4 + 1
        entry = f"type: modbus, name: rack-{i + 1:02d}, profile: modbus-generic-rack, host: {host}, unit_id: {unit}"
        lines.append(f"  - {{{entry}}}\n")
    return write(tmp_path / "gateway.yaml", "".join(lines))


def test_forty_racks_from_one_profile_validate_and_expand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = forty_racks(tmp_path)
    assert main(["validate", "-c", str(path)]) == 0
    assert "valid (40 sources, 0 sinks, 1 profiles)" in capsys.readouterr().out
    loaded = load_config(path)
    sources = build_sources(loaded)
    assert len(sources) == 10 and all(isinstance(s, ModbusEndpoint) for s in sources)
    devices = [d for s in sources if isinstance(s, ModbusEndpoint) for d in s.devices]
    assert [d.unit_id for d in devices[:4]] == [1, 2, 3, 4]
    assert len({d.rack for d in devices}) == 40
    assert sum(len(d.points) for d in devices) == 40 * 389
    assert all(sum(len(b) for b in d.blocks.values()) == 7 for d in devices)


def test_a_unit_id_polled_twice_on_one_endpoint_names_the_place(tmp_path: Path) -> None:
    write(tmp_path / "profiles" / "modbus-generic-rack.yaml", GENERIC.read_text())
    path = write(
        tmp_path / "gateway.yaml",
        """\
        sources:
          - {type: modbus, name: a, profile: modbus-generic-rack, host: 10.0.0.1, unit_id: 3}
          - type: modbus
            name: b
            profile: modbus-generic-rack
            host: 10.0.0.1
            unit_id: 3
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:7:5: unit id 3 at 10.0.0.1:502 is already polled by source 'a'"
    ]


def test_a_profile_problem_fails_validate_with_its_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(
        tmp_path / "profiles" / "bad.yaml",
        """\
        protocol: modbus
        points:
          - {quantity: soc, address: 0, type: uint32}
          - {quantity: soh, address: 1}
        """,
    )
    path = write(tmp_path / "gateway.yaml", "sources:\n  - {type: modbus, name: a, profile: bad, host: h}\n")
    assert main(["validate", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'profiles' / 'bad.yaml'}:4:5: points.1: soh @holding:1 overlaps soc" in err


def test_endpoints_share_one_connection_per_host_and_port(tmp_path: Path) -> None:
    loaded = load_config(forty_racks(tmp_path))
    eps = endpoints(loaded.enabled_sources, loaded.profiles)
    assert sorted(len(e.devices) for e in eps) == [4] * 10
    assert eps[0].name == "modbus@10.0.0.10:502"
