"""A key table of one rack keeps its rack and a shape shared with every rack's table of equal keys but for
the rack: a 100-rack site of one profile keeps one shape, not a `Key` per point of every rack."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np

from gateway.alarms.columns import Table, of, select
from gateway.keys import distinct_keys
from gateway.model import Batch, Key, KeyRows, Keys
from gateway.store.codec import key_table_from_body, keys_body

RACKS, POINTS = 100, 1000


def rows_of(rack: str) -> list[Key]:
    return [Key("cell_voltage", "V", rack, i // 20 + 1, i % 20 + 1) for i in range(POINTS)]


def test_tables_of_racks_of_one_shape_hold_no_key_per_point() -> None:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        tables = [Keys.of(rows_of(f"shape-test-{n}")) for n in range(RACKS)]
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename") if s.size_diff > 0)
    # a Key per point would be 100,000 tuples (about 8 MB); the shape is 1,000 places
    assert grown < 1_000_000, f"{RACKS} tables of {POINTS} points took {grown} bytes"
    a, b = tables[0].rows, tables[1].rows
    assert type(a) is KeyRows and type(b) is KeyRows and a.shape is b.shape


def test_tables_of_one_racks_blocks_in_other_rounds_share_their_places() -> None:
    """A CAN rack's windows: tables of the same blocks in 1 to 8 rounds (each a new shape) share one
    object per place, so each table holds a reference a point, not a tuple a point."""
    block = rows_of("can-rounds")[:260]
    Keys.of(block)  # the places, made once
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        tables = [Keys.of(block * rounds + block[: rounds * 7]) for rounds in range(1, 9)]
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    points = sum(len(t) for t in tables)
    grown = sum(s.size_diff for s in after.compare_to(before, "filename") if s.size_diff > 0)
    # a new place tuple per point would be about 80 bytes a point; a reference is 8
    assert grown < 24 * points, f"{len(tables)} tables of {points} points took {grown} bytes"
    one, other = tables[0].rows, tables[-1].rows
    assert type(one) is KeyRows and type(other) is KeyRows
    assert all(a is b for a, b in zip(one.shape, other.shape, strict=False))


def test_a_table_of_one_rack_reads_as_its_keys() -> None:
    rows = rows_of("r1")
    keys = Keys.of(rows)
    assert keys is Keys.of(list(rows)) and len(keys) == POINTS and keys.n == POINTS
    assert keys.rows == tuple(rows) and list(keys.rows) == rows
    assert keys.rows[5] == rows[5] and type(keys.rows[5]) is Key and keys.rows[-1].rack == "r1"
    assert keys.rows[:3] == tuple(rows[:3]) and keys.rows[np.intp(7)] == rows[7]
    assert keys.digest == Keys(tuple(rows)).digest  # the digest the store keeps a table by: its content
    assert key_table_from_body(keys_body(keys)).keys is keys
    mixed = Keys.of([*rows[:2], Key("soc", "%", "r2")])
    assert type(mixed.rows) is tuple and mixed.rows[2].rack == "r2"


def test_the_digest_names_the_content_in_every_process() -> None:
    """A stored table is found by its digest: equal content gives it again (here after the process's
    place texts are forgotten, as in a new process); a table that differs in any field gives another."""
    base = [Key("cell_voltage", "V", "r1", 1, 2), Key("soc", "%", "r1")]
    digest = Keys(tuple(base)).digest
    Keys._texts.clear()
    assert Keys(tuple(base)).digest == digest
    others = [
        [Key("cell_voltage", "V", "r2", 1, 2), Key("soc", "%", "r2")],  # another rack
        [Key("cell_voltage", "mV", "r1", 1, 2), Key("soc", "%", "r1")],  # a unit
        [Key("cell_voltage", "V", "r1", 1, 2), Key("soc", "%", "r1", 0)],  # module 0, not none
        [Key("cell_voltage", "V", "r1", 12), Key("soc", "%", "r1")],  # module 12, not module 1 cell 2
        [Key("soc", "%", "r1"), Key("cell_voltage", "V", "r1", 1, 2)],  # the order
        [Key("cell_voltage", "V", "r1", 1, 2), Key("soc", "%", "r2")],  # two racks (a tuple of keys)
        [Key("cell_voltage", "V", "r1", 1, 2), Key("soc", "%", "r1"), Key("soc", "%", "r1")],
    ]
    digests = {digest, *(Keys(tuple(rows)).digest for rows in others)}
    assert len(digests) == 1 + len(others)
    assert Keys(tuple(others[5])).digest == Keys(tuple(others[5])).digest


def test_distinct_keys_in_the_order_they_first_appear_and_each_points_number() -> None:
    """A CAN window's table repeats its blocks' keys round after round; per-key work is done per distinct key."""
    block_a = [Key("cell_voltage", "V", "r1", 1, c) for c in (1, 2, 3)]
    block_b = [Key("soc", "%", "r1"), Key("current", "A", "r1")]
    rows = block_b + block_a + block_a + block_b + block_a  # rounds of blocks, one block more often
    for table in (Keys.of(rows), Keys.of([*rows, Key("soc", "%", "r2")])):  # one rack; several (a tuple)
        distinct, inverse = distinct_keys(table)
        assert distinct[:5] == block_b + block_a and [type(k) for k in distinct] == [Key] * len(distinct)
        assert [distinct[i] for i in inverse.tolist()] == list(table.rows)
        assert len(set(distinct)) == len(distinct)
    empty, none = distinct_keys(Keys.of(()))
    assert empty == [] and len(none) == 0


def test_a_cut_of_a_batch_keeps_the_shape_form() -> None:
    keys = Keys.of(rows_of("r1"))
    n = len(keys)
    batch = Batch("s", keys, np.zeros(n, np.int64), np.arange(n, dtype=np.float64), np.zeros(n, np.uint8))
    cut = batch.take([3, 1], intern=False)
    assert type(cut.keys.rows) is KeyRows and list(cut.keys.rows) == [keys.rows[3], keys.rows[1]]
    assert batch.take([3, 1]).keys is Keys.of([keys.rows[3], keys.rows[1]])
    assert batch.take([]).n == 0


def test_alarm_rules_of_racks_of_one_shape_share_their_point_indices() -> None:
    a = select(Table(Keys.of(rows_of("r1"))), of("cell_voltage"), None)
    b = select(Table(Keys.of(rows_of("r2"))), of("cell_voltage"), None)
    assert a is not None and b is not None and a.idx is b.idx and not a.idx.flags.writeable
    assert a.element(0).rack == "r1" and b.element(0).rack == "r2"
