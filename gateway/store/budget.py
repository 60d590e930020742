"""The outbox's retention (part of `Outbox`, see gateway.store.outbox): past the disk budget (`max_bytes`) or
the retention age the oldest rows go, and every sample a consumer had not yet acknowledged is counted
as dropped for it (a metric and a log line), once the delete is committed. Never under a write in
progress (a consumer's hold).
"""

from __future__ import annotations

import sqlite3
import time

import structlog

from gateway import metrics
from gateway.store.state import OutboxState

log = structlog.get_logger("outbox")

DROP_STEP_BYTES = 4_000_000  # most the disk budget frees at once (about 400 compact rows, ~15 ms)


class Budget(OutboxState):
    """The disk budget and retention age of `Outbox`."""

    def enforce_budget(self) -> int:
        """Drop the oldest rows past the disk budget or the retention age; return samples dropped.

        While the store cannot be written, first a `retry` of what waits in memory (so this is also the
        idle sinks' periodic retry); nothing is deleted to make room for it."""
        if self.waiting() and not self.retry():
            return 0
        try:
            return self._enforce_budget()
        except (sqlite3.Error, OSError) as exc:
            if self._fault_of(exc) is None:
                raise
            self._failed(exc, "budget")
            return 0

    def _enforce_budget(self) -> int:
        dropped = 0
        if self.retention_ns is not None:
            cutoff = time.time_ns() - self.retention_ns
            row = self.db.execute("SELECT max(seq) FROM batches WHERE ts < ?", (cutoff,)).fetchone()
            if row[0] is not None:
                dropped += self._drop_through(int(row[0]), "retention")
        if self.used_bytes() > self.max_bytes:
            # Free a little below the budget at once, so that deletes are not done on every append, but
            # at most DROP_STEP_BYTES: a delete runs on the event loop (10,000 rows of 9 kB take ~0.4 s).
            # A store far over its budget shrinks by a step per append.
            below = self.max_bytes - int(min(self.max_bytes * 0.1, DROP_STEP_BYTES))
            target = min(self.used_bytes() - below, DROP_STEP_BYTES)
            cut = self._seq_freeing(target)
            if cut:
                dropped += self._drop_through(cut, "disk_budget")
        return dropped

    def _seq_freeing(self, target_bytes: int) -> int:
        freed = 0
        cut = 0
        for seq, size in self.db.execute("SELECT seq, length(payload) + 40 FROM batches ORDER BY seq"):
            freed += int(size)
            cut = int(seq)
            if freed >= target_bytes:
                break
        return cut

    def _drop_through(self, cut: int, reason: str) -> int:
        if self._holds:
            cut = min(cut, min(self._holds.values()) - 1)  # never under a write in progress
            if cut <= 0:
                return 0
        losses: dict[str, int] = {}
        with self._tx():
            for name, acked in self.db.execute("SELECT name, acked FROM consumers").fetchall():
                if acked >= cut:
                    continue
                lost = int(
                    self.db.execute(
                        "SELECT coalesce(sum(n),0) FROM batches WHERE seq > ? AND seq <= ?", (acked, cut)
                    ).fetchone()[0]
                )
                self.db.execute("UPDATE consumers SET acked=?, dropped=dropped+? WHERE name=?", (cut, lost, name))
                losses[name] = lost
            self.db.execute("DELETE FROM batches WHERE seq <= ?", (cut,))
            gone = [r[0] for r in self.db.execute("SELECT digest FROM layout_use WHERE last_seq <= ?", (cut,))]
            if gone:
                self.db.executemany("DELETE FROM layouts WHERE digest=?", [(d,) for d in gone])
                self.db.execute("DELETE FROM layout_use WHERE last_seq <= ?", (cut,))
        self._stored_layouts.difference_update(gone)
        self._forget_through(cut)
        for name, lost in losses.items():  # counted once the delete is committed
            if lost:
                self.dropped_total[name] = self.dropped_total.get(name, 0) + lost
                metrics.samples_dropped.labels(name, reason).inc(lost)
                log.warning("samples dropped", consumer=name, samples=lost, reason=reason, through_seq=cut)
        return sum(losses.values())
