"""Rules over a rack's readings together: spread of an array, a value against a BMS limit, two readings
that must agree (a quantity, the sum of the cells, the coulomb count).

They evaluate at the end of each batch from its columns, so the order of points within a poll does
not matter. Limits and references persist between batches (a BMS may report its limits less often
than the current).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from gateway.alarms import config as c
from gateway.alarms import rules as r
from gateway.alarms.columns import IDX, Frame, Points, Table, of, select
from gateway.alarms.instances import Key, Observer
from gateway.alarms.pointrules import Rule


class Groups(NamedTuple):
    """A spread rule's points grouped by rack (or rack and module): `order` sorts them by group."""

    pts: Points
    order: IDX
    starts: IDX
    labels: list[tuple[str, int | None]]
    sizes: IDX  # points per group
    sorted: bool  # already in group order (`order` is the identity)


class Spread(Rule):
    spec: c.SpreadRule

    def compile(self, table: Table) -> Groups | None:
        pts = select(table, of(self.spec.quantity), self.racks)
        if pts is None:
            return None
        rows, at = pts.rows, pts.idx.tolist()
        if self.spec.scope == "module":
            groups: list[tuple[str, int | None]] = [(rows[i].rack, rows[i].module) for i in at]
        else:
            groups = [(rows[i].rack, None) for i in at] if len(pts.racks) > 1 else [(pts.racks[0], None)]
        labels = list(dict.fromkeys(groups))
        if len(labels) == 1:
            gid = np.zeros(len(at), dtype=np.intp)
        else:
            number = {g: n for n, g in enumerate(labels)}
            gid = np.fromiter((number[g] for g in groups), dtype=np.intp, count=len(groups))
        order = np.argsort(gid, kind="stable")
        starts = np.searchsorted(gid[order], np.arange(len(labels)))
        sizes = np.diff(np.append(starts, len(at)))
        return Groups(pts, order, starts, labels, sizes, bool((order == np.arange(len(at))).all()))

    def evaluate(self, f: Frame, part: Groups, obs: Observer) -> None:
        pts, order, starts, labels, sizes, sorted_ = part
        sp = self.spec
        b, v = f.b, f.nums[pts.take]
        if not sorted_:
            v = v[order]
        good = None if f.finite else ~np.isnan(v)  # None: every point a number
        counts = sizes if good is None else np.add.reduceat(good, starts)
        enough: list[int] = np.flatnonzero(counts >= sp.min_count).tolist()
        if not enough:
            return
        widths = np.fmax.reduceat(v, starts) - np.fmin.reduceat(v, starts)
        for g in enough:
            rack, module = labels[g]
            key = Key(self.id, rack, module)
            was = obs.raw_of(key)
            width = float(widths[g])
            raw = r.beyond(width, sp.high, above=True, deadband=sp.deadband, was=bool(was))
            if was is None and not raw:
                continue
            span = range(int(starts[g]), int(starts[g + 1]) if g + 1 < len(starts) else len(order))
            sl = slice(span.start, span.stop)
            at = order[sl] if good is None else order[sl][good[sl]]  # the group's good points, in order
            vals = v[sl] if good is None else v[sl][good[sl]]
            width, hi, lo = r.spread(vals)
            h, lw = pts.element(int(at[hi])), pts.element(int(at[lo]))
            where = f" m{module}" if module is not None else ""
            msg = self.text(
                "{quantity} spread{where} {value} {unit} (max {other}) " + ("above" if raw else "back within")
                + " {limit} {unit}",
                quantity=sp.quantity, where=where, value=r.fmt(width), unit=pts.unit(at[hi]), limit=r.fmt(sp.high),
                other=f"{r.fmt(float(vals[hi]))} at {r.where(h.module, h.cell)}, min {r.fmt(float(vals[lo]))} at "
                f"{r.where(lw.module, lw.cell)}",
                rack=rack,
            )  # fmt: skip
            obs.observe(key, raw, int(b.ts[pts.idx[at[-1]]]), width, msg)


@dataclass(slots=True)
class Latest:
    """A rack's latest good value (and its time) of each quantity a rule reads, kept between batches."""

    values: dict[str, tuple[float, int]] = field(default_factory=dict)


class RackRule(Rule):
    """A rule over the latest values of a few rack quantities (`inputs`); `touch`: those that trigger it."""

    inputs: tuple[str, ...] = ()
    touch: tuple[str, ...] = ()

    def __init__(self, spec: c.RuleBase) -> None:
        super().__init__(spec)
        self.latest: dict[str, Latest] = {}
        self.unit = ""

    def compile(self, table: Table) -> Points | None:
        wanted = set(self.inputs)
        return select(table, lambda q: "" if q in wanted else None, self.racks)

    def evaluate(self, f: Frame, part: Points, obs: Observer) -> None:
        for rack in self.record(f, part):
            self.judge(rack, f, obs)

    def judge(self, rack: str, f: Frame, obs: Observer) -> None:
        """Evaluate a rack the batch touched."""

    def record(self, f: Frame, pts: Points) -> list[str]:
        """Keep the batch's good values as each rack's latest; return the racks touched, in order."""
        v = f.nums[pts.take]
        touched: dict[str, None] = {}
        ts = f.b.ts[pts.take]
        for j in np.flatnonzero(~np.isnan(v)).tolist():
            k = pts.rows[int(pts.idx[j])]
            rack, q = k.rack, k.quantity
            self.latest.setdefault(rack, Latest()).values[q] = (float(v[j]), int(ts[j]))
            if q in self.touch:
                touched[rack] = None
                if q == self.spec.quantity:
                    self.unit = pts.unit(j)
        return list(touched)


