"""The renderers against golden files (tests/cases/sinks): the line protocol and the MQTT messages of
every case, byte for byte, as the gateway has always sent them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.model import Batch, BatchKind, DeviceState, DeviceStatus, Sample
from gateway.sinks.clock import ClockGuard
from gateway.sinks.influx.lineproto import LineRenderer, encode_batches
from gateway.sinks.influx.sink import chunk_items, chunks_body, render_chunks
from gateway.sinks.mqtt.payloads import ALL_LEVELS, MqttState, Topics, render_rows
from gateway.store.outbox import Row

CASES = Path(__file__).parents[1] / "cases" / "sinks"
NAMES = sorted(p.name.removesuffix(".expected.json") for p in CASES.glob("*.expected.json"))
LEVELS = {"all": ALL_LEVELS, "rack": frozenset({"rack"}), "cell,module": frozenset({"cell", "module"})}
T = 1_700_000_000_123_456_789


def batch_of(d: dict[str, Any]) -> Batch:
    st = d["status"]
    status = None if st is None else DeviceStatus(st[0], DeviceState(st[1]), st[2], st[3])
    return Batch.of_samples(
        d["source"], [Sample(*s) for s in d["samples"]], BatchKind(d["kind"]), d["device"], status, d["created"],
        d["records"],
    )  # fmt: skip


def load(name: str) -> tuple[str, list[list[Row]], dict[str, Any]]:
    case = json.loads((CASES / f"{name}.json").read_text())
    writes = [[Row(r["seq"], r["ts"], batch_of(r["batch"])) for r in w] for w in case["writes"]]
    return case["site"], writes, json.loads((CASES / f"{name}.expected.json").read_text())


def test_there_are_cases() -> None:
    assert NAMES == ["modbus", "records", "varied"]


@pytest.mark.parametrize("name", NAMES)
def test_line_protocol(name: str) -> None:
    site, writes, expected = load(name)
    for variant, want in expected["influx"].items():
        precision = variant.split()[-1]
        guard = ClockGuard("golden") if variant.startswith("guarded") else None
        renderer = LineRenderer(site, precision)
        for _ in range(2):  # with its plans made, and with them kept
            got = []
            for w in writes:
                chunks, pending = render_chunks(w, renderer, guard)
                items = chunk_items(chunks)
                assert chunks_body(chunks) == "\n".join(line for _seq, line in items)
                if guard is not None and pending is not None:
                    guard.commit(pending)
                got.append([[seq, line] for seq, line in items])
            assert got == want, variant
            if guard is not None:
                break  # the guard moved on
        if guard is None:
            lines = [line for w in writes for line in encode_batches([r.batch for r in w], site, precision)]
            assert lines == [line for w in want for _seq, line in w]


@pytest.mark.parametrize("name", NAMES)
def test_mqtt_messages(name: str) -> None:
    site, writes, expected = load(name)
    for levels, want in expected["mqtt"].items():
        topics = Topics("bms", site, 1, LEVELS[levels])
        state = MqttState()
        got = [[[m.topic, m.payload.decode(), m.qos, m.retain] for m in render_rows(w, topics, state)] for w in writes]
        assert got == want, levels
        if levels == "all":
            assert json.dumps(state.values) == json.dumps(expected["mqtt state"])


def test_integers_are_floats_on_mqtt() -> None:
    """A batch keeps numbers as float64: an integer a source hands on is sent as a float (`7.0`; the
    sinks before the columnar batch sent `7`). The line protocol always wrote numbers as floats."""
    b = Batch.of_samples("s", [Sample(T, "raw.n", 7, "", "good", "r1")])
    msgs = render_rows([Row(1, T, b)], Topics("bms", "s1"), MqttState())
    assert b'"v":7.0,' in msgs[0].payload
    assert encode_batches([b], "s1") == [f"rack,site=s1,rack=r1,quality=good,source=s raw.n=7.0 {T}"]
