"""What each rule reads of a batch, compiled once per key table: point indices as numpy arrays.

A `Points` holds the indices of the points one rule reads (its quantity or quantities, its racks)
and the element (rack, module, cell, name) of each; per batch the rule gathers its values and
qualities by those indices in one step. `numbers` is the one place that says which values a
numeric rule takes: GOOD quality and a finite number.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from gateway.alarms import rules as r
from gateway.model import GOOD, Batch, Key, Keys

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
    """The points of one key table a rule reads, in batch order."""

    idx: IDX
    elements: tuple[Element, ...]
    rows: tuple[Key, ...]  # the key table's (a point's quantity and unit: `rows[idx[j]]`)
    repeats: bool  # an element has several points (a CAN window with several frames of one message)
    take: slice | IDX = field(init=False)  # `idx`, as a slice when the points are contiguous (a view, no copy)
    _where: dict[Element, list[int]] | None = field(default=None)

    def __post_init__(self) -> None:
        first, last = int(self.idx[0]), int(self.idx[-1])
        self.take = slice(first, last + 1) if last - first + 1 == len(self.idx) else self.idx

    def positions(self, elements: Iterable[Element]) -> list[int]:
        """Positions (into `idx`) of the points of these elements."""
        where = self._where
        if where is None:
            where = self._where = {}
            for j, e in enumerate(self.elements):
                where.setdefault(e, []).append(j)
        out: list[int] = []
        for e in elements:
            out += where.get(e, ())
        return out

    def quantity(self, j: int) -> str:
        return self.rows[int(self.idx[j])].quantity

    def unit(self, j: int) -> str:
        return self.rows[int(self.idx[j])].unit

    def racks(self) -> list[str]:
        """The racks of these points, each once, in order of appearance."""
        return list(dict.fromkeys(e.rack for e in self.elements))


class Table:
    """A key table as the rules look at it: its points by quantity, and each point's element."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.by_quantity: dict[str, list[int]] = {}
        for i, k in enumerate(keys.rows):
            self.by_quantity.setdefault(k.quantity, []).append(i)
        self.elements = [Element(k.rack, k.module, k.cell) for k in keys.rows]


def select(table: Table, wanted: Callable[[str], str | None], racks: frozenset[str] | None) -> Points | None:
    """The points whose quantity `wanted` names (it returns the element's name, None to skip), of `racks`."""
    names: dict[int, str] = {}
    idx: list[int] = []
    for q, at in table.by_quantity.items():
        name = wanted(q)
        if name is None:
            continue
        idx += at
        if name:
            names.update(dict.fromkeys(at, name))
    if not idx:
        return None
    idx.sort()
    rows = table.keys.rows
    if racks is not None:
        idx = [i for i in idx if rows[i].rack in racks]
        if not idx:
            return None
    every = table.elements
    if names:
        elements = tuple(every[i] if i not in names else Element(*every[i][:3], names[i]) for i in idx)
    else:
        elements = tuple(every[i] for i in idx)
    repeats = len(set(elements)) < len(elements)
    return Points(np.asarray(idx, dtype=np.intp), elements, rows, repeats)


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
    """A batch as the rules read it: the batch, and its numbers worked out once for every rule."""

    __slots__ = ("b", "nums")

    def __init__(self, b: Batch) -> None:
        self.b = b
        self.nums = numbers(b)


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
