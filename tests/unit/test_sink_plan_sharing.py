"""The sinks' plans of racks of one shape share the texts that do not name the rack (memory: a 100-rack
site keeps them once, not once per point), and a plan renders the same with shared texts."""

from __future__ import annotations

import json

from gateway.model import QUALITY_CODE
from gateway.sinks.clock import ClockGuard
from gateway.sinks.influx.lineproto import LineRenderer
from gateway.sinks.influx.sink import render_chunks
from gateway.sinks.mqtt.payloads import ALL_LEVELS, MqttState, Topics, render_rows, telemetry_plan
from gateway.store.outbox import Row
from tests.unit.test_sink_render import T, modbus_batch, rack_keys


def test_mqtt_plans_of_two_racks_share_their_rack_free_texts() -> None:
    a, b = telemetry_plan(rack_keys("r1"), ALL_LEVELS), telemetry_plan(rack_keys("r2"), ALL_LEVELS)
    for i in (0, 799, 800, 999):
        assert a.units[i] is b.units[i]
        assert a.places[i] is b.places[i]
        assert a.racks[0].heads[i] is b.racks[0].heads[i]
        assert a.racks[0].entry_heads[i] is b.racks[0].entry_heads[i]
        assert a.racks[0].state_keys[i] is b.racks[0].state_keys[i]
    assert a.units[0] is a.units[1]  # one object for every point of a unit
    assert a.racks[0].entry_heads[21] == '"cell_voltage/2/2":{"v":'


def test_a_rack_plan_with_every_point_of_its_table_takes_the_columns_as_they_are() -> None:
    """A Modbus device's table is one rack's: its plan says so, and the batch's columns are rendered
    without a gather; a table of two racks gathers each rack's points."""
    from gateway.model import Keys

    one = telemetry_plan(rack_keys("r1"), ALL_LEVELS)
    assert one.racks[0].whole and len(one.racks[0].index) == 1000
    two = telemetry_plan(Keys.of([*rack_keys("r1").rows[:3], *rack_keys("r2").rows[:2]]), ALL_LEVELS)
    assert [(r.rack, r.whole, r.index.tolist()) for r in two.racks] == [
        ("r1", False, [0, 1, 2]),
        ("r2", False, [3, 4]),
    ]


def test_mqtt_rendering_with_shared_texts() -> None:
    batch = modbus_batch("r1", T)
    batch.quality[5] = QUALITY_CODE["missing"]
    batch.values[5] = float("nan")
    msgs = render_rows([Row(1, T, batch)], Topics("p", "s"), MqttState())
    doc = json.loads(msgs[0].payload)
    assert doc["samples"][5] == {"ts": T, "q": "cell_voltage", "v": None, "u": "V", "ql": "missing", "m": 1, "c": 6}
    assert doc["samples"][999]["q"] == "cell_temperature" and doc["samples"][999]["c"] == 5
    state = json.loads(msgs[-1].payload)["values"]
    assert state["cell_voltage/1/6"] == {"v": None, "u": "V", "ql": "missing", "ts": T}


def test_influx_plans_share_field_names_and_keep_one_key_column() -> None:
    renderer = LineRenderer("s")
    a, b = renderer.plan(modbus_batch("r1", T)), renderer.plan(modbus_batch("r2", T))
    assert a.groups.heads[0] is b.groups.heads[0] is a.groups.heads[1]
    assert list(a.keys) == [QUALITY_CODE["good"]]  # other qualities' keys only when a batch has them
    batch = modbus_batch("r1", T)
    batch.quality[3] = QUALITY_CODE["stale"]
    lines = renderer.lines(batch)
    assert "cell,site=s,rack=r1,module=1,cell=4,quality=stale,source=modbus:r1 cell_voltage=" in "\n".join(lines)
    assert lines[0].startswith("cell,site=s,rack=r1,module=1,cell=1,quality=good,source=modbus:r1 cell_voltage=")


def test_the_clock_guard_looks_each_key_column_up_once() -> None:
    """The guard keeps a column of newest times by series slot; the slots of a plan's key column are
    found once, so a later batch of that key table is checked with array steps (no key looked up)."""
    renderer, guard = LineRenderer("s"), ClockGuard("influx")
    _chunks, pending = render_chunks([Row(1, T, modbus_batch("r1", T))], renderer, guard)
    assert pending is not None
    guard.commit(pending)
    assert len(guard.newest) == 800 and guard.written() == 800  # a cell's voltage and temperature: one series

    def no_lookup(*_: object) -> None:
        raise AssertionError("a key looked up again")

    guard.slots = no_lookup  # type: ignore[method-assign,assignment]
    later, pending = render_chunks([Row(2, T + 10**9, modbus_batch("r1", T + 10**9))], renderer, guard)
    assert pending is not None
    guard.commit(pending)
    assert later[0].text.count("\n") == 1000 and "clock_step" not in later[0].text
    assert min(guard.newest.values()) == T + 10**9 and max(guard.newest.values()) == T + 10**9 + 7 * 1_370_000
    del guard.slots  # a step back renders line by line (each key looked up)
    back, pending = render_chunks([Row(3, T, modbus_batch("r1", T))], renderer, guard)  # the clock stepped back
    assert back[0].text.count("clock_step=1") == 1000
