"""Telemetry and retained state are joined from texts kept as their UTF-8 bytes (one character per byte),
so a payload with characters past ASCII (°C, a state's name, a rack's name) is encoded by a copy; what
reaches the broker is the UTF-8 of the same JSON as before."""

from __future__ import annotations

import json

from gateway.model import Batch, Sample
from gateway.sinks.mqtt.payloads import MqttState, Topics, render_rows, utf8_chars
from gateway.store.outbox import Row

T = 1_700_000_000_000_000_000


def samples(ts: int, temperature: float) -> list[Sample]:
    return [
        Sample(ts, "cell_temperature", temperature, "°C", "good", "Regal-Süd", 1, 1),
        Sample(ts, "cell_voltage", 3.3, "V", "good", "Regal-Süd", 1, 1),
        Sample(ts, "raw.Betriebszustand", "Störung", "", "good", "Regal-Süd"),
    ]


def test_payloads_are_the_utf8_of_their_json() -> None:
    state = MqttState()
    topics = Topics("bms", "Werk-Nord", 1)
    msgs = render_rows([Row(1, T, Batch.of_samples("src", samples(T, 21.5)))], topics, state)
    telemetry, retained = msgs[0], msgs[-1]
    assert telemetry.topic == "bms/Werk-Nord/Regal-Süd/telemetry" and retained.topic.endswith("/state")
    doc = json.loads(telemetry.payload.decode("utf-8"))
    assert [(s["q"], s["v"], s["u"]) for s in doc["samples"]] == [
        ("cell_temperature", 21.5, "°C"),
        ("cell_voltage", 3.3, "V"),
        ("raw.Betriebszustand", "Störung", ""),
    ]
    assert '"u":"°C"'.encode() in telemetry.payload and '"Störung"'.encode() in telemetry.payload
    values = json.loads(retained.payload.decode("utf-8"))["values"]
    assert values["cell_temperature/1/1"] == {"v": 21.5, "u": "°C", "ql": "good", "ts": T}
    assert values["raw.Betriebszustand"]["v"] == "Störung"
    assert state.values["Regal-Süd"] == values


def test_the_kept_state_is_its_utf8_bytes_as_characters() -> None:
    state = MqttState()
    render_rows([Row(1, T, Batch.of_samples("src", samples(T, 21.5)))], Topics("bms", "s", 1), state)
    text = state.racks["Regal-Süd"].text()
    assert '"u":"Â°C"' in text and all(ord(c) < 256 for c in text)  # ° is the two bytes C2 B0
    assert text.encode("latin-1").decode("utf-8").count("°C") == 1
    assert utf8_chars("3.3") == "3.3" and utf8_chars("°C") == "Â°C"
