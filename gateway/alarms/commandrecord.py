"""Commands that were not taken, into the journal and the log, bounded whatever arrives (pure; time is given).

Three kinds, each in bursts: `invalid` (not a well-formed command), `denied` (well formed, but
unsigned, badly signed, stale, replayed or not permitted) and `dropped` (the rate limit or a full
queue: not even read). The first of a burst is journaled in full (fields shortened) and logged once;
a denied command is journaled in full as long as the journal budget lasts (evidence of who tried
what), everything else is counted. A burst ends after `QUIET` seconds without another, or every
`LONGEST` seconds of a long one, with one journal entry and one log line of its counts by reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.alarms.commandlimits import TokenBucket
from gateway.textsafe import printable, shorten

log = structlog.get_logger("alarms.commands")

QUIET = 10.0  # seconds without another refusal of a kind that end its burst
LONGEST = 60.0  # a burst longer than this is summed up and a new one begins
DENIED_RATE, DENIED_BURST = 0.1, 100  # denied commands journaled one by one: 100 at once, then one per 10 s
MAX_RACK = 64  # characters of a rack name taken from a topic
MAX_EXCERPT = 80  # characters of the start of an unreadable message kept in the journal


@dataclass(slots=True)
class Burst:
    first: float
    last: float
    count: int = 0  # beyond the entries journaled one by one
    reasons: Counter[str] = field(default_factory=Counter)


Record = Callable[[list[dict[str, Any]]], None]


class RefusalLog:
    def __init__(self, record: Record, clock_ns: Callable[[], int]) -> None:
        self.record = record
        self.clock_ns = clock_ns
        self.bursts: dict[str, Burst] = {}
        self.budget = TokenBucket(DENIED_RATE, DENIED_BURST)

    def refused(self, kind: str, entry: dict[str, Any], now: float) -> None:
        """An invalid or denied command (`entry` from `refusal_entry`)."""
        code = str(entry.get("code"))
        burst = self.bursts.get(kind)
        if burst is None:
            self.bursts[kind] = Burst(now, now)
            if kind == "denied":
                self.budget.take(now)
            log.warning(f"alarm command {kind}", rack=printable(entry.get("rack")), code=code,
                        error=printable(entry.get("error")), user=printable(entry.get("user")))  # fmt: skip
            self.record([entry])
            return
        burst.last = now
        if kind == "denied" and self.budget.take(now):
            log.info("alarm command denied", rack=printable(entry.get("rack")), code=code,
                     user=printable(entry.get("user")))  # fmt: skip
            self.record([entry])
            return
        burst.count += 1
        burst.reasons[code] += 1

    def dropped(self, reason: str, rack: str, now: float) -> None:
        """A command not read at all (rate limit, full queue)."""
        burst = self.bursts.get("dropped")
        if burst is None:
            self.bursts["dropped"] = Burst(now, now)
            log.warning("alarm commands dropped", reason=reason, rack=printable(rack, MAX_RACK))
            self.record([{"type": "command_dropped", "ts": self.clock_ns(), "rack": shorten(rack, MAX_RACK),
                          "code": reason}])  # fmt: skip
            return
        burst.last = now
        burst.count += 1
        burst.reasons[reason] += 1

    def flush(self, now: float, everything: bool = False) -> None:
        """End the bursts that are over (all of them at a stop): one journal entry and one log line each."""
        for kind, burst in list(self.bursts.items()):
            if not (everything or now - burst.last >= QUIET or now - burst.first >= LONGEST):
                continue
            del self.bursts[kind]
            if burst.count == 0:
                continue
            reasons = dict(burst.reasons.most_common())
            log.warning(f"alarm commands {kind}: burst over", more=burst.count, reasons=reasons,
                        seconds=round(burst.last - burst.first, 1))  # fmt: skip
            self.record([{"type": "commands_refused", "ts": self.clock_ns(), "kind": kind, "count": burst.count,
                          "reasons": reasons, "seconds": round(burst.last - burst.first, 3)}])  # fmt: skip


def refusal_entry(ts: int, rack: str, result: str, code: str, error: str, doc: dict[str, Any] | None,
                  payload: bytes | None, size: int, max_text: int) -> dict[str, Any]:  # fmt: skip
    """The journal entry of a refused command: what it claimed, every field shortened."""
    entry: dict[str, Any] = {"type": "command_refused", "ts": ts, "rack": shorten(rack, MAX_RACK), "result": result,
                             "code": code, "error": shorten(error, 300), "size": size}  # fmt: skip
    if doc is None:
        if payload is not None:
            entry["excerpt"] = shorten(payload[: MAX_EXCERPT * 4].decode("utf-8", "replace"), MAX_EXCERPT)
        return entry
    for key, limit in (("action", 16), ("user", 64), ("id", 64), ("reason", max_text), ("nonce", 128)):
        value = doc.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            entry["request_id" if key == "id" else key] = shorten(str(value), limit)
    ids = doc.get("alarm_ids", doc.get("alarm_id"))
    ids = [ids] if isinstance(ids, str) else ids
    if isinstance(ids, list):
        entry["alarm_ids"] = [shorten(i, 256) for i in ids[:20] if isinstance(i, str)]
    if isinstance(doc.get("ts"), int) and not isinstance(doc.get("ts"), bool):
        entry["signed_ts"] = doc["ts"]
    return entry
