"""The device's own clock in a Modbus profile: `clock:`, its compiled plan and its time. Pure.

A profile may declare registers that hold the device's time, either seconds since 1970 in an
unsigned 32- or 64-bit value (`format: epoch`) or six registers year, month, day, hour, minute,
second (`format: ymdhms`). They are read in every cycle of the device; the time they give becomes
the `device_ts` of every sample of that cycle. A device that keeps local time declares its
`timezone` (a fixed `+01:00`, or an IANA name such as `Europe/Berlin`). A time the registers cannot
mean (zero, all ones, a month 13, a year outside 2000..2099) gives no `device_ts`.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator

from gateway.config.base import Strict
from gateway.sources.modbus.codec import ByteOrder, to_bytes
from gateway.sources.modbus.refs import RegKey

EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")
YMDHMS = ("year", "month", "day", "hour", "minute", "second")


def parse_timezone(name: str) -> dt.tzinfo:
    """`UTC`, a fixed offset `+HH:MM` / `-HH:MM`, or an IANA zone name; ValueError otherwise."""
    if name.upper() in ("UTC", "Z"):
        return dt.UTC
    m = _OFFSET.match(name)
    if m:
        sign, hours, minutes = m.groups()
        delta = dt.timedelta(hours=int(hours), minutes=int(minutes))
        if delta >= dt.timedelta(hours=24):
            raise ValueError(f"UTC offset {name!r} is not below 24 hours")
        return dt.timezone(-delta if sign == "-" else delta)
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}: expected UTC, +HH:MM, -HH:MM or an IANA name") from exc


class ClockSpec(Strict):
    """`clock:` of a Modbus profile: registers holding the device's own time."""

    format: Literal["epoch", "ymdhms"] = Field(
        description="`epoch`: seconds since 1970-01-01 in an unsigned integer; `ymdhms`: six registers year, month, "
        "day, hour, minute, second from `address` on"
    )
    address: int = Field(ge=0, description="First register of the clock (see address_base)")
    table: Literal["holding", "input"] | None = Field(None, description="Table of the clock (default: the profile's)")
    type: Literal["uint32", "uint64"] = Field("uint32", description="epoch: the integer type of the seconds")
    byte_order: ByteOrder | None = Field(None, description="epoch: byte/word order (default: the profile's)")
    year_base: int = Field(0, ge=0, description="ymdhms: added to the year register (2000 for a two-digit year)")
    timezone: str = Field(
        "UTC", description="The time zone the clock keeps: UTC, a fixed offset like +01:00, or an IANA name"
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        parse_timezone(v)
        return v

    @property
    def registers(self) -> int:
        return 6 if self.format == "ymdhms" else (2 if self.type == "uint32" else 4)


@dataclass(frozen=True, slots=True)
class ClockPlan:
    """A compiled clock: the registers to read (0-based) and how to read the time from them."""

    format: str
    keys: tuple[RegKey, ...]
    order: ByteOrder
    year_base: int
    zone: dt.tzinfo

    @property
    def label(self) -> str:
        return f"{self.keys[0].table}:{self.keys[0].address}..{self.keys[-1].address}"


def clock_plan(spec: ClockSpec | None, table: str, base: int, order: ByteOrder) -> ClockPlan | None:
    """The plan of a profile's clock; `table`, `order`: the profile's defaults, `base`: its address_base."""
    if spec is None:
        return None
    start = spec.address - base
    keys = tuple(RegKey(spec.table or table, start + i) for i in range(spec.registers))
    return ClockPlan(spec.format, keys, spec.byte_order or order, spec.year_base, parse_timezone(spec.timezone))


def clock_words(plan: ClockPlan, regs: Mapping[RegKey, int]) -> tuple[int, ...] | None:
    """The clock's registers as read this cycle; None when the cycle did not read them all."""
    words = tuple(regs.get(k, -1) for k in plan.keys)
    return None if -1 in words else words


def device_time_ns(plan: ClockPlan, words: tuple[int, ...]) -> int | None:
    """The time the clock's registers hold, ns since the epoch (UTC); None when they hold no valid time."""
    if plan.format == "epoch":
        seconds = int.from_bytes(to_bytes(words, plan.order), "big")
        try:
            wall = dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)
        except (OverflowError, OSError, ValueError):
            return None
    else:
        year, month, day, hour, minute, second = words
        try:
            wall = dt.datetime(year + plan.year_base, month, day, hour, minute, second)
        except ValueError:
            return None
    try:
        t = wall.replace(tzinfo=plan.zone).astimezone(dt.UTC)
    except (OverflowError, ValueError):
        return None
    if not EARLIEST <= t < LATEST:
        return None
    return int(t.timestamp()) * 1_000_000_000
