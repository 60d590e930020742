"""The sinks render the same decoded batch (the outbox's decoded-row cache), so its values are formatted as
text once, by the first sink, and the second reads them; a batch with values that are not numbers or not
finite renders as before in each."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gateway.model import Batch
from gateway.sinks import columns
from gateway.sinks.influx.lineproto import LineRenderer
from gateway.sinks.mqtt.payloads import MqttState, Topics, render_rows
from gateway.store.outbox import Row
from tests.unit.test_sink_render import T, modbus_batch


def test_two_sinks_format_one_batch_s_values_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = columns.number_texts

    def counted(values: columns.F64) -> columns.Texts:
        calls.append(len(values))
        return real(values)

    monkeypatch.setattr(columns, "number_texts", counted)
    batch = modbus_batch("r1", T)
    row = Row(1, T, batch)
    messages = render_rows([row], Topics("bms", "s"), MqttState())
    lines = LineRenderer("s", "ms").lines(batch)
    assert calls == [1000]  # once for both sinks
    doc = json.loads(messages[0].payload)
    assert doc["samples"][0]["v"] == 3.2 and doc["samples"][999]["v"] == pytest.approx(21.1)
    assert lines[0].split(" ")[1] == "cell_voltage=3.2"


def test_values_that_are_not_finite_or_not_numbers_render_in_each_sink() -> None:
    batch = modbus_batch("r1", T)
    values = batch.values.copy()
    values[0], values[1] = np.nan, np.inf
    odd = Batch(batch.source, batch.keys, batch.ts, values, batch.quality, objects={2: "open"}, device="r1")
    doc = json.loads(render_rows([Row(1, T, odd)], Topics("bms", "s"), MqttState())[0].payload)
    assert [s["v"] for s in doc["samples"][:4]] == [None, None, "open", float(values[3])]
    lines = LineRenderer("s", "ms").lines(odd)
    assert lines[0].startswith("cell,site=s,rack=r1,module=1,cell=3,") and 'cell_voltage="open"' in lines[0]
    assert odd.texts is not None and odd.texts[0] is None and odd.texts[2] == repr(float(values[2]))  # unchanged
