"""The Modbus profile model (`protocol: modbus`): tables, addresses, data types, orders, bit fields.

Addresses: `address_base: 0` (the default) means the numbers in the profile are the protocol
addresses sent on the wire (the first register is 0). Many device manuals count from 1 (register
"40001" or "1" is protocol address 0): write those numbers as they are and set `address_base: 1`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway import catalog
from gateway.config.base import Strict
from gateway.config.profiles import PointBase
from gateway.sources.modbus.arrays import ModbusArray, beyond_address_space, module_overlap
from gateway.sources.modbus.clock import ClockSpec
from gateway.sources.modbus.codec import WIDTH, ByteOrder, DataType
from gateway.sources.modbus.refs import ScaleRegister

Table = Literal["holding", "input", "coil", "discrete"]
REGISTER_TABLES: tuple[str, ...] = ("holding", "input")
BIT_TABLES: tuple[str, ...] = ("coil", "discrete")
UNSIGNED: tuple[str, ...] = ("uint16", "uint32", "uint64")


class ModbusPoint(PointBase):
    """One point (or, with `array:`, a run of points) of a Modbus device."""

    table: Table | None = Field(None, description="holding, input, coil or discrete (default: the profile's)")
    address: int = Field(ge=0, description="Address of the first register or bit (see address_base)")
    type: DataType = Field(
        "uint16",
        description="int16, uint16, int32, uint32, int64, uint64, float32, float64, string, bit (one bit of a "
        "register), bool (a coil or discrete input)",
    )
    registers: int | None = Field(
        None, ge=1, le=125, description="Width in registers: required for string, must match the type otherwise"
    )
    bit: int | None = Field(None, ge=0, le=15, description="Bit number (0 = least significant) for type bit")
    bits: tuple[int, int] | None = Field(
        None,
        description="A multi-bit field [first, last] (inclusive, 0 = least significant) of an unsigned integer: "
        "the value is those bits as a number, e.g. [4, 5] gives 0..3 (with `states:` an enum)",
    )
    byte_order: ByteOrder | None = Field(None, description="ABCD, DCBA, BADC or CDAB (default: the profile's)")
    scale: float = Field(1.0, description="value = raw * scale + offset")
    scale_register: ScaleRegister | None = Field(
        None, description="A register holding a further scale factor: value = raw * scale * factor + offset"
    )
    offset: float = Field(0.0, description="value = raw * scale + offset")
    invert: bool = Field(False, description="Negate the value (a BMS whose current sign is the opposite)")
    missing: list[int] = Field(
        default_factory=list,
        description="Raw unsigned register values meaning 'not available' (e.g. 0xFFFF, 0x7FFF, 0x8000); "
        "NaN floats are always missing",
    )
    range: tuple[float, float] | None = Field(
        None, description="Plausible [min, max] after scaling; outside gets quality out_of_range"
    )
    flags: dict[int, str] | None = Field(
        None, description="Bit field: bit number -> alarm.<name> / warning.<name> / catalog quantity"
    )
    states: dict[int, str] | None = Field(None, description="Enum: raw value -> state name (e.g. 0: open)")
    interval: float | None = Field(None, gt=0, description="Poll interval in seconds for this point")
    array: ModbusArray | None = Field(
        None, description="Expand this entry into an array of cells or modules (`modules:` for module blocks)"
    )

    @field_validator("flags")
    @classmethod
    def _flag_names(cls, v: dict[int, str] | None) -> dict[int, str] | None:
        for bit, name in (v or {}).items():
            if not 0 <= bit <= 63:
                raise ValueError(f"flag bit {bit} is outside 0..63")
            if not catalog.is_valid(name):
                raise ValueError(f"flag {name!r} maps nowhere: expected alarm.<name>, warning.<name> or a catalog name")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ModbusPoint:
        t = self.type
        if t == "string":
            if self.registers is None:
                raise ValueError("a string needs `registers:` (its width in registers)")
        elif self.registers is not None and self.registers != WIDTH[t]:
            raise ValueError(f"{t} is {WIDTH[t]} register(s) wide, not {self.registers}")
        if (t == "bit") != (self.bit is not None):
            raise ValueError("type bit needs `bit:` (0..15), and `bit:` only goes with type bit")
        if self.flags and t not in ("uint16", "int16", "uint32", "int32", "uint64", "int64"):
            raise ValueError(f"flags need an integer type, not {t}")
        if self.table in BIT_TABLES and t != "bool":
            raise ValueError(f"the {self.table} table holds single bits: use type bool")
        if self.table in REGISTER_TABLES and t == "bool":
            raise ValueError("type bool is for coil and discrete tables; use type bit for a bit of a register")
        if self.range is not None and self.range[0] > self.range[1]:
            raise ValueError("range must be [min, max] with min <= max")
        self._check_bits()
        if self.scale_register is not None and (t not in WIDTH or t in ("bit", "bool") or self.flags or self.states):
            raise ValueError("scale_register goes with a number (an integer or float type without flags or states)")
        problem = beyond_address_space(self.array, self.width) or module_overlap(self.array, self.width)
        if problem:
            raise ValueError(problem)
        return self

    def _check_bits(self) -> None:
        if self.bits is None:
            return
        first, last = self.bits
        if self.type not in UNSIGNED:
            raise ValueError(f"bits need an unsigned integer type (uint16, uint32, uint64), not {self.type}")
        if not 0 <= first <= last < 16 * WIDTH[self.type]:
            raise ValueError(f"bits must be [first, last] with 0 <= first <= last < {16 * WIDTH[self.type]}")
        if self.flags:
            raise ValueError("a multi-bit field has no flags: declare the other bits as points of their own")
        top = (1 << (last - first + 1)) - 1
        beyond = sorted(k for k in self.states or {} if not 0 <= k <= top)
        if beyond:
            raise ValueError(f"states {beyond} cannot occur in bits [{first}, {last}] (values 0..{top})")

    @property
    def width(self) -> int:
        return self.registers if self.type == "string" and self.registers else WIDTH[self.type]


class PointGroup(Strict):
    """Points that share a poll interval (e.g. cell voltages every 5 s)."""

    name: str = Field(description="Name of the group (in logs and `bms-gateway modbus plan`)")
    interval: float | None = Field(None, gt=0, description="Poll interval of the group's points in seconds")
    points: list[ModbusPoint] = Field(description="The group's points")


class UnreadableRange(Strict):
    """Addresses the device refuses or that have side effects on read: no block read crosses them."""

    table: Literal["holding", "input", "coil", "discrete"] = Field("holding", description="Table of the range")
    start: int = Field(ge=0, description="First address (see address_base)")
    end: int = Field(ge=0, description="Last address, inclusive")


class ModbusProfile(Strict):
    """A Modbus device type: its points and how to read them."""

    protocol: Literal["modbus"] = "modbus"
    description: str = Field("", description="What device this profile describes")
    nominal_capacity_ah: float | None = Field(
        None, gt=0, description="Nominal capacity of a rack of this type, Ah (`bms-gateway assess`: SoH against it)"
    )
    address_base: Literal[0, 1] = Field(
        0, description="0: addresses are protocol addresses (first is 0); 1: as in manuals that count from 1"
    )
    table: Table = Field("holding", description="Default table of the points")
    byte_order: ByteOrder = Field("ABCD", description="Default byte/word order of multi-register values")
    interval: float = Field(1.0, gt=0, description="Default poll interval in seconds")
    max_registers: int = Field(125, ge=1, le=125, description="Largest register read (the protocol allows 125)")
    max_bits: int = Field(2000, ge=1, le=2000, description="Largest coil/discrete read (the protocol allows 2000)")
    max_gap: int = Field(16, ge=0, description="Unused registers (or bits) a block read may span to save a request")
    unreadable: list[UnreadableRange] = Field(default_factory=list, description="Ranges no read may touch")
    points: list[ModbusPoint] = Field(default_factory=list, description="Points polled at the default interval")
    groups: list[PointGroup] = Field(default_factory=list, description="Groups of points with their own interval")
    sunspec: bool = Field(
        False, description="Discover the SunSpec model chain (models 1, 802-805) and map it; no point list needed"
    )
    sunspec_bases: list[int] = Field(
        [40000, 0, 50000], description="Protocol addresses where the SunSpec marker is looked for, in order"
    )
    clock: ClockSpec | None = Field(
        None, description="Registers holding the device's own time: every sample of a cycle gets it as device_ts"
    )

    @model_validator(mode="after")
    def _has_points(self) -> ModbusProfile:
        if not self.sunspec and not self.points and not any(g.points for g in self.groups):
            raise ValueError("a modbus profile needs at least one point (under points: or groups:), or sunspec: true")
        return self
