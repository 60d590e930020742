"""A disk that is full (or fails to write) never ends the gateway: what cannot be stored waits in memory,
bounded, and is stored in order once there is room; nothing committed before is deleted for it.

Two ways to fill the disk without being root: `PRAGMA max_page_count` on the outbox's own connection
(SQLite's "database or disk is full", as on a full file system) and RLIMIT_FSIZE (no file may grow:
SQLite's "disk I/O error", also for the WAL and its index, so even opening can fail)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway import metrics
from gateway.alarms.journal import Journal
from gateway.model import Batch, BatchKind, Sample
from gateway.store.outbox import Outbox
from tests.store_support import file_size_limit


def batch(i: int, n: int = 10) -> Batch:
    samples = [Sample(i * 1000 + k, "soc", float(i), "%", "good", "r1") for k in range(n)]
    return Batch.of_samples("sim", samples, created=i)


def dropped(consumer: str) -> float:
    labels = {"consumer": consumer, "reason": "disk_full"}
    v = metrics.REGISTRY.get_sample_value("bms_gateway_samples_dropped_total", labels)
    return v or 0.0


def full_metric() -> float | None:
    return metrics.REGISTRY.get_sample_value("bms_gateway_store_disk_full")


def fill_disk(ob: Outbox) -> None:
    """No page more for this connection: every write that needs one fails as on a full disk."""
    pages = int(ob.db.execute("PRAGMA page_count").fetchone()[0])
    ob.db.execute(f"PRAGMA max_page_count={pages}")


def free_disk(ob: Outbox) -> None:
    ob.db.execute("PRAGMA max_page_count=4294967294")


def stored(ob: Outbox) -> list[tuple[int, float]]:
    """(seq, value) of the stored sample rows (without a gateway alarm's event row, stored on its own)."""
    return [(r.seq, float(r.batch.samples()[0].value)) for r in ob.query() if r.batch.kind == BatchKind.SAMPLES]  # type: ignore[arg-type]


def test_full_disk_keeps_the_newest_in_memory_and_stores_them_in_order_when_room_returns(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", consumers=["influx"], memory_buffer_samples=500)
    ob.disk_full_clear_after = 0.0
    for i in range(1, 21):
        ob.append([batch(i, 100)])
    before = stored(ob)
    lost_before = dropped("influx")
    fill_disk(ob)
    last = ob.last_seq()
    for i in range(21, 121):  # 100 batches of 100 samples: more than the 500 the memory holds
        ob.append([batch(i, 100)])  # no exception
    assert stored(ob) == before  # nothing stored meanwhile
    assert ob.disk_full and ob.fault == "disk_full" and full_metric() == 1
    assert ob.unstored.samples == 500  # the newest five batches
    assert dropped("influx") - lost_before == 95 * 100  # the oldest in memory went first, counted
    assert stored(ob) == before  # nothing committed was deleted to make room
    free_disk(ob)
    ob.retry(force=True)
    got = stored(ob)
    assert got[:20] == before
    assert [v for _, v in got[20:]] == [116.0, 117.0, 118.0, 119.0, 120.0]  # in order, after the old rows
    assert all(s > last for s, _ in got[20:])  # numbered on from the last stored
    assert not ob.fault and not ob.disk_full and full_metric() == 0
    assert ob.append([batch(121)]) > got[-1][0]
    ob.close()


def test_small_writes_wait_behind_the_rows_and_are_read_back_meanwhile(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", consumers=["influx"])
    ob.append([batch(i) for i in range(1, 6)])
    fill_disk(ob)
    ob.append([batch(6, 2000)])  # the fault starts: no room for this one
    assert ob.fault == "disk_full"
    end = ob.last_seq()
    ob.ack("influx", 3)
    ob.set_meta("alarms.journal_committed", "7")
    ob.add_consumer("mqtt")
    assert ob.add_dead_letters("influx", 2, 400, "field type conflict", ["a x=1"]) == 1
    assert ob.acked("influx") == 3 and ob.acked("mqtt") == end
    assert ob.get_meta("alarms.journal_committed") == "7"
    raw = sqlite3.connect(tmp_path / "o.db")
    assert raw.execute("SELECT acked FROM consumers WHERE name = 'influx'").fetchone() == (0,)
    free_disk(ob)
    assert ob.retry(force=True)
    assert raw.execute("SELECT name, acked FROM consumers ORDER BY name").fetchall() == [("influx", 3), ("mqtt", end)]
    assert raw.execute("SELECT value FROM meta WHERE key = 'alarms.journal_committed'").fetchone() == ("7",)
    assert [d.item for d in ob.dead_letters()] == ["a x=1"]
    assert stored(ob)[-1] == (end + 1, 6.0)  # the waiting row went first, the new consumer after it
    raw.close()
    ob.close()


def test_the_budget_on_a_disk_that_cannot_take_its_delete_waits_for_room(tmp_path: Path) -> None:
    """The crash of the issue: enforce_budget -> _drop_through -> "database or disk is full"."""
    ob = Outbox(tmp_path / "o.db", consumers=["slow"])
    ob.db.execute("PRAGMA wal_autocheckpoint=0")  # the WAL only grows: its delete needs new bytes
    for i in range(1, 301):
        ob.append([batch(i, 1000)])
    ob.max_bytes = 2_000_000
    wal = (tmp_path / "o.db-wal").stat().st_size
    with file_size_limit(wal):
        assert ob.enforce_budget() == 0  # no exception
        assert ob.fault == "io_error" and ob.disk_full
        assert ob.first_seq() == 1
        ob.append([batch(301)])  # waits in memory
    ob.retry_interval = 0.0
    ob._retry_at = 0.0
    assert ob.enforce_budget() > 0  # room again: the waiting row is stored, then the budget applies
    assert ob.first_seq() > 1 and stored(ob)[-1] == (301, 301.0)
    ob.close()


def test_start_on_a_disk_too_full_to_open_the_store_runs_from_memory_until_it_opens(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    ob = Outbox(db, consumers=["influx"])
    ob.append([batch(i) for i in range(1, 11)])
    ob.ack("influx", 4)
    ob.close()  # a clean close removes the WAL and its index: opening needs room for them again
    assert not Path(f"{db}-shm").exists()
    with file_size_limit(16_000):
        ob = Outbox(db, consumers=["influx", "mqtt"])
        assert not ob.opened and ob.fault == "io_error" and ob.disk_full
        assert ob.read(0) == [] and ob.last_seq() == 0  # an empty stand-in: readers see nothing yet
        ob.append([batch(11)])
        ob.ack("influx", 0)
        assert not ob.retry(force=True)  # still full
    assert ob.retry(force=True)
    assert ob.opened and ob.repair_report is None  # a sound file: no repair for a full disk
    assert ob.acked("influx") == 4 and ob.acked("mqtt") == 10  # the new sink starts at the end of the file
    assert stored(ob)[-1] == (11, 11.0) and len(stored(ob)) == 11
    ob.close()


def test_an_older_store_opened_on_a_full_disk_makes_its_new_tables_when_there_is_room(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    ob = Outbox(db, consumers=["influx"])
    ob.append([batch(1)])
    ob.close()
    old = sqlite3.connect(db, isolation_level=None)
    old.execute("DROP TABLE quarantine")  # as a store written before quarantining was
    old.execute("PRAGMA journal_mode=DELETE")
    old.execute("PRAGMA page_size=65536")
    old.execute("VACUUM")  # big pages: one more page is more than the limit below lets the WAL take
    old.execute("PRAGMA journal_mode=WAL")
    old.close()
    with file_size_limit(40_000):
        ob = Outbox(db, consumers=["influx"])
        assert ob.opened and ob.fault and [r.seq for r in ob.read(0)] == [1]  # readable at once
        ob.append([batch(2)])
    assert ob.retry(force=True)
    assert ob.quarantined() == [] and [r.seq for r in ob.read(0)] == [1, 2]
    ob.close()


def test_the_alarm_journal_in_a_store_too_full_to_open_waits_and_goes_on_with_its_chain(tmp_path: Path) -> None:
    """The daemon opens the journal (same file) right after the store: neither may end the start."""
    db = tmp_path / "o.db"
    j = Journal(db)
    j.append([{"type": "start", "ts": 1}, {"type": "stop", "ts": 2}])
    j.close()
    with file_size_limit(16_000):
        ob = Outbox(db)
        j = Journal(db)  # no exception
        assert not j.opened and not ob.opened
        with pytest.raises(sqlite3.OperationalError):  # the engine keeps its entries in memory meanwhile
            j.append([{"type": "start", "ts": 3}])
    assert j.append([{"type": "start", "ts": 3}]) == 1
    assert j.seq == 3 and j.verify() == (3, [])  # the chain goes on where it was
    j.close()
    ob.close()
