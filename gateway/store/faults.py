"""The outbox on a disk that fails (part of `Outbox`, see gateway.store.outbox): opening, and what happens to a
write that cannot be done (for a fault of the disk, or for another process's lock: gateway.store.lockfault).

A fault of the disk (full, an I/O error, see gateway.store.diskfault) on any write is caught: batches wait
in memory (`store.memory_buffer_samples`, the oldest dropped first and counted, reason `disk_full`),
small writes wait as their latest value, one log line marks the start and one the end, and the gateway
alarm `store_disk_full` is raised. `retry` (from the next append or the idle sinks' budget check, at
most every second) writes them in order once the disk takes them. Committed rows are never deleted to
make room. A file that cannot even be opened (no room for its WAL index) is replaced by an empty,
read-only stand-in in memory until a retry opens it; a table new in this version that cannot be
created waits the same way.
"""

from __future__ import annotations

import sqlite3
import time

import structlog

from gateway import metrics
from gateway.model import Keys
from gateway.store import deadletters, quarantine
from gateway.store.diskfault import LOCKED, Deferred, UnstoredRow, fault_kind, store_fault
from gateway.store.lockwait import busy_timeout, connect, wait_unlocked
from gateway.store.ownerfiles import create_owner_only
from gateway.store.repair import needs_repair, repair
from gateway.store.schema import CORE_TABLES, STORE_SCHEMA
from gateway.store.state import OutboxState

log = structlog.get_logger("outbox")

RETRY_INTERVAL = 1.0  # seconds between tries to write what a full disk kept in memory
FLUSH_SAMPLES = 5000  # samples of unstored rows written back in one transaction (a few ms)
FLUSH_STEPS = 20  # transactions of unstored rows a call writes at most (the event loop waits meanwhile)


