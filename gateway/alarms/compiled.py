"""Rules compiled for the live path: one small handler object per rule, built once at start-up.

A handler reads samples of the quantities it names (the engine indexes handlers by quantity, so a
sample no rule reads costs one dict lookup) and reports raw conditions to the engine through
`Observer.observe`. The engine does the debounce and the state machine. A handler keeps no alarm
state for elements that are normal, so a rack of thousands of healthy cells costs nothing but the
comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.alarms import config as c
from gateway.alarms import rules as r
from gateway.alarms.ratecolumns import Element, Tracker, count_element
from gateway.model import Quality, Sample

# (rule id, rack, module, cell, name): an alarm instance. The alarm id is made from it once.
Key = tuple[str, str, int | None, int | None, str]
Message = Callable[[], str] | str  # built only when needed (a callable) or already built


def alarm_id(key: Key) -> str:
    rule, rack, module, cell, name = key
    suffix = r.where(module, cell)
    parts = [rack, rule] + ([name] if name else []) + ([suffix] if suffix else [])
    return ":".join(parts)


class Observer(Protocol):
    def raw_of(self, key: Key) -> bool | None:
        """The last raw condition of an instance, None when it is idle (normal, nothing pending)."""

    def observe(self, key: Key, raw: bool, ts: int, value: float | str | None, message: Message) -> None:
        """Report the raw condition of an instance at `ts`; `message` is a string or makes one."""


@dataclass
class Handler:
    spec: c.RuleBase
    obs: Observer
    quantities: tuple[str, ...] = ()
    prefix: str | None = None
    racks: frozenset[str] | None = None
    touched: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.spec.racks is not None:
            self.racks = frozenset(self.spec.racks)

    def wants(self, rack: str) -> bool:
        return self.racks is None or rack in self.racks

    def sample(self, s: Sample) -> None:
        """One sample of a quantity this handler reads."""

    def finish(self) -> None:
        """End of a batch: evaluate what was gathered."""

    def text(self, default: str, **fields: object) -> str:
        fields.setdefault("rule", self.spec.id)
        return r.render(self.spec.message or default, **fields)


class ThresholdHandler(Handler):
    spec: c.ThresholdRule

    def __post_init__(self) -> None:
        super().__post_init__()
        sp = self.spec
        self.quantities = (sp.quantity,)
        self.above = sp.high is not None
        self.limit = float(sp.high if sp.high is not None else sp.low)  # type: ignore[arg-type]
        self.word = "above" if self.above else "below"

    def sample(self, s: Sample) -> None:
        if s.quality != Quality.GOOD:
            return
        v = r.as_number(s.value)
        if v is not None:
            self.check(s, v)

    def check(self, s: Sample, v: float) -> None:
        """A good numeric sample (the ThresholdGroup has done the cheap checks)."""
        if self.racks is not None and s.rack not in self.racks:
            return
        key: Key = (self.spec.id, s.rack, s.module, s.cell, "")
        was = self.obs.raw_of(key)
        raw = r.beyond(v, self.limit, above=self.above, deadband=self.spec.deadband, was=bool(was))
        if was is None and not raw:
            return  # the common case: a healthy element, nothing to track
        at = r.where(s.module, s.cell)
        self.obs.observe(key, raw, s.ts, v, lambda: self._msg(s, v, at, raw))

    def _msg(self, s: Sample, v: float, at: str, raw: bool) -> str:
        word = self.word if raw else "back within"
        default = "{quantity}{where} {value} {unit} " + word + " {limit} {unit}"
        return self.text(
            default,
            quantity=s.quantity,
            where=f" {at}" if at else "",
            value=r.fmt(v),
            unit=s.unit,
            limit=r.fmt(self.limit),
            rack=s.rack,
        )


class RateHandler(Handler):
    spec: c.RateRule

    def __post_init__(self) -> None:
        super().__post_init__()
        sp = self.spec
        self.quantities = (sp.quantity,)
        self.trackers: dict[Element, Tracker] = {}  # ColumnTrackers while a layout's columns hold them
        self.window_ns = int(sp.window * r.NS)
        # A rate inside (low, high) of an element without an instance raises nothing: no further look.
        self.high = sp.rise if sp.rise is not None else math.inf
        self.low = -sp.fall if sp.fall is not None else -math.inf
        self.tracked: dict[Element, int] = {}  # elements with an instance of this rule (the engine counts)

    def track(self, element: Element, delta: int) -> None:
        count_element(self.tracked, element, delta)

    def sample(self, s: Sample) -> None:
        if s.quality != Quality.GOOD:
            return
        self.good(s)

    def good(self, s: Sample) -> None:
        """`sample` for a sample the engine already knows is GOOD."""
        if self.racks is not None and s.rack not in self.racks:
            return
        v = s.value
        if type(v) is float:
            if v - v != 0:  # NaN or infinite: as_number gives None
                return
        else:
            v = r.as_number(v)
            if v is None:
                return
        tk = (s.rack, s.module, s.cell)
        tracker = self.trackers.get(tk)
        if tracker is None:
            tracker = self.trackers[tk] = r.RateTracker(self.window_ns)
        rate = tracker.update(s.ts, v)
        if rate is None:
            return
        if self.low <= rate <= self.high and (not self.tracked or tk not in self.tracked):
            return  # the common case: a steady element, nothing to track
        self.judge(s, rate)

    def judge(self, s: Sample, rate: float) -> None:
        """The rate of a good sample's element: report it when beyond a limit or when an instance exists."""
        key: Key = (self.spec.id, s.rack, s.module, s.cell, "")
        was = bool(self.obs.raw_of(key))
        sp = self.spec
        raw = (sp.rise is not None and r.beyond(rate, sp.rise, above=True, deadband=sp.deadband, was=was)) or (
            sp.fall is not None and r.beyond(rate, -sp.fall, above=False, deadband=sp.deadband, was=was)
        )
        if not raw and self.obs.raw_of(key) is None:
            return
        at = r.where(s.module, s.cell)
        limit = sp.rise if rate >= 0 else sp.fall
        self.obs.observe(
            key,
            raw,
            s.ts,
            rate,
            lambda: self.text(
                "{quantity}{where} changes {value} {unit}/s (limit {limit} {unit}/s)",
                quantity=s.quantity,
                where=f" {at}" if at else "",
                value=r.fmt(rate),
                unit=s.unit,
                limit=r.fmt(limit),
                rack=s.rack,
            ),
        )


