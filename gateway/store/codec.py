"""How the outbox stores a batch: two payload formats, both read forever.

- **JSON** (every batch; the only format before layouts): one document with the batch's fields and one
  9-field list per sample. Its first byte is `{`.
- **Compact** (a `samples` batch whose source vouched for its shape with a `Layout`): the layout is
  stored once (the outbox's `layouts` table, by `layout.digest`); a row holds only the timestamp of
  each segment, the values, the qualities (one byte each, or nothing when all are good) and the
  device times (nothing when there are none). It is a pickle (protocol 5, first byte 0x80) of plain
  values only (str, int, float, bool, None, bytes, tuples and lists of them), read back by an
  unpickler that refuses every global, so a stored row can never name code to run.

The compact format is used only when the batch is verified to fit its layout (keys per sample, one
ts per segment, plain value types): a batch that does not is stored as JSON, so a wrong layout never
alters data. A compact row decodes to the same samples as the JSON row of the same batch would
(equal values of the same types), with `Batch.layout` set to the process's Layout for that digest.
"""

from __future__ import annotations

import io
import json
import pickle
from collections import OrderedDict
from collections.abc import Sequence
from itertools import repeat
from typing import Any

from gateway.model import Batch, BatchKind, DeviceState, DeviceStatus, Layout, LayoutKey, Quality, Sample, Value

COMPACT_VERSION = 2
PROTOCOL = 5
GOOD = str(Quality.GOOD)
QUALITY_NAMES: tuple[str, ...] = tuple(str(q) for q in Quality)  # byte i of the qualities = QUALITY_NAMES[i]
QUALITY_CODES: dict[str, int] = {name: i for i, name in enumerate(QUALITY_NAMES)}
PLAIN_VALUES = frozenset({float, int, str, bool, type(None)})
_NONE_INT = frozenset({int, type(None)})
_INT = frozenset({int})

_tuple_new = tuple.__new__
_FIELDS = len(Sample._fields)
if Sample._fields != ("ts", "quantity", "value", "unit", "quality", "rack", "module", "cell", "device_ts"):
    raise ImportError("gateway.model.Sample changed: update the outbox's compact format")


# -- JSON ---------------------------------------------------------------------------------------


