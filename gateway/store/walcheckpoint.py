"""WAL checkpoints of the outbox from a thread of their own.

SQLite in WAL mode appends every commit to the `-wal` file and copies it back into the database file
in a checkpoint. By default the commit that takes the WAL past 1,000 pages runs the checkpoint itself
(copy and fsync): 30–100 ms on the event loop every few seconds at 100,000 samples/s. With a
`WalCheckpointer` the outbox's connection turns automatic checkpoints off and this thread runs a
PASSIVE checkpoint (never waits for the writer or readers) every `interval` seconds on its own
connection; SQLite releases the GIL meanwhile, so the loop goes on. Durability is unchanged: a commit
is in the WAL before the call returns, as before.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import structlog

from gateway.store.lockwait import connect

log = structlog.get_logger("outbox")


class WalCheckpointer:
    def __init__(self, path: Path, *, synchronous: str = "normal", interval: float = 1.0) -> None:
        self.path = path
        self.synchronous = "FULL" if synchronous == "full" else "NORMAL"
        self.interval = interval
        self.checkpoints = 0
        self.failures = 0  # since start
        self.failing = 0  # in a row, until one works
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.interval):
                if db is None:
                    db = self._connect()  # the store may not open yet (a full disk): tried again next time
                if db is not None:
                    self.checkpoint(db)
        finally:
            if db is not None:
                db.close()

    def _connect(self) -> sqlite3.Connection | None:
        try:
            db = connect(self.path)
            db.execute(f"PRAGMA synchronous={self.synchronous}")  # the fsyncs of a checkpoint follow it
        except sqlite3.Error as exc:
            self._failed(exc)
            return None
        return db

    def checkpoint(self, db: sqlite3.Connection) -> None:
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # the disk is full, another process's lock: the WAL keeps the data
            self._failed(exc)
            return
        self.checkpoints += 1
        if self.failing:
            log.info("WAL checkpoint done again", failed=self.failing, path=str(self.path))
            self.failing = 0

    def _failed(self, exc: sqlite3.Error) -> None:
        """One line when checkpoints start failing (and every 600th failure in a row); one when one works."""
        self.failures += 1
        self.failing += 1
        if self.failing == 1 or self.failing % 600 == 0:
            log.warning("WAL checkpoint failed; retrying", error=str(exc), failures=self.failing, path=str(self.path))
