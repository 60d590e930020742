"""Report by exception toward a real Mosquitto: with a 5 mV deadband on cell voltages, the samples and
messages on the uplink fall by the share the signal gives, the heartbeat of a constant cell arrives, the
suppressed counter is the difference, the store keeps every sample, and a broker outage mid-stream
changes nothing of what the uplink receives."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gateway.model import Batch, Sample
from gateway.sinks.config import MqttSinkConfig
from gateway.sinks.mqtt.sink import MqttSink
from gateway.sinks.runner import SinkRunner
from gateway.store.outbox import Outbox
from tests.delivery_support import Collector, metric, running
from tests.servers import Mosquitto
from tests.support.waits import await_for

S = 1_000_000_000
T0 = 1_750_000_000 * S
SECONDS = 100  # one stored batch a second, four cells in it
HEARTBEAT = 30
FAST = {"batch_max_age": 0.05, "backoff_initial": 0.05, "backoff_max": 0.5, "tls": False, "timeout": 3}
TOPIC = "bms/s1/r1/telemetry"


def volts(cell: int, t: int) -> float:
    """Cell 1 ramps 1 mV a second; cell 2 is constant; cell 3 is noise of +-2 mV around 3.300 V;
    cell 4 is a square wave of 10 mV with a 20 s period."""
    if cell == 1:
        return round(3.300 + 0.001 * t, 3)
    if cell == 2:
        return 3.300
    if cell == 3:
        return 3.302 if t % 2 else 3.298
    return 3.310 if (t // 10) % 2 else 3.300


def batch(t: int) -> Batch:
    ts = T0 + t * S
    samples = [Sample(ts, "cell_voltage", volts(c, t), "V", "good", "r1", 1, c) for c in (1, 2, 3, 4)]
    return Batch.of_samples("r1", samples, device="r1", created=ts)


def expected_sent() -> dict[int, list[int]]:
    """cell -> the seconds its sample is sent, from the signal: the ramp every 5 mV (5 s); the constant
    and the noise (never 5 mV from 3.300) at 0 and each heartbeat; the square wave at each edge (10 s,
    sooner than the heartbeat)."""
    return {
        1: list(range(0, SECONDS, 5)),
        2: list(range(0, SECONDS, HEARTBEAT)),
        3: list(range(0, SECONDS, HEARTBEAT)),
        4: list(range(0, SECONDS, 10)),
    }


def make(tmp_path: Path, port: int, name: str) -> tuple[Outbox, SinkRunner]:
    ob = Outbox(tmp_path / "store.db")
    rbe = {"heartbeat": HEARTBEAT, "deadbands": {"cell_voltage": 0.005}}
    cfg = MqttSinkConfig.model_validate({"host": "127.0.0.1", "port": port, **FAST, "report_by_exception": rbe})
    return ob, SinkRunner(name, MqttSink(name, cfg, "s1", tmp_path), ob, cfg)


def received(sub: Collector) -> tuple[dict[int, list[int]], int]:
    """cell -> the seconds of the samples that arrived (each telemetry message once, by its seq), and the
    number of distinct messages."""
    by_seq = {int(json.loads(p)["seq"]): json.loads(p) for p in sub.payloads(TOPIC)}
    got: dict[int, list[int]] = {}
    for doc in by_seq.values():
        for s in doc["samples"]:
            got.setdefault(s["c"], []).append((s["ts"] - T0) // S)
    return {c: sorted(v) for c, v in sorted(got.items())}, len(by_seq)


def stored_samples(ob: Outbox) -> int:
    return sum(r.batch.n for r in ob.query(after_seq=0))


async def test_a_5_mV_deadband_sends_the_expected_share_and_the_heartbeat(tmp_path: Path, mosquitto: Mosquitto) -> None:
    ob, runner = make(tmp_path, mosquitto.port, "uplink")
    for t in range(SECONDS):
        ob.append([batch(t)])
    want = expected_sent()
    sent = sum(len(v) for v in want.values())  # 20 + 4 + 4 + 10 = 38 of 400
    async with Collector(mosquitto.port, topic=TOPIC) as sub, running(runner):
        runner.notify()
        await await_for(runner.caught_up, timeout=60)
        await await_for(lambda: sum(len(v) for v in received(sub)[0].values()) >= sent, timeout=60)
    got, messages = received(sub)
    stored = 4 * SECONDS
    print(f"stored {stored} cell voltages, sent {sent} ({sent / stored:.1%}) in {messages} messages of {SECONDS}")
    assert got == want  # the ramp every fifth second, the constant cell's heartbeat, each edge of the square
    # A batch with nothing to send is no message: the seconds where some cell was sent (multiples of 5).
    assert messages == len(set().union(*want.values())) == 20
    assert metric("bms_gateway_sink_suppressed_samples_total", sink="uplink", quantity="cell_voltage") == stored - sent
    assert metric("bms_gateway_sink_delivered_samples_total", sink="uplink") == sent
    assert runner.suppressed == stored - sent
    assert stored_samples(ob) == stored  # the local store keeps every sample
    ob.close()


async def test_a_broker_outage_mid_stream_changes_nothing_the_uplink_receives(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    ob, runner = make(tmp_path, mosquitto.port, "outage")
    want = expected_sent()
    sent = sum(len(v) for v in want.values())
    async with Collector(mosquitto.port, topic=TOPIC) as sub, running(runner):
        for t in range(SECONDS):
            ob.append([batch(t)])
            runner.notify()
            if t == 30:  # writes fail from here (each failed write rolls the filter back) until t == 60
                await await_for(runner.caught_up, timeout=60)
                mosquitto.stop()
            if t == 60:
                await await_for(lambda: runner.failures > 0, timeout=60)
                mosquitto.start()
            await asyncio.sleep(0.01)
        await await_for(runner.caught_up, timeout=60)
        await await_for(lambda: sum(len(v) for v in received(sub)[0].values()) >= sent, timeout=60)
    got, _messages = received(sub)
    assert got == want  # no value skipped, none added
    assert metric("bms_gateway_sink_retries_total", sink="outage") > 0
    assert metric("bms_gateway_sink_suppressed_samples_total", sink="outage", quantity="cell_voltage") == 400 - sent
    assert stored_samples(ob) == 400
    ob.close()
