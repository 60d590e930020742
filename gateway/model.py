"""The canonical data model: Sample, Batch, Quality, DeviceStatus.

A `Sample` is a plain tuple (a NamedTuple) so that sources can make hundreds of thousands of them a
second and the outbox can encode them without per-field work. Tags that are the same for a whole
batch (site, source, device) live on the `Batch`.

Timestamps are integers: nanoseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import enum
import hashlib
import time
from collections.abc import Sequence
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


LayoutKey = tuple[str, str, str, int | None, int | None]  # quantity, unit, rack, module, cell


class Layout:
    """The fixed shape of a source's sample batches, so that consumers can prepare work once per shape.

    A source that sets `Batch.layout` guarantees, for that batch:
    - `len(batch.samples) == len(layout.keys)`, and for every i, sample i's (quantity, unit, rack,
      module, cell) is `layout.keys[i]`; only ts, value, quality and device_ts vary from batch to batch;
    - the samples of each segment `(start, stop)` in `layout.segments` share one `ts` (one Modbus
      block read, one CAN frame); the segments cover the samples in order.

    A source keeps one Layout object for as long as its shape holds. Identity is what consumers key
    their caches on (`layout.id`, unique in the process; `digest` is the same for equal content, for
    storage). Anything that filters or reorders a batch's samples must drop the layout.
    """

    __slots__ = ("__weakref__", "digest", "id", "keys", "segments")
    _next_id = 0

    def __init__(self, keys: Sequence[LayoutKey], segments: Sequence[tuple[int, int]]) -> None:
        self.keys: tuple[LayoutKey, ...] = tuple(keys)
        self.segments: tuple[tuple[int, int], ...] = tuple(segments)
        Layout._next_id += 1
        self.id = Layout._next_id
        self.digest = hashlib.sha256(repr((self.keys, self.segments)).encode()).hexdigest()[:32]

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"Layout(id={self.id}, samples={len(self.keys)}, segments={len(self.segments)})"

    def matches(self, samples: Sequence[Sample]) -> bool:
        """Whether the samples fit this layout (a check for tests and debugging; O(n))."""
        if len(samples) != len(self.keys):
            return False
        if any((s[1], s[3], s[5], s[6], s[7]) != k for s, k in zip(samples, self.keys, strict=True)):
            return False
        return all(len({s[0] for s in samples[a:b]}) <= 1 for a, b in self.segments) and _covers(
            self.segments, len(samples)
        )


def _covers(segments: Sequence[tuple[int, int]], n: int) -> bool:
    at = 0
    for a, b in segments:
        if a != at or b < a:
            return False
        at = b
    return at == n


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
    # The batch's shape, when its source vouches for it (see `Layout`); None otherwise.
    layout: Layout | None = None

    def __len__(self) -> int:
        return len(self.samples) + len(self.records)


def now_ns() -> int:
    return time.time_ns()
