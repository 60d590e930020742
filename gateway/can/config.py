"""Configuration of a CAN source instance (`type: can`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.configbase import SourceBase


class CanSourceConfig(SourceBase):
    """One rack's traffic on a CAN bus, decoded with the DBC file of its profile."""

    type: Literal["can"] = "can"
    profile: str = Field(description="Profile name (file stem under the profiles directory)")
    interface: str = Field("socketcan", description="python-can interface: socketcan, virtual, udp_multicast, ...")
    channel: str = Field("can0", description="Channel of the interface (can0, a virtual bus name, a group)")
    bitrate: int | None = Field(None, gt=0, description="Bitrate, for interfaces that set it")
    fd: bool = Field(False, description="CAN FD")
    id_offset: int = Field(0, description="Added to every frame id of the profile (one DBC, many racks)")
