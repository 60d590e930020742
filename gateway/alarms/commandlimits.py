"""Bounds on operator commands, checked before any work is done on them (pure; no event loop).

- `decode`: the size before anything else, the nesting depth by a scan of the bytes (no recursion,
  so a 400 kB nested array is refused, never a RecursionError), then JSON without NaN or Infinity.
- `TokenBucket`, `RackBuckets`: the rate limit per rack, with a bounded number of racks.
- `Refused` and its kinds: why a command is not taken, as a code (metrics, journal) and a sentence
  (the reply).
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any


class Refused(ValueError):
    """A command that is not taken: `code` names the reason for metrics and the journal."""

    result = "invalid"

    def __init__(self, text: str, code: str = "invalid", doc: dict[str, Any] | None = None) -> None:
        super().__init__(text)
        self.code = code
        self.doc = doc  # the command as read, when it could be (its `id` is echoed in the reply)


class InvalidCommand(Refused):
    """The message is not a well-formed command (size, nesting, JSON, fields)."""


class Denied(Refused):
    """A well-formed command its sender may not give (unsigned, bad signature, stale, replayed, not permitted)."""

    result = "denied"


_STRUCTURE = re.compile(rb'[\[\]{}"\\]')
_BACKSLASH, _QUOTE = ord("\\"), ord('"')
_OPEN, _CLOSE = frozenset(b"[{"), frozenset(b"]}")


def nesting_depth(payload: bytes, stop_at: int) -> int:
    """The deepest nesting of arrays and objects in JSON text, counted outside strings; the scan stops once
    the depth passes `stop_at` (no recursion, no parsing: only the bytes that open, close or escape)."""
    depth = deepest = 0
    in_string = False
    escaped_at = -1  # the position after a backslash in a string: that character is taken as it is
    for m in _STRUCTURE.finditer(payload):
        pos = m.start()
        if pos == escaped_at:
            continue
        ch = payload[pos]
        if in_string:
            if ch == _BACKSLASH:
                escaped_at = pos + 1
            elif ch == _QUOTE:
                in_string = False
        elif ch == _QUOTE:
            in_string = True
        elif ch in _OPEN:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop_at:
                    break
        elif ch in _CLOSE:
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise InvalidCommand(f"{name} is not a number a command may hold", "non_finite")


def decode(payload: bytes, max_bytes: int, max_depth: int) -> dict[str, Any]:
    """The JSON object of a command message, or InvalidCommand saying which bound it crossed."""
    if len(payload) > max_bytes:
        raise InvalidCommand(f"command of {len(payload)} bytes is over the limit of {max_bytes}", "too_large")
    depth = nesting_depth(payload, max_depth)
    if depth > max_depth:
        raise InvalidCommand(f"command nested deeper than {max_depth} levels", "too_deep")
    try:
        doc = json.loads(payload, parse_constant=_no_constant)
    except InvalidCommand as exc:
        lenient = json.loads(payload)  # bounded and valid JSON but for NaN: read it again for its id
        exc.doc = lenient if isinstance(lenient, dict) else None
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidCommand(f"not JSON: {str(exc)[:120]}", "not_json") from None
    if not isinstance(doc, dict):
        raise InvalidCommand("a command is a JSON object", "not_object")
    return doc


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens a second up to `capacity`; a command takes one. Time is given, never read here."""

    rate: float
    capacity: float
    tokens: float = field(default=-1.0)
    at: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens < 0:  # first use: full
            self.tokens, self.at = self.capacity, now
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


OTHER_RACKS = "*"  # the shared bucket of racks beyond `RackBuckets.max_racks`, or with names over MAX_RACK_NAME
MAX_RACK_NAME = 64


@dataclass(slots=True)
class RackBuckets:
    """A token bucket per rack; rack names come from topics anyone may publish on, so past `max_racks`
    names the least recently used full buckets are forgotten, or new names share one bucket (as do long ones)."""

    rate: float
    capacity: float
    max_racks: int = 1024
    buckets: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)

    def take(self, rack: str, now: float) -> bool:
        if len(rack) > MAX_RACK_NAME:
            rack = OTHER_RACKS
        bucket = self.buckets.get(rack)
        if bucket is None:
            if len(self.buckets) >= self.max_racks:
                self._forget_full(now)
            if len(self.buckets) >= self.max_racks:
                rack = OTHER_RACKS
                bucket = self.buckets.get(rack)
            if bucket is None:
                bucket = self.buckets[rack] = TokenBucket(self.rate, self.capacity)
        self.buckets.move_to_end(rack)
        return bucket.take(now)

    def _forget_full(self, now: float) -> None:
        """Drop the oldest buckets that have refilled (forgetting them changes nothing)."""
        for name in list(self.buckets)[: max(1, self.max_racks // 8)]:
            b = self.buckets[name]
            if name != OTHER_RACKS and b.tokens + (now - b.at) * b.rate >= b.capacity:
                del self.buckets[name]
