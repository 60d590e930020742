"""The device's own time from CAN frames: a profile's `device_time:` signal stamps its message's samples.

A `device_time:` entry names a signal (and its message when the name is not unique), the unit of its
scaled value (s, ms, us) and its epoch (unix, or 2000-01-01). Each frame of that message gives the
samples it carries a `device_ts`: the frame's own time, read from the same frame. Other messages'
samples have none (a clock in one message says nothing certain about when another was sampled).

A time that is not valid (a short frame, a float that is not finite, before 2000 or from 2100 on:
e.g. an all-ones "not available" code) gives those samples no device time; the frame is counted as
`invalid_device_time` (`bms_gateway_can_errors`) and the rack logs one line when its message's time
turns invalid and one when it is valid again (`TimeLog`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from gateway.sources.can.config import CanDeviceTime
from gateway.sources.can.signals import F64, I64

log = structlog.get_logger("source.can")

INVALID_TIME = "invalid_device_time"  # the reason a frame with an invalid time is counted under
EPOCH_NS = {"unix": 0, "2000": 946_684_800 * 10**9}
NS_PER_UNIT = {"s": 10**9, "ms": 10**6, "us": 10**3}
EARLIEST_NS = 946_684_800 * 10**9  # 2000-01-01T00:00:00Z: an earlier device time is not believed
LATEST_NS = 4_102_444_800 * 10**9  # 2100-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class TimeRule:
    """How a message's frames carry the device's time: the signal, and its scaled value → ns (UTC)."""

    signal: str
    ns_per_unit: int
    epoch_ns: int

    @classmethod
    def of(cls, spec: CanDeviceTime) -> TimeRule:
        return cls(spec.signal, NS_PER_UNIT[spec.unit], EPOCH_NS[spec.epoch])


@dataclass(frozen=True, slots=True)
class DeviceTimes:
    """The device times of a window of frames of one message."""

    ns: I64  # per frame: ns since the Unix epoch (UTC), 0 where the frame gives none
    valid: int  # frames with a valid time
    invalid: int  # whole frames whose time is not valid
    example: float | None  # the first invalid value, as decoded (for the log line)


def device_times(phys: F64, ok: npt.NDArray[np.bool_], rule: TimeRule) -> DeviceTimes:
    """Each frame's device time from its time signal's scaled value `phys` (frames `ok` are whole)."""
    with np.errstate(invalid="ignore", over="ignore"):
        approx = phys * float(rule.ns_per_unit) + float(rule.epoch_ns)
        valid = ok & np.isfinite(approx) & (approx >= EARLIEST_NS) & (approx < LATEST_NS)
    ns = np.zeros(len(phys), dtype=np.int64)
    if valid.any():
        v = phys[valid]
        whole = np.floor(v)  # whole units exactly, the fraction rounded to the ns
        frac = np.rint((v - whole) * rule.ns_per_unit).astype(np.int64)
        ns[valid] = whole.astype(np.int64) * rule.ns_per_unit + frac + rule.epoch_ns
    bad = ok & ~valid
    n_bad = int(bad.sum())
    example = float(phys[np.flatnonzero(bad)[0]]) if n_bad else None
    return DeviceTimes(ns, int(valid.sum()), n_bad, example)


def resolve(spec: CanDeviceTime, index: Any, mapped: set[str]) -> tuple[str, TimeRule] | str:
    """(message name, rule) of a `device_time:` entry against the DBC (`SignalIndex`), or what is wrong."""
    found = index.find(spec.signal, spec.message)
    if isinstance(found, str):
        return found
    msg, sig = found
    if sig.multiplexer_ids:
        return f"signal {spec.signal!r} is multiplexed: a device time must be in every frame of its message"
    if msg.name not in mapped:
        return (
            f"message {msg.name} has no mapped points: its time would stamp no sample "
            f"(map the signal too, e.g. as raw.{spec.signal})"
        )
    return msg.name, TimeRule.of(spec)


@dataclass(slots=True)
class TimeLog:
    """One log line when a message's device time turns invalid, one when it is valid again (per rack)."""

    rack: str
    invalid: set[str] = field(default_factory=set)  # messages whose last time was not valid

    def update(self, message: str, signal: str, times: DeviceTimes) -> None:
        if times.invalid and message not in self.invalid:
            self.invalid.add(message)
            log.warning("CAN device time not valid: those samples are stored without device time",
                        source=self.rack, message=message, signal=signal, value=times.example,
                        frames=times.invalid)  # fmt: skip
        elif times.valid and not times.invalid and message in self.invalid:
            self.invalid.discard(message)
            log.info("CAN device time valid again", source=self.rack, message=message, signal=signal)
