"""MQTT sink (aiomqtt): telemetry, retained state, availability and alarms under `<prefix>/<site>/`.

A write returns when the broker acknowledged every QoS 1 message (PUBACK). The gateway status topic
is `online` after connect, `offline` on a clean stop and, as the Last Will, when the gateway dies;
the gateway's info (retained) is published again after every connect.
Delivery is at-least-once (a batch retried after a broker outage may arrive twice): the sink itself
sends a batch again, so it needs no broker session; it connects with a clean session by default, which
also drops a session some other client left under its id (a `#` subscription there sent the sink
every message of the broker). It subscribes to nothing: what a broker sends it anyway is counted and
discarded, never queued (see gateway.sinks.mqtt.inbound).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import aiomqtt
import structlog

from gateway.config.base import credential_path, read_secret, warn_if_exposed
from gateway.errors import ConfigError, SinkError
from gateway.sinks.base import Rejected
from gateway.sinks.columns import RENDER_STEP_SAMPLES
from gateway.sinks.config import MqttSinkConfig
from gateway.sinks.mqtt.inbound import discarding_queue
from gateway.sinks.mqtt.payloads import ALL_LEVELS, Message, MqttState, Topics, discovery, render_row, state_messages
from gateway.sinks.mqtt.publish import SOCKET_OPTIONS, connect_client, publish_acked
from gateway.store.outbox import Row

if TYPE_CHECKING:
    from gateway.config.settings import LoadedConfig

log = structlog.get_logger("sink.mqtt")

MAX_INFLIGHT = 100


class MqttSink:
    def __init__(self, name: str, cfg: MqttSinkConfig, site: str, base_dir: Path | None = None) -> None:
        self.name = name
        self.cfg = cfg
        self.site = site
        self.base_dir = base_dir
        levels = frozenset(cfg.levels)
        self.topics = Topics(cfg.prefix, site, cfg.qos, ALL_LEVELS if levels == ALL_LEVELS else levels)
        self.state = MqttState()
        self.client_id = cfg.client_id or f"bms-gateway-{site}-{name}"
        self._client: aiomqtt.Client | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._announced: dict[str, set[str]] = {}  # rack → quantities with a discovery config sent

    def __repr__(self) -> str:
        return f"MqttSink(name={self.name!r}, host={self.cfg.host!r}, port={self.cfg.port})"

    def _path(self, p: Path | None) -> str | None:
        if p is None:
            return None
        return str(p if p.is_absolute() or self.base_dir is None else self.base_dir / p)

    def _tls_context(self) -> ssl.SSLContext | None:
        if not self.cfg.tls:
            return None
        ctx = ssl.create_default_context(cafile=self._path(self.cfg.ca_file))  # verification on
        key = credential_path(self.cfg.key_file, self.cfg.key_credential)  # a key_file is resolved below
        if self.cfg.cert_file is not None:
            key_path = self._path(key)
            if self.cfg.key_file is not None and key_path is not None:
                warn_if_exposed(Path(key_path))
            ctx.load_cert_chain(self._path(self.cfg.cert_file) or "", key_path)
        return ctx

    def _make_client(self, probe: bool = False) -> aiomqtt.Client:
        """The gateway's client (a clean session unless `clean_session: false`, the Last Will, an incoming
        queue that keeps nothing), or for `probe` a throw-away one that neither takes over the running
        gateway's session nor leaves a will."""
        pw_file = None if self.cfg.password_file is None else Path(self._path(self.cfg.password_file) or "")
        password = read_secret(self.cfg.password, pw_file, self.cfg.password_credential)
        identifier = f"{self.client_id}-probe" if probe else self.client_id
        clean = True if probe else self.cfg.clean_session
        client = aiomqtt.Client(
            self.cfg.host,
            self.cfg.port,
            identifier=identifier,
            username=self.cfg.username,
            password=password.get_secret_value() if password is not None else None,
            clean_session=clean,
            queue_type=discarding_queue(self.name, identifier, persistent=not clean),
            keepalive=self.cfg.keepalive,
            timeout=self.cfg.timeout,
            tls_context=self._tls_context(),
            max_inflight_messages=MAX_INFLIGHT,
            socket_options=SOCKET_OPTIONS,
            will=None if probe else aiomqtt.Will(self.topics.gateway_status, b"offline", qos=1, retain=True),
        )
        client.pending_calls_threshold = 100_000  # a backlog drain has many publishes in flight, by design
        return client

    async def probe(self) -> str:
        """Connect and disconnect with a throw-away client: raise SinkError/SinkAuthError, or say what answered."""
        stack = await self._connect(self._client_or_error(probe=True))
        await stack.aclose()
        return f"broker {self.cfg.host}:{self.cfg.port} accepted the connection"

    def _client_or_error(self, probe: bool = False) -> aiomqtt.Client:
        """A missing secret or certificate file keeps the data and is retried slowly, not a crash."""
        try:
            return self._make_client(probe)
        except ConfigError as exc:
            raise SinkError(str(exc), retry=False) from None
        except (OSError, ssl.SSLError) as exc:
            raise SinkError(f"cannot load the TLS files: {exc}", retry=False) from None

    async def open(self) -> None:
        await self._disconnect()
        client = self._client_or_error()
        stack = await self._connect(client)
        self._client, self._stack = client, stack
        self._announced = {}
        if not self.cfg.clean_session:
            await self._drop_stale_subscription(client)
        # Online, and the retained info and alarm lists re-published so they stay current after an outage.
        hello = [Message(self.topics.gateway_status, b"online", 1, True)]
        if self.state.info is not None:
            hello.append(Message(self.topics.gateway_info, self.state.info, 1, True))
        hello += [Message(self.topics.rack(r, "alarms/active"), p, 1, True) for r, p in self.state.active.items()]
        await self._publish(hello)
        log.info("mqtt connected", host=self.cfg.host, port=self.cfg.port, client_id=self.client_id)

    async def _drop_stale_subscription(self, client: aiomqtt.Client) -> None:
        """A persistent session may hold a subscription another client made under this id: the most common
        one, `#`, is removed (any other's messages are discarded and counted). No UNSUBACK fails the connect."""
        try:
            await client.unsubscribe("#", timeout=self.cfg.timeout)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            raise SinkError(f"unsubscribe of a stale `#` failed: {exc}") from None

    async def _connect(self, client: aiomqtt.Client) -> contextlib.AsyncExitStack:
        return await connect_client(client, f"{self.cfg.host}:{self.cfg.port}")

    async def write(self, rows: Sequence[Row]) -> list[Rejected]:
        msgs: list[Message] = []
        touched: list[str] = []
        since_yield = 0
        for row in rows:
            msgs += render_row(row, self.topics, self.state, touched)
            since_yield += len(row.batch)
            if since_yield >= RENDER_STEP_SAMPLES:  # let the event loop run between parts of a big write
                since_yield = 0
                await asyncio.sleep(0)
        if self.cfg.retain_state:  # each rack's state holds all its entries: the loop runs between racks too
            for rack in touched:
                msgs += state_messages([rack], self.topics, self.state)
                since_yield += len(self.state.racks[rack])
                if since_yield >= RENDER_STEP_SAMPLES:
                    since_yield = 0
                    await asyncio.sleep(0)
        if self.cfg.ha_discovery:
            msgs = self._discovery() + msgs
        await self._publish(msgs)
        return []

    def _discovery(self) -> list[Message]:
        out: list[Message] = []
        for rack, seen in self.state.quantities.items():
            done = self._announced.setdefault(rack, set())
            new = seen - done
            if new:
                out += discovery(self.topics, self.cfg.ha_prefix, rack, sorted(new))
                done |= new
        return out

    async def _publish(self, msgs: Sequence[Message]) -> None:
        await publish_acked(self._client, msgs, self.cfg.timeout)

    async def _disconnect(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with contextlib.suppress(Exception):
                await stack.aclose()

    async def close(self) -> None:
        """Clean stop: `offline` on the status topic, then a normal DISCONNECT (no Last Will)."""
        if self._client is not None:
            with contextlib.suppress(SinkError):
                await self._publish([Message(self.topics.gateway_status, b"offline", 1, True)])
        await self._disconnect()


def build(name: str, cfg: MqttSinkConfig, loaded: LoadedConfig) -> MqttSink:
    return MqttSink(name, cfg, loaded.config.site.name, loaded.base_dir)
