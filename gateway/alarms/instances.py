"""Alarm instances and what they turn into: outbox records, active sets, and back from the journal."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from gateway.alarms import config as c
from gateway.alarms import rules as r
from gateway.alarms.states import Alarm, State
from gateway.model import Batch, BatchKind


class Key(NamedTuple):
    """What an alarm instance is: a rule applied to a rack, and an element or a name when the rule has them."""

    rule: str
    rack: str
    module: int | None = None
    cell: int | None = None
    name: str = ""  # a bit's name (bms_bits), a quantity (quality), a gateway component's element


Message = Callable[[], str] | str  # built only when needed (a callable) or already built


def alarm_id(key: Key) -> str:
    suffix = r.where(key.module, key.cell)
    parts = [key.rack, key.rule] + ([key.name] if key.name else []) + ([suffix] if suffix else [])
    return ":".join(parts)


@dataclass(slots=True)
class Instance:
    """One alarm and the detector that feeds it."""

    key: Key
    alarm: Alarm
    debounce: r.Debounce
    raw: bool = False
    note: dict[str, Any] | None = None  # a condition note held for the journal (see AlarmEngine._note)
    changes: int = 0  # condition changes the held note stands for
    noted: int = -(2**62)  # clock time a held note of this alarm was last released


def record(inst: Instance, kind: str, state: str, previous: str, user: str | None, reason: str | None,
           ts: int) -> dict[str, Any]:  # fmt: skip
    """The outbox record of a transition, plus (under `detail`) what the journal needs to restore it."""
    a = inst.alarm
    detail = {"key": list(inst.key), "since": a.since, "latch": a.latch, "condition": a.condition,
              "shelved_until": a.shelved_until}  # fmt: skip
    return {"type": kind, "ts": ts, "rack": a.rack, "alarm_id": a.alarm_id, "severity": a.severity, "state": state,
            "previous": previous, "message": a.message, "value": a.value, "rule": a.rule, "user": user,
            "reason": reason, "detail": detail}  # fmt: skip


def outbox_record(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k != "detail"}


def active_list(instances: Iterable[Instance], rack: str) -> list[dict[str, Any]]:
    """The rack's alarms in view (anything not normal), oldest first."""
    out = sorted((i.alarm for i in instances if i.alarm.rack == rack and i.alarm.in_view),
                 key=lambda a: (a.since, a.alarm_id))  # fmt: skip
    return [{"alarm_id": a.alarm_id, "severity": a.severity, "state": str(a.state), "since": a.since,
             "message": a.message} for a in out]  # fmt: skip


def rack_batch(rack: str, ts: int, events: list[dict[str, Any]], active: list[dict[str, Any]]) -> Batch:
    """The ALARM batch of one rack: its events, then its full active set."""
    records = [*events, {"type": "active", "ts": ts, "rack": rack, "active": active}]
    return Batch("alarms", kind=BatchKind.ALARM, device=rack, created=ts, records=records)


def restored(rec: dict[str, Any], spec: c.RuleBase | None) -> Instance | None:
    """An instance from its last journal entry (None when it was normal or the entry predates restore data)."""
    state = State(rec["state"])
    detail = rec.get("detail") or {}
    if state == State.NORMAL or "key" not in detail:
        return None
    key = Key(*detail["key"])
    cond = bool(detail.get("condition"))
    alarm = Alarm(rec["alarm_id"], rec["rack"], rec["rule"], rec["severity"], bool(detail.get("latch")), state, cond,
                  int(detail.get("since") or 0), detail.get("shelved_until"), rec.get("message") or "",
                  rec.get("value"))  # fmt: skip
    debounce = r.Debounce(output=cond)
    if spec is not None:
        debounce = r.Debounce(int(spec.on_delay * r.NS), int(spec.off_delay * r.NS), cond)
        alarm.latch = spec.latch
    return Instance(key, alarm, debounce, raw=cond)


class Observer(Protocol):
    """What a rule reports to: the engine (debounce and state machine behind it)."""

    def raw_of(self, key: Key) -> bool | None:
        """The last raw condition of an instance, None when it is idle (normal, nothing pending)."""

    def observe(self, key: Key, raw: bool, ts: int, value: float | str | None, message: Message) -> None:
        """Report the raw condition of an instance at `ts`; `message` is a string or makes one."""

    def watched(self, rule: str, rack: str) -> Collection[Key]:
        """The rule's instances in a rack (elements whose condition must be re-checked)."""
