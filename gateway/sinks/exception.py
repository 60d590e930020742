"""Report by exception (pure): which samples of a batch go to a sink, by deadband, quality and heartbeat.

A key (quantity, unit, rack, module, cell) with a deadband is sent when
- it is the first sample of the key this filter sees (after a start, everything is sent once);
- its value moved from the last value SENT by at least the deadband: absolute (in the quantity's unit) plus
  a fraction of the last sent value's size, with a tolerance of a billionth of the values' size so that a
  step of exactly the deadband (3.300 -> 3.305 V) counts although floats make it 0.004999...;
  a value that did not change at all is never a change (deadband 0 sends every change);
- a value that is not a number (a state's name, a boolean or text kept as an object, or NaN, "no value")
  is a change whenever it differs from the last sent one: a state is never within a deadband of another;
- its quality differs from the last sent quality;
- its time is a heartbeat or more after the last sent sample of the key, or before it (a clock step back).

Several samples of one key in a batch are compared in order, each against the last one sent before it:
the batch's points are taken in rounds, the r-th sample of every key in round r, each round vectorized
over the keys (a Modbus poll is one round, a CAN window a few). `decide` is the rule; `LastSent` holds
the last sent sample of every key as columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from gateway.model import F64, I64, U8, Key, Value
from gateway.sinks.config import DeadbandRule, ReportByException

Bools = npt.NDArray[np.bool_]
Index = npt.NDArray[np.intp]
TOLERANCE = 1e-9  # of the larger of the two values' sizes


@dataclass(frozen=True, slots=True)
class Rule:
    """The deadband of a key: sent when |change| >= absolute + fraction * |last sent|, or a heartbeat passed."""

    absolute: float
    fraction: float
    heartbeat_ns: int


def key_path(key: Key) -> str:
    """What a pattern with '/' matches: `<rack>/<quantity>[/<module>][/<cell>]` (`rack-01/cell_voltage/3/7`)."""
    parts = [key.rack, key.quantity]
    if key.module is not None:
        parts.append(str(key.module))
    if key.cell is not None:
        parts.append(str(key.cell))
    return "/".join(parts)


class Band(NamedTuple):
    """A configured deadband: an absolute part (in the quantity's unit) and a fraction of the last sent value."""

    absolute: float
    fraction: float


def parse_deadband(text: float | str) -> Band:
    """The band of a configured deadband: `0.005` or `"1%"`."""
    if isinstance(text, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", text)
        if m is None:
            raise ValueError(f"deadband {text!r} is neither a number nor a percent like '1%'")
        return Band(0.0, float(m.group(1)) / 100.0)
    return Band(float(text), 0.0)


class Entry(NamedTuple):
    pattern: str
    rule: Rule


class Patterns:
    """The configured deadbands in the order written; the first pattern that matches a key applies."""

    def __init__(self, cfg: ReportByException) -> None:
        self.entries: list[Entry] = []
        for pattern, given in cfg.deadbands.items():
            band, beat = (given.deadband, given.heartbeat) if isinstance(given, DeadbandRule) else (given, None)
            absolute, fraction = parse_deadband(band)
            heartbeat = cfg.heartbeat if beat is None else beat
            self.entries.append(Entry(pattern, Rule(absolute, fraction, int(heartbeat * 1e9))))

    def find(self, key: Key) -> Rule | None:
        path = key_path(key)
        for pattern, rule in self.entries:
            if fnmatchcase(path if "/" in pattern else key.quantity, pattern):
                return rule
        return None


class Decision(NamedTuple):
    """Per sample: `forced` (first of its key, quality changed, heartbeat due) and `changed` (its value)."""

    forced: Bools
    changed: Bools


def decide(last: LastColumns, value: F64, quality: U8, ts: I64) -> Decision:
    """The rule over one round (each key at most once). A sample that holds an object is NaN in `value`:
    the caller compares its object (`changed` says only whether a number moved)."""
    forced = ~last.seen | (quality != last.quality) | (ts - last.ts >= last.heartbeat) | (ts < last.ts)
    finite = np.isfinite(value) & np.isfinite(last.value)
    if finite.all():
        new, old = value, last.value
    else:  # NaN ("no value") and infinities are states: changed when they differ (NaN is equal to NaN)
        new, old = np.where(finite, value, 0.0), np.where(finite, last.value, 0.0)
    diff = np.abs(new - old)
    threshold = last.absolute + last.fraction * np.abs(old) - TOLERANCE * np.maximum(np.abs(new), np.abs(old))
    changed = (diff >= threshold) & (diff > 0)
    if not finite.all():
        changed |= ~finite & (value != last.value) & ~(np.isnan(value) & np.isnan(last.value))
    changed |= last.is_object
    return Decision(forced, changed)


class LastColumns(NamedTuple):
    """The last sent sample and the rule of some keys (one entry per sample of a round)."""

    seen: Bools
    value: F64
    quality: U8
    ts: I64
    is_object: Bools
    absolute: F64
    fraction: F64
    heartbeat: I64


@dataclass(frozen=True, slots=True)
class Saved:
    """What `LastSent.put` replaced: enough to put it back (`LastSent.restore`)."""

    slots: Index
    columns: LastColumns
    objects: dict[int, Value | None]  # slot -> the object it held (None: it held none)


_MISSING = object()


@dataclass
class LastSent:
    """The last sent sample of every key with a rule, by slot (a key's slot is given once, never moved)."""

    size: int = 0
    seen: Bools = field(default_factory=lambda: np.zeros(0, dtype=np.bool_))
    value: F64 = field(default_factory=lambda: np.zeros(0))
    quality: U8 = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))
    ts: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    is_object: Bools = field(default_factory=lambda: np.zeros(0, dtype=np.bool_))
    absolute: F64 = field(default_factory=lambda: np.zeros(0))
    fraction: F64 = field(default_factory=lambda: np.zeros(0))
    heartbeat: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    objects: dict[int, Value] = field(default_factory=dict)  # slot -> last sent object (a state's name, text)

    _COLUMNS = ("seen", "value", "quality", "ts", "is_object", "absolute", "fraction", "heartbeat")

    def add(self, rule: Rule) -> int:
        """A new key's slot (never seen: its first sample is sent)."""
        if self.size == len(self.seen):
            grow = max(1024, self.size)
            for name in self._COLUMNS:
                old = getattr(self, name)
                setattr(self, name, np.concatenate((old, np.zeros(grow, dtype=old.dtype))))
        slot = self.size
        self.absolute[slot], self.fraction[slot], self.heartbeat[slot] = rule.absolute, rule.fraction, rule.heartbeat_ns
        self.size += 1
        return slot

    def at(self, slots: Index) -> LastColumns:
        return LastColumns(*(getattr(self, name)[slots] for name in self._COLUMNS))

    def put(self, slots: Index, value: F64, quality: U8, ts: I64, objects: dict[int, Value]) -> Saved:
        """Remember samples as sent (`objects`: slot -> object, for those that hold one); what they replace."""
        held = [s for s in slots.tolist() if s in self.objects] if self.objects else []
        replaced: dict[int, Value | None] = {s: self.objects.pop(s) for s in held}
        for s in objects:
            replaced.setdefault(s, None)
        saved = Saved(slots, self.at(slots), replaced)
        self.seen[slots] = True
        self.value[slots], self.quality[slots], self.ts[slots] = value, quality, ts
        self.is_object[slots] = False
        if objects:
            self.is_object[np.fromiter(objects, dtype=np.intp, count=len(objects))] = True
            self.objects.update(objects)
        return saved

    def restore(self, saved: Saved) -> None:
        """Undo one `put` (undo several in the reverse order of the puts)."""
        for name, column in zip(self._COLUMNS, saved.columns, strict=True):
            getattr(self, name)[saved.slots] = column
        for s, obj in saved.objects.items():
            if obj is None:
                self.objects.pop(s, None)
            else:
                self.objects[s] = obj


def same_object(a: Value | object, b: Value | object) -> bool:
    """Two sent objects are the same state: equal and of one type (True is not 1)."""
    return a is not _MISSING and type(a) is type(b) and a == b


class ObjectChanges(NamedTuple):
    differ: Index  # round indices whose object differs from the last sent one
    held: dict[int, Value]  # slot -> object, of every sample of the round that holds one


def object_changes(last: LastSent, slots: Index, positions: Index, objects: dict[int, Value]) -> ObjectChanges:
    """Of the round's samples at `positions` (point indices) that hold an object: the round indices whose
    object differs from the last sent one, and the slot -> object of every sample that holds one."""
    at = {p: i for i, p in enumerate(positions.tolist()) if p in objects}
    differ = [i for p, i in at.items() if not same_object(last.objects.get(int(slots[i]), _MISSING), objects[p])]
    return ObjectChanges(np.asarray(differ, dtype=np.intp), {int(slots[i]): objects[p] for p, i in at.items()})
