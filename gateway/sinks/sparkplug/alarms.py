"""Alarm events as Sparkplug metrics (pure): what the edge node sends for each alarm it stores.

Every alarm is two metrics of the rack's device (the gateway's own alarms: of the node):

    Alarms/<alarm id>/Active   Boolean  true in active_unack and active_ack
    Alarms/<alarm id>/State    String   normal, active_unack, active_ack, rtn_unack, shelved

each with the time of the event. The alarm id is the one the gateway gives it everywhere
(`rack-01:cell_over_voltage:m1c5`; a `/` in it becomes `_`, so it stays one folder). An alarm new to
the device is born (DBIRTH, or NBIRTH for the node) with the state before its first event (its
`previous`), so its first change arrives as data, as every later one. An ALARM batch's `active` record
(the rack's whole active set) adds the alarms whose state the node does not know as that: after a
restart, the alarms restored by the engine, born with their state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.alarms.gatewayalarm import GATEWAY
from gateway.model import Batch, BatchKind, Value
from gateway.sinks.sparkplug.payload import BOOLEAN, STRING, Metric

FOLDER = "Alarms"
NORMAL = "normal"
ACTIVE_STATES = frozenset({"active_unack", "active_ack"})


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """An alarm's state as the node is to send it."""

    rack: str  # the alarm's rack; GATEWAY for the gateway's own
    alarm_id: str
    state: str
    previous: str | None  # the state it is born with when new to its device; None: born with `state`
    ts_ms: int


@dataclass(frozen=True, slots=True)
class AlarmPoint:
    """One metric of an alarm change: its name, its value now, and the value it is born with when new."""

    name: str
    metric: Metric
    before: Metric | None


def folder(alarm_id: str) -> str:
    return f"{FOLDER}/{alarm_id.replace('/', '_')}"


def alarm_metrics(state: str, ts_ms: int) -> list[Metric]:
    """The Active and State metrics of an alarm in `state` (no alias or name)."""
    return [Metric(BOOLEAN, state in ACTIVE_STATES, ts_ms), Metric(STRING, state, ts_ms)]


def points(change: AlarmChange) -> list[AlarmPoint]:
    base = folder(change.alarm_id)
    now = alarm_metrics(change.state, change.ts_ms)
    before: list[Metric | None] = [None, None]
    if change.previous is not None:
        before = list(alarm_metrics(change.previous, change.ts_ms))
    return [AlarmPoint(f"{base}/{leaf}", m, b) for leaf, m, b in zip(("Active", "State"), now, before, strict=True)]


def state_name(alarm_id: str) -> str:
    return f"{folder(alarm_id)}/State"


def _ms(ns: object) -> int | None:
    return ns // 1_000_000 if type(ns) is int else None


def changes(b: Batch, known: Callable[[str, str], Value]) -> list[AlarmChange]:
    """The alarm changes of an ALARM batch, in order: each event, then the alarms of the active set whose
    state the node does not know as that. `known(rack, alarm_id)` is the state the node last sent."""
    if b.kind != BatchKind.ALARM:
        return []
    out: list[AlarmChange] = []
    seen: dict[tuple[str, str], str] = {}  # (rack, alarm id) → state, by the events of this batch
    for rec in b.records:
        rack = str(rec.get("rack") or b.device or GATEWAY)
        at = _ms(rec.get("ts"))
        if rec.get("type") == "event":
            aid, state, prev = rec.get("alarm_id"), rec.get("state"), rec.get("previous")
            if isinstance(aid, str) and isinstance(state, str) and at is not None:
                out.append(AlarmChange(rack, aid, state, prev if isinstance(prev, str) else NORMAL, at))
                seen[(rack, aid)] = state
        elif rec.get("type") == "active" and isinstance(active := rec.get("active"), list) and at is not None:
            for a in active:
                aid, state = (a.get("alarm_id"), a.get("state")) if isinstance(a, dict) else (None, None)
                if not (isinstance(aid, str) and isinstance(state, str)):
                    continue
                have = seen.get((rack, aid)) or known(rack, aid)
                if have != state:
                    since = _ms(a.get("since")) or at
                    out.append(AlarmChange(rack, aid, state, None if have is None else str(have), since))
    return out


def grouped(found: list[AlarmChange]) -> list[list[AlarmChange]]:
    """Runs of changes of one rack with distinct alarm ids, in order (each run is one message)."""
    out: list[list[AlarmChange]] = []
    ids: set[str] = set()
    for ch in found:
        if not out or out[-1][0].rack != ch.rack or ch.alarm_id in ids:
            out.append([])
            ids = set()
        out[-1].append(ch)
        ids.add(ch.alarm_id)
    return out
