"""The compiled read plan: limits, gaps, unreadable ranges, intervals, and splitting to the bad register."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sources.modbus.plan import Block, Point, plan_reads, split_block


def pt(address: int, width: int = 1, table: str = "holding", interval: float = 1.0) -> Point:
    dtype = {1: "uint16", 2: "uint32", 4: "uint64"}.get(width, "string")
    if table in ("coil", "discrete"):
        dtype = "bool"
    return Point("raw.x", "", table, address, width, dtype, "ABCD", interval)


def covered(blocks: list[Block]) -> set[Point]:
    return {p for b in blocks for p in b.points}


def test_contiguous_registers_become_one_read() -> None:
    blocks = plan_reads([pt(a) for a in range(100)])
    assert [(b.start, b.count) for b in blocks] == [(0, 100)]


def test_at_most_125_registers_and_2000_bits_per_read() -> None:
    blocks = plan_reads([pt(a) for a in range(300)])
    assert [(b.start, b.count) for b in blocks] == [(0, 125), (125, 125), (250, 50)]
    bits = plan_reads([pt(a, table="coil") for a in range(4500)])
    assert [(b.start, b.count) for b in bits] == [(0, 2000), (2000, 2000), (4000, 500)]


def test_gap_rule() -> None:
    points = [pt(0), pt(10), pt(30)]
    assert [(b.start, b.count) for b in plan_reads(points, max_gap=9)] == [(0, 11), (30, 1)]
    assert [(b.start, b.count) for b in plan_reads(points, max_gap=8)] == [(0, 1), (10, 1), (30, 1)]
    assert len(plan_reads(points, max_gap=100)) == 1


def test_never_reads_across_an_unreadable_register() -> None:
    points = [pt(0), pt(1), pt(3), pt(4)]
    blocks = plan_reads(points, max_gap=10, unreadable={"holding": [(2, 2)]})
    assert [(b.start, b.count) for b in blocks] == [(0, 2), (3, 2)]
    # the range belongs to its table only
    assert len(plan_reads(points, max_gap=10, unreadable={"input": [(2, 2)]})) == 1


def test_tables_and_intervals_are_read_separately() -> None:
    points = [pt(0), pt(1, table="input"), pt(2, interval=5.0), pt(3)]
    blocks = plan_reads(points)
    assert sorted((b.interval, b.table, b.start, b.count) for b in blocks) == [
        (1.0, "holding", 0, 4),
        (1.0, "input", 1, 1),
        (5.0, "holding", 2, 1),
    ]
    assert [p.address for p in blocks[0].points] == [0, 3]


def test_one_request_per_point() -> None:
    assert len(plan_reads([pt(a) for a in range(10)], one_per_point=True)) == 10


def test_a_multi_register_point_is_never_cut() -> None:
    blocks = plan_reads([pt(a * 4, width=4) for a in range(40)])
    for b in blocks:
        assert b.count <= 125
        assert all(b.start <= p.address and p.end <= b.end for p in b.points)


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.integers(0, 3000), st.sampled_from([1, 2, 4, 8])),
        min_size=1,
        max_size=80,
        unique_by=lambda t: t[0],
    ),
    st.integers(0, 40),
    st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 20)), max_size=4),
)
def test_plan_properties(spec: list[tuple[int, int]], gap: int, holes: list[tuple[int, int]]) -> None:
    # non-overlapping points outside the holes
    unreadable = [(a, a + n) for a, n in holes]
    points: list[Point] = []
    taken: set[int] = set()
    for addr, width in sorted(spec):
        span = set(range(addr, addr + width))
        if span & taken or any(lo <= addr + width - 1 and addr <= hi for lo, hi in unreadable):
            continue
        taken |= span
        points.append(pt(addr, width))
    blocks = plan_reads(points, max_gap=gap, unreadable={"holding": unreadable})
    assert covered(blocks) == set(points)  # every point once
    assert sum(len(b.points) for b in blocks) == len(points)
    for b in blocks:
        assert 1 <= b.count <= 125
        assert all(b.start <= p.address and p.end <= b.end for p in b.points)
        assert not any(lo <= b.end - 1 and b.start <= hi for lo, hi in unreadable)


def read_ok(block: Block, bad: set[int]) -> bool:
    return not any(block.start <= a < block.end for a in bad)


def isolate(blocks: list[Block], bad: set[int]) -> tuple[list[Block], int]:
    """What the poller does: read; on an illegal address split and read the halves; count the reads."""
    reads = 0
    out: list[Block] = []
    todo = list(blocks)
    while todo:
        b = todo.pop(0)
        reads += 1
        halves = split_block(b)
        if read_ok(b, bad) or len(halves) == 1:
            out.append(b)
        else:
            todo[0:0] = halves
    return out, reads


def test_split_finds_the_bad_register_and_remembers_it() -> None:
    points = [pt(a) for a in range(120)]
    blocks = plan_reads(points)
    assert len(blocks) == 1
    final, reads = isolate(blocks, {77})
    assert reads <= 1 + 2 * 7  # one bisection path through 120 points
    bad = [b for b in final if not read_ok(b, {77})]
    assert [(b.start, b.count) for b in bad] == [(77, 1)]
    assert covered(final) == set(points)
    # the next cycle reads the remembered plan: no more splitting, every other point good
    again, reads2 = isolate(final, {77})
    assert again == final and reads2 == len(final)
    assert len(final) <= 2 * 7 + 1


@given(st.sets(st.integers(0, 249), max_size=5))
def test_split_isolates_exactly_the_bad_points(bad: set[int]) -> None:
    points = [pt(a) for a in range(250)]
    final, _ = isolate(plan_reads(points), bad)
    failing = [b for b in final if not read_ok(b, bad)]
    assert {b.points[0].address for b in failing} == bad
    assert all(len(b.points) == 1 for b in failing)
    assert covered(final) == set(points)


def test_a_bad_register_in_a_gap_stops_failing_once_split() -> None:
    blocks = plan_reads([pt(0), pt(10)], max_gap=20)
    final, _ = isolate(blocks, {5})
    assert all(read_ok(b, {5}) for b in final)
    assert covered(final) == set(covered(blocks))
