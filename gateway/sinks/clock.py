"""Guard against a wall clock that steps backwards: a point must never overwrite a stored one.

InfluxDB overwrites a point with the same series and time. When the gateway's clock steps back, new
points could land on the times of points already written. The guard remembers, per series, the
newest time written, and that time as read; a point before the newest as read is written with an
extra tag `clock_step=<n>` (a new series), so nothing is overwritten and the step is visible (logged
once per step). A point at or after the newest as read but not after the newest written (readings
within one unit of the write precision, or several frames of one CAN message in a batch window)
moves one unit past the newest written.

The guard's state only moves when a write was confirmed (`commit`), so a retried batch renders the
same lines again and overwrites itself, which is what makes retries exactly-once. At start the sink
rebuilds the state from the last rows it had delivered before (`InfluxSink.resume`), so a restart
does not forget what was written.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import structlog

from gateway.model import I64
from gateway.sinks.columns import Texts, run_ranks, some
from gateway.sinks.delivery import Item

log = structlog.get_logger("sink.clock")

_SPACE = re.compile(r"(?<!\\) ")


class LinePoint(NamedTuple):
    """One line-protocol point as the guard reads it."""

    key: str  # the series: measurement and tags
    fields: str
    ts: int
    line: str | None  # the line itself, or None when it is exactly `<key> <fields> <ts>`


def split_line(line: str) -> LinePoint:
    """The series key, fields and time of a line-protocol line (with the line)."""
    key, rest = _SPACE.split(line, maxsplit=1)
    fields, ts = rest.rsplit(" ", 1)
    return LinePoint(key, fields, int(ts), line)


NEVER = np.iinfo(np.int64).min  # the time of a slot with nothing written
LAG_MAX = np.iinfo(np.uint16).max
U16 = npt.NDArray[np.uint16]


class Pending:
    """What one write changes in the guard: an overlay on its state, taken over by `commit` once the server
    confirmed the write (so a failed write leaves the guard as it was and the retry renders the same)."""

    __slots__ = ("lag", "new_step", "stepped", "steps", "times")

    def __init__(self, steps: int, stepped: dict[str, int], times: I64, lag: U16) -> None:
        self.times = times  # a copy of the guard's newest time per series slot, as this write leaves it
        self.lag = lag  # ... and of how far it was moved on (see ClockGuard.lag)
        self.steps = steps
        self.stepped = stepped  # a copy of the guard's (small: only series tagged right now)
        self.new_step = 0  # the step number this write started, 0 if none


IntArr = npt.NDArray[np.intp]


class ColumnSlots(NamedTuple):
    column: Texts
    slots: IntArr


class ClockGuard:
    """The newest untagged time written per series: a slot per series key (`index`) and a column of
    times by slot, so the lines of a batch are checked and recorded with a few array steps."""

    def __init__(self, sink: str) -> None:
        self.sink = sink
        self.index: dict[str, int] = {}  # series key → its slot
        self.times: I64 = np.full(1024, NEVER, dtype=np.int64)  # newest untagged time written, by slot
        # How far the newest written was moved on from its time as read (units; at most LAG_MAX, which
        # errs towards a step: 2 bytes a series, as the guard holds a slot for every series written).
        self.lag: U16 = np.zeros(1024, dtype=np.uint16)
        self.steps = 0  # clock steps seen so far
        self.stepped: dict[str, int] = {}  # series → step number it is tagged with now
        # The slots of a renderer's key columns (one per key table and quality), by the column's id while
        # it is held here; bounded by their points, the least recently used forgotten first.
        self.columns: OrderedDict[int, ColumnSlots] = OrderedDict()
        self.column_points = 0
        self.max_column_points = 400_000

    @property
    def newest(self) -> dict[str, int]:
        """Series key → its newest untagged time written (for tests and tools)."""
        times = self.times.tolist()
        return {key: times[slot] for key, slot in self.index.items() if times[slot] != NEVER}

    def written(self) -> int:
        """The number of series with a time written."""
        return int(np.count_nonzero(self.times != NEVER))

    def begin(self) -> Pending:
        return Pending(self.steps, dict(self.stepped), self.times.copy(), self.lag.copy())

    def apply(self, items: Sequence[Item]) -> tuple[list[Item], Pending]:
        """Lines to write and the state to `commit` once the server confirmed them."""
        pending = self.begin()
        lines = self.lines(pending, [split_line(line) for _seq, line in items])
        return [Item(seq, line) for (seq, _old), line in zip(items, lines, strict=True)], pending

    def slots(self, pending: Pending, keys: Sequence[str]) -> IntArr:
        """The slot of each series key (new keys get one), with the pending column long enough for them."""
        index = self.index
        try:
            slots = np.fromiter(map(index.__getitem__, keys), dtype=np.intp, count=len(keys))
        except KeyError:
            for key in keys:
                if key not in index:
                    index[key] = len(index)
            slots = np.fromiter(map(index.__getitem__, keys), dtype=np.intp, count=len(keys))
        _fit(pending, len(index))
        return slots

    def column_slots(self, pending: Pending, column: Texts) -> IntArr:
        """The slot of every key of a key column (a renderer's, kept while it is in use)."""
        got = self.columns.get(id(column))
        if got is not None and got.column is column:
            self.columns.move_to_end(id(column))
            _fit(pending, len(self.index))
            return got.slots
        slots = self.slots(pending, column.tolist())
        while self.columns and self.column_points + len(column) > self.max_column_points:
            self.column_points -= len(self.columns.popitem(last=False)[1].slots)
        self.columns[id(column)] = ColumnSlots(column, slots)  # the column is held: its id is not reused
        self.column_points += len(column)
        return slots

    def admit_each(
        self, pending: Pending, keys: Texts, times: I64, slots: IntArr | None = None, distinct: bool | None = None
    ) -> I64 | None:
        """The time to write each line at, as `lines` would write them, when no line is a clock step (none is
        before its series' newest time as read, or before an earlier line of its series, and no series is
        tagged now): a line after its series' newest written keeps its time, any other moves one unit past
        it (the k-th of several readings at one time k units). The lines are recorded as written (no line
        built). None: some line is a step; the lines go through `lines` one by one. `slots`: the keys'
        slots when the caller knows them; `distinct`: whether no key is there twice, when the caller knows."""
        if slots is None:
            slots = self.slots(pending, keys.tolist())
        col, lag = pending.times, pending.lag
        newest = col[slots]
        if distinct is None:
            ordered = np.sort(slots)  # a series twice? (a sort: np.unique took 7 times as long for 1,000 lines)
            distinct = not (ordered[1:] == ordered[:-1]).any()
        stepped = pending.stepped
        if stepped:
            tagged = [i for i, key in enumerate(keys.tolist()) if key in stepped]
            if tagged and some(newest[tagged] >= times[tagged]):
                return None  # a series tagged now, not yet past its newest
            for i in tagged:
                stepped.pop(keys[i], None)
        if distinct and not some(newest >= times):
            col[slots] = times
            lag[slots] = 0
            return times
        if some(newest - lag[slots] > times):
            return None
        order = np.argsort(slots, kind="stable")  # by series, each in line order
        s, t = slots[order], times[order]
        same = s[1:] == s[:-1]
        if some(same & (t[1:] < t[:-1])):
            return None
        # Per series, line i at max(t_i, line i-1 + 1), line -1 being the newest written:
        # i + max(newest + 1, the running max of t_j - j over j <= i).
        rank = run_ranks(same)
        u = t - rank
        group = np.cumsum(np.concatenate(([0], ~same)))
        low, span = int(u.min()), int(u.max() - u.min()) + 1
        if span * (int(group[-1]) + 1) >= 1 << 62:
            return None  # times too far apart for one running max (the lines go one by one)
        lift = group * span
        running = np.maximum.accumulate(u - low + lift) - lift + low
        moved = np.maximum(col[s] + 1, running) + rank
        out = np.empty_like(times)
        out[order] = moved
        last = np.flatnonzero(np.append(~same, True))  # each series' last line: its newest, as read and moved
        at = s[last]
        read = np.maximum(col[at] - lag[at], t[last])
        col[at] = moved[last]
        lag[at] = np.minimum(moved[last] - read, LAG_MAX)
        return out

    def lines(self, pending: Pending, points: Sequence[LinePoint]) -> list[str]:
        """The line to write for each point (series key, fields, time, and the line itself or None when
        it is `<key> <fields> <time>`), in order."""
        slots = self.slots(pending, [p.key for p in points]).tolist()
        col, lag = pending.times, pending.lag
        stepped = pending.stepped
        out = []
        for (key, fields, ts, line), slot in zip(points, slots, strict=True):
            top = int(col[slot])
            if ts > top:
                col[slot] = ts
                lag[slot] = 0
                if stepped:
                    stepped.pop(key, None)
                out.append(f"{key} {fields} {ts}" if line is None else line)
            elif ts >= top - int(lag[slot]) and key not in stepped:
                # Not before the series' newest point as read, only before points moved on (readings
                # within one unit of the precision): moved on too, instead of overwriting one.
                col[slot] = top + 1
                lag[slot] = min(top + 1 - ts, LAG_MAX)
                out.append(f"{key} {fields} {top + 1}")
            else:
                out.append(self._step(pending, key, fields, ts, top))
        return out

    def _step(self, pending: Pending, key: str, fields: str, ts: int, top: int) -> str:
        """A point before the newest of its series as read (a clock step), or of a series tagged now."""
        stepped = pending.stepped
        if key not in stepped:
            if not pending.new_step:
                pending.steps += 1
                pending.new_step = pending.steps
                log.warning(
                    "clock stepped backwards: points tagged clock_step until time passes the newest written",
                    sink=self.sink, series=key, newest=top, now=ts, step=pending.steps,
                )  # fmt: skip
            stepped[key] = pending.new_step
        return f"{key},clock_step={stepped[key]} {fields} {ts}"

    def commit(self, pending: Pending) -> None:
        # Slots added by a later write's rendering (not committed yet) or by this one: one length for all.
        size = max(len(self.times), len(pending.times))
        times, lag = _padded(pending.times, size, NEVER), _padded(pending.lag, size, 0)
        self.times, self.lag = _padded(self.times, size, NEVER), _padded(self.lag, size, 0)
        # Times only move on (as one write leaves them); the newest as read too. Only the slots the write
        # changed (no column-long temporaries: the site's series are many, a write's few).
        at = np.flatnonzero((times != self.times) | (lag != self.lag))
        if len(at):
            old, new = self.times[at], times[at]
            read = np.maximum(old - self.lag[at], new - lag[at])
            np.maximum(old, new, out=new)
            self.times[at] = new
            self.lag[at] = np.minimum(new - read, LAG_MAX)
        self.steps = pending.steps
        self.stepped = pending.stepped


def _padded(column: npt.NDArray[Any], size: int, fill: int) -> npt.NDArray[Any]:
    """The column, or a copy of it `size` long with `fill` in the new slots."""
    if len(column) >= size:
        return column
    out = np.full(size, fill, dtype=column.dtype)
    out[: len(column)] = column
    return out


def _fit(pending: Pending, size: int) -> None:
    """The pending columns with room for `size` slots (doubled when they grow: new series come in runs)."""
    if size > len(pending.times):
        pending.times = _padded(pending.times, max(size, 2 * len(pending.times)), NEVER)
    if size > len(pending.lag):
        pending.lag = _padded(pending.lag, max(size, 2 * len(pending.lag)), 0)
