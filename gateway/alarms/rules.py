"""Pure building blocks of alarm rules: hysteresis, debounce, rates, spread, disagreement, coulomb count.

No I/O, no clock: every function takes the time (ns) it is asked about, so replayed data gives the
same alarms as the live run did, and a table of inputs gives a table of outputs in a unit test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

NS = 1_000_000_000


@overload
def beyond(value: float, limit: float, *, above: bool, deadband: float = 0.0, was: bool = False) -> bool: ...
@overload
def beyond(value: F64, limit: float, *, above: bool, deadband: float = 0.0, was: bool = False) -> B: ...
def beyond(value: float | F64, limit: float, *, above: bool, deadband: float = 0.0, was: bool = False) -> bool | B:
    """Is `value` beyond `limit`? Once beyond, it must come back `deadband` inside to clear (hysteresis).

    The one test of every limit: a number gives a bool, an array (NaN: never beyond) an array of them."""
    edge = (limit - deadband if was else limit) if above else (limit + deadband if was else limit)
    return value > edge if above else value < edge


@dataclass(slots=True)
class Debounce:
    """On-delay and off-delay: a raw condition must hold for its delay before the output follows it."""

    on_delay_ns: int = 0
    off_delay_ns: int = 0
    output: bool = False
    pending_since: int | None = None  # when the raw condition last started to differ from the output

    def update(self, raw: bool, ts: int) -> bool | None:
        """Feed the raw condition at `ts`; return the new output when it changed, else None."""
        if raw == self.output:
            self.pending_since = None
            return None
        if self.pending_since is None:
            self.pending_since = ts
        return self.poll(ts)

    def due(self) -> int | None:
        """When the pending change completes its delay (None: nothing pending)."""
        if self.pending_since is None:
            return None
        return self.pending_since + (self.off_delay_ns if self.output else self.on_delay_ns)

    def poll(self, now: int) -> bool | None:
        """Time passed without new input: flip the output if the pending change has waited long enough."""
        if self.pending_since is None:
            return None
        delay = self.off_delay_ns if self.output else self.on_delay_ns
        if now - self.pending_since >= delay:
            self.output = not self.output
            self.pending_since = None
            return self.output
        return None


class RateWindows:
    """Rate of change per second of many elements, each over its own history, updated a column at a time.

    Each element has a slot; its history is a ring of (ts, value) in one column of `ts` and `v`. After
    a reading is added, the oldest is dropped while the second oldest is at least `window_ns` old
    (window 0: only the previous reading is kept), and the rate is taken against the oldest kept:
    `(value - v0) * NS / (ts - t0)`. A reading not newer than the element's last gives no rate and is
    not kept. A history longer than `MAX_DEPTH` readings (a window far longer than the sampling
    interval) drops its oldest.
    """

    MAX_DEPTH = 4096
    NEVER = np.iinfo(np.int64).min

    def __init__(self, window_ns: int = 0) -> None:
        self.window_ns = window_ns
        self.slots: dict[object, int] = {}
        self.ts = np.zeros((4, 0), dtype=np.int64)
        self.v = np.zeros((4, 0), dtype=np.float64)
        self.head = np.zeros(0, dtype=np.intp)
        self.size = np.zeros(0, dtype=np.intp)
        self.last = np.zeros(0, dtype=np.int64)  # each slot's newest ts (NEVER: none yet)

    def slot_of(self, elements: Sequence[object]) -> npt.NDArray[np.intp]:
        """The slots of these elements (new ones get a new, empty history)."""
        slots = self.slots
        for e in elements:
            if e not in slots:
                slots[e] = len(slots)
        grow = len(slots) - len(self.head)
        if grow > 0:
            grow = max(grow, len(self.head))  # at least twice the room: a new table does not copy all each time
            self.ts = np.pad(self.ts, ((0, 0), (0, grow)))
            self.v = np.pad(self.v, ((0, 0), (0, grow)))
            self.head = np.pad(self.head, (0, grow))
            self.size = np.pad(self.size, (0, grow))
            self.last = np.pad(self.last, (0, grow), constant_values=self.NEVER)
        return np.fromiter((slots[e] for e in elements), dtype=np.intp, count=len(elements))

    def history(self, element: object) -> list[tuple[int, float]]:
        """An element's kept readings, oldest first."""
        s = self.slots.get(element)
        if s is None:
            return []
        depth = len(self.ts)
        rows = [(int(self.head[s]) + k) % depth for k in range(int(self.size[s]))]
        return [(int(self.ts[k, s]), float(self.v[k, s])) for k in rows]

    def update(self, slots: npt.NDArray[np.intp], ts: npt.NDArray[np.int64], values: npt.NDArray[np.float64],
               unique: bool = False) -> F64:  # fmt: skip
        """Add readings (in order; a slot may repeat unless `unique`); return each one's rate (NaN: none)."""
        rates = np.full(len(slots), np.nan)
        if len(slots) == 0:
            return rates
        if unique:
            self._round(None, slots, ts, values, rates)
            return rates
        order = np.argsort(slots, kind="stable")
        ordered = slots[order]
        repeat = ordered[1:] == ordered[:-1]
        if not repeat.any():
            self._round(None, slots, ts, values, rates)
            return rates
        starts = np.flatnonzero(np.concatenate(([True], ~repeat)))
        rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.append(starts, len(order))))
        for k in range(int(rank.max()) + 1):  # the k-th reading of every slot: each slot once per round
            at = order[rank == k]
            self._round(at, slots[at], ts[at], values[at], rates)
        return rates

    def _round(self, at: npt.NDArray[np.intp] | None, s: npt.NDArray[np.intp], t: npt.NDArray[np.int64], x: F64,
               rates: F64) -> None:  # fmt: skip
        """Add one reading to each of the slots `s` (each once); their rates go to `rates[at]` (None: all)."""
        newer = t > self.last[s]
        if not newer.all():
            at = np.flatnonzero(newer) if at is None else at[newer]
            s, t, x = s[newer], t[newer], x[newer]
            if len(s) == 0:
                return
        depth = len(self.ts)
        size = self.size[s]
        full = size >= depth
        if full.any():
            if depth < self.MAX_DEPTH:
                self._deepen()
                depth = len(self.ts)
            else:  # the oldest reading goes
                self.head[s[full]] = (self.head[s[full]] + 1) % depth
                size = np.minimum(size, depth - 1)
        head = self.head[s]
        pos = head + size
        pos %= depth
        self.ts[pos, s] = t
        self.v[pos, s] = x
        self.last[s] = t
        size += 1
        if self.window_ns <= 0:
            head = (head + np.maximum(size - 2, 0)) % depth
            size = np.minimum(size, 2)
        else:
            cut = t - self.window_ns
            while True:
                nxt = head + 1
                nxt %= depth
                drop = (self.ts[nxt, s] <= cut) & (size > 2)
                if not drop.any():
                    break
                head += drop
                head %= depth
                size -= drop
        self.head[s], self.size[s] = head, size
        two = size >= 2  # a rate needs two readings
        if not two.all():
            at = np.flatnonzero(two) if at is None else at[two]
            s, t, x, head = s[two], t[two], x[two], head[two]
        got = (x - self.v[head, s]) * NS / (t - self.ts[head, s])
        if at is None:
            rates[:] = got
        else:
            rates[at] = got

    def _deepen(self) -> None:
        """Twice the ring depth: every history rewritten oldest first from row 0."""
        depth, n = self.ts.shape
        rows = (self.head[None, :] + np.arange(depth)[:, None]) % depth
        cols = np.arange(n)[None, :]
        self.ts = np.concatenate((self.ts[rows, cols], np.zeros((depth, n), dtype=np.int64)))
        self.v = np.concatenate((self.v[rows, cols], np.zeros((depth, n))))
        self.head = np.zeros(n, dtype=np.intp)


