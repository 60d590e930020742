"""Configuration of the simulated battery rack source (`type: simulated`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from gateway.config.base import SourceBase, Strict


class FaultSpec(Strict):
    """A fault injected into the simulated rack at a time after start."""

    kind: Literal["weak_cell", "stuck_sensor", "stuck_voltage", "dropout", "contactor_open", "hot_cell"] = Field(
        description="weak_cell: low capacity, high resistance; stuck_sensor: a temperature freezes; "
        "stuck_voltage: a cell voltage reading freezes; dropout: the rack stops producing; "
        "contactor_open: the main contactors open; hot_cell: a cell heats"
    )
    at: float = Field(0.0, ge=0, description="Seconds after start when the fault begins")
    duration: float | None = Field(None, gt=0, description="Seconds the fault lasts (forever when unset)")
    module: int | None = Field(
        None, ge=1, description="1-based module of the cell or sensor; unset: `cell` counts over the whole rack"
    )
    cell: int = Field(1, ge=1, description="1-based cell (rack numbering, or in `module`); the sensor for stuck_sensor")
    severity: float = Field(1.0, gt=0, description="Strength of the fault (e.g. capacity factor divisor)")


class CellValues(Strict):
    """One cell's true capacity and resistance, given explicitly."""

    module: int = Field(ge=1, description="1-based module")
    cell: int = Field(ge=1, description="1-based cell in the module")
    capacity_ah: float | None = Field(None, gt=0, description="True capacity of the cell, Ah")
    resistance_ohm: float | None = Field(None, gt=0, description="Internal resistance of the cell, ohm")


class WeakCell(Strict):
    """An injected weak cell: its capacity multiplied by a factor below 1."""

    module: int = Field(ge=1, description="1-based module")
    cell: int = Field(ge=1, description="1-based cell in the module")
    capacity_factor: float = Field(gt=0, le=1, description="The cell's capacity times this (0.8: 20 % less)")


class HighResistanceCell(Strict):
    """An injected high-resistance cell: its resistance multiplied by a factor above 1."""

    module: int = Field(ge=1, description="1-based module")
    cell: int = Field(ge=1, description="1-based cell in the module")
    resistance_factor: float = Field(ge=1, description="The cell's resistance times this (3: three times)")


class CellModel(Strict):
    """Per-cell capacity and resistance: a spread around a mean, explicit values, injected outliers."""

    capacity_sd: float | None = Field(
        None, ge=0, le=0.5, description="Relative SD of cell capacity around `capacity_ah`; unset: from `spread`"
    )
    resistance_ohm: float = Field(0.00025, gt=0, description="Mean internal resistance of a cell, ohm")
    resistance_sd: float | None = Field(
        None, ge=0, le=2, description="Relative SD of cell resistance; unset: from `spread`"
    )
    seed: int | None = Field(None, description="Seed of the capacity and resistance draws; unset: the rack's `seed`")
    values: list[CellValues] = Field(default_factory=list, description="Explicit values per (module, cell)")
    weak: list[WeakCell] = Field(default_factory=list, description="Injected weak cells")
    high_resistance: list[HighResistanceCell] = Field(
        default_factory=list, description="Injected high-resistance cells"
    )
    soh: float | None = Field(None, gt=0, le=150, description="Fixed SoH: every cell's true capacity times soh/100, %")
    fade_per_cycle: float = Field(
        0.0, ge=0, lt=1, description="Capacity lost per equivalent full cycle (fraction of the start capacity)"
    )


class BmsModel(Strict):
    """What the simulated BMS reports, with configured errors."""

    soh_offset: float = Field(0.0, description="Reported SoH minus true SoH, points (+5: overstated)")
    soc_gain: float = Field(1.0, gt=0, description="Reported SoC = gain x counted SoC + offset + drift")
    soc_offset: float = Field(0.0, description="Constant SoC error, points")
    soc_drift_per_day: float = Field(0.0, description="SoC error growing with time, points per simulated day")
    capacity_ah: float | None = Field(
        None, gt=0, description="Reported capacity (`capacity_full`) and the BMS's coulomb count basis; unset: none"
    )


class CapacityTest(Strict):
    """The `capacity_test` current profile: CC-CV full charge, rest, full discharge, rest, partial cycles."""

    current: float | None = Field(None, gt=0, description="Charge and discharge current, A; unset: 0.5 C")
    charge_voltage: float = Field(3.55, gt=0, description="Upper cell limit: CC until a cell reaches it, then CV, V")
    cutoff_voltage: float = Field(2.8, gt=0, description="Discharge ends when the first cell reaches it, V")
    taper_current: float | None = Field(None, gt=0, description="CV ends below this current, A; unset: 0.05 C")
    rest: float = Field(1800.0, ge=0, description="Rest after each full and partial charge and discharge, s")
    partial_cycles: int = Field(2, ge=0, description="Partial cycles after each full cycle")
    partial_low: float = Field(30.0, ge=0, le=100, description="Partial cycles discharge to this mean cell SoC, %")
    partial_high: float = Field(70.0, ge=0, le=100, description="Partial cycles charge to this mean cell SoC, %")


class SimulatedSourceConfig(SourceBase):
    """A physically plausible battery rack, also the ground truth for tests and benchmarks."""

    type: Literal["simulated"] = "simulated"
    modules: int = Field(4, ge=1, le=100, description="Modules in the rack")
    cells_per_module: int = Field(12, ge=1, le=400, description="Series cells per module")
    sensors_per_module: int = Field(4, ge=0, le=100, description="Temperature sensors per module")
    capacity_ah: float = Field(280.0, gt=0, description="Nominal cell capacity in Ah")
    interval: float = Field(1.0, gt=0, description="Seconds between samples (simulated poll interval)")
    speed: float = Field(1.0, gt=0, description="Simulated seconds per real second (time lapse)")
    max_step: float = Field(
        1.0, gt=0, description="Longest model step, simulated s: a longer interval x speed is split into equal steps"
    )
    clock: Literal["wall", "simulated"] = Field(
        "wall", description="Sample times: wall (the real time) or simulated (start time + simulated seconds)"
    )
    initial_soc: float = Field(60.0, ge=0, le=100, description="State of charge at start, %")
    current_profile: Literal["sine", "capacity_test"] = Field(
        "sine", description="Current profile: sine (current_amplitude, current_period) or capacity_test"
    )
    current_amplitude: float = Field(100.0, ge=0, description="Peak of the charge/discharge current profile, A")
    current_period: float = Field(600.0, gt=0, description="Period of the current profile, simulated seconds")
    capacity_test: CapacityTest = Field(default_factory=CapacityTest, description="The capacity_test profile")
    ambient: float = Field(25.0, description="Ambient temperature, °C")
    spread: float = Field(0.02, ge=0, le=0.5, description="Cell-to-cell capacity and resistance spread (fraction)")
    seed: int = Field(1, description="Random seed; the same seed gives the same rack")
    cells: CellModel = Field(default_factory=CellModel, description="Per-cell capacity, resistance and fade")
    bms: BmsModel = Field(default_factory=BmsModel, description="The simulated BMS's reports and their errors")
    pack_voltage_bias: float = Field(0.0, description="Reported rack voltage minus the sum of the cells, V")
    faults: list[FaultSpec] = Field(default_factory=list, description="Faults to inject")
    truth_file: Path | None = Field(
        None,
        description="Write every produced sample as JSON lines here (ground truth for tests); the model's "
        "parameters and events go beside it (<stem>.model.json)",
    )
