"""Sparkplug B sink (aiomqtt): the gateway as a Sparkplug edge node, one device per rack.

At every connect the sink takes the next bdSeq (kept in a file, see gateway.sinks.sparkplug.state),
registers NDEATH with it as the MQTT will (QoS 1), subscribes to its NCMD and DCMD topics, and publishes
NBIRTH (seq 0) and the DBIRTH of every device alive. A write renders stored rows as DBIRTH/DDATA/DDEATH
(gateway.sinks.sparkplug.node) and returns when the broker acknowledged every message (QoS 1 by
default), so the runner moves the cursor only over what the broker has: nothing is lost across broker
outages and restarts (a batch may arrive twice). A clean stop publishes NDEATH before it disconnects.

A rebirth request (NCMD `Node Control/Rebirth = true`) is answered at once by the connection's own task
(`sparkplug-rebirth:<sink>`, started at connect and ended with the connection), also when no data
flows. One lock orders it with the writes: a write renders and publishes its rows under it, so the
births come before or after a write, never inside it, and `seq` follows the order of publication.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import aiomqtt
import structlog

from gateway.alarms.commands import client_args, resolved
from gateway.errors import ConfigError, SinkError
from gateway.sinks.base import Rejected
from gateway.sinks.columns import RENDER_STEP_SAMPLES
from gateway.sinks.mqtt.payloads import Message
from gateway.sinks.mqtt.publish import SOCKET_OPTIONS, connect_client, publish_acked
from gateway.sinks.sparkplug.config import SparkplugSinkConfig
from gateway.sinks.sparkplug.inbound import CommandGate, births, commands, handing_queue, payload_bytes
from gateway.sinks.sparkplug.node import EdgeNode, device_id
from gateway.sinks.sparkplug.properties import DeviceInfo, NodeInfo
from gateway.sinks.sparkplug.state import BdSeqFile
from gateway.store.outbox import Row
from gateway.textsafe import printable

if TYPE_CHECKING:
    from gateway.config.settings import LoadedConfig

log = structlog.get_logger("sink.sparkplug")

MAX_INFLIGHT = 100
TOPIC_SHOWN = 200  # characters of an inbound topic in a log line


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class SparkplugSink:
    def __init__(
        self, name: str, cfg: SparkplugSinkConfig, site: str, state_file: Path, info: NodeInfo | None = None
    ) -> None:
        """`cfg` with its files resolved (absolute or relative to the working directory); `info`: what the
        births say about the node and its devices (the site's name alone by default)."""
        self.name = name
        self.cfg = cfg
        self.node = EdgeNode(cfg.group_id, cfg.edge_node_id or site, cfg.qos, info or NodeInfo(site=site))
        self.client_id = cfg.client_id or f"bms-gateway-{site}-{name}"
        self.bd_file = BdSeqFile(state_file)
        self.gate = CommandGate(self.node.topics.node_topic("NCMD"), cfg.command_max_bytes, cfg.commands_per_minute)
        self.rebirths = 0  # rebirths requested and answered, since start
        self._rebirth = asyncio.Event()
        self._rebirth_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one publisher at a time: a write, or the births of a rebirth
        self._client: aiomqtt.Client | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._logged: set[str] = set()  # results of inbound messages logged in this connection
        self._log = log.bind(sink=name)

    def __repr__(self) -> str:
        return f"SparkplugSink(name={self.name!r}, host={self.cfg.host!r}, port={self.cfg.port})"

    def _make_client(self, probe: bool) -> aiomqtt.Client:
        """The node's client (clean session, NDEATH as the will, inbound messages judged as they come), or
        for `probe` a throw-away one with its own id and no will."""
        try:
            args = client_args(self.cfg, f"{self.client_id}-probe" if probe else self.client_id)
        except ConfigError as exc:
            raise SinkError(str(exc), retry=False) from None
        except (OSError, ssl.SSLError) as exc:
            raise SinkError(f"cannot load the TLS files: {exc}", retry=False) from None
        will = aiomqtt.Will(self.node.topics.node_topic("NDEATH"), self.node.ndeath(), qos=1, retain=False)
        args.update(
            clean_session=True,  # Sparkplug B 3.0 with MQTT 3.1.1
            timeout=self.cfg.timeout,
            max_inflight_messages=MAX_INFLIGHT,
            socket_options=SOCKET_OPTIONS,
            queue_type=handing_queue(self._inbound),
            will=None if probe else will,
        )
        client = aiomqtt.Client(**args)
        client.pending_calls_threshold = 100_000  # a backlog drain has many publishes in flight, by design
        return client

    async def _connect(self, client: aiomqtt.Client) -> contextlib.AsyncExitStack:
        return await connect_client(client, f"{self.cfg.host}:{self.cfg.port}")

    async def probe(self) -> str:
        stack = await self._connect(self._make_client(probe=True))
        await stack.aclose()
        return f"broker {self.cfg.host}:{self.cfg.port} accepted the connection"

    async def open(self) -> None:
        await self._disconnect()
        self.node.bd_seq = self.bd_file.next()  # kept before the will that carries it is registered
        client = self._make_client(probe=False)
        self._stack = await self._connect(client)
        self._client = client
        self._logged = set()
        try:
            for topic in (self.node.topics.node_topic("NCMD"), self.node.topics.node_topic("DCMD") + "/+"):
                await client.subscribe(topic, qos=1, timeout=self.cfg.timeout)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            raise SinkError(f"subscribe to the command topics failed: {exc}") from None
        self._rebirth.clear()
        async with self._lock:
            await self._publish(self.node.births(now_ms()))
        self._rebirth_task = asyncio.get_running_loop().create_task(
            self._answer_rebirths(), name=f"sparkplug-rebirth:{self.name}"
        )
        self._log.info(
            "sparkplug edge node born",
            host=self.cfg.host,
            port=self.cfg.port,
            topic=self.node.topics.node_topic("NBIRTH"),
            bd_seq=self.node.bd_seq,
        )

    def _inbound(self, message: aiomqtt.Message) -> None:
        """A message from the broker (called by the client as it arrives; nothing is queued)."""
        topic = message.topic.value
        verdict = self.gate.judge(topic, payload_bytes(message), time.monotonic())
        commands.labels(self.name, verdict.result).inc()
        if verdict.rebirth:
            self._rebirth.set()
            self._log.info("sparkplug rebirth requested; NBIRTH and DBIRTHs follow")
        elif verdict.result not in self._logged:  # one line per kind of refusal and connection
            self._logged.add(verdict.result)
            self._log.warning(
                "sparkplug command ignored (logged once per connection; counted)",
                result=verdict.result,
                topic=printable(topic, TOPIC_SHOWN),
                detail=verdict.detail,
            )

    async def _answer_rebirths(self) -> None:
        """The connection's task: NBIRTH and every DBIRTH as soon as a host asks (between writes)."""
        while True:
            await self._rebirth.wait()
            self._rebirth.clear()
            try:
                async with self._lock:
                    await self._publish(self.node.births(now_ms()))
            except SinkError as exc:  # the connection failed: the next write fails too, and reconnects
                self._log.warning("sparkplug rebirth not published; the next connection is born", error=str(exc))
                return
            self.rebirths += 1

    async def write(self, rows: Sequence[Row]) -> list[Rejected]:
        async with self._lock:
            now = now_ms()
            msgs: list[Message] = []
            since_yield = 0
            for row in rows:
                msgs += self.node.render([row], now)
                since_yield += len(row.batch)
                if since_yield >= RENDER_STEP_SAMPLES:  # let the event loop run between parts of a big write
                    since_yield = 0
                    await asyncio.sleep(0)
            await self._publish(msgs)
        return []

    async def _publish(self, msgs: Sequence[Message]) -> None:
        """Publish in order; return when every QoS 1 message was acknowledged (PUBACK)."""
        await publish_acked(self._client, msgs, self.cfg.timeout)
        for m in msgs:
            kind = m.topic.split("/", 3)[2]
            if kind in ("NBIRTH", "DBIRTH"):
                births.labels(self.name, kind).inc()

    async def _stop_rebirths(self) -> None:
        task, self._rebirth_task = self._rebirth_task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])  # (a cancellation of this task itself still reaches it)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("sparkplug rebirth task failed", exc_info=task.exception())

    async def _disconnect(self) -> None:
        await self._stop_rebirths()
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with contextlib.suppress(Exception):
                await stack.aclose()

    async def close(self) -> None:
        """Clean stop: NDEATH (the will's payload) published, then a normal DISCONNECT."""
        await self._stop_rebirths()
        if self._client is not None:
            death = Message(self.node.topics.node_topic("NDEATH"), self.node.ndeath(), 1, False)
            with contextlib.suppress(SinkError):
                await self._publish([death])
        await self._disconnect()


def state_path(name: str, cfg: SparkplugSinkConfig, loaded: LoadedConfig) -> Path:
    """Where the bdSeq is kept: `state_file` (relative to gateway.yaml), else beside the store."""
    if cfg.state_file is not None:
        return loaded.resolve(cfg.state_file)
    store = loaded.config.store.path
    return store.with_name(f"{store.name}.sparkplug-{name}.json")


def node_info(loaded: LoadedConfig) -> NodeInfo:
    """The site, the gateway's version and each configured rack's source, its type and profile."""
    from gateway.ops.service import VERSION

    devices: dict[str, DeviceInfo] = {}
    for src in loaded.enabled_sources:
        profile = getattr(src, "profile", None)
        devices.setdefault(
            device_id(src.rack_tag), DeviceInfo(src.name, src.type, profile if isinstance(profile, str) else None)
        )
    return NodeInfo(loaded.config.site.name, VERSION, devices)


def build(name: str, cfg: SparkplugSinkConfig, loaded: LoadedConfig) -> SparkplugSink:
    site = loaded.config.site.name
    return SparkplugSink(name, resolved(cfg, loaded.resolve), site, state_path(name, cfg, loaded), node_info(loaded))
