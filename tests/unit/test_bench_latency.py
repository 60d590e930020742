"""The bench's telemetry latency probe, against a real broker."""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt

from bench.telemetry_latency import TelemetryLatency, block_times
from tests.servers import Mosquitto
from tests.support.waits import wait_for


def test_block_times_are_distinct_in_order() -> None:
    doc = {"samples": [{"ts": 5, "v": 1}, {"ts": 3}, {"ts": 5}, {"ts": "x"}, {"v": 2}]}
    assert block_times(json.dumps(doc).encode()) == [5, 3]
    assert block_times(b'{"ts": 7, "p0": 3.3}') == [7]  # the naive baseline: one time per message


def test_latency_per_block_from_a_real_broker(mosquitto: Mosquitto) -> None:
    watch = TelemetryLatency(mosquitto.port, ["bench/site/r1/telemetry"])
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="latency-test-pub")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    try:
        arrived = threading.Event()
        handle = watch.client.on_message
        assert handle is not None

        def seen(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
            handle(client, userdata, msg)
            arrived.set()

        watch.client.on_message = seen
        pub.publish("bench/site/r1/telemetry", json.dumps({"samples": [{"ts": 1}]}), qos=1).wait_for_publish(30)
        assert arrived.wait(30)  # arrived before start(): not recorded
        watch.start()
        old = time.time_ns() - 2_000_000_000  # a block answered 2 s ago
        payload = {"samples": [{"ts": old}, {"ts": old}, {"ts": old + 1_000_000_000}]}
        pub.publish("bench/site/r1/telemetry", json.dumps(payload), qos=1).wait_for_publish(30)
        pub.publish("bench/site/r2/telemetry", json.dumps(payload), qos=1).wait_for_publish(30)  # not subscribed
        wait_for(lambda: watch.messages >= 1, 30, "the watched message", step=0.02)
        got = watch.stop()
        age = (time.time_ns() - old) / 1e6  # of the older block now, in ms: no latency can exceed it
    finally:
        pub.loop_stop()
        pub.disconnect()
        watch.close()
    assert len(got) == 2
    assert 2000 <= got[0] <= age and 1000 <= got[1] <= age - 1000
