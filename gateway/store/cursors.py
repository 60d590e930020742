"""The outbox's small writes (part of `Outbox`, see gateway.store.outbox): consumers and their cursors, dead
letters, meta values. While the disk is full each waits in memory as its latest value (see
gateway.store.diskfault) and is read back from there meanwhile.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

import structlog

from gateway import metrics
from gateway.store import deadletters
from gateway.store.deadletters import DeadLetter
from gateway.store.diskfault import DeadLetterItems
from gateway.store.state import OutboxState

log = structlog.get_logger("outbox")


class Cursors(OutboxState):
    """Consumers, acknowledgements, dead letters and meta of `Outbox`."""

    def add_consumer(self, name: str, *, from_start: bool = False) -> None:
        """Register a consumer; a new one starts at the current end (or the oldest row)."""
        start = 0 if from_start else self.last_seq()
        row = self.db.execute("SELECT dropped FROM consumers WHERE name=?", (name,)).fetchone()
        if row is None:
            if self._write("add consumer", "INSERT OR IGNORE INTO consumers(name, acked) VALUES (?, ?)", (name, start)):
                row = self.db.execute("SELECT dropped FROM consumers WHERE name=?", (name,)).fetchone()
            else:
                self.deferred.consumers.setdefault(name, from_start)
        self.dropped_total[name] = int(row[0]) if row is not None else 0

    def remove_consumer(self, name: str) -> bool:
        """Forget a consumer (a sink removed from the configuration): its drops are no longer counted."""
        n = self.db.execute("DELETE FROM consumers WHERE name=?", (name,)).rowcount
        self.dropped_total.pop(name, None)
        return n > 0

    def ack(self, consumer: str, seq: int) -> None:
        """Record that `consumer` has delivered every row up to and including `seq`."""
        if not self._write("ack", "UPDATE consumers SET acked=max(acked, ?) WHERE name=?", (seq, consumer)):
            self.deferred.ack(consumer, seq)

    def hold(self, consumer: str, first_seq: int) -> None:
        """`consumer` is writing rows from `first_seq` on: the budget must not drop them meanwhile."""
        self._holds[consumer] = first_seq

    def release(self, consumer: str) -> None:
        self._holds.pop(consumer, None)

    def add_dead_letters(self, consumer: str, seq: int, status: int, reason: str, items: Iterable[str]) -> int:
        items = list(items)
        if not self.waiting():
            try:
                with self._tx():
                    return deadletters.add(self.db, consumer, seq, status, reason, items, self.max_dead_letters)
            except (sqlite3.Error, OSError) as exc:
                if self._fault_of(exc) is None:
                    raise
                self._failed(exc, "dead letters")
        lost = self.deferred.add_dead_letters(DeadLetterItems(consumer, seq, status, reason, items),
                                              self.max_dead_letters)  # fmt: skip
        if lost:
            metrics.sink_dead_letters_discarded.labels(consumer).inc(lost)
            log.warning("disk full: dead letters beyond the table's bound discarded", consumer=consumer, points=lost)
        return len(items)

    def dead_letters(self, consumer: str | None = None, limit: int | None = None) -> list[DeadLetter]:
        return deadletters.select(self.db, consumer, limit)

    def remove_dead_letters(self, ids: Iterable[int]) -> int:
        with self._tx():
            return deadletters.remove(self.db, ids)

    def set_meta(self, key: str, value: str) -> None:
        if not self._write("meta", "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value)):
            self.deferred.meta[key] = value

    def get_meta(self, key: str) -> str | None:
        if key in self.deferred.meta:
            return self.deferred.meta[key]
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])
