"""The alarm state machine, in the manner of ISA-18.2. Pure: no clock, no I/O.

    normal ──condition──▶ active_unack ──ack──▶ active_ack
      ▲                       │ clear               │ clear
      │                       ▼                     ▼
      └────────ack──────  rtn_unack              normal
    (condition returns while rtn_unack: back to active_unack)

Latching (`latch: true`): when the condition clears the alarm stays active (unack or ack) until an
operator acknowledges it; that acknowledgement, with the condition gone, returns it to normal.
Shelving takes an alarm out of view until an expiry (or an unshelve); the condition is still
tracked meanwhile, and at the end the alarm comes back in the state the condition calls for.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass


class State(enum.StrEnum):
    NORMAL = "normal"
    ACTIVE_UNACK = "active_unack"
    ACTIVE_ACK = "active_ack"
    RTN_UNACK = "rtn_unack"
    SHELVED = "shelved"


@dataclass(frozen=True, slots=True)
class Transition:
    previous: State
    state: State
    user: str | None = None
    reason: str | None = None


class CommandRejected(ValueError):
    """An operator command that does not apply to the alarm's state (nothing changes)."""


@dataclass(slots=True)
class Alarm:
    """One alarm instance (a rule applied to a rack, and a cell or bit when the rule has them)."""

    alarm_id: str
    rack: str
    rule: str
    severity: str
    latch: bool = False
    state: State = State.NORMAL
    condition: bool = False  # the debounced process condition
    since: int = 0  # when the alarm last became active (ns)
    shelved_until: int | None = None
    text: str | Callable[[], str] = ""  # the message of the latest observation, or what makes it (see `message`)
    value: float | str | None = None

    @property
    def message(self) -> str:
        """The message of the latest observation, made when first read: an alarm in view is observed with
        every batch, and most of those messages are never read."""
        text = self.text
        if not isinstance(text, str):
            text = self.text = text()
        return text

    @property
    def in_view(self) -> bool:
        """Part of the rack's active set (anything but normal)."""
        return self.state != State.NORMAL

    def _go(self, new: State, user: str | None = None, reason: str | None = None) -> Transition | None:
        if new == self.state:
            return None
        t = Transition(self.state, new, user, reason)
        self.state = new
        if new == State.NORMAL:
            self.shelved_until = None
        return t

    def set_condition(self, active: bool, ts: int) -> Transition | None:
        """The debounced condition changed (or was re-asserted); return the transition, if any."""
        self.condition = active
        s = self.state
        if s == State.SHELVED:
            return None
        if active:
            if s in (State.NORMAL, State.RTN_UNACK):
                self.since = ts
                return self._go(State.ACTIVE_UNACK)
            return None
        if self.latch:
            return None  # latched: an operator must acknowledge
        if s == State.ACTIVE_UNACK:
            return self._go(State.RTN_UNACK)
        if s == State.ACTIVE_ACK:
            return self._go(State.NORMAL)
        return None

    def acknowledge(self, user: str, reason: str | None) -> Transition:
        s = self.state
        if s == State.ACTIVE_UNACK:
            # With the condition gone (a latched alarm), the acknowledgement also resets it.
            new = State.ACTIVE_ACK if self.condition else State.NORMAL
        elif s == State.RTN_UNACK:
            new = State.NORMAL
        elif s == State.ACTIVE_ACK and self.latch and not self.condition:
            new = State.NORMAL  # resets a latched alarm whose condition has gone
        else:
            raise CommandRejected(f"{self.alarm_id} is {s}: nothing to acknowledge")
        t = self._go(new, user, reason)
        assert t is not None
        return t

    def shelve(self, until: int, user: str, reason: str | None) -> Transition:
        if self.state == State.SHELVED:
            self.shelved_until = until  # extends or shortens; no transition
            raise CommandRejected(f"{self.alarm_id} is already shelved (expiry updated)")
        t = self._go(State.SHELVED, user, reason)
        assert t is not None
        self.shelved_until = until
        return t

    def unshelve(self, ts: int, user: str | None, reason: str | None) -> Transition:
        """End a shelve (by command or expiry): back to what the condition calls for."""
        if self.state != State.SHELVED:
            raise CommandRejected(f"{self.alarm_id} is {self.state}: not shelved")
        self.shelved_until = None
        if self.condition:
            self.since = ts
            new = State.ACTIVE_UNACK
        else:
            new = State.NORMAL
        t = self._go(new, user, reason)
        assert t is not None
        return t

    def expire(self, now: int) -> Transition | None:
        if self.state == State.SHELVED and self.shelved_until is not None and now >= self.shelved_until:
            return self.unshelve(now, None, "shelve expired")
        return None
