"""MQTT topics and payloads: telemetry, state, availability, alarm events and lists, discovery."""

from __future__ import annotations

import json

from gateway.model import Batch, BatchKind, DeviceState, DeviceStatus, Sample
from gateway.sinks.mqtt.payloads import MqttState, Topics, discovery, render_rows
from gateway.store.outbox import Row

T = 1_700_000_000_000_000_000
TOPICS = Topics("bms", "s1", 1)


def row(seq: int, batch: Batch) -> Row:
    return Row(seq, batch.created, batch)


def test_telemetry_state_and_availability() -> None:
    st = DeviceStatus("r1", DeviceState.ONLINE, "", T)
    b = Batch.of_samples(
        "r1",
        [Sample(T, "soc", 55.0, "%", "good", "r1"), Sample(T, "cell_voltage", float("nan"), "V", "bad", "r1", 1, 2)],
        status=st,
    )
    state = MqttState()
    msgs = render_rows([row(7, b)], TOPICS, state)
    assert [(m.topic, m.qos, m.retain) for m in msgs] == [
        ("bms/s1/r1/telemetry", 1, False),
        ("bms/s1/r1/availability", 1, True),
        ("bms/s1/r1/state", 1, True),
    ]
    tele = json.loads(msgs[0].payload)
    assert tele == {
        "seq": 7,
        "site": "s1",
        "rack": "r1",
        "source": "r1",
        "samples": [
            {"ts": T, "q": "soc", "v": 55.0, "u": "%", "ql": "good"},
            {"ts": T, "q": "cell_voltage", "v": None, "u": "V", "ql": "bad", "m": 1, "c": 2},
        ],
    }
    assert msgs[1].payload == b"online"
    # The state keeps the latest of every quantity across batches.
    b2 = Batch.of_samples("r1", [Sample(T + 1, "soc", 56.0, "%", "stale", "r1")])
    msgs = render_rows([row(8, b2)], TOPICS, state)
    doc = json.loads(msgs[-1].payload)
    assert doc["values"] == {
        "soc": {"v": 56.0, "u": "%", "ql": "stale", "ts": T + 1},
        "cell_voltage/1/2": {"v": None, "u": "V", "ql": "bad", "ts": T},
    }


def test_offline_device() -> None:
    b = Batch("r1", device="r1", status=DeviceStatus("r1", DeviceState.OFFLINE, "timeout", T))
    msgs = render_rows([row(1, b)], TOPICS, MqttState())
    assert [(m.topic, m.payload, m.retain) for m in msgs] == [("bms/s1/r1/availability", b"offline", True)]


def test_alarm_event_and_active_list_contract() -> None:
    event: dict[str, object] = {
        "type": "event",
        "ts": T,
        "rack": "r1",
        "alarm_id": "cell_overvoltage",
        "severity": "critical",
        "state": "active_unack",
        "previous": "normal",
        "message": "cell 7 high",
        "value": 3.71,
        "rule": "cell_voltage > 3.65",
        "user": None,
        "reason": None,
    }
    active: dict[str, object] = {
        "type": "active",
        "ts": T,
        "rack": "r1",
        "active": [
            {
                "alarm_id": "cell_overvoltage",
                "severity": "critical",
                "state": "active_unack",
                "since": T,
                "message": "cell 7 high",
            }
        ],
    }
    b = Batch("alarms", kind=BatchKind.ALARM, device="r1", records=[event, active])
    state = MqttState()
    msgs = render_rows([row(3, b)], TOPICS, state)
    assert [(m.topic, m.qos, m.retain) for m in msgs] == [
        ("bms/s1/r1/alarms/events", 1, False),
        ("bms/s1/r1/alarms/active", 1, True),
    ]
    assert json.loads(msgs[0].payload) == {"site": "s1", **event}
    assert json.loads(msgs[1].payload)["active"][0]["alarm_id"] == "cell_overvoltage"
    assert state.active == {"r1": msgs[1].payload}  # re-published on reconnect


def test_gateway_status_record_is_retained_info() -> None:
    b = Batch("gateway", kind=BatchKind.STATUS, records=[{"ts": T, "uptime": 5}])
    msgs = render_rows([row(1, b)], TOPICS, MqttState())
    assert [(m.topic, json.loads(m.payload), m.retain) for m in msgs] == [
        ("bms/s1/gateway/info", {"site": "s1", "ts": T, "uptime": 5}, True)
    ]


def test_home_assistant_discovery_for_rack_level_numbers_only() -> None:
    msgs = discovery(TOPICS, "homeassistant", "r1", ["soc", "rack_voltage", "cell_voltage", "model"])
    assert [m.topic for m in msgs] == [
        "homeassistant/sensor/s1_r1_rack_voltage/config",
        "homeassistant/sensor/s1_r1_soc/config",
    ]
    cfg = json.loads(msgs[1].payload)
    assert cfg["state_topic"] == "bms/s1/r1/state"
    assert cfg["value_template"] == "{{ value_json['values'][\"soc\"]['v'] }}"
    assert cfg["device_class"] == "battery" and cfg["unit_of_measurement"] == "%"
    assert cfg["availability"][0]["topic"] == "bms/s1/gateway/status"
    assert all(m.retain for m in msgs)


def test_nan_anywhere_in_a_record_becomes_null() -> None:
    rec: dict[str, object] = {
        "type": "active",
        "ts": T,
        "rack": "r1",
        "active": [{"alarm_id": "a", "value": float("nan")}],
    }
    b = Batch("alarms", kind=BatchKind.ALARM, device="r1", records=[rec])
    msgs = render_rows([row(1, b)], TOPICS, MqttState())
    assert json.loads(msgs[0].payload)["active"] == [{"alarm_id": "a", "value": None}]
    st = Batch("gateway", kind=BatchKind.STATUS, records=[{"ts": T, "load": float("inf"), "x": {"y": float("nan")}}])
    assert json.loads(render_rows([row(2, st)], TOPICS, MqttState())[0].payload)["x"] == {"y": None}


def test_levels_filter_telemetry_and_state() -> None:
    topics = Topics("bms", "s1", 1, frozenset({"rack"}))
    b = Batch.of_samples(
        "r1",
        [Sample(T, "soc", 55.0, "%", "good", "r1"), Sample(T, "cell_voltage", 3.3, "V", "good", "r1", 1, 2)],
    )
    msgs = render_rows([row(1, b)], topics, MqttState())
    assert [s["q"] for s in json.loads(msgs[0].payload)["samples"]] == ["soc"]
    assert list(json.loads(msgs[1].payload)["values"]) == ["soc"]


def test_state_keeps_earlier_entries_and_adds_new_ones_at_the_end() -> None:
    earlier: dict[str, object] = {"v": 1.0, "u": "%", "ql": "good", "ts": T - 1}
    state = MqttState()
    first = Batch.of_samples("s", [Sample(T - 1, "soh", 1.0, "%", "good", "r1")])
    render_rows([row(1, first)], TOPICS, state)
    msgs = render_rows([row(2, Batch.of_samples("s", [Sample(T, "soc", 55.0, "%", "good", "r1")]))], TOPICS, state)
    values = {"soh": earlier, "soc": {"v": 55.0, "u": "%", "ql": "good", "ts": T}}
    assert json.loads(msgs[-1].payload) == {"site": "s1", "rack": "r1", "values": values}
    assert msgs[-1].payload.startswith(b'{"site":"s1","rack":"r1","values":{"soh":')
    assert state.values == {"r1": values}
