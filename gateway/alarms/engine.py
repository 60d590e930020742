"""The alarm engine: rules + debounce + state machine over batches, ticks and operator commands.

Pure apart from an injected clock: `process(batches)`, `tick(now)`, `command(...)` each return the
ALARM batches to store (one per rack with transitions: its `event` records, then its full `active`
set) and queue journal entries (`take_journal()`). Time for rules is the samples' own `ts`, so a
replay gives the same transitions; ticks (stale, delays with no new sample, shelve expiry) use the
clock.

Three ways through a batch's samples give the same events, journal and states: `_samples` (the
reference, one sample at a time), `_samples_fast` (runs of one quantity) and, for a batch with a
`Layout`, `_samples_layout` (work prepared per layout, values checked in bulk: see `layoutpath`).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable
from itertools import groupby
from operator import attrgetter
from typing import Any

from gateway.alarms import config as c
from gateway.alarms import gatewayrules as gw
from gateway.alarms import rules as r
from gateway.alarms.compiled import (
    BitsHandler,
    Handler,
    Key,
    Message,
    RateHandler,
    SpreadHandler,
    StateHandler,
    ThresholdHandler,
    alarm_id,
)
from gateway.alarms.fastpath import Gatherer, Indexed, ThresholdGroup
from gateway.alarms.gatewayalarm import GATEWAY, Condition
from gateway.alarms.instances import Instance, active_list, outbox_record, rack_batch, record, restored
from gateway.alarms.layoutpath import LayoutPlan, evaluate, fits, one_quality, plan_layout, watched
from gateway.alarms.rackrules import DisagreementHandler, LimitHandler
from gateway.alarms.states import Alarm, CommandRejected, State, Transition
from gateway.model import Batch, BatchKind, DeviceState, Layout, Quality, Sample

HANDLERS: dict[str, type[Handler]] = {
    "threshold": ThresholdHandler,
    "rate": RateHandler,
    "spread": SpreadHandler,
    "state": StateHandler,
    "bms_bits": BitsHandler,
    "limit": LimitHandler,
    "disagreement": DisagreementHandler,
}
GOOD = Quality.GOOD
PLANS_KEPT = 512  # layout plans kept by content for layout objects made anew (a few KB each)
_quantity = attrgetter("quantity")
# (array?, threshold group, gatherer, GOOD-sample calls in index order, rate handlers) of one quantity
RunPlan = tuple[
    bool | None, ThresholdGroup | None, Gatherer | None, tuple[Callable[[Any], None], ...], tuple[RateHandler, ...]
]


NOT_FRESH = frozenset({Quality.COMM_LOSS, Quality.STALE})


def fresh(samples: list[Sample]) -> bool:
    """Whether a batch carries data the rack delivered now: a sample neither comm_loss nor stale (the
    marks a source gives the points of a rack it lost). Usually its last sample says so at once."""
    return samples[-1].quality not in NOT_FRESH or any(s.quality not in NOT_FRESH for s in samples)


class AlarmEngine:
    def __init__(self, rules: Iterable[c.RuleSpec], rack_of_device: dict[str, str], racks: Iterable[str] = ()) -> None:
        self.specs: dict[str, c.RuleSpec] = {s.id: s for s in rules if s.enabled}
        self.rack_of_device = rack_of_device
        self.racks: set[str] = set(racks) | set(rack_of_device.values())
        self.handlers: list[Handler] = []
        self.index: dict[str, list[Indexed]] = {}
        self.prefixed: list[Handler] = []
        self.groups: dict[str, ThresholdGroup] = {}
        self.gatherers: dict[str, Gatherer] = {}
        self._thresholds: dict[str, list[ThresholdHandler]] = {}
        self.comm_loss = [s for s in self.specs.values() if isinstance(s, c.CommLossRule)]
        self.stale = [s for s in self.specs.values() if isinstance(s, c.StaleRule)]
        self.quality = [s for s in self.specs.values() if isinstance(s, c.QualityRule)]
        for spec in self.specs.values():
            cls = HANDLERS.get(spec.kind)
            if cls is not None:
                self._add(cls(spec, self))
        for q, members in self._thresholds.items():
            self.groups[q] = ThresholdGroup(q, members)
            self.index.setdefault(q, []).append(self.groups[q])
        self.finishers = [h for h in self.handlers if type(h).finish is not Handler.finish]
        self._by_rule = {h.spec.id: h for h in self.handlers}
        self.gateway_rules: dict[Key, c.RuleBase] = {}  # the gateway's own alarms (see gatewayrules)
        self.instances: dict[Key, Instance] = {}
        self.by_id: dict[str, Instance] = {}
        self.last_seen: dict[str, int] = {}
        self.removed: set[str] = set()  # racks a reload took out of the configuration
        self.started: int | None = None
        self.quality_watch = 0  # instances of quality rules not idle: good samples must be checked
        self.quality_elements: dict[tuple[str, str, int | None, int | None], int] = {}  # ... of these
        self._events: dict[str, list[dict[str, Any]]] = {}
        self._journal: list[dict[str, Any]] = []
        # The fast path (same events): per quantity, the handlers' calls for GOOD samples, built lazily.
        self.fast = True
        self._run_plans: dict[str, RunPlan] = {}
        # Batches with a layout (see layoutpath): a plan per layout object, None for one it cannot take.
        self.layouts = True
        self._layout_plans: weakref.WeakKeyDictionary[Layout, LayoutPlan | None] = weakref.WeakKeyDictionary()
        self._plans_by_digest: dict[str, LayoutPlan | None] = {}
        self._quality_takes: dict[tuple[str, str, str], bool] = {}

    def _add(self, h: Handler) -> None:
        self.handlers.append(h)
        if isinstance(h, ThresholdHandler):
            self._thresholds.setdefault(h.spec.quantity, []).append(h)
            return
        if isinstance(h, SpreadHandler):
            g = self._gatherer(h.spec.quantity)
            h.values, h.samples, h.bounds = g.values, g.samples, g.bounds
        if isinstance(h, DisagreementHandler) and h.sum_of is not None:
            h.gathered = self._gatherer(h.sum_of).values
        if h.prefix is not None:
            self.prefixed.append(h)
        for q in h.quantities:
            self.index.setdefault(q, []).append(h)

    def _gatherer(self, quantity: str) -> Gatherer:
        g = self.gatherers.get(quantity)
        if g is None:
            g = self.gatherers[quantity] = Gatherer(quantity)
            self.index.setdefault(quantity, []).append(g)
        return g

    def _track(self, key: Key, delta: int) -> None:
        if key in self.gateway_rules:
            return
        spec = self.specs.get(key[0])
        if isinstance(spec, c.ThresholdRule):
            self.groups[spec.quantity].track((key[1], key[2], key[3]), delta)
        elif isinstance(spec, c.RateRule):
            rate = self._by_rule[spec.id]
            assert isinstance(rate, RateHandler)
            rate.track((key[1], key[2], key[3]), delta)
        elif isinstance(spec, c.QualityRule):
            self.quality_watch += delta
            element = (key[4], key[1], key[2], key[3])  # (quantity, rack, module, cell)
            n = self.quality_elements.get(element, 0) + delta
            if n > 0:
                self.quality_elements[element] = n
            else:
                self.quality_elements.pop(element, None)

    # -- the Observer protocol (used by handlers) -------------------------------------------------

    def raw_of(self, key: Key) -> bool | None:
        inst = self.instances.get(key)
        return None if inst is None else inst.raw

    def observe(self, key: Key, raw: bool, ts: int, value: float | str | None, message: Message) -> None:
        inst = self.instances.get(key)
        if inst is None:
            if not raw:
                return
            inst = self._new(key)
        inst.raw = raw
        a = inst.alarm
        if raw or a.in_view:
            a.value, a.message = value, message() if callable(message) else message
        changed = inst.debounce.update(raw, ts)
        if changed is not None:
            self._condition(inst, changed, ts)
        self._maybe_idle(inst)

    def _condition(self, inst: Instance, active: bool, ts: int) -> None:
        t = inst.alarm.set_condition(active, ts)
        if t is not None:
            self._apply(inst, t, ts)
        elif inst.alarm.in_view:
            # No transition (latched or shelved), but a restart must know the condition: journal it only.
            a = inst.alarm
            self._journal.append(record(inst, "condition", str(a.state), str(a.state), None, None, ts))

    # -- building instances -----------------------------------------------------------------------

    def _new(self, key: Key) -> Instance:
        spec = self.gateway_rules.get(key) or self.specs[key[0]]
        severity = spec.severity
        if isinstance(spec, c.BitsRule):
            severity = spec.severities.get(key[4], spec.severity)
        aid = alarm_id(key)
        alarm = Alarm(aid, key[1], spec.id, severity, latch=spec.latch)
        inst = Instance(key, alarm, r.Debounce(int(spec.on_delay * r.NS), int(spec.off_delay * r.NS)))
        self.instances[key] = inst
        self.by_id[aid] = inst
        self._track(key, 1)
        return inst

    def _maybe_idle(self, inst: Instance) -> None:
        if inst.raw or inst.alarm.in_view or inst.debounce.output or inst.debounce.pending_since is not None:
            return
        del self.instances[inst.key]
        del self.by_id[inst.alarm.alarm_id]
        self._track(inst.key, -1)

    def _apply(self, inst: Instance, t: Transition | None, ts: int) -> None:
        if t is None:
            return
        rec = record(inst, "event", str(t.state), str(t.previous), t.user, t.reason, ts)
        self._journal.append(rec)
        self._events.setdefault(inst.alarm.rack, []).append(outbox_record(rec))

    # -- inputs -------------------------------------------------------------------------------------

    def gateway(self, changes: Iterable[Condition]) -> list[Batch]:
        """Conditions the gateway reported about itself (rack `gateway`), in order; return the ALARM batches."""
        for cond in changes:
            key = gw.key_of(cond.name)
            if key not in self.gateway_rules:
                self.gateway_rules[key] = gw.rule_for(cond)
            self.observe(key, cond.active, cond.ts, None, cond.message)
        return self._flush()

    def gateway_conditions(self) -> list[Condition]:
        """The gateway's alarms whose condition is present (after a restore: what its components confirm)."""
        return [Condition(gw.name_of(i.key), True, i.alarm.message, i.alarm.severity, i.alarm.since)
                for i in self.instances.values() if i.key in self.gateway_rules and i.alarm.condition]  # fmt: skip

    def process(self, batches: list[Batch]) -> list[Batch]:
        """Evaluate sample batches (other kinds are skipped); return ALARM batches of the transitions."""
        for b in batches:
            if b.kind != BatchKind.SAMPLES:
                continue
            if b.status is not None:
                self._status(b)
            if b.samples:
                if self.fast and b.layout is not None and self.layouts:
                    self._samples_layout(b, b.layout)
                elif self.fast:
                    self._samples_fast(b)
                else:
                    self._samples(b)
                # Arrays (spreads, sums) are per poll: evaluate and forget them after each batch.
                for h in self.finishers:
                    h.finish()
                for g in self.gatherers.values():
                    g.clear()
        return self._flush()

    def _samples(self, b: Batch) -> None:
        index, prefixed, qrules = self.index, self.prefixed, self.quality
        comm_lost = False
        for s in b.samples:
            if s.quality != GOOD:
                comm_lost = comm_lost or s.quality == Quality.COMM_LOSS
                if qrules:
                    self._quality(s, True)
            elif self.quality_watch:
                self._quality(s, False)
            hs = index.get(s.quantity)
            if hs is None:
                hs = index[s.quantity] = [h for h in prefixed if s.quantity.startswith(h.prefix or "\0")]
            for h in hs:
                h.sample(s)
        self._after_samples(b, comm_lost)

    def _handlers_of(self, quantity: str) -> list[Indexed]:
        hs = self.index.get(quantity)
        if hs is None:
            hs = self.index[quantity] = [h for h in self.prefixed if quantity.startswith(h.prefix or "\0")]
        return hs

    def _samples_fast(self, b: Batch) -> None:
        """`_samples`, same calls in the same order, cheaper: samples taken in runs of one quantity.

        A quantity read only by its threshold group, its gatherer and rate rules (cell voltages and
        temperatures) is checked inline: a value inside every limit of an element nothing tracks
        costs two comparisons and an append (and the rate rules' calls). Any other quantity: one
        call per handler, GOOD-sample variants where they exist.
        """
        comm_lost = False
        for q, run in groupby(b.samples, key=_quantity):
            comm_lost = self._run_exact(q, run) or comm_lost
        self._after_samples(b, comm_lost)

    def _run_exact(self, q: str, run: Iterable[Sample]) -> bool:
        """A run of one quantity, sample by sample (see `_samples_fast`); True on comm loss."""
        plan = self._run_plans.get(q)
        if plan is None:
            plan = self._run_plans[q] = self._run_plan(q)
        if plan[0] is None:
            return self._run_generic(run, plan[3])
        return self._run_array(run, plan)

    def _samples_layout(self, b: Batch, layout: Layout) -> None:
        """`_samples_fast` with the work per sample prepared once per layout (see layoutpath)."""
        try:
            plan = self._layout_plans[layout]
        except KeyError:
            plan = self._layout_plans[layout] = self._plan_of(layout)
        samples = b.samples
        if plan is None or not fits(plan, samples):
            self._samples_fast(b)
            return
        comm_lost = False
        for run in plan.runs:
            part = samples[run.start : run.stop]
            if not (self.quality_watch and watched(run, self.quality_elements)):
                if run.bulk and evaluate(run, part):
                    continue
                q = one_quality(part) if run.inert else None
                if q is not None and not self._takes_quality(q, run.quantity, run.rack):
                    comm_lost = comm_lost or q == Quality.COMM_LOSS  # what `_bad` would find, sample by sample
                    continue
            comm_lost = self._run_exact(run.quantity, part) or comm_lost
        self._after_samples(b, comm_lost)

    def _takes_quality(self, quality: str, quantity: str, rack: str) -> bool:
        """Whether a quality rule raises on samples of this quality, quantity and rack."""
        key = (quality, quantity, rack)
        got = self._quality_takes.get(key)
        if got is None:
            got = self._quality_takes[key] = any(
                quality in spec.qualities
                and (spec.quantity is None or spec.quantity == quantity)
                and (spec.racks is None or rack in spec.racks)
                for spec in self.quality
            )
        return got

    def _plan_of(self, layout: Layout) -> LayoutPlan | None:
        """A new layout object's plan: the one of an equal layout seen before (a source that made its
        layouts anew), else a new one."""
        known = self._plans_by_digest
        if layout.digest in known:
            return known[layout.digest]
        if len(known) >= PLANS_KEPT:
            known.clear()
        plan = known[layout.digest] = plan_layout(layout, self._handlers_of)
        return plan

    def _run_plan(self, q: str) -> RunPlan:
        hs = self._handlers_of(q)
        calls = tuple(getattr(h, "good", h.sample) for h in hs)
        groups = [h for h in hs if isinstance(h, ThresholdGroup)]
        gatherers = [h for h in hs if isinstance(h, Gatherer)]
        rates = tuple(h for h in hs if type(h) is RateHandler)
        # The group comes last in `hs` (indexed after every handler): rates before it, as `calls` has them.
        in_order = not groups or hs[-1] is groups[0]
        if hs and len(groups) + len(gatherers) + len(rates) == len(hs) and len(groups) <= 1 and len(gatherers) <= 1:
            if in_order:
                return (True, groups[0] if groups else None, gatherers[0] if gatherers else None, calls, rates)
        return (None, None, None, calls, ())

    def _bad(self, s: Sample) -> bool:
        """A sample that is not GOOD, exactly as `_samples` takes it; True on comm loss."""
        if self.quality:
            self._quality(s, True)
        for h in self._handlers_of(s.quantity):
            h.sample(s)
        return s.quality == Quality.COMM_LOSS

    def _run_generic(self, run: Iterable[Sample], calls: tuple[Callable[[Any], None], ...]) -> bool:
        comm_lost = False
        for s in run:
            if s.quality != GOOD:
                comm_lost = self._bad(s) or comm_lost
                continue
            if self.quality_watch and (s.quantity, s.rack, s.module, s.cell) in self.quality_elements:
                self._quality(s, False)  # (for any other good sample it does nothing)
            for f in calls:
                f(s)
        return comm_lost

    def _run_array(self, run: Iterable[Sample], plan: RunPlan) -> bool:
        _, group, gatherer, calls, rates = plan
        comm_lost = False
        lo, hi = (group.low_max, group.high_min) if group is not None else (-math.inf, math.inf)
        tracked = group.tracked if group is not None else {}
        cur_rack: str | None = None
        vals: list[float] = []
        smps: list[Sample] = []
        for s in run:
            if s.quality != GOOD:
                comm_lost = self._bad(s) or comm_lost
                continue
            if self.quality_watch and (s.quantity, s.rack, s.module, s.cell) in self.quality_elements:
                self._quality(s, False)  # (for any other good sample it does nothing)
            v = s.value
            if type(v) is not float:
                for f in calls:
                    f(s)
                cur_rack = None  # the gatherer's lists may be new
                continue
            if rates:
                for rate in rates:
                    rate.good(s)
            if group is not None and not (lo <= v <= hi and (not tracked or (s.rack, s.module, s.cell) not in tracked)):
                for m in group.members:
                    m.check(s, v)
            if gatherer is not None:
                if s.rack != cur_rack:
                    gatherer.good(s)
                    cur_rack, vals, smps = s.rack, gatherer._vals, gatherer._smps
                else:
                    vals.append(v)
                    smps.append(s)
        return comm_lost

    def _after_samples(self, b: Batch, comm_lost: bool) -> None:
        last = b.samples[-1]
        rack = last.rack or self.rack_of_device.get(b.device or b.source, b.device)
        if rack in self.removed:
            return  # a batch still queued from a source a reload removed
        self.racks.add(rack)
        self._comm(rack, comm_lost, last.ts)
        if not fresh(b.samples):
            return  # the source's comm_loss (or stale) marks: no data from the rack, so not seen
        self.last_seen[rack] = max(self.last_seen.get(rack, 0), last.ts)
        for st in self.stale:
            self._check(st, rack, False, last.ts, None, "samples arriving again")

    def _status(self, b: Batch) -> None:
        st = b.status
        assert st is not None
        rack = self.rack_of_device.get(st.device) or (b.samples[0].rack if b.samples else st.device)
        if rack in self.removed:
            return
        self.racks.add(rack)
        ts = st.ts or b.created
        if st.state == DeviceState.OFFLINE:
            self._comm(rack, True, ts, st.reason)
        elif st.state in (DeviceState.ONLINE, DeviceState.DEGRADED):
            self._comm(rack, False, ts)

    def _comm(self, rack: str, lost: bool, ts: int, reason: str = "") -> None:
        for spec in self.comm_loss:
            text = f"no communication with rack {rack}" + (f": {reason}" if reason else "")
            self._check(spec, rack, lost, ts, None, text if lost else f"communication with rack {rack} restored")

    def _quality(self, s: Any, bad: bool) -> None:
        for spec in self.quality:
            if spec.quantity is not None and spec.quantity != s.quantity:
                continue
            if spec.racks is not None and s.rack not in spec.racks:
                continue
            raw = bad and s.quality in spec.qualities
            key: Key = (spec.id, s.rack, s.module, s.cell, s.quantity)
            if not raw and key not in self.instances:
                continue
            at = r.where(s.module, s.cell)
            msg = r.render(spec.message or "{quantity}{where} quality {value}", quantity=s.quantity,
                           where=f" {at}" if at else "", value=s.quality, rack=s.rack, rule=spec.id)  # fmt: skip
            self.observe(key, raw, s.ts, str(s.quality), msg)

    def _check(self, spec: c.RuleBase, rack: str, raw: bool, ts: int, value: float | None, text: str) -> None:
        if spec.racks is not None and rack not in spec.racks:
            return
        key: Key = (spec.id, rack, None, None, "")
        if not raw and key not in self.instances:
            return
        msg = (
            r.render(spec.message, value="" if value is None else r.fmt(value), rack=rack, rule=spec.id)
            if (spec.message)
            else text
        )
        self.observe(key, raw, ts, value, msg)

    def tick(self, now: int) -> list[Batch]:
        """The clock moved: stale racks, pending on/off delays, shelve expiry."""
        if self.started is None:
            self.started = now
        for spec in self.stale:
            limit = int(spec.max_age * r.NS)
            for rack in sorted(self.racks):
                seen = self.last_seen.get(rack, self.started)
                age = (now - seen) / r.NS
                if now - seen > limit:
                    self._check(spec, rack, True, now, round(age, 3), f"no sample from rack {rack} for {age:.1f} s")
        for inst in list(self.instances.values()):
            due = inst.debounce.due()
            changed = inst.debounce.poll(now)
            if changed is not None and due is not None:
                self._condition(inst, changed, due)  # stamped when the delay completed, not when noticed
            self._apply(inst, inst.alarm.expire(now), now)
            self._maybe_idle(inst)
        return self._flush()

    # -- operator commands --------------------------------------------------------------------------

    def command(self, action: str, alarm_ids: list[str], user: str, reason: str | None, now: int,
                until: int | None = None) -> tuple[list[str], list[Batch]]:  # fmt: skip
        """Acknowledge, shelve or unshelve; return (errors, batches). A rejected id changes nothing."""
        errors: list[str] = []
        for aid in alarm_ids:
            inst = self.by_id.get(aid)
            if inst is None:
                errors.append(f"{aid}: no such alarm in view (unknown or normal)")
                continue
            a = inst.alarm
            try:
                if action == "ack":
                    t = a.acknowledge(user, reason)
                elif action == "shelve":
                    t = a.shelve(until if until is not None else now, user, reason)
                elif action == "unshelve":
                    t = a.unshelve(now, user, reason)
                else:
                    raise CommandRejected(f"unknown action {action!r}")
            except CommandRejected as exc:
                errors.append(str(exc))
                continue
            self._apply(inst, t, now)
            self._maybe_idle(inst)
        return errors, self._flush()

    def set_racks(self, rack_of_device: dict[str, str], now: int) -> list[Batch]:
        """The configured racks changed (a reload): removed racks are no longer watched for stale data."""
        self.rack_of_device = rack_of_device
        configured = set(rack_of_device.values())
        self.removed = (self.removed | (self.racks - configured)) - configured
        for rack in sorted(self.racks - configured):
            self.last_seen.pop(rack, None)
            for spec in self.stale:
                self._check(spec, rack, False, now, None, f"rack {rack} removed from the configuration")
        self.racks = configured
        return self._flush()

    def ids_of_rack(self, rack: str) -> list[str]:
        return sorted(aid for aid, inst in self.by_id.items() if inst.alarm.rack == rack and inst.alarm.in_view)

    # -- output -------------------------------------------------------------------------------------

    def active(self, rack: str) -> list[dict[str, Any]]:
        return active_list(self.instances.values(), rack)

    def _flush(self) -> list[Batch]:
        out = [rack_batch(rack, ev[-1]["ts"], ev, self.active(rack)) for rack, ev in self._events.items()]
        self._events = {}
        return out

    def snapshot(self, now: int) -> list[Batch]:
        """Every rack's active set (start-up: makes the retained MQTT topic current after a restart)."""
        racks = sorted(self.racks | {i.alarm.rack for i in self.instances.values()})
        return [rack_batch(rack, now, [], self.active(rack)) for rack in racks]

    def take_journal(self) -> list[dict[str, Any]]:
        out, self._journal = self._journal, []
        return out

    def counts(self) -> dict[str, int]:
        """Alarms in view per severity (for the gauge)."""
        out = {s: 0 for s in c.SEVERITIES}
        for inst in self.instances.values():
            if inst.alarm.in_view:
                out[inst.alarm.severity] = out.get(inst.alarm.severity, 0) + 1
        return out

    # -- restart --------------------------------------------------------------------------------------

    def restore(self, latest: Iterable[dict[str, Any]], now: int) -> list[Batch]:
        """Rebuild alarms in view from each one's last journal entry; a rule that is gone returns to normal."""
        for rec in latest:
            own = gw.restored_rule(rec) if rec["rack"] == GATEWAY else None  # the gateway's: a built-in rule
            spec = own or self.specs.get(rec["rule"])
            inst = restored(rec, spec)
            if inst is None:
                continue
            if own is not None:
                self.gateway_rules[inst.key] = own
            if spec is None:
                gone = {**rec, "ts": now, "previous": rec["state"], "state": str(State.NORMAL), "user": None,
                        "reason": "rule removed from the configuration"}  # fmt: skip
                self._journal.append(gone)
                self._events.setdefault(inst.alarm.rack, []).append(outbox_record(gone))
                continue
            self.instances[inst.key] = inst
            self.by_id[inst.alarm.alarm_id] = inst
            if own is None:
                self.racks.add(inst.alarm.rack)
            self._track(inst.key, 1)
        return self._flush()
