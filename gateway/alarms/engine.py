"""The alarm engine: rules + debounce + state machine over batches, ticks and operator commands.

Pure apart from an injected clock: `process(batches)`, `tick(now)`, `command(...)` each return the
ALARM batches to store (one per rack with transitions: its `event` records, then its full `active`
set) and queue journal entries (`take_journal()`). Time for rules is the points' own `ts`, so a
replay gives the same transitions; ticks (stale, delays with no new sample, shelve expiry) use the
clock.

One path through a batch: per key table the rules that read it and the points each reads are
compiled once (`columns`); per batch each rule tests its columns at once and reports only the points
whose condition may change (`pointrules`, `rackrules`); those go through the debounce and the state
machine here (`states`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from gateway.alarms import config as c
from gateway.alarms import gatewayrules as gw
from gateway.alarms import rules as r
from gateway.alarms.columns import Frame, PlanCache, Table
from gateway.alarms.gatewayalarm import GATEWAY, Condition
from gateway.alarms.instances import Instance, Key, Message, active_list, alarm_id, outbox_record, rack_batch, record
from gateway.alarms.instances import restored as restored_instance
from gateway.alarms.pointrules import Bits, QualityFlag, Rate, Rule, State, Threshold, grouped
from gateway.alarms.rackrules import Disagreement, Limit, Spread
from gateway.alarms.states import Alarm, CommandRejected, Transition
from gateway.alarms.states import State as AlarmState
from gateway.model import QUALITY_CODE, U8, Batch, BatchKind, DeviceState, Keys, Quality

# Rules evaluated over a batch's points; the point rules first, then those over a rack's points together.
RULES: dict[str, type[Rule]] = {
    "quality": QualityFlag,
    "threshold": Threshold,
    "rate": Rate,
    "state": State,
    "bms_bits": Bits,
    "spread": Spread,
    "limit": Limit,
    "disagreement": Disagreement,
}
COMM_LOSS = QUALITY_CODE[Quality.COMM_LOSS]
NOT_FRESH = np.asarray([COMM_LOSS, QUALITY_CODE[Quality.STALE]], dtype=np.uint8)
Plan = list[tuple[Rule, Any]]
NONE: dict[Key, Instance] = {}  # the empty default of a lookup: never written to, so it stays empty


def fresh(quality: U8) -> bool:
    """Whether a batch carries data the rack delivered now: a point neither comm_loss nor stale (the
    marks a source gives the points of a rack it lost). Usually its last point says so at once."""
    return bool(len(quality)) and (quality[-1] not in NOT_FRESH or not np.isin(quality, NOT_FRESH).all())


class AlarmEngine:
    def __init__(self, rules: Iterable[c.RuleSpec], rack_of_device: dict[str, str], racks: Iterable[str] = (),
                 condition_interval: int = 0) -> None:  # fmt: skip
        """`condition_interval` (ns): how often at most a condition note of one alarm is journaled (0: each
        change at once); between, the latest is held with how many changes it stands for (`_note`)."""
        self.condition_interval = condition_interval
        self.specs: dict[str, c.RuleSpec] = {s.id: s for s in rules if s.enabled}
        self.rack_of_device = rack_of_device
        self.racks: set[str] = set(racks) | set(rack_of_device.values())
        kinds = list(RULES)
        evaluated = sorted((s for s in self.specs.values() if s.kind in RULES), key=lambda s: kinds.index(s.kind))
        self.rules: list[Rule] = grouped([RULES[s.kind](s) for s in evaluated])
        self.plans = PlanCache(self._compile)
        self.comm_loss = [s for s in self.specs.values() if isinstance(s, c.CommLossRule)]
        self.stale = [s for s in self.specs.values() if isinstance(s, c.StaleRule)]
        self.quality = [s for s in self.specs.values() if isinstance(s, c.QualityRule)]
        self.gateway_rules: dict[Key, c.RuleBase] = {}  # the gateway's own alarms (see gatewayrules)
        self.instances: dict[Key, Instance] = {}
        self.by_id: dict[str, Instance] = {}
        self.watch: dict[tuple[str, str], dict[Key, Instance]] = {}  # by rule and rack
        self.last_seen: dict[str, int] = {}
        self.removed: set[str] = set()  # racks a reload took out of the configuration
        self.started: int | None = None
        self._events: dict[str, list[dict[str, Any]]] = {}
        self._journal: list[dict[str, Any]] = []

    def _compile(self, keys: Keys) -> Plan:
        """The rules that read points of this key table, each with what it reads."""
        table = Table(keys)
        plan = [(rule, rule.compile(table)) for rule in self.rules]
        return [(rule, part) for rule, part in plan if part is not None]

    @property
    def quality_watch(self) -> int:
        """Instances of quality rules (their elements are re-checked on every batch)."""
        ids = {s.id for s in self.quality}
        return sum(len(mine) for (rule, _), mine in self.watch.items() if rule in ids)

    # -- the Observer protocol (used by rules) ----------------------------------------------------

    def raw_of(self, key: Key) -> bool | None:
        inst = self.instances.get(key)
        return None if inst is None else inst.raw

    def watched(self, rule: str, rack: str) -> dict[Key, Instance]:
        return self.watch.get((rule, rack)) or NONE

    def observe(self, key: Key, raw: bool, ts: int, value: float | str | None, message: Message) -> None:
        inst = self.instances.get(key)
        if inst is None:
            if not raw:
                return
            inst = self._new(key)
        inst.raw = raw
        a = inst.alarm
        if raw or a.in_view:
            a.value, a.text = value, message
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
            self._note(inst, record(inst, "condition", str(a.state), str(a.state), None, None, ts))

    def _note(self, inst: Instance, note: dict[str, Any]) -> None:
        """A condition note: journaled now, or held (the latest, counting the changes it stands for) until
        the clock releases it (`tick`), a transition of the alarm comes first, or the engine stops."""
        inst.changes += 1
        inst.note = note
        if not self.condition_interval:
            self._release(inst)

    def _release(self, inst: Instance) -> None:
        note = inst.note
        if note is None:
            return
        note["changes"] = inst.changes
        self._journal.append(note)
        inst.note, inst.changes = None, 0

    def release_notes(self, now: int | None = None) -> None:
        """Journal the held condition notes: those whose alarm had none for `condition_interval` at `now`
        (the clock), or all (None: the engine stops)."""
        for inst in self.instances.values():
            if inst.note is None:
                continue
            if now is None:
                self._release(inst)
            elif now - inst.noted >= self.condition_interval:
                self._release(inst)
                inst.noted = now

    # -- building instances -----------------------------------------------------------------------

    def _new(self, key: Key) -> Instance:
        spec = self.gateway_rules.get(key) or self.specs[key[0]]
        severity = spec.severity
        if isinstance(spec, c.BitsRule):
            severity = spec.severities.get(key.name, spec.severity)
        aid = alarm_id(key)
        alarm = Alarm(aid, key.rack, spec.id, severity, latch=spec.latch)
        inst = Instance(key, alarm, r.Debounce(int(spec.on_delay * r.NS), int(spec.off_delay * r.NS)))
        self._add(inst)
        return inst

    def _add(self, inst: Instance) -> None:
        self.instances[inst.key] = inst
        self.by_id[inst.alarm.alarm_id] = inst
        self.watch.setdefault(inst.key[:2], {})[inst.key] = inst

    def _maybe_idle(self, inst: Instance) -> None:
        if inst.raw or inst.alarm.in_view or inst.debounce.output or inst.debounce.pending_since is not None:
            return
        self._release(inst)  # (a note is held only in view, and a transition out of view releases it first)
        del self.instances[inst.key]
        del self.by_id[inst.alarm.alarm_id]
        mine = self.watch[inst.key[:2]]
        del mine[inst.key]
        if not mine:
            del self.watch[inst.key[:2]]

    def _apply(self, inst: Instance, t: Transition | None, ts: int) -> None:
        if t is None:
            return
        self._release(inst)  # the alarm's held condition note goes first: the journal keeps its order
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
            if b.n:
                frame = Frame(b)
                for rule, part in self.plans(b.keys):
                    rule.evaluate(frame, part, self)
                self._after_points(b, frame.clean)
        return self._flush()

    def _after_points(self, b: Batch, clean: bool) -> None:
        rack = b.keys.rows[-1].rack or self.rack_of_device.get(b.device or b.source, b.device)
        if rack in self.removed:
            return  # a batch still queued from a source a reload removed
        self.racks.add(rack)
        ts = int(b.ts[-1])
        self._comm(rack, not clean and bool((b.quality == COMM_LOSS).any()), ts)
        if not clean and not fresh(b.quality):
            return  # the source's comm_loss (or stale) marks: no data from the rack, so not seen
        self.last_seen[rack] = max(self.last_seen.get(rack, 0), ts)
        for st in self.stale:
            self._check(st, rack, False, ts, None, "samples arriving again")

    def _status(self, b: Batch) -> None:
        st = b.status
        assert st is not None
        rack = self.rack_of_device.get(st.device) or (b.keys.rows[0].rack if b.n else st.device)
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
            if not lost and (spec.id, rack) not in self.watch:
                continue  # nothing to clear
            text = f"no communication with rack {rack}" + (f": {reason}" if reason else "")
            self._check(spec, rack, lost, ts, None, text if lost else f"communication with rack {rack} restored")

    def _check(self, spec: c.RuleBase, rack: str, raw: bool, ts: int, value: float | None, text: str) -> None:
        if spec.racks is not None and rack not in spec.racks:
            return
        key = Key(spec.id, rack)
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
        self.release_notes(now)
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
            inst = restored_instance(rec, spec)
            if inst is None:
                continue
            if own is not None:
                self.gateway_rules[inst.key] = own
            if spec is None:
                gone = {**rec, "ts": now, "previous": rec["state"], "state": str(AlarmState.NORMAL), "user": None,
                        "reason": "rule removed from the configuration"}  # fmt: skip
                self._journal.append(gone)
                self._events.setdefault(inst.alarm.rack, []).append(outbox_record(gone))
                continue
            self._add(inst)
            if own is None:
                self.racks.add(inst.alarm.rack)
        return self._flush()
