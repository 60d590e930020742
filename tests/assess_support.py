"""A synthetic rack for the assessment tests: cells of known capacity and resistance on an LFP curve,
a current profile of full cycles, and the faults a test asks for; its samples as columnar batches."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.model import GOOD, QUALITY_CODE, Batch, Key, Keys

OCV_SOC = np.array([0.0, 2, 5, 10, 20, 40, 60, 80, 90, 95, 98, 100])
OCV_V = np.array([2.50, 2.90, 3.05, 3.18, 3.24, 3.27, 3.29, 3.32, 3.34, 3.38, 3.45, 3.60])
RACK = "r1"
T0 = 1_700_000_000_000_000_000
COMM_LOSS = QUALITY_CODE["comm_loss"]


def ocv(soc: np.ndarray) -> np.ndarray:
    return np.interp(soc, OCV_SOC, OCV_V)


@dataclass
class Synth:
    """Parameters and, after `run`, the recorded columns and the truth."""

    modules: int = 2
    cells_per_module: int = 8
    sensors: int = 8
    nominal_ah: float = 100.0
    amps: float = 50.0
    weak: dict[int, float] = field(default_factory=dict)  # cell index -> capacity factor
    high_r: dict[int, float] = field(default_factory=dict)  # cell index -> resistance factor
    pack_bias_v: float = 0.0
    stuck_temp: int | None = None  # sensor frozen from step 3000
    stuck_cell: int | None = None  # cell voltage frozen from step 3000
    soc_drift_per_day: float = 0.0
    bms_soh: float = 100.0
    seed: int = 3
    # filled by run()
    t: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    current: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cells: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    temps: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    pack: np.ndarray = field(default_factory=lambda: np.zeros(0))
    soc: np.ndarray = field(default_factory=lambda: np.zeros(0))
    discharged_ah: list[float] = field(default_factory=list)  # per full discharge: truth of usable capacity

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        n = self.modules * self.cells_per_module
        self.capacity = self.nominal_ah * (1 + 0.01 * rng.standard_normal(n))
        self.resistance = 0.001 * (1 + 0.03 * np.abs(rng.standard_normal(n)))
        for i, f in self.weak.items():
            self.capacity[i] *= f
        for i, f in self.high_r.items():
            self.resistance[i] *= f
        self.rng = rng

    def run(self, cycles: int = 2, rest_s: int = 600) -> Synth:
        """Rest full, then per cycle: discharge to the first cell at 2.95 V, rest, charge until the first
        cell is at 3.55 V, then halve the current each time a cell is there again, down to C/40 (a
        taper), rest. One step a second."""
        soc = np.full(len(self.capacity), 100.0)
        out_i: list[float] = []
        out_v: list[np.ndarray] = []
        out_soc: list[np.ndarray] = []

        def step(i: float) -> np.ndarray:
            soc[:] = np.clip(soc + 100.0 * i / 3600.0 / self.capacity, 0, 100)
            v = ocv(soc) + i * self.resistance
            out_i.append(i)
            out_v.append(v)
            out_soc.append(soc.copy())
            return v

        for _ in range(rest_s):
            step(0.0)
        for _ in range(cycles):
            ah = 0.0
            while step(-self.amps).min() > 2.95:
                ah += self.amps / 3600.0
            self.discharged_ah.append(ah + self.amps / 3600.0)
            for _ in range(rest_s):
                step(0.0)
            amps = self.amps
            while amps >= self.nominal_ah / 40:
                if step(amps).max() >= 3.55:
                    amps /= 2
            for _ in range(rest_s):
                step(0.0)
        n = len(out_i)
        self.t = T0 + np.arange(n, dtype=np.int64) * 1_000_000_000
        self.current = np.asarray(out_i)
        self.cells = np.round(np.vstack(out_v), 4)
        self.soc = np.vstack(out_soc).mean(axis=1)
        self.pack = self.cells.sum(axis=1) + self.pack_bias_v + 0.05 * self.rng.standard_normal(n)
        k = np.arange(n)
        base = 25 + 3 * np.sin(2 * np.pi * k / 3600)
        self.temps = np.round(base[:, None] + np.linspace(-0.5, 0.5, self.sensors)[None, :]
                              + 0.02 * self.rng.standard_normal((n, self.sensors)), 2)  # fmt: skip
        if self.stuck_temp is not None:
            self.temps[3000:, self.stuck_temp] = self.temps[3000, self.stuck_temp]
        if self.stuck_cell is not None:
            self.cells[3000:, self.stuck_cell] = self.cells[3000, self.stuck_cell]
        return self

    @property
    def usable_soh(self) -> float:
        return 100.0 * self.discharged_ah[0] / self.nominal_ah

    def keys(self) -> list[Key]:
        cpm = self.cells_per_module
        rows = [Key("cell_voltage", "V", RACK, i // cpm + 1, i % cpm + 1) for i in range(self.cells.shape[1])]
        rows += [Key("cell_temperature", "°C", RACK, j // 4 + 1, j % 4 + 1) for j in range(self.sensors)]
        rows += [Key("rack_current", "A", RACK), Key("rack_voltage", "V", RACK), Key("soc", "%", RACK),
                 Key("soh", "%", RACK), Key("cycle_count", "", RACK)]  # fmt: skip
        return rows

    def batches(self, per_batch: int = 60, gap: tuple[int, int] | None = None,
                comm_loss: tuple[int, int] | None = None) -> list[Batch]:  # fmt: skip
        """The samples, `per_batch` steps a batch; no sample in the steps of `gap`, comm-loss quality
        (no value) in the steps of `comm_loss`."""
        keys = self.keys()
        days = (self.t - self.t[0]) / 86_400e9
        bms_soc = self.soc + self.soc_drift_per_day * days
        values = np.column_stack([self.cells, self.temps, self.current, self.pack, bms_soc,
                                  np.full(len(self.t), self.bms_soh), np.zeros(len(self.t))])  # fmt: skip
        quality = np.full(values.shape, GOOD, dtype=np.uint8)
        keep = np.ones(len(self.t), dtype=np.bool_)
        if gap is not None:
            keep[gap[0] : gap[1]] = False
        if comm_loss is not None:
            quality[comm_loss[0] : comm_loss[1]] = COMM_LOSS
            values[comm_loss[0] : comm_loss[1]] = np.nan
        out = []
        width = len(keys)
        for a in range(0, len(self.t), per_batch):
            rows = np.arange(a, min(a + per_batch, len(self.t)))
            rows = rows[keep[rows]]
            if len(rows) == 0:
                continue
            table = Keys.of(keys * len(rows))
            ts = np.repeat(self.t[rows], width)
            out.append(Batch("synth", table, ts, values[rows].ravel(), quality[rows].ravel()))
        return out
