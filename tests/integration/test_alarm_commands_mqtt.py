"""The MQTT command listener against a real Mosquitto: replies, a broker restart, a command sent while the
listener was away (persistent session, QoS 1) handled when it returns; malformed and forged commands refused
with a reply and journaled, and the commands after them still answered."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt

from gateway.alarms.commandconfig import CommandsConfig, CommandUser
from gateway.alarms.commandlistener import CommandListener
from gateway.alarms.commands import Command
from gateway.sinks.config import MqttSinkConfig
from tests.alarms_support import Subscriber, operator_key, publish
from tests.servers import Mosquitto
from tests.support.waits import await_for

TOPIC = "bms/s1/rack-01/alarms/command"


class Recorder:
    """A command target: keeps the commands it is handed and the journal entries of the refused ones."""

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.journal: list[dict[str, Any]] = []

    async def command(self, cmd: Command) -> dict[str, Any]:
        self.commands.append(cmd)
        return {"id": cmd.request_id, "ok": True, "alarm_ids": list(cmd.alarm_ids), "errors": []}

    def record(self, entries: list[dict[str, Any]]) -> None:
        self.journal.extend(entries)


@contextlib.asynccontextmanager
async def listening(port: int, rec: Recorder, cfg: CommandsConfig) -> AsyncIterator[CommandListener]:
    mq = MqttSinkConfig(host="127.0.0.1", port=port, tls=False)
    listener = CommandListener(cfg, mq, "s1", rec)
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.connected.wait(), 30)
        yield listener
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def signed_config(op: Any, **extra: Any) -> CommandsConfig:
    return CommandsConfig(enabled=True, users={"alice": CommandUser(public_key=op.public)}, **extra)


def ack(op: Any, n: int) -> dict[str, Any]:
    return op.sign("alice", "s1", "rack-01", action="ack", alarm_id="rack-01:x", reason=f"r{n}", id=str(n))


async def publish_raw(port: int, topic: str, payloads: list[bytes]) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="alarm-test-raw") as client:
        for p in payloads:
            await client.publish(topic, p, qos=1)


async def test_commands_survive_a_broker_restart_and_a_listener_outage(tmp_path: Path, mosquitto: Mosquitto) -> None:
    rec, op = Recorder(), operator_key(tmp_path)
    cfg = signed_config(op)
    async with Subscriber(mosquitto.port, f"{TOPIC}/result", client_id="results") as results:
        async with listening(mosquitto.port, rec, cfg):
            await publish(mosquitto.port, TOPIC, ack(op, 1))
            await await_for(lambda: len(results.messages) == 1, what="first reply")
            mosquitto.restart()  # the listener reconnects by itself
            await publish(mosquitto.port, TOPIC, ack(op, 2))
            await await_for(lambda: [c.reason for c in rec.commands] == ["r1", "r2"], what="command after restart")
        # The listener is gone (its session stays with the broker): a command now waits for it.
        await publish(mosquitto.port, TOPIC, ack(op, 3))
        async with listening(mosquitto.port, rec, cfg):
            await await_for(lambda: [c.reason for c in rec.commands] == ["r1", "r2", "r3"], what="queued command")
            await await_for(lambda: [p["id"] for p in results.payloads(f"{TOPIC}/result")] == ["1", "2", "3"])
    assert all(c.user == "alice" and c.rack == "rack-01" for c in rec.commands)
    assert all(c.identity is not None and c.identity.verified and c.identity.key_id == op.key_id for c in rec.commands)


async def test_an_invalid_command_gets_an_error_reply_and_is_not_handled(mosquitto: Mosquitto) -> None:
    rec = Recorder()
    async with Subscriber(mosquitto.port, f"{TOPIC}/result", client_id="results") as results:
        async with listening(mosquitto.port, rec, CommandsConfig(enabled=True)):
            await publish(mosquitto.port, TOPIC, {"action": "ack", "alarm_id": "rack-02:x", "user": "eve"})
            await await_for(lambda: len(results.messages) == 1)
    (reply,) = results.payloads(f"{TOPIC}/result")
    assert reply["ok"] is False and "not of rack 'rack-01'" in reply["errors"][0]
    assert rec.commands == [] and rec.journal[0]["type"] == "command_refused"


async def test_malformed_commands_are_refused_with_a_reply_and_the_next_ones_are_answered(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    # Issue 13 (3): NaN raised a ValueError, deep nesting a RecursionError, and the commands behind them were lost.
    rec, op = Recorder(), operator_key(tmp_path)
    nan = b'{"action": "shelve", "alarm_id": "rack-01:x", "user": "alice", "reason": "r", "duration": NaN, "id": "n"}'
    deep = b"[" * 5000 + b"]" * 5000
    big = json.dumps({"action": "ack", "alarm_id": "rack-01:x", "user": "alice", "reason": "x" * 40_000}).encode()
    junk = bytes(range(256)) * 4
    async with Subscriber(mosquitto.port, f"{TOPIC}/result", client_id="results") as results:
        async with listening(mosquitto.port, rec, signed_config(op, burst=100)):
            await publish_raw(mosquitto.port, TOPIC, [nan, deep, big, junk])
            for n in range(5):
                await publish(mosquitto.port, TOPIC, ack(op, n))
            await await_for(lambda: len(results.messages) == 9, what="nine replies")
    replies = results.payloads(f"{TOPIC}/result")
    assert [(r["ok"], r.get("code")) for r in replies[:4]] == [
        (False, "non_finite"), (False, "too_deep"), (False, "too_large"), (False, "not_json"),
    ]  # fmt: skip
    assert replies[0]["id"] == "n" and all(len(json.dumps(r)) < 1000 for r in replies)
    assert [r["id"] for r in replies[4:]] == ["0", "1", "2", "3", "4"] and all(r["ok"] for r in replies[4:])
    assert [c.reason for c in rec.commands] == ["r0", "r1", "r2", "r3", "r4"]
    # Invalid commands are journaled once per burst: the first in full, the rest counted when the burst ends.
    assert [(e["type"], e["code"]) for e in rec.journal] == [("command_refused", "non_finite")]


async def test_shelve_over_mqtt_then_expiry_in_the_runtime(tmp_path: Path, mosquitto: Mosquitto) -> None:
    from gateway.alarms.service import service_of
    from gateway.config.settings import load_config
    from gateway.model import BatchKind
    from gateway.runtime.core import Runtime

    op = operator_key(tmp_path)
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
  commands: {{enabled: true, max_shelve: 2, users: {{op: {{public_key: "{op.public}"}}}}}}
  overrides: {{contactor_positive_open: {{on_delay: 0}}}}
""")  # fmt: skip
    rt = Runtime(load_config(cfg))
    kp = "rack-01:contactor_positive_open"

    def states() -> list[tuple[str, str | None]]:
        return [(r["state"], r["user"]) for row in rt.outbox.query() if row.batch.kind == BatchKind.ALARM
                for r in row.batch.records if r["type"] == "event" and r["alarm_id"] == kp]  # fmt: skip

    task = asyncio.create_task(rt.run())
    try:
        await await_for(lambda: states()[:1] == [("active_unack", None)], what="contactor alarm")
        svc = service_of(rt)
        assert svc is not None and svc.commands is not None
        await await_for(svc.commands.connected.is_set, what="the listener's subscription")
        async with Subscriber(mosquitto.port, f"{TOPIC}/result", client_id="results") as results:
            shelve = {"action": "shelve", "alarm_id": kp, "reason": "maintenance"}
            await publish(mosquitto.port, TOPIC, op.sign("op", "s1", "rack-01", **shelve, duration=60))
            await publish(mosquitto.port, TOPIC, op.sign("op", "s1", "rack-01", **shelve, duration=0.5))
            await await_for(lambda: len(results.messages) == 2, what="replies")
        assert "exceeds the longest shelve" in results.messages[0][1]["errors"][0]
        assert results.messages[1][1]["key_id"] == op.key_id and results.messages[1][1]["verified"] is True
        # Shelved by op; the contactor is still open, so the expiry brings it back unacknowledged.
        await await_for(lambda: states() == [("active_unack", None), ("shelved", "op"), ("active_unack", None)])
    finally:
        rt.request_stop("test")
        await task


