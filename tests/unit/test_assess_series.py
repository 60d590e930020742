"""Batches to `RackChunk`s on a time grid, from batches, from the store and from export's JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gateway.assess.readers import ReadReport, batches_from_jsonl, batches_from_store
from gateway.assess.series import CellId, ChunkBuilder, RackChunk, chunks_from_batches
from gateway.cli.store import sample_dict
from gateway.model import Batch, Sample
from gateway.store.outbox import Outbox
from tests.assess_support import RACK, Synth

S = 1_000_000_000
T0 = 1_700_000_000 * S


def same(a: list[RackChunk], b: list[RackChunk]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.cell_ids == y.cell_ids and x.temp_ids == y.temp_ids
        for name in ("t", "current", "pack_v", "cells", "temps", "bms_soc", "bms_soh", "present", "good",
                     "comm_loss", "stale"):  # fmt: skip
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)


def test_samples_land_on_the_nearest_step_in_chunks_of_bounded_size() -> None:
    jitter = [0, 200_000_000, -300_000_000, 100_000_000, 0, 0, 0]
    batches = []
    for k, j in enumerate(jitter):
        ts = T0 + k * S + j
        # Cells discovered out of order, and split over two batches of one step (as CAN windows are).
        batches.append(Batch.of_samples("a", [Sample(ts, "cell_voltage", 3.3 + k / 100, "V", "good", RACK, 2, 1),
                                              Sample(ts, "rack_current", -10.0 * k, "A", "good", RACK)]))  # fmt: skip
        batches.append(Batch.of_samples("a", [Sample(ts, "cell_voltage", 3.2, "V", "good", RACK, 1, 5),
                                              Sample(ts, "soc", 50.0, "%", "good", "other-rack"),
                                              Sample(ts, "rack_voltage", 99.0, "V", "stale", RACK)]))  # fmt: skip
    chunks = list(chunks_from_batches(batches, RACK, 1.0, steps=3))
    assert [c.n for c in chunks] == [3, 3, 1]
    c = chunks[0]
    assert c.cell_ids == (CellId(1, 5), CellId(2, 1))
    np.testing.assert_array_equal(c.t, T0 + np.arange(3) * S)
    np.testing.assert_array_equal(c.cells[:, 1], [3.3 + k / 100 for k in range(3)])
    np.testing.assert_array_equal(c.current, [0.0, -10.0, -20.0])
    assert np.isnan(c.pack_v).all() and c.stale.all() and c.present.all() and not c.comm_loss.any()
    np.testing.assert_allclose(c.good, 3 / 4)  # both cells and the current; the pack voltage is stale
    assert np.isnan(c.bms_soc).all()  # another rack's


def test_late_points_and_cells_first_seen_later_are_counted_not_placed() -> None:
    b = ChunkBuilder(RACK, 1.0, steps=2)
    out = []
    for k in range(4):
        out += b.feed(Batch.of_samples("a", [Sample(T0 + k * S, "cell_voltage", 3.3, "V", "good", RACK, 1, 1)]))
    late, new_cell = Sample(T0, "cell_voltage", 3.0, "V", "good", RACK, 1, 1), Sample(T0 + 4 * S, "cell_voltage",
                                                                                     3.0, "V", "good", RACK, 1, 2)
    out += b.feed(Batch.of_samples("a", [late, new_cell]))
    last = b.finish()
    assert last is not None
    assert b.late_points == 1 and b.unknown_points == 1
    assert [c.n for c in [*out, last]] == [2, 2, 1]
    assert last.cell_ids == (CellId(1, 1),) and np.isnan(last.cells).all()


def test_a_long_gap_emits_no_empty_chunks_and_comm_loss_is_flagged() -> None:
    batches = [Batch.of_samples("a", [Sample(T0 + k * S, "rack_current", 1.0, "A", q, RACK)])
               for k, q in [(0, "good"), (1, "comm_loss"), (100_000, "good")]]  # fmt: skip
    chunks = list(chunks_from_batches(batches, RACK, 1.0, steps=10))
    assert [int((c.t[0] - T0) // S) for c in chunks] == [0, 100_000]
    assert chunks[0].comm_loss.tolist() == [False, True] and np.isnan(chunks[0].current[1])


def export_lines(batches: list[Batch]) -> list[str]:
    return [json.dumps(sample_dict("site", b.source, s)) for b in batches for s in b.samples()]


def test_export_lines_give_the_chunks_the_batches_give() -> None:
    s = Synth().run(cycles=1)
    batches = s.batches(per_batch=50)[:40]
    lines = export_lines(batches)
    lines.insert(5, "{not json")
    lines.insert(9, json.dumps({"kind": "alarm", "id": "x"}))
    report = ReadReport()
    from_file = list(chunks_from_batches(batches_from_jsonl(lines, RACK, 1000, report, "w.jsonl"), RACK, 1.0, 600))
    same(from_file, list(chunks_from_batches(batches, RACK, 1.0, 600)))
    assert report.skipped_lines == 2
    assert report.errors[0].startswith("w.jsonl:6: not JSON")
    assert report.errors[1] == "w.jsonl:10: a alarm record"


def test_the_store_gives_the_chunks_the_batches_give(tmp_path: Path) -> None:
    s = Synth().run(cycles=1)
    batches = s.batches(per_batch=50)[:40]
    box = Outbox(tmp_path / "store.db")
    for b in batches:
        b.created = int(b.ts[0])
    box.append(batches)
    box.close()
    report = ReadReport()
    stored = list(chunks_from_batches(batches_from_store(tmp_path / "store.db", report=report), RACK, 1.0, 600))
    same(stored, list(chunks_from_batches(batches, RACK, 1.0, 600)))
    assert report.damaged_rows == {}
    window = batches_from_store(tmp_path / "store.db", int(s.t[1000]), int(s.t[1499]))
    assert sum(b.n for b in window) == 10 * 50 * len(s.keys())
