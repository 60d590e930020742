"""The JSON report of `bms-gateway assess --json`: its schema, as pydantic models (`assess --schema` prints it).

The contract (stable): `racks[]`, each with `rack`, `completeness.coverage`, `capacity.independent_ah`,
`capacity.bms_soh_pct`, `capacity.independent_soh_pct`, `pack_voltage.bias_v` and `findings[]` (each
`code`, `severity`, `message`, `module`, `cell`). Fields may be added; none of these changes. A figure
the data does not support is null, and the section's `insufficient` says why (never a guess).
Times are ISO 8601 UTC with the same instant in ns beside them (`*_ns`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT: Literal["bms-gateway-assessment"] = "bms-gateway-assessment"
VERSION = 1


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


def _why() -> Any:
    return Field(None, description="Why a figure of this section is null (the data does not support it)")


class Span(Model):
    """A stretch of time."""

    start: str | None = Field(description="ISO 8601 UTC")
    end: str | None = Field(description="ISO 8601 UTC (exclusive)")
    start_ns: int | None = Field(description="ns since the Unix epoch")
    end_ns: int | None = Field(description="ns since the Unix epoch")


class Gap(Span):
    seconds: float = Field(description="Length of the gap, s")


class Limits(Model):
    """What full and empty mean for this rack, and where the limits come from."""

    full_v: float = Field(description="Upper cell voltage: the rack is full when its highest cell reaches it")
    taper_v: float = Field(description="Highest cell at or above this with a charge below C/20: full (CV taper)")
    empty_v: float = Field(description="Cutoff: the rack is empty when its lowest cell reaches it")
    margin_v: float = Field(description="A cell this close to full_v or empty_v is at it")
    margin_source: str | None = Field(
        None, description="Where the margin comes from (option, the sample period for hard limits, none)"
    )
    source: str = Field(description="Where the limits come from (option, simulated source, alarm rules, defaults)")


class Settings(Model):
    period_s: float = Field(description="Expected sample period, s (the time grid of the assessment)")
    period_source: str = Field(description="option, configuration or inferred from the data")
    nominal_ah: float | None = Field(description="Nominal capacity, Ah")
    nominal_source: str | None = Field(description="option, profile or simulated source; null: none known")
    limits: Limits


class Completeness(Model):
    coverage: float | None = Field(description="Good samples present / expected, 0..1")
    expected_steps: int
    good_steps: float
    gap_count: int
    gap_seconds: float
    comm_loss_seconds: float
    stale_seconds: float
    gaps: list[Gap] = Field(description="The first 1000 gaps")
    insufficient: str | None = _why()


class Discharge(Span):
    ah: float = Field(description="Charge delivered from full to the first cell's cutoff, Ah")


class PartialCycles(Model):
    ah: float | None = Field(description="Capacity from partial cycles between rest points through the OCV table: "
                             "median of the estimates, Ah")  # fmt: skip
    estimates: int = Field(description="Pairs of rest points that gave an estimate")
    spread_ah: float | None = Field(description="Largest minus smallest estimate, Ah")
    rest_points: int = Field(description="Rests long enough to read the SoC from the OCV table")
    skipped: dict[str, int] = Field(description="Pairs left out by reason: break (a hole in the current record), "
                                    "shallow (|ΔSoC| too small), flat (relaxed voltages too close: OCV too flat), "
                                    "opposite (charge and ΔSoC disagree in sign)")  # fmt: skip
    ocv_table: str | None = Field(description="The OCV table's file")
    insufficient: str | None = _why()


class Capacity(Model):
    independent_ah: float | None = Field(description="Usable capacity measured from the data (median of discharges)")
    independent_soh_pct: float | None = Field(description="independent_ah / nominal × 100")
    nominal_ah: float | None
    bms_soh_pct: float | None = Field(description="SoH the BMS reported (median over the window)")
    bms_capacity_ah: float | None = Field(description="Full capacity the BMS reported (median over the window)")
    soh_difference_pct: float | None = Field(description="BMS SoH minus independent SoH, points")
    verdict: Literal["consistent", "soh_overstated", "soh_understated"] | None
    discharges: list[Discharge]
    incomplete_discharges: int
    insufficient: str | None = _why()
    verdict_insufficient: str | None = Field(None, description="Why there is no verdict")
    partial_cycles: PartialCycles | None = Field(None, description="Usable capacity from partial cycles between "
                                                 "rest points (needs an OCV table)")  # fmt: skip


class CellRow(Model):
    module: int | None
    cell: int | None
    relative_capacity: float | None = Field(description="Capacity / the median cell's")
    resistance_mohm: float | None = Field(description="Internal resistance (median over current steps), mΩ")
    relative_resistance: float | None = Field(description="Resistance / the median cell's")
    end_of_discharge_v: float | None = Field(description="Voltage at the end of the last discharge")
    end_of_charge_v: float | None = Field(description="Voltage at the end of the last charge")


class CellRef(Model):
    module: int | None
    cell: int | None


class Cells(Model):
    count: int
    weak: list[CellRef]
    high_resistance: list[CellRef]
    current_steps: int = Field(description="Current steps the resistances come from")
    discharges: int = Field(description="Discharges the relative capacities come from")
    table: list[CellRow]
    capacity_insufficient: str | None = None
    resistance_insufficient: str | None = None


class SensorFlag(Model):
    family: Literal["cell_voltage", "cell_temperature"]
    module: int | None
    cell: int | None
    problem: Literal["stuck", "jump", "out_of_family"]
    detail: str


class Sensors(Model):
    flags: list[SensorFlag]
    blocks: int = Field(description="Blocks of the window judged")
    insufficient: str | None = _why()


class PackVoltage(Model):
    bias_v: float | None = Field(description="Median of pack voltage minus the sum of the cells, V")
    residual_v: float | None = Field(description="Robust standard deviation of that difference, V")
    samples: int
    insufficient: str | None = _why()


class SocDrift(Model):
    drift_pct_per_day: float | None = Field(description="BMS SoC minus the gateway's coulomb count, points/day")
    capacity_ah: float | None = Field(description="The capacity the count used")
    capacity_source: Literal["bms_capacity", "nominal", "given"] | None = Field(
        description="bms_capacity: the full capacity the BMS reported (median), its own count's basis; nominal"
    )
    segments: int
    hours: float
    insufficient: str | None = _why()


class EnergyCycle(Span):
    kwh_in: float
    kwh_out: float


class Energy(Model):
    kwh_in: float
    kwh_out: float
    ah_in: float
    ah_out: float
    equivalent_full_cycles: float | None = Field(description="Ah out / capacity (independent, else nominal)")
    round_trip_efficiency: float | None = Field(description="kWh out / kWh in over whole cycles")
    cycles: list[EnergyCycle]
    incomplete_seconds: float = Field(description="Breaks in the record: energy there is unknown")
    insufficient: str | None = _why()


class OperatorAction(Model):
    time: str
    ts: int
    user: str
    alarm_id: str
    previous: str
    state: str
    reason: str | None


class AlarmHistory(Model):
    """The rack's alarms in the window, from the alarm journal."""

    raised: dict[str, int] = Field(description="Alarms raised (normal to active) by severity")
    seconds_in_alarm: dict[str, float] = Field(description="Time alarms of each severity were in view, s")
    in_view_at_end: int = Field(description="Alarms not normal at the window's end")
    operator_actions: list[OperatorAction] = Field(description="Who acknowledged or shelved what (the first 1000)")
    insufficient: str | None = _why()


