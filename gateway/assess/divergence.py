"""Relative cell capacity from the cells' divergence at the end of a discharge (see gateway.assess.cells).

During a discharge from full, each cell's voltage corrected for its ohmic drop (V − I·R) is followed on
a grid of voltage levels (`level_v` apart): for every level, the charge since full at which the cell
first fell to it. At the end of the discharge (the first cell at cutoff) the reference level is the
lowest one that more than half of the cells have reached; a cell's relative capacity is the charge at
which it reached that level over the median cell's. A cell that has not reached it yet is extrapolated
along its own slope dV/dQ over the last `window_steps` steps (unknown when that adds more than 30 %).
Cells that start the discharge at the same state of charge (balanced at the top, as BMSs balance)
reach a level after charges in proportion to their capacities.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.assess.robust import quiet
from gateway.model import F64


@dataclass
class Divergence:
    """One discharge in progress: the charge at which each cell reached each voltage level."""

    n_cells: int
    low_v: float = 2.0
    high_v: float = 4.5
    level_v: float = 0.002
    window_steps: int = 300
    q: float = 0.0  # Ah discharged since full
    _levels: F64 = field(default_factory=lambda: np.zeros(0))
    _reached: F64 = field(default_factory=lambda: np.zeros((0, 0)))  # level × cell: charge, NaN not yet
    _lowest: F64 = field(default_factory=lambda: np.zeros(0))  # each cell's lowest corrected voltage
    _tail_q: F64 = field(default_factory=lambda: np.zeros(0))
    _tail_v: F64 = field(default_factory=lambda: np.zeros((0, 0)))

    def __post_init__(self) -> None:
        self._levels = np.arange(self.low_v, self.high_v, self.level_v)
        self._reached = np.full((len(self._levels), self.n_cells), np.nan)
        self._lowest = np.full(self.n_cells, np.inf)
        self._tail_v = np.zeros((0, self.n_cells))

    def rows(self, ah: F64, corrected: F64) -> None:
        """Steps of the discharge: charge increments (Ah, positive charges) and corrected cell voltages."""
        if len(ah) == 0:
            return
        q = self.q - np.cumsum(ah)
        self.q = float(q[-1])
        v = np.where(np.isfinite(corrected), corrected, np.inf)
        lowest = np.minimum.accumulate(np.vstack([self._lowest[None, :], v]), axis=0)[1:]
        levels = self._levels
        for c in np.flatnonzero(lowest[-1] < self._lowest).tolist():
            # Levels newly reached: between the old lowest and the new one; the first row at or below each.
            new = np.flatnonzero((levels >= lowest[-1, c]) & (levels < self._lowest[c]))
            row = np.searchsorted(-lowest[:, c], -levels[new], side="left")
            self._reached[new, c] = q[np.minimum(row, len(q) - 1)]
        self._lowest = lowest[-1]
        self._tail_q = np.concatenate([self._tail_q, q])[-self.window_steps :]
        self._tail_v = np.concatenate([self._tail_v, corrected])[-self.window_steps :]

    def relative(self) -> F64 | None:
        """Each cell's relative capacity at the end of this discharge, or None when too few cells tell."""
        counts = np.isfinite(self._reached).sum(axis=1)
        ok = np.flatnonzero(counts * 2 > self.n_cells)
        if len(ok) == 0 or self.n_cells < 3:
            return None
        level = int(ok[0])  # the lowest level most cells reached
        at = self._reached[level].copy()
        if len(self._tail_q) >= 2:
            dq = self._tail_q[-1] - self._tail_q[0]
            with quiet():
                slope = (self._tail_v[0] - self._tail_v[-1]) / dq  # V per Ah, positive while falling
                extra = (self._tail_v[-1] - self._levels[level]) / slope
            usable = np.isnan(at) & (slope > 0) & (extra >= 0) & (extra < 0.3 * self.q)
            at[usable] = self.q + extra[usable]
        if np.isfinite(at).sum() * 2 <= self.n_cells:
            return None
        return np.asarray(at / np.nanmedian(at), dtype=np.float64)
