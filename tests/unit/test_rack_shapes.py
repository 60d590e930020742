"""Racks of one shape (a site's racks of one profile: the same keys but for the rack) keep the parts of the
sinks' plans that do not name the rack once, and each rack's output still names its own rack."""

from __future__ import annotations

import json

from gateway.model import Key, Keys
from gateway.sinks.columns import rack_shape
from gateway.sinks.influx.lineproto import LineRenderer
from gateway.sinks.mqtt.payloads import MqttState, Topics, render_rows
from gateway.store.outbox import Row
from tests.unit.test_sink_render import T, modbus_batch, rack_keys


def test_rack_shape_is_the_rack_and_the_rest_of_the_keys() -> None:
    one, two = rack_shape(rack_keys("r1")), rack_shape(rack_keys("r2"))
    assert one is not None and two is not None
    assert (one.rack, two.rack) == ("r1", "r2") and one.places == two.places
    assert one.places[0] == ("cell_voltage", "V", 1, 1)
    assert rack_shape(Keys.of([Key("soc", "%", "r1"), Key("soc", "%", "r2")])) is None  # two racks
    assert rack_shape(Keys.of([])) is None


def test_mqtt_plans_of_racks_of_one_shape_share_their_columns() -> None:
    state, topics = MqttState(), Topics("p", "s")
    msgs = render_rows([Row(1, T, modbus_batch("r1", T)), Row(2, T, modbus_batch("r2", T))], topics, state)
    a, b = (state.plans.get(rack_keys(r), "cell,module,rack") for r in ("r1", "r2"))
    assert a is not None and b is not None and a is not b
    assert (a.racks[0].rack, b.racks[0].rack) == ("r1", "r2")
    for name in ("index", "opens", "heads", "entry_heads", "state_keys"):
        assert getattr(a.racks[0], name) is getattr(b.racks[0], name), name
    assert a.units is b.units and a.places is b.places and a.tails is b.tails
    docs = {m.topic: json.loads(m.payload) for m in msgs}
    assert docs["p/s/r2/telemetry"]["rack"] == "r2" and len(docs["p/s/r2/telemetry"]["samples"]) == 1000
    assert docs["p/s/r2/state"]["rack"] == "r2" and docs["p/s/r1/state"]["values"] == docs["p/s/r2/state"]["values"]


def test_line_plans_of_racks_of_one_shape_share_their_columns_and_line_groupings() -> None:
    renderer = LineRenderer("s")
    a, b = renderer.plan(modbus_batch("r1", T)), renderer.plan(modbus_batch("r2", T))
    assert a is not b and a.keys is not b.keys  # the series keys name the rack
    assert a.groups is b.groups  # series, field numbers, fields and line groupings, kept once for the shape
    lines_r1 = renderer.lines(modbus_batch("r1", T))
    assert len(a.groups.groups) == 1
    lines_r2 = renderer.lines(modbus_batch("r2", T))
    assert len(b.groups.groups) == 1  # rack r2's batch, read with the same time runs, found r1's grouping
    as_r2 = [ln.replace("rack=r1", "rack=r2").replace("source=modbus:r1", "source=modbus:r2") for ln in lines_r1]
    assert as_r2 == lines_r2
    line_r2 = lines_r2[0]
    assert line_r2.startswith("cell,site=s,rack=r2,module=1,cell=1,quality=good,source=modbus:r2 cell_voltage=")
