"""The rules the estimators share: when the rack is full or empty, and the charge and energy per step.

- **Full** at a step: while the rack charges or rests (discharges no more than `rest_a`), the highest
  cell voltage reaches `full_v - margin_v` (the upper cell limit), or the charge tapers at the top
  (constant-voltage phase): the highest cell is at or above `taper_v` and the charge current, positive,
  has fallen below `nominal_ah / 20` (C/20; only when a nominal capacity is known).
- **Empty** at a step: the lowest cell voltage reaches `empty_v + margin_v` (the cutoff) while the rack
  discharges or rests (charges no more than `rest_a`).
- **Margin** (`margin_v`): a record rarely shows a cell at the very limit where the BMS or the charger
  stopped: the last sample comes up to one period before the stop, and the cell relaxes after it. When
  the limits are the hard ones (a BMS's cutoff, a capacity test's charge and cutoff voltages), pass
  at least the voltage a cell moves in one sample period at the end of a discharge: an LFP cell at C/2
  falls about 3 mV a second there (0.05 V suits a 10 s record). Stopping that much early costs well
  under 1 % of the capacity, the curve's ends being steep.
- **Charge and energy per step** (`Integrator`): the trapezoid of current (Ah) and of pack voltage ×
  current (Wh) between consecutive good steps (a missing value in between is bridged). A good step with
  no good step within `max_gap_s` before it is a break (`brk`): its increment is unknown (0), so
  whoever integrates across it knows the total is incomplete.

The defaults (full 3.45 V, taper 3.40 V, empty 2.95 V, no margin, no nominal capacity, breaks over
60 s, rest up to 1 A) are for LFP cells, a little inside the usual limits (3.55-3.65 V and 2.5-2.8 V)
so that a record reaches them; pass the limits of the rack's chemistry and BMS (with a margin when
they are the hard ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gateway.assess.series import B1, RackChunk
from gateway.model import F64


@dataclass(frozen=True, slots=True)
class Limits:
    """Cell voltage limits and the nominal capacity that define full and empty (see the module docstring)."""

    full_v: float = 3.45
    taper_v: float = 3.40
    empty_v: float = 2.95
    nominal_ah: float | None = None
    max_gap_s: float = 60.0
    rest_a: float = 1.0  # |current| up to this is rest: full and empty hold while charging or resting
    margin_v: float = 0.0  # a cell this close to full_v or empty_v is at it (see the module docstring)


@dataclass(frozen=True, slots=True)
class Conditions:
    """Per step: the highest and lowest cell voltage, and whether the rack is full or empty."""

    vmax: F64
    vmin: F64
    full: B1
    empty: B1


def _nan_reduce(cells: F64, high: bool) -> F64:
    out = np.full(cells.shape[0], np.nan)
    rows = np.isfinite(cells).any(axis=1)
    if rows.any():
        part = cells[rows]
        out[rows] = np.nanmax(part, axis=1) if high else np.nanmin(part, axis=1)
    return out


def conditions(chunk: RackChunk, limits: Limits) -> Conditions:
    """Full and empty steps of a chunk (see the module docstring)."""
    vmax, vmin = _nan_reduce(chunk.cells, True), _nan_reduce(chunk.cells, False)
    i = chunk.current
    with np.errstate(invalid="ignore"):
        full = (vmax >= limits.full_v - limits.margin_v) & (i >= -limits.rest_a)
        if limits.nominal_ah is not None:
            full |= (vmax >= limits.taper_v) & (i > 0) & (i < limits.nominal_ah / 20.0)
        empty = (vmin <= limits.empty_v + limits.margin_v) & (i <= limits.rest_a)
    return Conditions(vmax, vmin, full, empty)


@dataclass(frozen=True, slots=True)
class Increments:
    """Per step of a chunk: charge (Ah, positive charges) and energy (Wh) since the previous good step;
    `ok` where that increment is known; `brk` where a good step follows a break (no good step within
    `max_gap_s` before it: whatever was being integrated across it is incomplete)."""

    ah: F64
    wh: F64
    ok: B1
    brk: B1


class Integrator:
    """Charge and energy increments step by step, carrying the last good step across chunks."""

    def __init__(self, max_gap_s: float = 60.0) -> None:
        self.max_gap_ns = int(max_gap_s * 1e9)
        self._t: int | None = None
        self._i = float("nan")
        self._p = float("nan")

    def increments(self, chunk: RackChunk) -> Increments:
        n = chunk.n
        i, power = chunk.current, chunk.current * chunk.pack_v
        good = np.isfinite(i)
        ah, wh = np.zeros(n), np.zeros(n)
        ok = np.zeros(n, dtype=np.bool_)
        rows = np.flatnonzero(good)
        if len(rows):
            t, ig, pg = chunk.t[rows], i[rows], power[rows]
            t_prev = np.concatenate([[-(2**62) if self._t is None else self._t], t[:-1]])
            i_prev = np.concatenate([[self._i], ig[:-1]])
            p_prev = np.concatenate([[self._p], pg[:-1]])
            hours = (t - t_prev) / 3.6e12
            known: npt.NDArray[np.bool_] = np.isfinite(i_prev) & (t - t_prev <= self.max_gap_ns)
            ah[rows] = np.where(known, 0.5 * (ig + i_prev) * hours, 0.0)
            p_ok = known & np.isfinite(pg) & np.isfinite(p_prev)
            wh[rows] = np.where(p_ok, 0.5 * (pg + p_prev) * hours, 0.0)
            ok[rows] = known
            self._t, self._i, self._p = int(t[-1]), float(ig[-1]), float(pg[-1])
        return Increments(ah, wh, ok, good & ~ok)
