"""A physically plausible battery rack model: pure, deterministic for a seed, no I/O.

Cells follow an LFP open-circuit-voltage curve OCV(SoC) plus an ohmic drop I·R; each cell's SoC
integrates the current over its own capacity (cell-to-cell spread from the seed); module
temperatures follow the I²R losses against a thermal mass and a heat-transfer coefficient to
ambient. Faults change the physics (a weak cell has less capacity and more resistance), the sensors
(a stuck sensor freezes) or the contactors (an open contactor stops the current).

Sign convention: positive current charges the rack.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from gateway.model import F64, Batch, Key, Keys, Sample, Value

# LFP open-circuit voltage, (SoC %, V) knots; linear in between.
OCV_TABLE: tuple[tuple[float, float], ...] = (
    (0.0, 2.50),
    (2.0, 2.90),
    (5.0, 3.05),
    (10.0, 3.18),
    (20.0, 3.24),
    (40.0, 3.27),
    (60.0, 3.29),
    (80.0, 3.32),
    (90.0, 3.34),
    (95.0, 3.38),
    (98.0, 3.45),
    (100.0, 3.60),
)
_SOC_KNOTS = [k for k, _ in OCV_TABLE]


class Reading(NamedTuple):
    """The rack's values at one time: their keys (the same tuple while the rack's shape holds; the rack
    tag left empty), numbers (NaN where the value is a name), and the names by index."""

    rows: tuple[Key, ...]
    values: F64
    objects: dict[int, Value]


def ocv(soc: float) -> float:
    """Open-circuit voltage of one cell at a state of charge in % (clamped to 0..100)."""
    s = min(100.0, max(0.0, soc))
    i = bisect.bisect_right(_SOC_KNOTS, s)
    if i >= len(OCV_TABLE):
        return OCV_TABLE[-1][1]
    (s0, v0), (s1, v1) = OCV_TABLE[i - 1], OCV_TABLE[i]
    return v0 + (v1 - v0) * (s - s0) / (s1 - s0)


@dataclass
class RackParams:
    modules: int = 4
    cells_per_module: int = 12
    sensors_per_module: int = 4
    capacity_ah: float = 280.0
    resistance_ohm: float = 0.00025  # per cell
    initial_soc: float = 60.0
    current_amplitude: float = 100.0
    current_period: float = 600.0
    ambient: float = 25.0
    spread: float = 0.02
    thermal_mass_j_per_k: float = 25_000.0  # per module
    cooling_w_per_k: float = 5.0  # per module
    insulation_ohm: float = 5_000_000.0
    seed: int = 1


@dataclass
class Fault:
    kind: str  # weak_cell | stuck_sensor | dropout | contactor_open | hot_cell
    at: float = 0.0
    duration: float | None = None
    cell: int = 1  # 1-based, rack numbering (for sensors: 1-based sensor index)
    severity: float = 1.0

    def active(self, t: float) -> bool:
        return t >= self.at and (self.duration is None or t < self.at + self.duration)


@dataclass
class RackModel:
    params: RackParams
    faults: list[Fault] = field(default_factory=list)
    t: float = 0.0  # simulated seconds since start
    current: float = 0.0
    energy_charged: float = 0.0  # Wh
    energy_discharged: float = 0.0  # Wh
    throughput_ah: float = 0.0

    def __post_init__(self) -> None:
        p = self.params
        rng = random.Random(p.seed)
        n = p.modules * p.cells_per_module
        self.capacity = [p.capacity_ah * (1.0 + p.spread * rng.gauss(0, 1) * 0.5) for _ in range(n)]
        self.resistance = [p.resistance_ohm * (1.0 + p.spread * abs(rng.gauss(0, 1))) for _ in range(n)]
        self.soc = [p.initial_soc + p.spread * 10 * rng.gauss(0, 1) for _ in range(n)]
        self.module_temp = [p.ambient + rng.uniform(0, 0.5) for _ in range(p.modules)]
        self.sensor_offset = [rng.uniform(-0.3, 0.3) for _ in range(p.modules * p.sensors_per_module)]
        self.stuck: dict[int, float] = {}
        self._rows: tuple[Key, ...] | None = None
        self._weak_applied: set[int] = set()

    @property
    def n_cells(self) -> int:
        return len(self.soc)

    def contactors_closed(self) -> bool:
        return not any(f.kind == "contactor_open" and f.active(self.t) for f in self.faults)

    def dropped_out(self) -> bool:
        return any(f.kind == "dropout" and f.active(self.t) for f in self.faults)

    def demanded_current(self, t: float) -> float:
        p = self.params
        return p.current_amplitude * math.sin(2 * math.pi * t / p.current_period)

    def step(self, dt: float) -> None:
        """Advance the model by dt simulated seconds."""
        p = self.params
        self._apply_weak_cells()
        current = self.demanded_current(self.t) if self.contactors_closed() else 0.0
        # The BMS derates: no charge above 98 % on any cell, no discharge below 3 %.
        if (current > 0 and max(self.soc) >= 98.0) or (current < 0 and min(self.soc) <= 3.0):
            current = 0.0
        self.current = current
        dq = current * dt / 3600.0  # Ah
        for i in range(self.n_cells):
            self.soc[i] = min(100.0, max(0.0, self.soc[i] + 100.0 * dq / self.capacity[i]))
        volts = self.rack_voltage()
        wh = volts * current * dt / 3600.0
        if wh >= 0:
            self.energy_charged += wh
        else:
            self.energy_discharged -= wh
        self.throughput_ah += abs(dq)
        cpm = p.cells_per_module
        for m in range(p.modules):
            r_mod = sum(self.resistance[m * cpm : (m + 1) * cpm])
            heat = current * current * r_mod
            for f in self.faults:
                if f.kind == "hot_cell" and f.active(self.t) and (f.cell - 1) // cpm == m:
                    heat += 20.0 * f.severity * p.cooling_w_per_k  # drives the module about 20 K up
            dtemp = (heat - p.cooling_w_per_k * (self.module_temp[m] - p.ambient)) / p.thermal_mass_j_per_k
            self.module_temp[m] += dtemp * dt
        self.t += dt

    def _apply_weak_cells(self) -> None:
        for idx, f in enumerate(self.faults):
            if f.kind == "weak_cell" and f.active(self.t) and idx not in self._weak_applied:
                c = (f.cell - 1) % self.n_cells
                self.capacity[c] /= 1.0 + f.severity
                self.resistance[c] *= 1.0 + 4 * f.severity
                self._weak_applied.add(idx)

    def cell_voltages(self) -> list[float]:
        i = self.current
        return [ocv(s) + i * r for s, r in zip(self.soc, self.resistance, strict=True)]

    def rack_voltage(self) -> float:
        return sum(self.cell_voltages())

    def sensor_temperatures(self) -> list[float]:
        p = self.params
        out = []
        for k in range(p.modules * p.sensors_per_module):
            if k in self.stuck:
                out.append(self.stuck[k])
                continue
            value = self.module_temp[k // p.sensors_per_module] + self.sensor_offset[k]
            for f in self.faults:
                if f.kind == "stuck_sensor" and f.active(self.t) and f.cell - 1 == k:
                    self.stuck[k] = value
            out.append(value)
        return out

    def reading(self) -> Reading:
        """Every quantity the rack reports now."""
        p = self.params
        cpm, spm = p.cells_per_module, p.sensors_per_module
        volts = self.cell_voltages()
        temps = self.sensor_temperatures()
        v = np.asarray(volts, dtype=np.float64)
        module_volts = v.reshape(p.modules, cpm).sum(axis=1) if p.modules else v[:0]
        rv = sum(volts)
        closed = self.contactors_closed()
        vmax, vmin = max(volts), min(volts)
        soc = sum(self.soc) / len(self.soc)
        soh = 100.0 * min(1.0, sum(self.capacity) / (p.capacity_ah * len(self.capacity)))
        rack: list[tuple[str, float | str, str]] = [
            ("rack_voltage", round(rv, 2), "V"),
            ("rack_current", round(self.current, 2), "A"),
            ("rack_power", round(rv * self.current, 1), "W"),
            ("soc", round(soc, 2), "%"),
            ("soh", round(soh, 2), "%"),
            ("cell_voltage_max", round(vmax, 4), "V"),
            ("cell_voltage_min", round(vmin, 4), "V"),
            ("cell_voltage_mean", round(rv / len(volts), 4), "V"),
            ("cell_voltage_spread", round(vmax - vmin, 4), "V"),
            ("cell_voltage_max_position", volts.index(vmax) + 1, ""),
            ("cell_voltage_min_position", volts.index(vmin) + 1, ""),
            ("insulation_resistance", p.insulation_ohm, "Ω"),
            ("energy_charged", round(self.energy_charged, 1), "Wh"),
            ("energy_discharged", round(self.energy_discharged, 1), "Wh"),
            ("cycle_count", round(self.throughput_ah / (2 * p.capacity_ah), 3), ""),
            ("charge_current_limit", 0.0 if vmax >= 3.6 else round(0.5 * p.capacity_ah, 1), "A"),
            ("discharge_current_limit", 0.0 if vmin <= 2.8 else round(0.5 * p.capacity_ah, 1), "A"),
            ("contactor_positive", "closed" if closed else "open", ""),
            ("contactor_negative", "closed" if closed else "open", ""),
            ("bms_state", "run" if closed else "fault", ""),
        ]
        if temps:
            tmax, tmin = max(temps), min(temps)
            rack += [
                ("cell_temperature_max", round(tmax, 2), "°C"),
                ("cell_temperature_min", round(tmin, 2), "°C"),
                ("cell_temperature_spread", round(tmax - tmin, 2), "°C"),
            ]
        if self._rows is None:  # the shape is fixed by the parameters: its keys are made once
            rows = [Key("cell_voltage", "V", "", i // cpm + 1, i % cpm + 1) for i in range(len(volts))]
            rows += [Key("cell_temperature", "°C", "", k // spm + 1, k % spm + 1) for k in range(len(temps))]
            rows += [Key("module_voltage", "V", "", m + 1, None) for m in range(p.modules)]
            self._rows = (*rows, *(Key(name, unit) for name, _, unit in rack))
        first = len(volts) + len(temps) + p.modules
        objects: dict[int, Value] = {first + i: x for i, (_, x, _) in enumerate(rack) if isinstance(x, str)}
        numbers = np.asarray([math.nan if isinstance(x, str) else x for _, x, _ in rack], dtype=np.float64)
        values = np.concatenate([np.round(v, 4), np.round(temps, 2), np.round(module_volts, 3), numbers])
        return Reading(self._rows, values, objects)

    def samples(self, ts: int, rack: str) -> list[Sample]:
        """Every quantity the rack reports, as samples at time ts (ns)."""
        r = self.reading()
        keys = Keys.of(k._replace(rack=rack) for k in r.rows)
        n = len(keys)
        quality = np.zeros(n, dtype=np.uint8)
        return Batch("", keys, np.full(n, ts, dtype=np.int64), r.values, quality, None, r.objects).samples()
