"""The alarm history of a window, read from the hash-chained alarm journal (gateway.alarms.journal).

Per rack: alarms raised (an event from normal or rtn_unack to active_unack or active_ack) by severity,
the time alarms of each severity were active (active_unack or active_ack; an alarm already active at
the window's start counts from there, one still active at its end up to there), the alarms in view
(not normal) at the end, and every event an operator caused (acknowledge, shelve, unshelve: the
events that name a user), with who, when, the transition and the reason. The journal is read from its
first entry so an alarm raised before the window is known to be active in it.

The journal's chain is verified whole (`Journal.verify`), and its head (last entry's seq and hash)
reported, so a reviewer can tell the history was not edited since.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.assess import schema

ACTIVE = frozenset({"active_unack", "active_ack"})
RAISED_FROM = frozenset({"normal", "rtn_unack"})
ACTIONS_KEPT = 1000
PROBLEMS_KEPT = 20


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1e9, UTC).isoformat(timespec="milliseconds")


@dataclass
class _Alarm:
    severity: str
    state: str = "normal"
    active_since: int | None = None


@dataclass
class History:
    """One rack's alarms over [start_ns, end_ns), folded from its journal entries in order."""

    start_ns: int
    end_ns: int
    raised: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    actions: list[schema.OperatorAction] = field(default_factory=list)
    alarms: dict[str, _Alarm] = field(default_factory=dict)

    def _active_until(self, a: _Alarm, ts: int) -> None:
        if a.active_since is None:
            return
        lo, hi = max(a.active_since, self.start_ns), min(ts, self.end_ns)
        if hi > lo:
            self.seconds[a.severity] = self.seconds.get(a.severity, 0.0) + (hi - lo) / 1e9
        a.active_since = None

    def event(self, ts: int, e: dict[str, Any]) -> None:
        if ts >= self.end_ns:
            return
        aid, state, previous = str(e.get("alarm_id")), str(e.get("state")), str(e.get("previous"))
        a = self.alarms.setdefault(aid, _Alarm(str(e.get("severity"))))
        a.severity = str(e.get("severity"))
        inside = ts >= self.start_ns
        if state in ACTIVE and a.active_since is None:
            a.active_since = ts
            if inside and previous in RAISED_FROM:
                self.raised[a.severity] = self.raised.get(a.severity, 0) + 1
        elif state not in ACTIVE:
            self._active_until(a, ts)
        a.state = state
        user = e.get("user")
        if inside and user and len(self.actions) < ACTIONS_KEPT:
            reason = e.get("reason")
            self.actions.append(schema.OperatorAction(time=iso(ts), ts=ts, user=str(user), alarm_id=aid,
                                                      previous=previous, state=state,
                                                      reason=None if reason is None else str(reason)))  # fmt: skip

    def result(self) -> schema.AlarmHistory:
        for a in self.alarms.values():
            self._active_until(a, self.end_ns)
        in_view = sum(1 for a in self.alarms.values() if a.state != "normal")
        return schema.AlarmHistory(raised=dict(sorted(self.raised.items())),
                                   seconds_in_alarm={k: round(v, 3) for k, v in sorted(self.seconds.items())},
                                   in_view_at_end=in_view, operator_actions=self.actions)  # fmt: skip


def no_history(why: str) -> schema.AlarmHistory:
    return schema.AlarmHistory(raised={}, seconds_in_alarm={}, in_view_at_end=0, operator_actions=[], insufficient=why)


def no_journal(path: Path | None, why: str) -> schema.Journal:
    return schema.Journal(path=None if path is None else str(path), entries=0, intact=None, problems=[],
                          head_seq=None, head_hash=None, insufficient=why)  # fmt: skip


def read_journal(
    path: Path | None, spans: dict[str, tuple[int, int]]
) -> tuple[schema.Journal, dict[str, schema.AlarmHistory]]:
    """The journal's check and, per rack, its history over the rack's span [start_ns, end_ns)."""
    from gateway.alarms.journal import Journal

    if path is None:
        why = "no alarm journal given (an export file holds none: give --journal)"
        return no_journal(None, why), {r: no_history(why) for r in spans}
    if not path.exists():
        why = f"no alarm journal at {path}"
        return no_journal(path, why), {r: no_history(why) for r in spans}
    j = Journal(path, readonly=True)
    try:
        n, problems = j.verify()
        if n == 0 and problems and problems[0].startswith("no alarm journal"):
            why = f"{path} holds no alarm journal"
            return no_journal(path, why), {r: no_history(why) for r in spans}
        check = schema.Journal(path=str(path), entries=n, intact=not problems, problems=problems[:PROBLEMS_KEPT],
                               head_seq=j.seq, head_hash=j.hash)  # fmt: skip
        histories: dict[str, schema.AlarmHistory] = {}
        for rack, (start, end) in spans.items():
            h = History(start, end)
            for entry in j.entries(0, end, rack):
                if entry.kind == "event":
                    h.event(entry.ts, entry.body)
            histories[rack] = h.result()
        return check, histories
    finally:
        j.close()
