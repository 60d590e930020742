"""Per cell: relative capacity and relative internal resistance, and the cells that stand out."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.assess.cycles import Integrator, Limits, conditions
from gateway.assess.robust import robust_z
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

    Capacity method: during each discharge from a full charge (see gateway.assess.cycles) the charge
    since full is counted, and each cell's voltage, corrected for its ohmic drop (V − I·R with the
    resistances measured so far), is watched for the crossing of `cross_v` (near the cutoff, where the
    curve is steep). A cell crossing when less charge has flowed has less capacity: its relative
    capacity is its charge at the crossing over the median cell's. At the end of the discharge (a cell at
    cutoff) a cell that has not crossed yet is extrapolated to the crossing along its own slope dV/dQ
    over the last `window_steps` steps (when that gives less than 30 % more charge; otherwise unknown).
    This assumes the cells start the discharge at the same state of charge (the BMS balances at the
    top); the median over the discharges of the window is reported.

    Flags: a cell is **weak** when its robust z-score (median/MAD over the rack's cells, the spread
    floored at `capacity_floor`) is below −`z_limit` and its relative capacity below `weak_below`;
    **high-resistance** when its z-score (spread floored at `resistance_floor`) is above `z_limit` and
    its relative resistance above `high_above`. Both conditions are needed, so a tight healthy family
    flags nothing. Insufficient: no current step (resistance), no full discharge with at least half the
    cells crossing or extrapolated (capacity); fewer than 3 cells (either).
    """

    limits: Limits = field(default_factory=Limits)
    min_step_a: float = 20.0
    cross_v: float | None = None  # default: limits.empty_v + 0.10
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
    _q: float | None = None  # Ah discharged since the last full step; None before a full one
    _crossed: F64 | None = None  # the charge at each cell's crossing in this discharge (NaN: not yet)
    _tail_q: F64 = field(default_factory=lambda: np.zeros(0))
    _tail_v: F64 = field(default_factory=lambda: np.zeros((0, 0)))
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
        with np.errstate(all="ignore"):
            return np.asarray(np.nanmedian(np.vstack(self._steps), axis=0), dtype=np.float64)

    # -- relative capacity --------------------------------------------------------------------------
    def _track_discharge(self, chunk: RackChunk) -> None:
        if self._integrator is None:
            self._integrator = Integrator(self.limits.max_gap_s)
        inc = self._integrator.increments(chunk)
        cond = conditions(chunk, self.limits)
        r = np.nan_to_num(self._resistance(), nan=0.0)
        corrected = chunk.cells - chunk.current[:, None] * r[None, :]
        cross_v = self.cross_v if self.cross_v is not None else self.limits.empty_v + 0.10
        events = np.flatnonzero(cond.full | cond.empty | inc.brk)
        start = 0
        for k in [*events.tolist(), chunk.n - 1]:
            self._discharge_rows(chunk, inc.ah, corrected, cross_v, start, k + 1)
            start = k + 1
            if cond.full[k]:
                self._q, self._crossed = 0.0, np.full(chunk.cells.shape[1], np.nan)
                self._tail_q, self._tail_v = np.zeros(0), np.zeros((0, chunk.cells.shape[1]))
            elif inc.brk[k]:
                self._q = None  # a hole in the current record: this discharge is not measured
            if cond.empty[k] and self._q is not None:
                self._close(cross_v)

    def _discharge_rows(self, chunk: RackChunk, ah: F64, v: F64, cross_v: float, a: int, b: int) -> None:
        """Rows [a, b) of a discharge in progress: count the charge, note crossings, keep the tail."""
        if self._q is None or self._crossed is None or a >= b:
            return
        q = self._q - np.cumsum(ah[a:b])
        self._q = float(q[-1])
        rows = v[a:b]
        with np.errstate(invalid="ignore"):
            below = (rows < cross_v) & (chunk.current[a:b, None] < 0)
        first = np.where(below.any(axis=0), below.argmax(axis=0), -1)
        new = (first >= 0) & np.isnan(self._crossed)
        self._crossed[new] = q[first[new]]
        self._tail_q = np.concatenate([self._tail_q, q])[-self.window_steps :]
        self._tail_v = np.concatenate([self._tail_v, rows])[-self.window_steps :]

    def _close(self, cross_v: float) -> None:
        assert self._q is not None and self._crossed is not None
        q_end, crossed = self._q, self._crossed.copy()
        self._q = None
        if len(self._tail_q) >= 2 and q_end > 0:
            dq = q_end - self._tail_q[0]
            with np.errstate(all="ignore"):
                slope = (self._tail_v[0] - self._tail_v[-1]) / dq  # V per Ah, falling
                extra = (self._tail_v[-1] - cross_v) / slope
            usable = np.isnan(crossed) & (slope > 0) & (extra >= 0) & (extra < 0.3 * q_end)
            crossed[usable] = q_end + extra[usable]
        if np.isfinite(crossed).sum() * 2 < len(crossed) or len(crossed) < 3:
            return
        rel = crossed / np.nanmedian(crossed)
        if len(self._cycles) < CYCLES_KEPT:
            self._cycles.append(rel)

    def result(self) -> CellsResult:
        n = len(self._ids)
        r = self._resistance()
        with np.errstate(all="ignore"):
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
