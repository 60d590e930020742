"""Configuration of the live assessment (`assess:` in gateway.yaml): the estimators in the daemon."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from gateway.assess.cycles import Limits
from gateway.config.base import Strict

_L = Limits()


class RackAssessConfig(Strict):
    """What differs for one rack (unset keys take the value of `assess:`)."""

    nominal_capacity_ah: float | None = Field(None, gt=0, description="The rack's nominal capacity, Ah")
    period: float | None = Field(None, gt=0, description="The rack's sample interval, s")


class AssessConfig(Strict):
    """Live assessment: usable capacity measured after each full discharge, published per rack as
    `assessed_capacity` (Ah) and `assessed_soh` (%)."""

    enabled: bool = Field(False, description="Measure usable capacity live and publish it per rack")
    nominal_capacity_ah: float | None = Field(
        None, gt=0, description="Nominal rack capacity, Ah: assessed_soh is assessed_capacity against it (unset: the "
        "profile's nominal_capacity_ah, a simulated source's capacity_ah, else no assessed_soh)"
    )  # fmt: skip
    period: float | None = Field(
        None, gt=0, le=3600, description="Time grid of the estimators, s: the racks' sample interval (unset: the "
        "source's interval, else 1 s)"
    )  # fmt: skip
    full_voltage: float = Field(
        _L.full_v, gt=0, description="Full: the highest cell at this voltage (V), not discharging"
    )
    taper_voltage: float = Field(
        _L.taper_v, gt=0, description="Full too: the highest cell at this voltage (V) and the charge current below C/20"
    )
    cutoff_voltage: float = Field(_L.empty_v, gt=0, description="Empty: the lowest cell at this voltage (V)")
    rest_current: float = Field(
        _L.rest_a, ge=0, description="Current (A) up to which the rack rests (full and empty hold while resting)"
    )
    max_gap: float = Field(
        _L.max_gap_s, gt=0, description="A discharge with a hole in the current record longer than this (s) is not "
        "measured"
    )  # fmt: skip
    ocv_table: Path | None = Field(
        None, description="OCV table of the cells' chemistry (CSV or YAML rows soc_pct, voltage): bms-gateway assess "
        "and the live assessment measure usable capacity from partial cycles between rest points with it"
    )  # fmt: skip
    racks: dict[str, RackAssessConfig] = Field(
        default_factory=dict, description="Per rack (by rack tag): its nominal capacity or period, if they differ"
    )

    @model_validator(mode="after")
    def _order(self) -> AssessConfig:
        if not self.cutoff_voltage < self.taper_voltage <= self.full_voltage:
            raise ValueError("expected cutoff_voltage < taper_voltage <= full_voltage")
        return self

    def limits(self, rack: str, configured: float | None = None) -> Limits:
        """The full and empty rules of one rack; `configured`: the nominal capacity its source's
        configuration states, used when `assess:` gives none."""
        own = self.racks.get(rack)
        nominal = own.nominal_capacity_ah if own is not None and own.nominal_capacity_ah else self.nominal_capacity_ah
        nominal = nominal or configured
        return Limits(self.full_voltage, self.taper_voltage, self.cutoff_voltage, nominal, self.max_gap,
                      self.rest_current)  # fmt: skip

    def period_of(self, rack: str, configured: float | None = None) -> float:
        """The rack's grid step; `configured`: its source's interval, used when `assess:` gives none."""
        own = self.racks.get(rack)
        return (own.period if own is not None and own.period else None) or self.period or configured or 1.0
