"""WAL checkpoints in a thread of their own: the outbox's commits never run one, the thread copies the
WAL into the database file, and close() stops it."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from gateway.model import Batch, Sample
from gateway.store.outbox import Outbox
from tests.support.waits import wait_for


def batch(i: int) -> Batch:
    return Batch.of_samples("src", [Sample(i, "raw.x", float(k), "", "good", "r1") for k in range(100)], created=i)


def rows_in_main_file(path: Path, tmp: Path) -> int:
    """Rows the database file holds without its WAL (what checkpoints copied)."""
    copy = tmp / "main-only.db"
    shutil.copyfile(path, copy)
    db = sqlite3.connect(copy)
    try:
        return int(db.execute("SELECT count(*) FROM batches").fetchone()[0])
    finally:
        db.close()


def test_the_thread_checkpoints_and_commits_do_not(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, consumers=["a"])
    box.checkpoint_in_thread(interval=0.02)
    assert box.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    checker = box.checkpointer
    assert checker is not None
    for i in range(50):
        box.append([batch(i)])
    done = checker.checkpoints
    wait_for(lambda: checker.checkpoints >= done + 2, 30, "two checkpoints after the last commit", step=0.01)
    assert rows_in_main_file(path, tmp_path) == 50 and checker.failures == 0
    box.close()
    assert not checker._thread.is_alive()
    again = Outbox(path)
    assert [r.batch.created for r in again.query()] == list(range(50))
    again.close()


def test_without_the_thread_sqlite_checkpoints_as_usual(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    assert box.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000 and box.checkpointer is None
    box.close()
