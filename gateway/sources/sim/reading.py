"""What the simulated rack reports at one time: the cells, temperatures, modules and rack quantities."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from gateway.model import F64, Key, Value

if TYPE_CHECKING:
    from gateway.sources.sim.battery import RackModel

# The rack quantities in their order, with their units; the three names after the limits are states.
RACK: tuple[tuple[str, str], ...] = (
    ("rack_voltage", "V"),
    ("rack_current", "A"),
    ("rack_power", "W"),
    ("soc", "%"),
    ("soh", "%"),
    ("cell_voltage_max", "V"),
    ("cell_voltage_min", "V"),
    ("cell_voltage_mean", "V"),
    ("cell_voltage_spread", "V"),
    ("cell_voltage_max_position", ""),
    ("cell_voltage_min_position", ""),
    ("insulation_resistance", "Ω"),
    ("energy_charged", "Wh"),
    ("energy_discharged", "Wh"),
    ("cycle_count", ""),
    ("charge_current_limit", "A"),
    ("discharge_current_limit", "A"),
    ("contactor_positive", ""),
    ("contactor_negative", ""),
    ("bms_state", ""),
)
TEMPERATURES = (("cell_temperature_max", "°C"), ("cell_temperature_min", "°C"), ("cell_temperature_spread", "°C"))
CAPACITY = (("capacity_full", "Ah"), ("capacity_remaining", "Ah"))
STATES = 17  # index in RACK of the first state (contactor_positive)


class Reading(NamedTuple):
    """The rack's values at one time: their keys (the same tuple while the rack's shape holds; the rack
    tag left empty), numbers (NaN where the value is a name), and the names by index."""

    rows: tuple[Key, ...]
    values: F64
    objects: dict[int, Value]


def rows_of(m: RackModel) -> tuple[Key, ...]:
    """The keys of the rack's reading (fixed by its parameters)."""
    p = m.params
    cpm, spm = p.cells_per_module, p.sensors_per_module
    rows = [Key("cell_voltage", "V", "", i // cpm + 1, i % cpm + 1) for i in range(m.n_cells)]
    rows += [Key("cell_temperature", "°C", "", k // spm + 1, k % spm + 1) for k in range(p.modules * spm)]
    rows += [Key("module_voltage", "V", "", i + 1, None) for i in range(p.modules)]
    rack = RACK + (TEMPERATURES if spm else ()) + (CAPACITY if m.bms.capacity_full() is not None else ())
    return (*rows, *(Key(name, unit) for name, unit in rack))


def scales_of(m: RackModel) -> F64:
    """10**digits of each cell voltage, temperature and module voltage."""
    p = m.params
    digits = [4] * m.n_cells + [2] * (p.modules * p.sensors_per_module) + [3] * p.modules
    return np.power(10.0, digits)


def rack_reading(m: RackModel, rows: tuple[Key, ...], scales: F64) -> Reading:
    """Every quantity the rack reports now: readings as the sensors give them (stuck ones frozen, the
    rack voltage with its bias), statistics over the readings, the BMS's SoC and SoH."""
    p = m.params
    true_v = m.cell_voltage_array()
    v = m.sensors.cell_voltages(m.t, true_v)
    temps = m.sensors.temperatures(m.t, m.module_temp_array)
    module_volts = true_v.reshape(p.modules, p.cells_per_module).sum(axis=1)
    rv = float(true_v.sum()) + p.pack_voltage_bias
    imax, imin = int(v.argmax()), int(v.argmin())
    vmax, vmin = float(v[imax]), float(v[imin])
    soc, current = m.bms.soc(m.t), m.current
    half_c = round(0.5 * p.capacity_ah, 1)
    numbers = [
        round(rv, 2), round(current, 2), round(rv * current, 1), round(soc, 2), round(m.bms.soh(m.true_soh()), 2),
        round(vmax, 4), round(vmin, 4), round(float(v.mean()), 4), round(vmax - vmin, 4), imax + 1, imin + 1,
        p.insulation_ohm, round(m.energy_charged, 1), round(m.energy_discharged, 1),
        round(m.throughput_ah / (2 * p.capacity_ah), 3), 0.0 if vmax >= 3.6 else half_c,
        0.0 if vmin <= 2.8 else half_c, math.nan, math.nan, math.nan,
    ]  # fmt: skip
    if len(temps):
        tmax, tmin = float(temps.max()), float(temps.min())
        numbers += [round(tmax, 2), round(tmin, 2), round(tmax - tmin, 2)]
    full = m.bms.capacity_full()
    if full is not None:
        numbers += [round(full, 2), round(full * soc / 100.0, 2)]
    first = len(scales) + STATES
    closed = m.contactors_closed()
    contactor = "closed" if closed else "open"
    objects: dict[int, Value] = {first: contactor, first + 1: contactor, first + 2: "run" if closed else "fault"}
    readings = np.rint(np.concatenate([v, temps, module_volts]) * scales) / scales
    return Reading(rows, np.concatenate([readings, np.asarray(numbers, dtype=np.float64)]), objects)
