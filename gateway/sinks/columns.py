"""What both renderers do with the columns of a batch: numbers as text, and their plans per key table.

A value's text is `repr(float)` (the shortest text that reads back as the same float; numpy's own
formatting does not give the same text). BMS readings repeat a few values (a register times a scale),
so a column is formatted once per distinct value when that saves work, and the texts of the values
seen lately are kept (a bounded table) for the next batches.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterable
from typing import Generic, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from gateway.model import F64, I64, Batch, KeyRows, Keys, Place

Texts = npt.NDArray[np.object_]  # an array of str
# Samples (or retained state entries) a sink renders at most before it lets the event loop run: a few
# milliseconds, so a source's reply never waits long behind a big write, and few enough turns that a
# sink keeps up on a busy loop.
RENDER_STEP_SAMPLES = 2000
SEPARATOR = "\x00"  # between texts rendered in one join: line protocol and JSON never hold a raw NUL
_repr = float.__repr__


TEXTS_MAX = 65_536
# The text of each distinct value formatted lately (a reading comes back every poll); 0.0 and -0.0 are
# one key here (`number_texts` writes zeros itself). Bounded: emptied when it holds TEXTS_MAX values.
_texts: dict[float, str] = {}


def _distinct_texts(distinct: list[float]) -> list[str]:
    """`repr` of each value, from `_texts` where it is there."""
    if len(_texts) > TEXTS_MAX:
        _texts.clear()
    got = _texts.get
    out = []
    for v in distinct:
        text = got(v)
        if text is None:
            text = _texts[v] = _repr(v)
        out.append(text)
    return out


def every(flags: npt.NDArray[np.bool_]) -> bool:
    """`flags.all()` as one C call (numpy's method goes through a Python wrapper; the sinks ask about a
    dozen times a batch)."""
    return int(np.count_nonzero(flags)) == flags.size


def some(flags: npt.NDArray[np.bool_]) -> bool:
    """`flags.any()` as one C call."""
    return int(np.count_nonzero(flags)) != 0


def run_ranks(again: npt.NDArray[np.bool_]) -> I64:
    """Each element's place in its run: `again[i]` says element i + 1 repeats element i (0 for the first
    of a run, then 1, 2, ...)."""
    at = np.arange(len(again) + 1)
    starts = np.where(np.concatenate(([True], ~again)), at, 0)
    return at - np.maximum.accumulate(starts)


def occurrences(values: I64) -> I64:
    """Each element's count of equal elements before it (0 for the first of a value, then 1, 2, ...)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    out = np.empty(len(values), dtype=np.int64)
    out[order] = run_ranks(ordered[1:] == ordered[:-1])
    return out


def number_texts(values: F64) -> Texts:
    """`repr(float(v))` of every value (finite ones: the caller leaves NaN and infinities out)."""
    n = len(values)
    out = np.empty(n, dtype=object)
    if n < 16:
        out[:] = list(map(_repr, values.tolist()))
        return out
    order = np.argsort(values)
    ordered = values[order]
    first = np.empty(n, dtype=np.bool_)  # the first of each distinct value in `ordered`
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    distinct = ordered[first]
    if len(distinct) * 2 > n:
        out[:] = list(map(_repr, values.tolist()))
        return out
    texts = np.empty(len(distinct), dtype=object)
    texts[:] = _distinct_texts(distinct.tolist())
    out[order] = texts[np.cumsum(first) - 1]
    if distinct[0] <= 0.0 <= distinct[-1]:  # 0.0 and -0.0 are one distinct value with two texts
        zeros = np.flatnonzero(values == 0.0)
        out[zeros] = list(map(_repr, values[zeros].tolist()))
    return out


def value_texts(batch: Batch) -> Texts:
    """Per point, `repr(float)` of its value where it is finite, else None; made once per batch and kept on
    it, since every sink renders the same decoded batch. Shared: a caller that changes it changes a copy."""
    texts = batch.texts
    if texts is None:
        values = batch.values
        finite = np.isfinite(values)
        if every(finite):
            texts = number_texts(values)
        else:
            texts = np.empty(len(values), dtype=object)
            texts[finite] = number_texts(values[finite])
        batch.texts = texts
    return texts


def run_texts(ts: I64, before: str = "", after: str = "") -> Texts:
    """`before + str(int) + after` of every time, formatted once per run of equal times (the points of one
    read)."""
    n = len(ts)
    if n == 0:
        return np.empty(0, dtype=object)
    first = np.empty(n, dtype=np.bool_)  # the first point of each run
    first[0] = True
    np.not_equal(ts[1:], ts[:-1], out=first[1:])
    starts = first.nonzero()[0]
    texts = np.empty(len(starts), dtype=object)
    texts[:] = [f"{before}{t}{after}" for t in ts[starts].tolist()]
    counts = np.empty(len(starts), dtype=np.intp)
    np.subtract(starts[1:], starts[:-1], out=counts[:-1])
    counts[-1] = n - starts[-1]
    return texts.repeat(counts)


def texts_of(strings: list[str]) -> Texts:
    out = np.empty(len(strings), dtype=object)
    out[:] = strings
    return out


def shared_texts(strings: Iterable[str]) -> Texts:
    """A plan's texts with every equal string one object, within the plan and across plans (`sys.intern`:
    an interned string lives only while something holds it). The texts that do not depend on the rack
    (`"u":"V"`, `,"m":3,"c":7}`, `cell_voltage=`) are then kept once for a site, not once per point."""
    return texts_of(list(map(sys.intern, strings)))


SHAPES_MAX = 16  # rack shapes a renderer keeps the shared part of a plan for


class RackShape(NamedTuple):
    """A key table of one rack as its rack and the rest of its keys: the tables of racks of one profile
    (a 100-rack site has 100 tables) have one shape, so a renderer keeps what does not name the rack once."""

    rack: str
    places: tuple[Place, ...]


def rack_shape(keys: Keys) -> RackShape | None:
    """The table's rack and shape (`Keys` keeps a table of one rack so), or None when its points are of
    several racks (or none)."""
    rows = keys.rows
    return RackShape(rows.rack, rows.shape) if type(rows) is KeyRows else None


P = TypeVar("P")


class PlanCache(Generic[P]):
    """A renderer's plans by key table (and whatever else a plan depends on): bounded by the points of the
    tables held, the least recently used forgotten first. One per sink, so nothing is shared by accident."""

    def __init__(self, max_points: int = 400_000) -> None:
        self.max_points = max_points
        self._items: OrderedDict[tuple[int, str], tuple[Keys, P]] = OrderedDict()
        self._points = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, keys: Keys, extra: str) -> P | None:
        key = (keys.id, extra)
        hit = self._items.get(key)
        if hit is None:
            return None
        self._items.move_to_end(key)
        return hit[1]

    def put(self, keys: Keys, extra: str, plan: P) -> P:
        n = len(keys)
        while self._items and self._points + n > self.max_points:
            self._points -= len(self._items.popitem(last=False)[1][0])
        self._items[(keys.id, extra)] = (keys, plan)  # the table is held: its id is not reused
        self._points += n
        return plan
