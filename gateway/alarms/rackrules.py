"""Rack-level rules that combine readings: a value against a BMS limit, and two readings that must agree.

They gather the latest values of a batch per rack and evaluate at the end of the batch, so the order
of samples within a poll does not matter. Limits and references persist between batches (a BMS
may report its limits less often than the current).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.alarms import config as c
from gateway.alarms import rules as r
from gateway.alarms.compiled import Handler, Key
from gateway.model import Quality, Sample


@dataclass
class RackValues:
    latest: dict[str, tuple[float, int]] = field(default_factory=dict)  # quantity -> (value, ts)


def record_latest(h: LimitHandler | DisagreementHandler, s: Sample) -> bool:
    """Keep a good numeric sample as its rack's latest value of its quantity; False if skipped."""
    if s.quality != Quality.GOOD or not h.wants(s.rack):
        return False
    v = r.as_number(s.value)
    if v is None:
        return False
    rv = h.racks_seen.get(s.rack)
    if rv is None:
        rv = h.racks_seen[s.rack] = RackValues()
    rv.latest[s.quantity] = (v, s.ts)
    return True


class LimitHandler(Handler):
    spec: c.LimitRule

    def __post_init__(self) -> None:
        super().__post_init__()
        self.quantities = (self.spec.quantity, self.spec.limit)
        self.racks_seen: dict[str, RackValues] = {}
        self.unit = ""

    def sample(self, s: Sample) -> None:
        if record_latest(self, s) and s.quantity == self.spec.quantity:
            self.unit = s.unit
            self.touched.add(s.rack)

    def finish(self) -> None:
        sp = self.spec
        for rack in self.touched:
            latest = self.racks_seen[rack].latest
            if sp.quantity not in latest or sp.limit not in latest:
                continue
            (v, ts), (lim, _) = latest[sp.quantity], latest[sp.limit]
            limit = lim * sp.limit_scale + (sp.margin if sp.direction == "above" else -sp.margin)
            key: Key = (sp.id, rack, None, None, "")
            was = self.obs.raw_of(key)
            raw = r.beyond(v, limit, above=sp.direction == "above", deadband=sp.deadband, was=bool(was))
            if was is None and not raw:
                continue
            word = ("above" if sp.direction == "above" else "below") if raw else "back within"
            self.obs.observe(
                key, raw, ts, v,
                self.text(
                    "{quantity} {value} {unit} " + word + " the BMS {other} {limit} {unit}",
                    quantity=sp.quantity, value=r.fmt(v), unit=self.unit, other=sp.limit,
                    limit=r.fmt(lim * sp.limit_scale), rack=rack,
                ),
            )  # fmt: skip
        self.touched.clear()


class DisagreementHandler(Handler):
    """`quantity` against `versus`: another quantity, a sum over cells or modules, or the coulomb count."""

    spec: c.DisagreementRule

    def __post_init__(self) -> None:
        super().__post_init__()
        sp = self.spec
        self.sum_of = sp.versus[4:] if sp.versus.startswith("sum:") else None
        self.coulomb = sp.versus == "coulomb_soc"
        wanted = [sp.quantity]
        if self.sum_of is not None:
            pass  # the engine hands the batch's values over in `gathered` (one Gatherer per quantity)
        elif self.coulomb:
            wanted += ["rack_current", "capacity_full"]
        else:
            wanted.append(sp.versus)
        self.quantities = tuple(dict.fromkeys(wanted))
        self.racks_seen: dict[str, RackValues] = {}
        self.gathered: dict[str, list[float]] = {}
        self.counters: dict[str, r.CoulombCounter] = {}
        self.unit = ""

    def sample(self, s: Sample) -> None:
        if not record_latest(self, s):
            return
        if s.quantity == self.spec.quantity:
            self.unit = s.unit
        self.touched.add(s.rack)

    def _reference(self, rack: str, rv: RackValues) -> float | None:
        sp = self.spec
        if self.sum_of is not None:
            values = self.gathered.get(rack, [])
            return sum(values) if len(values) >= sp.min_count else None
        if self.coulomb:
            return self._counted(rack, rv)
        got = rv.latest.get(sp.versus)
        return None if got is None else got[0]

    def _counted(self, rack: str, rv: RackValues) -> float | None:
        sp = self.spec
        current, soc = rv.latest.get("rack_current"), rv.latest.get(sp.quantity)
        cap = sp.capacity_ah or (rv.latest.get("capacity_full") or (None, 0))[0]
        if current is None or not cap:
            return None
        counter = self.counters.get(rack)
        if counter is None:
            counter = self.counters[rack] = r.CoulombCounter()
        counted = counter.update(current[1], current[0], cap)
        if counted is None and soc is not None:
            counter.anchor(soc[0], current[1])
        return counted

    def finish(self) -> None:
        sp = self.spec
        for rack in self.touched:
            rv = self.racks_seen[rack]
            ref = self._reference(rack, rv)
            got = rv.latest.get(sp.quantity)
            if ref is None or got is None:
                continue
            v, ts = got
            diff = v - ref
            allowed = r.allowed_difference(ref, sp.tolerance, sp.tolerance_pct)
            key: Key = (sp.id, rack, None, None, "")
            was = self.obs.raw_of(key)
            raw = r.beyond(abs(diff), allowed, above=True, deadband=sp.deadband, was=bool(was))
            if was is None and not raw:
                continue
            self.obs.observe(
                key, raw, ts, diff,
                self.text(
                    "{quantity} {value} {unit} "
                    + ("disagrees with" if raw else "agrees again with")
                    + " {other} (allowed {limit})",
                    quantity=sp.quantity, value=r.fmt(v), unit=self.unit,
                    other=f"{sp.versus} {r.fmt(ref)}", limit=r.fmt(allowed), rack=rack,
                ),
            )  # fmt: skip
        self.touched.clear()
