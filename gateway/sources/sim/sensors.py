"""The simulated rack's faults and its sensors: temperature sensor offsets, sensors that freeze. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.model import F64


@dataclass
class Fault:
    kind: str  # weak_cell | stuck_sensor | stuck_voltage | dropout | contactor_open | hot_cell
    at: float = 0.0
    duration: float | None = None
    cell: int = 1  # 1-based: in `module` when given, else rack numbering (for stuck_sensor: the sensor)
    severity: float = 1.0
    module: int | None = None

    def active(self, t: float) -> bool:
        return t >= self.at and (self.duration is None or t < self.at + self.duration)

    def index(self, per_module: int, n: int) -> int:
        """0-based index of the cell (or sensor, with per_module sensors a module) among n."""
        i = self.cell - 1 if self.module is None else (self.module - 1) * per_module + self.cell - 1
        return i % n if n else 0


@dataclass(frozen=True, slots=True)
class Frozen:
    """A sensor that froze: at simulated time t, the reading it keeps (0-based index among its kind)."""

    t: float
    quantity: str  # cell_voltage | cell_temperature
    index: int
    value: float


@dataclass
class Sensors:
    """Temperature sensors (a fixed offset each) and the stuck-sensor faults over them and the cell voltages."""

    offsets: F64
    cells_per_module: int
    sensors_per_module: int
    faults: list[Fault]
    held: dict[tuple[str, int], float] = field(default_factory=dict)
    frozen: list[Frozen] = field(default_factory=list)  # drained by the caller

    def temperatures(self, t: float, module_temp: F64) -> F64:
        """Each sensor's reading: its module's temperature plus its offset, or the value it froze at."""
        values = np.repeat(module_temp, self.sensors_per_module) + self.offsets
        return self._hold(t, "stuck_sensor", "cell_temperature", self.sensors_per_module, values)

    def cell_voltages(self, t: float, true_v: F64) -> F64:
        """Each cell voltage reading: the true voltage, or the value a stuck reading froze at."""
        return self._hold(t, "stuck_voltage", "cell_voltage", self.cells_per_module, true_v)

    def _hold(self, t: float, kind: str, quantity: str, per_module: int, values: F64) -> F64:
        out = values
        for f in self.faults:
            if f.kind != kind or not len(values):
                continue
            k = f.index(per_module, len(values))
            if not f.active(t):
                self.held.pop((quantity, k), None)
                continue
            if out is values:
                out = values.copy()
            if (quantity, k) not in self.held:
                self.held[quantity, k] = float(values[k])
                self.frozen.append(Frozen(t, quantity, k, float(values[k])))
            out[k] = self.held[quantity, k]
        return out
