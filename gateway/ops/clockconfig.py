"""The `clock:` section of gateway.yaml: the bounds of the device clock offset and host time sync alarms."""

from __future__ import annotations

from pydantic import Field, model_validator

from gateway.config.base import Strict


class ClockConfig(Strict):
    """Device clocks against the gateway's, and the host's own time synchronisation."""

    device_offset_alarm: float | None = Field(
        5.0,
        gt=0,
        description="Seconds: the alarm gateway:device_clock_offset:<device> is raised when a device's clock "
        "is further than this from the gateway's; null: no alarm (the offset is still measured)",
    )
    device_offset_hysteresis: float = Field(
        1.0,
        ge=0,
        description="Seconds: the offset alarm clears only when the offset is back within "
        "device_offset_alarm minus this (so an offset near the bound does not flap)",
    )
    host_check_interval: float = Field(
        30.0, gt=0, le=3600, description="Seconds between readings of the host's time sync state (adjtimex)"
    )
    host_unsynchronized_alarm: float | None = Field(
        900.0,
        ge=0,
        description="Seconds: the alarm gateway:host_clock_unsynchronized is raised when the host's clock has "
        "been unsynchronised this long; null: no alarm",
    )

    @model_validator(mode="after")
    def _hysteresis_below_bound(self) -> ClockConfig:
        bound = self.device_offset_alarm
        if bound is not None and self.device_offset_hysteresis >= bound:
            raise ValueError("device_offset_hysteresis must be smaller than device_offset_alarm")
        return self
