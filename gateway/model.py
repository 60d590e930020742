"""The canonical data model: a columnar `Batch` over an interned key table, Quality, DeviceStatus.

A batch of samples is columns by construction:

- `keys`: a `Keys` table, the (quantity, unit, rack, module, cell) of every point, made once per shape
  and interned (equal tables are one object, so consumers prepare their work once per `keys.id`);
- `ts` (int64 ns since the Unix epoch, UTC), `values` (float64; NaN is "no value"), `quality` (uint8,
  an index into `QUALITIES`) and optionally `device_ts` (int64, 0 is "none"): one entry per point;
- `objects`: the few values that are not numbers (a state's name, a boolean, text), by point index.

`Sample` is one point as a plain tuple: what a test writes by hand and what `Batch.samples()` gives back.
Timestamps are integers: nanoseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import enum
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple, SupportsIndex, overload

import numpy as np
import numpy.typing as npt

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


class Key(NamedTuple):
    """What identifies a point: the same for every batch of one shape."""

    quantity: str
    unit: str
    rack: str = ""
    module: int | None = None
    cell: int | None = None


class Place(NamedTuple):
    """A key without its rack."""

    quantity: str
    unit: str
    module: int | None = None
    cell: int | None = None


class KeyRows(Sequence[Key]):
    """The keys of a table of one rack, each made when read from the table's shape (the rest of every key,
    one object for the tables of all racks of that shape): a 100-rack site of one profile keeps a shape of
    1,010 places, not 101,000 keys. Reads like the tuple of keys it stands for."""

    __slots__ = ("rack", "shape")

    def __init__(self, shape: tuple[Place, ...], rack: str) -> None:
        self.shape = shape
        self.rack = rack

    def __len__(self) -> int:
        return len(self.shape)

    @overload
    def __getitem__(self, i: SupportsIndex) -> Key: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Key, ...]: ...
    def __getitem__(self, i: SupportsIndex | slice) -> Key | tuple[Key, ...]:
        rack = self.rack
        if isinstance(i, slice):
            return tuple(_key((q, u, rack, m, c)) for q, u, m, c in self.shape[i])
        q, u, m, c = self.shape[i]
        return _key((q, u, rack, m, c))

    def __iter__(self) -> Iterator[Key]:
        rack = self.rack
        return (_key((q, u, rack, m, c)) for q, u, m, c in self.shape)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, KeyRows):
            return self.rack == other.rack and self.shape == other.shape
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


def _key(fields: tuple[str, str, str, int | None, int | None]) -> Key:
    return tuple.__new__(Key, fields)


class Keys:
    """The key table of a batch shape: one `Key` per point, interned (see `Keys.of`).

    `id` is unique in the process (consumers key their per-shape work on it, in bounded caches);
    `digest` is the same for equal content in every process (the store keeps each table once by it).
    The table of one rack keeps its keys as its rack and a shape shared with every rack's table of equal
    keys but for the rack (`KeyRows`); a table of several racks keeps the tuple of keys.
    """

    __slots__ = ("__weakref__", "digest", "id", "n", "rows")
    _next_id: ClassVar[int] = 0
    _interned: ClassVar[OrderedDict[Hashable, Keys]] = OrderedDict()
    _shapes: ClassVar[OrderedDict[tuple[Place, ...], tuple[Place, ...]]] = OrderedDict()
    INTERNED_MAX: ClassVar[int] = 4096  # shapes kept for reuse; past it the least recently used is forgotten
    # rack shapes kept to be shared (a site has a few profiles); a table whose shape is not kept has its own
    SHAPES_MAX: ClassVar[int] = 256

    def __init__(self, rows: Sequence[Key]) -> None:
        self.rows: Sequence[Key] = rows if type(rows) is KeyRows else Keys._compact(tuple(rows))
        self.n = len(rows)
        Keys._next_id += 1
        self.id = Keys._next_id
        self.digest = hashlib.sha256(repr(tuple(tuple(k) for k in self.rows)).encode()).hexdigest()[:32]

    @classmethod
    def _compact(cls, rows: tuple[Key, ...]) -> Sequence[Key]:
        """The rows as their rack and shared shape when they are of one rack, else as they are."""
        if not rows:
            return rows
        rack = rows[0].rack
        for k in rows:
            if k.rack != rack:
                return rows
        new = tuple.__new__
        return KeyRows(cls._shape(tuple([new(Place, (k[0], k[1], k[3], k[4])) for k in rows])), rack)

    @classmethod
    def _shape(cls, shape: tuple[Place, ...]) -> tuple[Place, ...]:
        """The one object of equal shapes (while it is kept: bounded as the tables are)."""
        known = cls._shapes.get(shape)
        if known is None:
            known = cls._shapes[shape] = shape
            if len(cls._shapes) > cls.SHAPES_MAX:
                cls._shapes.popitem(last=False)
        else:
            cls._shapes.move_to_end(shape)
        return known

    @classmethod
    def of(cls, rows: Iterable[Sequence[object]]) -> Keys:
        """The interned table of these keys (equal content gives the same object while it is kept)."""
        if type(rows) is KeyRows:
            compact: Sequence[Key] = KeyRows(cls._shape(rows.shape), rows.rack)
        else:
            compact = cls._compact(tuple(r if type(r) is Key else Key(*r) for r in rows))  # type: ignore[arg-type]
        name: Hashable = (compact.rack, compact.shape) if type(compact) is KeyRows else compact
        table = cls._interned.get(name)
        if table is None:
            table = cls._interned[name] = Keys(compact)
            if len(cls._interned) > cls.INTERNED_MAX:
                cls._interned.popitem(last=False)
        else:
            cls._interned.move_to_end(name)
        return table

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"Keys(id={self.id}, points={self.n})"


EMPTY_KEYS = Keys.of(())


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
