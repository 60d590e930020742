"""What each rule reads of a batch, compiled once per key table: point indices as numpy arrays.

A `Points` holds the indices of the points one rule reads (its quantity or quantities, its racks)
and the element (rack, module, cell, name) of each; per batch the rule gathers its values and
qualities by those indices in one step. `numbers` is the one place that says which values a
numeric rule takes: GOOD quality and a finite number.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from gateway.alarms import rules as r
from gateway.lru import LruCache
from gateway.model import GOOD, Batch, Key, KeyRows, Keys, Place

IDX = npt.NDArray[np.intp]
F64 = npt.NDArray[np.float64]
T = TypeVar("T")


class Element(NamedTuple):
    """Where a point is, as an alarm instance names it (`name`: a bit's name, a quantity, or '')."""

    rack: str
    module: int | None
    cell: int | None
    name: str = ""


@dataclass(slots=True, eq=False)
class Points:
    """The points of one key table a rule reads, in batch order; their elements are worked out when first asked."""

    idx: IDX
    rows: Sequence[Key]  # the key table's (a point's quantity and unit: `rows[idx[j]]`)
    names: dict[str, str]  # the element name of a quantity's points, when they have one
    racks: list[str]  # the racks of these points, each once
    take: slice | IDX = field(init=False)  # `idx`, as a slice when the points are contiguous (a view, no copy)
    _elements: tuple[Element, ...] | None = None
    _where: dict[tuple[object, ...], list[int]] | None = None
    _repeats: bool | None = None

    def __post_init__(self) -> None:
        first, last = int(self.idx[0]), int(self.idx[-1])
        self.take = slice(first, last + 1) if last - first + 1 == len(self.idx) else self.idx

    @property
    def elements(self) -> tuple[Element, ...]:
        if self._elements is None:
            rows, names = self.rows, self.names
            self._elements = tuple(Element(k.rack, k.module, k.cell, names.get(k.quantity, ""))
                                   for k in (rows[i] for i in self.idx.tolist()))  # fmt: skip
        return self._elements

    def element(self, j: int) -> Element:
        if self._elements is not None:
            return self._elements[j]
        k = self.rows[int(self.idx[j])]
        return Element(k.rack, k.module, k.cell, self.names.get(k.quantity, ""))

    @property
    def repeats(self) -> bool:
        """Whether an element has several points (a CAN window with several frames of one message)."""
        if self._repeats is None:
            self._repeats = len(set(self.elements)) < len(self.idx)
        return self._repeats

    def positions(self, elements: Iterable[tuple[object, ...]]) -> list[int]:
        """Positions (into `idx`) of the points of these elements (an `Element`, or a tuple equal to one)."""
        where = self._where
        if where is None:
            where = self._where = {}
            for j, e in enumerate(self.elements):
                where.setdefault(e, []).append(j)
        out: list[int] = []
        for at in elements:
            out += where.get(at, ())
        return out

    def quantity(self, j: int) -> str:
        return self.rows[int(self.idx[j])].quantity

    def unit(self, j: int) -> str:
        return self.rows[int(self.idx[j])].unit


class Table:
    """A key table as the rules look at it: its points by quantity."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.by_quantity: dict[str, list[int]] = {}
        self.racks: dict[str, dict[str, None]] = {}  # the racks of each quantity's points, in order
        rows = keys.rows
        # a table of one rack is read from its shape (no key made per point)
        places: Sequence[Key | Place] = rows.shape if type(rows) is KeyRows else rows
        for i, k in enumerate(places):
            self.by_quantity.setdefault(k.quantity, []).append(i)
        one = {rows.rack} if type(rows) is KeyRows else {k.rack for k in rows}
        self.unique = len(set(places)) == len(places)  # no key twice (a CAN window may repeat a message's)
        for q, at in self.by_quantity.items():
            self.racks[q] = dict.fromkeys(one if len(one) == 1 else (rows[i].rack for i in at))


def select(table: Table, wanted: Callable[[str], str | None], racks: frozenset[str] | None) -> Points | None:
    """The points whose quantity `wanted` names (it returns the element's name, None to skip), of `racks`."""
    names: dict[str, str] = {}
    parts: list[list[int]] = []
    racks_of: dict[str, None] = {}
    for q, at in table.by_quantity.items():
        name = wanted(q)
        if name is None:
            continue
        parts.append(at)
        racks_of.update(table.racks[q])
        if name:
            names[q] = name
    if not parts:
        return None
    idx = parts[0] if len(parts) == 1 else sorted(i for at in parts for i in at)
    rows = table.keys.rows
    if racks is not None and not racks.issuperset(racks_of):
        idx = [i for i in idx if rows[i].rack in racks]
        if not idx:
            return None
        racks_of = {rack: None for rack in racks_of if rack in racks}
    pts = Points(shared_index(idx), rows, names, list(racks_of))
    if table.unique and (len(parts) == 1 or len(set(names.values())) == len(parts)):
        pts._repeats = False  # distinct keys of one quantity, or each quantity its own name: distinct elements
    return pts


INDICES_MAX = 256
# One read-only array of equal point indices: the tables of racks of one profile (a 100-rack site has 100)
# give every rule the same indices, kept once. Bounded (the key is the indices' bytes).
_indices: LruCache[bytes, IDX] = LruCache(INDICES_MAX)


def shared_index(idx: list[int]) -> IDX:
    """`idx` as an array, the one already made for equal indices while it is kept (read-only: shared)."""
    arr = np.asarray(idx, dtype=np.intp)
    key = arr.tobytes()
    got = _indices.get(key)
    if got is None:
        arr.flags.writeable = False
        _indices.put(key, arr)
        got = arr
    return got


def of(quantity: str) -> Callable[[str], str | None]:
    """`select`'s test for one quantity (the element has no name)."""
    return lambda q: "" if q == quantity else None


def numbers(b: Batch) -> F64:
    """The values a numeric rule takes: GOOD and finite (booleans count as 0 and 1); NaN otherwise."""
    v = b.values
    if b.objects:
        v = v.copy()
        for i, x in b.objects.items():
            n = r.as_number(x)
            v[i] = np.nan if n is None else n
    return np.where((b.quality == GOOD) & np.isfinite(v), v, np.nan)


class Frame:
    """A batch as the rules read it: the batch, and its numbers worked out once for every rule.

    `clean`: every point is GOOD (quality code 0) and none is an object (the usual case); `finite`: besides,
    every value is a number, so the numbers are the values as they are (a finite sum says so, no copy)."""

    __slots__ = ("b", "clean", "finite", "nums")

    def __init__(self, b: Batch) -> None:
        self.b = b
        self.clean = not b.objects and not b.quality.any()
        self.finite = self.clean and math.isfinite(b.values.sum())
        self.nums = b.values if self.finite else numbers(b)


class PlanCache(Generic[T]):
    """Work prepared per key table, the most recently used `size` kept (a table's id is never reused)."""

    def __init__(self, make: Callable[[Keys], T], size: int = 256) -> None:
        self.make, self.size = make, size
        self._plans: OrderedDict[int, T] = OrderedDict()

    def __call__(self, keys: Keys) -> T:
        plans = self._plans
        plan = plans.get(keys.id)
        if plan is None:
            plan = plans[keys.id] = self.make(keys)
            if len(plans) > self.size:
                plans.popitem(last=False)
        else:
            plans.move_to_end(keys.id)
        return plan

    def __len__(self) -> int:
        return len(self._plans)
