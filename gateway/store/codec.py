"""How the outbox stores a batch (format 3): the columns' bytes, no pickle; older rows still read.

A row's payload is one of:

- **columns** (a batch with points; format 3, first bytes `MAGIC`): `MAGIC`, the CRC-32 of everything
  after it and the header's length (u32 little-endian each), the header (JSON: source, device, kind,
  created, status, records, the key table's digest, the number of points, which optional columns
  follow and the objects' length), padded with spaces to a multiple of 8 bytes; then the raw
  little-endian columns: the times, values (float64), device_ts (int64, only when the batch has it),
  the run lengths (uint32, only when the times are runs), quality (uint8, only when some point is not
  good) and objects (JSON of {index: value}, only when the batch has values that are not numbers).
  The times are stored as runs (one int64 per run of points with one time, header `tr`: the number
  of runs, and a run length per run) when that is smaller, else as a ts column (int64 per point): a
  Modbus block or a CAN frame gives its points one time. The key table is stored once per digest in
  the outbox's `layouts` table (`keys_body`), so a row holds no names.
- **JSON** (a batch without points: alarm events, status records; first byte `{`): the batch's fields.
- **legacy** rows of stores written before format 3, read forever (see gateway.store.legacy): JSON with
  a sample list per point, and the version-2 compact pickle.

Decoding builds the columns with `np.frombuffer` over the payload (the arrays keep it and are
read-only: a decoded batch is shared by every sink; times stored as runs are repeated into a
read-only column). A payload whose checksum or lengths disagree with its header, whose runs of times
do not hold its points, or whose header or key table does not parse, raises ValueError: the reader
quarantines it.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from gateway.keys import distinct_keys
from gateway.model import QUALITIES, Batch, BatchKind, DeviceState, DeviceStatus, Key, Keys
from gateway.store import legacy

MAGIC = b"BGC3"  # bms-gateway columns, format 3
FORMAT = 3
_PREFIX = struct.Struct("<II")  # CRC-32 of the rest, the header's length
_I8 = np.dtype("<i8")
_F8 = np.dtype("<f8")
_U4 = np.dtype("<u4")


# -- key tables ------------------------------------------------------------------------------------


def keys_body(keys: Keys) -> str:
    """A key table as the `layouts` table stores it: `{"keys":[[quantity,unit,rack,module,cell],...]}`
    (each distinct key's JSON made once: a CAN window's table repeats its keys)."""
    distinct, number = distinct_keys(keys)
    texts = [json.dumps(k, separators=(",", ":"), ensure_ascii=False) for k in distinct]
    return '{"keys":[' + ",".join([texts[i] for i in number.tolist()]) + "]}"


@dataclass(frozen=True, slots=True)
class KeyTable:
    """A stored key table: its keys, and the segments of a version-2 layout (None for format 3)."""

    keys: Keys
    segments: tuple[tuple[int, int], ...] | None = None


def key_table_from_body(body: str) -> KeyTable:
    """A `layouts` row's body (a format-3 key table or a version-2 layout); ValueError when damaged."""
    doc = json.loads(body)
    rows = []
    for k in doc["keys"]:
        q, u, r, m, c = k
        if type(q) is not str or type(u) is not str or type(r) is not str or not _int_or_none(m, c):
            raise ValueError(f"a stored key table has a malformed key: {k!r}")
        rows.append(Key(q, u, r, m, c))
    segments = doc.get("segments")
    if segments is None:
        return KeyTable(Keys.of(rows))
    return KeyTable(Keys.of(rows), tuple((int(a), int(b)) for a, b in segments))


def _int_or_none(*values: object) -> bool:
    return all(v is None or type(v) is int for v in values)


class KeyTables:
    """The key tables read back from stores, by digest, bounded by their points in all (least recently
    used out). Format-3 tables are interned `Keys`, so a decoded batch has its source's key table."""

    def __init__(self, max_points: int = 400_000) -> None:
        self.max_points = max_points  # four 100-rack sites of 1,000 points
        self.points = 0
        self._tables: OrderedDict[str, KeyTable] = OrderedDict()

    def get(self, digest: str, load: Callable[[str], str | None]) -> KeyTable:
        """The table of `digest`, read with `load` (its body, None when the store lacks it) on a miss."""
        table = self._tables.get(digest)
        if table is not None:
            self._tables.move_to_end(digest)
            return table
        body = load(digest)
        if body is None:
            raise ValueError(f"outbox row refers to key table {digest}, which the store does not hold")
        table = key_table_from_body(body)
        self._put(digest, table)
        return table

    def remember(self, keys: Keys) -> None:
        """A key table this process stored: a read finds it again without its body parsed back (a CAN
        rack's windows make new tables as they go, each of thousands of points)."""
        if keys.digest in self._tables:
            self._tables.move_to_end(keys.digest)
        else:
            self._put(keys.digest, KeyTable(keys))

    def _put(self, digest: str, table: KeyTable) -> None:
        self._tables[digest] = table
        self.points += len(table.keys)
        while len(self._tables) > 1 and self.points > self.max_points:
            _, gone = self._tables.popitem(last=False)
            self.points -= len(gone.keys)

    def __len__(self) -> int:
        return len(self._tables)


