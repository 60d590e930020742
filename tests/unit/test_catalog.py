"""The quantity catalog: names, units, levels, prefixes."""

from __future__ import annotations

from gateway import catalog
from gateway.catalog import CATALOG, Kind, Level


def test_core_quantities_have_si_units() -> None:
    expect = {
        "cell_voltage": ("V", Level.CELL),
        "cell_temperature": ("°C", Level.CELL),
        "module_voltage": ("V", Level.MODULE),
        "rack_voltage": ("V", Level.RACK),
        "rack_current": ("A", Level.RACK),
        "rack_power": ("W", Level.RACK),
        "soc": ("%", Level.RACK),
        "soh": ("%", Level.RACK),
        "insulation_resistance": ("Ω", Level.RACK),
    }
    for name, (unit, level) in expect.items():
        q = CATALOG[name]
        assert (q.unit, q.level) == (unit, level), name


def test_states_and_interlocks_are_not_numbers() -> None:
    assert CATALOG["contactor_positive"].kind == Kind.STATE
    assert CATALOG["bms_state"].kind == Kind.STATE
    assert CATALOG["interlock_estop"].kind == Kind.BOOL
    assert CATALOG["cell_balancing"].kind == Kind.BOOL


def test_sign_convention_is_documented_on_current() -> None:
    assert "positive charges" in CATALOG["rack_current"].description
    assert "positive" in (catalog.__doc__ or "") and "charge" in (catalog.__doc__ or "")


def test_prefixed_names_are_valid_and_unknown_names_are_not() -> None:
    assert catalog.is_valid("cell_voltage")
    assert catalog.is_valid("alarm.cell_over_voltage")
    assert catalog.is_valid("warning.fan_failure")
    assert catalog.is_valid("raw.vendor_register_17")
    assert not catalog.is_valid("cell_volts")
    assert not catalog.is_valid("alarm.")
    assert not catalog.is_valid("raw.")
    assert catalog.level_of("alarm.x", None, None) == Level.RACK
    assert catalog.level_of("cell_voltage", None, None) == Level.CELL
    assert catalog.level_of("raw.t", 2, 5) == Level.CELL


def test_every_description_is_written_and_names_are_snake_case() -> None:
    for name, q in CATALOG.items():
        assert name == q.name
        assert q.description
        assert name.replace("_", "").isalnum() and name.islower()
