"""Compact rows for batches with a Layout: they decode to exactly what the JSON rows decode to, the
layout comes back as the same object, batches that do not fit their layout are stored as JSON, and
rows written before the compact format read as before."""

from __future__ import annotations

import itertools
import math
import sqlite3
from pathlib import Path

import pytest

from gateway.model import Batch, BatchKind, DeviceState, DeviceStatus, Layout, Quality, Sample
from gateway.store import codec as outboxcodec
from gateway.store.codec import LayoutCache, is_json, load_compact, stored_values
from gateway.store.outbox import Outbox, decode, encode
from gateway.store.repair import repair

T = 1_700_000_000_000_000_000
NAN = float("nan")

# Written by `encode` before the compact format existed: such rows must decode as they always did.
LEGACY = (
    b'{"s":"modbus:r1","d":"r1","k":"samples","c":1700000000000000003,"st":["r1","degraded","block 3 failed",'
    b'1700000000000000002],"r":[],"x":[[1700000000000000000,"soc",55.5,"%","good","r1",null,null,null],'
    b'[1700000000000000000,"cell_voltage",NaN,"V","stale","r1",1,2,null],[1700000000000000001,"raw.state",'
    b'"run","","good","r1",null,null,1699999999000000000],[1700000000000000001,"alarm.ov",true,"","bad","r1",'
    b'2,null,null],[1700000000000000001,"cycle_count",12,"","missing","r1",null,null,null],'
    b'[1700000000000000001,"soh",null,"%","comm_loss","r1",null,null,null],[1700000000000000001,"rack_current",'
    b'-1e+300,"A","out_of_range","r1",null,null,null]]}'
)
LEGACY_ALARM = (
    b'{"s":"alarms","d":"r1","k":"alarm","c":5,"st":null,"r":[{"type":"event","v":[1,2],"t":"\xc3\xa4"}],"x":[]}'
)


@pytest.fixture(autouse=True)
def fresh_layouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a new process would: no layout seen yet."""
    monkeypatch.setattr(outboxcodec, "LAYOUTS", LayoutCache())


def fingerprint(samples: list[Sample]) -> list[tuple[tuple[str, str], ...]]:
    """Every field's type and repr: equal fingerprints render to equal bytes in every sink."""
    return [tuple((type(f).__name__, repr(f)) for f in s) for s in samples]


def shape() -> list[Sample]:
    """One sample of every odd kind, in two segments (ts T and T+1)."""
    return [
        Sample(T, "soc", 55.5, "%", Quality.GOOD, "r1"),
        Sample(T, "cell_voltage", NAN, "V", Quality.STALE, "r1", 1, 2),
        Sample(T, "cell_voltage", -0.0, "V", "good", "r1", 1, 3),
        Sample(T + 1, "raw.state", "run", "", Quality.GOOD, "r1", None, None, T - 5),
        Sample(T + 1, "alarm.ov", True, "", Quality.BAD, "r1", 2, None),
        Sample(T + 1, "cycle_count", 12, "", Quality.MISSING, "r1"),
        Sample(T + 1, "energy_charged", 2**70, "Wh", Quality.GOOD, "r1"),
        Sample(T + 1, "soh", None, "%", Quality.COMM_LOSS, "r1"),
        Sample(T + 1, "rack_current", -1e300, "A", Quality.OUT_OF_RANGE, "r1"),
        Sample(T + 1, "rack_power", math.inf, "W", "good", "r1"),
    ]


def layout_of(samples: list[Sample], cuts: tuple[int, ...] = (3,)) -> Layout:
    bounds = [0, *cuts, len(samples)]
    return Layout([(s[1], s[3], s[5], s[6], s[7]) for s in samples], list(itertools.pairwise(bounds)))


def with_layout(samples: list[Sample], layout: Layout | None, **kw: object) -> Batch:
    return Batch("modbus:r1", samples, device="r1", created=T + 9, layout=layout, **kw)  # type: ignore[arg-type]


def stored(box: Outbox) -> list[bytes]:
    return [bytes(r[0]) for r in box.db.execute("SELECT payload FROM batches ORDER BY seq")]


def test_legacy_rows_decode_as_before() -> None:
    b = decode(LEGACY)
    assert b.status == DeviceStatus("r1", DeviceState.DEGRADED, "block 3 failed", T + 2) and b.layout is None
    assert b.created == T + 3 and b.source == "modbus:r1" and b.kind == BatchKind.SAMPLES and b.records == []
    got = b.samples
    assert [type(s.value) for s in got] == [float, float, str, bool, int, type(None), float]
    assert math.isnan(got[1].value)  # type: ignore[arg-type]
    assert got[2] == Sample(T + 1, "raw.state", "run", "", "good", "r1", None, None, T - 1_000_000_000)
    assert [s.quality for s in got] == ["good", "stale", "good", "bad", "missing", "comm_loss", "out_of_range"]
    assert encode(b) == LEGACY  # and today's JSON encoding of it is unchanged
    alarm = decode(LEGACY_ALARM)
    assert alarm.kind == BatchKind.ALARM and alarm.records == [{"type": "event", "v": [1, 2], "t": "ä"}]


