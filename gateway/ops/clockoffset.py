"""A device's clock against the gateway's: the offset estimate and the alarm's hysteresis (pure).

The offset of a batch is the median, over its points that carry a device time, of `device_ts - ts`
(the device's time minus the gateway's receive time), in seconds: one late or garbled point does not
move it. Positive: the device's clock is ahead. The alarm is raised when |offset| exceeds the bound
and cleared only when it is back within the bound minus the hysteresis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gateway.model import Batch

NS = 1e9


@dataclass(frozen=True, slots=True)
class ClockOffset:
    """One device's clock offset as one batch measured it."""

    device: str
    offset_s: float  # device time minus receive time (positive: the device is ahead)
    points: int  # points with a device time in the batch
    ts: int  # the batch's latest receive time, ns


def batch_offset(batch: Batch) -> ClockOffset | None:
    """The clock offset of the device of a batch (None when no point has a device time)."""
    dts = batch.device_ts
    if dts is None or not batch.n:
        return None
    has = dts != 0
    n = int(has.sum())
    if not n:
        return None
    diff = dts[has] - batch.ts[has]  # int64 ns: exact before the median
    offset = float(np.median(diff)) / NS
    return ClockOffset(batch.device or batch.source, offset, n, int(batch.ts[has].max()))


def offset_alarm(active: bool, offset_s: float, bound: float | None, hysteresis: float) -> bool:
    """Whether the offset alarm is active after this offset (it was `active` before)."""
    if bound is None:
        return False
    if active:
        return abs(offset_s) > bound - hysteresis
    return abs(offset_s) > bound


def unsynchronized_alarm(since_ns: int | None, now_ns: int, bound: float | None) -> bool:
    """Whether the host's clock, unsynchronised since `since_ns` (None: synchronised), is past the bound."""
    return bound is not None and since_ns is not None and (now_ns - since_ns) / NS >= bound
