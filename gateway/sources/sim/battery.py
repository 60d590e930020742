"""A physically plausible battery rack model: pure, deterministic for a seed, no I/O; numpy over the cells.

Cells follow an LFP open-circuit-voltage curve OCV(SoC) plus an ohmic drop I·R; each cell's SoC
integrates the current over its own capacity (from a spread, explicit values, injected weak cells,
a fixed SoH, fade per equivalent full cycle); module temperatures follow the I²R losses against a
thermal mass and a heat-transfer coefficient to ambient. Faults change the physics (a weak cell
has less capacity and more resistance), the sensors (a stuck sensor freezes) or the contactors (an
open contactor stops the current). The BMS reports its own coulomb count and SoH with configured
errors (gateway.sources.sim.bms); the rack voltage sensor may carry a bias.

Sign convention: positive current charges the rack.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from gateway.model import F64, Batch, Key, Keys, Sample
from gateway.sources.sim import cells as cellmod
from gateway.sources.sim.bms import Bms
from gateway.sources.sim.cells import OCV_TABLE, Limits, ocv_of
from gateway.sources.sim.config import BmsModel, CapacityTest, CellModel
from gateway.sources.sim.profile import CapacityTestProfile, Phase, Transition
from gateway.sources.sim.reading import Reading, rack_reading, rows_of, scales_of
from gateway.sources.sim.sensors import Fault, Sensors

__all__ = ["OCV_TABLE", "Fault", "RackModel", "RackParams", "Reading", "ocv"]
_SOC_KNOTS = [k for k, _ in OCV_TABLE]


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
    profile: str = "sine"  # sine | capacity_test
    test: CapacityTest = field(default_factory=CapacityTest)
    cells: CellModel = field(default_factory=CellModel)
    bms: BmsModel = field(default_factory=BmsModel)
    pack_voltage_bias: float = 0.0

    def limits(self) -> Limits:
        """The capacity test's conditions (also those the true usable capacity is stated at)."""
        t, c = self.test, self.capacity_ah
        i = 0.5 * c if t.current is None else t.current
        taper = 0.05 * c if t.taper_current is None else t.taper_current
        return Limits(i, taper, t.charge_voltage, t.cutoff_voltage)


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
        n = p.modules * p.cells_per_module
        # The legacy draws first, in their order: a seed gives the rack it always gave.
        drawn, rng = cellmod.legacy_draws(n, p.capacity_ah, p.resistance_ohm, p.initial_soc, p.spread, p.seed)
        self.module_temp_array = np.asarray([p.ambient + rng.uniform(0, 0.5) for _ in range(p.modules)])
        offsets = [rng.uniform(-0.3, 0.3) for _ in range(p.modules * p.sensors_per_module)]
        start = cellmod.apply_model(drawn, p.cells, p.capacity_ah, p.resistance_ohm, p.cells_per_module, p.seed)
        self.start = start  # the true cells at t=0 (the truth file states them)
        self.base_capacity = start.capacity.copy()  # before fade; timed weak_cell faults change it
        self.cell_capacity = start.capacity.copy()
        self.cell_resistance = start.resistance.copy()
        self.cell_soc = start.soc.copy()  # the model's state: changed by step() only
        self._ocv = ocv_of(self.cell_soc)  # of cell_soc, kept with it
        self._r_module = self._module_resistance()
        self.sensors = Sensors(np.asarray(offsets), p.cells_per_module, p.sensors_per_module, self.faults)
        self.bms = Bms(p.bms, p.capacity_ah, float(self.cell_soc.mean()))
        self.test = None if p.profile == "sine" else CapacityTestProfile(
            p.limits(), p.test.rest, p.test.partial_cycles, p.test.partial_low, p.test.partial_high
        )  # fmt: skip
        self.nominal_usable_ah = cellmod.nominal_usable(n, p.capacity_ah, p.resistance_ohm, p.limits())
        self._usable: tuple[float, F64] | None = None  # (Ah, the capacities it was worked out for)
        self._capacity_moved = False
        self._rows: tuple[Key, ...] | None = None
        self._scales: F64 = np.ones(0)
        self._weak_applied: set[int] = set()
        self.charge_ah = 0.0  # signed charge into the rack since start (positive charges)
        self._full_mark: float | None = None  # charge_ah when the last full charge ended
        self._announced: set[int] = set()  # faults whose start is in `events`
        self.events: list[dict[str, object]] = []  # what happened, for the truth file; drained by the caller

    # Lists for callers that look at single cells; the arrays are the model's state.
    @property
    def n_cells(self) -> int:
        return len(self.cell_soc)

    @property
    def soc(self) -> list[float]:
        return self.cell_soc.tolist()  # type: ignore[no-any-return]

    @property
    def capacity(self) -> list[float]:
        return self.cell_capacity.tolist()  # type: ignore[no-any-return]

    @property
    def resistance(self) -> list[float]:
        return self.cell_resistance.tolist()  # type: ignore[no-any-return]

    @property
    def module_temp(self) -> list[float]:
        return self.module_temp_array.tolist()  # type: ignore[no-any-return]

    def contactors_closed(self) -> bool:
        return not any(f.kind == "contactor_open" and f.active(self.t) for f in self.faults)

    def dropped_out(self) -> bool:
        return any(f.kind == "dropout" and f.active(self.t) for f in self.faults)

    def demanded_current(self, t: float) -> float:
        p = self.params
        if self.test is not None:
            return self.test.current(t, self._ocv, self.cell_resistance, float(self.cell_soc.mean()))
        return p.current_amplitude * math.sin(2 * math.pi * t / p.current_period)

    def step(self, dt: float) -> None:
        """Advance the model by dt simulated seconds."""
        p = self.params
        self._apply_weak_cells()
        self._announce_faults()
        current = self.demanded_current(self.t) if self.contactors_closed() else 0.0
        if self.test is not None:
            self.events += [self._phase_event(tr) for tr in self.test.transitions]
            self.test.transitions.clear()
        # The sine profile's BMS derates: no charge above 98 % on any cell, no discharge below 3 %.
        soc = self.cell_soc
        if self.test is None and ((current > 0 and soc.max() >= 98.0) or (current < 0 and soc.min() <= 3.0)):
            current = 0.0
        self.current = current
        dq = current * dt / 3600.0  # Ah
        soc = soc + 100.0 * dq / self.cell_capacity
        self.cell_soc = np.minimum(np.maximum(soc, 0.0, out=soc), 100.0, out=soc)
        self._ocv = ocv_of(soc)
        wh = self.rack_voltage() * current * dt / 3600.0
        if wh >= 0:
            self.energy_charged += wh
        else:
            self.energy_discharged -= wh
        self.throughput_ah += abs(dq)
        self.charge_ah += dq
        self.bms.count(dq)
        if p.cells.fade_per_cycle:
            efc = self.throughput_ah / (2 * p.capacity_ah)
            self.cell_capacity = self.base_capacity * max(0.0, 1.0 - p.cells.fade_per_cycle * efc)
            self._capacity_moved = True
        heat = current * current * self._r_module
        for f in self.faults:
            if f.kind == "hot_cell" and f.active(self.t):
                heat[f.index(p.cells_per_module, self.n_cells) // p.cells_per_module] += (
                    20.0 * f.severity * p.cooling_w_per_k  # drives the module about 20 K up
                )
        dtemp = (heat - p.cooling_w_per_k * (self.module_temp_array - p.ambient)) / p.thermal_mass_j_per_k
        self.module_temp_array = self.module_temp_array + dtemp * dt
        self.t += dt

    def _apply_weak_cells(self) -> None:
        for idx, f in enumerate(self.faults):
            if f.kind == "weak_cell" and f.active(self.t) and idx not in self._weak_applied:
                c = f.index(self.params.cells_per_module, self.n_cells)
                self.base_capacity[c] /= 1.0 + f.severity
                self.cell_capacity[c] /= 1.0 + f.severity
                self.cell_resistance[c] *= 1.0 + 4 * f.severity
                self._r_module = self._module_resistance()
                self._capacity_moved = True
                self._weak_applied.add(idx)

    def _module_resistance(self) -> F64:
        r: F64 = self.cell_resistance.reshape(self.params.modules, self.params.cells_per_module).sum(axis=1)
        return r

    def _where(self, index: int, per_module: int | None = None) -> dict[str, object]:
        per = self.params.cells_per_module if per_module is None else per_module
        return {"module": index // per + 1, "cell": index % per + 1}

    def _announce_faults(self) -> None:
        p = self.params
        for idx, f in enumerate(self.faults):
            if idx in self._announced or not f.active(self.t):
                continue
            self._announced.add(idx)
            ev: dict[str, object] = {"t": self.t, "event": "fault", "kind": f.kind}
            if f.kind == "stuck_sensor":  # the sensor, numbered in its module
                spm = p.sensors_per_module
                ev.update(self._where(f.index(spm, p.modules * spm), spm))
            elif f.kind not in ("dropout", "contactor_open"):
                ev.update(self._where(f.index(p.cells_per_module, self.n_cells)))
            self.events.append(ev)

    def _phase_event(self, tr: Transition) -> dict[str, object]:
        """A capacity-test phase that began: at a full charge the usable capacity from there (truth), at the
        cutoff the Ah the model discharged since the full charge and the cell that reached the cutoff."""
        ev: dict[str, object] = {"t": tr.t, "event": "phase", "phase": tr.phase.value}
        if tr.cell is not None:
            ev.update(self._where(tr.cell))
        if tr.phase is Phase.REST_FULL:
            self._full_mark = self.charge_ah
            lim = self.params.limits()
            ev["usable_capacity_ah"] = cellmod.usable_from(self.cell_soc, self.cell_capacity, self.cell_resistance, lim)
        elif tr.phase is Phase.REST_EMPTY and self._full_mark is not None:
            ev["discharged_ah"] = self._full_mark - self.charge_ah
        return ev

    def drain_events(self) -> list[dict[str, object]]:
        """What happened since the last call, in time order: faults that began, capacity-test phases,
        sensors that froze (with the value they hold)."""
        out = self.events
        for fr in self.sensors.frozen:
            per = self.params.cells_per_module if fr.quantity == "cell_voltage" else self.params.sensors_per_module
            ev = {"t": fr.t, "event": "stuck", "quantity": fr.quantity, **self._where(fr.index, per)}
            out.append({**ev, "value": fr.value})
        self.events, self.sensors.frozen = [], []
        return sorted(out, key=lambda e: float(e["t"]))  # type: ignore[arg-type]

    def cell_voltage_array(self) -> F64:
        """The true terminal voltage of every cell."""
        return self._ocv + self.current * self.cell_resistance

    def cell_voltages(self) -> list[float]:
        return self.cell_voltage_array().tolist()  # type: ignore[no-any-return]

    def rack_voltage(self) -> float:
        """The true rack voltage: the sum of the cells (the sensor's bias is in the reading)."""
        return float(self.cell_voltage_array().sum())

    def sensor_temperatures(self) -> list[float]:
        return self.sensors.temperatures(self.t, self.module_temp_array).tolist()  # type: ignore[no-any-return]

    def usable_capacity(self) -> float:
        """True usable capacity now (Ah between a full charge and the first cutoff at the test current),
        worked out again when a cell's capacity moved by more than 10 ppm."""
        cap, known = self.cell_capacity, self._usable
        if known is None or (self._capacity_moved and np.any(np.abs(cap - known[1]) > 1e-5 * cap)):
            ah = cellmod.usable_capacity(self.cell_soc, cap, self.cell_resistance, self.params.limits())
            self._usable = known = (ah, cap.copy())
        self._capacity_moved = False
        return known[0]

    def true_soh(self) -> float:
        """True SoH, %: the usable capacity against that of a rack of nominal cells at the same limits."""
        return 100.0 * self.usable_capacity() / self.nominal_usable_ah

    def reading(self) -> Reading:
        """Every quantity the rack reports now."""
        if self._rows is None:  # the shape is fixed by the parameters: its keys are made once
            self._rows, self._scales = rows_of(self), scales_of(self)
        return rack_reading(self, self._rows, self._scales)

    def samples(self, ts: int, rack: str) -> list[Sample]:
        """Every quantity the rack reports, as samples at time ts (ns)."""
        r = self.reading()
        keys = Keys.of(k._replace(rack=rack) for k in r.rows)
        n = len(keys)
        quality = np.zeros(n, dtype=np.uint8)
        return Batch("", keys, np.full(n, ts, dtype=np.int64), r.values, quality, None, r.objects).samples()
