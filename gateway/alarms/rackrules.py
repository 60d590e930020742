"""Rules over a rack's readings together: spread of an array, a value against a BMS limit, two readings
that must agree (a quantity, the sum of the cells, the coulomb count).

They evaluate at the end of each batch from its columns, so the order of points within a poll does
not matter. Limits and references persist between batches (a BMS may report its limits less often
than the current).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from gateway.alarms import config as c
from gateway.alarms import rules as r
from gateway.alarms.columns import F64, IDX, Frame, Points, Table, of, select
from gateway.alarms.instances import Key, Observer
from gateway.alarms.pointrules import Rule
from gateway.lru import LruCache
from gateway.model import I64, KeyRows, Place
from gateway.model import Key as PointKey


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


def fresh(age: I64, gap: I64, max_age: int) -> npt.NDArray[np.bool_]:
    """Whether reference readings `age` ns older than the tested one still count: up to `max_age`, or
    three times their own last interval between readings (`gap`) when that is longer (a slow poll group)."""
    return age <= np.maximum(max_age, 3 * gap)


NEVER = np.iinfo(np.int64).min  # the time of a slot with no reading yet


class Readings:
    """The latest reading of every element of a rack's summed quantity (NaN: none, or not good), its
    time, and the interval between its last two readings (0: one so far), by element slot."""

    __slots__ = ("gap", "values", "when")

    def __init__(self) -> None:
        self.values: F64 = np.zeros(0)
        self.when: I64 = np.zeros(0, dtype=np.int64)
        self.gap: I64 = np.zeros(0, dtype=np.int64)

    def put(self, size: int, slots: IDX, values: F64, ts: I64) -> None:
        """The readings of these slots (each once), with room for `size` slots."""
        if len(self.values) < size:
            grow = size - len(self.values)
            self.values = np.append(self.values, np.full(grow, np.nan))
            self.when = np.append(self.when, np.full(grow, NEVER, dtype=np.int64))
            self.gap = np.append(self.gap, np.zeros(grow, dtype=np.int64))
        before = self.when[slots]
        self.gap[slots] = np.where(before != NEVER, ts - before, self.gap[slots])
        self.values[slots] = values  # a reading that is not good leaves its element out until a good one
        self.when[slots] = ts

    def fresh(self, ts: int, max_age: int) -> F64:
        """The values that still count for a reading at `ts` (see `fresh`): an element that stopped
        coming (a frame without a cycle time, a point a reload removed) is left out."""
        keep = ~np.isnan(self.values)  # (a slot with no reading yet is NaN: its NEVER time is not compared)
        keep[keep] = fresh(ts - self.when[keep], self.gap[keep], max_age)
        return self.values[keep]


SHAPES_KEPT = 16  # rack shapes whose summed points a disagreement rule keeps (a site has a few profiles)


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
        # sum:*: the elements (module, cell) of the summed quantity, a slot each (one numbering for every
        # rack: racks of a profile have the same elements), and per rack the latest reading of every slot,
        # kept between batches (a CAN window may hold some cells, or some twice)
        self._slots: dict[tuple[int | None, int | None], int] = {}
        self._kept: dict[str, Readings] = {}
        self._versus: dict[str, tuple[int, int]] = {}  # rack → the versus quantity's latest time and gap
        self.max_age_ns = int(spec.max_age * r.NS)
        self._shared: LruCache[tuple[Place, ...], tuple[IDX, IDX]] = LruCache(SHAPES_KEPT)

    def compile(self, table: Table) -> tuple[Points | None, dict[str, tuple[IDX, IDX]]] | None:  # type: ignore[override]
        pts = super().compile(table)
        sums = self._summed(table) if self.sum_of is not None else {}
        if pts is None and not sums:
            return None  # neither the quantity under test nor what is summed
        return pts, sums

    def _summed(self, table: Table) -> dict[str, tuple[IDX, IDX]]:
        """Per rack, the last point of each element of the summed quantity in the table, and its slot. A
        table of one rack shares them with the tables of its shape (the racks of a profile)."""
        at = table.by_quantity.get(self.sum_of or "")
        if not at:
            return {}
        rows = table.keys.rows
        if type(rows) is KeyRows:
            if self.racks is not None and rows.rack not in self.racks:
                return {}
            part = self._shared.get(rows.shape)
            if part is None:
                part = self._last_of(rows.shape, at)
                self._shared.put(rows.shape, part)
            return {rows.rack: part}
        by_rack: dict[str, list[int]] = {}
        for i in at:
            if self.racks is None or rows[i].rack in self.racks:
                by_rack.setdefault(rows[i].rack, []).append(i)
        return {rack: self._last_of(rows, mine) for rack, mine in by_rack.items()}

    def _last_of(self, places: Sequence[PointKey] | Sequence[Place], at: list[int]) -> tuple[IDX, IDX]:
        """The last of these points of each element (a later round's replaces), and the element's slot."""
        last = {(places[i].module, places[i].cell): i for i in at}
        slots = self._slots
        return (
            np.asarray(list(last.values()), dtype=np.intp),
            np.asarray([slots.setdefault(e, len(slots)) for e in last], dtype=np.intp),
        )

    def evaluate(self, f: Frame, part: tuple[Points | None, dict[str, tuple[IDX, IDX]]], obs: Observer) -> None:  # type: ignore[override]
        pts, sums = part
        for rack, (idx, slots) in sums.items():
            kept = self._kept.get(rack)
            if kept is None:
                kept = self._kept[rack] = Readings()
            kept.put(len(self._slots), slots, f.nums[idx], f.b.ts[idx])
        if pts is not None:
            super().evaluate(f, pts, obs)

    def _reference(self, rack: str, ts: int | None) -> tuple[float, int] | None:
        """What the reading of time `ts` is tested against, and how many elements it sums (1 unless a sum)
        (None: not known, or no reading to test)."""
        sp = self.spec
        latest = self.latest[rack].values
        if self.coulomb:
            counted = self._counted(rack, latest)
            return None if counted is None else (counted, 1)
        if ts is None:
            return None
        if self.sum_of is not None:
            kept = self._kept.get(rack)
            values = kept.fresh(ts, self.max_age_ns) if kept is not None else np.zeros(0)
            return (float(values.sum()), len(values)) if len(values) >= sp.min_count else None
        got = latest.get(sp.versus)
        if got is None:
            return None
        seen, gap = self._versus.get(rack, (got[1], 0))
        if got[1] != seen:
            gap = got[1] - seen  # (the gap between the readings judged: at least the versus quantity's own)
        self._versus[rack] = (got[1], gap)
        if not fresh(np.array([ts - got[1]]), np.array([gap]), self.max_age_ns)[0]:
            return None
        return got[0], 1

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
        got = self.latest[rack].values.get(sp.quantity)
        reference = self._reference(rack, None if got is None else got[1])  # (the coulomb count runs on regardless)
        if reference is None or got is None:
            return
        (v, ts), (ref, summed) = got, reference
        diff = v - ref
        allowed = r.allowed_difference(ref, sp.tolerance, sp.tolerance_pct)
        key = Key(self.id, rack)
        was = obs.raw_of(key)
        raw = r.beyond(abs(diff), allowed, above=True, deadband=sp.deadband, was=bool(was))
        if was is None and not raw:
            return
        word = "disagrees with" if raw else "agrees again with"
        other = f"{sp.versus} {r.fmt(ref)}"
        if self.sum_of is not None:  # how many it sums (fewer than the rack has: some stopped coming)
            other += f" ({summed} {self.sum_of.removesuffix('_voltage')}{'s' if summed != 1 else ''})"
        msg = self.text("{quantity} {value} {unit} " + word + " {other} (allowed {limit})", quantity=sp.quantity,
                        value=r.fmt(v), unit=self.unit, other=other, limit=r.fmt(allowed), rack=rack)  # fmt: skip
        obs.observe(key, raw, ts, diff, msg)
