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
from gateway.alarms.instances import Key
from gateway.model import GOOD, Batch, Keys

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
    quantities: tuple[str, ...]
    units: tuple[str, ...]
    _where: dict[Element, list[int]] | None = field(default=None)

    def positions(self, rule: str, keys: Iterable[Key]) -> list[int]:
        """Positions (into `idx`) of the points of these instances' elements."""
        where = self._where
        if where is None:
            where = self._where = {}
            for j, e in enumerate(self.elements):
                where.setdefault(e, []).append(j)
        out: list[int] = []
        for k in keys:
            got = where.get(Element(k.rack, k.module, k.cell, k.name))
            if got is not None and k.rule == rule:
                out += got
        return out

    def racks(self) -> list[str]:
        """The racks of these points, each once, in order of appearance."""
        return list(dict.fromkeys(e.rack for e in self.elements))


def select(keys: Keys, wanted: Callable[[str], str | None], racks: frozenset[str] | None) -> Points | None:
    """The points whose quantity `wanted` names (it returns the element's name, None to skip), of `racks`."""
    idx: list[int] = []
    elements: list[Element] = []
    quantities: list[str] = []
    units: list[str] = []
    for i, k in enumerate(keys.rows):
        name = wanted(k.quantity)
        if name is None or (racks is not None and k.rack not in racks):
            continue
        idx.append(i)
        elements.append(Element(k.rack, k.module, k.cell, name))
        quantities.append(k.quantity)
        units.append(k.unit)
    if not idx:
        return None
    return Points(np.asarray(idx, dtype=np.intp), tuple(elements), tuple(quantities), tuple(units))


def of(quantity: str) -> Callable[[str], str | None]:
    """`select`'s test for one quantity (the element has no name)."""
    return lambda q: "" if q == quantity else None


def numbers(b: Batch, idx: IDX) -> F64:
    """The values at `idx` a numeric rule takes: GOOD and finite (booleans count as 0 and 1); NaN otherwise."""
    v = b.values[idx]
    if b.objects:
        for j, i in enumerate(idx.tolist()):
            if i in b.objects:
                v[j] = np.nan if (x := r.as_number(b.objects[i])) is None else x
    return np.where((b.quality[idx] == GOOD) & np.isfinite(v), v, np.nan)


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
