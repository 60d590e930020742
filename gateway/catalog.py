"""The quantity catalog: the fixed names, units and levels the EMS sees whatever the BMS vendor.

Current sign convention (one, for every source): **positive current and power charge the battery,
negative current and power discharge it.** A profile whose BMS reports the opposite sets
`invert: true` (or `scale: -1`) on the point.

Levels decide the InfluxDB measurement (`cell`, `module`, `rack`) and which tags a sample carries.
A reading that fits no catalog entry is kept as `raw.<name>` with the unit the profile gives.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Level(enum.StrEnum):
    CELL = "cell"
    MODULE = "module"
    RACK = "rack"


class Kind(enum.StrEnum):
    NUMBER = "number"
    BOOL = "bool"  # 0/1, true/false
    STATE = "state"  # an enum state kept as its name (e.g. contactor "closed")
    TEXT = "text"


@dataclass(frozen=True, slots=True)
class Quantity:
    name: str
    unit: str
    level: Level
    kind: Kind
    description: str


_Q = Quantity
_N, _B, _S, _T = Kind.NUMBER, Kind.BOOL, Kind.STATE, Kind.TEXT
_C, _M, _R = Level.CELL, Level.MODULE, Level.RACK

CATALOG: dict[str, Quantity] = {
    q.name: q
    for q in [
        # cell level
        _Q("cell_voltage", "V", _C, _N, "Voltage of one cell"),
        _Q("cell_temperature", "°C", _C, _N, "Temperature at one cell sensor"),
        _Q("cell_balancing", "", _C, _B, "Balancing active for the cell (1 = on)"),
        _Q("cell_soc", "%", _C, _N, "State of charge of one cell"),
        # module level
        _Q("module_voltage", "V", _M, _N, "Voltage of one module"),
        _Q("module_temperature", "°C", _M, _N, "Temperature of one module"),
        _Q("module_cell_voltage_max", "V", _M, _N, "Highest cell voltage in the module"),
        _Q("module_cell_voltage_min", "V", _M, _N, "Lowest cell voltage in the module"),
        # rack level: electrical
        _Q("rack_voltage", "V", _R, _N, "Rack (pack/string) voltage"),
        _Q("rack_current", "A", _R, _N, "Rack current; positive charges, negative discharges"),
        _Q("rack_power", "W", _R, _N, "Rack power; positive charges, negative discharges"),
        _Q("soc", "%", _R, _N, "State of charge reported by the BMS"),
        _Q("soh", "%", _R, _N, "State of health reported by the BMS"),
        _Q("insulation_resistance", "Ω", _R, _N, "Insulation resistance to ground"),
        _Q("energy_charged", "Wh", _R, _N, "Energy charged, cumulative"),
        _Q("energy_discharged", "Wh", _R, _N, "Energy discharged, cumulative"),
        _Q("cycle_count", "", _R, _N, "Full equivalent cycles"),
        _Q("capacity_remaining", "Ah", _R, _N, "Remaining capacity"),
        _Q("capacity_full", "Ah", _R, _N, "Full charge capacity"),
        # rack level: measured by the gateway itself (gateway.assess), beside the BMS's own figures
        _Q("assessed_capacity", "Ah", _R, _N, "Usable capacity the gateway measured over the last full discharge"),
        _Q("assessed_soh", "%", _R, _N, "assessed_capacity against the configured nominal capacity"),
        # rack level: statistics over cells
        _Q("cell_voltage_max", "V", _R, _N, "Highest cell voltage in the rack"),
        _Q("cell_voltage_min", "V", _R, _N, "Lowest cell voltage in the rack"),
        _Q("cell_voltage_mean", "V", _R, _N, "Mean cell voltage in the rack"),
        _Q("cell_voltage_spread", "V", _R, _N, "Highest minus lowest cell voltage"),
        _Q("cell_voltage_max_position", "", _R, _N, "Index of the cell with the highest voltage"),
        _Q("cell_voltage_min_position", "", _R, _N, "Index of the cell with the lowest voltage"),
        _Q("cell_temperature_max", "°C", _R, _N, "Highest cell temperature in the rack"),
        _Q("cell_temperature_min", "°C", _R, _N, "Lowest cell temperature in the rack"),
        _Q("cell_temperature_mean", "°C", _R, _N, "Mean cell temperature in the rack"),
        _Q("cell_temperature_spread", "°C", _R, _N, "Highest minus lowest cell temperature"),
        _Q("cell_temperature_max_position", "", _R, _N, "Index of the hottest sensor"),
        _Q("cell_temperature_min_position", "", _R, _N, "Index of the coldest sensor"),
        # rack level: limits
        _Q("charge_current_limit", "A", _R, _N, "Largest charge current the BMS allows"),
        _Q("discharge_current_limit", "A", _R, _N, "Largest discharge current the BMS allows"),
        _Q("charge_voltage_limit", "V", _R, _N, "Highest charge voltage the BMS allows"),
        _Q("discharge_voltage_limit", "V", _R, _N, "Lowest discharge voltage the BMS allows"),
        # rack level: states and interlocks
        _Q("bms_state", "", _R, _S, "Operating state of the BMS, as its enum name"),
        _Q("contactor_positive", "", _R, _S, "Main positive contactor (open/closed)"),
        _Q("contactor_negative", "", _R, _S, "Main negative contactor (open/closed)"),
        _Q("contactor_precharge", "", _R, _S, "Precharge contactor (open/closed)"),
        _Q("breaker", "", _R, _S, "DC breaker (open/closed/tripped)"),
        _Q("interlock_estop", "", _R, _B, "Emergency stop pressed (1 = unsafe)"),
        _Q("interlock_door", "", _R, _B, "Enclosure door open (1 = unsafe)"),
        _Q("interlock_fire", "", _R, _B, "Fire system triggered (1 = unsafe)"),
        _Q("interlock_isolation", "", _R, _B, "Isolation monitor fault (1 = unsafe)"),
        _Q("alarm_word", "", _R, _N, "Raw BMS alarm word; named bits go to alarm.<name>"),
        _Q("warning_word", "", _R, _N, "Raw BMS warning word; named bits go to warning.<name>"),
        # identity
        _Q("manufacturer", "", _R, _T, "Device manufacturer"),
        _Q("model", "", _R, _T, "Device model"),
        _Q("serial_number", "", _R, _T, "Device serial number"),
        _Q("firmware_version", "", _R, _T, "Firmware version"),
    ]
}

# Families of names that are valid without a catalog entry each.
PREFIXES: dict[str, tuple[str, Level, Kind]] = {
    "alarm.": ("", Level.RACK, Kind.BOOL),  # BMS alarm bit by name, 1 = active
    "warning.": ("", Level.RACK, Kind.BOOL),  # BMS warning bit by name, 1 = active
    "raw.": ("", Level.RACK, Kind.NUMBER),  # a reading that fits no catalog entry
}


def lookup(name: str) -> Quantity | None:
    """The catalog entry for a quantity name, or a synthetic one for alarm./warning./raw. names."""
    q = CATALOG.get(name)
    if q is not None:
        return q
    for prefix, (unit, level, kind) in PREFIXES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return Quantity(name, unit, level, kind, f"{prefix[:-1]} reading {name[len(prefix) :]}")
    return None


def is_valid(name: str) -> bool:
    return lookup(name) is not None


def level_of(name: str, module: int | None, cell: int | None) -> Level:
    """Measurement level of a sample: the catalog level, refined by its tags for raw readings."""
    q = lookup(name)
    if q is not None and not name.startswith("raw."):
        return q.level
    if cell is not None:
        return Level.CELL
    if module is not None:
        return Level.MODULE
    return Level.RACK
