"""Configuration of a Modbus TCP source instance (`type: modbus`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.configbase import SourceBase


class ModbusSourceConfig(SourceBase):
    """One Modbus device (unit id) behind a TCP endpoint; devices sharing host:port share a connection."""

    type: Literal["modbus"] = "modbus"
    profile: str = Field(description="Profile name (file stem under the profiles directory)")
    host: str = Field(description="Host name or IP address of the Modbus TCP endpoint")
    port: int = Field(502, ge=1, le=65535, description="TCP port")
    unit_id: int = Field(1, ge=0, le=255, description="Modbus unit id (slave id) of the device")
    interval: float | None = Field(None, gt=0, description="Poll interval in seconds; overrides the profile's")
    timeout: float = Field(1.0, gt=0, description="Seconds to wait for a response")
    retries: int = Field(1, ge=0, le=10, description="Retries of a failed request within one cycle")
