"""Per cell: relative capacity and relative internal resistance, and the cells that stand out."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.assess.cycles import Integrator, Limits, conditions
from gateway.assess.divergence import Divergence
from gateway.assess.robust import quiet, robust_z
from gateway.assess.series import CellId, RackChunk
from gateway.model import F64, I64

STEPS_KEPT = 2000  # current steps kept for the resistance medians (a uniform sample past that)
CYCLES_KEPT = 200


@dataclass(frozen=True, slots=True)
class CellsResult:
    cell_ids: tuple[CellId, ...]
    resistance_ohm: F64  # per cell, median over the current steps (NaN: unknown)
    relative_resistance: F64  # resistance / the median cell's
    relative_capacity: F64  # charge to the crossing / the median cell's, median over discharges
    steps: int  # current steps used
    discharges: int  # discharges used for relative capacity
    weak: tuple[CellId, ...]
    high_resistance: tuple[CellId, ...]
    capacity_insufficient: str | None
    resistance_insufficient: str | None


@dataclass
class CellAnalysis:
    """Relative capacity and relative internal resistance per cell; weak and high-resistance cells.

    Resistance method: at each current step (|ΔI| ≥ `min_step_a` between two consecutive steps, with the
    current steady, within 10 % of the step, on the step before and the step after), each cell's voltage
    change across the step (from two steps before to one step after, so a sample taken a step early or
    late by the BMS does not matter) over the current change, ΔV/ΔI; the cell's resistance is the
    median over the steps, and its relative resistance that over the median cell's.

    Capacity method: during each discharge from a full charge to the first cell's cutoff (see
    gateway.assess.cycles) the charge since full is counted, and each cell's voltage, corrected for its
    ohmic drop (V − I·R with the resistances measured so far), is followed: at the end, the charge at
    which each cell fell to the level the median cell has reached, over the median cell's charge, is
    its relative capacity (see gateway.assess.divergence: the divergence at the end of the discharge,
    cells not there yet extrapolated along their own dV/dQ). This assumes the cells start the discharge
    at the same state of charge (the BMS balances at the top); the median over the discharges of the
    window is reported. The divergence at the end of a charge is not used (it tells the same only of a
    rack balanced at the bottom).

    Flags: a cell is **weak** when its robust z-score (median/MAD over the rack's cells, the spread
    floored at `capacity_floor`) is below −`z_limit` and its relative capacity below `weak_below`;
    **high-resistance** when its z-score (spread floored at `resistance_floor`) is above `z_limit` and
    its relative resistance above `high_above`. Both conditions are needed, so a tight healthy family
    flags nothing. Insufficient: no current step (resistance), no full discharge with at least half the
    cells crossing or extrapolated (capacity); fewer than 3 cells (either).
    """

    limits: Limits = field(default_factory=Limits)
    min_step_a: float = 20.0
    window_steps: int = 300
    z_limit: float = 3.5
    capacity_floor: float = 0.01
    resistance_floor: float = 0.05
    weak_below: float = 0.95
    high_above: float = 1.3
    _ids: tuple[CellId, ...] = ()
    _carry: tuple[I64, F64, F64] | None = None  # the last 3 rows (t, current, cells)
    _steps: list[F64] = field(default_factory=list)
    _steps_seen: int = 0
    _rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(15))
    _integrator: Integrator | None = None
    _discharge: Divergence | None = None  # the discharge since the last full step
    _cycles: list[F64] = field(default_factory=list)

    def update(self, chunk: RackChunk) -> None:
        if not self._ids:
            self._ids = chunk.cell_ids
        self._find_steps(chunk)
        self._track_discharge(chunk)

    # -- resistance ---------------------------------------------------------------------------------
    def _find_steps(self, chunk: RackChunk) -> None:
        t, i, v = chunk.t, chunk.current, chunk.cells
        if self._carry is not None:
            t, i, v = (np.concatenate([a, b]) for a, b in zip(self._carry, (t, i, v), strict=True))
        self._carry = (t[-3:], i[-3:], v[-3:])
        n = len(t)
        if n < 4:
            return
        k = np.arange(2, n - 1)
        with np.errstate(invalid="ignore"):
            d_i = i[k] - i[k - 1]
            steady = (np.abs(i[k - 1] - i[k - 2]) <= 0.1 * np.abs(d_i)) & (np.abs(i[k + 1] - i[k]) <= 0.1 * np.abs(d_i))
            period = chunk.period_ns
            consecutive = (t[k + 1] - t[k - 2]) == 3 * period
            found = k[(np.abs(d_i) >= self.min_step_a) & steady & consecutive]
        for j in found.tolist():
            r = (v[j + 1] - v[j - 2]) / (i[j + 1] - i[j - 2])
            self._keep_step(r)

    def _keep_step(self, r: F64) -> None:
        self._steps_seen += 1
        if len(self._steps) < STEPS_KEPT:
            self._steps.append(r)
            return
        j = int(self._rng.integers(self._steps_seen))
        if j < STEPS_KEPT:
            self._steps[j] = r

    def _resistance(self) -> F64:
        if not self._steps:
            return np.full(len(self._ids), np.nan)
        with quiet():
            return np.asarray(np.nanmedian(np.vstack(self._steps), axis=0), dtype=np.float64)

    # -- relative capacity --------------------------------------------------------------------------
    def _track_discharge(self, chunk: RackChunk) -> None:
        if self._integrator is None:
            self._integrator = Integrator(self.limits.max_gap_s)
        inc = self._integrator.increments(chunk)
        cond = conditions(chunk, self.limits)
        r = np.nan_to_num(self._resistance(), nan=0.0)
        corrected = chunk.cells - chunk.current[:, None] * r[None, :]
        events = np.flatnonzero(cond.full | cond.empty | inc.brk)
        start = 0
        for k in [*events.tolist(), chunk.n - 1]:
            if self._discharge is not None:
                self._discharge.rows(inc.ah[start : k + 1], corrected[start : k + 1])
            start = k + 1
            if cond.full[k]:
                self._discharge = Divergence(chunk.cells.shape[1], window_steps=self.window_steps)
            elif inc.brk[k]:
                self._discharge = None  # a hole in the current record: this discharge is not measured
            if cond.empty[k] and self._discharge is not None:
                rel = self._discharge.relative()
                self._discharge = None
                if rel is not None and len(self._cycles) < CYCLES_KEPT:
                    self._cycles.append(rel)

    def result(self) -> CellsResult:
        n = len(self._ids)
        r = self._resistance()
        with quiet():
            rel_r = r / np.nanmedian(r) if np.isfinite(r).any() else np.full(n, np.nan)
            rel_c = np.nanmedian(np.vstack(self._cycles), axis=0) if self._cycles else np.full(n, np.nan)
        weak: tuple[CellId, ...] = ()
        high: tuple[CellId, ...] = ()
        cap_why = res_why = None
        if n < 3:
            cap_why = res_why = "fewer than 3 cells"
        if not self._cycles:
            cap_why = cap_why or "no full discharge to a cell's cutoff with most cells crossing near cutoff"
        else:
            z = robust_z(rel_c, self.capacity_floor)
            with np.errstate(invalid="ignore"):
                weak = tuple(self._ids[j] for j in np.flatnonzero((z < -self.z_limit) & (rel_c < self.weak_below)))
        if not self._steps:
            res_why = res_why or f"no current step of at least {self.min_step_a:g} A"
        else:
            z = robust_z(rel_r, self.resistance_floor)
            with np.errstate(invalid="ignore"):
                high = tuple(self._ids[j] for j in np.flatnonzero((z > self.z_limit) & (rel_r > self.high_above)))
        return CellsResult(self._ids, r, rel_r, rel_c, self._steps_seen, len(self._cycles), weak, high,
                           cap_why, res_why)  # fmt: skip
