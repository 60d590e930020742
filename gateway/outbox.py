"""The outbox: the one place where data becomes durable (SQLite in WAL mode).

Every batch is appended once, encoded, and committed before any sink sees it. Each consumer (sink)
has a cursor: the highest sequence number it has acknowledged. Rows stay as local history until the
disk budget (`max_bytes`) or the retention age needs their space; then the oldest go, and every
sample a consumer had not yet acknowledged is counted as dropped for that consumer (a metric and a
log line). Nothing else in the gateway drops data.

Durability: with `synchronous=NORMAL` in WAL mode a committed batch survives a crash of the process
(`kill -9`); with `synchronous=FULL` it also survives a power loss. What was appended but not yet
committed (at most one commit interval) is what a crash can lose.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog
from prometheus_client import Counter

from gateway import deadletters, metrics, outboxcodec
from gateway.deadletters import DeadLetter
from gateway.gatewayalarm import gateway_alarm
from gateway.model import Batch, BatchKind, Layout
from gateway.outboxcodec import (
    compact_digest,
    decode,
    decode_compact,
    encode,
    encode_compact,
    is_json,
    layout_body,
    layout_from_body,
    load_compact,
)
from gateway.outboxrepair import RepairReport, needs_repair, repair
from gateway.walcheckpoint import WalCheckpointer

__all__ = ["ConsumerState", "Outbox", "Row", "decode", "encode"]

log = structlog.get_logger("outbox")

DECODED_HIT = Counter(
    "bms_gateway_outbox_read_cached_samples",
    "Samples sinks read from the decoded-row cache (another sink had decoded the row)",
    registry=metrics.REGISTRY,
)
DECODED_MISS = Counter(
    "bms_gateway_outbox_read_decoded_samples", "Samples sinks read that had to be decoded", registry=metrics.REGISTRY
)
DROP_STEP_BYTES = 4_000_000  # most the disk budget frees at once (about 400 compact rows, ~15 ms)

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    n INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_ts ON batches(ts);
CREATE TABLE IF NOT EXISTS consumers(
    name TEXT PRIMARY KEY,
    acked INTEGER NOT NULL,
    dropped INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS layouts(digest TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS layout_use(digest TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
"""
# `layouts`: the shapes compact rows refer to (see gateway.outboxcodec), each kept while a row uses it.
# `layout_use.last_seq` is at least the seq of every row stored with the layout (updated by every
# commit that uses it: a small row apart from the body, which is written once), so dropping rows
# through a seq may drop the layouts whose last_seq is not above it.


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    ts: int
    batch: Batch


@dataclass(frozen=True, slots=True)
class ConsumerState:
    name: str
    acked: int
    dropped: int
    pending_rows: int
    pending_samples: int


