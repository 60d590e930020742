"""The bench counts stored samples from rows of every format (columns, and the JSON and version-2 rows of
a store written before format 3)."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.common import store_counts
from gateway.model import Batch, Sample
from gateway.store.outbox import Outbox


def rack_batch(ts: int, bad_cell: int | None = None) -> Batch:
    samples = [
        Sample(ts if i < 4 else ts + 7, "cell_voltage", 3.3 + i / 1000, "V", "bad" if i == bad_cell else "good",
               "r1", 1, i + 1)
        for i in range(6)
    ]  # fmt: skip
    return Batch.of_samples("r1", samples, device="r1", created=ts)


def test_counts_and_cycle_starts(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "s.db", consumers=["influx"])
    ob.append([rack_batch(1_000), rack_batch(2_000, bad_cell=2), rack_batch(3_000)])
    ob.close()
    got = store_counts(tmp_path / "s.db")
    assert got["samples"] == 18 and got["good"] == 17
    assert got["starts"] == {"r1": [1_000, 2_000, 3_000]}
    assert got["consumers"]["influx"].acked == 0
    assert store_counts(tmp_path / "s.db", since_ns=1_500, until_ns=2_500)["samples"] == 6


def test_counts_of_a_store_written_before_format_3(tmp_path: Path) -> None:
    db = tmp_path / "legacy.db"
    shutil.copyfile(Path(__file__).parent.parent / "cases" / "store" / "legacy_v2.db", db)
    got = store_counts(db)
    assert got["samples"] == 6 + 6 + 2 and got["good"] == 4 + 6 + 1
    assert got["starts"] == {"modbus:rack01": [1_760_000_000_000_000_000, 1_760_000_001_000_000_000],
                             "modbus:rack02": [1_760_000_002_000_000_000]}  # fmt: skip
