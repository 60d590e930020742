"""Rendering from columns: plans per key table (bounded, per sink), the clock guard on rendered lines,
retries, rows one at a time, value texts, and batches built straight from columns."""

from __future__ import annotations

import zlib

import numpy as np

from gateway.model import GOOD, QUALITY_CODE, Batch, Key, Keys, Sample
from gateway.sinks.clock import ClockGuard
from gateway.sinks.columns import PlanCache, number_texts, occurrences, run_ranks, run_texts
from gateway.sinks.influx.lineproto import LineRenderer
from gateway.sinks.influx.sink import chunk_items, chunks_body, gzip_body, render_chunks, render_row
from gateway.sinks.mqtt.payloads import MqttState, Topics, render_rows, state_messages
from gateway.sinks.mqtt.payloads import render_row as mqtt_row
from gateway.store.outbox import Row

T = 1_700_000_000_123_456_789
R1 = "cell,site=s,rack=r1,module=1"


def rack_keys(rack: str) -> Keys:
    """The bench rack: 800 cell voltages (20 per module), 200 temperatures (5 per module)."""
    rows = [Key("cell_voltage", "V", rack, i // 20 + 1, i % 20 + 1) for i in range(800)]
    rows += [Key("cell_temperature", "°C", rack, i // 5 + 1, i % 5 + 1) for i in range(200)]
    return Keys.of(rows)


def modbus_batch(rack: str, ts: int, source: str = "") -> Batch:
    """One poll of the bench rack built from columns: 8 blocks of 125 registers, each at its own time."""
    i = np.arange(1000)
    values = np.where(i < 800, 3.2 + (i % 97) / 1000, 20.0 + (i % 13) / 10)
    ts_col = ts + (i // 125).astype(np.int64) * 1_370_000
    quality = np.full(1000, GOOD, dtype=np.uint8)
    return Batch(source or f"modbus:{rack}", rack_keys(rack), ts_col, values, quality, device=rack, created=ts)


def items(rows: list[Row], renderer: LineRenderer, guard: ClockGuard | None) -> list[tuple[int, str]]:
    chunks, pending = render_chunks(rows, renderer, guard)
    if guard is not None and pending is not None:
        guard.commit(pending)
    return chunk_items(chunks)


def test_columns_render_like_their_samples() -> None:
    b = modbus_batch("r1", T)
    again = Batch.of_samples(b.source, b.samples(), device=b.device, created=b.created)
    assert again.keys is b.keys  # interned
    r = LineRenderer("s", "ms")
    assert items([Row(1, T, b)], r, None) == items([Row(1, T, again)], LineRenderer("s", "ms"), None)
    lines = [line for _seq, line in items([Row(1, T, b)], r, None)]
    assert len(lines) == 1000  # a cell's voltage and temperature are read at other times: a line each
    assert lines[0] == f"{R1},cell=1,quality=good,source=modbus:r1 cell_voltage=3.2 1700000000123"
    assert lines[-1].endswith(" cell_temperature=21.1 1700000000133")


def test_blocks_answered_within_one_unit_of_the_precision_share_lines() -> None:
    b = modbus_batch("r1", T)
    fast = Batch(b.source, b.keys, T + np.arange(1000, dtype=np.int64) * 100, b.values, b.quality, device="r1")
    guard = ClockGuard("a")
    lines = [line for _seq, line in items([Row(1, T, fast)], LineRenderer("s", "ms"), guard)]
    # the whole poll within 0.1 ms: a cell's voltage and temperature are one point of the millisecond
    assert len(lines) == 800
    assert lines[0] == f"{R1},cell=1,quality=good,source=modbus:r1 cell_voltage=3.2,cell_temperature=20.7 1700000000123"
    assert guard.steps == 0 and "clock_step" not in "".join(lines)
    # to the nanosecond they are different times: a line each
    assert len(items([Row(1, T, fast)], LineRenderer("s", "ns"), ClockGuard("b"))) == 1000


def test_one_quantity_twice_within_one_unit_keeps_both_readings() -> None:
    keys = Keys.of([Key("cell_voltage", "V", "r1", 1, 1), Key("cell_temperature", "°C", "r1", 1, 1)] * 2)
    ts = np.array([T, T, T + 200_000, T + 200_000], dtype=np.int64)  # two polls 0.2 ms apart
    b = Batch("modbus:r1", keys, ts, np.array([3.2, 20.0, 3.3, 21.0]), np.full(4, GOOD, dtype=np.uint8))
    lines = [line for _seq, line in items([Row(1, T, b)], LineRenderer("s", "ms"), ClockGuard("a"))]
    # merged by the millisecond, cell_voltage would come twice in one line and InfluxDB keep only the last
    assert lines == [
        f"{R1},cell=1,quality=good,source=modbus:r1 cell_voltage=3.2,cell_temperature=20.0 1700000000123",
        f"{R1},cell=1,quality=good,source=modbus:r1 cell_voltage=3.3,cell_temperature=21.0 1700000000124",
    ]


def test_readings_of_one_window_at_one_time_move_a_unit_each_and_are_never_a_clock_step() -> None:
    # A CAN window: three frames of one message (two cells) decoded at one time, beside a rack quantity.
    keys = Keys.of([Key("cell_voltage", "V", "r1", 1, 1), Key("cell_voltage", "V", "r1", 1, 2)] * 3
                   + [Key("soc", "%", "r1")])  # fmt: skip
    ts = np.full(7, T, dtype=np.int64)
    values = np.array([3.21, 3.22, 3.23, 3.24, 3.25, 3.26, 50.0])
    b = Batch("can:r1", keys, ts, values, np.full(7, GOOD, dtype=np.uint8))
    guard = ClockGuard("a")
    renderer = LineRenderer("s", "ms")
    lines = [line for _seq, line in items([Row(1, T, b)], renderer, guard)]
    head = "cell,site=s,rack=r1,module=1,cell={},quality=good,source=can:r1 cell_voltage={} {}"
    assert lines == [
        head.format(1, 3.21, 1700000000123), head.format(2, 3.22, 1700000000123),
        head.format(1, 3.23, 1700000000124), head.format(2, 3.24, 1700000000124),
        head.format(1, 3.25, 1700000000125), head.format(2, 3.26, 1700000000125),
        "rack,site=s,rack=r1,quality=good,source=can:r1 soc=50.0 1700000000123",
    ]  # fmt: skip
    assert guard.steps == 0
    # The next window, 20 ms on, is after every moved reading: written as it is.
    later = Batch("can:r1", keys, ts + 20_000_000, values, np.full(7, GOOD, dtype=np.uint8))
    again = [line for _seq, line in items([Row(2, T, later)], renderer, guard)]
    assert [line.rsplit(" ", 1)[1] for line in again] == ["1700000000143"] * 2 + ["1700000000144"] * 2 + [
        "1700000000145"
    ] * 2 + ["1700000000143"]
    assert guard.steps == 0 and "clock_step" not in "".join(lines + again)


def test_run_ranks_and_occurrences() -> None:
    again = np.array([False, True, True, False, True])
    assert run_ranks(again).tolist() == [0, 0, 1, 2, 0, 1]
    assert run_ranks(np.zeros(0, dtype=bool)).tolist() == [0]
    assert occurrences(np.array([5, 3, 5, 5, 3, 7])).tolist() == [0, 0, 1, 2, 1, 0]


def test_a_retry_renders_the_same_lines_until_committed() -> None:
    guard = ClockGuard("a")
    r = LineRenderer("s", "ms")
    rows = [Row(1, T, modbus_batch("r1", T)), Row(2, T, modbus_batch("r2", T))]
    first, _ = render_chunks(rows, r, guard)  # the write failed: nothing committed
    again, pending = render_chunks(rows, r, guard)
    assert first == again
    assert pending is not None
    guard.commit(pending)
    after, _ = render_chunks(rows, r, guard)  # written: the same points now move one unit on
    assert after != first
    moved = [line for _seq, line in chunk_items(after) if "rack=r1,module=1,cell=6," in line]
    assert moved == [f"{R1},cell=6,quality=good,source=modbus:r1 cell_voltage=3.205 1700000000124"]


def test_rows_render_one_at_a_time_like_all_together() -> None:
    rows = [Row(i + 1, T, modbus_batch(f"r{i}", T + i)) for i in range(3)]
    guard = ClockGuard("a")
    pending = guard.begin()
    r = LineRenderer("s", "ms")
    one_by_one = [c for row in rows for c in render_row(row, r, guard, pending)]
    assert one_by_one == render_chunks(rows, LineRenderer("s", "ms"), ClockGuard("b"))[0]


def test_a_series_again_at_an_earlier_time_in_one_batch_goes_through_the_guard() -> None:
    b = modbus_batch("r1", T)
    backwards = b.take(np.arange(999, -1, -1))
    guard = ClockGuard("a")
    lines = [line for _seq, line in items([Row(1, T, backwards)], LineRenderer("s", "ns"), guard)]
    # cell 1 of module 1: its temperature (at the last block's time) comes first, its voltage later
    voltage = [line for line in lines if "module=1,cell=1," in line and "cell_voltage" in line]
    assert voltage == [f"{R1},cell=1,quality=good,source=modbus:r1,clock_step=1 cell_voltage=3.2 {T}"]
    assert guard.steps == 1


def test_plans_are_per_sink_and_bounded() -> None:
    r = LineRenderer("s", "ns", max_points=2500)
    for i in range(5):
        items([Row(1, T, modbus_batch(f"r{i}", T))], r, None)
    assert len(r.plans) == 2  # the two most recent tables of 1,000 points
    state = MqttState()
    for i in range(3):
        render_rows([Row(1, T, modbus_batch("r1", T, source=f"src{i}"))], Topics("bms", "s"), state)
    assert len(state.plans) == 1  # MQTT telemetry does not depend on the source: one plan
    cache: PlanCache[str] = PlanCache(max_points=10)
    k1, k2 = Keys.of([("a", "")] * 6), Keys.of([("b", "")] * 6)
    cache.put(k1, "", "one")
    cache.put(k2, "", "two")
    assert cache.get(k1, "") is None and cache.get(k2, "") == "two"


def test_number_texts_are_float_repr() -> None:
    odd = [0.0, -0.0, 0.0, -0.0, 1e308, 5e-324, 0.1, 1 / 3, 3.2, 1e20, 1.5e-7, -2.5] * 3
    for values in (odd, odd[:5], [3.2, 3.3] * 40 + [-0.0, 0.0]):
        assert number_texts(np.asarray(values)).tolist() == [float.__repr__(v) for v in values]
    assert run_texts(np.asarray([5, 5, 7, 5], dtype=np.int64)).tolist() == ["5", "5", "7", "5"]


def test_gzip_body_is_the_body() -> None:
    chunks, _ = render_chunks([Row(1, T, modbus_batch("r1", T))], LineRenderer("s", "ms"), None)
    body = chunks_body(chunks).encode()
    packed = gzip_body(body)
    assert packed[:2] == b"\x1f\x8b" and len(packed) < len(body) / 5
    assert zlib.decompress(packed, wbits=31) == body


def test_mqtt_rows_one_at_a_time_like_all_together() -> None:
    topics = Topics("bms", "s")
    rows = [Row(i + 1, T, modbus_batch(f"r{i % 2}", T + i)) for i in range(4)]
    state = MqttState()
    touched: list[str] = []
    msgs = [m for r in rows for m in mqtt_row(r, topics, state, touched)]
    msgs += state_messages(touched, topics, state)
    assert touched == ["r0", "r1"]
    assert msgs == render_rows(rows, topics, MqttState())


def test_mqtt_mixed_qualities_device_times_and_a_state_key_twice() -> None:
    samples = [
        Sample(T, "cell_voltage", 3.3, "V", "good", "rA", 1, 1),
        Sample(T, "cell_voltage", 3.4, "V", "stale", "rB", 1, 1, T - 9),
        Sample(T, "soc", 50.5, "%", "good", "rA"),
        Sample(T + 7, "soc", 61.5, "%", "good", "rB"),
        Sample(T + 8, "soc", 62.5, "%", "comm_loss", "rB"),  # the same state key again: the later wins
    ]
    msgs = render_rows([Row(3, T, Batch.of_samples("can:x", samples))], Topics("bms", "s"), MqttState())
    assert [m.topic for m in msgs] == ["bms/s/rA/telemetry", "bms/s/rB/telemetry", "bms/s/rA/state", "bms/s/rB/state"]
    assert msgs[1].payload.decode() == (
        '{"seq":3,"site":"s","rack":"rB","source":"can:x","samples":['
        f'{{"ts":{T},"q":"cell_voltage","v":3.4,"u":"V","ql":"stale","m":1,"c":1,"dts":{T - 9}}},'
        f'{{"ts":{T + 7},"q":"soc","v":61.5,"u":"%","ql":"good"}},'
        f'{{"ts":{T + 8},"q":"soc","v":62.5,"u":"%","ql":"comm_loss"}}]}}'
    )
    assert msgs[3].payload.decode() == (
        '{"site":"s","rack":"rB","values":{'
        f'"cell_voltage/1/1":{{"v":3.4,"u":"V","ql":"stale","ts":{T}}},'
        f'"soc":{{"v":62.5,"u":"%","ql":"comm_loss","ts":{T + 8}}}}}}}'
    )
    assert QUALITY_CODE["comm_loss"] != GOOD
