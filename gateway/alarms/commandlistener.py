"""The MQTT command listener: bounded from the socket to the engine, and never stopped by what it receives.

- The broker is asked (MQTT 5 Maximum Packet Size) not to send messages much larger than
  `max_payload`; the client keeps at most `CLIENT_QUEUE` messages (more are dropped and counted).
- The reader only sorts: a message over `max_payload` is kept as its size alone, then each goes to
  a queue of `queue_size` (full: dropped, counted).
- The worker reads each command (`commands.read_command`), rate-limited per rack with two token
  buckets: one for commands whose signature holds, one for everything else, so a flood from
  someone without a key delays nobody's signed commands. Every command it reads is answered on
  `<topic>/result` and journaled (refusals through `RefusalLog`, bounded in bursts).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.alarms import metrics
from gateway.alarms.commandauth import Verifier, load_keyring
from gateway.alarms.commandconfig import CommandsConfig
from gateway.alarms.commandlimits import Denied, InvalidCommand, RackBuckets, Refused, decode
from gateway.alarms.commandrecord import RefusalLog, refusal_entry
from gateway.alarms.commands import MAX_REQUEST_ID, Command, authorize, bounded_reply, client_args, command_of
from gateway.alarms.commands import rack_from_topic as rack_of
from gateway.runtime.backoff import Backoff
from gateway.sinks.config import MqttSinkConfig
from gateway.textsafe import printable

log = structlog.get_logger("alarms.commands")

CLIENT_QUEUE = 32  # messages the MQTT client holds before the reader takes them
SESSION_EXPIRY = 86400  # seconds the broker keeps the session (and commands for it) while the listener is away
PUBLISH_TIMEOUT = 10.0


class CommandTarget(Protocol):
    """Where commands go: the alarm engine (tests give their own)."""

    async def command(self, cmd: Command) -> dict[str, Any]: ...

    def record(self, entries: list[dict[str, Any]]) -> None: ...


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    rack: str
    payload: bytes | None  # None: over max_payload, not kept
    size: int


def packet_limit(cfg: CommandsConfig) -> int:
    """What the broker may send: room for a command a few times over the limit (it is answered as too large)."""
    return 4 * cfg.max_payload + 4096


def _dropping_queue(on_drop: Callable[[], None]) -> type[asyncio.Queue[aiomqtt.Message]]:
    class DroppingQueue(asyncio.Queue[aiomqtt.Message]):
        """The client's incoming queue: when full, a message is dropped and counted here (not logged each time)."""

        def put_nowait(self, item: aiomqtt.Message) -> None:
            if self.full():
                on_drop()
                return
            super().put_nowait(item)

    return DroppingQueue