class Outbox:
    """SQLite outbox. Used from one thread (the event loop); every call is short."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 1_000_000_000,
        retention_hours: float | None = None,
        synchronous: str = "normal",
        consumers: Iterable[str] = (),
        check: bool = True,
        max_dead_letters: int = 100_000,
    ) -> None:
        """`check`: detect a damaged or truncated file and repair it (the damaged file is set aside)."""
        self.path = path
        self.max_bytes = max_bytes
        self.max_dead_letters = max_dead_letters
        self.retention_ns = None if retention_hours is None else int(retention_hours * 3600e9)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.repair_report: RepairReport | None = None
        if check:
            why = needs_repair(path)
            if why:
                self.repair_report = repair(path, SCHEMA + deadletters.SCHEMA, why)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
        self.db.executescript(SCHEMA + deadletters.SCHEMA)
        self.synchronous = synchronous
        self.checkpointer: WalCheckpointer | None = None
        self.page_size = int(self.db.execute("PRAGMA page_size").fetchone()[0])
        self._stored_layouts: set[str] = {r[0] for r in self.db.execute("SELECT digest FROM layouts")}
        self.appended_samples = 0
        self.dropped_total: dict[str, int] = {}
        self._in_tx = False
        # Rows a consumer is writing right now (its first in-flight seq): the budget never drops them
        # under a write in progress, so "dropped" and "delivered" never count the same sample.
        self._holds: dict[str, int] = {}
        self.disk_full = False
        self.disk_full_clear_after = 60.0  # seconds without a disk-full error before the alarm returns to normal
        self._last_full = 0.0
        # Decoded rows by seq, shared by every consumer's reads (each sink reads the same rows):
        # seq → (ts, n, payload size, row). Bounded by samples (about 150 bytes a sample held): a
        # third of a second of a 100-rack site at 100,000 samples/s, which covers two sinks that keep
        # up with it (the MQTT sink reads up to 20,000 samples at once). A miss costs a decode, about
        # 0.2 µs a sample for compact rows (several µs for JSON rows). Rows dropped from the store
        # leave it.
        self.decoded_max_samples = 30_000
        self._decoded: dict[int, tuple[int, int, int, Row]] = {}
        self._decoded_samples = 0
        for name in consumers:
            self.add_consumer(name)

    # -- writing -------------------------------------------------------------------------------

    def append(self, batches: Iterable[Batch]) -> int:
        """Append batches in one transaction (a group commit); return the last sequence number."""
        layouts: dict[str, Layout] = {}
        rows = [(b.created, str(b.kind), b.source, len(b), self._encode(b, layouts)) for b in batches]
        if not rows:
            return self.last_seq()
        try:
            last = self._insert(rows, layouts)
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            # The disk (or the file system quota) is full: an alarm, room made by dropping the oldest
            # rows (counted), one more try; if it is still full the batches are counted as dropped.
            # Never a crash loop.
            self._last_full = time.monotonic()
            self.enforce_budget(force_fraction=0.2)
            self._set_disk_full(True)
            try:
                last = self._insert(rows, layouts)
            except sqlite3.OperationalError as exc2:
                if not _is_full(exc2):
                    raise
                self._count_unstored(sum(r[3] for r in rows))
                return self.last_seq()
        else:
            if self.disk_full and time.monotonic() - self._last_full >= self.disk_full_clear_after:
                self._set_disk_full(False)
        self.appended_samples += sum(r[3] for r in rows)
        self.enforce_budget()
        return last

    def _encode(self, batch: Batch, layouts: dict[str, Layout]) -> bytes:
        """The batch's payload: compact when it fits its layout (noted in `layouts`), else JSON."""
        if batch.layout is not None:
            entry = outboxcodec.LAYOUTS.for_layout(batch.layout)
            if entry is not None:
                payload = encode_compact(batch, entry)
                if payload is not None:
                    layouts[entry.layout.digest] = entry.layout
                    return payload
        return encode(batch)

    def _insert(self, rows: list[tuple[int, str, str, int, bytes]], layouts: dict[str, Layout] | None = None) -> int:
        """Insert rows and the layouts their compact payloads use, in one transaction."""
        layouts = layouts or {}
        new = [d for d in layouts if d not in self._stored_layouts]
        with self._tx():
            if new:
                self.db.executemany(
                    "INSERT OR IGNORE INTO layouts(digest, body) VALUES (?, ?)",
                    [(d, layout_body(layouts[d])) for d in new],
                )
            self.db.executemany("INSERT INTO batches(ts, kind, source, n, payload) VALUES (?,?,?,?,?)", rows)
            last = int(self.db.execute("SELECT seq FROM sqlite_sequence WHERE name='batches'").fetchone()[0])
            if layouts:
                self.db.executemany(
                    "INSERT INTO layout_use(digest, last_seq) VALUES (?, ?)"
                    " ON CONFLICT(digest) DO UPDATE SET last_seq=max(last_seq, excluded.last_seq)",
                    [(d, last) for d in layouts],
                )
        self._stored_layouts.update(new)
        return last

    def _set_disk_full(self, full: bool) -> None:
        """Enter or leave the disk-full state: metric, log line and a gateway alarm event (rack `gateway`)."""
        if full == self.disk_full:
            return
        self.disk_full = full
        metrics.store_disk_full.set(1 if full else 0)
        if full:
            log.error("disk full: the oldest rows make room (counted); new batches dropped if none is left",
                      path=str(self.path))  # fmt: skip
        else:
            log.info("disk has room again: storing resumed", path=str(self.path))
        message = f"the store's disk is {'full' if full else 'no longer full'} ({self.path})"
        alarm = gateway_alarm("store_disk_full", full, message, "store")
        try:
            self._insert([(alarm.created, str(alarm.kind), alarm.source, len(alarm), encode(alarm))])
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            log.error("disk full: the alarm itself could not be stored")

    def _count_unstored(self, samples: int) -> None:
        names = [r[0] for r in self.db.execute("SELECT name FROM consumers").fetchall()] or ["store"]
        for name in names:
            self.dropped_total[name] = self.dropped_total.get(name, 0) + samples
            metrics.samples_dropped.labels(name, "disk_full").inc(samples)
        log.error("disk full: batches could not be stored", samples=samples, path=str(self.path))

    def add_consumer(self, name: str, *, from_start: bool = False) -> None:
        """Register a consumer; a new one starts at the current end (or the oldest row)."""
        start = 0 if from_start else self.last_seq()
        self.db.execute("INSERT OR IGNORE INTO consumers(name, acked) VALUES (?, ?)", (name, start))
        dropped = self.db.execute("SELECT dropped FROM consumers WHERE name=?", (name,)).fetchone()[0]
        self.dropped_total[name] = int(dropped)

    def remove_consumer(self, name: str) -> bool:
        """Forget a consumer (a sink removed from the configuration): its drops are no longer counted."""
        n = self.db.execute("DELETE FROM consumers WHERE name=?", (name,)).rowcount
        self.dropped_total.pop(name, None)
        return n > 0

    def ack(self, consumer: str, seq: int) -> None:
        """Record that `consumer` has delivered every row up to and including `seq`."""
        self.db.execute("UPDATE consumers SET acked=max(acked, ?) WHERE name=?", (seq, consumer))

    def hold(self, consumer: str, first_seq: int) -> None:
        """`consumer` is writing rows from `first_seq` on: the budget must not drop them meanwhile."""
        self._holds[consumer] = first_seq

    def release(self, consumer: str) -> None:
        self._holds.pop(consumer, None)

    # -- reading -------------------------------------------------------------------------------

    def acked(self, consumer: str) -> int:
        row = self.db.execute("SELECT acked FROM consumers WHERE name=?", (consumer,)).fetchone()
        if row is None:
            raise KeyError(consumer)
        return int(row[0])

    def read(
        self, after: int, *, max_samples: int = 5000, max_rows: int = 1000, at_least_one: bool = True
    ) -> list[Row]:
        """Rows after sequence `after`, in order, up to `max_samples` samples (at least one row, unless
        `at_least_one` is false and the first row alone is larger)."""
        out: list[Row] = []
        total = 0
        cur = self.db.execute(
            "SELECT seq, ts, n, payload FROM batches WHERE seq > ? ORDER BY seq LIMIT ?", (after, max_rows)
        )
        cache = self._decoded
        hits = 0
        for seq, ts, n, payload in cur:
            if (out or not at_least_one) and total + n > max_samples:
                break
            hit = cache.get(seq)
            if hit is not None and hit[0] == ts and hit[1] == n and hit[2] == len(payload):
                out.append(hit[3])
                hits += n
            else:
                row = Row(seq, ts, self._decode(payload))
                self._remember(row, n, len(payload))
                out.append(row)
            total += n
        cur.close()
        if hits:
            DECODED_HIT.inc(hits)
        if total > hits:
            DECODED_MISS.inc(total - hits)
        return out

    def _decode(self, payload: bytes) -> Batch:
        """A stored payload of either format (see gateway.outboxcodec) as a batch."""
        if is_json(payload):
            return decode(payload)
        doc = load_compact(payload)
        digest = compact_digest(doc)
        layouts = outboxcodec.LAYOUTS
        entry = layouts.get(digest)
        if entry is None:
            found = self.db.execute("SELECT body FROM layouts WHERE digest=?", (digest,)).fetchone()
            if found is None:
                raise ValueError(f"outbox row refers to layout {digest}, which the store does not hold")
            entry = layouts.add(digest, layout_from_body(found[0]))
        return decode_compact(doc, entry)

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

    def last_seq(self) -> int:
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name='batches'").fetchone()
        return 0 if row is None else int(row[0])

    def first_seq(self) -> int:
        row = self.db.execute("SELECT min(seq) FROM batches").fetchone()
        return 0 if row[0] is None else int(row[0])

    def pending(self, after: int) -> tuple[int, int, int | None]:
        """(rows, samples, creation time of the oldest row) after sequence `after`."""
        rows, samples, oldest = self.db.execute(
            "SELECT count(*), coalesce(sum(n), 0), min(ts) FROM batches WHERE seq > ?", (after,)
        ).fetchone()
        return int(rows), int(samples), None if oldest is None else int(oldest)

    def consumers(self) -> list[ConsumerState]:
        out = []
        for name, acked, dropped in self.db.execute("SELECT name, acked, dropped FROM consumers ORDER BY name"):
            rows, samples = self.db.execute(
                "SELECT count(*), coalesce(sum(n), 0) FROM batches WHERE seq > ?", (acked,)
            ).fetchone()
            out.append(ConsumerState(name, int(acked), int(dropped), int(rows), int(samples)))
        return out

    def query(self, since_ns: int = 0, until_ns: int | None = None, after_seq: int = 0) -> Iterator[Row]:
        """Stored rows by time (batch creation time), oldest first; for export and tail."""
        until = until_ns if until_ns is not None else 2**63 - 1
        cur = self.db.execute(
            "SELECT seq, ts, payload FROM batches WHERE ts >= ? AND ts <= ? AND seq > ? ORDER BY seq",
            (since_ns, until, after_seq),
        )
        for seq, ts, payload in cur:
            yield Row(seq, ts, self._decode(payload))

    def stored_samples(self, kind: BatchKind | None = BatchKind.SAMPLES) -> int:
        if kind is None:
            return int(self.db.execute("SELECT coalesce(sum(n),0) FROM batches").fetchone()[0])
        return int(self.db.execute("SELECT coalesce(sum(n),0) FROM batches WHERE kind=?", (str(kind),)).fetchone()[0])

    def used_bytes(self) -> int:
        pages = int(self.db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self.db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * self.page_size

    # -- retention -----------------------------------------------------------------------------

    def enforce_budget(self, force_fraction: float = 0.0) -> int:
        """Drop the oldest rows past the disk budget or the retention age; return samples dropped.

        `force_fraction` frees that share of the stored rows even within budget (disk full)."""
        dropped = 0
        if force_fraction > 0:
            total = int(self.db.execute("SELECT coalesce(sum(length(payload) + 40), 0) FROM batches").fetchone()[0])
            cut = self._seq_freeing(int(total * force_fraction))
            if cut:
                dropped += self._drop_through(cut, "disk_full")
        if self.retention_ns is not None:
            cutoff = time.time_ns() - self.retention_ns
            row = self.db.execute("SELECT max(seq) FROM batches WHERE ts < ?", (cutoff,)).fetchone()
            if row[0] is not None:
                dropped += self._drop_through(int(row[0]), "retention")
        if self.used_bytes() > self.max_bytes:
            # Free a little below the budget at once, so that deletes are not done on every append, but
            # at most DROP_STEP_BYTES: a delete runs on the event loop (10,000 rows of 9 kB take ~0.4 s).
            # A store far over its budget shrinks by a step per append.
            target = self.used_bytes() - int(self.max_bytes - min(self.max_bytes * 0.1, DROP_STEP_BYTES))
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
        total = 0
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
                if lost:
                    self.dropped_total[name] = self.dropped_total.get(name, 0) + lost
                    metrics.samples_dropped.labels(name, reason).inc(lost)
                    log.warning("samples dropped", consumer=name, samples=lost, reason=reason, through_seq=cut)
                total += lost
            self.db.execute("DELETE FROM batches WHERE seq <= ?", (cut,))
            gone = [r[0] for r in self.db.execute("SELECT digest FROM layout_use WHERE last_seq <= ?", (cut,))]
            if gone:
                self.db.executemany("DELETE FROM layouts WHERE digest=?", [(d,) for d in gone])
                self.db.execute("DELETE FROM layout_use WHERE last_seq <= ?", (cut,))
        self._stored_layouts.difference_update(gone)
        self._forget_through(cut)
        return total

    # -- dead letters --------------------------------------------------------------------------

    def add_dead_letters(self, consumer: str, seq: int, status: int, reason: str, items: Iterable[str]) -> int:
        with self._tx():
            return deadletters.add(self.db, consumer, seq, status, reason, items, self.max_dead_letters)

    def dead_letters(self, consumer: str | None = None, limit: int | None = None) -> list[DeadLetter]:
        return deadletters.select(self.db, consumer, limit)

    def remove_dead_letters(self, ids: Iterable[int]) -> int:
        with self._tx():
            return deadletters.remove(self.db, ids)

    # -- misc ----------------------------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def checkpoint_in_thread(self, interval: float = 1.0) -> None:
        """Run WAL checkpoints in a thread of their own from now on, never in a commit of this
        connection (the daemon's event loop); see gateway.walcheckpoint. Stopped by `close()`."""
        if self.checkpointer is None:
            self.db.execute("PRAGMA wal_autocheckpoint=0")
            self.checkpointer = WalCheckpointer(self.path, synchronous=self.synchronous, interval=interval)
            self.checkpointer.start()

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        try:
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            self.db.close()

    class _Tx:
        def __init__(self, outbox: Outbox) -> None:
            self.outbox = outbox

        def __enter__(self) -> None:
            if not self.outbox._in_tx:
                self.outbox.db.execute("BEGIN IMMEDIATE")
                self.outbox._in_tx = True
                self.owner = True
            else:
                self.owner = False

        def __exit__(self, exc_type: object, *_: object) -> None:
            if not self.owner:
                return
            self.outbox._in_tx = False
            if not exc_type:
                self.outbox.db.execute("COMMIT")
            elif self.outbox.db.in_transaction:  # SQLite already rolled back after some errors (disk full)
                self.outbox.db.execute("ROLLBACK")

    def _tx(self) -> Outbox._Tx:
        return Outbox._Tx(self)


def _is_full(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc)
