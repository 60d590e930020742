"""What keeps the live path cheap: one pass over each sample by quantity, no work for healthy elements.

- `ThresholdGroup`: every threshold rule of one quantity behind one bound check. A value inside all
  the limits, of an element no rule of the group is tracking, costs two comparisons.
- `Gatherer`: the values of one array quantity (cell voltages, temperatures) per rack in a batch,
  gathered once and read at the end of the batch by every rule that needs the array (spread, sums).
"""

from __future__ import annotations

import math

from gateway.alarms import rules as r
from gateway.alarms.compiled import Handler, ThresholdHandler
from gateway.alarms.ratecolumns import Element, count_element
from gateway.model import Quality, Sample

GOOD = Quality.GOOD


class ThresholdGroup:
    def __init__(self, quantity: str, members: list[ThresholdHandler]) -> None:
        self.quantity = quantity
        self.members = members
        self.high_min = min((m.limit for m in members if m.above), default=math.inf)
        self.low_max = max((m.limit for m in members if not m.above), default=-math.inf)
        self.tracked: dict[Element, int] = {}  # elements with an instance of one of the members
        self.prefix: str | None = None

    def track(self, element: Element, delta: int) -> None:
        count_element(self.tracked, element, delta)

    def sample(self, s: Sample) -> None:
        if s.quality == GOOD:
            self.good(s)

    def good(self, s: Sample) -> None:
        """`sample` for a sample the engine already knows is GOOD."""
        v = s.value
        if type(v) is not float:
            v = r.as_number(v)
            if v is None:
                return
        if self.low_max <= v <= self.high_min and (not self.tracked or (s.rack, s.module, s.cell) not in self.tracked):
            return
        for m in self.members:
            m.check(s, v)

    def finish(self) -> None:
        pass


class Gatherer:
    """Good numeric values of one quantity per rack, for the current batch group."""

    def __init__(self, quantity: str) -> None:
        self.quantity = quantity
        self.values: dict[str, list[float]] = {}
        self.samples: dict[str, list[Sample]] = {}
        # rack -> (n, min, max) of its first n values, when they are finite and known (see `extend`)
        self.bounds: dict[str, tuple[int, float, float]] = {}
        self.prefix: str | None = None
        self._rack: str | None = None  # the rack of the last good sample, and its two lists
        self._vals: list[float] = []
        self._smps: list[Sample] = []

    def sample(self, s: Sample) -> None:
        if s.quality != GOOD:
            return
        v = s.value
        if type(v) is not float:
            v = r.as_number(v)
            if v is None:
                return
        lst = self.values.get(s.rack)
        if lst is None:
            self.values[s.rack] = [v]
            self.samples[s.rack] = [s]
        else:
            lst.append(v)
            self.samples[s.rack].append(s)

    def good(self, s: Sample) -> None:
        """`sample` for a sample the engine already knows is GOOD (a batch is usually one rack)."""
        v = s.value
        if type(v) is not float:
            v = r.as_number(v)
            if v is None:
                return
        rack = s.rack
        if rack != self._rack or rack not in self.values:
            lst = self.values.get(rack)
            if lst is None:
                lst = self.values[rack] = []
                self.samples[rack] = []
            self._rack, self._vals, self._smps = rack, lst, self.samples[rack]
        self._vals.append(v)
        self._smps.append(s)

    def extend(self, rack: str, values: list[float], samples: list[Sample], low: float, high: float) -> None:
        """`good` of a run of one rack's GOOD finite float samples; `values` their values, `low` and
        `high` the run's `min` and `max` (kept while every value of the rack came this way)."""
        lst = self.values.get(rack)
        if not lst:
            lst = self.values[rack] = []
            self.samples[rack] = []
            self.bounds[rack] = (len(values), low, high)
        else:
            known = self.bounds.pop(rack, None)
            if known is not None and known[0] == len(lst):
                # min/max of the whole list, the first of equal values as min/max pick them
                n, lo, hi = known
                self.bounds[rack] = (n + len(values), low if low < lo else lo, high if high > hi else hi)
        lst.extend(values)
        self.samples[rack].extend(samples)

    def finish(self) -> None:
        pass

    def clear(self) -> None:
        self.values.clear()
        self.samples.clear()
        self.bounds.clear()
        self._rack = None


Indexed = Handler | ThresholdGroup | Gatherer
