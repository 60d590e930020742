"""Rules on each point: threshold, rate, state, BMS bits and quality, evaluated over a batch's columns.

Each rule compiles, per key table, the points it reads (`columns.select`); per batch it gathers their
values and qualities by index, finds with one vectorised test the points beyond a limit, adds the
points of elements that have an instance (they may clear, or wait for a delay), and reports only those
to the engine (`Observer.observe`: debounce and state machine). A healthy element costs its share of
the array operations and nothing else.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gateway.alarms import config as c
from gateway.alarms import rules as r
from gateway.alarms.columns import F64, IDX, Element, Frame, Points, Table, of, select
from gateway.alarms.instances import Key, Observer
from gateway.model import GOOD, QUALITIES, QUALITY_CODE

FALSE_STATES = frozenset({0, "0", "", "off", "false", "inactive", "ok", "normal"})


class Rule:
    """A rule of the configuration, as evaluated: `compile` once per key table, `evaluate` per batch."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.id: str = spec.id
        self.racks = None if spec.racks is None else frozenset(spec.racks)

    def compile(self, table: Table) -> Any:
        """What this rule reads of batches with these keys (None: nothing)."""
        return select(table, of(self.spec.quantity), self.racks)

    def evaluate(self, f: Frame, part: Any, obs: Observer) -> None:
        """Report to `obs` the conditions of the points that may have changed."""

    def text(self, default: str, **fields: object) -> str:
        fields.setdefault("rule", self.id)
        return r.render(self.spec.message or default, **fields)

    def candidates(self, hit: Any, pts: Points, obs: Observer) -> list[int]:
        """Positions beyond a limit (`hit`), with those of elements that have an instance (or will have one,
        from an earlier point of the batch), in order."""
        js: list[int] = np.flatnonzero(hit).tolist()
        mine = obs.instances_of(self.id)
        elements = {Element(k.rack, k.module, k.cell, k.name) for k in mine}
        if pts.repeats:
            elements.update(pts.elements[j] for j in js)
        if elements:
            js = sorted(set(js).union(pts.positions(elements)))
        return js


def _where(module: int | None, cell: int | None) -> str:
    at = r.where(module, cell)
    return f" {at}" if at else ""


class Threshold(Rule):
    spec: c.ThresholdRule

    def __init__(self, spec: c.ThresholdRule) -> None:
        super().__init__(spec)
        self.above = spec.high is not None
        self.limit = float(spec.high if spec.high is not None else spec.low)  # type: ignore[arg-type]
        self.word = "above" if self.above else "below"

    def evaluate(self, f: Frame, pts: Points, obs: Observer) -> None:
        b, v = f.b, f.nums[pts.take]
        for j in self.candidates(r.beyond(v, self.limit, above=self.above), pts, obs):
            x = float(v[j])
            if x != x:
                continue  # not a good number: nothing to say
            e = pts.elements[j]
            key = Key(self.id, e.rack, e.module, e.cell)
            was = obs.raw_of(key)
            raw = r.beyond(x, self.limit, above=self.above, deadband=self.spec.deadband, was=bool(was))
            if was is None and not raw:
                continue
            word = self.word if raw else "back within"
            msg = self.text("{quantity}{where} {value} {unit} " + word + " {limit} {unit}", quantity=pts.quantity(j),
                            where=_where(e.module, e.cell), value=r.fmt(x), unit=pts.unit(j),
                            limit=r.fmt(self.limit), rack=e.rack)  # fmt: skip
            obs.observe(key, raw, int(b.ts[pts.idx[j]]), x, msg)


class Rate(Rule):
    spec: c.RateRule

    def __init__(self, spec: c.RateRule) -> None:
        super().__init__(spec)
        self.windows = r.RateWindows(int(spec.window * r.NS))
        self.high = spec.rise if spec.rise is not None else np.inf
        self.low = -spec.fall if spec.fall is not None else -np.inf

    def compile(self, table: Table) -> tuple[Points, IDX] | None:
        pts = select(table, of(self.spec.quantity), self.racks)
        return None if pts is None else (pts, self.windows.slot_of(pts.elements))

    def rates(self, f: Frame, pts: Points, slots: IDX) -> F64:
        """Each point's rate of change (NaN: none), its reading added to its element's history."""
        b, v = f.b, f.nums[pts.take]
        good = np.flatnonzero(~np.isnan(v))
        out = np.full(len(v), np.nan)
        out[good] = self.windows.update(slots[good], b.ts[pts.idx[good]], v[good])
        return out

    def evaluate(self, f: Frame, part: tuple[Points, IDX], obs: Observer) -> None:
        pts, slots = part
        b, rates = f.b, self.rates(f, pts, slots)
        sp = self.spec
        for j in self.candidates((rates > self.high) | (rates < self.low), pts, obs):
            rate = float(rates[j])
            if rate != rate:
                continue
            e = pts.elements[j]
            key = Key(self.id, e.rack, e.module, e.cell)
            was = obs.raw_of(key)
            db, on = sp.deadband, bool(was)
            raw = (sp.rise is not None and r.beyond(rate, sp.rise, above=True, deadband=db, was=on)) or (
                sp.fall is not None and r.beyond(rate, -sp.fall, above=False, deadband=db, was=on))  # fmt: skip
            if was is None and not raw:
                continue
            limit = sp.rise if rate >= 0 else sp.fall
            msg = self.text("{quantity}{where} changes {value} {unit}/s (limit {limit} {unit}/s)",
                            quantity=pts.quantity(j), where=_where(e.module, e.cell), value=r.fmt(rate),
                            unit=pts.unit(j), limit=r.fmt(limit), rack=e.rack)  # fmt: skip
            obs.observe(key, raw, int(b.ts[pts.idx[j]]), rate, msg)