KEY_TABLES = KeyTables()


# -- records (JSON) -----------------------------------------------------------------------------------


def _status_doc(st: DeviceStatus | None) -> list[object] | None:
    return None if st is None else [st.device, str(st.state), st.reason, st.ts]


def _status(st: Sequence[Any] | None) -> DeviceStatus | None:
    return None if st is None else DeviceStatus(st[0], DeviceState(st[1]), st[2], st[3])


def encode_records(batch: Batch) -> bytes:
    """A batch without points as JSON (its records and status)."""
    doc = {"s": batch.source, "d": batch.device, "k": str(batch.kind), "c": batch.created,
           "st": _status_doc(batch.status), "r": batch.records, "x": []}  # fmt: skip
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def decode_json(payload: bytes) -> Batch:
    doc = json.loads(payload)
    fields: dict[str, Any] = {"device": doc["d"], "kind": BatchKind(doc["k"]), "created": doc["c"],
                              "status": _status(doc["st"]), "records": doc["r"]}  # fmt: skip
    if doc["x"]:
        return legacy.json_samples(doc["s"], doc["x"], **fields)
    return Batch(doc["s"], **fields)


# -- columns --------------------------------------------------------------------------------------------


class Header(NamedTuple):
    """What a format-3 row says about its columns, and the offset of each (0: the row has none)."""

    doc: dict[str, Any]
    n: int  # points
    runs: int  # the times stored as this many runs (0: as a ts column of n)
    ts: int  # the ts column, or the time of each run
    values: int
    device_ts: int
    lengths: int  # each run's number of points
    quality: int
    objects: int


class TimeRuns(NamedTuple):
    """A ts column as runs of one time: each run's time and number of points."""

    ts: np.ndarray
    lengths: np.ndarray


def time_runs(ts: np.ndarray) -> TimeRuns | None:
    """The runs of `ts` when they take fewer bytes than the column (12 a run against 8 a point)."""
    n = len(ts)
    last = np.flatnonzero(ts[1:] != ts[:-1])  # the last point of each run but the last run
    runs = len(last) + 1
    if 12 * runs >= 8 * n:
        return None
    ends = np.empty(runs, _U4)
    ends[:-1] = last
    ends[:-1] += 1
    ends[-1] = n
    lengths = ends.copy()
    lengths[1:] -= ends[:-1]
    return TimeRuns(np.ascontiguousarray(ts.take(ends - 1), _I8), lengths)


def encode(batch: Batch) -> bytes:
    """The payload of any batch: columns when it has points, else JSON."""
    n = batch.n
    if n == 0:
        return encode_records(batch)
    doc: dict[str, Any] = {"v": FORMAT, "s": batch.source, "d": batch.device, "k": str(batch.kind), "c": batch.created,
                           "st": _status_doc(batch.status), "kd": batch.keys.digest, "n": n}  # fmt: skip
    runs = time_runs(batch.ts)
    if runs is None:
        parts = [np.ascontiguousarray(batch.ts, _I8).tobytes()]
    else:
        doc["tr"] = len(runs.ts)
        parts = [runs.ts.tobytes()]
    parts.append(np.ascontiguousarray(batch.values, _F8).tobytes())
    if batch.records:
        doc["r"] = batch.records
    if batch.device_ts is not None:
        doc["dt"] = 1
        parts.append(np.ascontiguousarray(batch.device_ts, _I8).tobytes())
    if runs is not None:
        parts.append(runs.lengths.tobytes())  # after the int64 columns: they stay 8-byte aligned
    if batch.quality.any():
        doc["q"] = 1
        parts.append(np.ascontiguousarray(batch.quality, np.uint8).tobytes())
    if batch.objects:
        objects = json.dumps({str(i): v for i, v in batch.objects.items()}, separators=(",", ":"),
                             ensure_ascii=False).encode()  # fmt: skip
        doc["o"] = len(objects)
        parts.append(objects)
    head = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    head += b" " * (-(len(MAGIC) + _PREFIX.size + len(head)) % 8)  # the int64 columns start 8-byte aligned
    size = len(head).to_bytes(4, "little")
    crc = zlib.crc32(b"".join(parts), zlib.crc32(head, zlib.crc32(size)))
    return b"".join((MAGIC, crc.to_bytes(4, "little"), size, head, *parts))


