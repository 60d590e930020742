"""The simulated rack's cells: the OCV curve, per-cell capacity and resistance, the true usable capacity.

Pure numpy, no I/O. A cell's terminal voltage is OCV(SoC) + I·R (positive current charges); every
cell of the series string carries the same current, so a cell with less capacity moves its SoC
faster and reaches the upper limit and the cutoff first.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gateway.model import F64
from gateway.sources.sim.config import CellModel

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
_SOC = np.asarray([k for k, _ in OCV_TABLE], dtype=np.float64)
_V = np.asarray([v for _, v in OCV_TABLE], dtype=np.float64)
BISECTIONS = 60  # halvings of the charge range when solving for full and cutoff (well below 1 mAh)


def ocv_of(soc: F64) -> F64:
    """Open-circuit voltage of each cell at its state of charge in % (outside 0..100: the end's voltage)."""
    return np.interp(soc, _SOC, _V)


@dataclass(frozen=True, slots=True)
class Limits:
    """The conditions a usable capacity is stated at: CC-CV charge, then discharge to the first cutoff."""

    current: float  # A, charge and discharge
    taper_current: float  # A, the CV phase ends below it
    charge_voltage: float  # V, upper cell limit
    cutoff_voltage: float  # V, the first cell's discharge cutoff


@dataclass(frozen=True, slots=True)
class Cells:
    """Each cell's capacity (Ah), resistance (ohm) and SoC (%) at start, rack order (module-major)."""

    capacity: F64
    resistance: F64
    soc: F64


def legacy_draws(n: int, capacity_ah: float, resistance_ohm: float, initial_soc: float, spread: float,
                 seed: int) -> tuple[Cells, random.Random]:  # fmt: skip
    """The draws of the original model, in its order (a seed gives the same rack it always gave)."""
    rng = random.Random(seed)
    capacity = [capacity_ah * (1.0 + spread * rng.gauss(0, 1) * 0.5) for _ in range(n)]
    resistance = [resistance_ohm * (1.0 + spread * abs(rng.gauss(0, 1))) for _ in range(n)]
    soc = [initial_soc + spread * 10 * rng.gauss(0, 1) for _ in range(n)]
    cells = Cells(np.asarray(capacity), np.asarray(resistance), np.asarray(soc))
    return cells, rng


def cell_index(module: int, cell: int, cells_per_module: int, n: int) -> int:
    """0-based rack index of a 1-based (module, cell); a position outside the rack is an error."""
    if cell > cells_per_module or (module - 1) * cells_per_module + cell > n:
        raise ValueError(f"module {module} cell {cell} is not in a rack of {n} cells, {cells_per_module} a module")
    return (module - 1) * cells_per_module + cell - 1


def apply_model(base: Cells, m: CellModel, capacity_ah: float, resistance_ohm: float, cells_per_module: int,
                seed: int) -> Cells:  # fmt: skip
    """The true cells: the spread drawn from the model's seed, explicit values, the SoH, injected outliers."""
    n = len(base.capacity)
    capacity, resistance = base.capacity.copy(), base.resistance.copy()
    rng = np.random.default_rng(seed if m.seed is None else m.seed)
    draws = rng.standard_normal((2, n))
    if m.capacity_sd is not None:
        capacity = capacity_ah * np.maximum(0.1, 1.0 + m.capacity_sd * draws[0])
    if m.resistance_sd is not None:
        resistance = resistance_ohm * np.maximum(0.1, 1.0 + m.resistance_sd * draws[1])
    for v in m.values:
        i = cell_index(v.module, v.cell, cells_per_module, n)
        if v.capacity_ah is not None:
            capacity[i] = v.capacity_ah
        if v.resistance_ohm is not None:
            resistance[i] = v.resistance_ohm
    if m.soh is not None:
        capacity *= m.soh / 100.0
    for w in m.weak:
        capacity[cell_index(w.module, w.cell, cells_per_module, n)] *= w.capacity_factor
    for h in m.high_resistance:
        resistance[cell_index(h.module, h.cell, cells_per_module, n)] *= h.resistance_factor
    return Cells(capacity, resistance, base.soc.copy())


def _bisect(f: Callable[[float], bool], lo: float, hi: float) -> float:
    """The largest x in [lo, hi] with f(x) true, for f true below a point and false above it."""
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) else (lo, mid)
    return lo


def charge_to_full(soc: F64, capacity: F64, resistance: F64, lim: Limits) -> float:
    """Ah a CC-CV charge adds from `soc` until the current tapers to lim.taper_current (negative: above full)."""
    span = float(capacity.max())

    def below_limit(q: float) -> bool:
        v = ocv_of(soc + 100.0 * q / capacity) + lim.taper_current * resistance
        return bool(v.max() < lim.charge_voltage)

    return _bisect(below_limit, -span, span)


def usable_from(soc: F64, capacity: F64, resistance: F64, lim: Limits) -> float:
    """Ah a discharge at lim.current delivers from `soc` until the first cell reaches the cutoff."""
    span = float(capacity.max())

    def above_cutoff(q: float) -> bool:
        v = ocv_of(soc - 100.0 * q / capacity) - lim.current * resistance
        return bool(v.min() > lim.cutoff_voltage)

    return max(0.0, _bisect(above_cutoff, 0.0, span))


def usable_capacity(soc: F64, capacity: F64, resistance: F64, lim: Limits) -> float:
    """True usable capacity, Ah: between a full CC-CV charge and the first cell's cutoff at lim.current."""
    full = soc + 100.0 * charge_to_full(soc, capacity, resistance, lim) / capacity
    return usable_from(full, capacity, resistance, lim)


def nominal_usable(n: int, capacity_ah: float, resistance_ohm: float, lim: Limits) -> float:
    """The usable capacity of a rack of n nominal, balanced cells at the same limits (SoH 100 %)."""
    ones = np.ones(n)
    return usable_capacity(50.0 * ones, capacity_ah * ones, resistance_ohm * ones, lim)
