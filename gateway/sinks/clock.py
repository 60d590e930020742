"""Guard against a wall clock that steps backwards: a point must never overwrite a stored one.

InfluxDB overwrites a point with the same series and time. When the gateway's clock steps back, new
points could land on the times of points already written. The guard remembers, per series, the
newest time written; a point before it is written with an extra tag `clock_step=<n>` (a new
series), so nothing is overwritten and the step is visible (logged once per step). A point at the
same time as the newest (two readings within one unit of the write precision) moves one unit on.

The guard's state only moves when a write was confirmed (`commit`), so a retried batch renders the
same lines again and overwrites itself, which is what makes retries exactly-once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import structlog

log = structlog.get_logger("sink.clock")

_SPACE = re.compile(r"(?<!\\) ")

Item = tuple[int, str]
# (seq, series key, fields, time, the line itself or None when it is `<key> <fields> <time>`)
Part = tuple[int, str, str, int, str | None]


def split_line(line: str) -> tuple[str, str, int]:
    """(series key, fields, time) of a line-protocol line."""
    key, rest = _SPACE.split(line, maxsplit=1)
    fields, ts = rest.rsplit(" ", 1)
    return key, fields, int(ts)


class ClockGuard:
    def __init__(self, sink: str) -> None:
        self.sink = sink
        self.newest: dict[str, int] = {}  # series → newest untagged time written
        self.steps = 0  # clock steps seen so far
        self.stepped: dict[str, int] = {}  # series → step number it is tagged with now

    def apply(self, items: Sequence[Item]) -> tuple[list[Item], tuple[dict[str, int], int, dict[str, int]]]:
        """Lines to write and the state to `commit` once the server confirmed them."""
        return self.apply_parts([(seq, *split_line(line), line) for seq, line in items])

    def apply_parts(self, items: Sequence[Part]) -> tuple[list[Item], tuple[dict[str, int], int, dict[str, int]]]:
        """`apply` for lines already split (no parsing): the encoder knows each line's series key."""
        newest = dict(self.newest)
        stepped = dict(self.stepped)
        steps = self.steps
        new_step = 0
        out: list[Item] = []
        for seq, key, fields, ts, line in items:
            top = newest.get(key)
            if top is None or ts > top:
                newest[key] = ts
                if stepped:
                    stepped.pop(key, None)
                out.append((seq, f"{key} {fields} {ts}" if line is None else line))
            elif ts == top and key not in stepped:
                # Two points of a series in the same time unit (precision): the later one moves one
                # unit on, instead of overwriting the first.
                newest[key] = ts + 1
                out.append((seq, f"{key} {fields} {ts + 1}"))
            else:
                if key not in stepped:
                    if not new_step:
                        steps += 1
                        new_step = steps
                        log.warning(
                            "clock stepped backwards: points tagged clock_step until time passes the newest written",
                            sink=self.sink, series=key, newest=top, now=ts, step=steps,
                        )  # fmt: skip
                    stepped[key] = new_step
                out.append((seq, f"{key},clock_step={stepped[key]} {fields} {ts}"))
        return out, (newest, steps, stepped)

    def commit(self, state: tuple[dict[str, int], int, dict[str, int]]) -> None:
        self.newest, self.steps, self.stepped = state
