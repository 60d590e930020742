"""Outbox features the sinks rely on: dead letters, pending counts, holds, counted budget drops."""

from __future__ import annotations

from pathlib import Path

from gateway import metrics
from gateway.model import Batch, Sample
from gateway.store.outbox import Outbox


def batch(i: int, n: int = 10) -> Batch:
    return Batch.of_samples(
        "sim", [Sample(i * 1000 + k, "soc", float(k), "%", "good", "r1") for k in range(n)], created=i
    )


def dropped_metric(consumer: str, reason: str) -> float:
    v = metrics.REGISTRY.get_sample_value("bms_gateway_samples_dropped_total", {"consumer": consumer, "reason": reason})
    return v or 0.0


def test_dead_letters_round_trip(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", consumers=["influx"])
    assert ob.add_dead_letters("influx", 5, 400, "field type conflict", ["a x=1", "b x=2"]) == 2
    ob.add_dead_letters("mqtt", 6, 413, "too big", ["c"])
    dl = ob.dead_letters("influx")
    assert [(d.seq, d.status, d.reason, d.item) for d in dl] == [
        (5, 400, "field type conflict", "a x=1"),
        (5, 400, "field type conflict", "b x=2"),
    ]
    assert len(ob.dead_letters()) == 3
    assert ob.remove_dead_letters([dl[0].id]) == 1
    ob.close()
    ob = Outbox(tmp_path / "o.db")
    assert [d.item for d in ob.dead_letters()] == ["b x=2", "c"]  # durable
    ob.close()


def test_pending_and_read_limits(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", consumers=["s"])
    ob.append([batch(i) for i in range(1, 6)])
    assert ob.pending(0) == (5, 50, 1)
    assert ob.pending(5) == (0, 0, None)
    assert [r.seq for r in ob.read(0, max_samples=25)] == [1, 2]
    assert [r.seq for r in ob.read(0, max_samples=5)] == [1]  # at least one row
    assert ob.read(0, max_samples=5, at_least_one=False) == []
    ob.close()


def test_budget_drops_are_counted_per_consumer_and_never_under_a_write(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", max_bytes=1_000_000, consumers=["slow", "fast"])
    before = dropped_metric("slow", "disk_budget")
    ob.hold("slow", 1)  # a write of row 1 is in progress: nothing may go
    big = [batch(i, 1000) for i in range(1, 200)]
    ob.append(big)
    ob.ack("fast", ob.last_seq())
    assert ob.first_seq() == 1
    ob.release("slow")
    dropped = ob.enforce_budget()
    assert dropped > 0
    assert ob.used_bytes() <= 1_000_000
    first = ob.first_seq()
    assert dropped == (first - 1) * 1000  # every dropped sample of "slow" is counted
    assert ob.acked("slow") == first - 1
    assert dropped_metric("slow", "disk_budget") - before == dropped
    assert ob.dropped_total["slow"] == dropped and ob.dropped_total.get("fast", 0) == 0
    ob.close()


def test_dead_letter_table_is_bounded_and_counts_what_it_deletes(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", max_dead_letters=5)
    name = {"sink": "influx"}
    before = metrics.REGISTRY.get_sample_value("bms_gateway_sink_dead_letters_discarded_total", name) or 0.0
    for i in range(8):
        ob.add_dead_letters("influx", i, 400, "bad", [f"p{i}"])
    ob.add_dead_letters("mqtt", 1, 413, "big", ["m"])
    assert [d.item for d in ob.dead_letters("influx")] == ["p3", "p4", "p5", "p6", "p7"]
    assert len(ob.dead_letters("mqtt")) == 1
    after = metrics.REGISTRY.get_sample_value("bms_gateway_sink_dead_letters_discarded_total", name)
    assert after == before + 3
    ob.close()