async def test_forged_acknowledgements_are_refused_and_journaled_a_signed_one_names_its_key(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    # Issue 13 (1): an anonymous client acknowledged an alarm as "alice", and the journal recorded "alice".
    from gateway.alarms.journal import Journal
    from gateway.alarms.service import service_of
    from gateway.config.settings import load_config
    from gateway.runtime.core import Runtime

    alice, mallory = operator_key(tmp_path, "alice"), operator_key(tmp_path, "mallory")
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
  commands: {{enabled: true, users: {{alice: {{public_key: "{alice.public}"}}}}}}
  overrides: {{contactor_positive_open: {{on_delay: 0}}}}
""")  # fmt: skip
    kp = "rack-01:contactor_positive_open"
    fields = {"action": "ack", "alarm_id": kp, "reason": "seen"}
    replayed = alice.sign("alice", "s1", "rack-01", **fields, id="genuine")
    forged = {
        "unsigned": {"user": "alice", **fields, "id": "unsigned"},
        "bad_signature": mallory.sign("alice", "s1", "rack-01", **fields, id="wrong-key"),
        "stale": alice.sign("alice", "s1", "rack-01", ts=int(time.time()) - 3600, **fields, id="expired"),
    }
    rt = Runtime(load_config(cfg))
    task = asyncio.create_task(rt.run())
    try:
        async with Subscriber(mosquitto.port, f"{TOPIC}/result", client_id="results") as results:
            svc = service_of(rt)
            assert svc is not None and svc.commands is not None
            await await_for(svc.commands.connected.is_set, what="the listener's subscription")
            await await_for(lambda: kp in svc.engine.ids_of_rack("rack-01"), what="the contactor alarm")
            for doc in forged.values():
                await publish(mosquitto.port, TOPIC, doc)
            await publish(mosquitto.port, TOPIC, replayed)
            await await_for(lambda: len(results.messages) == 4, what="four replies")
            await publish(mosquitto.port, TOPIC, {**replayed})  # the same command again: a replay
            await await_for(lambda: len(results.messages) == 5, what="the replay's reply")
        replies = {p["id"]: p for p in results.payloads(f"{TOPIC}/result") if p["id"] != "genuine"}
        replies["replayed"] = results.payloads(f"{TOPIC}/result")[-1]
        genuine = results.payloads(f"{TOPIC}/result")[3]
        assert genuine["ok"] is True and genuine["key_id"] == alice.key_id and genuine["alarm_ids"] == [kp]
        assert {k: (r["ok"], r["code"]) for k, r in replies.items()} == {
            "unsigned": (False, "unsigned"), "wrong-key": (False, "bad_signature"), "expired": (False, "stale"),
            "replayed": (False, "replayed"),
        }  # fmt: skip
    finally:
        rt.request_stop("test")
        await task
    j = Journal(tmp_path / "store.db", readonly=True)
    entries = [e.body for e in j.entries()]
    j.close()
    refused = [(e["code"], e["user"], e.get("request_id")) for e in entries if e["type"] == "command_refused"]
    assert refused == [("unsigned", "alice", "unsigned"), ("bad_signature", "alice", "wrong-key"),
                       ("stale", "alice", "expired"), ("replayed", "alice", "genuine")]  # fmt: skip
    (accepted,) = [e for e in entries if e["type"] == "command"]
    assert (accepted["user"], accepted["verified"], accepted["key_id"]) == ("alice", True, alice.key_id)
    acked = [e for e in entries if e["type"] == "event" and e["alarm_id"] == kp and e["user"] == "alice"]
    assert len(acked) == 1  # one acknowledgement: the forged ones changed nothing
