"""Bounds of the register-map keys, checked on the entry before anything is expanded: an array (module
blocks or not) larger than a Modbus table, and states a multi-bit field can never hold, are errors at
their line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.sources.modbus.arrays import ADDRESS_SPACE, ModbusArray, beyond_address_space
from tests.unit.test_modbus_profile import errors


@pytest.mark.parametrize(
    ("array", "width", "fits"),
    [
        ({"count": 24, "modules": {"count": 16, "stride": 0x100}}, 1, True),  # 16 x 24 cells in 0x1000 registers
        ({"count": 256, "modules": {"count": 256, "stride": 256}}, 1, True),  # exactly the table
        ({"count": 256, "modules": {"count": 256, "stride": 256}}, 2, False),  # the last cell's second register
        ({"count": 1000, "modules": {"count": 10_000, "stride": 1000}}, 1, False),  # ten million elements
        ({"count": 100_000, "stride": 0}, 1, False),  # more elements than a table has addresses
        ({"count": 40_000, "stride": 2}, 1, False),
        ({"count": 32_768, "stride": 2}, 1, True),
    ],
)
def test_an_array_must_fit_in_one_modbus_table(array: dict[str, object], width: int, fits: bool) -> None:
    problem = beyond_address_space(ModbusArray.model_validate(array), width)
    assert (problem is None) == fits, problem
    if problem:
        assert f"({ADDRESS_SPACE} addresses)" in problem


def test_a_mistyped_module_count_is_an_error_at_its_line_before_any_expansion(tmp_path: Path) -> None:
    """A module count typed with three zeros too many (10,000 modules of 1,000 cells) once expanded ten
    million points (1.4 GB, minutes) before the address check of the read plan refused them."""
    errs = errors(
        tmp_path,
        """\
        protocol: modbus
        points:
          - {quantity: soc, address: 0}
          - quantity: cell_voltage
            address: 0x1000
            array: {count: 1000, stride: 1, modules: {count: 100, stride: 1000}}
        """,
    )
    assert len(errs) == 1, errs
    assert errs[0].startswith(f"{tmp_path / 'bad.yaml'}:4:5: points.1: ")
    assert "100000 elements over 100000 registers" in errs[0]


def test_states_a_bit_field_cannot_hold_are_an_error_at_their_line(tmp_path: Path) -> None:
    errs = errors(
        tmp_path,
        """\
        protocol: modbus
        points:
          - {quantity: contactor_positive, address: 4, bits: [0, 1], states: {0: open, 1: closed, 2: welded, 3: fault}}
          - {quantity: contactor_negative, address: 4, bits: [2, 3], states: {0: open, 1: closed, 4: welded}}
        """,
    )
    assert errs == [f"{tmp_path / 'bad.yaml'}:4:5: points.1: states [4] cannot occur in bits [2, 3] (values 0..3)"]
