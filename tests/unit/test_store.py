"""The local store (outbox): append once, per-consumer cursors, retention and budget drops counted."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from gateway.model import Batch, BatchKind, DeviceState, DeviceStatus, Quality, Sample
from gateway.store import budget as outboxbudget
from gateway.store import outbox
from gateway.store.outbox import Outbox


def batch(i: int, n: int = 3, ts: int | None = None) -> Batch:
    t = ts if ts is not None else time.time_ns()
    samples = [Sample(t, "cell_voltage", 3.2 + k / 1000, "V", Quality.GOOD, "r1", 1, k + 1) for k in range(n)]
    return Batch.of_samples(f"src{i % 2}", samples, device="r1", created=t)


def test_append_read_roundtrip_keeps_every_field(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "s.db")
    st = DeviceStatus("r1", DeviceState.OFFLINE, "timeout", 5)
    samples = [Sample(1, "soc", 55.5, "%", Quality.STALE, "r1", None, None, 7)]
    b = Batch.of_samples("src", samples, device="r1", status=st)
    alarm = Batch("alarms", kind=BatchKind.ALARM, device="r1", records=[{"type": "event", "ts": 2}])
    last = ob.append([b, alarm])
    assert last == 2
    rows = ob.read(0)
    assert [r.seq for r in rows] == [1, 2]
    got = rows[0].batch
    assert got.samples() == b.samples() and got.status == st and got.device == "r1"
    assert rows[1].batch.kind == BatchKind.ALARM and rows[1].batch.records == [{"type": "event", "ts": 2}]
    assert ob.stored_samples() == 1 and ob.stored_samples(None) == 2


def test_cursor_per_consumer_and_new_consumers_start_at_the_end(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "s.db")
    ob.add_consumer("influx")
    ob.append([batch(i) for i in range(5)])
    ob.add_consumer("mqtt")  # added later: starts at the end, does not replay history
    assert ob.acked("influx") == 0 and ob.acked("mqtt") == 5
    rows = ob.read(ob.acked("influx"), max_samples=7)
    assert [r.seq for r in rows] == [1, 2]  # whole rows up to about 7 samples
    ob.ack("influx", rows[-1].seq)
    ob.ack("influx", 1)  # a cursor never moves back
    assert ob.acked("influx") == 2
    states = {c.name: c for c in ob.consumers()}
    assert states["influx"].pending_rows == 3 and states["influx"].pending_samples == 9
    assert states["mqtt"].pending_rows == 0


def test_reopen_keeps_rows_and_cursors(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "s.db", consumers=["influx"])
    ob.append([batch(i) for i in range(4)])
    ob.ack("influx", 3)
    ob.close()
    ob2 = Outbox(tmp_path / "s.db", consumers=["influx"])
    assert ob2.acked("influx") == 3
    assert ob2.last_seq() == 4
    assert [r.seq for r in ob2.read(3)] == [4]
    ob2.append([batch(9)])
    assert ob2.last_seq() == 5  # sequence numbers are never reused


def test_retention_drops_old_rows_and_counts_what_a_consumer_missed(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "s.db", retention_hours=1.0, consumers=["influx", "mqtt"])
    old = time.time_ns() - int(2 * 3600e9)
    ob.append([batch(i, ts=old) for i in range(3)])
    # append() enforces the budget: the three old rows went at once
    assert ob.first_seq() == 0  # empty
    ob2_rows = ob.read(0)
    assert ob2_rows == []
    states = {c.name: c for c in ob.consumers()}
    assert states["influx"].dropped == 9 and states["mqtt"].dropped == 9
    assert ob.dropped_total == {"influx": 9, "mqtt": 9}
    ob.append([batch(5)])
    assert [r.seq for r in ob.read(ob.acked("influx"))] == [4]


def test_disk_budget_drops_oldest_first_and_spares_delivered_counts(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "s.db", max_bytes=1_000_000, consumers=["fast", "slow"])
    seq = 0
    for i in range(400):
        seq = ob.append([batch(i, n=250)])
        ob.ack("fast", seq)  # fast keeps up; slow never acknowledges
    assert ob.used_bytes() <= 1_000_000 * 1.05
    first = ob.first_seq()
    assert first > 1  # the oldest rows went
    states = {c.name: c for c in ob.consumers()}
    assert states["fast"].dropped == 0  # it had delivered everything dropped
    assert states["slow"].dropped == (first - 1) * 250  # every dropped sample it had not delivered is counted
    assert states["slow"].acked == first - 1  # and its cursor moved past the gap
    assert next(r.seq for r in ob.read(ob.acked("slow"))) == first


def test_query_by_time_for_export(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "s.db")
    ob.append([batch(i, ts=1_000 + i) for i in range(10)])
    got = [r.ts for r in ob.query(since_ns=1_003, until_ns=1_006)]
    assert got == [1_003, 1_004, 1_005, 1_006]
    assert [r.seq for r in ob.query(after_seq=8)] == [9, 10]


def test_the_budget_frees_a_bounded_step_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A delete runs on the event loop: each append frees at most DROP_STEP_BYTES (a few hundred rows)."""
    monkeypatch.setattr(outboxbudget, "DROP_STEP_BYTES", 40_000)
    ob = Outbox(tmp_path / "s.db", max_bytes=1_000_000, consumers=["slow"])
    row_bytes = len(outbox.encode(batch(0, n=200))) + 40
    firsts = []
    for i in range(500):
        ob.append([batch(i, n=200)])
        firsts.append(ob.first_seq())
    steps = [b - a for a, b in itertools.pairwise(firsts) if b > a]
    assert steps and max(steps) <= 40_000 // row_bytes + 2  # never a tenth of the budget at once
    assert ob.used_bytes() <= 1_000_000 * 1.05
    assert {c.name: c.dropped for c in ob.consumers()} == {"slow": (ob.first_seq() - 1) * 200}