def test_layout_batch_is_stored_compact_and_reads_like_json(tmp_path: Path) -> None:
    samples = shape()
    lay = layout_of(samples)
    st = DeviceStatus("r1", DeviceState.ONLINE, "", T + 7)
    box = Outbox(tmp_path / "o.db", consumers=["a"])
    box.append([with_layout(samples, lay, status=st), with_layout(samples, None, status=st)])
    compact, plain = stored(box)
    assert not is_json(compact) and is_json(plain) and len(compact) < len(plain) / 2
    rows = box.read(0)
    a, b = rows[0].batch, rows[1].batch
    assert a.layout is lay and b.layout is None
    assert fingerprint(a.samples) == fingerprint(b.samples) == fingerprint(decode(encode(a)).samples)
    assert (a.source, a.device, a.kind, a.created, a.status, a.records) == (
        b.source, b.device, b.kind, b.created, b.status, b.records)  # fmt: skip
    assert all(type(s) is Sample for s in a.samples)
    assert fingerprint(next(iter(box.query())).batch.samples) == fingerprint(b.samples)
    box.close()


def test_all_good_and_without_device_times(tmp_path: Path) -> None:
    samples = [Sample(T, "cell_voltage", 3.3 + k / 1000, "V", Quality.GOOD, "r1", 1, k) for k in range(50)]
    lay = layout_of(samples, (10, 10, 30))  # an empty segment too
    box = Outbox(tmp_path / "o.db")
    box.append([with_layout(samples, lay)])
    doc = load_compact(stored(box)[0])
    assert doc[-2] is None and doc[-1] is None  # qualities and device times: nothing stored
    (row,) = box.read(0)
    assert fingerprint(row.batch.samples) == fingerprint(decode(encode(with_layout(samples, None))).samples)
    box.close()


@pytest.mark.parametrize(
    "change",
    [
        "other_layout",
        "ts_within_segment",
        "float_ts",
        "value_subclass",
        "quality_unknown",
        "quality_none",
        "records",
        "alarm_kind",
        "length",
        "device_ts_str",
        "status_subclass",
    ],
)
def test_batches_that_do_not_fit_their_layout_are_stored_as_json(tmp_path: Path, change: str) -> None:
    class F(float):
        pass

    class S(str):
        pass

    samples = shape()
    lay = layout_of(samples)
    kw: dict[str, object] = {}
    if change == "other_layout":
        lay = layout_of([s._replace(cell=9) for s in samples])
    elif change == "ts_within_segment":
        samples[1] = samples[1]._replace(ts=T + 3)
    elif change == "float_ts":
        samples[1] = samples[1]._replace(ts=float(T))  # type: ignore[arg-type]
    elif change == "value_subclass":
        samples[0] = samples[0]._replace(value=F(1.5))
    elif change == "quality_unknown":
        samples[0] = samples[0]._replace(quality="suspect")
    elif change == "quality_none":
        samples[0] = samples[0]._replace(quality=None)  # type: ignore[arg-type]
    elif change == "records":
        kw["records"] = [{"type": "note"}]
    elif change == "alarm_kind":
        kw["kind"] = BatchKind.ALARM
    elif change == "length":
        samples = samples[:-1]
    elif change == "device_ts_str":
        samples[0] = samples[0]._replace(device_ts="yesterday")  # type: ignore[arg-type]
    elif change == "status_subclass":
        kw["status"] = DeviceStatus(S("r1"), DeviceState.ONLINE, "", T)
    batch = with_layout(samples, lay, **kw)
    box = Outbox(tmp_path / "o.db")
    box.append([batch])
    assert is_json(stored(box)[0])
    (row,) = box.read(0)
    assert row.batch.layout is None
    assert fingerprint(row.batch.samples) == fingerprint(decode(encode(batch)).samples)
    box.close()


def test_unstorable_layout_falls_back_to_json(tmp_path: Path) -> None:
    class S(str):
        pass

    samples = [Sample(T, S("soc"), 1.0, "%", "good", "r1")]
    box = Outbox(tmp_path / "o.db")
    box.append([with_layout(samples, Layout([(S("soc"), "%", "r1", None, None)], [(0, 1)]))])
    assert is_json(stored(box)[0])
    assert box.db.execute("SELECT count(*) FROM layouts").fetchone()[0] == 0
    box.close()


