"""Configuration of a CAN source instance (`type: can`) and of CAN profiles (`protocol: can`).

A CAN profile names a DBC file (relative to `site.dbc_dir`) and maps its signals to catalog
quantities; an instance names the profile plus what differs per rack (bus, id offset, rack tag).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway import catalog
from gateway.config.base import ReconnectingSource, Strict
from gateway.config.profiles import ArraySpec, PointBase


class CanSourceConfig(ReconnectingSource):
    """One rack's traffic on a CAN bus, decoded with the DBC file of its profile."""

    type: Literal["can"] = "can"
    profile: str = Field(description="Profile name (file stem under the profiles directory)")
    interface: str = Field("socketcan", description="python-can interface: socketcan, virtual, udp_multicast, ...")
    channel: str = Field("can0", description="Channel of the interface (can0, a virtual bus name, a group)")
    bitrate: int | None = Field(None, gt=0, description="Bitrate, for interfaces that set it")
    fd: bool = Field(False, description="CAN FD")
    listen_only: bool = Field(
        True,
        description="Open the controller listen-only (no acknowledge, no error frame: the gateway cannot disturb "
        "the bus) where the interface can; socketcan sets it with `ip link ... listen-only on`. false on a bus "
        "where the gateway must acknowledge (the BMS's only other node)",
    )
    id_offset: int = Field(0, description="Added to every frame id of the profile (one DBC, many racks)")
    source_address: int | None = Field(
        None, ge=0, le=255, description="J1939 profiles: accept only frames from this source address"
    )
    accept_all: bool = Field(
        False, description="Receive every frame (no acceptance filters), so ids no profile decodes are counted"
    )
    loopback_only: bool = Field(
        True, description="udp_multicast: keep the traffic on the loopback interface (127.0.0.1)"
    )
    port: int | None = Field(None, ge=1, le=65535, description="udp_multicast: UDP port (default 43113)")
    batch_window: float = Field(0.02, gt=0, le=5, description="Seconds of frames handed on as one batch")
    batch_max_frames: int = Field(2000, ge=1, description="Most frames in one batch")
    receive_buffer: int = Field(
        200_000, ge=1, description="Frames held while the pipeline is busy; beyond it frames are dropped (counted)"
    )


class MessageOverride(Strict):
    """Per-message settings that the DBC lacks or gets wrong."""

    cycle_time: float | None = Field(
        None, ge=0, description="Seconds between frames (overrides GenMsgCycleTime); 0: not supervised"
    )
    stale_after_cycles: float | None = Field(None, gt=0, description="Missed cycles before the values go stale")
    source_address: int | None = Field(
        None,
        ge=0,
        le=255,
        description="J1939 profiles: take this message only from this source address (the same PGN from "
        "several source addresses: one DBC message per address); overrides the rack's source_address",
    )


def _sentinel(value: int | float | str) -> int | float:
    """A `missing` entry as a number: a string is an integer literal (hex "0xFFFF", decimal), kept exact."""
    if not isinstance(value, str):
        return value
    try:
        return int(value.replace("_", ""), 0)
    except ValueError:
        raise ValueError(f'{value!r} is not an integer (e.g. 65535 or "0xFFFF")') from None


