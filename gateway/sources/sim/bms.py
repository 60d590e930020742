"""The simulated BMS's own view: its coulomb-counted SoC and its SoH, each with configured errors. Pure."""

from __future__ import annotations

from gateway.sources.sim.config import BmsModel

DAY = 86_400.0


class Bms:
    """Counts the rack current against its capacity basis (the reported capacity, else the nominal one)
    from the cells' mean SoC at start; reports SoC = gain × count + offset + drift × days, and
    SoH = true SoH + offset, both clipped to 0..100 %."""

    def __init__(self, spec: BmsModel, nominal_ah: float, initial_soc: float) -> None:
        self.spec = spec
        self.basis_ah = spec.capacity_ah if spec.capacity_ah is not None else nominal_ah
        self.initial_soc = initial_soc
        self.counted = initial_soc  # %, without the configured errors

    def count(self, dq_ah: float) -> None:
        self.counted += 100.0 * dq_ah / self.basis_ah

    def soc(self, t: float) -> float:
        s = self.spec
        return min(100.0, max(0.0, s.soc_gain * self.counted + s.soc_offset + s.soc_drift_per_day * t / DAY))

    def soh(self, true_soh: float) -> float:
        return min(100.0, max(0.0, true_soh + self.spec.soh_offset))

    def capacity_full(self) -> float | None:
        """The capacity the BMS reports (Ah), or None when it reports none."""
        return self.spec.capacity_ah
