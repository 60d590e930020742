"""The canonical data model: Sample, Batch, Quality, DeviceStatus.

A `Sample` is a plain tuple (a NamedTuple) so that sources can make hundreds of thousands of them a
second and the outbox can encode them without per-field work. Tags that are the same for a whole
batch (site, source, device) live on the `Batch`.

Timestamps are integers: nanoseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import NamedTuple

Value = float | int | str | bool | None


class Quality(enum.StrEnum):
    """How far a value can be trusted. `good` is the only quality an EMS should act on blindly."""

    GOOD = "good"
    STALE = "stale"  # the value has not been refreshed within its expected cycle
    BAD = "bad"  # the device reported an error for this point, or it could not be decoded
    OUT_OF_RANGE = "out_of_range"  # decoded, but outside the plausible range of the profile
    COMM_LOSS = "comm_loss"  # the device stopped answering; the value is the last one known or None
    MISSING = "missing"  # the device sent a sentinel meaning "not available" (0xFFFF, NaN)


class Sample(NamedTuple):
    """One reading of one quantity at one time."""

    ts: int  # gateway receive time, ns since epoch (UTC)
    quantity: str  # catalog name, or raw.<name>
    value: Value
    unit: str
    quality: str = Quality.GOOD
    rack: str = ""
    module: int | None = None
    cell: int | None = None
    device_ts: int | None = None  # the device's own time, when it reports one


class DeviceState(enum.StrEnum):
    STARTING = "starting"
    ONLINE = "online"
    DEGRADED = "degraded"  # answering, but some points fail
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A change of a device's communication state; carried on the batch that observed it."""

    device: str
    state: DeviceState
    reason: str = ""
    ts: int = 0


class BatchKind(enum.StrEnum):
    SAMPLES = "samples"
    ALARM = "alarm"  # alarm events, see gateway.alarms
    STATUS = "status"  # gateway/device status records


@dataclass(slots=True)
class Batch:
    """What a source hands on at once: one Modbus poll of a device, or a window of CAN frames."""

    source: str
    samples: list[Sample]
    kind: BatchKind = BatchKind.SAMPLES
    device: str = ""
    status: DeviceStatus | None = None
    created: int = field(default_factory=time.time_ns)
    # Free-form records for non-sample kinds (alarm events, status); JSON-serialisable dicts.
    records: list[dict[str, object]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples) + len(self.records)


def now_ns() -> int:
    return time.time_ns()