class Limit(RackRule):
    spec: c.LimitRule

    def __init__(self, spec: c.LimitRule) -> None:
        super().__init__(spec)
        self.inputs = (spec.quantity, spec.limit)
        self.touch = (spec.quantity,)

    def judge(self, rack: str, f: Frame, obs: Observer) -> None:
        sp = self.spec
        above = sp.direction == "above"
        latest = self.latest[rack].values
        if sp.quantity not in latest or sp.limit not in latest:
            return
        (v, ts), (lim, _) = latest[sp.quantity], latest[sp.limit]
        limit = lim * sp.limit_scale + (sp.margin if above else -sp.margin)
        key = Key(self.id, rack)
        was = obs.raw_of(key)
        raw = r.beyond(v, limit, above=above, deadband=sp.deadband, was=bool(was))
        if was is None and not raw:
            return
        word = ("above" if above else "below") if raw else "back within"
        msg = self.text("{quantity} {value} {unit} " + word + " the BMS {other} {limit} {unit}",
                        quantity=sp.quantity, value=r.fmt(v), unit=self.unit, other=sp.limit,
                        limit=r.fmt(lim * sp.limit_scale), rack=rack)  # fmt: skip
        obs.observe(key, raw, ts, v, msg)


class Disagreement(RackRule):
    """`quantity` against `versus`: another quantity, a sum over cells or modules, or the coulomb count."""

    spec: c.DisagreementRule

    def __init__(self, spec: c.DisagreementRule) -> None:
        super().__init__(spec)
        self.sum_of = spec.versus[4:] if spec.versus.startswith("sum:") else None
        self.coulomb = spec.versus == "coulomb_soc"
        if self.sum_of is not None:
            self.inputs = self.touch = (spec.quantity,)
        else:
            extra = ("rack_current", "capacity_full") if self.coulomb else (spec.versus,)
            self.inputs = self.touch = tuple(dict.fromkeys((spec.quantity, *extra)))
        self.counters: dict[str, r.CoulombCounter] = {}
        self._sums: dict[str, IDX] = {}  # the batch's points summed, by rack

    def compile(self, table: Table) -> tuple[Points, dict[str, IDX]] | None:  # type: ignore[override]
        pts = super().compile(table)
        if pts is None:
            return None  # no point of the quantity under test: nothing to evaluate
        sums: dict[str, list[int]] = {}
        if self.sum_of is not None:
            for i, k in enumerate(table.keys.rows):
                if k.quantity == self.sum_of and (self.racks is None or k.rack in self.racks):
                    sums.setdefault(k.rack, []).append(i)
        return pts, {rack: np.asarray(ix, dtype=np.intp) for rack, ix in sums.items()}

    def evaluate(self, f: Frame, part: tuple[Points, dict[str, IDX]], obs: Observer) -> None:  # type: ignore[override]
        pts, self._sums = part
        super().evaluate(f, pts, obs)

    def _reference(self, rack: str, f: Frame) -> float | None:
        sp = self.spec
        latest = self.latest[rack].values
        if self.sum_of is not None:
            idx = self._sums.get(rack)
            v = f.nums[idx] if idx is not None else np.zeros(0)
            values = v[~np.isnan(v)].tolist()
            return sum(values) if len(values) >= sp.min_count else None
        if self.coulomb:
            return self._counted(rack, latest)
        got = latest.get(sp.versus)
        return None if got is None else got[0]

    def _counted(self, rack: str, latest: dict[str, tuple[float, int]]) -> float | None:
        sp = self.spec
        current, soc = latest.get("rack_current"), latest.get(sp.quantity)
        cap = sp.capacity_ah or (latest.get("capacity_full") or (None, 0))[0]
        if current is None or not cap:
            return None
        counter = self.counters.setdefault(rack, r.CoulombCounter())
        counted = counter.update(current[1], current[0], cap)
        if counted is None and soc is not None:
            counter.anchor(soc[0], current[1])
        return counted

    def judge(self, rack: str, f: Frame, obs: Observer) -> None:
        sp = self.spec
        ref = self._reference(rack, f)
        got = self.latest[rack].values.get(sp.quantity)
        if ref is None or got is None:
            return
        v, ts = got
        diff = v - ref
        allowed = r.allowed_difference(ref, sp.tolerance, sp.tolerance_pct)
        key = Key(self.id, rack)
        was = obs.raw_of(key)
        raw = r.beyond(abs(diff), allowed, above=True, deadband=sp.deadband, was=bool(was))
        if was is None and not raw:
            return
        word = "disagrees with" if raw else "agrees again with"
        msg = self.text("{quantity} {value} {unit} " + word + " {other} (allowed {limit})", quantity=sp.quantity,
                        value=r.fmt(v), unit=self.unit, other=f"{sp.versus} {r.fmt(ref)}", limit=r.fmt(allowed),
                        rack=rack)  # fmt: skip
        obs.observe(key, raw, ts, diff, msg)
