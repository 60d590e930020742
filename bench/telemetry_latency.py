"""End-to-end latency of telemetry: from a sample's timestamp (the moment its register block was
answered, or its CAN frame received) to the moment an MQTT subscriber receives it.

`TelemetryLatency` subscribes (on paho's background thread) to the telemetry topics of a few racks
only, so that parsing the payloads costs the measuring process little; per message it records the
arrival time minus each distinct sample time in it (one per Modbus block read).
"""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt


def block_times(payload: bytes) -> list[int]:
    """The distinct sample times (ns) of a gateway telemetry message, in order of first appearance
    (a message without samples but with its own `ts`, as the naive baseline sends: that one)."""
    doc = json.loads(payload)
    if "samples" not in doc and isinstance(doc.get("ts"), int):
        return [doc["ts"]]
    seen: dict[int, None] = {}
    for s in doc.get("samples", ()):
        ts = s.get("ts")
        if isinstance(ts, int):
            seen.setdefault(ts, None)
    return list(seen)


class TelemetryLatency:
    """Latency in ms (arrival − sample time) of every block in the telemetry of the given topics."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.latencies_ms: list[float] = []
        self.messages = 0
        self._lock = threading.Lock()
        self._recording = False
        self._subscribed = threading.Event()
        self._pending = len(topics)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-latency-{time.time_ns()}")
        self.client.on_message = self._on_message
        self._topics = topics
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("MQTT subscription not confirmed")

    def _on_connect(self, client: mqtt.Client, *args: object) -> None:
        for t in self._topics:
            client.subscribe(t, qos=0)

    def _on_subscribe(self, *args: object) -> None:
        self._pending -= 1
        if self._pending <= 0:
            self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.time_ns()
        if not self._recording:
            return
        try:
            times = block_times(bytes(msg.payload))
        except (ValueError, TypeError, AttributeError):
            return
        with self._lock:
            self.messages += 1
            self.latencies_ms += [(now - t) / 1e6 for t in times]

    def start(self) -> None:
        """Record from now on (what arrived before, e.g. during a warm-up, is not counted)."""
        with self._lock:
            self.latencies_ms = []
            self.messages = 0
        self._recording = True

    def stop(self) -> list[float]:
        self._recording = False
        with self._lock:
            return list(self.latencies_ms)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