class CanPoint(PointBase):
    """One DBC signal (or a family of them) mapped to a catalog quantity."""

    signal: str = Field(
        description="Signal name in the DBC; with `array:` a template such as `CellVoltage_{i:03d}` "
        "(i = element index * stride + index_start)"
    )
    message: str | None = Field(None, description="Message name, when the signal name is not unique in the DBC")
    index_start: int = Field(0, description="Value of {i} for the first element of an array template")
    mux_step: int | None = Field(
        None,
        ge=1,
        description="Multiplexed arrays: element index = mux value * mux_step + mux_slot "
        "(one signal name under many mux values)",
    )
    mux_slot: int = Field(0, ge=0, description="Position of this signal within its mux group")
    scale: float | None = Field(
        None, description="Factor applied after the DBC's scaling (default: converts mV→V, kW→W, kWh→Wh, ...)"
    )
    offset: float = Field(0.0, description="Added after scale")
    invert: bool = Field(False, description="Negate the value (a BMS with the opposite current sign)")
    missing: list[int | float | str] = Field(
        default_factory=list,
        description='Decoded values that mean `not available` (e.g. 65535, or "0xFFFFFFFFFFFFFFFF": integers are '
        "exact, also as hex strings): stored with quality missing, no value",
    )
    names: bool | None = Field(
        None,
        description="Store value-table entries as their names (default: yes for state quantities, no otherwise: "
        "the scaled number); true on a raw.<name> point keeps the names",
    )
    bits: dict[int, str] | None = Field(
        None,
        description="Bit number → alarm name: each set bit is `alarm.<name>` (names with a dot are kept, "
        "e.g. `warning.cell_low`)",
    )

    @field_validator("missing", mode="after")
    @classmethod
    def _exact_sentinels(cls, values: list[int | float | str]) -> list[int | float | str]:
        return [_sentinel(v) for v in values]

    @model_validator(mode="after")
    def _consistent(self) -> CanPoint:
        if self.array is not None and self.mux_step is None and "{" not in self.signal:
            raise ValueError(
                "an array needs a signal template with {i} (e.g. CellVoltage_{i:03d}) or mux_step "
                "(one signal repeated under each mux value)"
            )
        if self.mux_step is not None and self.array is None:
            raise ValueError("mux_step needs `array:` (count, per_module) to number the cells")
        if self.names and not self.quantity.startswith("raw."):
            q = catalog.lookup(self.quantity)
            if q is None or q.kind not in (catalog.Kind.STATE, catalog.Kind.TEXT):
                raise ValueError(f"names: true keeps value-table names, which {self.quantity} (a number) cannot hold")
        if self.bits is not None:
            for bit in self.bits:
                if not 0 <= bit < 64:
                    raise ValueError(f"bit {bit} is outside 0..63")
        return self


class CanDeviceTime(Strict):
    """A signal that carries the device's own clock: the time of the samples of its message's frames."""

    signal: str = Field(description="Signal name in the DBC holding the device's time")
    message: str | None = Field(None, description="Message name, when the signal name is not unique in the DBC")
    unit: Literal["s", "ms", "us"] = Field("s", description="Unit of the signal's scaled value: s, ms or us")
    epoch: Literal["unix", "2000"] = Field(
        "unix", description="What the time counts from: unix (1970-01-01 UTC) or 2000 (2000-01-01 UTC)"
    )


class CanProfile(Strict):
    """A CAN device type: its DBC file and how its signals map to the catalog."""

    protocol: Literal["can"] = "can"
    description: str = Field("", description="Free text")
    nominal_capacity_ah: float | None = Field(
        None, gt=0, description="Nominal capacity of a rack of this type, Ah (`bms-gateway assess`: SoH against it)"
    )
    dbc: str = Field(
        description="DBC file: a site profile's relative to site.dbc_dir (then the library's), a shipped "
        "profile's in the library"
    )
    lenient: bool = Field(False, description="Load a DBC that strict loading rejects, with one warning per repair")
    j1939: bool = Field(False, description="Match 29-bit frames by PGN (priority and source address masked)")
    stale_after_cycles: float = Field(3.0, gt=0, description="Missed cycles before a message's values go stale")
    comm_loss_timeout: float = Field(
        5.0, gt=0, description="Seconds without any frame before comm_loss, for racks without cyclic messages"
    )
    messages: dict[str, MessageOverride] = Field(
        default_factory=dict, description="Per-message overrides by message name"
    )
    points: list[CanPoint] = Field(min_length=1, description="Signals mapped to catalog quantities")
    unmapped: Literal["ignore", "raw"] = Field(
        "ignore", description="raw: keep every unmapped signal of a mapped message as raw.<signal>"
    )
    device_time: list[CanDeviceTime] = Field(
        default_factory=list,
        description="Timestamp signals: each gives the device time (device_ts) of the samples of its own "
        "message's frames (the message must have mapped points)",
    )


__all__ = ["ArraySpec", "CanDeviceTime", "CanPoint", "CanProfile", "CanSourceConfig", "MessageOverride"]
