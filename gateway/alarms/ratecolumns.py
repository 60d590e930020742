"""Rate trackers of elements read together (one Modbus block of temperatures) held as columns.

`RateTracker` keeps a history of (ts, value) per element. Elements read at the same times have the
same timestamps in their histories, so `RateColumns` keeps one history of (ts, values of every
element): a reading of all of them is one append, and their differences against the reference
reading one list pass. The arithmetic is `RateTracker`'s term for term, so the rates are the same
floats. While the columns hold the elements, each one's entry in the trackers dict is a
`ColumnTracker`: anything that updates an element alone (a sample of the per-sample path) first
gives every element its own `RateTracker` back, with the history the columns held.
"""

from __future__ import annotations

from collections import deque
from operator import sub

from gateway.alarms.rules import RateTracker

Element = tuple[str, int | None, int | None]  # (rack, module, cell)


def count_element(tracked: dict[Element, int], element: Element, delta: int) -> None:
    """Add `delta` to an element's count of alarm instances; an element at zero leaves `tracked`."""
    n = tracked.get(element, 0) + delta
    if n > 0:
        tracked[element] = n
    else:
        tracked.pop(element, None)


class ColumnTracker:
    """An element's place in the trackers dict while `RateColumns` hold its history."""

    __slots__ = ("columns", "element")

    def __init__(self, columns: RateColumns, element: Element) -> None:
        self.columns = columns
        self.element = element

    def _own(self) -> RateTracker:
        self.columns.release()
        own = self.columns.trackers[self.element]
        assert isinstance(own, RateTracker)
        return own

    def update(self, ts: int, value: float) -> float | None:
        return self._own().update(ts, value)

    @property
    def history(self) -> deque[tuple[int, float]]:
        return self._own().history


Tracker = RateTracker | ColumnTracker


class RateColumns:
    """The rate histories of `elements` as one history of columns, while their timestamps agree."""

    __slots__ = ("active", "elements", "history", "trackers", "window_ns")

    def __init__(self, trackers: dict[Element, Tracker], elements: list[Element], window_ns: int) -> None:
        self.trackers = trackers
        self.elements = elements
        self.window_ns = window_ns
        self.history: deque[tuple[int, list[float]]] = deque()
        self.active = False

    def take_over(self) -> bool:
        """Hold the elements' histories when they have one sequence of timestamps (or none); False if not."""
        if self.active:
            return True
        got = [self.trackers.get(e) for e in self.elements]
        if got.count(None) == len(got):  # elements new to the rule (a new layout): nothing to compare
            self._install(deque())
            return True
        others = {id(t.columns): t.columns for t in got if isinstance(t, ColumnTracker)}
        for cols in others.values():  # another layout's columns with some of these elements
            cols.release()
        if others:
            got = [self.trackers.get(e) for e in self.elements]
        hists = [t.history if t is not None else deque[tuple[int, float]]() for t in got]
        ref = hists[0]
        n = len(ref)
        last = ref[-1][0] if n else None
        if any(len(h) != n or (n and h[-1][0] != last) for h in hists):
            return False
        times = [t for t, _ in ref]
        if n > 1 and any([t for t, _ in h] != times for h in hists):
            return False
        self._install(deque((t, [h[k][1] for h in hists]) for k, t in enumerate(times)))
        return True

    def _install(self, history: deque[tuple[int, list[float]]]) -> None:
        self.history = history
        for e in self.elements:
            self.trackers[e] = ColumnTracker(self, e)
        self.active = True

    def release(self) -> None:
        """Give every element its own `RateTracker` again, with the history the columns held."""
        if not self.active:
            return
        for j, e in enumerate(self.elements):
            self.trackers[e] = RateTracker(self.window_ns, deque((t, col[j]) for t, col in self.history))
        self.history = deque()
        self.active = False

    def update(self, ts: int, values: list[float]) -> tuple[list[float], int] | None:
        """`RateTracker.update(ts, v)` of every element (values in element order, kept as they are).

        Returns each element's value minus its reference value and the time between the two (the rate
        is `diff * NS / dt`, as the tracker computes it), or None when the tracker gives no rate."""
        h = self.history
        if h and ts <= h[-1][0]:
            return None  # out of order or duplicate: no rate
        h.append((ts, values))
        window = self.window_ns
        if window <= 0:
            while len(h) > 2:
                h.popleft()
        else:
            while len(h) > 2 and ts - h[1][0] >= window:
                h.popleft()
        if len(h) < 2:
            return None
        t0, ref = h[0]
        return list(map(sub, values, ref)), ts - t0  # v - w, element by element
