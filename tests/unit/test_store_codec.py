"""Store format 3 (gateway.store.codec): a row keeps the raw bytes of its batch's columns under a small
header, its key table stored once per digest; every field reads back as it was written."""

from __future__ import annotations

import math
import sqlite3
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gateway.model import Batch, BatchKind, DeviceState, DeviceStatus, Keys, Sample
from gateway.store import codec
from gateway.store.codec import MAGIC, KeyTables, summary
from gateway.store.outbox import Outbox, encode
from gateway.store.repair import repair
from gateway.store.schema import STORE_SCHEMA

T = 1_700_000_000_000_000_000


@pytest.fixture(autouse=True)
def new_process() -> Iterator[None]:
    """Each test starts as a new process would: no key table read back yet."""
    saved = codec.KEY_TABLES
    codec.KEY_TABLES = KeyTables()
    yield
    codec.KEY_TABLES = saved


def odd() -> list[Sample]:
    """One point of every odd kind, at two times."""
    return [
        Sample(T, "soc", 55.5, "%", "good", "r1", None, None, T - 5),
        Sample(T, "state", "charging", "", "good", "r1"),
        Sample(T, "contactor_closed", True, "", "good", "r1"),
        Sample(T, "contactor_open", False, "", "good", "r1"),
        Sample(T + 1, "cell_voltage", None, "V", "missing", "r1", 1, 2),
        Sample(T + 1, "cell_voltage", math.inf, "V", "out_of_range", "r1", 1, 3),
        Sample(T + 1, "raw.flags", "é\n\"x\"", "", "bad", "r1", 2, None, 1),
        Sample(T + 1, "cycles", 1234.0, "", "stale", "r1"),
    ]


def fields(b: Batch) -> tuple[object, ...]:
    return (b.source, b.device, b.kind, b.created, b.status, b.records,
            [tuple(map(repr, s)) for s in b.samples()])  # fmt: skip


def payloads(box: Outbox) -> list[bytes]:
    return [bytes(r[0]) for r in box.db.execute("SELECT payload FROM batches ORDER BY seq")]


def plain(n: int, rack: str = "r1", t: int = T) -> Batch:
    samples = [Sample(t, "cell_voltage", 3.3 + k / 1000, "V", "good", rack, 1, k) for k in range(n)]
    return Batch.of_samples("sim", samples, device=rack, created=t)


def test_every_field_reads_back_as_written(tmp_path: Path) -> None:
    status = DeviceStatus("r1", DeviceState.DEGRADED, "2 of 3 blocks", T)
    b = Batch.of_samples("modbus:r1", odd(), device="r1", status=status, created=T + 9, records=[{"type": "x"}])
    box = Outbox(tmp_path / "o.db")
    box.append([b, Batch("alarms", kind=BatchKind.ALARM, device="r1", created=T, records=[{"type": "event"}])])
    (row, alarm) = box.read(0)
    assert fields(row.batch) == fields(b)
    assert row.batch.keys is b.keys  # the interned table: consumers' per-shape work carries over
    assert math.isnan(row.batch.values[4]) and row.batch.value(5) == math.inf
    assert (alarm.batch.kind, alarm.batch.records, alarm.batch.n) == (BatchKind.ALARM, [{"type": "event"}], 0)
    first, second = payloads(box)
    assert first.startswith(MAGIC) and second.startswith(b"{")
    assert b"\x80\x05" not in first[:2] and b"cell_voltage" not in first  # no pickle, no names in a row
    box.close()


