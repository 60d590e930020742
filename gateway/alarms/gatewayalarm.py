"""Alarms the gateway raises about itself (rack `gateway`): a sink refusing its credentials, a full disk, a
store another process holds locked.

A component reports a condition on the runtime's one `GatewayAlarms`:
`set(name, active, message, severity=...)`, where the name is the alarm id without `gateway:`
(`store_disk_full`, `store_locked`, `sink_auth_failed:<sink>`). What becomes of it:

- **With the alarm engine** (`alarms.enabled`, the default) the engine takes the changes on its clock
  (woken at once) and evaluates them as alarms of rack `gateway`, with everything rack alarms have:
  ISA-18.2 states, the journal, `alarms list`, acknowledge and shelve, the status page,
  `bms_gateway_alarms_active`, MQTT and InfluxDB. `set` only records: it never writes to the
  store, so a change reported while the disk is full is not lost with a failing write (the engine's
  events go through the pipeline; its journal keeps entries in memory until it can write them).
  Changes reported before the engine starts wait for it.
- **Without it** (`alarms.enabled: false`, or a store or sink runner used on its own) a change
  becomes an alarm event record with the same fields, which the reporting component stores at once
  (`take_events`): no state, journal or acknowledgement.

After a restart the engine restores the gateway alarms that were active (`attach`); each stays
active until its component reports in this process (`restored`): a report of the fault confirms
it, a report of health clears it, so a fault that outlives the restart does not flap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.model import Batch, BatchKind

GATEWAY = "gateway"  # the rack of the gateway's own alarms
STORE_DISK_FULL = "store_disk_full"
STORE_LOCKED = "store_locked"  # another process holds the store's lock past the busy timeout (major)
SINK_AUTH_FAILED = "sink_auth_failed"
MAX_HELD = 1_000  # changes or events kept for their taker; past it the oldest go (a taker that never comes)


def sink_auth_failed(sink: str) -> str:
    """The name of the alarm raised while sink `sink` is refused its credentials."""
    return f"{SINK_AUTH_FAILED}:{sink}"


def orphaned(names: Iterable[str], sinks: Iterable[str]) -> list[str]:
    """Conditions no component can report any more: those of sinks no longer configured."""
    known = {sink_auth_failed(s) for s in sinks}
    return sorted(n for n in names if n.startswith(f"{SINK_AUTH_FAILED}:") and n not in known)


@dataclass(frozen=True, slots=True)
class Condition:
    """A condition of the gateway as a component reported it."""

    name: str  # `store_disk_full`, `sink_auth_failed:<sink>`
    active: bool
    message: str
    severity: str
    ts: int  # ns

    @property
    def alarm_id(self) -> str:
        return f"{GATEWAY}:{self.name}"

    @property
    def rule(self) -> str:
        return self.name.split(":", 1)[0]


def event_batch(cond: Condition) -> Batch:
    """The alarm event record of a change when no alarm engine takes it (raised, or back to normal)."""
    rec: dict[str, object] = {
        "type": "event",
        "ts": cond.ts,
        "rack": GATEWAY,
        "alarm_id": cond.alarm_id,
        "severity": cond.severity,
        "state": "active_unack" if cond.active else "rtn_unack",
        "previous": "normal" if cond.active else "active_unack",
        "message": cond.message,
        "value": None,
        "rule": cond.rule,
        "user": None,
        "reason": None,
    }
    return Batch(GATEWAY, kind=BatchKind.ALARM, device=GATEWAY, created=cond.ts, records=[rec])


class GatewayAlarms:
    """The gateway's own conditions, as its components report them (one per runtime; thread-safe)."""

    def __init__(self, *, engine: bool = False) -> None:
        """`engine`: an alarm engine will take the changes (they wait for it); else events are made."""
        self.engine = engine
        self.active: dict[str, Condition] = {}  # conditions active now: reported so, or restored
        self.restored: set[str] = set()  # active before a restart; not reported by this process yet
        self.wake: Callable[[], None] | None = None  # the engine: changes are waiting
        self._changes: list[Condition] = []
        self._events: list[Batch] = []
        self._lock = threading.Lock()

    def set(self, name: str, active: bool, message: str, *, severity: str = "critical") -> bool:
        """Report a condition; True when that is news to this process (raised, cleared, or an alarm
        restored from before a restart confirmed), False when it was already so."""
        with self._lock:
            confirmed = name in self.restored
            self.restored.discard(name)
            if (name in self.active) == active:
                return confirmed and active
            cond = Condition(name, active, message, severity, time.time_ns())
            if active:
                self.active[name] = cond
            else:
                del self.active[name]
            if self.engine:
                self._changes.append(cond)
                del self._changes[:-MAX_HELD]  # (`active` still holds the truth of every name)
            else:
                self._events.append(event_batch(cond))
                del self._events[:-MAX_HELD]
            wake = self.wake
        if wake is not None:
            wake()
        return True

    def attach(self, restored: Iterable[Condition], wake: Callable[[], None]) -> None:
        """The alarm engine starts: the conditions it restored, and how to tell it of a change."""
        with self._lock:
            for cond in restored:
                if cond.name not in self.active:  # (reported before the engine started: already confirmed)
                    self.active[cond.name] = cond
                    self.restored.add(cond.name)
            self.wake = wake

    def take_changes(self) -> list[Condition]:
        """The changes since the last call, in order (for the alarm engine)."""
        with self._lock:
            out, self._changes = self._changes, []
        return out

    def take_events(self) -> list[Batch]:
        """Event records of changes no alarm engine takes, to be stored by the caller."""
        with self._lock:
            out, self._events = self._events, []
        return out
