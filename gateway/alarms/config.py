"""Configuration of the alarm engine."""

from __future__ import annotations

from pydantic import Field

from gateway.configbase import Strict


class AlarmsConfig(Strict):
    """The alarm engine: BMS alarm bits, interlocks and the gateway's own rules."""

    enabled: bool = Field(True, description="Evaluate alarms")
