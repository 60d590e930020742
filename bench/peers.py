"""Real peers on loopback for the bench: Mosquitto and VictoriaMetrics (from the test helpers), an MQTT
subscriber that counts what arrives and timestamps latency probes, and VictoriaMetrics counting."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from tests.servers import Mosquitto, VictoriaMetrics, free_port, wait_port

__all__ = ["Mosquitto", "MqttWatch", "VictoriaMetrics", "free_port", "vm_value_count", "wait_port"]

PROBE_QUANTITY = "raw.bench_probe"

# topic, payload -> (samples in it, probe sequence numbers in it)
Parser = Callable[[str, bytes], tuple[int, list[int]]]


def parse_gateway(topic: str, payload: bytes) -> tuple[int, list[int]]:
    """The gateway's `<prefix>/<site>/<rack>/telemetry` JSON: {"samples": [{"q":..., "v":...}, ...]}."""
    doc = json.loads(payload)
    samples = doc.get("samples", [])
    probes = [int(s["v"]) for s in samples if s.get("q") == PROBE_QUANTITY and s.get("v") is not None]
    return len(samples), probes


def parse_naive(topic: str, payload: bytes) -> tuple[int, list[int]]:
    """The naive bridge: one message per frame, JSON of the decoded signals."""
    if topic.endswith("/BenchProbe"):
        return 1, [int(json.loads(payload)["ProbeSeq"])]
    return 1, []


class MqttWatch:
    """Subscribes on a background thread; counts messages and samples, records probe arrival (time_ns)."""

    def __init__(self, port: int, topic: str, parse: Parser) -> None:
        self.parse = parse
        self.messages = 0
        self.samples = 0
        self.probes: dict[int, int] = {}
        self.last_at = time.monotonic()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-watch-{time.time_ns()}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("MQTT subscription not confirmed")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.time_ns()
        self.messages += 1
        self.last_at = time.monotonic()
        try:
            n, probes = self.parse(msg.topic, msg.payload)
        except (ValueError, KeyError, TypeError):
            return
        self.samples += n
        for seq in probes:
            self.probes.setdefault(seq, now)

    def wait_quiet(self, quiet: float, timeout: float) -> None:
        """Until nothing arrived for `quiet` seconds (or `timeout` passed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and time.monotonic() - self.last_at < quiet:
            time.sleep(0.1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def vm_value_count(vm: VictoriaMetrics, match: str = '{__name__!=""}') -> int:
    """How many values VictoriaMetrics holds for the matching series."""
    return sum(len(s.get("values", [])) for s in vm.export(match))


def latencies_ms(sent: list[tuple[int, int]], arrived: dict[int, int], skip: int = 0) -> tuple[list[float], int]:
    """Probe latencies in ms (send → MQTT arrival) and how many probes never arrived."""
    out = []
    missing = 0
    for seq, t_sent in sent[skip:]:
        t = arrived.get(seq)
        if t is None:
            missing += 1
        else:
            out.append((t - t_sent) / 1e6)
    return out, missing