def encode(batch: Batch) -> bytes:
    st = batch.status
    doc = {
        "s": batch.source,
        "d": batch.device,
        "k": str(batch.kind),
        "c": batch.created,
        "st": None if st is None else [st.device, str(st.state), st.reason, st.ts],
        "r": batch.records,
        "x": batch.samples,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def decode(payload: bytes) -> Batch:
    doc = json.loads(payload)
    return Batch(
        source=doc["s"],
        device=doc["d"],
        kind=BatchKind(doc["k"]),
        created=doc["c"],
        status=_status(doc["st"]),
        records=doc["r"],
        samples=_samples(doc["x"]),
    )


def _status(st: Sequence[Any] | None) -> DeviceStatus | None:
    return None if st is None else DeviceStatus(st[0], DeviceState(st[1]), st[2], st[3])


def _samples(rows: list[list[object]]) -> list[Sample]:
    """`[Sample(*row) for row in rows]`, without the per-sample argument handling when every row is whole."""
    if set(map(len, rows)) <= {_FIELDS}:
        return [_tuple_new(Sample, row) for row in rows]
    return [Sample(*row) for row in rows]  # type: ignore[arg-type]


def is_json(payload: bytes) -> bool:
    return payload[:1] == b"{"


# -- layouts ------------------------------------------------------------------------------------


class LayoutEntry:
    """A layout prepared for the compact format: its key columns and the layout object decoded rows get."""

    __slots__ = ("cells", "layout", "modules", "n", "quantities", "racks", "segments", "units")

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.n = len(layout.keys)
        cols: list[tuple[Any, ...]] = [tuple(c) for c in zip(*layout.keys, strict=True)] if layout.keys else [()] * 5
        self.quantities, self.units, self.racks, self.modules, self.cells = cols
        self.segments = layout.segments

    def expand(self, seg_ts: Sequence[int | None]) -> list[int | None]:
        """One ts per sample from one per segment."""
        out: list[int | None] = []
        for (a, b), t in zip(self.segments, seg_ts, strict=True):
            out += [t] * (b - a)
        return out


def storable(layout: Layout) -> bool:
    """Whether the layout's content survives JSON as it is (plain str and int keys; segments covering
    the samples in order): only such layouts are stored, so a stored one is rebuilt equal."""
    at = 0
    for a, b in layout.segments:
        if type(a) is not int or type(b) is not int or a != at or b < a:
            return False
        at = b
    if at != len(layout.keys):
        return False
    for key in layout.keys:
        if type(key) is not tuple or len(key) != 5:
            return False
        q, u, r, m, c = key
        if type(q) is not str or type(u) is not str or type(r) is not str:
            return False
        if type(m) not in _NONE_INT or type(c) not in _NONE_INT:
            return False
    return True


def layout_body(layout: Layout) -> str:
    return json.dumps({"keys": layout.keys, "segments": layout.segments}, separators=(",", ":"), ensure_ascii=False)


def layout_from_body(body: str) -> Layout:
    doc = json.loads(body)
    keys: list[LayoutKey] = [(k[0], k[1], k[2], k[3], k[4]) for k in doc["keys"]]
    return Layout(keys, [(int(a), int(b)) for a, b in doc["segments"]])


class LayoutCache:
    """The process's layouts by digest, bounded by their samples in all (least recently used out): one
    Layout object per digest, so every batch decoded with a digest carries the same object as the
    batches its source appended (while the entry stays; a dropped one is rebuilt from the store)."""

    def __init__(self, max_keys: int = 400_000) -> None:
        self.max_keys = max_keys  # four 100-rack sites of 1,000 points
        self.keys = 0
        self._entries: OrderedDict[str, LayoutEntry | None] = OrderedDict()

    def for_layout(self, layout: Layout) -> LayoutEntry | None:
        """The entry for a batch's layout (None: not storable; such batches are stored as JSON)."""
        entries = self._entries
        digest = layout.digest
        try:
            entry = entries[digest]
        except KeyError:
            entry = LayoutEntry(layout) if storable(layout) else None
            self._put(digest, entry)
            return entry
        entries.move_to_end(digest)
        return entry

    def get(self, digest: str) -> LayoutEntry | None:
        entry = self._entries.get(digest)
        if entry is not None:
            self._entries.move_to_end(digest)
        return entry

    def add(self, digest: str, layout: Layout) -> LayoutEntry:
        """A layout read back from a store (this process had not seen its digest)."""
        entry = self.get(digest)
        if entry is None:
            entry = LayoutEntry(layout)
            self._put(digest, entry)
        return entry

    def _put(self, digest: str, entry: LayoutEntry | None) -> None:
        old = self._entries.pop(digest, None)
        self.keys += (entry.n if entry else 0) - (old.n if old else 0)
        self._entries[digest] = entry
        while len(self._entries) > 1 and self.keys > self.max_keys:
            _, gone = self._entries.popitem(last=False)
            self.keys -= gone.n if gone else 0

    def __len__(self) -> int:
        return len(self._entries)


LAYOUTS = LayoutCache()


# -- compact ------------------------------------------------------------------------------------


def encode_compact(batch: Batch, entry: LayoutEntry) -> bytes | None:
    """The compact payload of a batch that fits `entry` exactly; None when it does not (store it as JSON)."""
    samples = batch.samples
    n = entry.n
    if len(samples) != n or n == 0 or batch.records or batch.kind != BatchKind.SAMPLES:
        return None
    cols = tuple(zip(*samples, strict=True))
    if len(cols) != _FIELDS:
        return None
    ts, quantities, values, units, qualities, racks, modules, cells, device_ts = cols
    if (
        quantities != entry.quantities
        or units != entry.units
        or racks != entry.racks
        or modules != entry.modules
        or cells != entry.cells
    ):
        return None
    seg_ts = [ts[a] if a < b else None for a, b in entry.segments]
    if set(map(type, ts)) != _INT or tuple(entry.expand(seg_ts)) != ts:
        return None
    if not set(map(type, values)) <= PLAIN_VALUES:
        return None
    if qualities.count(GOOD) == n:
        codes: bytes | None = None
    else:
        try:
            codes = bytes(map(QUALITY_CODES.__getitem__, qualities))
        except (KeyError, TypeError):
            return None
    if device_ts.count(None) == n:
        dts: tuple[int | None, ...] | None = None
    elif set(map(type, device_ts)) <= _NONE_INT:
        dts = device_ts
    else:
        return None
    st = batch.status
    status = None
    if st is not None:
        status = (st.device, str(st.state), st.reason, st.ts)
        if type(st.device) is not str or type(st.reason) is not str or type(st.ts) is not int:
            return None
    if type(batch.source) is not str or type(batch.device) is not str or type(batch.created) is not int:
        return None
    doc = (COMPACT_VERSION, entry.layout.digest, batch.source, batch.device, batch.created, status, seg_ts,
           values, codes, dts)  # fmt: skip
    return pickle.dumps(doc, PROTOCOL)


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a stored row names {module}.{name}: refused")


def load_compact(payload: bytes) -> tuple[Any, ...]:
    """The stored tuple of a compact payload (ValueError when it is not one)."""
    try:
        doc = _PlainUnpickler(io.BytesIO(payload)).load()
    except Exception as exc:  # any damage: truncated, garbage, a refused global
        raise ValueError(f"not a compact outbox row: {exc}") from exc
    if type(doc) is not tuple or len(doc) != 10 or doc[0] != COMPACT_VERSION:
        raise ValueError("not a compact outbox row of a known version")
    return doc


def compact_digest(doc: tuple[Any, ...]) -> str:
    return str(doc[1])


def decode_compact(doc: tuple[Any, ...], entry: LayoutEntry) -> Batch:
    _v, _digest, source, device, created, status, seg_ts, values, codes, dts = doc
    n = entry.n
    if (
        len(values) != n
        or len(seg_ts) != len(entry.segments)
        or (codes is not None and len(codes) != n)
        or (dts is not None and len(dts) != n)
    ):
        raise ValueError("compact outbox row does not fit its layout")
    qualities = repeat(GOOD, n) if codes is None else map(QUALITY_NAMES.__getitem__, codes)
    samples = list(
        map(
            _tuple_new,
            repeat(Sample, n),
            zip(
                entry.expand(seg_ts),
                entry.quantities,
                values,
                entry.units,
                qualities,
                entry.racks,
                entry.modules,
                entry.cells,
                repeat(None, n) if dts is None else dts,
                strict=True,
            ),
        )
    )
    return Batch(
        source=source,
        device=device,
        kind=BatchKind.SAMPLES,
        created=created,
        status=_status(status),
        records=[],
        samples=samples,
        layout=entry.layout,
    )


def stored_values(payload: bytes) -> list[Value]:
    """The sample values of a stored payload of either format, in order, without building samples
    (for tools that count what a store holds; a compact row needs no layout for this)."""
    if is_json(payload):
        return [row[2] for row in json.loads(payload)["x"]]
    return list(load_compact(payload)[7])
