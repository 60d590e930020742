"""Usable capacity from partial cycles between rest points, through an OCV table of the chemistry.

Method: a **rest** is a run of steps with a current of at most `rest_current` (A) in magnitude (a step
without a reading keeps the state before it), unbroken by a break in the current record (a hole longer
than `max_gap_s`), lasting at least `rest_s` seconds; its **rest point** is its
last step, where the cells have relaxed the most. There the rack's SoC is read from the OCV table: the
median cell voltage through the inverse of the monotonic OCV(SoC) table (the median of each cell's SoC
is the same, the inverse being monotonic). Between two consecutive rest points with no break in the
current record (gateway.assess.cycles: the one integrator), the charge ΔAh and ΔSoC give one estimate
ΔAh / ΔSoC when |ΔSoC| ≥ `min_delta_soc` (0.3: 30 points) and the relaxed voltages differ by at least
`min_delta_ocv_v`; the result is the median of the estimates, with their count and spread (max - min).

Limits: the SoC is only as good as the table and the relaxation. **LFP's OCV is flat between about 30
and 90 % SoC** (a few mV per 10 points): a millivolt of relaxation or sensor error there is several
points of SoC, so pairs of rests in that plateau say little. A pair is therefore skipped unless the
relaxed voltages differ by `min_delta_ocv_v` (default 50 mV), which in practice needs one rest in a
steep part of the curve (below ~20 % or above ~95 % for LFP). The capacity measured is that of the
median cell between the two SoCs, not the first cell's cutoff as in gateway.assess.capacity.

Insufficient: no OCV table given; no pair of rest points; or no pair deep and steep enough without a
break in between.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.assess.cycles import Integrator, Limits
from gateway.assess.ocvtable import OcvTable
from gateway.assess.robust import quiet
from gateway.assess.series import RackChunk
from gateway.model import F64, I64

ESTIMATES_KEPT = 1000


@dataclass(frozen=True, slots=True)
class RestPoint:
    """The end of one rest: time, median relaxed cell voltage, SoC from the table, charge count, breaks."""

    t_ns: int
    voltage: float
    soc_pct: float
    q_ah: float  # charge integrated since the start of the window (positive charges)
    breaks: int  # breaks in the current record since the start of the window


@dataclass(frozen=True, slots=True)
class PartialEstimate:
    start_ns: int
    end_ns: int
    ah: float  # the charge between the two rest points, Ah (positive charges)
    delta_soc_pct: float
    capacity_ah: float


@dataclass(frozen=True, slots=True)
class PartialResult:
    ah: float | None  # median of the estimates
    estimates: tuple[PartialEstimate, ...]
    spread_ah: float | None  # max - min of the estimates
    rest_points: int
    skipped: dict[str, int]  # pairs left out, by reason: break, shallow, flat, opposite
    insufficient: str | None


@dataclass
class PartialCycles:
    """Streaming estimator (see the module docstring); `table` None: always insufficient."""

    table: OcvTable | None
    limits: Limits = field(default_factory=Limits)
    rest_s: float = 600.0
    min_delta_soc: float = 0.3
    min_delta_ocv_v: float = 0.05
    _integrator: Integrator | None = None
    _q: float = 0.0
    _breaks: int = 0
    _run_start: int | None = None  # first step of the rest under way (ns)
    _run_last: RestPoint | None = None  # its last step with a voltage so far
    _last: RestPoint | None = None  # the last rest point closed
    _points: int = 0
    _estimates: list[PartialEstimate] = field(default_factory=list)
    _skipped: dict[str, int] = field(default_factory=dict)

    def update(self, chunk: RackChunk) -> None:
        if self.table is None or chunk.n == 0:
            return
        if self._integrator is None:
            self._integrator = Integrator(self.limits.max_gap_s)
        inc = self._integrator.increments(chunk)
        i = chunk.current
        finite = np.isfinite(i)
        with quiet():
            at_rest = finite & (np.abs(i) <= self.limits.rest_a)
            # a step without a current reading (bridged by the integrator) keeps the state before it
            known = np.maximum.accumulate(np.where(finite, np.arange(chunk.n), -1))
            rest = np.where(known >= 0, at_rest[np.maximum(known, 0)], self._run_start is not None)
            vmed = np.nanmedian(chunk.cells, axis=1) if chunk.cells.shape[1] else np.full(chunk.n, np.nan)
        q = self._q + np.cumsum(inc.ah)
        brk = self._breaks + np.cumsum(inc.brk)
        prev = np.concatenate([[self._run_start is not None], rest[:-1]])
        starts = rest & (~prev | inc.brk)
        ends = (prev & ~rest) | (prev & inc.brk)  # the step after a rest's last step
        first = 0  # first step in this chunk of the rest under way
        for k in np.flatnonzero(starts | ends).tolist():
            if ends[k]:
                self._extend(chunk, vmed, q, brk, first, k)
                self._close_run()
            if starts[k]:
                self._run_start, self._run_last, first = int(chunk.t[k]), None, k
        if self._run_start is not None:
            self._extend(chunk, vmed, q, brk, first, chunk.n)
        self._q, self._breaks = float(q[-1]), int(brk[-1])

    def _extend(self, chunk: RackChunk, vmed: F64, q: F64, brk: I64, first: int, end: int) -> None:
        """The rest under way reaches step `end` - 1: its last step with a voltage in [first, end)."""
        ok = np.flatnonzero(np.isfinite(vmed[first:end]))
        if len(ok):
            k = first + int(ok[-1])
            self._run_last = self._point(int(chunk.t[k]), float(vmed[k]), float(q[k]), int(brk[k]))

    def _point(self, t_ns: int, v: float, q: float, brk: int) -> RestPoint:
        assert self.table is not None
        return RestPoint(t_ns, v, self.table.soc_of(v), q, brk)

    def _close_run(self) -> None:
        p, start = self._run_last, self._run_start
        self._run_start = self._run_last = None
        if p is None or start is None or (p.t_ns - start) / 1e9 < self.rest_s:
            return
        self._points += 1
        if self._last is not None:
            self._pair(self._last, p)
        self._last = p

    def _pair(self, a: RestPoint, b: RestPoint, keep: bool = True) -> PartialEstimate | None:
        dsoc, dah = b.soc_pct - a.soc_pct, b.q_ah - a.q_ah
        why = ("break" if b.breaks != a.breaks
               else "shallow" if abs(dsoc) < 100.0 * self.min_delta_soc
               else "flat" if abs(b.voltage - a.voltage) < self.min_delta_ocv_v
               else "opposite" if dah * dsoc <= 0 else None)  # fmt: skip
        if why is not None:
            if keep:
                self._skipped[why] = self._skipped.get(why, 0) + 1
            return None
        e = PartialEstimate(a.t_ns, b.t_ns, dah, dsoc, 100.0 * dah / dsoc)
        if keep and len(self._estimates) < ESTIMATES_KEPT:
            self._estimates.append(e)
        return e

    def take_estimates(self) -> list[PartialEstimate]:
        """The estimates made since the last call, handed over and forgotten here (a live run keeps no
        list; `result` then covers only what was not taken)."""
        out, self._estimates = self._estimates, []
        return out

    def _pending(self) -> tuple[RestPoint | None, PartialEstimate | None]:
        """The rest under way at the end of the record, as a rest point if long enough, and its pair."""
        p, start = self._run_last, self._run_start
        if p is None or start is None or (p.t_ns - start) / 1e9 < self.rest_s:
            return None, None
        return p, (self._pair(self._last, p, keep=False) if self._last is not None else None)

    def result(self) -> PartialResult:
        if self.table is None:
            return PartialResult(None, (), None, 0, {}, "no OCV table given (assess.ocv_table or --ocv-table)")
        point, extra = self._pending()
        points = self._points + (point is not None)
        est = tuple(self._estimates) + ((extra,) if extra is not None else ())
        caps = np.asarray([e.capacity_ah for e in est], dtype=np.float64)
        why = None
        if points < 2:
            why = f"no pair of rest points (rests of at least {self.rest_s:g} s at up to {self.limits.rest_a:g} A)"
        elif not len(caps):
            why = (f"no pair of rest points {100 * self.min_delta_soc:g} SoC points or more apart, with relaxed "
                   f"voltages {1000 * self.min_delta_ocv_v:g} mV or more apart (the OCV curve steep enough) and "
                   f"no break in the current record in between")  # fmt: skip
        ah = float(np.median(caps)) if len(caps) else None
        spread = float(caps.max() - caps.min()) if len(caps) else None
        return PartialResult(ah, est, spread, points, dict(self._skipped), why)
