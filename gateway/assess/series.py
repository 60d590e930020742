"""A rack's recorded telemetry as aligned arrays on a time grid, in chunks of bounded size.

`RackChunk` is what every estimator of gateway.assess consumes: one rack, a run of consecutive grid
steps (`t`, int64 ns), and per step the rack current, the pack voltage, each cell's voltage, each
temperature sensor, the BMS's SoC, SoH and full capacity, and the step's record flags.

Conventions:
- **Current sign is the catalog's: positive current charges the rack, negative discharges it.**
- A value is NaN unless a sample of quality `good` with a number landed on that step: missing,
  stale, bad, out-of-range and comm-loss readings are all NaN. `present` says some sample of the rack
  (any quality) landed on the step, `comm_loss` / `stale` that one of them had that quality, and `good`
  the fraction of the step's core points (every cell voltage, the current, the pack voltage) that are
  good numbers.
- The grid starts at `origin_ns` (default: the first sample's time); a sample goes to the nearest step
  (the last one wins when two land on one step).

`ChunkBuilder` turns columnar `Batch`es (time ordered, as the store returns them) into chunks of
`steps` grid steps, holding one chunk in memory. The cell columns are the cells seen in the first
chunk (sorted by module and cell); points of cells first seen later, and points older than the chunk
being filled, are counted (`unknown_points`, `late_points`) and left out. Chunks that would hold no
sample at all (a long gap) are not emitted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from gateway.model import F64, GOOD, I64, QUALITY_CODE, Batch, BatchKind, Quality

B1 = npt.NDArray[np.bool_]

COMM_LOSS = QUALITY_CODE[Quality.COMM_LOSS]
STALE = QUALITY_CODE[Quality.STALE]

# Where a rack-level quantity goes in the chunk.
SCALARS: dict[str, str] = {
    "rack_current": "current",
    "rack_voltage": "pack_v",
    "soc": "bms_soc",
    "soh": "bms_soh",
    "capacity_full": "bms_capacity",
}
_SCALAR_NAMES = tuple(SCALARS.values())
_CELLS, _TEMPS, _OTHER = -1, -2, -3  # targets of a point besides the scalars (0..len-1)


class CellId(NamedTuple):
    """A cell (or temperature sensor) of the rack: its module and its number (either may be None)."""

    module: int | None
    cell: int | None


def _order(c: CellId) -> tuple[int, int]:
    return (-1 if c.module is None else c.module, -1 if c.cell is None else c.cell)


@dataclass(slots=True)
class RackChunk:
    """One rack over consecutive grid steps; every array has `n` rows (see the module docstring)."""

    rack: str
    period_ns: int
    t: I64
    current: F64  # A, positive charges
    pack_v: F64  # V
    cells: F64  # n × len(cell_ids), V
    cell_ids: tuple[CellId, ...]
    temps: F64  # n × len(temp_ids), °C
    temp_ids: tuple[CellId, ...]
    bms_soc: F64  # %
    bms_soh: F64  # %
    bms_capacity: F64  # Ah (capacity_full), NaN when the BMS does not report it
    present: B1
    good: F64  # fraction 0..1 of the core points that are good
    comm_loss: B1
    stale: B1

    @property
    def n(self) -> int:
        return len(self.t)

    @property
    def period_s(self) -> float:
        return self.period_ns / 1e9


@dataclass(slots=True)
class _Plan:
    """How one key table's points of the rack land in the chunk (made once per table)."""

    index: npt.NDArray[np.intp]  # the rack's points in the batch
    target: npt.NDArray[np.int8]  # SCALARS position, or _CELLS/_TEMPS/_OTHER
    column: npt.NDArray[np.intp]  # cell or sensor column (discovery order), -1 when unknown


@dataclass
class _Columns:
    """Cell or sensor columns in order of discovery; frozen after the first chunk."""

    ids: list[CellId] = field(default_factory=list)
    where: dict[CellId, int] = field(default_factory=dict)
    frozen: bool = False

    def column(self, cid: CellId) -> int:
        col = self.where.get(cid)
        if col is None:
            if self.frozen:
                return -1
            col = self.where[cid] = len(self.ids)
            self.ids.append(cid)
        return col

    def order(self) -> npt.NDArray[np.intp]:
        """Discovery columns in sorted (module, cell) order."""
        return np.asarray(sorted(range(len(self.ids)), key=lambda i: _order(self.ids[i])), dtype=np.intp)


