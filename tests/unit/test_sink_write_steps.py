"""A sink write lets the event loop run while it renders a big batch, sends the lines the renderer
gives (one gzip body), and bisects only when the server refuses some."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import pytest
from influxdb_client.rest import ApiException

from gateway.sinks.clock import ClockGuard
from gateway.sinks.config import InfluxSinkConfig, MqttSinkConfig
from gateway.sinks.influx import sink as influx
from gateway.sinks.influx.lineproto import LineRenderer
from gateway.sinks.influx.sink import InfluxSink, chunk_items, render_chunks
from gateway.sinks.mqtt import sink as mqtt
from gateway.sinks.mqtt.payloads import MqttState, render_rows
from gateway.sinks.mqtt.sink import MqttSink
from gateway.store.outbox import Row
from tests.unit.test_sink_render import T, modbus_batch


class Service:
    """Answers like InfluxDB's write endpoint: 204, or 400 for a body holding a refused line."""

    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.bodies: list[str] = []
        self.calls: list[dict[str, Any]] = []

    def post_write(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)
        body = kwargs["body"]
        text = (zlib.decompress(body, wbits=31) if kwargs.get("content_encoding") == "gzip" else body).decode()
        if self.refuse is not None and self.refuse in text:
            exc = ApiException(status=400, reason="Bad Request")  # type: ignore[no-untyped-call]
            exc.body = b'{"code":"invalid","message":"field type conflict"}'
            raise exc
        self.bodies.append(text)


class Client:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, int, bool]] = []

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.published.append((topic, payload, qos, retain))


def rows(n: int) -> list[Row]:
    return [Row(i + 1, T, modbus_batch(f"r{i}", T + i)) for i in range(n)]


async def loop_turns_per_row(write: Any, sink_module: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of turns a ticker task had taken when each row was rendered."""
    turns = 0
    seen: list[int] = []
    render = getattr(sink_module, name)

    def counting(*args: Any) -> Any:
        seen.append(turns)
        return render(*args)

    monkeypatch.setattr(sink_module, name, counting)
    stop = False

    async def ticker() -> None:
        nonlocal turns
        while not stop:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await write()
    stop = True
    await task
    return seen


@pytest.mark.parametrize("gzip", [True, False])
async def test_influx_write_yields_and_sends_the_rendered_lines(monkeypatch: pytest.MonkeyPatch, gzip: bool) -> None:
    sink = InfluxSink("influx", InfluxSinkConfig(url="http://127.0.0.1:9", token="t", gzip=gzip), "s1")
    sink._service = service = Service()
    rs = rows(8)
    seen = await loop_turns_per_row(lambda: sink.write(rs), influx, "render_row", monkeypatch)
    assert len(seen) == 8 and seen == sorted(seen)
    assert len(set(seen)) == 4  # the loop ran after every 2,000 samples (two rows)
    ref_guard = ClockGuard("ref")
    chunks, pending = render_chunks(rs, LineRenderer("s1", "ms"), ref_guard)
    assert pending is not None
    assert service.bodies == ["\n".join(line for _, line in chunk_items(chunks))]
    assert service.calls[0].get("content_encoding") == ("gzip" if gzip else None)
    ref_guard.commit(pending)
    assert sink.guard is not None and sink.guard.newest == ref_guard.newest  # committed


async def test_influx_write_bisects_only_after_a_refusal() -> None:
    sink = InfluxSink("influx", InfluxSinkConfig(url="http://127.0.0.1:9", token="t"), "s1")
    rs = rows(2)
    bad = "rack=r1,module=3,cell=14,"  # one line: a cell voltage (temperatures are cells 1 to 5)
    sink._service = service = Service(refuse=bad)
    rejected = await sink.write(rs)
    assert [(r.seq, r.status) for r in rejected] == [(2, 400)] and bad in rejected[0].item
    assert len(service.calls) > 2  # the whole body first, then the halves
    stored = [line for body in service.bodies for line in body.split("\n")]
    assert len(stored) == 2 * 1000 - 1 and all(bad not in line for line in stored)


async def test_mqtt_write_yields_and_publishes_the_rendered_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = MqttSink("mqtt", MqttSinkConfig(host="127.0.0.1", tls=False), "s1")
    sink._client = client = Client()  # type: ignore[assignment]
    rs = rows(6)
    seen = await loop_turns_per_row(lambda: sink.write(rs), mqtt, "render_row", monkeypatch)
    assert len(seen) == 6 and len(set(seen)) == 3  # the loop ran after every 2,000 samples (two rows)
    ref = render_rows(rs, sink.topics, MqttState())
    assert client.published == [(m.topic, m.payload, m.qos, m.retain) for m in ref]


async def test_mqtt_write_yields_between_the_racks_retained_states(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each rack's retained state holds all its entries (1,000 here): the loop runs after every 2,000."""
    sink = MqttSink("mqtt", MqttSinkConfig(host="127.0.0.1", tls=False), "s1")
    sink._client = client = Client()  # type: ignore[assignment]
    rs = rows(4)
    seen = await loop_turns_per_row(lambda: sink.write(rs), mqtt, "state_messages", monkeypatch)
    assert len(seen) == 4 and len(set(seen)) == 2
    assert [t for t, *_ in client.published if t.endswith("/state")] == [f"bms/s1/r{i}/state" for i in range(4)]
