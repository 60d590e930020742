"""The MQTT command listener against a real Mosquitto: replies, a broker restart, and a command sent while the
listener was away (persistent session, QoS 1) handled when it returns."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway.alarms.commands import Command, CommandListener
from gateway.alarms.config import CommandsConfig
from gateway.sinks.config import MqttSinkConfig
from tests.alarms_support import Subscriber, publish, wait_until
from tests.servers import Mosquitto

TOPIC = "bms/s1/rack-01/alarms/command"


class Recorder:
    def __init__(self) -> None:
        self.commands: list[Command] = []

    async def __call__(self, cmd: Command) -> dict[str, Any]:
        self.commands.append(cmd)
        return {"id": cmd.request_id, "ok": True, "alarm_ids": list(cmd.alarm_ids), "errors": []}


@contextlib.asynccontextmanager
async def listening(port: int, rec: Recorder) -> AsyncIterator[CommandListener]:
    mq = MqttSinkConfig(host="127.0.0.1", port=port, tls=False)
    listener = CommandListener(CommandsConfig(enabled=True), mq, "s1", rec)
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.connected.wait(), 30)
        yield listener
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def ack(n: int) -> dict[str, Any]:
    return {"action": "ack", "alarm_id": "rack-01:x", "user": "alice", "reason": f"r{n}", "id": str(n)}


async def test_commands_survive_a_broker_restart_and_a_listener_outage(mosquitto: Mosquitto) -> None:
    rec = Recorder()
    async with Subscriber(mosquitto.port, f"{TOPIC}/result", client_id="results") as results:
        async with listening(mosquitto.port, rec):
            await publish(mosquitto.port, TOPIC, ack(1))
            await wait_until(lambda: len(results.messages) == 1, what="first reply")
            mosquitto.restart()  # the listener reconnects by itself
            await publish(mosquitto.port, TOPIC, ack(2))
            await wait_until(lambda: [c.reason for c in rec.commands] == ["r1", "r2"], what="command after restart")
        # The listener is gone (its session stays with the broker): a command now waits for it.
        await publish(mosquitto.port, TOPIC, ack(3))
        async with listening(mosquitto.port, rec):
            await wait_until(lambda: [c.reason for c in rec.commands] == ["r1", "r2", "r3"], what="queued command")
            await wait_until(lambda: [p["id"] for p in results.payloads(f"{TOPIC}/result")] == ["1", "2", "3"])
    assert all(c.user == "alice" and c.rack == "rack-01" for c in rec.commands)


async def test_an_invalid_command_gets_an_error_reply_and_is_not_handled(mosquitto: Mosquitto) -> None:
    rec = Recorder()
    async with Subscriber(mosquitto.port, f"{TOPIC}/result", client_id="results") as results:
        async with listening(mosquitto.port, rec):
            await publish(mosquitto.port, TOPIC, {"action": "ack", "alarm_id": "rack-02:x", "user": "eve"})
            await wait_until(lambda: len(results.messages) == 1)
    (reply,) = results.payloads(f"{TOPIC}/result")
    assert reply["ok"] is False and "not of rack 'rack-01'" in reply["errors"][0]
    assert rec.commands == []


async def test_shelve_over_mqtt_then_expiry_in_the_runtime(tmp_path: Path, mosquitto: Mosquitto) -> None:
    from gateway.config import load_config
    from gateway.model import BatchKind
    from gateway.runtime import Runtime

    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(f"""\
site: {{name: s1}}
sources:
  - {{type: simulated, name: rack-01, interval: 0.05, faults: [{{kind: contactor_open, at: 0}}]}}
sinks:
  mqtt: {{type: mqtt, host: 127.0.0.1, port: {mosquitto.port}, tls: false, enabled: false}}
store: {{path: {tmp_path / "store.db"}, commit_interval: 0.02}}
http: {{enabled: false}}
alarms:
  tick_interval: 0.05
  commands: {{enabled: true, max_shelve: 2}}
  overrides: {{contactor_positive_open: {{on_delay: 0}}}}
""")  # fmt: skip
    rt = Runtime(load_config(cfg))
    kp = "rack-01:contactor_positive_open"

    def states() -> list[tuple[str, str | None]]:
        return [(r["state"], r["user"]) for row in rt.outbox.query() if row.batch.kind == BatchKind.ALARM
                for r in row.batch.records if r["type"] == "event" and r["alarm_id"] == kp]  # fmt: skip

    task = asyncio.create_task(rt.run())
    try:
        await wait_until(lambda: states()[:1] == [("active_unack", None)], what="contactor alarm")
        async with Subscriber(mosquitto.port, f"{TOPIC}/result", client_id="results") as results:
            too_long = {"action": "shelve", "alarm_id": kp, "user": "op", "reason": "maintenance", "duration": 60}
            await publish(mosquitto.port, TOPIC, too_long)
            await publish(mosquitto.port, TOPIC, {**too_long, "duration": 0.5})
            await wait_until(lambda: len(results.messages) == 2, what="replies")
        assert "exceeds the longest shelve" in results.messages[0][1]["errors"][0]
        # Shelved by op; the contactor is still open, so the expiry brings it back unacknowledged.
        await wait_until(lambda: states() == [("active_unack", None), ("shelved", "op"), ("active_unack", None)])
    finally:
        rt.request_stop("test")
        await task
