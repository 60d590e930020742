"""A store another process holds locked: the gateway's set-up waits for it (never dies, never takes the lock
for damage), and the reading tools open it read-only, so they never hold up that set-up."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import structlog

from gateway.cli.main import main
from gateway.model import Batch, Quality, Sample
from gateway.store import lockwait
from gateway.store.lockwait import LOCK_WAITS, StoreLocked, holders, is_locked, wait_unlocked
from gateway.store.outbox import Outbox
from tests.support.store import lock_held as locked
from tests.support.waits import wait_for

T0 = 1_700_000_000_000_000_000


@pytest.fixture(autouse=True)
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's own wait per statement, short: the set-up's retries are what these tests look at."""
    monkeypatch.setattr(lockwait, "BUSY_TIMEOUT", 0.2)


def make_store(path: Path, *, journal: str = "wal", rows: int = 3) -> Path:
    """A store with `rows` batches of one sample, closed, in journal mode `journal`."""
    box = Outbox(path, site="t")
    for i in range(rows):
        sample = Sample(T0 + i, "soc", float(i), "%", Quality.GOOD, "r1")
        box.append([Batch.of_samples("sim", [sample], created=T0 + i)])
    box.close()
    if journal != "wal":
        db = sqlite3.connect(path)
        assert db.execute(f"PRAGMA journal_mode={journal}").fetchone()[0] == journal
        db.close()
    return path


def journal_mode(path: Path) -> str:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return str(db.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        db.close()


def release_once_waiting(holder: sqlite3.Connection) -> threading.Thread:
    """A thread that ends the holder's transaction once the set-up has said that it waits."""
    before = LOCK_WAITS._value.get()

    def run() -> None:
        wait_for(lambda: LOCK_WAITS._value.get() > before, what="the set-up waiting for the lock")
        holder.execute("COMMIT")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_lock_is_no_fault_and_no_damage() -> None:
    db = sqlite3.connect(":memory:")
    busy = sqlite3.OperationalError("database is locked")
    assert is_locked(busy)
    assert not is_locked(sqlite3.OperationalError("database or disk is full"))
    assert not is_locked(sqlite3.DatabaseError("database disk image is malformed"))
    with pytest.raises(sqlite3.OperationalError) as caught:
        db.execute("SELECT * FROM nothing")
    assert not is_locked(caught.value)


def test_the_switch_to_wal_is_tried_again_until_the_lock_is_gone(tmp_path: Path) -> None:
    """SQLite refuses the switch of the journal mode at once (no busy timeout covers it): the retry does."""
    path = make_store(tmp_path / "s.db", journal="delete")
    slept: list[float] = []
    with locked(path, "IMMEDIATE") as holder:
        db = lockwait.connect(path)

        def nap(seconds: float) -> None:
            slept.append(seconds)
            if len(slept) == 2:
                holder.execute("COMMIT")

        with structlog.testing.capture_logs() as logs:
            mode = wait_unlocked(lambda: db.execute("PRAGMA journal_mode=WAL").fetchone()[0], path, "switch", sleep=nap)
        db.close()
    assert mode == "wal" and len(slept) == 2
    events = [e["event"] for e in logs]
    assert events == ["store locked by another process: waiting for it", "store lock released: set-up goes on"]
    assert logs[0]["path"] == str(path) and logs[0]["step"] == "switch"


def test_past_the_bound_it_gives_up_naming_the_file_and_the_step(tmp_path: Path) -> None:
    path = make_store(tmp_path / "s.db", journal="delete")
    now = [0.0]

    def nap(seconds: float) -> None:
        now[0] += seconds

    with locked(path, "EXCLUSIVE"), structlog.testing.capture_logs() as logs:
        db = lockwait.connect(path)
        with pytest.raises(StoreLocked) as caught:
            wait_unlocked(lambda: db.execute("PRAGMA journal_mode=WAL"), path, "switch to WAL mode",
                          give_up_after=2.0, clock=lambda: now[0], sleep=nap)  # fmt: skip
        db.close()
    assert str(path) in str(caught.value) and "switch to WAL mode" in str(caught.value)
    assert [e["log_level"] for e in logs] == ["warning", "error"]  # one line when it starts, one when it gives up
    assert 2.0 <= now[0] < 3.0


def test_holders_names_the_process_that_has_the_store_open(tmp_path: Path) -> None:
    path = make_store(tmp_path / "s.db")
    code = "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.execute('BEGIN IMMEDIATE'); print('held')"
    code += "; sys.stdout.flush(); sys.stdin.read()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        found = holders(path)
        assert [h.pid for h in found] == [proc.pid]
        assert "sqlite3.connect" in found[0].command and str(proc.pid) in str(found[0])
    finally:
        proc.communicate("")


def test_the_outbox_waits_for_an_exclusive_lock_and_never_sets_the_store_aside(tmp_path: Path) -> None:
    """A store still in rollback-journal mode, held EXCLUSIVE: before, the damage check read "database is
    locked" as damage and set the sound file aside (all its rows with it)."""
    path = make_store(tmp_path / "s.db", journal="delete")
    with locked(path, "EXCLUSIVE") as holder:
        releaser = release_once_waiting(holder)
        box = Outbox(path, mark_open=True, site="t", consumers=["influx"])
        releaser.join()
    try:
        assert box.repair_report is None
        assert [r.batch.samples()[0].value for r in box.query()] == [0.0, 1.0, 2.0]
        assert box.acked("influx") == 3 and box.get_meta("store.state") == "open"
    finally:
        box.close()
    assert sorted(p.name for p in tmp_path.iterdir() if "damaged" in p.name) == []
    assert journal_mode(path) == "wal"


def test_the_first_writes_wait_for_another_writer(tmp_path: Path) -> None:
    """A WAL store whose write lock another process holds: the daemon's first writes (open mark, site,
    consumers) wait instead of ending the start with "database is locked"."""
    path = make_store(tmp_path / "s.db")
    with locked(path, "IMMEDIATE") as holder:
        releaser = release_once_waiting(holder)
        box = Outbox(path, mark_open=True, site="other", consumers=["mqtt"])
        releaser.join()
    try:
        assert box.get_meta("site") == "other" and box.acked("mqtt") == 3
        assert box.append([Batch.of_samples("sim", [Sample(T0 + 9, "soc", 9.0, "%", Quality.GOOD, "r1")])]) == 4
    finally:
        box.close()


def test_a_reading_tool_reads_a_locked_store_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tail` on a store in rollback-journal mode whose write lock another process holds: before, it switched
    the journal mode itself (refused at once: "database is locked"); now it reads and writes nothing."""
    path = make_store(tmp_path / "s.db", journal="delete")
    before = path.read_bytes()
    with locked(path, "IMMEDIATE"):
        assert main(["tail", "--store", str(path), "-n", "3"]) == 0
        assert main(["export", "--store", str(path)]) == 0
    out = capsys.readouterr()
    assert out.out.count(" soc ") == 3 and out.out.count('"quantity": "soc"') == 3, out
    assert journal_mode(path) == "delete" and path.read_bytes() == before


def test_a_reading_tool_names_a_store_not_set_up_yet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.db"
    path.touch()  # what the daemon's start makes first
    with pytest.raises(SystemExit) as exited:
        main(["tail", "--store", str(path)])
    assert exited.value.code == 2
    assert f"cannot read the store at {path} (not set up yet" in capsys.readouterr().err
    assert path.stat().st_size == 0
