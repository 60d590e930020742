"""The bounds of the log stream, as structlog processors: pure callables over an event dict.

- `cap_fields`: every string field (the event text, an exception's text) at most `FIELD_MAX`
  characters (head and tail kept, how much was cut in between), marked `truncated`.
- `RepeatLimiter`: at most `REPEAT_BURST` lines of a kind in `REPEAT_WINDOW` seconds; the others are
  left out and counted, and the next line of that kind written says how many were left out before
  it (`repeated`). A kind is the logger, the level, the event text with its numbers masked and the
  values of the other fields (a number masked, a text as it is): "No response after 3 retries" and
  "... 4 retries" are one kind, "device offline, device=rack-01" and "device=rack-02" are two. A
  message (the same without the other fields) has a larger budget, `MESSAGE_BURST` (`similar`):
  a line whose fields differ every time (bytes a device sent) is still bounded.
- `CappedJSON`: the JSON renderer, with the whole line at most `LINE_MAX` characters (the largest
  fields shortened, then left out and named in `dropped`).
- `LibraryRules`: what the libraries say that the gateway says better. pymodbus appends its last
  frames to an error when its level is above debug: they are cut (at debug every frame is a line of
  its own). Its "No response received" on every timeout goes below debug (the gateway logs a device
  going offline once, and counts every timeout), and so does its "Repeating...." (the limiter
  counts repeats).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import structlog

EventDict = MutableMapping[str, Any]

FIELD_MAX = 2_000  # characters of one string field
LINE_MAX = 8_192  # characters (bytes: the JSON is ASCII) of one rendered line
REPEAT_WINDOW = 60.0  # seconds
REPEAT_BURST = 3  # lines of one kind written per window
MESSAGE_BURST = 60  # lines of one message (whatever its other fields) written per window
MAX_KINDS = 512  # kinds of line remembered by the limiter

_NUMBERS = re.compile(r"0[xX][0-9a-fA-F]+|\d+")
_UNKEYED = frozenset(
    {"event", "timestamp", "exception", "exc_info", "stack", "stack_info", "repeated", "similar", "truncated"}
)
_KEPT = ("timestamp", "level", "logger", "truncated", "dropped")  # never shortened by the line cap


def shorten(text: str, limit: int) -> str:
    """`text` in about `limit` characters: its head and tail, and how many characters were cut between."""
    if len(text) <= limit:
        return text
    half = max(limit // 2 - 16, 1)
    return f"{text[:half]}...[{len(text) - 2 * half} chars cut]...{text[-half:]}"


def cap_fields(_logger: object, _name: str, ed: EventDict) -> EventDict:
    """Every string field cut to `FIELD_MAX` characters; `truncated: true` when one was."""
    cut = False
    for key, value in ed.items():
        if isinstance(value, str) and len(value) > FIELD_MAX:
            ed[key] = shorten(value, FIELD_MAX)
            cut = True
    if cut:
        ed["truncated"] = True
    return ed


def kind_of(ed: EventDict) -> tuple[object, ...]:
    """What makes two lines "the same" for the limiter (see the module's text). Fields in the order
    they were given (one call site gives them in one order)."""
    parts: list[object] = [_NUMBERS.sub("#", str(ed.get("event", "")))]
    for k, v in ed.items():
        if k in _UNKEYED:
            continue
        if isinstance(v, str):
            parts += (k, v)
        elif isinstance(v, int | float) and not isinstance(v, bool):
            parts += (k, "#")
        else:
            parts += (k, repr(v))
    return tuple(parts)


def message_of(ed: EventDict) -> tuple[object, ...]:
    """The same message whatever its other fields: the logger, the level, the event with numbers masked."""
    return ("message", ed.get("logger"), ed.get("level"), _NUMBERS.sub("#", str(ed.get("event", ""))))


@dataclass(slots=True)
class _Seen:
    key: tuple[object, ...]
    written: deque[float]  # when the newest lines were written (at most the burst: the deque's maxlen)
    count_field: str  # the field saying how many were left out: `repeated` or `similar`
    left_out: int = 0  # lines left out since the last one written
    newest: EventDict | None = None  # the newest one left out (written late if no other comes)

    def full(self, now: float, window: float) -> bool:
        return len(self.written) == self.written.maxlen and now - self.written[0] < window


class RepeatLimiter:
    """At most `burst` lines of a kind and `message_burst` lines of a message per `window` seconds;
    the rest are left out and counted, and the next line of the kind written says how many
    (`repeated`; `similar` for lines of its message with other fields). A state change logged once
    (a device going offline, coming back) is written at once; a message on every poll is written a
    few times a minute, even when a field of it changes every time (bytes a device sent).

    A kind (or message) that stops repeating is not forgotten: `due()` gives its newest left-out
    line (with the count of the others) once its window has passed, and `pending()` every such line
    at the end. A line with `repeated: N` stands for itself and N left-out lines before it."""

    def __init__(
        self,
        window: float = REPEAT_WINDOW,
        burst: int = REPEAT_BURST,
        message_burst: int = MESSAGE_BURST,
        max_kinds: int = MAX_KINDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.burst = burst
        self.message_burst = message_burst
        self.max_kinds = max_kinds
        self.clock = clock
        self._seen: OrderedDict[tuple[object, ...], _Seen] = OrderedDict()
        self._next_due = math.inf

    def __call__(self, _logger: object, _name: str, ed: EventDict) -> EventDict:
        now = self.clock()
        kind = self._seen.get(kind_key := kind_of(ed))
        message = self._seen.get(message_key := message_of(ed))
        for seen in (kind, message):
            if seen is not None and seen.full(now, self.window):
                seen.left_out += 1
                seen.newest = ed
                self._next_due = min(self._next_due, seen.written[0] + self.window)
                raise structlog.DropEvent
        for key, seen, burst, field in (
            (kind_key, kind, self.burst, "repeated"),
            (message_key, message, self.message_burst, "similar"),
        ):
            if seen is None:
                self._remember(key, now, burst, field)
                continue
            if seen.left_out:
                ed[field] = seen.left_out
            self._wrote(seen, now)
        return ed

    def _remember(self, key: tuple[object, ...], now: float, burst: int, field: str) -> None:
        """A new kind; when the table is full, the kinds quiet for a window go first (oldest written first)."""
        while len(self._seen) >= self.max_kinds:
            oldest = next(iter(self._seen.values()))
            if oldest.newest is not None or now - oldest.written[-1] < self.window:
                return  # every kind is busy: this one is not limited (the message limit and line cap hold)
            self._seen.popitem(last=False)
        self._seen[key] = _Seen(key, deque([now], maxlen=burst), field)

    def _wrote(self, seen: _Seen, now: float) -> None:
        seen.written.append(now)
        seen.left_out, seen.newest = 0, None
        self._seen.move_to_end(seen.key)  # the table stays in the order of the last line written

    def due(self) -> list[EventDict]:
        """The left-out lines of kinds whose window has passed with no newer line of theirs."""
        now = self.clock()
        if now < self._next_due:
            return []
        out: list[EventDict] = []
        self._next_due = math.inf
        for seen in list(self._seen.values()):
            if seen.newest is None:
                continue
            if now - seen.written[0] >= self.window:
                out.append(self._release(seen, now))
            else:
                self._next_due = min(self._next_due, seen.written[0] + self.window)
        return out

    def pending(self) -> list[EventDict]:
        """Every left-out line not yet accounted for (at the end of the log stream)."""
        now = self.clock()
        out = [self._release(seen, now) for seen in list(self._seen.values()) if seen.newest is not None]
        self._next_due = math.inf
        return out

    def _release(self, seen: _Seen, now: float) -> EventDict:
        ed = seen.newest
        assert ed is not None
        if seen.left_out > 1:
            ed[seen.count_field] = seen.left_out - 1
        self._wrote(seen, now)
        return ed


class CappedJSON:
    """JSON lines of at most `limit` characters: a longer one has its largest fields shortened (strings)
    or left out (named in `dropped`) until it fits, and says `truncated: true`."""

    def __init__(self, limit: int = LINE_MAX) -> None:
        self.limit = limit
        self._render = structlog.processors.JSONRenderer()

    def __call__(self, logger: object, name: str, ed: EventDict) -> str:
        line = str(self._render(logger, name, ed))
        if len(line) <= self.limit:
            return line
        ed = dict(ed)
        ed["truncated"] = True
        dropped: list[str] = []
        while len(line) > self.limit:
            sizes = {k: len(json.dumps(v, default=repr)) for k, v in ed.items() if k not in _KEPT}
            if not sizes:  # only the kept fields, and still too long (a logger name of kilobytes)
                return str(self._render(logger, name, {k: shorten(str(ed.get(k)), 200) for k in _KEPT[:3]}))
            key = max(sizes, key=sizes.__getitem__)
            value = ed[key]
            if isinstance(value, str) and len(value) > 64:
                ed[key] = shorten(value, len(value) // 2)
            else:
                del ed[key]
                dropped.append(key)
                ed["dropped"] = dropped
            line = str(self._render(logger, name, ed))
        return line


_FRAME_DUMP = "\n>>>>> "  # pymodbus appends its last frames to an error below debug
# The gateway reports a timeout itself (device state, counters); "Repeating...." is pymodbus's own
# marker of a repeat, which the limiter counts instead.
_QUIET = {"pymodbus": ("No response received after", "Repeating....")}


class LibraryRules:
    """Library lines at the level of detail the gateway is configured for (see the module's text)."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold

    def __call__(self, _logger: object, _name: str, ed: EventDict) -> EventDict:
        source = str(ed.get("logger", ""))
        top = source.partition(".")[0]
        if top == "pymodbus":
            event = str(ed.get("event", ""))
            cut = event.find(_FRAME_DUMP)
            if cut >= 0:
                ed["event"] = event = event[:cut]
            if event.startswith(_QUIET[top]):
                if self.threshold > logging.DEBUG:
                    raise structlog.DropEvent
                ed["level"] = "debug"
        return ed
