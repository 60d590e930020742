"""Points scaled by a factor read from another register, applied to a cycle's columns once it is read.

The block decoder gives such a point's raw number (its type, order, sentinels; no scale, offset or
range); when the cycle has read every block, `apply_scales` looks up each scale register in the
registers the cycle read (`aux`) and makes the value `raw x scale x factor + offset` (an exact decimal
as `raw / 10^k`, as fixed scales are), then checks the range. A point whose factor the cycle could
not read or that gives none (`refs.scale_factor`) has quality `bad` and no value: never a value
scaled by a wrong factor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from gateway.model import F64, QUALITY_CODE, U8, Quality
from gateway.sources.modbus.refs import RegKey, ScaleRef, scale_factor

if TYPE_CHECKING:
    from gateway.sources.modbus.plan import Point

GOOD, RANGE, BAD = (QUALITY_CODE[q] for q in (Quality.GOOD, Quality.OUT_OF_RANGE, Quality.BAD))
IntArr = npt.NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class ScaledRows:
    """The rows of a block whose scale is in a register: each row's reference (an index into `refs`),
    its fixed scale and offset and its range."""

    rows: IntArr
    refs: tuple[ScaleRef, ...]
    ref_of: IntArr
    scale: F64
    offset: F64
    low: F64
    high: F64

    @classmethod
    def of(cls, rows: Sequence[tuple[int, Point]]) -> ScaledRows:
        refs: list[ScaleRef] = []
        for _, p in rows:
            if p.scale_ref is not None and p.scale_ref not in refs:
                refs.append(p.scale_ref)
        points = [p for _, p in rows]
        return cls(
            np.asarray([r for r, _ in rows], dtype=np.intp),
            tuple(refs),
            np.asarray([refs.index(p.scale_ref) for p in points if p.scale_ref is not None], dtype=np.intp),
            np.asarray([p.scale for p in points], dtype=np.float64),
            np.asarray([p.offset for p in points], dtype=np.float64),
            np.asarray([p.range[0] if p.range else -math.inf for p in points], dtype=np.float64),
            np.asarray([p.range[1] if p.range else math.inf for p in points], dtype=np.float64),
        )

    def apply(self, base: int, regs: Mapping[RegKey, int], values: F64, quality: U8) -> None:
        """Scale this block's rows (at `base` in the cycle's columns) by the factors in `regs`."""
        factors = [scale_factor(regs.get(ref.key), ref.kind) for ref in self.refs]
        factor = np.asarray([math.nan if f is None else f for f in factors], dtype=np.float64)[self.ref_of]
        rows = self.rows + base
        good = quality[rows] == GOOD  # rows with a raw number (not missing, not cut off)
        step = self.scale * factor
        inverse = np.round(1.0 / step)
        exact = (inverse >= 1) & (np.abs(inverse * step - 1.0) < 1e-12) & (self.offset == 0.0)
        raw = values[rows]
        with np.errstate(invalid="ignore"):
            v = np.where(exact, raw / np.where(exact, inverse, 1.0), np.round(raw * step + self.offset, 9))
        q = np.where(good, GOOD, quality[rows]).astype(np.uint8)
        q[good & ((v < self.low) | (v > self.high))] = RANGE
        no_factor = good & np.isnan(factor)
        q[no_factor] = BAD
        v[~good | no_factor] = math.nan
        values[rows] = v
        quality[rows] = q


def invalid_refs(refs: Sequence[ScaleRef], regs: Mapping[RegKey, int]) -> list[tuple[ScaleRef, int]]:
    """The scale registers the cycle read that give no factor, with their raw value."""
    out = []
    for ref in refs:
        raw = regs.get(ref.key)
        if raw is not None and scale_factor(raw, ref.kind) is None:
            out.append((ref, raw))
    return out
