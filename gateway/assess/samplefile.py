"""The window's samples as one Parquet file, written in row groups while the batches stream by.

One row per point of every sample batch, in the order given (the store's and the export's: by time):

| column | type | meaning |
|---|---|---|
| `ts` | timestamp[ns, UTC] | the gateway's receive time |
| `rack`, `quantity`, `unit` | dictionary string | the point's key (catalog name or `raw.<name>`) |
| `module`, `cell` | int32, null when none | |
| `value` | float64, null when no number | a value that is not a number is null here and in `text` |
| `text` | string, null unless the value is not a number | a state's name, `true`/`false` |
| `quality` | dictionary string | `good`, `stale`, `bad`, `out_of_range`, `comm_loss`, `missing` |
| `device_ts` | timestamp[ns, UTC], null when none | the device's own time |

Memory is bounded by one row group (`ROW_GROUP` rows) plus one batch: the columns of a key table are
made once per table (a bounded cache by `Keys.id`), the strings of the dictionaries once per name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from gateway.lru import LruCache
from gateway.model import QUALITIES, Batch, BatchKind, Keys

ROW_GROUP = 1 << 17  # rows per row group: about 5 MB of columns in memory at once
SHAPES_KEPT = 256  # key tables whose columns are kept for reuse
I32 = npt.NDArray[np.int32]
B1 = npt.NDArray[np.bool_]
TS = pa.timestamp("ns", tz="UTC")
NAME = pa.dictionary(pa.int32(), pa.string())
SCHEMA = pa.schema(
    [
        ("ts", TS),
        ("rack", NAME),
        ("quantity", NAME),
        ("unit", NAME),
        ("module", pa.int32()),
        ("cell", pa.int32()),
        ("value", pa.float64()),
        ("text", pa.string()),
        ("quality", pa.dictionary(pa.int8(), pa.string())),
        ("device_ts", TS),
    ]
)
_QUALITY_NAMES = pa.array([str(q) for q in QUALITIES], type=pa.string())


@dataclass(slots=True)
class SampleStats:
    """What went into the file: rows, the time span and the racks."""

    rows: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    racks: set[str] = field(default_factory=set)


class _Names:
    """A growing dictionary of strings: each name's code, and the names in code order."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.names: list[str] = []

    def code(self, name: str) -> int:
        c = self.codes.get(name)
        if c is None:
            c = self.codes[name] = len(self.names)
            self.names.append(name)
        return c


@dataclass(frozen=True, slots=True)
class _Shape:
    """The key columns of one key table."""

    rack: I32
    quantity: I32
    unit: I32
    module: I32
    module_null: B1
    cell: I32
    cell_null: B1
    racks: frozenset[str]


@dataclass(slots=True)
class _Group:
    """The columns of the row group being filled."""

    parts: dict[str, list[npt.NDArray[np.generic]]] = field(default_factory=dict)
    text: dict[int, str] = field(default_factory=dict)  # row -> the value that is not a number
    rows: int = 0

    def add(self, name: str, column: npt.NDArray[np.generic]) -> None:
        self.parts.setdefault(name, []).append(column)

    def column(self, name: str) -> npt.NDArray[np.generic]:
        return np.concatenate(self.parts[name])


class SampleWriter:
    """Write batches to a Parquet file in row groups; `close()` finishes the file."""

    def __init__(self, path: Path) -> None:
        self._writer = pq.ParquetWriter(str(path), SCHEMA, compression="zstd")
        self._names = {"rack": _Names(), "quantity": _Names(), "unit": _Names()}
        self._shapes: LruCache[int, _Shape] = LruCache(SHAPES_KEPT)
        self._group = _Group()
        self.stats = SampleStats()

    def write(self, batch: Batch) -> None:
        if batch.kind != BatchKind.SAMPLES or batch.n == 0:
            return
        shape = self._shape(batch.keys)
        g = self._group
        for name in ("rack", "quantity", "unit", "module", "module_null", "cell", "cell_null"):
            g.add(name, getattr(shape, name))
        g.add("ts", batch.ts)
        g.add("value", batch.values)
        g.add("quality", batch.quality.astype(np.int8))
        dts = batch.device_ts if batch.device_ts is not None else np.zeros(batch.n, dtype=np.int64)
        g.add("device_ts", dts)
        for i, v in (batch.objects or {}).items():
            g.text[g.rows + i] = _text(v)
        g.rows += batch.n
        self._note(batch, shape)
        if g.rows >= ROW_GROUP:
            self._flush()

    def close(self) -> None:
        if self._group.rows:
            self._flush()
        self._writer.close()

    def _note(self, batch: Batch, shape: _Shape) -> None:
        s = self.stats
        s.rows += batch.n
        lo, hi = int(batch.ts.min()), int(batch.ts.max())
        s.first_ns = lo if s.first_ns is None else min(s.first_ns, lo)
        s.last_ns = hi if s.last_ns is None else max(s.last_ns, hi)
        s.racks.update(shape.racks)

    def _shape(self, keys: Keys) -> _Shape:
        shape = self._shapes.get(keys.id)
        if shape is None:
            rows = keys.rows
            rack, quantity, unit = self._names["rack"], self._names["quantity"], self._names["unit"]
            module = np.array([-1 if k.module is None else k.module for k in rows], dtype=np.int32)
            cell = np.array([-1 if k.cell is None else k.cell for k in rows], dtype=np.int32)
            shape = _Shape(
                np.array([rack.code(k.rack) for k in rows], dtype=np.int32),
                np.array([quantity.code(k.quantity) for k in rows], dtype=np.int32),
                np.array([unit.code(k.unit) for k in rows], dtype=np.int32),
                module,
                np.array([k.module is None for k in rows], dtype=np.bool_),
                cell,
                np.array([k.cell is None for k in rows], dtype=np.bool_),
                frozenset(k.rack for k in rows),
            )
            self._shapes.put(keys.id, shape)
        return shape

    def _flush(self) -> None:
        g = self._group
        values = g.column("value")
        dts = g.column("device_ts")
        columns = [
            pa.array(g.column("ts")).cast(TS),
            *(self._dictionary(name, g.column(name)) for name in ("rack", "quantity", "unit")),
            pa.array(g.column("module"), mask=g.column("module_null")),
            pa.array(g.column("cell"), mask=g.column("cell_null")),
            pa.array(values, mask=np.isnan(values)),
            self._text(g),
            pa.DictionaryArray.from_arrays(pa.array(g.column("quality")), _QUALITY_NAMES),
            pa.array(dts, mask=dts == 0).cast(TS),
        ]
        self._writer.write_table(pa.Table.from_arrays(columns, schema=SCHEMA))
        self._group = _Group()

    @staticmethod
    def _text(g: _Group) -> pa.Array:
        if not g.text:
            return pa.nulls(g.rows, type=pa.string())
        text: list[str | None] = [None] * g.rows
        for i, v in g.text.items():
            text[i] = v
        return pa.array(text, type=pa.string())

    def _dictionary(self, name: str, codes: npt.NDArray[np.generic]) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(self._names[name].names, type=pa.string()))


def _text(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def write_samples(path: Path, batches: Iterable[Batch]) -> SampleStats:
    """Write the sample batches to `path` (Parquet, see the module docstring); what went in."""
    writer = SampleWriter(path)
    try:
        for batch in batches:
            writer.write(batch)
    finally:
        writer.close()
    return writer.stats
