"""The points one frame of a message carries (a `Block`), and their columns over a window of frames.

A block is a message's plain points, plus those of one value of its multiplexer. Its key table has one
row per sample a frame gives: each point's named bits (with `bits:`), then the point. `Block.columns`
applies the rules of `gateway.sources.can.values` to the signals' numbers of a window of frames, at
once for every frame and point (numpy): frames × columns of values and of quality codes, and the
value-table names a point keeps (`objects`, by (frame, column)).

Blocks of one message that differ only in their keys (the mux values of a cell array: same bits, same
rules, other cells) have the same `signature`: the frames of all of them decode in one `columns` call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gateway.model import QUALITY_CODE, Key, Keys, Quality, Value
from gateway.sources.can.signals import F64, I64, U8, MessageSignals
from gateway.sources.can.values import PointPlan

GOOD = QUALITY_CODE[Quality.GOOD]
BAD = QUALITY_CODE[Quality.BAD]
MISSING = QUALITY_CODE[Quality.MISSING]
OUT = QUALITY_CODE[Quality.OUT_OF_RANGE]
Objects = dict[tuple[int, int], Value]  # (frame, column) -> a value-table name
IntArray = npt.NDArray[np.intp]


def _floats(values: list[float | None], none: float) -> F64:
    return np.array([none if v is None else float(v) for v in values], dtype=np.float64)


@dataclass(slots=True)
class Part:
    """Rows of blocks of one signature (one width) from one window: a row per frame, in arrival order."""

    blocks: IntArray  # per row: the block's index in the rack
    values: F64  # rows × columns
    quality: U8
    objects: Objects | None  # by (row, column)
    ts: I64  # per row
    clean: npt.NDArray[np.bool_]  # per row: decoded from a whole frame (the row stale and comm_loss repeat)
    device_ts: I64 | None = None  # per row: the device's time of the frame (0: none), with `device_time:`


class Block:
    """The compiled points of one (message key, mux value): what `columns` needs, as arrays."""

    def __init__(self, index: int, key: int, mux: int, points: list[PointPlan], sig: MessageSignals, rack: str) -> None:
        self.index = index  # position in the rack: a batch keeps its blocks in this order
        self.key = key
        self.mux = mux
        self.points = points
        rows: list[Key] = []
        main: list[int] = []
        bit_pos: list[int] = []
        bit_point: list[int] = []
        bit_shift: list[int] = []
        for j, p in enumerate(points):
            for bit, name in p.bits:
                bit_pos.append(len(rows))
                bit_point.append(j)
                bit_shift.append(bit)
                rows.append(Key(name, "", rack, p.module, p.cell))
            main.append(len(rows))
            rows.append(Key(p.quantity, p.unit, rack, p.module, p.cell))
        self.rows = tuple(rows)
        self.keys = Keys.of(rows)
        self.width = len(rows)
        cols = [sig.index[p.signal] for p in points]
        self.cols: IntArray = np.array(cols, dtype=np.intp)
        self.sig = sig
        # points of wide integer signals with a range or missing codes: compared exactly (`_exact`)
        self.exact = [j for j, p in enumerate(points) if cols[j] in sig.wide]
        self.main: IntArray = np.array(main, dtype=np.intp)
        self.bit_pos: IntArray = np.array(bit_pos, dtype=np.intp)
        self.bit_point: IntArray = np.array(bit_point, dtype=np.intp)
        self.bit_shift = np.array(bit_shift, dtype=np.int64)
        self.factor = np.array([p.factor for p in points], dtype=np.float64)
        self.offset = np.array([p.offset for p in points], dtype=np.float64)
        divisor = np.array([p.divisor for p in points], dtype=np.float64)
        self.divides = divisor != 0.0
        self.divisor = np.where(self.divides, divisor, 1.0)
        self.scaled = any(p.scaled for p in points)
        self.lo = _floats([p.lo for p in points], -np.inf)
        self.hi = _floats([p.hi for p in points], np.inf)
        self.na_from = _floats([p.na_from for p in points], np.nan)  # NaN: never
        self.error_from = _floats([p.error_from for p in points], np.nan)
        self.special = any(p.special for p in points)
        # (a NaN code never matches: NaN equals nothing, as in Python)
        self.missing = [(j, np.array([v for v in p.missing if v == v], dtype=np.float64))
                        for j, p in enumerate(points) if p.missing]  # fmt: skip
        self.choices = [(j, dict(p.choices)) for j, p in enumerate(points) if p.choices is not None]

    def signature(self) -> tuple[object, ...]:
        """What `columns` reads of this block: equal for blocks whose frames decode the same way."""
        sig = self.sig
        out: list[object] = []
        for j, p in enumerate(self.points):
            c = int(self.cols[j])
            bits = (sig.byte[c], sig.left[c], sig.right[c], sig.mask[c], sig.bits[c], sig.signed[c], sig.scale[c])
            out.append((
                *(a.tobytes() for a in bits), float(sig.offset[c]), sig.floats.get(c), bool(sig.fits[c]),
                sig.wide.get(c), int(sig.last_byte[c]), p.mode, p.factor, p.offset, p.lo, p.hi,
                tuple(b for b, _ in p.bits), p.missing, p.na_from, p.error_from,
                None if p.choices is None else tuple(sorted(p.choices.items())),
            ))  # fmt: skip
        return tuple(out)

    def columns(self, data: U8) -> tuple[F64, U8, Objects | None]:
        """The block's columns for frames of its message (frames × the message's length, uint8)."""
        f = len(data)
        nums = self.sig.numbers(data, self.cols)
        phys = nums.phys
        q = np.full(phys.shape, GOOD, dtype=np.uint8)
        with np.errstate(invalid="ignore", over="ignore"):
            q[(phys < self.lo) | (phys > self.hi)] = OUT
            flagged = ~np.isfinite(phys)
            q[flagged] = BAD
            if self.special:
                unavailable = phys >= self.na_from
                for j, codes in self.missing:
                    unavailable[:, j] |= np.isin(phys[:, j], codes)
                error = (phys >= self.error_from) & ~unavailable
                q[error] = BAD
                q[unavailable] = MISSING
                flagged |= unavailable | error
            exact = {j: self._exact(nums.raw[:, j], j, q, flagged) for j in self.exact}
            if self.scaled:
                vals = np.where(self.divides, phys / self.divisor, phys * self.factor) + self.offset
            else:
                vals = phys.copy()
            vals[flagged] = np.nan
            values = np.empty((f, self.width), dtype=np.float64)
            quality = np.empty((f, self.width), dtype=np.uint8)
            values[:, self.main] = vals
            quality[:, self.main] = q
            if len(self.bit_pos):
                whole = np.trunc(phys[:, self.bit_point])
                whole[~np.isfinite(whole)] = 0
                bits = ((whole.astype(np.int64) >> self.bit_shift) & 1).astype(np.float64)
                for b, j in enumerate(self.bit_point.tolist()):
                    if j in exact:  # a wide integer's bits, exactly
                        bits[:, b] = [(v >> int(self.bit_shift[b])) & 1 for v in exact[j]]
                bits[flagged[:, self.bit_point]] = np.nan
                values[:, self.bit_pos] = bits
                quality[:, self.bit_pos] = q[:, self.bit_point]
        objects = self._names(nums.raw, flagged) if self.choices else None
        for j, exact_values in exact.items():  # a wide integer a float cannot hold: kept exactly
            p = self.points[j]
            if not p.scaled and p.choices is None:
                col = int(self.main[j])
                for i, v in enumerate(exact_values):
                    if not flagged[i, j] and float(v) != v:
                        objects = objects or {}
                        objects[(i, col)] = v
        return values, quality, objects

    def _exact(self, raw: I64, j: int, q: U8, flagged: npt.NDArray[np.bool_]) -> list[int]:
        """Missing codes and range of a point of a wide integer signal, in exact arithmetic; its values."""
        p = self.points[j]
        values = self.sig.exact(raw, int(self.cols[j]))
        for i, v in enumerate(values):
            flagged[i, j] = v in p.missing
            if flagged[i, j]:
                q[i, j] = MISSING
            else:
                q[i, j] = OUT if p.lo is not None and p.hi is not None and (v < p.lo or v > p.hi) else GOOD
        return values

    def _names(self, raw: I64, flagged: npt.NDArray[np.bool_]) -> Objects | None:
        """The value-table names of the points that keep them, where the raw value has one."""
        out: Objects = {}
        for j, choices in self.choices:
            column = raw[:, j]
            hits = np.flatnonzero(np.isin(column, list(choices)) & ~flagged[:, j])
            col = int(self.main[j])
            for i, r in zip(hits.tolist(), column[hits].tolist(), strict=True):
                out[(i, col)] = choices[r]
        return out or None

    def flagged(self, f: int) -> tuple[F64, U8]:
        """`f` frames of this block without values, quality `bad` (a short or undecodable frame)."""
        return np.full((f, self.width), np.nan), np.full((f, self.width), BAD, dtype=np.uint8)
