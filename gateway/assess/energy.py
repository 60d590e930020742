"""Energy: throughput, equivalent full cycles, round-trip efficiency."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.assess.cycles import Integrator, Limits, conditions
from gateway.assess.series import RackChunk
from gateway.model import F64

CYCLES_KEPT = 1000


@dataclass(frozen=True, slots=True)
class EnergyCycle:
    start_ns: int
    end_ns: int
    kwh_in: float
    kwh_out: float


@dataclass(frozen=True, slots=True)
class EnergyResult:
    kwh_in: float  # charged
    kwh_out: float  # discharged
    ah_in: float
    ah_out: float
    equivalent_full_cycles: float | None  # ah_out / capacity
    round_trip_efficiency: float | None  # Σ out / Σ in over whole cycles
    cycles: tuple[EnergyCycle, ...]
    incomplete_seconds: float  # breaks in the record: energy there is unknown
    insufficient: str | None  # why there is no efficiency (throughput is always given)


@dataclass
class Energy:
    """Throughput, equivalent full cycles and round-trip efficiency.

    Method: energy is the trapezoid of pack voltage × current between consecutive good steps (charge:
    positive, discharge: negative, see gateway.assess.cycles); throughput is its sum each way, in kWh,
    and in Ah. Equivalent full cycles: Ah discharged over `capacity_ah` (the independent capacity when
    known, else nominal). Round-trip efficiency: over whole cycles only, each from the first full step of
    one full charge to the first full step of the next (the same state of charge at both ends), with at
    least `min_depth` × capacity discharged in between (without a capacity: a cell's cutoff reached in
    between) and no break in the record; efficiency = Σ kWh out / Σ kWh in over those cycles.
    Insufficient (efficiency) when the window holds no such cycle; cycles insufficient without capacity.
    """

    capacity_ah: float | None = None
    limits: Limits = field(default_factory=Limits)
    min_depth: float = 0.5
    _integrator: Integrator | None = None
    _kwh_in: float = 0.0
    _kwh_out: float = 0.0
    _ah_in: float = 0.0
    _ah_out: float = 0.0
    _broken_s: float = 0.0
    _ref: int | None = None  # the first full step of the cycle being measured
    _c_in: float = 0.0
    _c_out: float = 0.0
    _depth: float = 0.0  # Ah discharged since _ref (net), and its deepest
    _deepest: float = 0.0
    _emptied: bool = False
    _broken: bool = False
    _cycles: list[EnergyCycle] = field(default_factory=list)

    def update(self, chunk: RackChunk) -> None:
        if self._integrator is None:
            self._integrator = Integrator(self.limits.max_gap_s)
        inc = self._integrator.increments(chunk)
        ah, wh = inc.ah, inc.wh
        self._ah_in += float(ah[ah > 0].sum())
        self._ah_out -= float(ah[ah < 0].sum())
        self._kwh_in += float(wh[wh > 0].sum()) / 1000.0
        self._kwh_out -= float(wh[wh < 0].sum()) / 1000.0
        self._broken_s += float(np.diff(chunk.t, prepend=chunk.t[0])[inc.brk].sum()) / 1e9
        cond = conditions(chunk, self.limits)
        events = np.flatnonzero(cond.full | cond.empty | inc.brk)
        start = 0
        for k in [*events.tolist(), chunk.n - 1]:
            self._accumulate(ah[start : k + 1], wh[start : k + 1])
            start = k + 1
            if inc.brk[k]:
                self._broken = True
            if cond.empty[k]:
                self._emptied = True
            if cond.full[k]:
                self._full(int(chunk.t[k]))

    def _accumulate(self, ah: F64, wh: F64) -> None:
        if len(ah) == 0:
            return
        depth = self._depth - np.cumsum(ah)
        self._deepest = max(self._deepest, float(depth.max()))
        self._depth = float(depth[-1])
        self._c_in += float(wh[wh > 0].sum()) / 1000.0
        self._c_out -= float(wh[wh < 0].sum()) / 1000.0

    def _full(self, t: int) -> None:
        cap = self.capacity_ah
        deep = self._deepest >= self.min_depth * cap if cap else self._emptied
        if self._ref is not None and not deep and not self._broken:
            return  # still the same full charge
        if self._ref is not None and deep and not self._broken and self._c_in > 0 and len(self._cycles) < CYCLES_KEPT:
            self._cycles.append(EnergyCycle(self._ref, t, self._c_in, self._c_out))
        self._ref, self._c_in, self._c_out = t, 0.0, 0.0
        self._depth = self._deepest = 0.0
        self._emptied = self._broken = False

    def result(self) -> EnergyResult:
        efc = self._ah_out / self.capacity_ah if self.capacity_ah else None
        eff = why = None
        if self._cycles:
            eff = sum(c.kwh_out for c in self._cycles) / sum(c.kwh_in for c in self._cycles)
        else:
            why = "no whole cycle (full charge, discharge, full charge) without a break in the window"
        return EnergyResult(self._kwh_in, self._kwh_out, self._ah_in, self._ah_out, efc, eff,
                            tuple(self._cycles), self._broken_s, why)  # fmt: skip