class Finding(Model):
    code: str = Field(description="soh_overstated, soh_understated, weak_cell, high_resistance_cell, stuck_sensor, "
                      "sensor_jump, sensor_out_of_family, pack_voltage_bias, soc_drift, low_coverage, "
                      "journal_not_intact")  # fmt: skip
    severity: Literal["major", "minor", "warning"]
    message: str
    module: int | None = None
    cell: int | None = None


class Rack(Model):
    rack: str
    settings: Settings
    window: Span = Field(description="The window assessed (the one asked for, else the first to the last sample)")
    completeness: Completeness
    capacity: Capacity
    cells: Cells
    sensors: Sensors
    pack_voltage: PackVoltage
    soc_drift: SocDrift
    energy: Energy
    alarms: AlarmHistory
    findings: list[Finding]


class Journal(Model):
    """The alarm journal's hash-chain check (the whole chain, not only the window)."""

    path: str | None
    entries: int
    intact: bool | None
    problems: list[str] = Field(description="The first 20 problems found")
    head_seq: int | None
    head_hash: str | None = Field(description="SHA-256 chain hash of the last entry")
    insufficient: str | None = _why()


class InputInfo(Model):
    kind: Literal["store", "export"]
    path: str
    skipped_lines: int = Field(description="Export lines that are not samples (counted, the first named)")
    errors: list[str] = Field(description="The first skipped lines, each named file:line")
    damaged_rows: dict[str, str] = Field(description="Store rows that cannot be decoded, by row id (seq)")
    late_points: int = Field(description="Points older than the chunk being filled (out of order), left out")
    unknown_points: int = Field(description="Points of cells first seen after the first chunk, left out")


class Report(Model):
    """bms-gateway assessment report."""

    format: Literal["bms-gateway-assessment"] = FORMAT
    version: int = VERSION
    generated: str = Field(description="When the report was made, ISO 8601 UTC")
    gateway_version: str
    window: Span = Field(description="The window asked for (null ends: open)")
    input: InputInfo
    journal: Journal
    racks: list[Rack]
