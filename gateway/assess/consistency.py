"""The BMS against itself and against the gateway: pack voltage vs the sum of cells, SoC vs coulomb count."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.assess.cycles import Integrator, Limits, conditions
from gateway.assess.robust import Reservoir, robust_sd
from gateway.assess.series import RackChunk
from gateway.model import F64

NS_PER_DAY = 86_400e9


@dataclass(frozen=True, slots=True)
class PackVoltageResult:
    bias_v: float | None  # median of pack voltage minus the sum of the cells
    residual_v: float | None  # robust standard deviation of that difference
    samples: int
    insufficient: str | None


@dataclass
class PackVoltage:
    """Pack voltage against the sum of the cell voltages.

    Method: at every step where the pack voltage and every cell voltage are good, the difference pack −
    Σ cells; `bias_v` is its median and `residual_v` its robust standard deviation (1.4826 × MAD), both
    over a uniform sample of at most 100,000 steps of the window. A bias is a sensing or wiring fault
    (or a drop the pack voltage includes, such as busbars under current). Insufficient with fewer than
    `min_samples` such steps.
    """

    min_samples: int = 60
    _diffs: Reservoir = field(default_factory=Reservoir)

    def update(self, chunk: RackChunk) -> None:
        if chunk.cells.shape[1] == 0:
            return
        all_cells = np.isfinite(chunk.cells).all(axis=1) & np.isfinite(chunk.pack_v)
        rows = np.flatnonzero(all_cells)
        if len(rows):
            self._diffs.add(chunk.pack_v[rows] - chunk.cells[rows].sum(axis=1))

    def result(self) -> PackVoltageResult:
        d = self._diffs.values()
        n = self._diffs.seen
        if n < self.min_samples:
            return PackVoltageResult(None, None, n, f"fewer than {self.min_samples} steps with the pack "
                                     "voltage and every cell good")  # fmt: skip
        return PackVoltageResult(float(np.median(d)), robust_sd(d), n, None)


@dataclass(frozen=True, slots=True)
class SocDriftResult:
    drift_pct_per_day: float | None  # slope of BMS SoC minus the coulomb-counted SoC
    capacity_ah: float | None  # the capacity the count used
    segments: int
    hours: float  # time covered by the segments
    insufficient: str | None
    capacity_source: str | None = None  # given | bms_capacity | nominal: where capacity_ah came from


@dataclass
class SocDrift:
    """BMS SoC against the gateway's own coulomb count: drift per day.

    Method: from the start of a segment the gateway counts charge (trapezoid of the rack current) and
    turns it into SoC with a capacity C: count(t) = SoC_BMS(start) + 100 × Q(t) / C. The difference
    SoC_BMS − count is fitted by least squares against time within each segment (each with its own
    intercept); the pooled slope is the drift, in points per day. A segment starts at the first good
    step, at each full charge (where BMS's often recalibrate) and after a break in the current record
    (longer than `limits.max_gap_s`).

    The capacity C, first found: the one given to `result(capacity_ah)` (say the measured usable
    capacity); `capacity_ah` given here; the median of the full capacity the BMS reported in the
    window (`capacity_full`, the basis of its own count); `limits.nominal_ah`. The sums are kept apart
    for the SoC and the charge, so C may be known only at the end. Insufficient without any capacity,
    or when the segments cover less than `min_hours` in all.
    """

    capacity_ah: float | None = None
    limits: Limits = field(default_factory=Limits)
    min_hours: float = 1.0
    _integrator: Integrator | None = None
    _qtot: float = 0.0  # Ah counted since the first chunk
    _soc0: float | None = None  # BMS SoC at the segment's start
    _t0: int = 0
    _q0: float = 0.0  # _qtot at the segment's start
    _tlast: int = 0
    # n, Σx, Σs, Σq, Σxx, Σxs, Σxq of the open segment (x days, s SoC − SoC0, q Ah since its start)
    _sums: F64 = field(default_factory=lambda: np.zeros(7))
    _pool: F64 = field(default_factory=lambda: np.zeros(3))  # Sxx, Sxs, Sxq over the closed segments
    _segments: int = 0
    _seconds: float = 0.0
    _bms_capacity: Reservoir = field(default_factory=lambda: Reservoir(20_000))

    def update(self, chunk: RackChunk) -> None:
        if self._integrator is None:
            self._integrator = Integrator(self.limits.max_gap_s)
        inc = self._integrator.increments(chunk)
        if chunk.n == 0:
            return
        self._bms_capacity.add(chunk.bms_capacity)
        q = self._qtot + np.cumsum(inc.ah)
        self._qtot = float(q[-1])
        soc, t = chunk.bms_soc, chunk.t
        good = np.isfinite(soc) & np.isfinite(chunk.current)
        restart = (conditions(chunk, self.limits).full | inc.brk) & good
        cuts = np.flatnonzero(restart).tolist()
        for a, b in zip([0, *cuts], [*cuts, chunk.n], strict=True):
            rows = a + np.flatnonzero(good[a:b])
            if len(rows) == 0:
                continue
            if (a in cuts and a == rows[0]) or self._soc0 is None:
                k = int(rows[0])
                self._close()
                self._soc0, self._t0, self._q0 = float(soc[k]), int(t[k]), float(q[k])
            x = (t[rows] - self._t0) / NS_PER_DAY
            ds, dq = soc[rows] - self._soc0, q[rows] - self._q0
            self._sums += (len(rows), x.sum(), ds.sum(), dq.sum(), (x * x).sum(), (x * ds).sum(), (x * dq).sum())
            self._tlast = int(t[rows[-1]])

    def _pooled(self) -> tuple[F64, int, float]:
        """(Sxx, Sxs, Sxq), segments and seconds with the open segment closed."""
        n, sx, ss, sq, sxx, sxs, sxq = self._sums.tolist()
        if n < 2:
            return self._pool, self._segments, self._seconds
        own = np.asarray([sxx - sx * sx / n, sxs - sx * ss / n, sxq - sx * sq / n])
        return self._pool + own, self._segments + 1, self._seconds + (self._tlast - self._t0) / 1e9

    def _close(self) -> None:
        self._pool, self._segments, self._seconds = self._pooled()
        self._sums = np.zeros(7)

    def capacity(self, capacity_ah: float | None = None) -> tuple[float | None, str | None]:
        """The capacity the count uses and where it came from (see the class docstring)."""
        if capacity_ah:
            return capacity_ah, "given"
        if self.capacity_ah:
            return self.capacity_ah, "given"
        reported = self._bms_capacity.values()
        if len(reported) and float(np.median(reported)) > 0:
            return float(np.median(reported)), "bms_capacity"
        if self.limits.nominal_ah:
            return self.limits.nominal_ah, "nominal"
        return None, None

    def result(self, capacity_ah: float | None = None) -> SocDriftResult:
        cap, source = self.capacity(capacity_ah)
        if cap is None:
            return SocDriftResult(None, None, 0, 0.0, "no capacity to count with (none given, none reported "
                                  "by the BMS, no nominal capacity)")  # fmt: skip
        pool, segments, seconds = self._pooled()
        sxx, sxs, sxq = pool.tolist()
        hours = seconds / 3600.0
        if hours < self.min_hours or sxx <= 0:
            return SocDriftResult(None, cap, segments, hours, f"less than {self.min_hours:g} h of BMS SoC and current",
                                  source)  # fmt: skip
        return SocDriftResult((sxs - 100.0 * sxq / cap) / sxx, cap, segments, hours, None, source)
