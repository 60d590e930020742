"""MQTT telemetry and retained state of batches with a layout (prepared per layout) are byte for byte
those of the sample-by-sample rendering, for every level filter, odd values, racks sharing a
segment, a wrong layout and no layout."""

from __future__ import annotations

import pytest

from gateway.model import Batch, DeviceState, DeviceStatus, Layout, Sample
from gateway.sinks.mqtt.payloads import ALL_LEVELS, MqttState, Topics, render_row, render_rows, state_messages
from gateway.store.outbox import Row
from tests.unit.test_sink_layout_influx import T, layout_of, modbus_batch, odd_batch, plain


def shared_batch(ts: int, layout: Layout | None = None) -> Batch:
    """Two racks in one segment, interleaved, and a segment of one rack only."""
    samples = [
        Sample(ts, "cell_voltage", 3.3, "V", "good", "rA", 1, 1),
        Sample(ts, "cell_voltage", 3.4, "V", "good", "rB", 1, 1),
        Sample(ts, "soc", 50.5, "%", "good", "rA"),
        Sample(ts, "soc", 60.5, "%", "good", "rB"),
        Sample(ts, "module_voltage", 51.0, "V", "good", "rB", 1),
        Sample(ts + 7, "soc", 61.5, "%", "good", "rB"),
        Sample(ts + 7, "soc", 62.5, "%", "good", "rB"),  # the same state key twice: the later wins
    ]
    return Batch("can:x", samples, created=ts, layout=layout or layout_of(samples, [0, 5]))


def messages(rows: list[Row], topics: Topics, state: MqttState) -> list[tuple[str, bytes, int, bool]]:
    return [(m.topic, m.payload, m.qos, m.retain) for m in render_rows(rows, topics, state)]


@pytest.mark.parametrize("levels", [ALL_LEVELS, frozenset({"rack"}), frozenset({"cell", "module"})])
def test_layout_messages_and_state_are_the_plain_ones(levels: frozenset[str]) -> None:
    topics = Topics("bms", "site 1", 1, levels)
    fast_state, plain_state = MqttState(), MqttState()
    lay_m, lay_o, lay_s = modbus_batch("r1", T).layout, odd_batch("r1", T).layout, shared_batch(T).layout
    for k in range(3):
        ts = T + k * 1_000_000_000
        bs = [modbus_batch("r1", ts, lay_m), odd_batch("r1", ts, lay_o), shared_batch(ts, lay_s)]
        bs.append(modbus_batch("r2", ts))
        bs[0].status = DeviceStatus("r1", DeviceState.ONLINE, "", ts)
        rows = [Row(k * 10 + i, ts, b) for i, b in enumerate(bs)]
        plain_rows = [Row(r.seq, r.ts, plain(r.batch)) for r in rows]
        assert messages(rows, topics, fast_state) == messages(plain_rows, topics, plain_state)
        assert fast_state.encoded == plain_state.encoded
        assert fast_state.quantities == plain_state.quantities
    assert list(fast_state.encoded) == list(plain_state.encoded)
    for rack, enc in fast_state.encoded.items():
        assert list(enc) == list(plain_state.encoded[rack])  # the retained state keeps the first order


def test_a_layout_that_does_not_fit_gives_the_plain_messages() -> None:
    good = modbus_batch("r1", T)
    other = modbus_batch("r2", T, good.layout)
    nan = Batch(good.source, [s._replace(value=float("nan")) if i == 9 else s for i, s in enumerate(good.samples)],
                created=T, layout=good.layout)  # fmt: skip
    short = Batch(good.source, good.samples[:10], created=T, layout=good.layout)
    for b in (other, nan, short):
        topics = Topics("bms", "s")
        assert messages([Row(1, T, b)], topics, MqttState()) == messages([Row(1, T, plain(b))], topics, MqttState())


def test_rows_one_at_a_time_like_all_together() -> None:
    topics = Topics("bms", "s")
    rows = [Row(i + 1, T, modbus_batch(f"r{i % 2}", T + i)) for i in range(4)]
    state = MqttState()
    touched: list[str] = []
    msgs = [m for r in rows for m in render_row(r, topics, state, touched)]
    msgs += state_messages(touched, topics, state)
    assert touched == ["r0", "r1"]
    assert msgs == render_rows(rows, topics, MqttState())
