"""MQTT sink against a real Mosquitto: topics, retained state and status, broker restart, TLS, auth, Last Will."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gateway.errors import SinkError
from gateway.model import Batch, BatchKind, DeviceState, DeviceStatus, Sample
from gateway.sinks.base import SinkAuthError
from gateway.sinks.config import MqttSinkConfig
from gateway.sinks.mqtt.sink import MqttSink
from gateway.sinks.runner import SinkRunner
from gateway.store.outbox import Outbox
from tests.delivery_support import Collector, make_certs, metric, running, sample_batch
from tests.servers import Mosquitto
from tests.support.waits import await_for

FAST = {"batch_max_age": 0.05, "backoff_initial": 0.05, "backoff_max": 0.5, "tls": False, "timeout": 3}
ROOT = Path(__file__).resolve().parents[2]


def make(tmp_path: Path, port: int, **kw: object) -> tuple[Outbox, SinkRunner]:
    ob = Outbox(tmp_path / "store.db")
    cfg = MqttSinkConfig.model_validate({"host": "127.0.0.1", "port": port, **FAST, **kw})
    runner = SinkRunner("mqtt", MqttSink("mqtt", cfg, "s1", tmp_path), ob, cfg)
    return ob, runner


async def test_topics_retained_state_and_clean_stop(tmp_path: Path, mosquitto: Mosquitto) -> None:
    ob, runner = make(tmp_path, mosquitto.port, ha_discovery=True)
    async with Collector(mosquitto.port) as sub:
        async with running(runner):
            await await_for(lambda: sub.payloads("bms/s1/gateway/status") == [b"online"])
            online = DeviceStatus("r1", DeviceState.ONLINE, "", 1)
            ob.append([Batch.of_samples("r1", [Sample(1, "soc", 50.0, "%", "good", "r1")], status=online)])
            ob.append([Batch.of_samples("r1", [Sample(2, "soc", 51.0, "%", "good", "r1")])])
            event = {"type": "event", "ts": 3, "rack": "r1", "alarm_id": "a1", "severity": "major",
                     "state": "active_unack", "previous": "normal", "message": "m", "value": 1.0, "rule": "r",
                     "user": None, "reason": None}  # fmt: skip
            active = {"type": "active", "ts": 3, "rack": "r1", "active": [{"alarm_id": "a1"}]}
            ob.append([Batch("alarms", kind=BatchKind.ALARM, device="r1", records=[event, active])])
            runner.notify()
            await await_for(runner.caught_up)
            await await_for(lambda: len(sub.payloads("bms/s1/r1/alarms/active")) == 1)
        await await_for(lambda: sub.payloads("bms/s1/gateway/status")[-1:] == [b"offline"])
    assert sub.telemetry_seqs("bms/s1/r1/telemetry") == [1, 2]
    state = json.loads(sub.payloads("bms/s1/r1/state")[-1])
    assert state["values"]["soc"]["v"] == 51.0 and state["values"]["soc"]["ql"] == "good"
    assert sub.payloads("bms/s1/r1/availability") == [b"online"]
    assert json.loads(sub.payloads("bms/s1/r1/alarms/events")[0])["alarm_id"] == "a1"
    disc = sub.payloads("homeassistant/sensor/s1_r1_soc/config")
    assert json.loads(disc[0])["state_topic"] == "bms/s1/r1/state"
    # A new subscriber sees the retained topics: the status, state, availability and alarm list.
    async with Collector(mosquitto.port, client_id="late") as late:
        await await_for(lambda: {t for t, _, r in late.messages if r} >= {
            "bms/s1/gateway/status", "bms/s1/r1/state", "bms/s1/r1/availability", "bms/s1/r1/alarms/active"
        })  # fmt: skip
    ob.close()


async def test_the_socket_sends_and_acknowledges_at_once(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Mosquitto keeps Nagle's algorithm on by default: without TCP_QUICKACK on the gateway's side each
    write of two or more QoS 1 messages waited 40 ms for its second PUBACK (the delayed ACK)."""
    ob, runner = make(tmp_path, mosquitto.port)
    async with running(runner):
        ob.append([Batch.of_samples("r1", [Sample(1, "soc", 50.0, "%", "good", "r1")])])
        runner.notify()
        await await_for(runner.caught_up)
        sink = runner.sink
        assert isinstance(sink, MqttSink) and sink._client is not None
        sock = sink._client._client.socket()
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1  # set after the last PUBACK
    ob.close()