class CommandListener:
    def __init__(self, cfg: CommandsConfig, mq: MqttSinkConfig, site: str, target: CommandTarget,
                 resolve: Callable[[Path], Path] = lambda p: p, wall: Callable[[], float] = time.time,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:  # fmt: skip
        self.cfg, self.mq, self.site, self.target, self.clock_ns = cfg, mq, site, target, clock_ns
        self.topic = cfg.topic or f"{mq.prefix}/{site}/+/alarms/command"
        self.identifier = f"{mq.client_id or f'bms-gateway-{site}'}-alarms"
        self.verifier = Verifier(cfg, load_keyring(cfg, resolve), site, wall)
        self.queue: asyncio.Queue[Received] = asyncio.Queue(cfg.queue_size)
        self.open_buckets = RackBuckets(cfg.rate, cfg.burst)
        self.signed_buckets = RackBuckets(cfg.rate, cfg.burst)
        self.refusals = RefusalLog(target.record, clock_ns)
        self.client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self._log = log.bind(broker=f"{mq.host}:{mq.port}", topic=self.topic)

    def _client_args(self) -> dict[str, Any]:
        args = client_args(self.mq, self.identifier)
        del args["clean_session"]  # MQTT 5: clean_start and a session expiry instead
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho has no annotations here
        props.SessionExpiryInterval = SESSION_EXPIRY
        props.MaximumPacketSize = packet_limit(self.cfg)
        return {**args, "protocol": aiomqtt.ProtocolVersion.V5, "clean_start": False, "properties": props,
                "max_queued_incoming_messages": CLIENT_QUEUE,
                "queue_type": _dropping_queue(lambda: self._drop("client_queue_full", "?"))}  # fmt: skip

    async def run(self) -> None:
        if self.cfg.require_signature and not self.verifier.keyring.keys:
            self._log.warning("alarm commands: no user has a usable key, every command will be refused "
                              "(alarms.commands.users, or require_signature: false)")  # fmt: skip
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._work(), name="alarm-commands:work")
            await self._listen()

    async def _listen(self) -> None:
        backoff = Backoff(0.5, 30.0)
        while True:
            try:
                async with aiomqtt.Client(**self._client_args()) as client:
                    await client.subscribe(self.topic, qos=1)
                    self._log.info("alarm commands: listening")
                    self.client = client
                    backoff.reset()
                    self.connected.set()
                    async for msg in client.messages:
                        self._take(str(msg.topic), msg.payload)
            except aiomqtt.MqttError as exc:
                self.client = None
                self.connected.clear()
                delay = backoff.next_delay()
                self._log.warning("alarm commands: broker unreachable, retrying", error=str(exc),
                                  retry_in=round(delay, 2))  # fmt: skip
                await asyncio.sleep(delay)

    def _take(self, topic: str, payload: Any) -> None:
        """Reader: sort one message into the queue (its size alone when over the limit), or drop it counted."""
        rack = rack_of(topic, self.topic) or "?"
        data = payload if isinstance(payload, bytes) else str(payload if payload is not None else "").encode()
        size = len(data)
        try:
            self.queue.put_nowait(Received(topic, rack, data if size <= self.cfg.max_payload else None, size))
        except asyncio.QueueFull:
            self._drop("queue_full", rack)

    def _drop(self, reason: str, rack: str) -> None:
        metrics.commands_dropped.labels(reason).inc()
        self.refusals.dropped(reason, rack, time.monotonic())

    async def _work(self) -> None:
        """Worker: one command at a time; every second the bursts that are over are summed up."""
        while True:
            try:
                async with asyncio.timeout(1.0):
                    item = await self.queue.get()
            except TimeoutError:
                self.refusals.flush(time.monotonic())
                continue
            try:
                await self.handle(item)
            except Exception as exc:  # a bug: this command goes unanswered, the listener goes on
                self._log.exception("alarm command failed", error=printable(exc, 300), rack=printable(item.rack, 64))
            self.refusals.flush(time.monotonic())

    async def handle(self, item: Received) -> None:
        now = time.monotonic()
        doc: dict[str, Any] | None = None
        try:
            if item.payload is None:
                raise InvalidCommand(f"command of {item.size} bytes is over the limit of {self.cfg.max_payload}",
                                     "too_large")  # fmt: skip
            doc = decode(item.payload, self.cfg.max_payload, self.cfg.max_depth)
            cmd = command_of(item.rack, doc, self.cfg)
            identity = self.verifier.identify(doc, item.rack, cmd.user)
            authorize(cmd, identity, self.cfg)
        except Refused as r:
            if not self.open_buckets.take(item.rack, now):
                self._drop("rate_limited", item.rack)
                return
            await self._refuse(item, r, doc if doc is not None else r.doc, now)
            return
        if not (self.signed_buckets if identity.verified else self.open_buckets).take(item.rack, now):
            if not identity.verified:
                self._drop("rate_limited", item.rack)
                return
            limit = Denied(f"rate limited: over {self.cfg.burst} commands at once or {self.cfg.rate:g} a second "
                           f"for rack {item.rack!r}", "rate_limited")  # fmt: skip
            await self._refuse(item, limit, doc, now)
            return
        reply = await self.target.command(replace(cmd, identity=identity))
        await self._reply(item.topic, reply)

    async def _refuse(self, item: Received, r: Refused, doc: dict[str, Any] | None, now: float) -> None:
        action = doc.get("action") if doc is not None else None
        metrics.commands.labels(action if isinstance(action, str) and len(action) < 16 else "?", r.result).inc()
        metrics.commands_refused.labels(r.code).inc()
        entry = refusal_entry(self.clock_ns(), item.rack, r.result, r.code, str(r), doc, item.payload, item.size,
                              self.cfg.max_text)  # fmt: skip
        self.refusals.refused(r.result, entry, now)
        rid = doc.get("id") if doc is not None else None
        reply = {"id": str(rid)[:MAX_REQUEST_ID] if isinstance(rid, str | int) and not isinstance(rid, bool) else None,
                 "ok": False, "result": r.result, "code": r.code, "errors": [str(r)]}  # fmt: skip
        await self._reply(item.topic, reply)

    async def _reply(self, topic: str, reply: dict[str, Any]) -> None:
        client = self.client
        if client is None:
            self._log.info("alarm command: no connection for the reply", id=reply.get("id"))
            return
        text = json.dumps(bounded_reply(reply), ensure_ascii=False, default=str)
        try:
            await client.publish(f"{topic}/result", text, qos=1, timeout=PUBLISH_TIMEOUT)
        except aiomqtt.MqttError as exc:
            self._log.warning("alarm command: reply not published", error=str(exc), id=reply.get("id"))

    def close(self) -> None:
        """At a stop: the bursts still open are summed up in the journal."""
        self.refusals.flush(time.monotonic(), everything=True)