def test_a_new_process_rebuilds_the_layout_from_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = shape()
    lay = layout_of(samples)
    box = Outbox(tmp_path / "o.db")
    box.append([with_layout(samples, lay), with_layout(samples, lay)])
    box.close()
    monkeypatch.setattr(outboxcodec, "LAYOUTS", LayoutCache())  # a new process
    box = Outbox(tmp_path / "o.db")
    first, second = (r.batch for r in box.read(0))
    assert first.layout is second.layout and first.layout is not lay and first.layout is not None
    assert first.layout.keys == lay.keys and first.layout.segments == lay.segments
    assert first.layout.digest == lay.digest
    assert fingerprint(first.samples) == fingerprint(decode(encode(with_layout(samples, None))).samples)
    box.close()


def test_a_row_whose_layout_is_gone_is_quarantined_not_wrong_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = shape()
    box = Outbox(tmp_path / "o.db")
    box.append([with_layout(samples, layout_of(samples))])
    box.db.execute("DELETE FROM layouts")
    monkeypatch.setattr(outboxcodec, "LAYOUTS", LayoutCache())
    assert box.read(0) == []
    (q,) = box.quarantined()
    assert q.seq == 1 and "layout" in q.error
    box.close()


def test_layouts_leave_the_store_with_their_last_row(tmp_path: Path) -> None:
    samples = shape()
    lay, other = layout_of(samples), layout_of(samples, (3, 5))
    box = Outbox(tmp_path / "o.db")
    box.append([with_layout(samples, lay), with_layout(samples, other)])
    box.append([with_layout(samples, lay)])
    count = "SELECT count(*) FROM layouts"
    assert box.db.execute(count).fetchone()[0] == 2
    uses = dict(box.db.execute("SELECT digest, last_seq FROM layout_use").fetchall())
    assert uses == {lay.digest: 3, other.digest: 2}  # at least the last row stored with each
    box._drop_through(2, "retention")  # the last row using `other` goes; `lay` is still used by row 3
    assert box.db.execute("SELECT digest FROM layouts").fetchall() == [(lay.digest,)]
    assert box.read(0)[0].batch.layout is lay
    box.append([with_layout(samples, other)])  # used again: stored again
    assert box.db.execute(count).fetchone()[0] == 2
    box._drop_through(4, "retention")
    assert box.db.execute(count).fetchone()[0] == 0
    box.close()


def test_repair_keeps_compact_rows_and_their_layouts(tmp_path: Path) -> None:
    samples = shape()
    lay = layout_of(samples)
    path = tmp_path / "o.db"
    box = Outbox(path, consumers=["a"])
    box.append([with_layout(samples, lay) for _ in range(5)] + [with_layout(samples, None)])
    box.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE batches SET payload=? WHERE seq=2", (b"\x80\x05garbage",))
    db.commit()
    db.close()
    from gateway.store.deadletters import SCHEMA as DL
    from gateway.store.outbox import SCHEMA

    report = repair(path, SCHEMA + DL, "test")
    assert report.recovered_rows == 5 and report.unreadable_rows == 1
    box = Outbox(path, check=False)
    rows = box.read(0)
    assert [r.seq for r in rows] == [1, 3, 4, 5, 6]
    assert [r.batch.layout is lay for r in rows] == [True, True, True, True, False]
    assert fingerprint(rows[0].batch.samples) == fingerprint(rows[-1].batch.samples)
    box.close()


def test_the_layout_cache_is_bounded_by_samples_and_rebuilds_from_the_store(tmp_path: Path) -> None:
    cache = LayoutCache(max_keys=25)
    outboxcodec.LAYOUTS = cache  # the autouse fixture restores the process's cache
    shapes = [[Sample(T, "cell_voltage", 3.3, "V", "good", f"r{r}", 1, k) for k in range(10)] for r in range(4)]
    layouts = [layout_of(s, ()) for s in shapes]
    box = Outbox(tmp_path / "o.db")
    box.append([with_layout(s, lay) for s, lay in zip(shapes, layouts, strict=True)])
    assert len(cache) == 2 and cache.keys == 20  # the two oldest went
    assert [r.batch.layout for r in box.read(2)] == layouts[2:]  # still cached: the same objects
    rows = box.read(0)  # the first two are rebuilt from the store
    assert rows[0].batch.layout is not layouts[0] and rows[1].batch.layout is not layouts[1]
    assert [r.batch.layout.digest for r in rows if r.batch.layout] == [lay.digest for lay in layouts]
    assert [fingerprint(r.batch.samples) for r in rows] == [fingerprint(s) for s in shapes]
    box.close()


def test_stored_values_of_both_formats(tmp_path: Path) -> None:
    samples = shape()
    box = Outbox(tmp_path / "o.db")
    box.append([with_layout(samples, layout_of(samples)), with_layout(samples, None)])
    compact, plain = stored(box)
    expected = [repr(s.value) for s in samples]
    assert [repr(v) for v in stored_values(compact)] == expected == [repr(v) for v in stored_values(plain)]
    box.close()
