"""Rules on each point: threshold, rate, state, BMS bits and quality, evaluated over a batch's columns.

Each rule compiles, per key table, the points it reads (`columns.select`); per batch it gathers their
values and qualities by index, finds with one vectorised test the points beyond a limit, adds the
points of elements that have an instance (they may clear, or wait for a delay), and reports only those
to the engine (`Observer.observe`: debounce and state machine). A healthy element costs its share of
the array operations and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from gateway.alarms import config as c
from gateway.alarms import rules as r
from gateway.alarms.columns import F64, IDX, Frame, Points, Table, of, select
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

    def watched(self, pts: Points, obs: Observer) -> list[Key]:
        """The rule's instances in the racks of these points (elements whose condition must be re-checked)."""
        racks = pts.racks
        if len(racks) == 1:
            return list(obs.watched(self.id, racks[0]))
        return [key for rack in racks for key in obs.watched(self.id, rack)]

    def candidates(self, js: list[int], mine: list[Key], pts: Points) -> list[int]:
        """Positions `js` (beyond a limit) with those of the elements of `mine` (instances), in order; when an
        element has several points, all of an element beyond a limit (the later ones may clear it)."""
        elements: list[tuple[object, ...]] = [k[1:] for k in mine]
        if js and pts.repeats:
            elements += [pts.elements[j] for j in js]
        if elements:
            js = sorted(set(js).union(pts.positions(elements)))
        return js


def _where(module: int | None, cell: int | None) -> str:
    at = r.where(module, cell)
    return f" {at}" if at else ""


class Threshold(Rule):
    """One limit on a quantity; evaluated with the other threshold rules on its quantity (`Thresholds`)."""

    spec: c.ThresholdRule

    def __init__(self, spec: c.ThresholdRule) -> None:
        super().__init__(spec)
        self.above = spec.high is not None
        self.limit = float(spec.high if spec.high is not None else spec.low)  # type: ignore[arg-type]
        self.word = "above" if self.above else "below"

    def judge(self, f: Frame, pts: Points, v: F64, js: list[int], mine: list[Key], obs: Observer) -> None:
        """The points `js` beyond the limit and those of the instances `mine`: hysteresis, then the engine."""
        b = f.b
        for j in self.candidates(js, mine, pts):
            x = float(v[j])
            if x != x:
                continue  # not a good number: nothing to say
            e = pts.element(j)
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


class Thresholds(Rule):
    """The threshold rules on one quantity (and the same racks) in one pass: one gather of the values, and
    when one is beyond the nearest limit, one comparison against all the limits stacked; only the rules with
    a point beyond their limit or an instance in the rack go on to `Threshold.judge`."""

    def __init__(self, rules: list[Threshold]) -> None:
        super().__init__(rules[0].spec)
        self.rules = rules
        self.sign = np.asarray([1.0 if t.above else -1.0 for t in rules])
        self.edges = self.sign * np.asarray([t.limit for t in rules])  # v * sign > edge: beyond
        self.top = min((t.limit for t in rules if t.above), default=np.inf)
        self.bottom = max((t.limit for t in rules if not t.above), default=-np.inf)

    def evaluate(self, f: Frame, pts: Points, obs: Observer) -> None:
        v = f.nums[pts.take]
        hits: dict[int, list[int]] = {}
        if not (v.max() <= self.top and v.min() >= self.bottom):  # a point beyond a limit (or a NaN)
            ks, js = np.nonzero((v[:, None] * self.sign > self.edges).T)
            for k, j in zip(ks.tolist(), js.tolist(), strict=True):
                hits.setdefault(k, []).append(j)
        for k, t in enumerate(self.rules):
            mine = t.watched(pts, obs)
            if mine or k in hits:
                t.judge(f, pts, v, hits.get(k, []), mine, obs)


def grouped(rules: list[Rule]) -> list[Rule]:
    """The rules as evaluated: the threshold rules on one quantity and racks as one `Thresholds`, where the
    first of them is."""
    groups: dict[tuple[str, frozenset[str] | None], list[Threshold]] = {}
    order: list[Rule | tuple[str, frozenset[str] | None]] = []
    for rule in rules:
        if isinstance(rule, Threshold):
            at = (rule.spec.quantity, rule.racks)
            if at not in groups:
                order.append(at)
            groups.setdefault(at, []).append(rule)
        else:
            order.append(rule)
    return [Thresholds(groups[x]) if isinstance(x, tuple) else x for x in order]


