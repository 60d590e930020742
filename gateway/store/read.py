"""Reading the outbox (part of `Outbox`, see gateway.store.outbox): the sinks' reads, with the decoded-row
cache every sink shares; export's and tail's queries; cursors and counts. A row that cannot be decoded
is skipped by every reader, counted, logged once and moved to the quarantine table (see
gateway.store.quarantine), or only skipped by the read-only tools (`quarantine_damaged` false).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import structlog
from prometheus_client import Counter

from gateway import metrics
from gateway.model import Batch, BatchKind
from gateway.store import codec, quarantine
from gateway.store.state import OutboxState

log = structlog.get_logger("outbox")

DECODED_HIT = Counter(
    "bms_gateway_outbox_read_cached_samples",
    "Samples sinks read from the decoded-row cache (another sink had decoded the row)",
    registry=metrics.REGISTRY,
)
DECODED_MISS = Counter(
    "bms_gateway_outbox_read_decoded_samples", "Samples sinks read that had to be decoded", registry=metrics.REGISTRY
)
@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    ts: int
    batch: Batch


class Backlog(NamedTuple):
    """What waits after a sequence number: rows, their samples, the creation time of the oldest (ns)."""

    rows: int
    samples: int
    oldest: int | None


@dataclass(frozen=True, slots=True)
class ConsumerState:
    name: str
    acked: int
    dropped: int
    pending_rows: int
    pending_samples: int


class Reading(OutboxState):
    """What `Outbox` reads."""

    def read(
        self, after: int, *, max_samples: int = 5000, max_rows: int = 1000, at_least_one: bool = True
    ) -> list[Row]:
        """Rows after sequence `after`, in order, up to `max_samples` samples (at least one row, unless
        `at_least_one` is false and the first row alone is larger). Damaged rows are skipped (quarantined)."""
        out: list[Row] = []
        total = 0
        cache = self._decoded
        hits = 0
        damaged: list[tuple[int, object, str]] = []
        more = True
        while more and not out:  # again only when every row read was damaged
            cur = self.db.execute(
                "SELECT seq, ts, n, payload FROM batches WHERE seq > ? ORDER BY seq LIMIT ?", (after, max_rows)
            )
            scanned = 0
            for seq, ts, n, payload in cur:
                scanned += 1
                after = seq
                if seq in self.damaged:
                    continue
                if type(n) is int and (out or not at_least_one) and total + n > max_samples:
                    more = False
                    break
                size = len(payload) if type(payload) is bytes else -1
                hit = cache.get(seq)
                if hit is not None and hit[0] == ts and hit[1] == n and hit[2] == size:
                    out.append(hit[3])
                    hits += n
                    total += n
                    continue
                row = self._row(seq, ts, n, payload)
                if isinstance(row, str):
                    damaged.append((seq, ts, row))
                    continue
                self._remember(row, n, size)
                out.append(row)
                total += n
            cur.close()
            more = more and scanned == max_rows
        for seq, ts, error in damaged:
            self._damaged(seq, ts, error)
        if hits:
            DECODED_HIT.inc(hits)
        if total > hits:
            DECODED_MISS.inc(total - hits)
        return out

    def _row(self, seq: int, ts: object, n: object, payload: object) -> Row | str:
        """The stored row as a Row, or what is wrong with it (a damaged row)."""
        try:
            if type(ts) is not int or type(n) is not int or type(payload) is not bytes:
                raise TypeError(f"a column has the wrong type (ts {type(ts).__name__}, n {type(n).__name__}, "
                                f"payload {type(payload).__name__})")  # fmt: skip
            batch = self._decode(payload)
        except (ValueError, KeyError, TypeError, IndexError) as exc:  # any damage to the bytes or the columns
            return f"{type(exc).__name__}: {exc}"
        return Row(seq, ts, batch)

    def _damaged(self, seq: int, ts: object, error: str) -> None:
        """A row that cannot be decoded: skipped by every reader from now on; in the daemon also counted,
        logged once and moved to the quarantine table (deferred while the disk is full)."""
        if seq in self.damaged:
            return
        self.damaged[seq] = error
        if not self.quarantine_damaged:
            return  # a read-only tool: it reports the rows it skipped itself
        quarantine.DAMAGED_ROWS.inc()
        log.error("damaged stored row skipped: moved to the quarantine table", seq=seq, ts=ts, error=error,
                  path=str(self.path))  # fmt: skip
        if self.waiting():
            self.deferred.quarantine[seq] = error
            return
        try:
            with self._tx():
                quarantine.move(self.db, seq, error)
        except (sqlite3.Error, OSError) as exc:
            if self._fault_of(exc) is None:
                raise
            self._failed(exc, "quarantine")
            self.deferred.quarantine[seq] = error

    def quarantined(self, limit: int | None = None) -> list[quarantine.QuarantinedRow]:
        return quarantine.select(self.db, limit)

    def _decode(self, payload: bytes) -> Batch:
        """A stored payload of any format (see gateway.store.codec) as a batch."""
        return codec.decode(payload, self._key_table)

    def _key_table(self, digest: str) -> codec.KeyTable:
        return codec.KEY_TABLES.get(digest, self._key_body)

    def _key_body(self, digest: str) -> str | None:
        found = self.db.execute("SELECT body FROM layouts WHERE digest=?", (digest,)).fetchone()
        return None if found is None else str(found[0])

    def _remember(self, row: Row, n: int, size: int) -> None:
        cache = self._decoded
        old = cache.pop(row.seq, None)
        if old is not None:
            self._decoded_samples -= old[1]
        if n > self.decoded_max_samples:
            return
        while cache and self._decoded_samples + n > self.decoded_max_samples:
            first = next(iter(cache))
            self._decoded_samples -= cache.pop(first)[1]
        cache[row.seq] = (row.ts, n, size, row)
        self._decoded_samples += n

    def _forget_through(self, cut: int) -> None:
        """Decoded rows up to `cut` (dropped from the store) leave the cache."""
        cache = self._decoded
        for seq in [seq for seq in cache if seq <= cut]:
            self._decoded_samples -= cache.pop(seq)[1]

    def query(self, since_ns: int = 0, until_ns: int | None = None, after_seq: int = 0) -> Iterator[Row]:
        """Stored rows by time (batch creation time), oldest first; for export and tail."""
        until = until_ns if until_ns is not None else 2**63 - 1
        cur = self.db.execute(
            "SELECT seq, ts, n, payload FROM batches WHERE ts >= ? AND ts <= ? AND seq > ? ORDER BY seq",
            (since_ns, until, after_seq),
        )
        damaged: list[tuple[int, object, str]] = []
        try:
            for seq, ts, n, payload in cur:
                if seq in self.damaged:
                    continue
                row = self._row(seq, ts, n, payload)
                if isinstance(row, str):
                    damaged.append((seq, ts, row))
                    continue
                yield row
        finally:
            cur.close()
            for seq, ts, error in damaged:
                self._damaged(seq, ts, error)

    def acked(self, consumer: str) -> int:
        row = self.db.execute("SELECT acked FROM consumers WHERE name=?", (consumer,)).fetchone()
        if row is None:
            if consumer not in self.deferred.consumers:
                raise KeyError(consumer)
            row = (0 if self.deferred.consumers[consumer] else self.last_seq(),)
        return max(int(row[0]), self.deferred.acks.get(consumer, 0))

    def last_seq(self) -> int:
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name='batches'").fetchone()
        return 0 if row is None else int(row[0])

    def first_seq(self) -> int:
        row = self.db.execute("SELECT min(seq) FROM batches").fetchone()
        return 0 if row[0] is None else int(row[0])

    def pending(self, after: int) -> Backlog:
        """What waits after sequence `after`."""
        rows, samples, oldest = self.db.execute(
            "SELECT count(*), coalesce(sum(n), 0), min(ts) FROM batches WHERE seq > ?", (after,)
        ).fetchone()
        return Backlog(int(rows), int(samples), None if oldest is None else int(oldest))

    def consumers(self) -> list[ConsumerState]:
        out = []
        for name, acked, dropped in self.db.execute("SELECT name, acked, dropped FROM consumers ORDER BY name"):
            rows, samples = self.db.execute(
                "SELECT count(*), coalesce(sum(n), 0) FROM batches WHERE seq > ?", (acked,)
            ).fetchone()
            out.append(ConsumerState(name, int(acked), int(dropped), int(rows), int(samples)))
        return out

    def stored_samples(self, kind: BatchKind | None = BatchKind.SAMPLES) -> int:
        if kind is None:
            return int(self.db.execute("SELECT coalesce(sum(n),0) FROM batches").fetchone()[0])
        return int(self.db.execute("SELECT coalesce(sum(n),0) FROM batches WHERE kind=?", (str(kind),)).fetchone()[0])

    def used_bytes(self) -> int:
        pages = int(self.db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self.db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * self.page_size