class ChunkBuilder:
    """Batches in, `RackChunk`s of `steps` grid steps out (see the module docstring)."""

    PLANS_MAX = 256

    def __init__(self, rack: str, period_s: float, steps: int = 3600, origin_ns: int | None = None) -> None:
        if period_s <= 0 or steps < 1:
            raise ValueError("period and steps must be positive")
        self.rack = rack
        self.period_ns = round(period_s * 1e9)
        self.steps = steps
        self.origin = origin_ns
        self.start = 0  # first grid step of the chunk being filled
        self.late_points = 0
        self.unknown_points = 0
        self._plans: dict[int, _Plan] = {}
        self._cells = _Columns()
        self._temps = _Columns()
        self._order_cells: npt.NDArray[np.intp] | None = None
        self._order_temps: npt.NDArray[np.intp] | None = None
        self._new()

    def _new(self) -> None:
        n = self.steps
        self._scalars = np.full((len(_SCALAR_NAMES), n), np.nan)
        self._cv = np.full((n, max(4, len(self._cells.ids))), np.nan)
        self._tv = np.full((n, max(4, len(self._temps.ids))), np.nan)
        self._present = np.zeros(n, dtype=np.bool_)
        self._comm = np.zeros(n, dtype=np.bool_)
        self._stale = np.zeros(n, dtype=np.bool_)
        self._last = -1  # highest step written in this chunk

    def _plan(self, batch: Batch) -> _Plan:
        plan = self._plans.get(batch.keys.id)
        if plan is not None:
            return plan
        index, target, column = [], [], []
        for i, k in enumerate(batch.keys.rows):
            if k.rack != self.rack:
                continue
            index.append(i)
            if k.quantity == "cell_voltage" or k.quantity == "cell_temperature":
                cols = self._cells if k.quantity == "cell_voltage" else self._temps
                target.append(_CELLS if k.quantity == "cell_voltage" else _TEMPS)
                column.append(cols.column(CellId(k.module, k.cell)))
            else:
                name = SCALARS.get(k.quantity)
                target.append(_OTHER if name is None else _SCALAR_NAMES.index(name))
                column.append(-1)
        plan = _Plan(np.asarray(index, dtype=np.intp), np.asarray(target, dtype=np.int8),
                     np.asarray(column, dtype=np.intp))  # fmt: skip
        if len(self._plans) >= self.PLANS_MAX:
            self._plans.clear()
        self._plans[batch.keys.id] = plan
        return plan

    def feed(self, batch: Batch) -> list[RackChunk]:
        """Take one batch; return the chunks it completed (usually none)."""
        if batch.kind != BatchKind.SAMPLES or batch.n == 0:
            return []
        plan = self._plan(batch)
        if len(plan.index) == 0:
            return []
        ts = batch.ts[plan.index]
        if self.origin is None:
            self.origin = int(ts.min())
        p = self.period_ns
        slots = (ts - self.origin + p // 2) // p
        values = batch.values[plan.index]
        quality = batch.quality[plan.index]
        target, column = plan.target, plan.column
        out: list[RackChunk] = []
        while len(slots):
            end = self.start + self.steps
            inside = slots < end
            late = slots < self.start
            self.late_points += int(late.sum())
            take = inside & ~late
            self._write(slots[take] - self.start, values[take], quality[take], target[take], column[take])
            rest = ~inside
            if not rest.any():
                break
            chunk = self._emit()
            if chunk is not None:
                out.append(chunk)
            slots, values, quality = slots[rest], values[rest], quality[rest]
            target, column = target[rest], column[rest]
            self.start = int(slots.min()) // self.steps * self.steps
            self._new()
        return out

    def finish(self) -> RackChunk | None:
        """The last, partly filled chunk (cut after its last step with a sample), or None."""
        chunk = self._emit()
        self._new()
        return chunk

    def _write(self, row: I64, values: F64, quality: npt.NDArray[np.uint8], target: npt.NDArray[np.int8],
               column: npt.NDArray[np.intp]) -> None:  # fmt: skip
        if len(row) == 0:
            return
        self._present[row] = True
        self._comm[row[quality == COMM_LOSS]] = True
        self._stale[row[quality == STALE]] = True
        self._last = max(self._last, int(row.max()))
        v = np.where(quality == GOOD, values, np.nan)
        for k in range(len(_SCALAR_NAMES)):
            m = target == k
            if m.any():
                self._scalars[k, row[m]] = v[m]
        for code, cols, attr in ((_CELLS, self._cells, "_cv"), (_TEMPS, self._temps, "_tv")):
            m = target == code
            if not m.any():
                continue
            col = column[m]
            known = col >= 0
            self.unknown_points += int((~known).sum())
            buf: F64 = getattr(self, attr)
            if len(cols.ids) > buf.shape[1]:  # the first chunk found more columns: grow
                grown = np.full((buf.shape[0], 2 * len(cols.ids)), np.nan)
                grown[:, : buf.shape[1]] = buf
                buf = grown
                setattr(self, attr, buf)
            buf[row[m][known], col[known]] = v[m][known]

    def _emit(self) -> RackChunk | None:
        if self._last < 0 or self.origin is None:
            return None
        if self._order_cells is None or self._order_temps is None:
            self._cells.frozen = self._temps.frozen = True
            self._order_cells, self._order_temps = self._cells.order(), self._temps.order()
        n = self._last + 1
        cells = self._cv[:n][:, self._order_cells]
        temps = self._tv[:n][:, self._order_temps]
        sc = self._scalars[:, :n]
        current, pack_v = sc[0], sc[1]
        core = np.isfinite(cells).sum(axis=1) + np.isfinite(current) + np.isfinite(pack_v)
        good = core / (cells.shape[1] + 2)
        t = self.origin + (self.start + np.arange(n, dtype=np.int64)) * self.period_ns
        return RackChunk(
            self.rack, self.period_ns, t, current.copy(), pack_v.copy(), cells,
            tuple(self._cells.ids[i] for i in self._order_cells.tolist()), temps,
            tuple(self._temps.ids[i] for i in self._order_temps.tolist()),
            sc[2].copy(), sc[3].copy(), sc[4].copy(), self._present[:n].copy(), good,
            self._comm[:n].copy(), self._stale[:n].copy(),
        )  # fmt: skip


def chunks_from_batches(
    batches: Iterable[Batch], rack: str, period: float, steps: int = 3600, origin_ns: int | None = None
) -> Iterator[RackChunk]:
    """The rack's chunks on a grid of `period` seconds from time-ordered batches (see `ChunkBuilder`)."""
    builder = ChunkBuilder(rack, period, steps, origin_ns)
    for batch in batches:
        yield from builder.feed(batch)
    last = builder.finish()
    if last is not None:
        yield last
