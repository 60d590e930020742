"""The outbox decodes each row once for all sinks (a bounded cache by seq) and decodes as before."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.model import Batch, Sample
from gateway.store.outbox import Outbox, decode, encode

T = 1_700_000_000_000_000_000


def batch(i: int, n: int = 10) -> Batch:
    return Batch("src", [Sample(T + i, "cell_voltage", 3.3 + k / 1000, "V", "good", "r1", 1, k) for k in range(n)],
                 created=T + i)  # fmt: skip


def test_decode_same_samples_as_plain_construction() -> None:
    b = batch(1)
    b.samples += [Sample(T, "raw.x", "t", ""), Sample(T, "soc", None, "%", "bad", "r", None, None, T - 1)]
    got = decode(encode(b))
    assert got.samples == [Sample(*json.loads(json.dumps(s))) for s in b.samples]
    assert all(type(s) is Sample for s in got.samples)
    assert got.samples[-1].device_ts == T - 1


def test_decode_rows_with_fewer_fields_gets_the_defaults() -> None:
    x = [[T, "soc", 1.0, "%"], [T, "soc", 2.0, "%", "bad", "r1", 1, 2, 3]]
    payload = json.dumps({"s": "a", "d": "", "k": "samples", "c": T, "st": None, "r": [], "x": x}).encode()
    got = decode(payload).samples
    assert got == [Sample(T, "soc", 1.0, "%"), Sample(T, "soc", 2.0, "%", "bad", "r1", 1, 2, 3)]
    assert got[0].quality == "good" and got[0].module is None


def test_rows_decoded_once_for_every_reader(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", consumers=["a", "b"])
    box.append([batch(i) for i in range(5)])
    first = box.read(0)
    second = box.read(0)
    assert [r.batch for r in first] == [batch(i) for i in range(5)]
    assert all(x is y for x, y in zip(first, second, strict=True))
    assert box.read(2)[0] is first[2]
    box.close()


def test_cache_bounded_and_rows_dropped_leave_it(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", consumers=["a"])
    box.decoded_max_samples = 25
    box.append([batch(i) for i in range(5)])
    rows = box.read(0)
    assert len(rows) == 5 and box._decoded_samples <= 25 and len(box._decoded) == 2
    assert [r.batch for r in box.read(0)] == [r.batch for r in rows]
    box._drop_through(rows[3].seq, "retention")
    assert all(seq > rows[3].seq for seq in box._decoded)
    assert [r.seq for r in box.read(0)] == [rows[4].seq]
    box.close()


def test_a_changed_row_is_decoded_again(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", consumers=["a"])
    box.append([batch(1)])
    (row,) = box.read(0)
    box.db.execute("UPDATE batches SET ts=?, payload=? WHERE seq=?", (T + 9, encode(batch(9, 3)), row.seq))
    (again,) = box.read(0)
    assert again.ts == T + 9 and again.batch == batch(9, 3)
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