class DiskFaults(OutboxState):
    """How `Outbox` opens its file and lives with a disk that fails."""

    def _open_file(self) -> sqlite3.Connection:
        """The store file, checked (and repaired when damaged), in WAL mode, with its tables; read-only
        (none of that) for a reading tool. A lock another process holds raises (see gateway.store.lockwait)."""
        if self.readonly:
            return connect(self.path, readonly=True)
        create_owner_only(self.path)  # 0600 (its -wal and -shm follow), in a 0700 directory when made here
        if self._check:
            self._opening = "damage check"
            why = needs_repair(self.path, after_crash=self.mark_open)
            if why:
                self._opening = "repair"
                self.repair_report = repair(self.path, STORE_SCHEMA, why)
        db = connect(self.path)
        try:
            self._opening = "switch to WAL mode"
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self.synchronous == 'full' else 'NORMAL'}")
            self._opening = "tables"
            try:
                db.executescript(STORE_SCHEMA)
            except sqlite3.Error as exc:
                tables = {str(r[0]) for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if fault_kind(exc) is None or not CORE_TABLES <= tables:
                    raise
                self._schema_pending = True  # a table new in this version: made once the disk has room
                self._open_error = exc
        except BaseException:
            db.close()
            raise
        return db

    def _open_or_stand_in(self) -> sqlite3.Connection:
        """The store file; when a fault of the disk keeps it from opening, an empty read-only stand-in
        in memory (every write waits in memory) until a `retry` opens the file."""
        self._open_error = None
        try:
            db = wait_unlocked(self._open_file, self.path, lambda: self._opening)
        except (sqlite3.Error, OSError) as exc:
            if fault_kind(exc) is None or self.readonly:
                raise
            self._open_error = exc
            db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            db.executescript(STORE_SCHEMA)
            db.execute("PRAGMA query_only=1")
            return db
        self.opened = True
        return db

    def _reopen(self) -> None:
        """The file opens now: it replaces the stand-in."""
        db = self._open_file()
        self.db.close()
        self.db = db
        self.opened = True
        busy_timeout(db, self._busy_timeout)
        if self.checkpointer is not None:
            db.execute("PRAGMA wal_autocheckpoint=0")
        self.page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        self._stored_layouts = {r[0] for r in db.execute("SELECT digest FROM layouts")}
        self._forget_through(2**63 - 1)
        for name, dropped in db.execute("SELECT name, dropped FROM consumers"):
            self.dropped_total[name] = self.dropped_total.get(name, 0) + int(dropped)
        log.info("store opened", path=str(self.path), last_seq=self.last_seq())

    def _count_unstored(self, samples: int) -> None:
        """Samples that never reached the store (dropped from memory while the disk was full or the store
        locked)."""
        reason = "store_locked" if self.fault == LOCKED else "disk_full"
        try:
            names = [r[0] for r in self.db.execute("SELECT name FROM consumers").fetchall()]
        except sqlite3.Error:  # (locked for readers too: the consumers this process knows)
            names = list(self.dropped_total)
        names = sorted({*names, *self.deferred.consumers}) or ["store"]
        for name in names:
            self.dropped_total[name] = self.dropped_total.get(name, 0) + samples
            metrics.samples_dropped.labels(name, reason).inc(samples)
        if not self._fault_dropped:  # one line when the dropping starts; the total when the fault ends
            log.error(f"{reason.replace('_', ' ')}: memory buffer full, the oldest unstored batches are dropped "
                      "(counted)", samples=samples, memory_buffer_samples=self.unstored.max_samples,
                      path=str(self.path))  # fmt: skip
        self._fault_dropped += samples

    def waiting(self) -> bool:
        """Whether anything waits in memory for the store (or the store is not open): writes queue behind it."""
        return bool(self.fault or len(self.unstored) or self.deferred or not self.opened or self._schema_pending)

    def _keep(self, rows: list[tuple[int, str, str, int, bytes]], layouts: dict[str, Keys]) -> None:
        dropped = self.unstored.push(UnstoredRow(*row, layouts) for row in rows)
        if dropped:
            self._count_unstored(dropped)

    def _fault_of(self, exc: BaseException) -> str | None:
        """The store fault `exc` is (gateway.store.diskfault.store_fault), or None: a bug, or a lock met
        while the store is set up (gateway.store.lockwait waits for that one), to be raised."""
        kind = store_fault(exc)
        return None if kind == LOCKED and self._setting_up else kind

    def _failed(self, exc: BaseException, write: str) -> None:
        """A write failed for a fault of the disk or another process's lock (gateway.store.lockfault): the
        gateway goes on from memory and retries. One log line when the fault starts (and one when it
        ends, see `_recovered`), and the alarm."""
        now = time.monotonic()
        self._retry_at = now + self.retry_interval
        kind = store_fault(exc) or "io_error"
        if kind == LOCKED:
            self.fault = self.fault or LOCKED
            self._lock_met(exc, write)
            return
        self._lock_gone()  # the write got past the lock, to meet a fault of the disk
        self._last_full = now
        if self.fault in ("", LOCKED):
            self.fault = kind
            log.error("store cannot be written: new batches wait in memory, the write is retried",
                      error=str(exc), write=write, fault=self.fault, path=str(self.path),
                      memory_buffer_samples=self.unstored.max_samples)  # fmt: skip
        self._set_disk_full(True)

    def _recovered(self) -> None:
        self._lock_gone()
        if self.fault and self.fault != LOCKED:
            log.info("store written again: what waited in memory is stored", dropped_samples=self._fault_dropped,
                     path=str(self.path))  # fmt: skip
        self.fault = ""
        self._fault_dropped = 0

    def _quiet_since_full(self) -> None:
        """The alarm returns to normal once no disk fault was seen for `disk_full_clear_after` seconds."""
        if self.disk_full and not self.fault and time.monotonic() - self._last_full >= self.disk_full_clear_after:
            self._set_disk_full(False)

    def retry(self, *, force: bool = False) -> bool:
        """Write what a fault of the disk kept in memory, oldest first (at most every `retry_interval`
        seconds unless `force`); True when nothing waits any more."""
        if not self.waiting():
            return True
        now = time.monotonic()
        if not force and now < self._retry_at:
            return False
        self._retry_at = now + self.retry_interval
        try:
            if not self.opened:
                self._reopen()
            if self._schema_pending:
                self.db.executescript(STORE_SCHEMA)
                self._schema_pending = False
            self._flush_new_consumers()
            if not self._flush_unstored(force):
                self._retry_at = now  # more to write: the next append goes on with it
                return False
            self._flush_deferred()
        except (sqlite3.Error, OSError) as exc:
            if self._fault_of(exc) is None:
                raise
            self._failed(exc, "retry")
            return False
        self._recovered()
        self._quiet_since_full()
        return True

    def _flush_new_consumers(self) -> None:
        """Consumers added while the store could not be written start at its end before the waiting rows."""
        if self.deferred.consumers:
            end = self.last_seq()
            with self._tx():
                self.db.executemany(
                    "INSERT OR IGNORE INTO consumers(name, acked) VALUES (?, ?)",
                    [(name, 0 if from_start else end) for name, from_start in self.deferred.consumers.items()],
                )
            self.deferred.consumers.clear()

    def _flush_unstored(self, everything: bool) -> bool:
        """Store the rows kept in memory, in order; at most FLUSH_STEPS transactions a call (the event
        loop waits meanwhile) unless `everything`. True when none is left."""
        steps = 0
        while len(self.unstored) and (everything or steps < FLUSH_STEPS):
            chunk = self.unstored.peek(FLUSH_SAMPLES)
            layouts: dict[str, Keys] = {}
            for row in chunk:
                layouts.update(row.layouts)
            self._insert([(r.ts, r.kind, r.source, r.n, r.payload) for r in chunk], layouts)
            self.unstored.pop(len(chunk))
            self.appended_samples += sum(r.n for r in chunk)
            steps += 1
        return not len(self.unstored)

    def _flush_deferred(self) -> None:
        d = self.deferred
        if not d:
            return
        with self._tx():
            self.db.executemany("UPDATE consumers SET acked=max(acked, ?) WHERE name=?",
                                [(seq, name) for name, seq in d.acks.items()])  # fmt: skip
            self.db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", list(d.meta.items()))
            for dl in d.dead_letters:
                deadletters.add(self.db, dl.consumer, dl.seq, dl.status, dl.reason, dl.items, self.max_dead_letters)
            for seq, error in d.quarantine.items():
                quarantine.move(self.db, seq, error)
        self.deferred = Deferred()

    def _write(self, what: str, sql: str, args: tuple[object, ...]) -> bool:
        """One small write; False when the store cannot be written now (the caller keeps it for later)."""
        if self.waiting():
            return False
        try:
            self.db.execute(sql, args)
        except (sqlite3.Error, OSError) as exc:
            if self._fault_of(exc) is None:
                raise
            self._failed(exc, what)
            return False
        return True