def spread(values: Sequence[float] | F64) -> tuple[float, int, int]:
    """(max - min, index of max, index of min) of non-empty values without NaN (the first of equal ones)."""
    v = np.asarray(values, dtype=np.float64)
    hi, lo = int(v.argmax()), int(v.argmin())
    return float(v[hi] - v[lo]), hi, lo


def allowed_difference(reference: float, tolerance: float, tolerance_pct: float) -> float:
    """The larger of an absolute tolerance and a percentage of the reference."""
    return max(tolerance, abs(reference) * tolerance_pct / 100.0)


@dataclass(slots=True)
class CoulombCounter:
    """The gateway's own SoC: anchored on the first SoC the BMS reports, then integrating current.

    Positive current charges (the catalog's convention). A gap longer than `max_gap_ns` (comm loss,
    restart) re-anchors on the BMS value rather than integrate across the hole.
    """

    max_gap_ns: int = 60 * NS
    soc: float | None = None
    last_ts: int | None = None
    last_current: float | None = None

    def anchor(self, soc: float, ts: int) -> None:
        self.soc = soc
        self.last_ts = ts

    def update(self, ts: int, current: float, capacity_ah: float) -> float | None:
        """Integrate `current` (A) up to `ts` with the trapezoid rule; return the counted SoC in %."""
        if self.soc is None or self.last_ts is None:
            self.last_current = current
            return None
        dt = ts - self.last_ts
        if dt <= 0:
            return self.soc
        if dt > self.max_gap_ns or self.last_current is None:
            self.soc = None  # re-anchor on the next BMS value
            self.last_current = current
            return None
        mean = (current + self.last_current) / 2
        self.soc += 100.0 * mean * dt / NS / 3600.0 / capacity_ah
        self.last_ts = ts
        self.last_current = current
        return self.soc


def normalize_state(value: object) -> object:
    """Compare states loosely: `"Open"` = `"open"`, `True` = `1`, `1.0` = `1`."""
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("true", "false"):
            return 1 if v == "true" else 0
        return v
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def state_unsafe(value: object, safe: frozenset[object] | None, unsafe: frozenset[object] | None) -> bool:
    v = normalize_state(value)
    if unsafe is not None:
        return v in unsafe
    return safe is not None and v not in safe


def as_number(value: object) -> float | None:
    """A finite float from a sample value, or None (text, None, NaN)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        f = float(value)
        return f if math.isfinite(f) else None
    return None


def where(module: int | None, cell: int | None) -> str:
    """The element suffix of an alarm id and message: m<module>c<cell>, m<module>, c<cell> or ''."""
    if module is None and cell is None:
        return ""
    return (f"m{module}" if module is not None else "") + (f"c{cell}" if cell is not None else "")


class _Defaulting(dict[str, object]):
    def __missing__(self, key: str) -> object:
        return ""


def render(template: str, **fields: object) -> str:
    """Fill a validated message template; a format problem never raises (the raw template is kept)."""
    try:
        return template.format_map(_Defaulting(fields))
    except (ValueError, TypeError, IndexError, AttributeError):
        return template


class Num(float):
    """A number for messages: 4 significant digits by default, any format spec when a template gives one."""

    def __format__(self, spec: str) -> str:
        return format(float(self), spec or ".4g")

    def __str__(self) -> str:
        return format(self, "")


def fmt(value: object) -> object:
    """A value for a message template (`{value}`, `{value:.3f}`)."""
    return Num(value) if isinstance(value, float) else value
