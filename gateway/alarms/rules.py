"""Pure building blocks of alarm rules: hysteresis, debounce, rate, spread, disagreement, coulomb count.

No I/O, no clock: every function takes the time (ns) it is asked about, so replayed data gives the
same alarms as the live run did, and a table of inputs gives a table of outputs in a unit test.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

NS = 1_000_000_000


def beyond(value: float, limit: float, *, above: bool, deadband: float, was: bool) -> bool:
    """Is `value` beyond `limit`? Once beyond, it must come back `deadband` inside to clear (hysteresis)."""
    if above:
        return value > (limit - deadband if was else limit)
    return value < (limit + deadband if was else limit)


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


@dataclass(slots=True)
class RateTracker:
    """Rate of change per second over a window (0: between consecutive samples)."""

    window_ns: int = 0
    history: deque[tuple[int, float]] = field(default_factory=deque)

    def update(self, ts: int, value: float) -> float | None:
        """Add a reading; return the rate (units/s) against the oldest reading in the window, if any."""
        h = self.history
        if h and ts <= h[-1][0]:
            return None  # out of order or duplicate: no rate
        h.append((ts, value))
        if self.window_ns <= 0:
            while len(h) > 2:
                h.popleft()
        else:
            while len(h) > 2 and ts - h[1][0] >= self.window_ns:
                h.popleft()
        if len(h) < 2:
            return None
        t0, v0 = h[0]
        return (value - v0) * NS / (ts - t0)


def spread(values: list[float]) -> tuple[float, int, int]:
    """(max - min, index of max, index of min) of a non-empty list."""
    # the first index of the max and of the min, as max/min over the indices with a key would give
    top, bottom = max(values), min(values)
    hi, lo = values.index(top), values.index(bottom)
    return values[hi] - values[lo], hi, lo


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
