"""Configuration of a Modbus TCP source instance (`type: modbus`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import Field

from gateway.config.base import ReconnectingSource


class ModbusSourceConfig(ReconnectingSource):
    """One Modbus device (unit id) behind a TCP endpoint; devices sharing host:port share a connection."""

    RENAMED: ClassVar[Mapping[str, str]] = {"backoff_initial": "reconnect_initial", "backoff_max": "reconnect_max"}

    type: Literal["modbus"] = "modbus"
    profile: str = Field(description="Profile name (file stem under the profiles directory)")
    host: str = Field(description="Host name or IP address of the Modbus TCP endpoint")
    port: int = Field(502, ge=1, le=65535, description="TCP port")
    unit_id: int = Field(1, ge=0, le=255, description="Modbus unit id (slave id) of the device")
    interval: float | None = Field(None, gt=0, description="Poll interval in seconds; overrides the profile's")
    timeout: float = Field(1.0, gt=0, description="Seconds to wait for a response")
    retries: int = Field(1, ge=0, le=10, description="Retries of a failed request within one cycle")
    offline_after: int = Field(1, ge=1, description="Failed cycles in a row before the device is marked offline")
    pause_after_connect: float = Field(
        0.0, ge=0, description="Workaround: seconds to wait after connecting before the first request"
    )
    pause_between_requests: float = Field(
        0.0, ge=0, description="Workaround: seconds between two requests on the endpoint"
    )
    close_after_cycle: bool = Field(False, description="Workaround: close the connection after every poll cycle")
    one_request_per_point: bool = Field(
        False, description="Workaround: read every point on its own (devices that refuse block reads)"
    )
