"""Stores written before format 3 still read: every row of a store the old code wrote (JSON rows and
version-2 compact rows; see tests/cases/store/make_legacy_store.py) reads back as that code read it, and
new rows appended to such a store are columns next to the old ones."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

from gateway.model import Batch, Sample
from gateway.store import codec
from gateway.store.codec import MAGIC
from gateway.store.outbox import Outbox

CASES = Path(__file__).parent.parent / "cases" / "store"


def legacy_copy(tmp_path: Path) -> Path:
    db = tmp_path / "legacy.db"
    shutil.copyfile(CASES / "legacy_v2.db", db)
    return db


def same(got: object, want: object) -> bool:
    """Equal values, an int of the old code read back as the float it equals (a column of float64)."""
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want
    if isinstance(want, float | int) and isinstance(got, float | int):
        return got == want or (math.isnan(got) and math.isnan(want))
    return got == want


def test_every_row_of_a_store_written_by_the_old_code_reads(tmp_path: Path) -> None:
    expected = json.loads((CASES / "legacy_v2.expected.json").read_text())
    assert {e["format"] for e in expected} == {"json", "compact-v2"}
    codec.KEY_TABLES = codec.KeyTables()  # a process that has seen none of its tables
    box = Outbox(legacy_copy(tmp_path))
    rows = list(box.query())
    assert not box.damaged and not box.quarantined()
    assert [r.seq for r in rows] == [e["seq"] for e in expected]
    for row, want in zip(rows, expected, strict=True):
        b = row.batch
        assert (row.ts, str(b.kind), b.source, b.device, b.created) == (
            want["ts"], want["kind"], want["source"], want["device"], want["created"])  # fmt: skip
        assert b.records == want["records"]
        st = want["status"]
        assert (None if b.status is None else [b.status.device, str(b.status.state), b.status.reason,
                                               b.status.ts]) == st  # fmt: skip
        got = b.samples()
        assert len(got) == len(want["samples"]) == b.n
        for s, w in zip(got, want["samples"], strict=True):
            assert all(same(g, x) for g, x in zip(s, Sample(*w), strict=True)), (s, w)
    assert box.read(0, max_samples=100)[0].batch.n == 6  # the sinks' read too
    box.close()


def test_new_rows_in_an_old_store_are_columns_and_both_read(tmp_path: Path) -> None:
    db = legacy_copy(tmp_path)
    box = Outbox(db)
    old = [r.batch.samples() for r in box.query()]
    batch = Batch.of_samples("sim", [Sample(5, "soc", 50.0, "%", "good", "r9")], created=5)
    seq = box.append([batch])
    payload = box.db.execute("SELECT payload FROM batches WHERE seq=?", (seq,)).fetchone()[0]
    assert payload.startswith(MAGIC)
    box.close()
    box = Outbox(db)
    rows = list(box.query())
    assert [r.batch.samples() for r in rows[:-1]] == old
    assert rows[-1].batch.samples() == batch.samples()
    assert isinstance(rows[-1].batch.values, np.ndarray)
    box.close()