class State(Rule):
    """An interlock, contactor or enum state: few points, each judged by its value as Python sees it."""

    spec: c.StateRule

    def __init__(self, spec: c.StateRule) -> None:
        super().__init__(spec)
        self.safe = None if spec.safe is None else frozenset(r.normalize_state(v) for v in spec.safe)
        self.unsafe = None if spec.unsafe is None else frozenset(r.normalize_state(v) for v in spec.unsafe)

    def evaluate(self, f: Frame, pts: Points, obs: Observer) -> None:
        b = f.b
        good = b.quality[pts.take] == GOOD
        for j, i in enumerate(pts.idx.tolist()):
            value = b.value(i)
            if not good[j] or value is None:
                continue
            e = pts.elements[j]
            key = Key(self.id, e.rack, e.module, e.cell)
            raw = r.state_unsafe(value, self.safe, self.unsafe)
            if not raw and obs.raw_of(key) is None:
                continue
            shown = value if isinstance(value, str) else r.as_number(value)
            msg = self.text("{quantity} is {value}", quantity=pts.quantity(j), value=value, rack=e.rack)
            obs.observe(key, raw, int(b.ts[i]), shown, msg)


class Bits(Rule):
    """BMS alarm or warning bits: one instance per bit name that is set."""

    spec: c.BitsRule

    def compile(self, table: Table) -> Points | None:
        prefix = self.spec.prefix
        return select(table, lambda q: q[len(prefix) :] if q.startswith(prefix) else None, self.racks)

    def evaluate(self, f: Frame, pts: Points, obs: Observer) -> None:
        b = f.b
        v = b.values[pts.take]
        good = b.quality[pts.take] == GOOD
        hit = good & (v != 0) & ~np.isnan(v)
        objects = b.objects or {}
        texts = {j: objects[i] for j, i in enumerate(pts.idx.tolist()) if i in objects} if objects else {}
        for j, x in texts.items():
            hit[j] = good[j] and r.normalize_state(x) not in FALSE_STATES
        for j in self.candidates(hit, pts, obs):
            value = texts[j] if j in texts else b.value(int(pts.idx[j]))
            if not good[j] or value is None:
                continue
            e = pts.elements[j]
            key = Key(self.id, e.rack, e.module, e.cell, e.name)
            raw = bool(hit[j])
            if not raw and obs.raw_of(key) is None:
                continue
            shown = value if isinstance(value, str) else r.as_number(value)
            msg = self.text("BMS {quantity} set", quantity=pts.quantity(j), value=value, rack=e.rack)
            obs.observe(key, raw, int(b.ts[pts.idx[j]]), shown, msg)


class QualityFlag(Rule):
    """Readings whose quality flag is one the rule names (per quantity and element)."""

    spec: c.QualityRule

    def __init__(self, spec: c.QualityRule) -> None:
        super().__init__(spec)
        self.codes = np.asarray([QUALITY_CODE[q] for q in spec.qualities], dtype=np.uint8)

    def compile(self, table: Table) -> Points | None:
        only = self.spec.quantity
        return select(table, lambda q: q if only is None or q == only else None, self.racks)

    def evaluate(self, f: Frame, pts: Points, obs: Observer) -> None:
        b = f.b
        q = b.quality[pts.take]
        hit = np.isin(q, self.codes)
        if not hit.any() and not obs.instances_of(self.id):
            return
        for j in self.candidates(hit, pts, obs):
            e = pts.elements[j]
            key = Key(self.id, e.rack, e.module, e.cell, e.name)
            raw = bool(hit[j])
            if not raw and obs.raw_of(key) is None:
                continue
            flag = str(QUALITIES[q[j]])
            msg = self.text("{quantity}{where} quality {value}", quantity=e.name, where=_where(e.module, e.cell),
                            value=flag, rack=e.rack)  # fmt: skip
            obs.observe(key, raw, int(b.ts[pts.idx[j]]), flag, msg)
