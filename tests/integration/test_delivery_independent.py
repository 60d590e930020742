"""Sinks are independent: with InfluxDB (VictoriaMetrics) down, MQTT keeps delivering live data; InfluxDB
catches up in order when it returns. Batching: a backlog is written in full batches, live data in small ones."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway.sinks.config import InfluxSinkConfig, MqttSinkConfig
from gateway.sinks.influx.sink import InfluxSink
from gateway.sinks.mqtt.sink import MqttSink
from gateway.sinks.runner import SinkRunner
from gateway.store.outbox import Outbox
from tests.delivery_support import Collector, metric, running, sample_batch, vm_series, vm_wait_points
from tests.servers import Mosquitto, VictoriaMetrics
from tests.support.waits import await_for

FAST = {"batch_max_age": 0.05, "backoff_initial": 0.05, "backoff_max": 0.5}


async def test_influx_down_does_not_hold_back_mqtt(
    tmp_path: Path, victoria: VictoriaMetrics, mosquitto: Mosquitto
) -> None:
    ob = Outbox(tmp_path / "store.db")
    icfg = InfluxSinkConfig.model_validate({"url": victoria.url, "token": "t", "batch_max_samples": 200, **FAST})
    mcfg = MqttSinkConfig.model_validate({"host": "127.0.0.1", "port": mosquitto.port, "tls": False, **FAST})
    influx = SinkRunner("influx", InfluxSink("influx", icfg, "s1"), ob, icfg)
    mqtt = SinkRunner("mqtt", MqttSink("mqtt", mcfg, "s1"), ob, mcfg)
    start = (time.time_ns() // 1_000_000) * 1_000_000
    seqs = []
    async with Collector(mosquitto.port, topic="bms/s1/r1/telemetry") as sub, running(influx), running(mqtt):
        victoria.stop()
        for i in range(60):
            seqs.append(ob.append([sample_batch("r1", start + i * 1_000_000, 10, base=i)]))
            influx.notify()
            mqtt.notify()
            await asyncio.sleep(0.01)
        await await_for(lambda: sub.telemetry_seqs("bms/s1/r1/telemetry") == seqs)
        await await_for(mqtt.caught_up)  # acknowledged (PUBACK) right after the subscriber got them
        assert not influx.caught_up()  # live on MQTT while InfluxDB is down
        # refreshed in backoff
        await await_for(lambda: metric("bms_gateway_sink_pending_samples", sink="influx") == 600)
        assert metric("bms_gateway_sink_pending_samples", sink="mqtt") == 0
        batches_before = metric("bms_gateway_sink_batches_total", sink="influx")
        victoria.start()
        await await_for(influx.caught_up, timeout=30)
        # The 600-sample backlog went out in full batches of 200 samples (catch-up at full speed).
        assert metric("bms_gateway_sink_batches_total", sink="influx") - batches_before == 3
    assert await vm_wait_points(victoria, '{__name__=~"rack_raw.v.*"}', 600) == 600
    series = vm_series(victoria, '{__name__="rack_raw.v0"}')["rack_raw.v0"]
    assert series == [((start + i * 1_000_000) // 1_000_000, float(i)) for i in range(60)]
    print("lost: 0")
    ob.close()
