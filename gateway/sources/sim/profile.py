"""The `capacity_test` current profile: a state machine over the cells' state, pure.

Full charge at constant current until the highest cell reaches the upper limit, then constant
voltage on that cell (the current tapers) until it falls below the taper current; rest; full
discharge until the first cell reaches the cutoff; rest; then partial cycles (charge to the upper
mean SoC, rest, discharge to the lower, rest) with a rest at each turn; then again from the full
charge. Positive current charges.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from gateway.model import F64
from gateway.sources.sim.cells import Limits


class Phase(enum.StrEnum):
    CHARGE_CC = "charge_cc"
    CHARGE_CV = "charge_cv"
    REST_FULL = "rest_full"
    DISCHARGE = "discharge"
    REST_EMPTY = "rest_empty"
    PARTIAL_DISCHARGE = "partial_discharge"
    PARTIAL_REST_LOW = "partial_rest_low"
    PARTIAL_CHARGE = "partial_charge"
    PARTIAL_REST_HIGH = "partial_rest_high"


@dataclass(frozen=True, slots=True)
class Transition:
    """A phase that began at simulated time t (s), with the cell that ended the last one (0-based) if any."""

    t: float
    phase: Phase
    cell: int | None = None


@dataclass
class CapacityTestProfile:
    limits: Limits
    rest: float
    partial_cycles: int
    partial_low: float
    partial_high: float
    phase: Phase = Phase.CHARGE_CC
    since: float = 0.0  # simulated time the phase began
    partials_done: int = 0
    transitions: list[Transition] = field(default_factory=list)  # drained by the caller

    def _enter(self, t: float, phase: Phase, cell: int | None = None) -> None:
        self.phase, self.since = phase, t
        self.transitions.append(Transition(t, phase, cell))

    def current(self, t: float, ocv: F64, resistance: F64, mean_soc: float) -> float:
        """The current for the step that starts at t, from each cell's OCV and resistance (phases advance)."""
        lim = self.limits
        for _ in range(len(Phase)):  # a phase that is over at once hands on to the next in the same step
            amps = self._in_phase(t, ocv, resistance, mean_soc, lim)
            if amps is not None:
                return amps
        return 0.0

    def _in_phase(self, t: float, ocv: F64, r: F64, mean_soc: float, lim: Limits) -> float | None:
        """The phase's current, or None after moving to the next phase."""
        ph = self.phase
        if ph is Phase.CHARGE_CC:
            v = ocv + lim.current * r
            if v.max() < lim.charge_voltage:
                return lim.current
            self._enter(t, Phase.CHARGE_CV, int(np.argmax(v)))
        elif ph is Phase.CHARGE_CV:
            amps = float(min(lim.current, ((lim.charge_voltage - ocv) / r).min()))
            if amps > lim.taper_current:
                return amps
            self._enter(t, Phase.REST_FULL, int(np.argmax(ocv + lim.taper_current * r)))
        elif ph is Phase.DISCHARGE:
            v = ocv - lim.current * r
            if v.min() > lim.cutoff_voltage:
                return -lim.current
            self._enter(t, Phase.REST_EMPTY, int(np.argmin(v)))
        elif ph is Phase.PARTIAL_DISCHARGE:
            v = ocv - lim.current * r
            if mean_soc > self.partial_low and v.min() > lim.cutoff_voltage:
                return -lim.current
            self._enter(t, Phase.PARTIAL_REST_LOW)
        elif ph is Phase.PARTIAL_CHARGE:
            v = ocv + lim.current * r
            if mean_soc < self.partial_high and v.max() < lim.charge_voltage:
                return lim.current
            self._enter(t, Phase.PARTIAL_REST_HIGH)
        elif t - self.since < self.rest:  # a rest
            return 0.0
        else:
            self._enter(t, self._after_rest(ph))
        return None

    def _after_rest(self, ph: Phase) -> Phase:
        if ph is Phase.REST_FULL:
            return Phase.DISCHARGE
        if ph is Phase.PARTIAL_REST_HIGH:
            return Phase.PARTIAL_DISCHARGE
        if ph is Phase.PARTIAL_REST_LOW:
            self.partials_done += 1
        else:  # REST_EMPTY: the partial cycles begin
            self.partials_done = 0
        return Phase.PARTIAL_CHARGE if self.partials_done < self.partial_cycles else Phase.CHARGE_CC
