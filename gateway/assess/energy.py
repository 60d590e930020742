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


@dataclass(frozen=True, slots=True)
class _Mark:
    """The running totals at a full step."""

    t: int
    kwh_in: float
    kwh_out: float
    breaks: int


@dataclass
class Energy:
    """Throughput, equivalent full cycles and round-trip efficiency.

    Method: energy is the trapezoid of pack voltage × current between consecutive good steps (charge:
    positive, discharge: negative, see gateway.assess.cycles); throughput is its sum each way, in kWh,
    and in Ah. Equivalent full cycles: Ah discharged over `capacity_ah` (the independent capacity when
    known, else nominal). Round-trip efficiency: over whole cycles only, each from the end of one full
    charge (its last full step, before the discharge) to the end of the next, so both ends are at the
    same state of charge, with at least `min_depth` × capacity discharged in between (without a
    capacity: a cell's cutoff reached in between) and no break in the record; efficiency = Σ kWh out /
    Σ kWh in over those cycles. Insufficient (efficiency) when the window holds no such cycle; equivalent
    full cycles insufficient (None) without a capacity.
    """

    capacity_ah: float | None = None
    limits: Limits = field(default_factory=Limits)
    min_depth: float = 0.5
    _integrator: Integrator | None = None
    _kwh_in: float = 0.0
    _kwh_out: float = 0.0
    _ah_in: float = 0.0
    _ah_out: float = 0.0
    _breaks: int = 0
    _broken_s: float = 0.0
    _net: float = 0.0  # Ah discharged, net, since the last full step
    _deepest: float = 0.0
    _emptied: bool = False
    _last_full: _Mark | None = None
    _episode_end: _Mark | None = None  # the end of the previous full charge
    _cycles: list[EnergyCycle] = field(default_factory=list)

    def update(self, chunk: RackChunk) -> None:
        if self._integrator is None:
            self._integrator = Integrator(self.limits.max_gap_s)
        inc = self._integrator.increments(chunk)
        self._broken_s += float(np.diff(chunk.t, prepend=chunk.t[0])[inc.brk].sum()) / 1e9
        cond = conditions(chunk, self.limits)
        events = np.flatnonzero(cond.full | cond.empty | inc.brk)
        start = 0
        for k in [*events.tolist(), chunk.n - 1]:
            self._accumulate(inc.ah[start : k + 1], inc.wh[start : k + 1])
            start = k + 1
            self._breaks += int(inc.brk[k])
            self._emptied |= bool(cond.empty[k])
            if cond.full[k]:
                self._full(int(chunk.t[k]))

    def _accumulate(self, ah: F64, wh: F64) -> None:
        if len(ah) == 0:
            return
        self._ah_in += float(ah[ah > 0].sum())
        self._ah_out -= float(ah[ah < 0].sum())
        self._kwh_in += float(wh[wh > 0].sum()) / 1000.0
        self._kwh_out -= float(wh[wh < 0].sum()) / 1000.0
        net = self._net - np.cumsum(ah)
        self._deepest = max(self._deepest, float(net.max()))
        self._net = float(net[-1])

    def _deep(self) -> bool:
        cap = self.capacity_ah
        return self._deepest >= self.min_depth * cap if cap else self._emptied

    def _cycle(self, end: _Mark) -> EnergyCycle | None:
        """The cycle from the previous full charge's end to `end`, when it is whole."""
        a = self._episode_end
        if a is None or a.breaks != end.breaks or end.kwh_in <= a.kwh_in:
            return None
        return EnergyCycle(a.t, end.t, end.kwh_in - a.kwh_in, end.kwh_out - a.kwh_out)

    def _full(self, t: int) -> None:
        if self._last_full is not None and self._deep():
            cycle = self._cycle(self._last_full)  # a deep discharge since: that full charge has ended
            if cycle is not None and len(self._cycles) < CYCLES_KEPT:
                self._cycles.append(cycle)
            self._episode_end = self._last_full
        if self._last_full is None:
            self._episode_end = None
        self._last_full = _Mark(t, self._kwh_in, self._kwh_out, self._breaks)
        self._net = self._deepest = 0.0
        self._emptied = False

    def result(self) -> EnergyResult:
        cycles = list(self._cycles)
        if self._last_full is not None and self._episode_end is not None and self._last_full is not self._episode_end:
            last = self._cycle(self._last_full)  # the window ends after a full charge
            if last is not None:
                cycles.append(last)
        efc = self._ah_out / self.capacity_ah if self.capacity_ah else None
        eff = why = None
        if cycles:
            eff = sum(c.kwh_out for c in cycles) / sum(c.kwh_in for c in cycles)
        else:
            why = "no whole cycle (full charge, discharge, full charge) without a break in the window"
        return EnergyResult(self._kwh_in, self._kwh_out, self._ah_in, self._ah_out, efc, eff,
                            tuple(cycles), self._broken_s, why)  # fmt: skip
