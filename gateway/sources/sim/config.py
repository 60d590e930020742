"""Configuration of the simulated battery rack source (`type: simulated`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from gateway.config.base import SourceBase, Strict


class FaultSpec(Strict):
    """A fault injected into the simulated rack at a time after start."""

    kind: Literal["weak_cell", "stuck_sensor", "dropout", "contactor_open", "hot_cell"] = Field(
        description="weak_cell: low capacity, high resistance; stuck_sensor: a temperature freezes; "
        "dropout: the rack stops producing; contactor_open: the main contactors open; hot_cell: a cell heats"
    )
    at: float = Field(0.0, ge=0, description="Seconds after start when the fault begins")
    duration: float | None = Field(None, gt=0, description="Seconds the fault lasts (forever when unset)")
    cell: int = Field(1, ge=1, description="1-based cell (rack numbering) the fault affects")
    severity: float = Field(1.0, gt=0, description="Strength of the fault (e.g. capacity factor divisor)")


class SimulatedSourceConfig(SourceBase):
    """A physically plausible battery rack, also the ground truth for tests and benchmarks."""

    type: Literal["simulated"] = "simulated"
    modules: int = Field(4, ge=1, le=100, description="Modules in the rack")
    cells_per_module: int = Field(12, ge=1, le=400, description="Series cells per module")
    sensors_per_module: int = Field(4, ge=0, le=100, description="Temperature sensors per module")
    capacity_ah: float = Field(280.0, gt=0, description="Nominal cell capacity in Ah")
    interval: float = Field(1.0, gt=0, description="Seconds between samples (simulated poll interval)")
    speed: float = Field(1.0, gt=0, description="Simulated seconds per real second (time lapse)")
    initial_soc: float = Field(60.0, ge=0, le=100, description="State of charge at start, %")
    current_amplitude: float = Field(100.0, ge=0, description="Peak of the charge/discharge current profile, A")
    current_period: float = Field(600.0, gt=0, description="Period of the current profile, simulated seconds")
    ambient: float = Field(25.0, description="Ambient temperature, °C")
    spread: float = Field(0.02, ge=0, le=0.5, description="Cell-to-cell capacity and resistance spread (fraction)")
    seed: int = Field(1, description="Random seed; the same seed gives the same rack")
    faults: list[FaultSpec] = Field(default_factory=list, description="Faults to inject")
    truth_file: Path | None = Field(
        None, description="Write every produced sample as JSON lines here (ground truth for tests)"
    )
