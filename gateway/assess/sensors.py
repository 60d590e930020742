"""Sensor faults: stuck sensors, implausible jumps, sensors out of their family."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.assess.robust import quiet, robust_z
from gateway.assess.series import CellId, RackChunk
from gateway.model import F64

CHUNK_OFFSETS_KEPT = 2000


@dataclass(frozen=True, slots=True)
class SensorFlag:
    family: str  # cell_voltage | cell_temperature
    sensor: CellId
    problem: str  # stuck | jump | out_of_family
    detail: str


@dataclass(frozen=True, slots=True)
class SensorsResult:
    flags: tuple[SensorFlag, ...]
    blocks: int  # blocks of the window judged (per family, summed)
    insufficient: str | None


@dataclass
class _Family:
    """One family of like sensors (the cell voltages, or the temperatures) and what is learnt about it."""

    name: str
    jump_limit: float
    offset_limit: float | None  # None: no out-of-family test for this family
    ids: tuple[CellId, ...] = ()
    rest: F64 = field(default_factory=lambda: np.zeros((0, 0)))  # rows short of a whole block
    run: F64 = field(default_factory=lambda: np.zeros(0))  # moving blocks unchanged, per sensor
    longest: F64 = field(default_factory=lambda: np.zeros(0))
    jumps: F64 = field(default_factory=lambda: np.zeros(0))
    last: F64 = field(default_factory=lambda: np.zeros(0))  # the last row, for the first difference
    offsets: list[F64] = field(default_factory=list)
    blocks: int = 0


@dataclass
class SensorCheck:
    """Stuck sensors, implausible jumps and sensors out of family, for cell voltages and temperatures.

    Stuck: the window is cut into blocks of `block_steps` steps; a sensor *changed* in a block when its
    good values in it differ at all, and a block is *moving* when at least half of the family's other
    sensors with values changed in it. A sensor that does not change over `stuck_blocks` consecutive
    moving blocks is stuck (blocks where the family is quiet, at rest, neither count nor clear).
    Jump: from one step to the next a sensor moves more than `cell_jump_v` / `temp_jump_c` away from the
    family's median move at that step (so a current step that moves every cell is no jump).
    Out of family (temperatures only; a cell voltage's difference from its family is a capacity or
    resistance matter, see gateway.assess.cells): the sensor's median difference from the family's
    median, per chunk, then the median over the chunks, is more than `temp_offset_c` and its robust
    z-score beyond `z_limit`. Insufficient when no family has 3 sensors and a whole block.
    """

    block_steps: int = 60
    stuck_blocks: int = 10
    cell_jump_v: float = 0.5
    temp_jump_c: float = 10.0
    temp_offset_c: float = 5.0
    z_limit: float = 3.5
    _families: tuple[_Family, _Family] = field(
        default_factory=lambda: (_Family("cell_voltage", 0.5, None), _Family("cell_temperature", 10.0, 5.0))
    )

    def __post_init__(self) -> None:
        cells, temps = self._families
        cells.jump_limit, temps.jump_limit, temps.offset_limit = self.cell_jump_v, self.temp_jump_c, self.temp_offset_c

    def update(self, chunk: RackChunk) -> None:
        cells, temps = self._families
        self._update(cells, chunk.cell_ids, chunk.cells)
        self._update(temps, chunk.temp_ids, chunk.temps)

    def _update(self, f: _Family, ids: tuple[CellId, ...], x: F64) -> None:
        c = x.shape[1]
        if c < 3:
            return
        if not f.ids:
            f.ids = ids
            f.rest, f.last = np.zeros((0, c)), np.full(c, np.nan)
            f.run, f.longest, f.jumps = np.zeros(c), np.zeros(c), np.zeros(c)
        self._jumps(f, x)
        self._offsets(f, x)
        rows = np.concatenate([f.rest, x])
        whole = len(rows) // self.block_steps * self.block_steps
        f.rest = rows[whole:]
        if whole:
            self._stuck(f, rows[:whole].reshape(-1, self.block_steps, c))

    def _jumps(self, f: _Family, x: F64) -> None:
        with quiet():
            d = np.diff(np.vstack([f.last[None, :], x]), axis=0)
            valid = np.isfinite(d)
            rows = valid.sum(axis=1) >= 3
            if not rows.any():
                f.last = np.where(np.isfinite(x[-1]), x[-1], f.last)
                return
            d = d[rows]
            med = np.nanmedian(d, axis=1)
            f.jumps += (np.abs(d - med[:, None]) > f.jump_limit).sum(axis=0)
        f.last = np.where(np.isfinite(x[-1]), x[-1], f.last)

    def _offsets(self, f: _Family, x: F64) -> None:
        if f.offset_limit is None or len(f.offsets) >= CHUNK_OFFSETS_KEPT:
            return
        rows = np.isfinite(x).sum(axis=1) >= 3
        if not rows.any():
            return
        with quiet():
            dev = x[rows] - np.nanmedian(x[rows], axis=1)[:, None]
            f.offsets.append(np.nanmedian(dev, axis=0))

    def _stuck(self, f: _Family, blocks: F64) -> None:
        """Blocks (block × step × sensor): runs of moving blocks without a change, per sensor."""
        with quiet():
            span = np.nanmax(blocks, axis=1) - np.nanmin(blocks, axis=1)  # block × sensor
        known = np.isfinite(span)
        changed = known & (span > 0)
        for b in range(len(span)):
            n_known = int(known[b].sum())
            if n_known < 3:
                continue
            # The others that changed: the whole family's count minus the sensor's own.
            others = (changed[b].sum() - changed[b]) / np.maximum(n_known - known[b], 1)
            moving = others >= 0.5
            f.blocks += 1
            f.run = np.where(changed[b], 0.0, np.where(moving & known[b], f.run + 1, f.run))
            f.longest = np.maximum(f.longest, f.run)

    def result(self) -> SensorsResult:
        flags: list[SensorFlag] = []
        judged = 0
        for f in self._families:
            if not f.ids:
                continue
            judged += f.blocks
            for j in np.flatnonzero(f.longest >= self.stuck_blocks).tolist():
                minutes = f.longest[j] * self.block_steps
                flags.append(SensorFlag(f.name, f.ids[j], "stuck", f"no change over {minutes:g} steps "
                                        "while the others changed"))  # fmt: skip
            for j in np.flatnonzero(f.jumps > 0).tolist():
                flags.append(SensorFlag(f.name, f.ids[j], "jump", f"{int(f.jumps[j])} implausible jumps"))
            if f.offsets and f.offset_limit is not None:
                with quiet():
                    off = np.nanmedian(np.vstack(f.offsets), axis=0)
                z = robust_z(off)
                out = (np.abs(off) > f.offset_limit) & (np.abs(z) > self.z_limit)
                for j in np.flatnonzero(out).tolist():
                    flags.append(SensorFlag(f.name, f.ids[j], "out_of_family", f"{off[j]:+.2f} from the family"))
        why = None if judged else "no family of at least 3 sensors over a whole block"
        return SensorsResult(tuple(flags), judged, why)
