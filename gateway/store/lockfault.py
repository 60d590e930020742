"""The running daemon's store locked by another process (part of `Outbox`, see gateway.store.outbox).

At start-up the daemon waits for a lock (gateway.store.lockwait). Once it runs, another process may
still hold the store's write lock for a while: the `sqlite3` shell in `BEGIN EXCLUSIVE`, a backup tool,
`bms-gateway sinks --forget` or `deadletter delete`. Then:

- The daemon's statements wait at most `LIVE_BUSY_TIMEOUT` (0.2 s) for the lock inside SQLite: the
  event loop (the polls of every source) is never held up for longer.
- A write refused for the lock is kept exactly as one refused by a full disk (gateway.store.faults,
  one implementation): new batches wait in memory, bounded by `store.memory_buffer_samples` (the
  oldest dropped first and counted, reason `store_locked`), small writes (a sink's acknowledgement,
  meta values, dead letters) as their latest value, and the store is tried again every second. The
  sinks go on delivering what was stored before (WAL readers never wait for a writer).
- A lock that lasts `BUSY_TIMEOUT` (5 s) is announced: one warning naming the file, the write refused
  and the processes that have the file open; the gateway alarm `gateway:store_locked` (major, not the
  disk-full alarm); `bms_gateway_store_locked` 1 and `bms_gateway_store_lock_outages_total` counted.
  A shorter one passes silently (nothing is lost either way).
- The first write that succeeds stores what waited, in order, and ends it: one info line (how long,
  what was dropped), the alarm cleared, the gauge 0.
"""

from __future__ import annotations

import sqlite3
import time

import structlog
from prometheus_client import Counter, Gauge

from gateway import metrics
from gateway.alarms.gatewayalarm import STORE_LOCKED
from gateway.store import lockwait
from gateway.store.codec import encode
from gateway.store.state import OutboxState

log = structlog.get_logger("outbox")

STORE_LOCKED_NOW = Gauge(
    "bms_gateway_store_locked",
    "1 while another process holds the store locked past the busy timeout (new batches wait in memory)",
    registry=metrics.REGISTRY,
)
LOCK_OUTAGES = Counter(
    "bms_gateway_store_lock_outages",
    "Times another process held the running gateway's store locked past the busy timeout",
    registry=metrics.REGISTRY,
)


class LockFaults(OutboxState):
    """How `Outbox` lives with another process's lock while the daemon runs."""

    def _lock_met(self, exc: BaseException, write: str) -> None:
        """A write was refused for another process's lock: the state starts (quietly), and is announced
        once the lock has lasted `BUSY_TIMEOUT` (counting the refused statement's own wait)."""
        now = time.monotonic()
        if not self.locked:
            self.locked = True
            self._locked_since = now - self._busy_timeout
            lockwait.busy_timeout(self.db, lockwait.LOCKED_BUSY_TIMEOUT)  # the retries never hold the loop long
        if self._lock_announced or now - self._locked_since < lockwait.BUSY_TIMEOUT:
            return
        self._lock_announced = True
        STORE_LOCKED_NOW.set(1)
        LOCK_OUTAGES.inc()
        held_by = lockwait.who_holds(self.path)
        log.warning("store locked by another process: new batches wait in memory, the write is retried",
                    path=str(self.path), write=write, held_by=held_by, error=str(exc),
                    locked_s=round(now - self._locked_since, 1),
                    memory_buffer_samples=self.unstored.max_samples)  # fmt: skip
        self._report_lock(True, f"the store {self.path} is locked by another process ({held_by})")

    def _lock_gone(self) -> None:
        """A write got past the lock: the state ends (its line and the alarm's return, if announced)."""
        if not self.locked:
            return
        self.locked = False
        lockwait.busy_timeout(self.db, self._busy_timeout)
        if not self._lock_announced:
            return
        self._lock_announced = False
        STORE_LOCKED_NOW.set(0)
        log.info("store lock released: what waited in memory is stored", path=str(self.path),
                 locked_s=round(time.monotonic() - self._locked_since, 1),
                 dropped_samples=self._fault_dropped)  # fmt: skip
        self._report_lock(False, f"the store {self.path} is no longer locked by another process")

    def _unlocked_after_restart(self) -> None:
        """A commit succeeded: an alarm restored from before a restart returns to normal (see
        gateway.alarms.gatewayalarm)."""
        if not self.locked and STORE_LOCKED in self.alarms.restored:
            self._report_lock(False, f"the store {self.path} is not locked")

    def _report_lock(self, active: bool, message: str) -> None:
        """The gateway alarm `gateway:store_locked` to `self.alarms`. With no alarm engine its event row is
        stored now when the lock is gone, else it waits in memory with the batches (stored in order)."""
        self.alarms.set(STORE_LOCKED, active, message, severity="major")
        events = self.alarms.take_events()
        if not events:
            return
        rows = [(e.created, str(e.kind), e.source, len(e), encode(e)) for e in events]
        if not active:
            try:
                self._insert(rows)
                return
            except (sqlite3.Error, OSError):
                pass  # (stored with the next write that can)
        self._keep(rows, {})
