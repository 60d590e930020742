"""The outbox decodes each row once for all sinks (a cache by seq, bounded by samples)."""

from __future__ import annotations

from pathlib import Path

from gateway.model import Batch, Sample
from gateway.store.outbox import Outbox, encode

T = 1_700_000_000_000_000_000


def batch(i: int, n: int = 10) -> Batch:
    samples = [Sample(T + i, "cell_voltage", 3.3 + k / 1000, "V", "good", "r1", 1, k) for k in range(n)]
    return Batch.of_samples("src", samples, created=T + i)


def test_rows_decoded_once_for_every_reader(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", consumers=["a", "b"])
    box.append([batch(i) for i in range(5)])
    first = box.read(0)
    second = box.read(0)
    assert [r.batch.samples() for r in first] == [batch(i).samples() for i in range(5)]
    assert all(x is y for x, y in zip(first, second, strict=True))
    assert box.read(2)[0] is first[2]
    box.close()


def test_cache_bounded_and_rows_dropped_leave_it(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", consumers=["a"])
    box.decoded_max_samples = 25
    box.append([batch(i) for i in range(5)])
    rows = box.read(0)
    assert len(rows) == 5 and box._decoded_samples <= 25 and len(box._decoded) == 2
    assert [r.batch.samples() for r in box.read(0)] == [r.batch.samples() for r in rows]
    box._drop_through(rows[3].seq, "retention")
    assert all(seq > rows[3].seq for seq in box._decoded)
    assert [r.seq for r in box.read(0)] == [rows[4].seq]
    box.close()


def test_a_changed_row_is_decoded_again(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", consumers=["a"])
    box.append([batch(1)])
    (row,) = box.read(0)
    box.db.execute("UPDATE batches SET ts=?, payload=? WHERE seq=?", (T + 9, encode(batch(9)), row.seq))
    (again,) = box.read(0)
    assert again.ts == T + 9 and again.batch.samples() == batch(9).samples()
    box.close()


def test_reads_count_cached_and_decoded_samples(tmp_path: Path) -> None:
    from gateway.store.outbox import DECODED_HIT, DECODED_MISS

    box = Outbox(tmp_path / "o.db", consumers=["a", "b"])
    box.append([batch(i) for i in range(3)])
    hit, miss = DECODED_HIT._value.get(), DECODED_MISS._value.get()
    box.read(0)
    box.read(0)
    assert (DECODED_HIT._value.get() - hit, DECODED_MISS._value.get() - miss) == (30, 30)
    box.close()
