"""Operator commands over MQTT: acknowledge, shelve and unshelve alarms, with the user and reason.

Enabled only by `alarms.commands.enabled`. The listener connects to the broker of a configured MQTT
sink (same host, TLS and credentials; its own client id), subscribes to
`<prefix>/<site>/+/alarms/command` (QoS 1, persistent session: a command sent while the link was
down arrives when it returns), and answers each command on `<prefix>/<site>/<rack>/alarms/command/result`.

Commands change the gateway's alarm state only: nothing is ever written to a BMS.

    {"action": "ack", "alarm_id": "rack-01:cell_over_voltage:m2c5", "user": "alice", "reason": "seen", "id": "42"}
    {"action": "shelve", "alarm_ids": ["rack-01:door"], "user": "bob", "reason": "maintenance", "duration": 3600}
    {"action": "ack", "alarm_id": "*", "user": "alice", "reason": "all of rack-01 seen"}
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import structlog

from gateway.alarms import metrics
from gateway.alarms.config import CommandsConfig
from gateway.configbase import credential_path, read_secret
from gateway.sinks.config import MqttSinkConfig

log = structlog.get_logger("alarms.commands")

ACTIONS = ("ack", "shelve", "unshelve")


@dataclass(frozen=True, slots=True)
class Command:
    action: str
    rack: str
    alarm_ids: tuple[str, ...]  # ("*",) means every alarm in view of the rack
    user: str
    reason: str | None
    duration: float | None
    request_id: str | None


class InvalidCommand(ValueError):
    pass


def parse_command(rack: str, payload: bytes, cfg: CommandsConfig) -> Command:
    """Parse and check one command message (pure); raise InvalidCommand saying what is wrong."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCommand(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidCommand("a command is a JSON object")
    action = doc.get("action")
    if action not in ACTIONS:
        raise InvalidCommand(f"action must be one of {list(ACTIONS)}, got {action!r}")
    user = doc.get("user")
    if not isinstance(user, str) or not user.strip():
        raise InvalidCommand("user is required (who acknowledges or shelves)")
    if cfg.allowed_users is not None and user not in cfg.allowed_users:
        raise PermissionError(f"user {user!r} may not command alarms")
    reason = doc.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidCommand("reason must be text")
    if action == "shelve" and not (reason or "").strip():
        raise InvalidCommand("shelving needs a reason")
    ids = _ids(doc, rack)
    duration = doc.get("duration")
    if action == "shelve":
        if duration is None:
            duration = cfg.default_shelve
        if not isinstance(duration, int | float) or isinstance(duration, bool) or duration <= 0:
            raise InvalidCommand("duration must be a number of seconds above 0")
        if duration > cfg.max_shelve:
            raise InvalidCommand(f"duration {duration} s exceeds the longest shelve ({cfg.max_shelve} s)")
    rid = doc.get("id")
    return Command(action, rack, ids, user.strip(), reason, None if duration is None else float(duration),
                   None if rid is None else str(rid))  # fmt: skip


def _ids(doc: dict[str, Any], rack: str) -> tuple[str, ...]:
    raw = doc.get("alarm_ids", doc.get("alarm_id"))
    ids = [raw] if isinstance(raw, str) else raw
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise InvalidCommand("alarm_id (text) or alarm_ids (a list of text) is required; '*' means all of the rack")
    if ids == ["*"]:
        return ("*",)
    foreign = [i for i in ids if not i.startswith(f"{rack}:")]
    if foreign:
        raise InvalidCommand(f"alarm ids {foreign} are not of rack {rack!r} (the command topic names the rack)")
    return tuple(ids)


def rack_from_topic(topic: str, pattern: str) -> str | None:
    """The rack a command topic names: the level where the filter has `+`."""
    parts, pat = topic.split("/"), pattern.split("/")
    if len(parts) != len(pat):
        return None
    for got, want in zip(parts, pat, strict=True):
        if want not in ("+", got):
            return None
    plus = [p for p, w in zip(parts, pat, strict=True) if w == "+"]
    return plus[0] if len(plus) == 1 else None


def tls_context(mq: MqttSinkConfig) -> ssl.SSLContext | None:
    """TLS for the broker with verification on (a CA file, else the system store), client cert optional."""
    if not mq.tls:
        return None
    ctx = ssl.create_default_context(cafile=str(mq.ca_file) if mq.ca_file else None)
    key = credential_path(mq.key_file, mq.key_credential)
    if mq.cert_file is not None:
        ctx.load_cert_chain(str(mq.cert_file), str(key) if key else None)
    return ctx


def client_args(mq: MqttSinkConfig, identifier: str) -> dict[str, Any]:
    """Keyword arguments of aiomqtt.Client from a sink's connection settings (the secret stays in memory)."""
    password = read_secret(mq.password, mq.password_file, mq.password_credential)
    return {
        "hostname": mq.host,
        "port": mq.port,
        "username": mq.username,
        "password": password.get_secret_value() if password is not None else None,
        "identifier": identifier,
        "clean_session": False,
        "keepalive": mq.keepalive,
        "tls_context": tls_context(mq),
    }


Handle = Callable[[Command], Awaitable[dict[str, Any]]]


class CommandListener:
    def __init__(self, cfg: CommandsConfig, mq: MqttSinkConfig, site: str, handle: Handle) -> None:
        self.cfg = cfg
        self.mq = mq
        self.handle = handle
        self.topic = cfg.topic or f"{mq.prefix}/{site}/+/alarms/command"
        base = mq.client_id or f"bms-gateway-{site}"
        self.identifier = f"{base}-alarms"
        self.connected = asyncio.Event()
        self._log = log.bind(broker=f"{mq.host}:{mq.port}", topic=self.topic)

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with aiomqtt.Client(**client_args(self.mq, self.identifier)) as client:
                    await client.subscribe(self.topic, qos=1)
                    self._log.info("alarm commands: listening")
                    self.connected.set()
                    backoff = 0.5
                    async for msg in client.messages:
                        await self._on_message(client, str(msg.topic), bytes(msg.payload))
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                delay = backoff * (0.5 + random.random() / 2)
                self._log.warning(
                    "alarm commands: broker unreachable, retrying", error=str(exc), retry_in=round(delay, 2)
                )
                await asyncio.sleep(delay)
                backoff = min(30.0, backoff * 2)

    async def _on_message(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        rack = rack_from_topic(topic, self.topic) or "_"
        try:
            cmd = parse_command(rack, payload, self.cfg)
        except (InvalidCommand, PermissionError) as exc:
            result = "denied" if isinstance(exc, PermissionError) else "invalid"
            metrics.commands.labels("?", result).inc()
            self._log.warning("alarm command refused", topic=topic, error=str(exc))
            reply: dict[str, Any] = {"ok": False, "errors": [str(exc)]}
        else:
            reply = await self.handle(cmd)
        if rack != "_":
            await client.publish(f"{topic}/result", json.dumps(reply, ensure_ascii=False), qos=1)
