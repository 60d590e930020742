"""Line protocol of batches with a layout (prepared per layout) is byte for byte the plain rendering,
also through the clock guard, for odd values, qualities, a wrong layout and no layout."""

from __future__ import annotations

import zlib

import pytest

from gateway.model import Batch, DeviceState, DeviceStatus, Layout, Quality, Sample
from gateway.sinks.clock import ClockGuard
from gateway.sinks.influx.lineplan import plan_for
from gateway.sinks.influx.sink import (
    chunk_items,
    chunks_body,
    gzip_body,
    render,
    render_chunks,
    render_parts,
    render_row,
)
from gateway.sinks.layoutcheck import fitted_segments
from gateway.store.outbox import Row

T = 1_700_000_000_123_456_789
NAN, INF = float("nan"), float("inf")


def layout_of(samples: list[Sample], bounds: list[int]) -> Layout:
    keys = [(s.quantity, s.unit, s.rack, s.module, s.cell) for s in samples]
    return Layout(keys, list(zip(bounds, [*bounds[1:], len(samples)], strict=True)))


def modbus_batch(rack: str, ts: int, layout: Layout | None = None, source: str = "") -> Batch:
    """The bench rack: 800 cell voltages (20 per module), 200 temperatures (5 per module), read in
    8 blocks of 125 registers, each block at its own time."""
    samples = []
    for i in range(1000):
        t = ts + (i // 125) * 1_370_000
        if i < 800:
            m, c = divmod(i, 20)
            samples.append(Sample(t, "cell_voltage", 3.2 + (i % 97) / 1000, "V", Quality.GOOD, rack, m + 1, c + 1))
        else:
            m, c = divmod(i - 800, 5)
            samples.append(Sample(t, "cell_temperature", 20.0 + (i % 13) / 10, "°C", "good", rack, m + 1, c + 1))
    lay = layout or layout_of(samples, list(range(0, 1000, 125)))
    return Batch(source or f"modbus:{rack}", samples, device=rack, created=ts, layout=lay)


def odd_batch(rack: str, ts: int, layout: Layout | None = None, shift: int = 0) -> Batch:
    """Segments with lines of several fields, rack/module/cell levels, and odd values in some."""
    seg = [
        # a plain segment whose lines hold several fields (rack level, and two quantities of a cell)
        Sample(ts, "soc", 55.5, "%", "good", rack),
        Sample(ts, "rack_voltage", 800.25, "V", "good", rack),
        Sample(ts, "cell_voltage", 3.301, "V", "good", rack, 2, 7),
        Sample(ts, "module_voltage", 52.8, "V", "good", rack, 2),
        Sample(ts, "cell_temperature", 25.0, "°C", "good", rack, 2, 7),
        Sample(ts, "raw.c", 8.5, "", "good", rack, None, 5),
        Sample(ts, "rack_current", -12.25, "A", "good", rack),
    ]

    def cv(t: int, v: object, quality: str, module: int, cell: int) -> Sample:
        return Sample(ts + t, "cell_voltage", v, "V", quality, rack, module, cell)  # type: ignore[arg-type]

    odd = [  # one segment each
        [cv(1, NAN, "bad", 3, 1), cv(1, 3.2, "good", 3, 2)],
        [cv(2, INF, "good", 3, 1), cv(2, 3.2, "good", 3, 2)],
        [cv(3, None, "comm_loss", 3, 1), cv(3, 3.2, "good", 3, 2)],
        [Sample(ts + 4, "cell_balancing", True, "", "good", rack, 3, 1), cv(4, 3.2, "good", 3, 2)],
        [Sample(ts + 5, "raw.n", 7, "", "good", rack), Sample(ts + 5, "raw.big", 10**20, "", "good", rack)],
        [Sample(ts + 6, "contactor_state", 'cl"o\\sed', "", "good", rack), Sample(ts + 6, "soh", 9.5, "%", "ok", rack)],
        [Sample(ts + 7, "soc", 56.0, "%", "good", rack, None, None, ts - 5)],  # a device time
        [cv(8, 3.1, "stale", 4, 1), cv(8, 3.2, Quality.GOOD, 4, 2)],
        [cv(9, -INF, "missing", 4, 1)],
        [cv(10, 1e308, "good", 4, 1), cv(10, 1e308, "good", 4, 2)],  # finite values whose sum is not
        [cv(11, 0.0, "good", 4, 1), cv(11, -0.0, "good", 4, 2), cv(11, 3, "good", 4, 3)],  # an int
    ]
    samples = list(seg)
    bounds = [0]
    for o in odd:
        bounds.append(len(samples))
        samples += o
    samples = [s._replace(ts=s.ts + shift) for s in samples]
    return Batch(f"modbus:{rack}", samples, device=rack, created=ts, layout=layout or layout_of(samples, bounds))


def reference(rows: list[Row], site: str, precision: str, guard: ClockGuard | None) -> list[tuple[int, str]]:
    if guard is None:
        return render(rows, site, precision)
    items, state = guard.apply_parts(render_parts(rows, site, precision))
    guard.commit(state)
    return items


def fast(rows: list[Row], site: str, precision: str, guard: ClockGuard | None) -> list[tuple[int, str]]:
    chunks, pending = render_chunks(rows, site, precision, guard)
    items = chunk_items(chunks)
    assert chunks_body(chunks) == "\n".join(line for _, line in items)
    if guard is not None and pending is not None:
        guard.commit(pending)
    return items


def plain(b: Batch) -> Batch:
    return Batch(b.source, b.samples, device=b.device, created=b.created, status=b.status)


@pytest.mark.parametrize("precision", ["ns", "us", "ms", "s"])
@pytest.mark.parametrize("guarded", [True, False])
def test_layout_lines_are_the_plain_lines(precision: str, guarded: bool) -> None:
    g_fast, g_ref = (ClockGuard("a"), ClockGuard("b")) if guarded else (None, None)
    lay_m = modbus_batch("r1", T).layout
    lay_o = odd_batch("r1", T).layout
    for k in range(4):
        ts = T + k * 1_000_000_000
        bs = [modbus_batch("r1", ts, lay_m), odd_batch("r1", ts, lay_o), modbus_batch("r2", ts)]
        bs[2].status = DeviceStatus("r2", DeviceState.DEGRADED, "some points fail", ts)
        rows = [Row(i + 1, ts, b) for i, b in enumerate(bs)]
        expected = reference([Row(r.seq, r.ts, plain(r.batch)) for r in rows], "site 1", precision, g_ref)
        assert fast(rows, "site 1", precision, g_fast) == expected
        if g_fast is not None and g_ref is not None:
            assert g_fast.newest == g_ref.newest and g_fast.stepped == g_ref.stepped


def test_plain_segments_are_found() -> None:
    segs = fitted_segments(odd_batch("r1", T))
    assert segs is not None
    assert [s.reprs is not None for s in segs] == [True] + [False] * 11
    segs = fitted_segments(modbus_batch("r1", T))
    assert segs is not None and all(s.reprs is not None for s in segs) and len(segs) == 8


def test_a_layout_that_does_not_fit_is_not_trusted() -> None:
    good = modbus_batch("r1", T)
    assert good.layout is not None
    other_rack = modbus_batch("r2", T, good.layout)  # the layout of a different batch
    shuffled = Batch(good.source, good.samples[::-1], created=T, layout=good.layout)
    shorter = Batch(good.source, good.samples[:-1], created=T, layout=good.layout)
    moved = [s._replace(ts=s.ts + 1) if i == 3 else s for i, s in enumerate(good.samples)]  # not one time per segment
    moved_b = Batch(good.source, moved, created=T, layout=good.layout)
    same_ts = Batch(good.source, [s._replace(ts=T) for s in good.samples], created=T, layout=good.layout)
    other_unit = [s._replace(unit="mV") if i == 5 else s for i, s in enumerate(good.samples)]
    unit_b = Batch(good.source, other_unit, created=T, layout=good.layout)
    for b in (other_rack, shuffled, shorter, moved_b, unit_b, same_ts):
        assert fitted_segments(b) is None
        g1, g2 = ClockGuard("a"), ClockGuard("b")
        assert fast([Row(1, T, b)], "s", "ns", g1) == reference([Row(1, T, plain(b))], "s", "ns", g2)


@pytest.mark.parametrize("precision", ["ns", "s"])
def test_clock_steps_and_same_time_points_through_the_layout_path(precision: str) -> None:
    g_fast, g_ref = ClockGuard("a"), ClockGuard("b")
    lay = modbus_batch("r1", T).layout
    lay_o = odd_batch("r1", T).layout
    # forward, the same time again (moves one unit on), a step back (tagged), again, forward past the newest
    for seq, shift in enumerate((0, 0, -(10**12), -(10**12), 10**13, 10**13 + 1), 1):
        bs = [modbus_batch("r1", T + shift, lay), odd_batch("r1", T, lay_o, shift)]
        rows = [Row(seq * 10 + i, T, b) for i, b in enumerate(bs)]
        expected = reference([Row(r.seq, r.ts, plain(r.batch)) for r in rows], "s", precision, g_ref)
        got = fast(rows, "s", precision, g_fast)
        assert got == expected
        assert g_fast.newest == g_ref.newest and g_fast.stepped == g_ref.stepped and g_fast.steps == g_ref.steps
    assert g_fast.steps >= 1  # stepped (the odd batch shares series with the Modbus one: several steps)


def test_a_retry_renders_the_same_lines_until_committed() -> None:
    guard = ClockGuard("a")
    rows = [Row(1, T, modbus_batch("r1", T)), Row(2, T, odd_batch("r1", T))]
    first, _ = render_chunks(rows, "s", "ms", guard)  # the write failed: nothing committed
    again, pending = render_chunks(rows, "s", "ms", guard)
    assert first == again
    assert pending is not None
    guard.commit(pending)
    after, _ = render_chunks(rows, "s", "ms", guard)  # written: the same points now move one unit on
    assert after != first


def test_escaped_tags_take_the_plain_way() -> None:
    b = modbus_batch("r 1", T, source="src,x=y")
    assert b.layout is not None
    assert all(s is None for s in plan_for(b.layout, "s", b.source).segments)
    for guard in (ClockGuard("a"), None):
        ref = reference([Row(1, T, plain(b))], "s", "ns", ClockGuard("b") if guard else None)
        assert fast([Row(1, T, b)], "s", "ns", guard) == ref


def test_rows_render_one_at_a_time_like_all_together() -> None:
    rows = [Row(i + 1, T, modbus_batch(f"r{i}", T + i)) for i in range(3)]
    guard = ClockGuard("a")
    pending = guard.begin()
    one_by_one = [c for r in rows for c in render_row(r, "s", "ms", guard, pending)]
    assert one_by_one == render_chunks(rows, "s", "ms", ClockGuard("b"))[0]


def test_gzip_body_is_the_body() -> None:
    body = chunks_body(render_chunks([Row(1, T, modbus_batch("r1", T))], "s", "ms", None)[0]).encode()
    packed = gzip_body(body)
    assert packed[:2] == b"\x1f\x8b" and len(packed) < len(body) / 5
    assert zlib.decompress(packed, wbits=31) == body


def test_the_sinks_share_the_check_of_a_batch_until_it_changes() -> None:
    b = modbus_batch("r1", T)
    segments = fitted_segments(b)
    assert segments is not None and fitted_segments(b) is segments
    b.samples = b.samples[:-1]
    assert fitted_segments(b) is None
    b.samples = modbus_batch("r1", T).samples
    b.layout = None
    assert fitted_segments(b) is None


@pytest.mark.parametrize("precision", ["ns", "us", "ms", "s"])
def test_batches_without_layout_through_the_guard(precision: str) -> None:
    """A series may come again in a batch (a cell's voltage and temperature read at other times), also
    within one unit of the precision: the later point moves one unit on, as line by line."""
    g_fast, g_ref = ClockGuard("a"), ClockGuard("b")
    for seq, shift in enumerate((0, 0, -(10**12), 10**13), 1):
        bs = [plain(modbus_batch("r1", T + shift)), plain(odd_batch("r1", T, shift=shift))]
        backwards = plain(modbus_batch("r2", T + shift))
        backwards.samples.reverse()  # a series again at an earlier time in one batch
        bs.append(backwards)
        rows = [Row(seq * 10 + i, T, b) for i, b in enumerate(bs)]
        assert fast(rows, "s", precision, g_fast) == reference(rows, "s", precision, g_ref)
        assert g_fast.newest == g_ref.newest and g_fast.stepped == g_ref.stepped
