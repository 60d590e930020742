"""Modbus profiles: every feature loads; bad input is an error naming file:line:col."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.sources.modbus.plan import compile_points, plan_reads, unreadable_ranges
from gateway.sources.modbus.validate import load_modbus_profile
from tests.modbus_support import GENERIC, ROOT, profile_from, write


def errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_modbus_profile(write(tmp_path / "bad.yaml", text))
    return [str(p) for p in info.value.problems]


def test_generic_rack_profile_compiles_cells_into_three_reads() -> None:
    profile = load_modbus_profile(GENERIC)
    points, problems = compile_points(profile)
    assert problems == []
    cells = [p for p in points if p.quantity == "cell_voltage"]
    temps = [p for p in points if p.quantity == "cell_temperature"]
    assert len(cells) == 240 and len(temps) == 120
    assert (cells[0].module, cells[0].cell, cells[-1].module, cells[-1].cell) == (1, 1, 10, 24)
    blocks = plan_reads(points, max_gap=profile.max_gap, unreadable=unreadable_ranges(profile))
    cell_blocks = [b for b in blocks if any(p.quantity in ("cell_voltage", "cell_temperature") for p in b.points)]
    assert len(cell_blocks) <= 3
    assert all(b.interval == 2.0 for b in cell_blocks)
    assert all(b.count <= 125 for b in blocks)


def test_address_base_one_shifts_to_protocol_addresses(tmp_path: Path) -> None:
    profile = profile_from(
        tmp_path,
        """\
        protocol: modbus
        address_base: 1
        points:
          - {quantity: soc, address: 1, scale: 0.1}
          - {quantity: soh, address: 40, scale: 0.1}
        """,
    )
    points, _ = compile_points(profile)
    assert [p.address for p in points] == [0, 39]


def test_overlapping_points_name_the_place(tmp_path: Path) -> None:
    errs = errors(
        tmp_path,
        """\
        protocol: modbus
        points:
          - {quantity: rack_voltage, address: 10, type: uint32}
          - {quantity: rack_current, address: 11, type: int16}
        """,
    )
    assert len(errs) == 1
    assert errs[0].startswith(f"{tmp_path / 'bad.yaml'}:4:5: points.1: rack_current @holding:11 overlaps rack_voltage")


def test_bits_of_one_register_do_not_overlap(tmp_path: Path) -> None:
    profile = profile_from(
        tmp_path,
        """\
        protocol: modbus
        points:
          - {quantity: interlock_door, address: 5, type: bit, bit: 0}
          - {quantity: interlock_estop, address: 5, type: bit, bit: 1}
        """,
    )
    assert len(compile_points(profile)[0]) == 2


def test_float32_at_an_odd_width(tmp_path: Path) -> None:
    errs = errors(
        tmp_path,
        """\
        protocol: modbus
        points:
          - {quantity: soc, address: 0, type: float32, registers: 3}
        """,
    )
    assert errs == [f"{tmp_path / 'bad.yaml'}:3:5: points.0: float32 is 2 register(s) wide, not 3"]


def test_unknown_data_type(tmp_path: Path) -> None:
    errs = errors(
        tmp_path,
        """\
        protocol: modbus
        points:
          - quantity: soc
            address: 0
            type: float16
        """,
    )
    assert len(errs) == 1
    assert errs[0].startswith(f"{tmp_path / 'bad.yaml'}:5:5: points.0.type: Input should be 'int16'")
    assert "float16" in errs[0]


def test_register_beyond_65535(tmp_path: Path) -> None:
    errs = errors(
        tmp_path,
        """\
        protocol: modbus
        points:
          - {quantity: soc, address: 0}
          - quantity: cell_voltage
            address: 65500
            scale: 0.001
            array: {count: 100}
        """,
    )
    assert len(errs) == 1
    assert errs[0].startswith(
        f"{tmp_path / 'bad.yaml'}:5:5: points.1.address: cell_voltage element 37 ends at address 65536"
    )


def test_typos_and_bad_names(tmp_path: Path) -> None:
    errs = errors(
        tmp_path,
        """\
        protocol: modbus
        points:
          - {quantity: soc, adress: 0}
          - {quantity: state_of_charge, address: 1}
          - {quantity: alarm_word, address: 2, flags: {0: ovrvoltage}}
          - {quantity: soc, address: 3, type: bit}
          - {quantity: model, address: 4, type: string}
          - {quantity: interlock_door, table: coil, address: 0, type: uint16}
        """,
    )
    text = "\n".join(errs)
    assert "points.0.adress: unknown key" in text
    assert "points.0.address: required key is missing" in text
    assert "'state_of_charge' maps nowhere" in text
    assert "flag 'ovrvoltage' maps nowhere" in text
    assert "type bit needs `bit:`" in text
    assert "a string needs `registers:`" in text
    assert "coil table holds single bits" in text


def test_points_in_unreadable_ranges_are_errors(tmp_path: Path) -> None:
    errs = errors(
        tmp_path,
        """\
        protocol: modbus
        unreadable: [{table: holding, start: 10, end: 19}]
        points:
          - {quantity: soc, address: 15}
        """,
    )
    assert errs == [f"{tmp_path / 'bad.yaml'}:4:5: points.0: soc @holding:15 lies in an unreadable range"]


SHIPPED_MODBUS = sorted([*GENERIC.parent.glob("modbus-*.yaml"), *(ROOT / "config" / "profiles").glob("modbus-*.yaml")])


@pytest.mark.parametrize("path", SHIPPED_MODBUS, ids=lambda p: p.name)
def test_every_shipped_modbus_profile_loads_and_plans(path: Path) -> None:
    profile = load_modbus_profile(path)
    points, problems = compile_points(profile)
    assert problems == []
    assert points or profile.sunspec
    blocks = plan_reads(points, max_gap=profile.max_gap, unreadable=unreadable_ranges(profile))
    assert all(b.count <= 125 for b in blocks)


def test_the_byd_map_is_two_reads() -> None:
    profile = load_modbus_profile(GENERIC.parent / "modbus-byd-battery-box.yaml")
    points, _ = compile_points(profile)
    blocks = plan_reads(points, max_gap=profile.max_gap)
    assert [(b.interval, b.start, b.count) for b in blocks] == [(10.0, 1280, 17), (60.0, 1297, 3)]
