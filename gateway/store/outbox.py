"""The outbox: the one place where data becomes durable (SQLite in WAL mode).

Every batch is appended once, encoded, and committed before any sink sees it. Each consumer (sink)
has a cursor: the highest sequence number it has acknowledged. Rows stay as local history until the
disk budget (`max_bytes`) or the retention age needs their space; then the oldest go, and every
sample a consumer had not yet acknowledged is counted as dropped for that consumer (a metric and a
log line). Nothing else in the gateway drops data.

Durability: with `synchronous=NORMAL` in WAL mode a committed batch survives a crash of the process
(`kill -9`); with `synchronous=FULL` it also survives a power loss. What was appended but not yet
committed (at most one commit interval) is what a crash can lose.

Faults of the disk (full, an I/O error) never end the gateway: a write that fails is kept in memory
(see gateway.store.diskfault) and retried, the gateway alarm `store_disk_full` is raised, and stored rows
are never deleted to make room (the budget is what keeps the store within the disk). A file that
cannot even be opened is replaced by an empty stand-in in memory until a retry opens it. Another
process's lock is waited for at start-up (gateway.store.lockwait) and lived with the same way while the
daemon runs (gateway.store.lockfault: its own alarm `store_locked`). A row that cannot be decoded is
quarantined (see gateway.store.quarantine) and skipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

import structlog

from gateway import metrics
from gateway.alarms.gatewayalarm import STORE_DISK_FULL, GatewayAlarms
from gateway.model import Batch, Keys
from gateway.store import codec, lockwait
from gateway.store.budget import Budget
from gateway.store.codec import encode, keys_body
from gateway.store.cursors import Cursors
from gateway.store.diskfault import Deferred, UnstoredRows, fault_kind
from gateway.store.faults import RETRY_INTERVAL, DiskFaults
from gateway.store.lockfault import LockFaults
from gateway.store.read import DECODED_HIT, DECODED_MISS, ConsumerState, Reading, Row
from gateway.store.repair import OPEN_MARK, RepairReport
from gateway.store.schema import SCHEMA, STORE_SCHEMA
from gateway.store.walcheckpoint import WalCheckpointer

__all__ = [
    "DECODED_HIT",
    "DECODED_MISS",
    "SCHEMA",
    "STORE_SCHEMA",
    "ConsumerState",
    "Outbox",
    "Row",
    "encode",
]

log = structlog.get_logger("outbox")


class Outbox(Reading, DiskFaults, LockFaults, Cursors, Budget):
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
        memory_buffer_samples: int = 500_000,
        site: str | None = None,
        alarms: GatewayAlarms | None = None,
        mark_open: bool = False,
        readonly: bool = False,
    ) -> None:
        """`check`: detect a damaged or truncated file and repair it (the damaged file is set aside).
        `memory_buffer_samples`: samples kept in memory while the disk is full (the oldest go past it).
        `site`: the site the gateway writes for, kept in the store's meta (export tags samples with it).
        `mark_open`: the store's writer (the daemon) marks it open until `close`, so that a start after a
        crash checks the whole file (see gateway.store.repair.needs_repair); once set up, its statements
        wait for another process's lock only briefly (`LIVE_BUSY_TIMEOUT`, see gateway.store.lockfault).
        `readonly`: a reading tool's look (`tail`, `export`): the file is opened read-only, never checked,
        switched or written, so it never holds up the daemon's set-up; damaged rows are only skipped.

        A lock another process holds on the file is waited for (see gateway.store.lockwait)."""
        self.path = path
        self.readonly = readonly
        self._opening = "open"  # the step of the set-up in progress (named when a lock holds it up)
        self.mark_open = mark_open
        self.alarms = alarms if alarms is not None else GatewayAlarms()  # reports the disk-full alarm
        self.max_bytes = max_bytes
        self.max_dead_letters = max_dead_letters
        self.retention_ns = None if retention_hours is None else int(retention_hours * 3600e9)
        self.synchronous = synchronous
        self.checkpointer: WalCheckpointer | None = None
        self._check = check
        self.repair_report: RepairReport | None = None
        self.disk_full = False
        self.disk_full_clear_after = 60.0  # seconds without a disk-full error before the alarm returns to normal
        self._last_full = 0.0
        # What a fault of the disk kept from being written (see gateway.store.diskfault), and its state.
        self.unstored = UnstoredRows(memory_buffer_samples)
        self.deferred = Deferred()
        self.fault = ""  # why the store cannot be written right now ("": it can)
        self.retry_interval = RETRY_INTERVAL
        self._retry_at = 0.0
        self._schema_pending = False  # tables still to create (the disk was full when the file opened)
        self._setting_up = True  # a lock met meanwhile is waited for (gateway.store.lockwait), not kept
        self.locked = False  # another process's lock refuses writes now (gateway.store.lockfault)
        self._lock_announced = False
        self._locked_since = 0.0
        self._busy_timeout = lockwait.BUSY_TIMEOUT
        self._fault_dropped = 0  # samples dropped from memory in the current fault (for its log lines)
        # Rows found damaged (seq -> error): every reader skips them; moved to `quarantine` when the
        # store can be written (`quarantine_damaged`; the read-only tools only skip them).
        self.damaged: dict[int, str] = {}
        self.quarantine_damaged = not readonly
        self._in_tx = False
        self.opened = False
        self._open_error: BaseException | None = None  # why the file did not open (or only partly)
        self.db = self._open_or_stand_in()
        self.page_size = int(self.db.execute("PRAGMA page_size").fetchone()[0])
        layouts = () if readonly else self.db.execute("SELECT digest FROM layouts")  # (only a writer needs them)
        self._stored_layouts: set[str] = {r[0] for r in layouts}
        self.appended_samples = 0
        self.dropped_total: dict[str, int] = {}
        # Rows a consumer is writing right now (its first in-flight seq): the budget never drops them
        # under a write in progress, so "dropped" and "delivered" never count the same sample.
        self._holds: dict[str, int] = {}
        # Decoded rows by seq, shared by every consumer's reads (each sink reads the same rows):
        # seq → (ts, n, payload size, row). Bounded by samples (about 20 bytes a sample held: the
        # row's bytes the columns view, the key table is shared): a second of a 100-rack site at
        # 100,000 samples/s, which covers two sinks that keep up with it (the MQTT sink reads up to
        # 20,000 samples at once). Rows dropped from the store leave it.
        self.decoded_max_samples = 100_000
        self._decoded: dict[int, tuple[int, int, int, Row]] = {}
        self._decoded_samples = 0
        if self._open_error is not None:
            self._failed(self._open_error, "open")
        names = list(consumers)
        if names or site is not None or mark_open:
            lockwait.wait_unlocked(lambda: self._first_writes(names, site), path, "first writes")
        self._setting_up = False
        if mark_open and not readonly:
            self._busy_timeout = lockwait.LIVE_BUSY_TIMEOUT
            lockwait.busy_timeout(self.db, self._busy_timeout)

    def _first_writes(self, consumers: list[str], site: str | None) -> None:
        """The consumers, the site and the open mark (each idempotent: tried again while the file is locked)."""
        for name in consumers:
            self.add_consumer(name)
        if site is not None and self.get_meta("site") != site:
            self.set_meta("site", site)
        if self.mark_open:
            self.set_meta(OPEN_MARK, "open")

    # -- writing -------------------------------------------------------------------------------

    def append(self, batches: Iterable[Batch]) -> int:
        """Append batches in one transaction (a group commit); return the last sequence number.

        While the store cannot be written (a full disk) the batches wait in memory, in order, and are
        stored by a later append or `retry` once it can; the last stored sequence number is returned."""
        layouts: dict[str, Keys] = {}
        rows = [(b.created, str(b.kind), b.source, len(b), self._encode(b, layouts)) for b in batches]
        if not rows:
            return self.last_seq()
        if self.waiting():
            self._keep(rows, layouts)
            self.retry()
            return self.last_seq()
        try:
            last = self._insert(rows, layouts)
        except (sqlite3.Error, OSError) as exc:
            if self._fault_of(exc) is None:
                raise
            self._failed(exc, "append")
            self._keep(rows, layouts)
            return self.last_seq()
        self.appended_samples += sum(r[3] for r in rows)
        self._quiet_since_full()
        if self.alarms.restored:
            self._unlocked_after_restart()
        self.enforce_budget()
        return last

    def _encode(self, batch: Batch, layouts: dict[str, Keys]) -> bytes:
        """The batch's payload (see gateway.store.codec); its key table noted in `layouts`."""
        if batch.n:
            layouts[batch.keys.digest] = batch.keys
        return encode(batch)

    def _insert(self, rows: list[tuple[int, str, str, int, bytes]], layouts: dict[str, Keys] | None = None) -> int:
        """Insert rows and the key tables their payloads use (see gateway.store.schema), in one transaction."""
        layouts = layouts or {}
        new = [d for d in layouts if d not in self._stored_layouts]
        with self._tx():
            if new:
                self.db.executemany(
                    "INSERT OR IGNORE INTO layouts(digest, body) VALUES (?, ?)",
                    [(d, keys_body(layouts[d])) for d in new],
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
        for digest in new:
            codec.KEY_TABLES.remember(layouts[digest])
        return last

    def _set_disk_full(self, full: bool) -> None:
        """Enter or leave the disk-full state: metric, log line and the gateway alarm `gateway:store_disk_full`.

        The alarm is reported to `self.alarms`: the alarm engine takes it from there (nothing is written
        here, so the report never depends on the failing disk). With no alarm engine its event row is
        stored as before, if the disk takes it."""
        if full == self.disk_full:
            return
        self.disk_full = full
        metrics.store_disk_full.set(1 if full else 0)
        if full:
            log.error("disk full: gateway alarm raised; new batches wait in memory (bounded, oldest dropped first)",
                      path=str(self.path))  # fmt: skip
        else:
            log.info("disk has room again: storing resumed", path=str(self.path))
        message = f"the store's disk is {'full' if full else 'no longer full'} ({self.path})"
        self.alarms.set(STORE_DISK_FULL, full, message)
        for alarm in self.alarms.take_events():
            try:
                self._insert([(alarm.created, str(alarm.kind), alarm.source, len(alarm), encode(alarm))])
            except (sqlite3.Error, OSError) as exc:
                log.error("the gateway alarm event could not be stored", error=str(exc), path=str(self.path))

    def checkpoint_in_thread(self, interval: float = 1.0) -> None:
        """Run WAL checkpoints in a thread of their own from now on, never in a commit of this
        connection (the daemon's event loop); see gateway.store.walcheckpoint. Stopped by `close()`."""
        if self.checkpointer is None:
            self.db.execute("PRAGMA wal_autocheckpoint=0")
            self.checkpointer = WalCheckpointer(self.path, synchronous=self.synchronous, interval=interval)
            self.checkpointer.start()

    def close(self) -> None:
        """Store what waits in memory if the disk has room now (what it cannot hold is counted as
        dropped), checkpoint, close."""
        if self.readonly:
            self.db.close()
            return
        if self.checkpointer is not None:
            self.checkpointer.stop()
        try:
            if self.locked:
                lockwait.busy_timeout(self.db, lockwait.BUSY_TIMEOUT)  # a last wait for the lock
            if self.waiting() and not self.retry(force=True):
                lost = self.unstored.clear()
                if lost:
                    self._count_unstored(lost)
                log.error("store closed while it cannot be written: what waited in memory is lost (counted)",
                          samples=lost, path=str(self.path), fault=self.fault)  # fmt: skip
            if self.mark_open and self.opened:
                self.set_meta(OPEN_MARK, "closed")  # (lost with a disk still full: the next start checks all)
            with suppress(sqlite3.Error):
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
            db = self.outbox.db
            try:
                if not exc_type:
                    db.execute("COMMIT")
                    return
            except sqlite3.Error:
                if db.in_transaction:  # a COMMIT that failed (disk full) leaves the transaction to end
                    with suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
            if db.in_transaction:  # SQLite already rolled back after some errors (disk full)
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")

    def _tx(self) -> Outbox._Tx:
        return Outbox._Tx(self)


def _is_full(exc: sqlite3.OperationalError) -> bool:
    """A fault of the disk (full, an I/O error): the write is kept and retried, never a crash."""
    return fault_kind(exc) is not None