def test_columns_are_views_of_the_stored_bytes_and_cannot_be_changed(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append([plain(4)])
    (row,) = box.read(0)
    for col in (row.batch.ts, row.batch.values, row.batch.quality):
        assert not col.flags.writeable  # shared by every sink through the decoded-row cache
    assert row.batch.ts.dtype == np.int64 and row.batch.values.dtype == np.float64
    box.close()


def test_all_good_without_device_times_or_objects_stores_times_and_values_only(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append([plain(100), Batch.of_samples("sim", odd())])
    small, _ = payloads(box)
    header = len(small) - (8 + 8 * 100 + 4)  # one run of one time (int64, its length uint32), the values
    assert header < 300 and header % 8 == 0  # the columns start 8-byte aligned
    (row, other) = box.read(0)
    assert row.batch.device_ts is None and row.batch.objects is None and not row.batch.quality.any()
    assert other.batch.device_ts is not None and other.batch.objects == {1: "charging", 2: True, 3: False,
                                                                         6: "é\n\"x\""}  # fmt: skip
    box.close()


def test_a_new_process_reads_the_key_table_from_the_store(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append([plain(5), plain(5, t=T + 1)])
    box.close()
    codec.KEY_TABLES = KeyTables()  # a new process: it has read no key table back yet
    box = Outbox(tmp_path / "o.db")
    first, second = (r.batch for r in box.read(0))
    assert first.keys is second.keys is Keys.of(plain(5).keys.rows) and len(codec.KEY_TABLES) == 1
    assert first.samples() == plain(5).samples()
    box.close()


def test_the_writer_reads_its_own_key_tables_without_parsing_them_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key table the process stored is found again by its digest: a row read back (here with the
    decoded-row cache off) has its source's table, and no table body is parsed."""
    box = Outbox(tmp_path / "o.db")
    box.decoded_max_samples = 0
    written = plain(7, rack="writer")
    box.append([written])

    def parsed(body: str) -> codec.KeyTable:
        raise AssertionError("a key table this process stored was parsed back from the store")

    monkeypatch.setattr(codec, "key_table_from_body", parsed)
    (row,) = box.read(0)
    assert row.batch.keys is written.keys and row.batch.samples() == written.samples()
    box.close()


def test_a_row_whose_key_table_is_gone_is_quarantined_not_wrong_data(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append([plain(3)])
    box.db.execute("DELETE FROM layouts")
    codec.KEY_TABLES = KeyTables()  # read as a new process would (the writer knows its tables)
    box.decoded_max_samples = 0
    assert box.read(0) == []
    (q,) = box.quarantined()
    assert q.seq == 1 and "key table" in q.error
    box.close()


def test_key_tables_leave_the_store_with_their_last_row(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    one, other = plain(3), plain(3, rack="r2")
    box.append([one, other])
    box.append([plain(3, t=T + 1)])
    count = "SELECT count(*) FROM layouts"
    assert box.db.execute(count).fetchone()[0] == 2
    uses = dict(box.db.execute("SELECT digest, last_seq FROM layout_use").fetchall())
    assert uses == {one.keys.digest: 3, other.keys.digest: 2}  # at least the last row stored with each
    box._drop_through(2, "retention")  # the last row using `other` goes; `one` is still used by row 3
    assert box.db.execute("SELECT digest FROM layouts").fetchall() == [(one.keys.digest,)]
    assert box.read(0)[0].batch.keys is one.keys
    box.append([plain(3, rack="r2")])  # used again: stored again
    assert box.db.execute(count).fetchone()[0] == 2
    box._drop_through(4, "retention")
    assert box.db.execute(count).fetchone()[0] == 0
    box.close()


def test_repair_keeps_rows_of_columns_and_their_key_tables(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, consumers=["a"])
    box.append([plain(4, t=T + i) for i in range(5)] + [Batch("alarms", kind=BatchKind.ALARM, records=[{"a": 1}])])
    box.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE batches SET payload=? WHERE seq=2", (MAGIC + b"garbage",))
    db.commit()
    db.close()
    report = repair(path, STORE_SCHEMA, "test")
    assert report.recovered_rows == 5 and report.unreadable_rows == 1
    box = Outbox(path, check=False)
    rows = box.read(0)
    assert [r.seq for r in rows] == [1, 3, 4, 5, 6]
    assert rows[0].batch.samples() == plain(4).samples() and rows[-1].batch.records == [{"a": 1}]
    box.close()


def test_the_key_table_cache_is_bounded_by_points_and_reads_the_store_again(tmp_path: Path) -> None:
    cache = codec.KEY_TABLES = KeyTables(max_points=25)
    tables = [plain(10, rack=f"r{r}") for r in range(4)]
    box = Outbox(tmp_path / "o.db")
    box.append(tables)
    rows = box.read(0)
    assert len(cache) == 2 and cache.points == 20  # the two oldest went
    assert [r.batch.samples() for r in box.read(0)] == [b.samples() for b in tables]  # read from the store again
    assert [r.batch.keys for r in rows] == [b.keys for b in tables]
    box.close()


def test_summary_counts_rows_of_every_format_without_their_key_tables() -> None:
    b = Batch.of_samples("sim", odd())
    assert summary(encode(b)) == (8, 4, 3, T)  # points, good, numbers (not NaN, not objects), first ts
    assert summary(encode(plain(3))) == (3, 3, 3, T)


def spread(n: int, runs: int) -> Batch:
    """`n` points in `runs` runs of one time each, some of them not good."""
    samples = [Sample(T + i * runs // n, "cell_voltage", 3.3 + i / 1000, "V", "good" if i % 7 else "stale", "r1", 1, i)
               for i in range(n)]  # fmt: skip
    return Batch.of_samples("sim", samples, device="r1", created=T)


@pytest.mark.parametrize(
    ("batch", "runs"),
    [(plain(1), 0), (plain(100), 1), (spread(1000, 8), 8), (spread(30, 19), 19), (spread(30, 20), 0),
     (spread(500, 500), 0), (Batch.of_samples("sim", odd()), 2)],
    ids=["one point", "one run", "many runs", "runs just smaller", "runs as large", "every point its own ts",
         "every column"],
)  # fmt: skip
def test_times_are_stored_as_runs_when_that_is_smaller_and_read_back_as_written(
    tmp_path: Path, batch: Batch, runs: int
) -> None:
    payload = encode(batch)
    head = codec.header(payload)
    assert head.runs == runs  # 12 bytes a run against 8 a point: runs only when fewer bytes
    ts_bytes = 12 * runs if runs else 8 * batch.n
    columns = ts_bytes + 8 * batch.n + (batch.n if batch.quality.any() else 0) + head.doc.get("o", 0)
    columns += 8 * batch.n if batch.device_ts is not None else 0
    assert len(payload) - head.ts == columns
    assert head.ts % 8 == head.values % 8 == head.device_ts % 8 == 0  # the int64 columns 8-byte aligned
    box = Outbox(tmp_path / "o.db")
    box.append([batch])
    (row,) = box.read(0)
    assert fields(row.batch) == fields(batch)
    assert row.batch.ts.dtype == np.int64 and np.array_equal(row.batch.ts, batch.ts)
    assert not row.batch.ts.flags.writeable  # repeated from its runs or a view of the row: read-only either way
    assert summary(payload).first_ts == int(batch.ts[0])
    box.close()


def test_an_empty_batch_is_a_json_row_and_reads_back_empty(tmp_path: Path) -> None:
    empty = Batch.of_samples("sim", [], device="r1", created=T)
    assert encode(empty).startswith(b"{")
    box = Outbox(tmp_path / "o.db")
    box.append([empty, plain(3)])
    first, second = box.read(0)
    assert (first.batch.n, first.batch.source, first.batch.device, first.batch.created) == (0, "sim", "r1", T)
    assert second.batch.samples() == plain(3).samples()
    box.close()


def reseal(payload: bytes) -> bytes:
    """`payload` with its checksum made to match its bytes again (damage the checksum cannot see)."""
    return payload[:4] + zlib.crc32(payload[8:]).to_bytes(4, "little") + payload[8:]


@pytest.mark.parametrize(("lengths", "held"), [((126, 125), 251), ((124, 125), 249), ((0xFFFF_FFFF, 125), 2**32 + 124)],
                         ids=["more points", "fewer points", "a run of 4 billion points"])  # fmt: skip
def test_a_row_whose_runs_of_times_do_not_hold_its_points_is_quarantined(
    tmp_path: Path, lengths: tuple[int, int], held: int
) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append([plain(3), spread(250, 2), plain(3, t=T + 1)])
    payload = payloads(box)[1]
    head = codec.header(payload)
    assert head.runs == 2 and list(np.frombuffer(payload, "<u4", 2, head.lengths)) == [125, 125]
    damaged = payload[: head.lengths] + np.array(lengths, "<u4").tobytes() + payload[head.lengths + 8 :]
    box.db.execute("UPDATE batches SET payload=? WHERE seq=2", (reseal(damaged),))
    assert [r.seq for r in box.read(0)] == [1, 3]
    (q,) = box.quarantined()
    assert q.seq == 2 and f"the row's 2 runs of times hold {held} points" in q.error and "says 250" in q.error
    box.close()


def test_a_header_naming_more_runs_than_points_is_quarantined(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append([plain(4)])
    payload = payloads(box)[0]
    assert b'"tr":1' in payload  # one run
    damaged = payload.replace(b'"tr":1', b'"tr":5', 1)
    box.db.execute("UPDATE batches SET payload=? WHERE seq=1", (reseal(damaged),))
    assert box.read(0) == []
    (q,) = box.quarantined()
    assert q.seq == 1 and "names 5 runs of times for 4 points" in q.error
    box.close()