class Histories(NamedTuple):
    """What a rate rule reads of a key table: its points, the history slot of each, and whether no slot repeats."""

    pts: Points
    slots: IDX
    unique: bool


class Rate(Rule):
    spec: c.RateRule

    def __init__(self, spec: c.RateRule) -> None:
        super().__init__(spec)
        self.windows = r.RateWindows(int(spec.window * r.NS))
        self.high = spec.rise if spec.rise is not None else np.inf
        self.low = -spec.fall if spec.fall is not None else -np.inf

    def compile(self, table: Table) -> Histories | None:
        pts = select(table, of(self.spec.quantity), self.racks)
        return None if pts is None else Histories(pts, self.windows.slot_of(pts.elements), not pts.repeats)

    def rates(self, f: Frame, part: Histories) -> F64:
        """Each point's rate of change (NaN: none), its reading added to its element's history."""
        pts, slots, unique = part
        b, v = f.b, f.nums[pts.take]
        if f.finite:  # every point a number
            return self.windows.update(slots, b.ts[pts.take], v, unique)
        good = np.flatnonzero(~np.isnan(v))
        out = np.full(len(v), np.nan)
        out[good] = self.windows.update(slots[good], b.ts[pts.idx[good]], v[good], unique)
        return out

    def evaluate(self, f: Frame, part: Histories, obs: Observer) -> None:
        pts = part.pts
        b, rates = f.b, self.rates(f, part)
        sp = self.spec
        js: list[int] = np.flatnonzero((rates > self.high) | (rates < self.low)).tolist()
        mine = self.watched(pts, obs)
        for j in self.candidates(js, mine, pts) if js or mine else ():
            rate = float(rates[j])
            if rate != rate:
                continue
            e = pts.element(j)
            key = Key(self.id, e.rack, e.module, e.cell)
            was = obs.raw_of(key)
            db, on = sp.deadband, bool(was)
            raw = (sp.rise is not None and r.beyond(rate, sp.rise, above=True, deadband=db, was=on)) or (
                sp.fall is not None and r.beyond(rate, -sp.fall, above=False, deadband=db, was=on))  # fmt: skip
            if was is None and not raw:
                continue
            obs.observe(key, raw, int(b.ts[pts.idx[j]]), rate, self._message(pts, j, rate))

    def _message(self, pts: Points, j: int, rate: float) -> Callable[[], str]:
        """What makes the message of point `j` at this rate (only when it is read)."""
        sp = self.spec

        def message() -> str:
            e = pts.element(j)
            return self.text("{quantity}{where} changes {value} {unit}/s (limit {limit} {unit}/s)",
                             quantity=pts.quantity(j), where=_where(e.module, e.cell), value=r.fmt(rate),
                             unit=pts.unit(j), limit=r.fmt(sp.rise if rate >= 0 else sp.fall), rack=e.rack)  # fmt: skip

        return message


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
            e = pts.element(j)
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
        js: list[int] = np.flatnonzero(hit).tolist()
        mine = self.watched(pts, obs)
        for j in self.candidates(js, mine, pts) if js or mine else ():
            value = texts[j] if j in texts else b.value(int(pts.idx[j]))
            if not good[j] or value is None:
                continue
            e = pts.element(j)
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
        self.flagged = np.zeros(256, dtype=np.bool_)  # by quality code: one the rule names
        self.flagged[[QUALITY_CODE[q] for q in spec.qualities]] = True

    def compile(self, table: Table) -> Points | None:
        only = self.spec.quantity
        return select(table, lambda q: q if only is None or q == only else None, self.racks)

    def evaluate(self, f: Frame, pts: Points, obs: Observer) -> None:
        b = f.b
        q = b.quality[pts.take]
        mine = self.watched(pts, obs)
        if not mine and (f.clean or not q.any()):
            return  # every point GOOD (code 0), no instance
        hit = self.flagged[q]
        js: list[int] = np.flatnonzero(hit).tolist()
        for j in self.candidates(js, mine, pts) if js or mine else ():
            e = pts.element(j)
            key = Key(self.id, e.rack, e.module, e.cell, e.name)
            raw = bool(hit[j])
            if not raw and obs.raw_of(key) is None:
                continue
            flag = str(QUALITIES[q[j]])
            msg = self.text("{quantity}{where} quality {value}", quantity=e.name, where=_where(e.module, e.cell),
                            value=flag, rack=e.rack)  # fmt: skip
            obs.observe(key, raw, int(b.ts[pts.idx[j]]), flag, msg)
