"""Rows of stores written before format 3 (see gateway.store.codec), read forever, never written:

- **JSON samples** (format 1): a batch document with one 9-field list per sample (`"x"`).
- **compact** (format 2): a pickle (protocol 5, first byte 0x80) of plain values only, read by an
  unpickler that refuses every global (a stored row can never name code to run): the digest of its
  layout (keys and segments, in the `layouts` table), the time of each segment, the values, the
  qualities (a byte each, or None when all are good) and the device times (or None).

Both become a columnar batch through `Batch.of_samples`.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Sequence
from itertools import repeat
from typing import Any

from gateway.model import QUALITIES, Batch, BatchKind, DeviceState, DeviceStatus, Keys, Sample

COMPACT_VERSION = 2


def json_samples(source: str, rows: list[list[Any]], **fields: Any) -> Batch:
    return Batch.of_samples(source, [Sample(*row) for row in rows], **fields)


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a stored row names {module}.{name}: refused")


def load_compact(payload: bytes) -> tuple[Any, ...]:
    """The stored tuple of a version-2 payload (ValueError when it is not one)."""
    try:
        doc = _PlainUnpickler(io.BytesIO(payload)).load()
    except Exception as exc:  # any damage: truncated, garbage, a refused global
        raise ValueError(f"not an outbox row of a known format: {exc}") from exc
    if type(doc) is not tuple or len(doc) != 10 or doc[0] != COMPACT_VERSION:
        raise ValueError("not a compact outbox row of a known version")
    return doc


def compact_digest(doc: tuple[Any, ...]) -> str:
    return str(doc[1])


def _expand(segments: Sequence[tuple[int, int]], seg_ts: Sequence[int | None]) -> list[int]:
    """One ts per point from one per segment (None only for an empty segment)."""
    out: list[int] = []
    for (a, b), t in zip(segments, seg_ts, strict=True):
        if b > a:
            out += [int(t)] * (b - a)  # type: ignore[arg-type]  # a None here is damage: TypeError
    return out


def decode_compact(doc: tuple[Any, ...], keys: Keys, segments: Sequence[tuple[int, int]]) -> Batch:
    _v, _digest, source, device, created, status, seg_ts, values, codes, dts = doc
    n = len(keys)
    if (
        len(values) != n
        or len(seg_ts) != len(segments)
        or (codes is not None and len(codes) != n)
        or (dts is not None and len(dts) != n)
    ):
        raise ValueError("compact outbox row does not fit its layout")
    qualities = repeat("good", n) if codes is None else (QUALITIES[c] for c in codes)
    points = zip(_expand(segments, seg_ts), keys.rows, values, qualities, repeat(None, n) if dts is None else dts,
                 strict=True)  # fmt: skip
    samples = [Sample(t, k.quantity, v, k.unit, q, k.rack, k.module, k.cell, d) for t, k, v, q, d in points]
    st = None if status is None else DeviceStatus(status[0], DeviceState(status[1]), status[2], status[3])
    return Batch.of_samples(source, samples, BatchKind.SAMPLES, device, st, created)


def summary(payload: bytes) -> tuple[int, int, int, int | None]:
    """(points, good, numbers, first ts) of a legacy payload (see gateway.store.codec.Summary)."""
    if payload[:1] == b"{":
        x = json.loads(payload)["x"]
        numbers = sum(1 for r in x if type(r[2]) in (int, float) and r[2] == r[2])
        return (len(x), sum(1 for r in x if r[4] == "good"), numbers, x[0][0] if x else None)
    doc = load_compact(payload)
    seg_ts, values, codes = doc[6], doc[7], doc[8]
    good = len(values) if codes is None else codes.count(0)
    numbers = sum(1 for v in values if type(v) in (int, float) and v == v)
    return (len(values), good, numbers, next((t for t in seg_ts if t is not None), None))
