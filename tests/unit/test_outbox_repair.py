"""A store whose file lost its tail: detected at start, the damaged file set aside, the rest kept."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.model import Batch, Sample
from gateway.outbox import Outbox
from gateway.outboxrepair import needs_repair


def fill(db: Path, rows: int) -> None:
    ob = Outbox(db, consumers=["influx", "mqtt"])
    for i in range(rows):
        ob.append([Batch("sim", [Sample(i, f"raw.v{k}", float(i), "", "good", "r1") for k in range(20)], created=i)])
    ob.ack("influx", 100)
    ob.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ob.close()


def test_sound_file_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    fill(db, 50)
    assert needs_repair(db) == ""
    ob = Outbox(db)
    assert ob.repair_report is None and ob.last_seq() == 50
    ob.close()


def test_truncated_tail_is_set_aside_and_the_rest_kept(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    fill(db, 1000)
    size = db.stat().st_size
    with db.open("r+b") as f:
        f.truncate(int(size * 0.6))
    assert needs_repair(db) != ""
    ob = Outbox(db, consumers=["influx"])
    rep = ob.repair_report
    assert rep is not None
    assert Path(rep.damaged_file).exists() and os.path.getsize(rep.damaged_file) == int(size * 0.6)
    assert rep.recovered_rows > 300 and rep.unreadable_rows > 0
    assert rep.recovered_rows + rep.unreadable_rows == 1000  # every row is accounted for
    assert rep.last_seq == 1000
    rows = list(ob.query())
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert all(r.batch.samples[0].value == float(r.seq - 1) for r in rows)  # the data, intact
    assert ob.acked("influx") == 100 and ob.acked("mqtt") == 0  # cursors kept
    assert ob.append([Batch("sim", [Sample(1, "soc", 1.0, "%")])]) == 1001  # numbers continue
    assert ob.get_meta(f"repair.{Path(rep.damaged_file).name.split('-', 1)[1]}") is not None
    ob.close()
    assert needs_repair(db) == ""


def test_garbage_file_is_set_aside_and_a_fresh_store_starts(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    db.write_bytes(b"not a database at all" * 100)
    ob = Outbox(db, consumers=["influx"])
    assert ob.repair_report is not None and ob.repair_report.recovered_rows == 0
    assert ob.append([Batch("sim", [Sample(1, "soc", 1.0, "%")])]) == 1
    ob.close()
