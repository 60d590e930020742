"""Findings: what an assessment found worth a reviewer's attention, each with a code and a severity.

Codes: `soh_overstated`, `soh_understated` (the BMS's SoH against the measured capacity),
`weak_cell`, `high_resistance_cell`, `stuck_sensor`, `sensor_jump`, `sensor_out_of_family`,
`pack_voltage_bias`, `soc_drift`, `low_coverage`. Severities are the alarm engine's: `major`, `minor`,
`warning`.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.assess.capacity import CapacityResult
from gateway.assess.cells import CellsResult
from gateway.assess.completeness import CompletenessResult
from gateway.assess.consistency import PackVoltageResult, SocDriftResult
from gateway.assess.sensors import SensorsResult

SENSOR_CODES = {"stuck": "stuck_sensor", "jump": "sensor_jump", "out_of_family": "sensor_out_of_family"}


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: str  # major | minor | warning
    message: str
    module: int | None = None
    cell: int | None = None


@dataclass(frozen=True, slots=True)
class Tolerances:
    """When a figure becomes a finding."""

    min_coverage: float = 0.95
    pack_bias_v: float = 0.5
    soc_drift_pct_per_day: float = 2.0


def findings(
    completeness: CompletenessResult | None = None,
    capacity: CapacityResult | None = None,
    cells: CellsResult | None = None,
    sensors: SensorsResult | None = None,
    pack: PackVoltageResult | None = None,
    soc: SocDriftResult | None = None,
    tol: Tolerances | None = None,
) -> list[Finding]:
    """The findings of a rack's results (any may be left out), in a stable order."""
    tol = tol or Tolerances()
    out: list[Finding] = []
    if completeness is not None and completeness.coverage is not None and completeness.coverage < tol.min_coverage:
        out.append(Finding("low_coverage", "minor", f"coverage {completeness.coverage:.3f} (below "
                           f"{tol.min_coverage:g}); {completeness.gap_count} gaps, {completeness.gap_seconds:g} s "
                           f"missing, {completeness.comm_loss_seconds:g} s in comm loss"))  # fmt: skip
    if capacity is not None and capacity.verdict in ("soh_overstated", "soh_understated"):
        more = "above" if capacity.verdict == "soh_overstated" else "below"
        out.append(Finding(capacity.verdict, "major" if capacity.verdict == "soh_overstated" else "warning",
                           f"BMS SoH {capacity.bms_soh_pct:.1f} % is {abs(capacity.soh_difference_pct or 0):.1f} "
                           f"points {more} the measured {capacity.independent_soh_pct:.1f} % "
                           f"({capacity.independent_ah:.1f} Ah of {capacity.nominal_ah:g} Ah nominal)"))  # fmt: skip
    if cells is not None:
        index = {c: j for j, c in enumerate(cells.cell_ids)}
        for c in cells.weak:
            out.append(Finding("weak_cell", "major", f"relative capacity {cells.relative_capacity[index[c]]:.3f} "
                               "of the median cell", c.module, c.cell))  # fmt: skip
        for c in cells.high_resistance:
            rel = cells.relative_resistance[index[c]]
            out.append(Finding("high_resistance_cell", "minor", f"internal resistance {rel:.2f} × the median cell's",
                               c.module, c.cell))  # fmt: skip
    if sensors is not None:
        for s in sensors.flags:
            out.append(Finding(SENSOR_CODES[s.problem], "minor", f"{s.family} sensor: {s.detail}",
                               s.sensor.module, s.sensor.cell))  # fmt: skip
    if pack is not None and pack.bias_v is not None and abs(pack.bias_v) > tol.pack_bias_v:
        out.append(Finding("pack_voltage_bias", "minor", f"pack voltage {pack.bias_v:+.2f} V from the sum of the "
                           f"cells (residual {pack.residual_v:.2f} V)"))  # fmt: skip
    if soc is not None and soc.drift_pct_per_day is not None and abs(soc.drift_pct_per_day) > tol.soc_drift_pct_per_day:
        out.append(Finding("soc_drift", "minor", f"BMS SoC drifts {soc.drift_pct_per_day:+.2f} points a day from "
                           f"the gateway's coulomb count ({soc.capacity_ah:g} Ah)"))  # fmt: skip
    return out
