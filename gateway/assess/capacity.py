"""Usable capacity measured from the record, and the BMS's SoH held against it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.assess.cycles import Integrator, Limits, conditions
from gateway.assess.robust import Reservoir
from gateway.assess.series import RackChunk

DISCHARGES_KEPT = 1000


@dataclass(frozen=True, slots=True)
class Discharge:
    """One full discharge: from the last full step to the first step where a cell reached cutoff."""

    start_ns: int
    end_ns: int
    ah: float


@dataclass(frozen=True, slots=True)
class CapacityResult:
    independent_ah: float | None  # median over the full discharges of the window
    independent_soh_pct: float | None  # independent_ah / nominal_ah × 100
    nominal_ah: float | None
    bms_soh_pct: float | None  # median of the SoH the BMS reported in the window
    bms_capacity_ah: float | None  # median of the full capacity the BMS reported
    soh_difference_pct: float | None  # BMS SoH minus independent SoH, points
    verdict: str | None  # consistent | soh_overstated | soh_understated
    discharges: tuple[Discharge, ...]
    incomplete_discharges: int  # full-to-cutoff runs left out (a break in the current record, too shallow)
    insufficient: str | None  # why there is no independent capacity
    verdict_insufficient: str | None  # why there is no verdict


def _median(r: Reservoir) -> float | None:
    v = r.values()
    return float(np.median(v)) if len(v) else None


@dataclass
class UsableCapacity:
    """Usable capacity in Ah between a full charge and the first cell's cutoff.

    Method: the charge is integrated (trapezoid of the rack current, see gateway.assess.cycles) from the
    last step at which the rack was full (the highest cell at the upper limit, or the charge current
    tapering below C/20 at the top) to the first step at which the lowest cell reaches the cutoff
    voltage; each such discharge is one measurement and `independent_ah` is their median. The
    independent SoH is that against `limits.nominal_ah`; the BMS's SoH and full capacity (medians over
    the window) stand beside it, and the verdict is `soh_overstated` (or `soh_understated`) when the
    BMS's SoH is more than `tolerance_pct` points above (below) the independent one.

    Insufficient when the window holds no discharge from full to cutoff without a break in the current
    record longer than `limits.max_gap_s`, or the discharge delivered less than `min_depth` of nominal
    (a cutoff reached that early is not a capacity). No verdict without a nominal capacity or without a
    SoH from the BMS. Partial cycles (OCV between rest points) are not used here.
    """

    limits: Limits = field(default_factory=Limits)
    tolerance_pct: float = 3.0
    min_depth: float = 0.5
    sample_size: int = 20_000  # values of the BMS's SoH and capacity kept (a uniform sample of the window)
    _integrator: Integrator | None = None
    _full_ns: int | None = None
    _q: float = 0.0  # Ah discharged since the last full step
    _broken: bool = False
    _discharges: list[Discharge] = field(default_factory=list)
    _incomplete: int = 0
    _soh: Reservoir = field(init=False)
    _cap: Reservoir = field(init=False)

    def __post_init__(self) -> None:
        self._soh, self._cap = Reservoir(self.sample_size), Reservoir(self.sample_size)

    def update(self, chunk: RackChunk) -> None:
        if self._integrator is None:
            self._integrator = Integrator(self.limits.max_gap_s)
        inc = self._integrator.increments(chunk)
        cond = conditions(chunk, self.limits)
        self._soh.add(chunk.bms_soh)
        self._cap.add(chunk.bms_capacity)
        events = np.flatnonzero(cond.full | cond.empty | inc.brk)
        start = 0
        for k in events.tolist():
            self._q -= float(inc.ah[start : k + 1].sum())
            start = k + 1
            if cond.full[k]:
                self._full_ns, self._q, self._broken = int(chunk.t[k]), 0.0, False
            elif inc.brk[k]:
                self._broken = True
            if cond.empty[k] and self._full_ns is not None:
                self._close(int(chunk.t[k]))
        self._q -= float(inc.ah[start:].sum())

    def _close(self, end_ns: int) -> None:
        assert self._full_ns is not None
        nominal = self.limits.nominal_ah
        shallow = nominal is not None and self._q < self.min_depth * nominal
        if self._broken or shallow or self._q <= 0:
            self._incomplete += 1
        elif len(self._discharges) < DISCHARGES_KEPT:
            self._discharges.append(Discharge(self._full_ns, end_ns, self._q))
        self._full_ns = None

    def take_discharges(self) -> list[Discharge]:
        """The discharges measured since the last call, handed over and forgotten here (a live run keeps
        no list; `result` then covers only what was not taken)."""
        out, self._discharges = self._discharges, []
        return out

    def result(self) -> CapacityResult:
        nominal = self.limits.nominal_ah
        bms_soh, bms_cap = _median(self._soh), _median(self._cap)
        ah = float(np.median([d.ah for d in self._discharges])) if self._discharges else None
        why = None if ah is not None else "no discharge from full charge to a cell's cutoff in the window"
        soh = 100.0 * ah / nominal if ah is not None and nominal else None
        diff = verdict = None
        if soh is None:
            no_verdict = why or "no nominal capacity given"
        elif bms_soh is None:
            no_verdict = "the BMS reported no SoH in the window"
        else:
            no_verdict = None
            diff = bms_soh - soh
            verdict = ("soh_overstated" if diff > self.tolerance_pct
                       else "soh_understated" if diff < -self.tolerance_pct else "consistent")  # fmt: skip
        return CapacityResult(ah, soh, nominal, bms_soh, bms_cap, diff, verdict, tuple(self._discharges),
                              self._incomplete, why, no_verdict)  # fmt: skip
