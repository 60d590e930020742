"""The bench counts stored samples from both row formats (JSON rows and compact layout rows)."""

from __future__ import annotations

from pathlib import Path

from bench.common import store_counts
from gateway.model import Batch, Layout, Sample
from gateway.store.outbox import Outbox


def rack_batch(ts: int, bad_cell: int | None = None) -> Batch:
    samples = [
        Sample(ts if i < 4 else ts + 7, "cell_voltage", 3.3 + i / 1000, "V", "bad" if i == bad_cell else "good",
               "r1", 1, i + 1)
        for i in range(6)
    ]  # fmt: skip
    return Batch("r1", samples, device="r1", created=ts)


def test_counts_and_cycle_starts_from_both_formats(tmp_path: Path) -> None:
    layout = Layout([("cell_voltage", "V", "r1", 1, i + 1) for i in range(6)], [(0, 4), (4, 6)])
    ob = Outbox(tmp_path / "s.db", consumers=["influx"])
    plain = rack_batch(1_000)
    compact = rack_batch(2_000, bad_cell=2)
    compact.layout = layout
    compact_good = rack_batch(3_000)
    compact_good.layout = layout
    ob.append([plain, compact, compact_good])
    payloads = [bytes(p) for (p,) in ob.db.execute("SELECT payload FROM batches ORDER BY seq")]
    ob.close()
    assert payloads[0][:1] == b"{" and payloads[1][:1] != b"{"  # both formats are in the store
    got = store_counts(tmp_path / "s.db")
    assert got["samples"] == 18 and got["good"] == 17
    assert got["starts"] == {"r1": [1_000, 2_000, 3_000]}
    assert got["consumers"]["influx"].acked == 0
    assert store_counts(tmp_path / "s.db", since_ns=1_500, until_ns=2_500)["samples"] == 6