def header(payload: bytes) -> Header:
    """A format-3 row's header, its lengths checked against the payload's (ValueError when they differ)."""
    if payload[: len(MAGIC)] != MAGIC or len(payload) < len(MAGIC) + _PREFIX.size:
        raise ValueError("not an outbox row of a known format")
    crc, size = _PREFIX.unpack_from(payload, len(MAGIC))
    computed = zlib.crc32(memoryview(payload)[len(MAGIC) + 4 :])
    if computed != crc:
        raise ValueError(f"the row's bytes do not match its checksum (stored {crc:08x}, computed {computed:08x})")
    start = len(MAGIC) + _PREFIX.size + size
    try:
        doc = json.loads(payload[len(MAGIC) + _PREFIX.size : start])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the row's header does not parse: {exc}") from exc
    if type(doc) is not dict or doc.get("v") != FORMAT or type(doc.get("n")) is not int or doc["n"] <= 0:
        raise ValueError("the row's header is not a format-3 header")
    n, runs = doc["n"], doc.get("tr", 0)
    if type(runs) is not int or not 0 <= runs <= n or ("tr" in doc and runs == 0):
        raise ValueError(f"the row's header names {runs!r} runs of times for {n} points")
    at = start + 8 * (runs or n)
    values, at = at, at + 8 * n
    device_ts, at = (at, at + 8 * n) if doc.get("dt") else (0, at)
    lengths, at = (at, at + 4 * runs) if runs else (0, at)
    quality, at = (at, at + n) if doc.get("q") else (0, at)
    objects, at = (at, at + int(doc["o"])) if doc.get("o") else (0, at)
    if len(payload) != at:
        raise ValueError(f"the row has {len(payload)} bytes, its header says {at}")
    return Header(doc, n, runs, start, values, device_ts, lengths, quality, objects)


def _read_only(column: np.ndarray) -> np.ndarray:
    column.flags.writeable = False  # like the columns read from the row
    return column


def stored_ts(payload: bytes, head: Header) -> np.ndarray:
    """The row's ts column (its runs repeated); ValueError when the runs do not hold its points."""
    if not head.runs:
        return np.frombuffer(payload, _I8, head.n, head.ts)
    lengths = np.frombuffer(payload, _U4, head.runs, head.lengths)
    held = int(lengths.sum(dtype=np.uint64))
    if held != head.n:
        raise ValueError(f"the row's {head.runs} runs of times hold {held} points, its header says {head.n}")
    return _read_only(np.repeat(np.frombuffer(payload, _I8, head.runs, head.ts), lengths))


def decode_columns(payload: bytes, head: Header, keys: Keys) -> Batch:
    doc, n = head.doc, head.n
    if len(keys) != n:
        raise ValueError(f"the row has {n} points, its key table {doc['kd']} has {len(keys)}")
    ts = stored_ts(payload, head)
    values = np.frombuffer(payload, _F8, n, head.values)
    device_ts = np.frombuffer(payload, _I8, n, head.device_ts) if head.device_ts else None
    if head.quality:
        quality = np.frombuffer(payload, np.uint8, n, head.quality)
        if int(quality.max()) >= len(QUALITIES):
            raise ValueError(f"the row has a quality code {int(quality.max())}, which names no quality")
    else:
        quality = _read_only(np.zeros(n, np.uint8))
    objects = None
    if head.objects:
        stored = json.loads(payload[head.objects :])
        if type(stored) is not dict:
            raise ValueError("the row's objects are not a JSON object")
        objects = {int(i): v for i, v in stored.items()}
        if not all(0 <= i < n for i in objects):
            raise ValueError("the row's objects name points it does not have")
    return Batch(doc["s"], keys, ts, values, quality, device_ts, objects, BatchKind(doc["k"]), doc["d"],
                 _status(doc["st"]), doc["c"], doc.get("r", []))  # fmt: skip


def key_digest(payload: bytes) -> str | None:
    """The key table a payload refers to (None: it refers to none); ValueError when it is damaged."""
    if payload[:1] == b"{":
        return None
    if payload[: len(MAGIC)] == MAGIC:
        return str(header(payload).doc["kd"])
    return legacy.compact_digest(legacy.load_compact(payload))


def decode(payload: bytes, tables: Callable[[str], KeyTable]) -> Batch:
    """A stored payload of any format as a batch (`tables`: the key table of a digest)."""
    if payload[:1] == b"{":
        return decode_json(payload)
    if payload[: len(MAGIC)] == MAGIC:
        head = header(payload)
        return decode_columns(payload, head, tables(str(head.doc["kd"])).keys)
    doc = legacy.load_compact(payload)
    table = tables(legacy.compact_digest(doc))
    if table.segments is None:
        raise ValueError("a version-2 row refers to a key table without segments")
    return legacy.decode_compact(doc, table.keys, table.segments)


class Summary(NamedTuple):
    """What a row holds, counted without its key table (for tools that count a store)."""

    points: int
    good: int
    numbers: int  # points with a number (not NaN, not an object)
    first_ts: int | None


def summary(payload: bytes) -> Summary:
    if payload[: len(MAGIC)] != MAGIC:
        return Summary(*legacy.summary(payload))
    head = header(payload)
    n = head.n
    values = np.frombuffer(payload, _F8, n, head.values)
    good = n
    if head.quality:
        good = int(np.count_nonzero(np.frombuffer(payload, np.uint8, n, head.quality) == 0))
    first_ts = int(np.frombuffer(payload, _I8, 1, head.ts)[0])  # the first point's, or the first run's
    return Summary(n, good, int(np.count_nonzero(~np.isnan(values))), first_ts)
