"""What the report's plots draw, gathered in the same streaming pass as the estimators, in bounded memory.

- `Traces`: the pack voltage, the rack current and the cell voltage spread (highest − lowest cell) over
  time, as the minimum and maximum of each series per time bucket (at most `buckets` of them: about one
  per pixel column, so 24 h × 240 cells plots as a few hundred numbers per series), with the record's
  state per bucket (steps present, good fraction, comm-loss and stale steps) for the completeness
  timeline. When the window's length is not known beforehand, a bucket starts one step wide and
  buckets are merged in pairs each time the data runs past the last one.
- `EndVoltages`: every cell's voltage at the end of each discharge (the first step at which the lowest
  cell reaches the cutoff) and at the end of each charge (the first step at which the rack is full; see
  gateway.assess.cycles), the last `kept` of each.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from gateway.assess.cycles import Limits, conditions
from gateway.assess.robust import quiet
from gateway.assess.series import RackChunk
from gateway.model import F64, I64

SERIES = ("pack_v", "current", "spread")
_COUNTS = ("present", "good", "comm_loss", "stale")


@dataclass
class Traces:
    """Min/max per time bucket of `SERIES`, and the record's state per bucket (see the module docstring)."""

    origin_ns: int | None = None
    width_ns: int | None = None  # None: one grid step at first, doubled as needed
    buckets: int = 800
    lo: F64 = field(default_factory=lambda: np.zeros((0, 0)))  # bucket × series
    hi: F64 = field(default_factory=lambda: np.zeros((0, 0)))
    counts: F64 = field(default_factory=lambda: np.zeros((0, 0)))  # bucket × _COUNTS
    used: int = 0  # buckets holding data (the highest one + 1)
    period_ns: int = 0

    def _start(self, chunk: RackChunk) -> None:
        self.period_ns = chunk.period_ns
        if self.origin_ns is None:
            self.origin_ns = int(chunk.t[0])
        if self.width_ns is None:
            self.width_ns = chunk.period_ns
        self.lo = np.full((self.buckets, len(SERIES)), np.nan)
        self.hi = np.full((self.buckets, len(SERIES)), np.nan)
        self.counts = np.zeros((self.buckets, len(_COUNTS)))

    def _merge(self) -> None:
        """Twice as wide buckets: pairs merged into the first half."""
        assert self.width_ns is not None
        self.width_ns *= 2
        half = self.buckets // 2
        self.lo = np.vstack([np.fmin(self.lo[0::2], self.lo[1::2]), np.full((half, len(SERIES)), np.nan)])
        self.hi = np.vstack([np.fmax(self.hi[0::2], self.hi[1::2]), np.full((half, len(SERIES)), np.nan)])
        self.counts = np.vstack([self.counts[0::2] + self.counts[1::2], np.zeros((half, len(_COUNTS)))])
        self.used = (self.used + 1) // 2

    def update(self, chunk: RackChunk) -> None:
        if chunk.n == 0:
            return
        if self.origin_ns is None or self.lo.size == 0:
            self._start(chunk)
        assert self.origin_ns is not None and self.width_ns is not None
        keep = chunk.t >= self.origin_ns
        if not keep.any():
            return
        t = chunk.t[keep]
        while (int(t[-1]) - self.origin_ns) // self.width_ns >= self.buckets:
            self._merge()
        b: I64 = (t - self.origin_ns) // self.width_ns
        with quiet():
            spread = np.nanmax(chunk.cells, axis=1) - np.nanmin(chunk.cells, axis=1) if chunk.cells.shape[1] else (
                np.full(chunk.n, np.nan))  # fmt: skip
        values = np.column_stack([chunk.pack_v, chunk.current, spread])[keep]
        flags = np.column_stack([chunk.present, chunk.good * chunk.present, chunk.comm_loss, chunk.stale])[keep]
        starts = np.flatnonzero(np.diff(b, prepend=-1))
        rows = b[starts]
        self.lo[rows] = np.fmin(self.lo[rows], np.fmin.reduceat(values, starts, axis=0))
        self.hi[rows] = np.fmax(self.hi[rows], np.fmax.reduceat(values, starts, axis=0))
        self.counts[rows] += np.add.reduceat(flags.astype(np.float64), starts, axis=0)
        self.used = max(self.used, int(rows[-1]) + 1)

    def times(self) -> I64:
        """Start of each used bucket, ns."""
        if self.origin_ns is None or self.width_ns is None:
            return np.zeros(0, dtype=np.int64)
        return self.origin_ns + np.arange(self.used, dtype=np.int64) * self.width_ns

    def series(self, name: str) -> tuple[F64, F64]:
        """(min, max) per used bucket of one of `SERIES`."""
        j = SERIES.index(name)
        return self.lo[: self.used, j], self.hi[: self.used, j]

    def record(self) -> dict[str, F64]:
        """Per used bucket, as fractions of the bucket's steps: present, good, comm_loss, stale."""
        steps = (self.width_ns or 1) / max(self.period_ns, 1)
        return {name: self.counts[: self.used, j] / steps for j, name in enumerate(_COUNTS)}


@dataclass(frozen=True, slots=True)
class EndOf:
    """The cells' voltages at one end of a discharge or a charge."""

    kind: str  # discharge | charge
    t_ns: int
    volts: F64  # per cell (the chunk's cell order), NaN unknown


@dataclass
class EndVoltages:
    """Cell voltages at the end of each discharge and charge (see the module docstring)."""

    limits: Limits = field(default_factory=Limits)
    kept: int = 12
    discharges: deque[EndOf] = field(default_factory=deque)
    charges: deque[EndOf] = field(default_factory=deque)
    _was_empty: bool = False
    _was_full: bool = False

    def update(self, chunk: RackChunk) -> None:
        if chunk.n == 0 or chunk.cells.shape[1] == 0:
            return
        cond = conditions(chunk, self.limits)
        for flags, prev, kind, out in ((cond.empty, self._was_empty, "discharge", self.discharges),
                                       (cond.full, self._was_full, "charge", self.charges)):  # fmt: skip
            before = np.concatenate([[prev], flags[:-1]])
            for k in np.flatnonzero(flags & ~before).tolist():
                out.append(EndOf(kind, int(chunk.t[k]), chunk.cells[k].copy()))
                if len(out) > self.kept:
                    out.popleft()
        self._was_empty, self._was_full = bool(cond.empty[-1]), bool(cond.full[-1])

    def last(self, kind: str) -> EndOf | None:
        events = self.discharges if kind == "discharge" else self.charges
        return events[-1] if events else None
