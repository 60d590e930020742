"""The canonical data model: a columnar `Batch` over an interned key table, Quality, DeviceStatus.

A batch of samples is columns by construction:

- `keys`: a `Keys` table (`gateway.keys`), the (quantity, unit, rack, module, cell) of every point, made
  once per shape and interned (equal tables are one object, so consumers prepare their work once per
  `keys.id`);
- `ts` (int64 ns since the Unix epoch, UTC), `values` (float64; NaN is "no value"), `quality` (uint8,
  an index into `QUALITIES`) and optionally `device_ts` (int64, 0 is "none"): one entry per point;
- `objects`: the few values that are not numbers (a state's name, a boolean, text), by point index.

`Sample` is one point as a plain tuple: what a test writes by hand and what `Batch.samples()` gives back.
Timestamps are integers: nanoseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from gateway.keys import EMPTY_KEYS as EMPTY_KEYS
from gateway.keys import Key as Key
from gateway.keys import KeyRows as KeyRows
from gateway.keys import Keys as Keys
from gateway.keys import Place as Place

Value = float | int | str | bool | None
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]


class Quality(enum.StrEnum):
    """How far a value can be trusted. `good` is the only quality an EMS should act on blindly."""

    GOOD = "good"
    STALE = "stale"  # the value has not been refreshed within its expected cycle
    BAD = "bad"  # the device reported an error for this point, or it could not be decoded
    OUT_OF_RANGE = "out_of_range"  # decoded, but outside the plausible range of the profile
    COMM_LOSS = "comm_loss"  # the device stopped answering; the value is the last one known or None
    MISSING = "missing"  # the device sent a sentinel meaning "not available" (0xFFFF, NaN)


QUALITIES: tuple[Quality, ...] = tuple(Quality)  # quality code i is QUALITIES[i]
QUALITY_CODE: dict[str, int] = {str(q): i for i, q in enumerate(QUALITIES)}
GOOD = 0  # the code of Quality.GOOD


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


def _i64(n: int = 0) -> I64:
    return np.zeros(n, dtype=np.int64)


@dataclass(slots=True, eq=False)
class Batch:
    """What a source hands on at once: one Modbus poll of a device, a window of CAN frames, or records."""

    source: str
    keys: Keys = EMPTY_KEYS
    ts: I64 = field(default_factory=_i64)
    values: F64 = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    quality: U8 = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))
    device_ts: I64 | None = None  # 0 where a point has no device time; None when none has
    objects: dict[int, Value] | None = None  # values that are not numbers, by point index
    kind: BatchKind = BatchKind.SAMPLES
    device: str = ""
    status: DeviceStatus | None = None
    created: int = field(default_factory=time.time_ns)
    # Records of the other kinds (alarm events, status); JSON-serialisable dicts.
    records: list[dict[str, object]] = field(default_factory=list)
    # The finite values as text, made by the first sink that renders the batch and read by the others
    # (they render the same decoded batch): see gateway.sinks.columns.value_texts.
    texts: npt.NDArray[np.object_] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.keys.n + len(self.records)

    @property
    def n(self) -> int:
        """The number of points."""
        return self.keys.n

    def value(self, i: int) -> Value:
        """Point i's value as Python sees it: its object, its number, or None for NaN."""
        objects = self.objects
        if objects is not None and i in objects:
            return objects[i]
        v = float(self.values[i])
        return None if math.isnan(v) else v

    def samples(self) -> list[Sample]:
        """The points as `Sample`s (for tests, the command line and the few consumers that are not hot)."""
        ts = self.ts.tolist()
        vals: list[Value] = [None if v != v else v for v in self.values.tolist()]
        for i, v in (self.objects or {}).items():
            vals[i] = v
        q = [QUALITIES[c] for c in self.quality.tolist()]
        dts: list[int | None] = (
            [None] * len(ts) if self.device_ts is None else [d or None for d in self.device_ts.tolist()]
        )
        return [
            Sample(t, k.quantity, v, k.unit, qq, k.rack, k.module, k.cell, d)
            for t, k, v, qq, d in zip(ts, self.keys.rows, vals, q, dts, strict=True)
        ]

    def take(self, index: Sequence[int] | npt.NDArray[np.intp], intern: bool = True) -> Batch:
        """A batch of the points at `index`, in that order (a new key table: interned, or with `intern=False`
        for a one-off cut such as report by exception's, one that does not push shapes out of the interned)."""
        idx = np.asarray(index, dtype=np.intp)
        rows = self.keys.rows
        objects = None
        if self.objects:
            objects = {j: self.objects[int(i)] for j, i in enumerate(idx.tolist()) if int(i) in self.objects}
        at = idx.tolist()
        cut: Sequence[Key]
        if type(rows) is KeyRows:  # the shape's places, not a key made per point
            shape = rows.shape
            cut = KeyRows(tuple([shape[i] for i in at]), rows.rack) if at else ()
        else:
            cut = tuple([rows[i] for i in at])
        return Batch(
            self.source,
            Keys.of(cut) if intern else Keys(cut),
            self.ts[idx],
            self.values[idx],
            self.quality[idx],
            None if self.device_ts is None else self.device_ts[idx],
            objects or None,
            self.kind,
            self.device,
            self.status,
            self.created,
            self.records,
        )

    def segments(self) -> list[tuple[int, int]]:
        """Runs of points that share one time, in order: (start, stop) pairs covering the batch."""
        n = len(self.ts)
        if n == 0:
            return []
        cuts = (np.flatnonzero(self.ts[1:] != self.ts[:-1]) + 1).tolist()
        starts = [0, *cuts]
        return list(zip(starts, [*cuts, n], strict=True))

    @classmethod
    def of_samples(
        cls,
        source: str,
        samples: Sequence[Sample],
        kind: BatchKind = BatchKind.SAMPLES,
        device: str = "",
        status: DeviceStatus | None = None,
        created: int | None = None,
        records: list[dict[str, object]] | None = None,
    ) -> Batch:
        """A batch of these samples (their keys interned; values that are not numbers kept as objects)."""
        n = len(samples)
        values = np.empty(n, dtype=np.float64)
        objects: dict[int, Value] = {}
        for i, s in enumerate(samples):
            v = s[2]
            if v is None:
                values[i] = math.nan
            elif type(v) is float or type(v) is int:
                values[i] = v
            else:
                values[i] = math.nan
                objects[i] = v
        dts = [s[8] or 0 for s in samples]
        return cls(
            source,
            Keys.of((s[1], s[3], s[5], s[6], s[7]) for s in samples),
            np.fromiter((s[0] for s in samples), dtype=np.int64, count=n),
            values,
            np.fromiter((QUALITY_CODE[s[4]] for s in samples), dtype=np.uint8, count=n),
            np.asarray(dts, dtype=np.int64) if any(dts) else None,
            objects or None,
            kind,
            device,
            status,
            time.time_ns() if created is None else created,
            [] if records is None else records,
        )


def now_ns() -> int:
    return time.time_ns()
