"""Guard against a wall clock that steps backwards: a point must never overwrite a stored one.

InfluxDB overwrites a point with the same series and time. When the gateway's clock steps back, new
points could land on the times of points already written. The guard remembers, per series, the
newest time written; a point before it is written with an extra tag `clock_step=<n>` (a new
series), so nothing is overwritten and the step is visible (logged once per step). A point at the
same time as the newest (two readings within one unit of the write precision) moves one unit on.

The guard's state only moves when a write was confirmed (`commit`), so a retried batch renders the
same lines again and overwrites itself, which is what makes retries exactly-once. At start the sink
rebuilds the state from the last rows it had delivered before (`InfluxSink.resume`), so a restart
does not forget what was written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from itertools import islice, repeat
from operator import ge, le
from typing import NamedTuple

import structlog

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


class Pending:
    """What one write changes in the guard: an overlay on its state, merged by `commit` once the server
    confirmed the write (so a failed write leaves the guard as it was and the retry renders the same)."""

    __slots__ = ("new_step", "newest", "stepped", "steps")

    def __init__(self, steps: int, stepped: dict[str, int]) -> None:
        self.newest: dict[str, int] = {}  # series → newest time of this write (over the guard's)
        self.steps = steps
        self.stepped = stepped  # a copy of the guard's (small: only series tagged right now)
        self.new_step = 0  # the step number this write started, 0 if none


_NEVER = float("-inf")


class ClockGuard:
    def __init__(self, sink: str) -> None:
        self.sink = sink
        self.newest: dict[str, int] = {}  # series → newest untagged time written
        self.steps = 0  # clock steps seen so far
        self.stepped: dict[str, int] = {}  # series → step number it is tagged with now

    def begin(self) -> Pending:
        return Pending(self.steps, dict(self.stepped))

    def apply(self, items: Sequence[Item]) -> tuple[list[Item], Pending]:
        """Lines to write and the state to `commit` once the server confirmed them."""
        pending = self.begin()
        lines = self.lines(pending, [split_line(line) for _seq, line in items])
        return [Item(seq, line) for (seq, _old), line in zip(items, lines, strict=True)], pending

    def admit_each(self, pending: Pending, keys: Sequence[str], times: Sequence[int]) -> bool:
        """Whether each line is written as it is (its series' newest time is before it), as `lines` would
        write them; if so they are recorded as written (no line built). A series may come again in the
        lines only at a later time unit: the series are distinct, or the times do not decrease and no
        series comes twice at one time."""
        if len(set(keys)) != len(keys) and (
            not all(map(le, times, islice(times, 1, None))) or len(set(zip(keys, times, strict=True))) != len(keys)
        ):
            return False
        ov = pending.newest
        tops = map(ov.get, keys, map(self.newest.get, keys, repeat(_NEVER)))
        if any(map(ge, tops, times)):
            return False
        ov.update(zip(keys, times, strict=True))
        stepped = pending.stepped
        if stepped:
            for key in keys:
                stepped.pop(key, None)
        return True

    def lines(self, pending: Pending, points: Iterable[LinePoint]) -> list[str]:
        """The line to write for each point (series key, fields, time, and the line itself or None when
        it is `<key> <fields> <time>`), in order."""
        ov = pending.newest
        newest = self.newest.get
        stepped = pending.stepped
        out = []
        for key, fields, ts, line in points:
            top = ov.get(key)
            if top is None:
                top = newest(key)
            if top is None or ts > top:
                ov[key] = ts
                if stepped:
                    stepped.pop(key, None)
                out.append(f"{key} {fields} {ts}" if line is None else line)
            else:
                out.append(self._held(pending, key, fields, ts, top))
        return out

    def _held(self, pending: Pending, key: str, fields: str, ts: int, top: int) -> str:
        """A point not after the newest of its series."""
        stepped = pending.stepped
        if ts == top and key not in stepped:
            # Two points of a series in the same time unit (precision): the later one moves one
            # unit on, instead of overwriting the first.
            pending.newest[key] = ts + 1
            return f"{key} {fields} {ts + 1}"
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
        self.newest.update(pending.newest)
        self.steps = pending.steps
        self.stepped = pending.stepped
