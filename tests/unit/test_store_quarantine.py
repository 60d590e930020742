"""A stored row that cannot be decoded is moved to the quarantine table, counted and logged once; every
reader skips it and the store goes on (the issue: `ValueError: not a compact outbox row` ended the
daemon from `SinkRunner` -> `Outbox.read`, on every start). Rows of every format: columns (format 3)
and the JSON and version-2 rows of a store written before it."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from structlog.testing import capture_logs

from gateway import metrics
from gateway.model import Batch, Sample
from gateway.store.outbox import Outbox
from tests.store_support import damage_rows

LEGACY = Path(__file__).parent.parent / "cases" / "store" / "legacy_v2.db"


def batch(i: int) -> Batch:
    ts = 1_700_000_000_000_000_000 + i
    samples = [Sample(ts, "soc", float(i), "%", "good", "r1"), Sample(ts, "rack_voltage", 700.0 + i, "V", "good", "r1")]
    return Batch.of_samples("sim", samples, created=ts)


def damaged_metric() -> float:
    return metrics.REGISTRY.get_sample_value("bms_gateway_store_damaged_rows_total") or 0.0


def store(path: Path, rows: int = 10) -> Path:
    ob = Outbox(path, consumers=["influx", "mqtt"])
    ob.append([batch(i) for i in range(1, rows + 1)])
    ob.close()
    return path


def test_a_damaged_row_is_skipped_quarantined_counted_and_logged_once(tmp_path: Path) -> None:
    db = store(tmp_path / "o.db")
    damage_rows(db, [3, 4])
    before = damaged_metric()
    ob = Outbox(db, consumers=["influx", "mqtt"])
    with capture_logs() as logs:
        rows = ob.read(0, max_samples=100)
        again = ob.read(0, max_samples=100)
        exported = list(ob.query())
    assert [r.seq for r in rows] == [1, 2, 5, 6, 7, 8, 9, 10] == [r.seq for r in again] == [r.seq for r in exported]
    assert damaged_metric() - before == 2
    lines = [e for e in logs if e["event"].startswith("damaged stored row")]
    assert [e["seq"] for e in lines] == [3, 4]  # once per row, naming it
    assert all(e["error"].startswith("ValueError: the row's bytes do not match its checksum") for e in lines)
    assert [(q.seq, q.n) for q in ob.quarantined()] == [(3, 2), (4, 2)]
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM batches WHERE seq IN (3, 4)").fetchone() == (0,)
    assert con.execute("SELECT length(payload) > 0 FROM quarantine").fetchall() == [(1,), (1,)]  # kept as it was
    con.close()
    assert ob.append([batch(11)]) == 11  # new samples are stored
    ob.close()
    ob = Outbox(db)  # a restart reads on where it was
    assert [r.seq for r in ob.read(0, max_samples=100)][-2:] == [10, 11] and len(ob.quarantined()) == 2
    ob.close()


def test_a_sink_whose_last_rows_are_damaged_is_moved_past_them(tmp_path: Path) -> None:
    db = store(tmp_path / "o.db", rows=5)
    damage_rows(db, [4, 5])
    ob = Outbox(db, consumers=["influx", "mqtt"])
    ob.ack("influx", 3)
    assert ob.read(3) == []
    assert ob.acked("influx") == 5  # nothing left to deliver before them: caught up
    assert ob.acked("mqtt") == 0  # rows 1-3 are still its to deliver
    assert [r.seq for r in ob.read(0, max_samples=100)] == [1, 2, 3]
    ob.close()


def test_a_read_of_only_damaged_rows_goes_on_to_the_rows_after_them(tmp_path: Path) -> None:
    db = store(tmp_path / "o.db", rows=30)
    damage_rows(db, list(range(1, 26)))
    ob = Outbox(db, consumers=["influx"])
    assert [r.seq for r in ob.read(0, max_rows=10, max_samples=100)] == list(range(26, 31))
    ob.close()


def test_damaged_columns_are_damage_too(tmp_path: Path) -> None:
    db = store(tmp_path / "o.db", rows=4)
    con = sqlite3.connect(db)
    con.execute("UPDATE batches SET n = 'x' WHERE seq = 1")
    con.execute("UPDATE batches SET ts = 'late' WHERE seq = 2")
    con.execute("UPDATE batches SET payload = 12 WHERE seq = 3")
    con.commit()
    con.close()
    ob = Outbox(db)
    assert [r.seq for r in ob.read(0, max_samples=100)] == [4]
    assert [q.seq for q in ob.quarantined()] == [1, 2, 3]
    ob.close()


def test_a_row_found_damaged_while_the_disk_is_full_is_quarantined_when_there_is_room(tmp_path: Path) -> None:
    db = store(tmp_path / "o.db", rows=4)
    damage_rows(db, [2])
    ob = Outbox(db, consumers=["influx"])
    pages = int(ob.db.execute("PRAGMA page_count").fetchone()[0])
    ob.db.execute(f"PRAGMA max_page_count={pages}")
    ob.append([Batch.of_samples("sim", [Sample(i, "soc", 1.0, "%", "good", "r1") for i in range(3000)])])  # full
    assert ob.fault == "disk_full"
    assert [r.seq for r in ob.read(0) if r.batch.n] == [1, 3, 4]
    assert ob.quarantined() == [] and 2 in ob.deferred.quarantine
    ob.db.execute("PRAGMA max_page_count=4294967294")
    assert ob.retry(force=True)
    assert [q.seq for q in ob.quarantined()] == [2]
    ob.close()


def test_damaged_rows_of_a_store_written_before_format_3_are_quarantined(tmp_path: Path) -> None:
    db = tmp_path / "legacy.db"
    shutil.copyfile(LEGACY, db)
    damage_rows(db, [1, 3])  # a version-2 compact row and a JSON row
    ob = Outbox(db)
    with capture_logs() as logs:
        assert [r.seq for r in ob.read(0, max_samples=100)] == [2, 4, 5]
    assert [e["seq"] for e in logs if e["event"].startswith("damaged stored row")] == [1, 3]
    assert [q.seq for q in ob.quarantined()] == [1, 3]
    ob.close()


def test_a_row_of_columns_cut_short_or_only_its_magic_is_damage(tmp_path: Path) -> None:
    db = store(tmp_path / "o.db", rows=3)
    con = sqlite3.connect(db)
    con.execute("UPDATE batches SET payload = substr(payload, 1, length(payload) - 8) WHERE seq = 2")  # cut short
    con.execute("UPDATE batches SET payload = X'42474333' WHERE seq = 3")  # only the magic
    con.commit()
    con.close()
    ob = Outbox(db)
    assert [r.seq for r in ob.read(0, max_samples=100)] == [1]
    assert [q.seq for q in ob.quarantined()] == [2, 3]
    ob.close()