async def test_broker_restart_mid_stream_loses_nothing(tmp_path: Path, mosquitto: Mosquitto) -> None:
    ob, runner = make(tmp_path, mosquitto.port)
    seqs: list[int] = []
    async with Collector(mosquitto.port, topic="bms/s1/r1/telemetry") as sub:
        async with running(runner):
            for i in range(150):
                seqs.append(ob.append([sample_batch("r1", time.time_ns(), 20, base=i)]))
                runner.notify()
                if i == 50:
                    mosquitto.stop()
                if i == 100:
                    mosquitto.start()
                await asyncio.sleep(0.02)
            await await_for(runner.caught_up, timeout=30)
            await await_for(lambda: set(sub.telemetry_seqs("bms/s1/r1/telemetry")) >= set(seqs), timeout=30)
    got = sub.telemetry_seqs("bms/s1/r1/telemetry")
    first_seen = list(dict.fromkeys(got))
    lost = len(set(seqs) - set(got))
    print(f"published {len(seqs)} telemetry messages, lost: {lost}, duplicates: {len(got) - len(first_seen)}")
    assert lost == 0
    assert first_seen == seqs  # in order
    assert sub.connects >= 2 and metric("bms_gateway_sink_retries_total", sink="mqtt") > 0
    ob.close()


async def test_tls_with_client_certificate(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "pki")
    broker = Mosquitto(tmp_path / "broker", require_certificate=True)
    broker.tls = {"ca": certs["ca.crt"], "cert": certs["server.crt"], "key": certs["server.key"]}
    broker.start()
    try:
        tls = {"tls": True, "ca_file": str(certs["ca.crt"])}
        ob, runner = make(tmp_path, broker.tls_port, **tls, cert_file="pki/client.crt", key_file="pki/client.key")
        async with Collector(broker.port) as sub, running(runner):
            ob.append([sample_batch("r1", 1, 3)])
            runner.notify()
            await await_for(runner.caught_up)
            await await_for(lambda: len(sub.payloads("bms/s1/r1/telemetry")) == 1)
        # Verification is on: without our CA the broker's certificate is refused.
        cfg = MqttSinkConfig.model_validate({"host": "127.0.0.1", "port": broker.tls_port, **FAST, "tls": True})
        with pytest.raises(SinkError, match="cannot connect"):
            await MqttSink("m2", cfg, "s1").open()
        # A CA file that is not there: an error to retry, not a crash.
        cfg = MqttSinkConfig.model_validate(
            {"host": "127.0.0.1", "port": broker.tls_port, **FAST, "tls": True, "ca_file": str(tmp_path / "nope.pem")}
        )
        with pytest.raises(SinkError, match="TLS files"):
            await MqttSink("m4", cfg, "s1").open()
        # Without a client certificate the broker refuses us.
        cfg = MqttSinkConfig.model_validate({"host": "127.0.0.1", "port": broker.tls_port, **FAST, **tls})
        with pytest.raises(SinkError):
            await MqttSink("m3", cfg, "s1").open()
        ob.close()
    finally:
        broker.stop()


async def test_password_from_file_and_refused_credentials(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker", users={"gw": "s3cret-pw"}).start()
    try:
        (tmp_path / "pw").write_text("s3cret-pw\n")
        ok = MqttSinkConfig.model_validate(
            {"host": "127.0.0.1", "port": broker.port, **FAST, "username": "gw", "password_file": str(tmp_path / "pw")}
        )
        sink = MqttSink("mqtt", ok, "s1")
        assert "accepted" in await sink.probe()  # bms-gateway sinks --probe
        await sink.open()
        await sink.close()
        bad = MqttSinkConfig.model_validate(
            {"host": "127.0.0.1", "port": broker.port, **FAST, "username": "gw", "password": "wrong-pw"}
        )
        with pytest.raises(SinkAuthError):
            await MqttSink("mqtt", bad, "s1").probe()
        with pytest.raises(SinkAuthError) as info:
            await MqttSink("mqtt", bad, "s1").open()
        assert "wrong-pw" not in str(info.value) and "wrong-pw" not in repr(bad)
    finally:
        broker.stop()


KILLED = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from gateway.sinks.config import MqttSinkConfig
    from gateway.sinks.mqtt.sink import MqttSink

    async def main():
        cfg = MqttSinkConfig(host="127.0.0.1", port=int(sys.argv[1]), tls=False, keepalive=5)
        sink = MqttSink("mqtt", cfg, "s1")
        await sink.open()
        print("open", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_last_will_offline_after_kill_9(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with Collector(mosquitto.port, topic="bms/s1/gateway/status") as sub:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", KILLED, str(mosquitto.port), stdout=asyncio.subprocess.PIPE, cwd=ROOT
        )
        try:
            assert proc.stdout is not None
            while (line := await proc.stdout.readline()) not in (b"open\n", b""):
                pass  # log lines
            assert line == b"open\n"
            await await_for(lambda: sub.payloads("bms/s1/gateway/status") == [b"online"])
            os.kill(proc.pid, signal.SIGKILL)
            await await_for(lambda: sub.payloads("bms/s1/gateway/status") == [b"online", b"offline"], timeout=60)
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