class SpreadHandler(Handler):
    """Reads the values its `Gatherer` collected for the batch (set by the engine)."""

    spec: c.SpreadRule

    def __post_init__(self) -> None:
        super().__post_init__()
        self.values: dict[str, list[float]] = {}
        self.samples: dict[str, list[Sample]] = {}
        self.bounds: dict[str, tuple[int, float, float]] = {}  # the gatherer's min and max, when known

    def groups(self) -> list[tuple[str, int | None, list[float], list[Sample]]]:
        out: list[tuple[str, int | None, list[float], list[Sample]]] = []
        for rack, vals in self.values.items():
            if not self.wants(rack):
                continue
            samples = self.samples[rack]
            if self.spec.scope == "rack":
                out.append((rack, None, vals, samples))
                continue
            by: dict[int | None, tuple[list[float], list[Sample]]] = {}
            for v, smp in zip(vals, samples, strict=True):
                vs, ss = by.setdefault(smp.module, ([], []))
                vs.append(v)
                ss.append(smp)
            out += [(rack, m, vs, ss) for m, (vs, ss) in by.items()]
        return out

    def finish(self) -> None:
        sp = self.spec
        for rack, module, vals, samples in self.groups():
            if len(vals) < sp.min_count:
                continue
            known = self.bounds.get(rack) if module is None else None
            if known is not None and known[0] == len(vals):
                width = known[2] - known[1]  # what `spread` gives: max - min
            else:
                width = r.spread(vals)[0]
            key: Key = (sp.id, rack, module, None, "")
            was = self.obs.raw_of(key)
            raw = r.beyond(width, sp.high, above=True, deadband=sp.deadband, was=bool(was))
            if was is None and not raw:
                continue
            width, hi, lo = r.spread(vals)
            h, lw = samples[hi], samples[lo]
            scope = f" m{module}" if module is not None else ""
            self.obs.observe(
                key, raw, samples[-1].ts, width,
                self.text(
                    "{quantity} spread{where} {value} {unit} (max {other}) "
                    + ("above" if raw else "back within")
                    + " {limit} {unit}",
                    quantity=sp.quantity, where=scope, value=r.fmt(width), unit=h.unit, limit=r.fmt(sp.high),
                    other=f"{r.fmt(vals[hi])} at {r.where(h.module, h.cell)}, min {r.fmt(vals[lo])} at "
                    f"{r.where(lw.module, lw.cell)}",
                    rack=rack,
                ),
            )  # fmt: skip


class StateHandler(Handler):
    spec: c.StateRule

    def __post_init__(self) -> None:
        super().__post_init__()
        sp = self.spec
        self.quantities = (sp.quantity,)
        self.safe = None if sp.safe is None else frozenset(r.normalize_state(v) for v in sp.safe)
        self.unsafe = None if sp.unsafe is None else frozenset(r.normalize_state(v) for v in sp.unsafe)

    def sample(self, s: Sample) -> None:
        if s.quality != Quality.GOOD or not self.wants(s.rack) or s.value is None:
            return
        key: Key = (self.spec.id, s.rack, s.module, s.cell, "")
        raw = r.state_unsafe(s.value, self.safe, self.unsafe)
        if not raw and self.obs.raw_of(key) is None:
            return
        value = s.value if isinstance(s.value, str) else r.as_number(s.value)
        self.obs.observe(
            key, raw, s.ts, value,
            lambda: self.text("{quantity} is {value}", quantity=s.quantity, value=s.value, rack=s.rack),
        )  # fmt: skip


class BitsHandler(Handler):
    spec: c.BitsRule

    def __post_init__(self) -> None:
        super().__post_init__()
        self.prefix = self.spec.prefix

    def sample(self, s: Sample) -> None:
        if s.quality != Quality.GOOD or not self.wants(s.rack) or s.value is None:
            return
        name = s.quantity[len(self.spec.prefix) :]
        key: Key = (self.spec.id, s.rack, s.module, s.cell, name)
        raw = r.normalize_state(s.value) not in (0, "0", "", "off", "false", "inactive", "ok", "normal")
        if not raw and self.obs.raw_of(key) is None:
            return
        self.obs.observe(
            key, raw, s.ts, r.as_number(s.value) if not isinstance(s.value, str) else s.value,
            lambda: self.text("BMS {quantity} set", quantity=s.quantity, value=s.value, rack=s.rack),
        )  # fmt: skip
